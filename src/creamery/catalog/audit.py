"""The audit log: every write and every security-relevant event, append-only, in the state.

An entry is one JSON object: UTC `time`, the principal (`user`, `token` id or null), the
`client` address, the `action`, its target (`project`, `version`, `filename`, `sha256`,
`size`, `reason`) and its `result` ("ok", "denied", "failed"...). Entries are rotated by day:

- local state: `<state>/audit/YYYY-MM-DD.jsonl`, one line per entry, appended with O_APPEND
  under an exclusive lock and fsynced before `write` returns (so a write that is audited is
  durable in the log before it is acknowledged);
- state in a bucket (which can't append): one object per entry, `audit/YYYY-MM-DD/<time>-<id>`
  (put-if-absent), so a day is one listing and no replica can overwrite another's entry.

`write` raises OSError when the entry can't be made durable: the write it audits then fails
(callers undo it or don't start it). Nothing secret is ever passed in: no password, no token.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path

from creamery.core import durable
from creamery.core.names import normalize
from creamery.storage import Storage, StoreUnavailable, read_all
from creamery.storage.state import StateDir

log = logging.getLogger("creamery.audit")

AUDIT = "audit"
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([smhdw]?)", re.IGNORECASE)  # ASCII digits
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_DURATION = 100 * 365 * 86400


def parse_duration(text: str) -> float:
    """`90d`, `12h`, `30m`, `45s`, `2w` (or plain seconds) -> seconds; ValueError otherwise."""
    match = _DURATION.fullmatch(str(text).strip())
    if not match:
        raise ValueError(
            f"invalid duration {text!r}: use a number with s, m, h, d or w, such as 90d"
        )
    seconds = float(match[1]) * _UNITS[match[2].lower()]
    if not 0 < seconds <= MAX_DURATION:  # `0s` is well written: say what is wrong with it
        raise ValueError(f"invalid duration {text!r}: it must be more than 0 and at most 100 years")
    return seconds


@dataclass(frozen=True)
class Entry:
    action: str
    result: str = "ok"
    user: str | None = None
    token: str | None = None
    client: str = ""
    project: str | None = None
    version: str | None = None
    filename: str | None = None
    sha256: str | None = None
    size: int | None = None
    reason: str | None = None
    detail: str | None = None
    time: str = ""  # ISO 8601 UTC; filled in by `AuditLog.write` when empty

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=False, ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str | bytes) -> Entry:
        """ValueError for a line that is not an entry (fields of the wrong type included:
        a number as `time` would break sorting and filtering)."""
        try:
            data = json.loads(line)
        except RecursionError:
            raise ValueError("nested too deeply") from None
        if not isinstance(data, dict):
            raise ValueError("not an audit entry")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if not isinstance(known.get("action"), str) or not isinstance(known.get("time"), str):
            raise ValueError("not an audit entry")
        for name, value in known.items():
            wanted = int if name == "size" else str
            if value is not None and (not isinstance(value, wanted) or isinstance(value, bool)):
                raise ValueError(f"not an audit entry: {name} is {type(value).__name__}")
        return cls(**known)

    @property
    def seconds(self) -> float:
        """The entry's time as a Unix time (0 when unreadable)."""
        try:
            return datetime.fromisoformat(self.time).timestamp()
        except ValueError:
            return 0.0


def _now_iso(now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"


class AuditLog:
    """The audit log of one state (a local directory or a bucket's `.creamery/` prefix)."""

    def __init__(self, state: StateDir) -> None:
        self.state = state
        self._directory = None if state.path is None else state.path / AUDIT
        self._lock = threading.Lock()

    def write(self, entry: Entry, now: float | None = None) -> Entry:
        """Make *entry* durable (raises OSError when it can't be); the entry as written."""
        moment = time.time() if now is None else now
        if not entry.time:
            entry = replace(entry, time=_now_iso(moment))
        day = entry.time[:10]
        if not _DAY.fullmatch(day):  # the day names the file: never a path of the caller's
            raise ValueError(f"an audit entry's time must be ISO 8601: {entry.time!r}")
        line = entry.to_json() + "\n"
        try:
            if self._directory is not None:
                self._append_local(self._directory, day, line.encode("utf-8"))
            else:
                self._put_object(self.state.store, day, entry.time, line.encode("utf-8"))
        except StoreUnavailable:
            raise  # the store did not answer: 503, said as such
        except OSError as error:  # said as what failed, not as "File exists" or "No space"
            problem = error.strerror or type(error).__name__
            raise OSError(error.errno, f"can't write the audit log ({problem})") from error
        return entry

    def try_write(self, entry: Entry) -> None:
        """For events that change nothing (a refused login): logged when it can't be written."""
        try:
            self.write(entry)
        except OSError as error:
            log.error("can't write the audit entry for %s: %s", entry.action, error)

    def _append_local(self, directory: Path, day: str, data: bytes) -> None:
        path = directory / f"{day}.jsonl"
        with self._lock:
            created = not directory.is_dir()
            directory.mkdir(parents=True, exist_ok=True)
            if created:
                durable.fsync_directory(directory.parent)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # other processes append whole lines too
                size = os.fstat(fd).st_size
                try:
                    written = os.write(fd, data)
                    if written != len(data):
                        raise OSError(28, "short write to the audit log")
                    os.fsync(fd)
                except OSError:
                    os.ftruncate(fd, size)  # no torn line left behind
                    raise
                if size == 0:
                    durable.fsync_directory(directory)
            finally:
                os.close(fd)

    @staticmethod
    def _put_object(store: Storage, day: str, stamp: str, data: bytes) -> None:
        key = f"{AUDIT}/{day}/{stamp[11:].replace(':', '')}-{os.urandom(6).hex()}"
        store.put(key, data, if_absent=True)

    # ------------------------------------------------------------------ reading

    def days(self) -> list[str]:
        """The days that have entries, oldest first."""
        if self._directory is not None:
            try:
                names = os.listdir(self._directory)
            except FileNotFoundError:
                return []
            return sorted(n[:-6] for n in names if n.endswith(".jsonl") and _DAY.fullmatch(n[:-6]))
        days = {s.key.split("/")[1] for s in self.state.store.scan(AUDIT)}
        return sorted(d for d in days if _DAY.fullmatch(d))

    def read(
        self,
        *,
        since: float | None = None,
        project: str | None = None,
        user: str | None = None,
    ) -> Iterator[Entry]:
        """The entries, oldest first, filtered (since a Unix time, of a project, of a user)."""
        first_day = None if since is None else time.strftime("%Y-%m-%d", time.gmtime(since))
        wanted = None if project is None else normalize(project)
        for day in self.days():
            if first_day is not None and day < first_day:
                continue
            for entry in self._read_day(day):
                if since is not None and entry.seconds < since:
                    continue
                if wanted is not None and (
                    entry.project is None or normalize(entry.project) != wanted
                ):
                    continue
                if user is not None and entry.user != user:
                    continue
                yield entry

    def _read_day(self, day: str) -> Iterator[Entry]:
        if self._directory is not None:
            try:
                lines = (self._directory / f"{day}.jsonl").read_bytes().splitlines()
            except FileNotFoundError:
                return
        else:
            store = self.state.store
            lines = [read_all(store, s) for s in store.scan(f"{AUDIT}/{day}")]
        entries: list[Entry] = []
        for line in lines:
            if not line.strip():
                continue
            try:
                entries.append(Entry.from_json(line))
            except (ValueError, TypeError):
                log.warning("audit log %s: a damaged entry skipped", day)
        entries.sort(key=lambda e: e.time)
        yield from entries
