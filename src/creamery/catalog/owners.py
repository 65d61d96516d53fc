"""PyPI-style ownership (`--owners first-uploader`): who owns or maintains which project.

One record per grant, `access/owners/<project>/<user>` in the state store (JSON: role, who
granted it, when), so replicas and backups carry it and two grants never overwrite each other.
The first upload of a project claims it with `access/founded/<project>` (put-if-absent: of two
first uploads, exactly one uploader becomes the owner).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from urllib.parse import quote, unquote

from creamery.catalog.permissions import Role
from creamery.core.names import is_valid_project_name, normalize
from creamery.storage import AlreadyExists, Storage, read_all

log = logging.getLogger("creamery.owners")

OWNERS = "access/owners"
FOUNDED = "access/founded"
GRANTABLE = (Role.UPLOADER, Role.MAINTAINER, Role.OWNER)


@dataclass(frozen=True)
class Grant:
    project: str
    user: str
    role: Role
    granted_by: str = ""
    time: float = 0.0

    def to_json(self) -> bytes:
        return json.dumps(
            {"role": self.role.label, "granted_by": self.granted_by, "time": self.time},
            sort_keys=True,
        ).encode()

    def public(self) -> dict[str, object]:
        return {
            "project": self.project,
            "user": self.user,
            "role": self.role.label,
            "granted_by": self.granted_by,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.time)),
        }


def user_key(user: str) -> str:
    """A user name as one safe key segment (no `/`, not hidden)."""
    return quote(user, safe="").replace(".", "%2E") or "%00"


def _user_of(segment: str) -> str:
    return unquote(segment)


class Owners:
    """The grants, all in this process's memory (loaded at start, refreshed by the feed)."""

    def __init__(self, store: Storage) -> None:
        self.store = store
        self._grants: dict[str, dict[str, Grant]] = {}
        self._lock = threading.Lock()

    def load(self) -> None:
        found: dict[str, dict[str, Grant]] = {}
        for stored in self.store.scan(OWNERS):
            grant = self._read(stored.key)
            if grant is not None:
                found.setdefault(grant.project, {})[grant.user] = grant
        with self._lock:
            self._grants = found

    def _read(self, key: str) -> Grant | None:
        parts = key.split("/")
        if len(parts) != 4:
            return None
        project, user = parts[2], _user_of(parts[3])
        stored = self.store.stat(key)
        if stored is None:
            return None
        try:
            data = json.loads(read_all(self.store, stored))
            if not isinstance(data, dict):
                raise ValueError("not a grant record")
            return Grant(
                project,
                user,
                Role.named(data["role"]),
                str(data.get("granted_by", "")),
                float(data.get("time", 0.0)),
            )
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, RecursionError) as error:
            log.error("ownership record %s is damaged (%s): ignored", key, error)
            return None

    def refresh(self, project: str) -> None:
        """Re-read one project's grants (the change feed said they changed)."""
        found: dict[str, Grant] = {}
        for stored in self.store.scan(f"{OWNERS}/{project}"):
            grant = self._read(stored.key)
            if grant is not None and grant.project == project:
                found[grant.user] = grant
        with self._lock:
            if found:
                self._grants[project] = found
            else:
                self._grants.pop(project, None)

    def grants(self, project: str) -> dict[str, Grant]:
        return dict(self._grants.get(normalize(project), {}))

    def all(self) -> list[Grant]:
        with self._lock:
            return [g for p in sorted(self._grants) for g in self._grants[p].values()]

    def has_owners(self, project: str) -> bool:
        return bool(self._grants.get(project))

    def role(self, user: str, project: str) -> Role:
        grant = self._grants.get(project, {}).get(user)
        return Role.NONE if grant is None else grant.role

    def grant(self, project: str, user: str, role: Role, granted_by: str = "") -> Grant:
        if role not in GRANTABLE:
            raise ValueError("a grant's role is uploader, maintainer or owner")
        if not is_valid_project_name(project):  # "../x" would be a key no load reads back
            raise ValueError(f"invalid project name {project!r}")
        if not user:
            raise ValueError("a grant needs a user name")
        project = normalize(project)
        grant = Grant(project, user, role, granted_by, time.time())
        self.store.put(f"{OWNERS}/{project}/{user_key(user)}", grant.to_json(), if_absent=False)
        with self._lock:
            self._grants.setdefault(project, {})[user] = grant
        return grant

    def revoke(self, project: str, user: str) -> bool:
        project = normalize(project)
        removed = self.store.delete(f"{OWNERS}/{project}/{user_key(user)}")
        with self._lock:
            grants = self._grants.get(project)
            if grants is not None:
                grants.pop(user, None)
                if not grants:
                    del self._grants[project]
        return removed

    def claim(self, project: str, user: str) -> bool:
        """The first upload of *project* by *user*: True when it made *user* its owner (the
        project had no owner, and no other upload claimed it first)."""
        project = normalize(project)
        if self.has_owners(project):
            return False
        try:
            self.store.put(f"{FOUNDED}/{project}", user.encode("utf-8"), if_absent=True)
        except AlreadyExists:
            # Claimed by another process or replica, whose grant may not be written yet (or
            # never, if it crashed in between): only the founder itself may finish a claim.
            self.refresh(project)
            if self.has_owners(project) or self._founder(project) != user:
                return False
        self.grant(project, user, Role.OWNER, granted_by=user)
        return True

    def _founder(self, project: str) -> str | None:
        stored = self.store.stat(f"{FOUNDED}/{project}")
        if stored is None:
            return None
        try:
            return read_all(self.store, stored).decode("utf-8")
        except (FileNotFoundError, UnicodeDecodeError):
            return None
