"""PEP 792 project status: `active` (the default), `archived`, `quarantined`, `deprecated`.

A project that is not active has one small object in the state store, `status/<project>.json`
(a local root's state directory, or `.creamery/status/` in a bucket): its status, the reason
given, who set it and when. Active without a reason is no object at all, so an index that never
used statuses carries nothing. The shelf keeps every object in memory (a dict lookup on the hot
paths); a change is announced in the change feed as `.status/<project>`, which every process
applies with `refresh(project)`.

What each status means here (the PyPA spec, "Project Status Markers"):

- `archived`: no new uploads; existing files are served as before.
- `quarantined`: no new uploads, and no file is offered nor served (the simple pages list none).
- `deprecated`: like `active`; installers may warn.

The reason is free text shown to people and installers: one line, printable, at most
`MAX_REASON` characters.

An object that can't be read as a status (damaged, or edited by hand into something else) says
that someone closed the project, but not how: it is taken as quarantined, the one reading that
serves nothing a quarantine was meant to hide, with a warning, until the status is set again.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from creamery.core.names import has_unsafe_characters, normalize
from creamery.storage import Storage, StoredFile, read_all

log = logging.getLogger("creamery.status")

STATUS = "status"
SUFFIX = ".json"
STATUS_KEYS = ".status/"  # change-feed keys: `.status/<project>` (hidden: never a file's relpath)
STATUSES = ("active", "archived", "quarantined", "deprecated")
CLOSED = frozenset({"archived", "quarantined"})  # no new uploads
MAX_REASON = 300
_MAX_OBJECT = 16 << 10  # larger is not an object this module wrote


@dataclass(frozen=True, slots=True)
class ProjectStatus:
    status: str = "active"
    reason: str = ""
    by: str | None = None  # the user who set it (None: a local command)
    time: str = ""  # ISO 8601 UTC

    @property
    def active(self) -> bool:
        return self.status == "active"

    @property
    def quarantined(self) -> bool:
        """No file of the project is offered nor served."""
        return self.status == "quarantined"

    def marker(self) -> dict[str, str]:
        """The JSON simple API's `project-status` object (PEP 792): `status`, and `reason`
        when one was given."""
        found = {"status": self.status}
        if self.reason:
            found["reason"] = self.reason
        return found

    def upload_refusal(self, project: str) -> str | None:
        """Why an upload to *project* is refused (one line), None when it is not."""
        if self.status not in CLOSED:
            return None
        why = f" ({self.reason})" if self.reason else ""
        return f"project {project} is {self.status}: no new uploads{why}"

    def quarantine_reason(self, project: str, where: str = "") -> str:
        """Why no file of *project* is served (one line); *where*: " upstream", for one."""
        why = f": {self.reason}" if self.reason else ""
        return f"project {project} is quarantined{where}, its files are not served{why}"


ACTIVE = ProjectStatus()
DAMAGED = ProjectStatus(
    "quarantined", "its status object can't be read: set the status again (creamery status)"
)


def status_key(project: str) -> str:
    return f"{STATUS}/{project}{SUFFIX}"


def feed_key(project: str) -> str:
    return STATUS_KEYS + project


def check_status(text: str) -> str:
    """*text* as one of `STATUSES`; ValueError (one line) otherwise."""
    status = str(text).strip().lower()
    if status not in STATUSES:
        shown = str(text)[:40]
        raise ValueError(
            f"unknown project status {shown!r}: use active, archived, quarantined or deprecated"
        )
    return status


def check_reason(text: str) -> str:
    """*text* stripped, when it can be a status reason; ValueError (one line) otherwise."""
    reason = str(text).strip()
    if "\n" in reason or "\r" in reason:
        raise ValueError("the reason must be one line")
    if has_unsafe_characters(reason):
        raise ValueError("the reason holds control or format characters")
    if len(reason) > MAX_REASON:
        raise ValueError(f"the reason is longer than {MAX_REASON} characters")
    return reason


def encode(status: ProjectStatus) -> bytes:
    return json.dumps(asdict(status), ensure_ascii=False).encode("utf-8")


def decode(data: bytes) -> ProjectStatus | None:
    """The status an object holds; None when it is not one (damaged, or written by hand)."""
    if len(data) > _MAX_OBJECT:
        return None
    try:
        found = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(found, dict):
        return None
    status, reason = found.get("status"), found.get("reason", "")
    by, moment = found.get("by"), found.get("time", "")
    if not isinstance(reason, str) or not isinstance(moment, str):
        return None
    if not (by is None or isinstance(by, str)) or not isinstance(status, str):
        return None
    try:
        return ProjectStatus(check_status(status), check_reason(reason), by, moment)
    except ValueError:
        return None


class StatusShelf:
    """Every project's status, from the state store, kept in memory."""

    def __init__(self, store: Storage) -> None:
        self.store = store
        self._statuses: dict[str, ProjectStatus] = {}
        self.quarantined: frozenset[str] = frozenset()  # for the downloads' hot path
        self._lock = threading.Lock()

    def load(self) -> None:
        """Every status object in the store (one listing, one read per project not active)."""
        found = dict(self._read(self.store.scan(STATUS + "/")))
        with self._lock:
            self._set(found)

    def refresh(self, project: str) -> None:
        """Read *project*'s status again (a change-feed key said it changed)."""
        stored = self.store.stat(status_key(project))
        found = dict(self._read([stored] if stored is not None else []))
        with self._lock:
            statuses = dict(self._statuses)
            statuses.pop(project, None)
            statuses.update(found)
            self._set(statuses)

    def _set(self, statuses: dict[str, ProjectStatus]) -> None:
        # Replaced, never changed: the hot paths read them without the lock.
        self._statuses = statuses
        self.quarantined = frozenset(p for p, s in statuses.items() if s.quarantined)

    def served_nothing(self, project: str) -> str | None:
        """Why no file of *project* is served (it is quarantined), or None: the reason the
        downloads, the Integrity API and the hosted docs all answer their 404 with."""
        if project not in self.quarantined:  # a set lookup: the downloads' hot path
            return None
        return self.get(project).quarantine_reason(project)

    def get(self, project: str) -> ProjectStatus:
        """*project*'s status (normalized name); `ACTIVE` when none was set."""
        return self._statuses.get(project, ACTIVE)

    def projects(self) -> dict[str, ProjectStatus]:
        """The projects whose status was set, by name."""
        return dict(self._statuses)

    def put(self, project: str, status: ProjectStatus) -> None:
        """Store *status* for *project* (atomically: replaced in one put); active without a
        reason removes the object."""
        if status.active and not status.reason:
            self.store.delete(status_key(project))
        else:
            self.store.put(status_key(project), encode(status), if_absent=False)

    def _read(self, listing: Iterable[StoredFile]) -> Iterable[tuple[str, ProjectStatus]]:
        for stored in listing:
            parts = stored.key.split("/")
            if len(parts) != 2 or not parts[1].endswith(SUFFIX):
                continue
            project = parts[1][: -len(SUFFIX)]
            if project != normalize(project) or not project:
                continue
            try:
                too_large = stored.size > _MAX_OBJECT  # not read whole to learn that
                status = None if too_large else decode(read_all(self.store, stored))
            except FileNotFoundError:
                continue  # set back to active since the listing
            if status is None:
                log.warning(
                    "%s is not a status object (damaged?): %s is taken as quarantined until"
                    " its status is set again",
                    stored.key,
                    project,
                )
                status = DAMAGED
            yield project, status


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
