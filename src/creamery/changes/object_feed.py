"""The change feed in any `Storage` (an object store: the bucket's `.creamery/` prefix): one
object per record, numbered by conditional creates. No lock, no leader, no other service.

    changes/<serial, 20 digits>    <crc32 of the keys, 8 hex digits> <keys as a JSON list>\\n

**Appending.** An appender puts its record at `latest_known + 1` with `put(if_absent=True)`
(S3's `If-None-Match: *`): of several appenders racing for one serial exactly one wins; the
others get `AlreadyExists`, list what came after the serial they knew (one list request) and
try the next one. So serials are unique, and never have gaps: serial N+1 is only ever tried by
an appender that saw N taken (its own put failed on N, or a listing showed N), so N was
complete in the store before N+1 was written.

**Reading.** `since(serial)` is one `scan_after` listing from the serial asked for (S3's
`start-after`: one request per 1,000 records, not a listing of the whole feed; a store that is
not `ScansAfter` is listed whole, then sorted), then one read per new record (in parallel on
a remote store). A follower that sees N+1 also sees N: N was
complete before N+1 was written (above), and an S3 listing (like a directory's) shows every
object whose write completed before the listing began. The one exception is a listing that
runs while both are written: it may pass N's place before N lands and N+1's after it. So a
missing serial between two listed ones (a *hole*) is first taken for a write in flight: the
records before it are returned, and the feed is listed once more; a hole that a second
listing, begun after the first one ended, still shows is not in flight: it was compacted
(below the first record) or deleted, and the reader gets `Resync`. So does a damaged record
(wrong CRC, not a JSON list: a record no appender wrote) and one that vanishes between the
listing and its read (compaction): never a wrong or a missed key.

**Compaction.** The appender whose serial is a multiple of *step* deletes (in a background
thread) the records more than *keep* serials older than its own, except those younger than
*min_age* (a reader that listed a record finds it when it reads it). Idempotent, so appenders
on several replicas may do it at once. A follower more than *max_backlog* records behind is
told to `Resync` instead of reading them one by one: a rescan lists 1,000 files per request.

**Failures.** A store that does not answer makes `since` and `latest` raise OSError (the
follower logs it once per outage and retries); `append` raises OSError too, after keeping the
keys: the next append, or the first `since` that reaches the store again, records them, so the
other replicas learn of the change when the store is back (a restart loses them: the periodic
rescan is the net).

`announced()` is the newest serial this process has read or written, without I/O: followers
of this feed rely on their poll (`follower.py`, every *POLL_SECONDS*) and on the catch-up before
a miss, a listing and a write's reply.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import random
import re
import threading
import time
import weakref
import zlib
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from creamery.changes import Changes, Resync
from creamery.storage import AlreadyExists, ScansAfter, Storage, StoredFile, read_all

log = logging.getLogger("creamery.changes")

PREFIX = "changes"
POLL_SECONDS = 1.0  # a write is seen by every replica within 2 s at the default
KEEP = 2_000  # records kept by compaction (past MAX_BACKLOG behind, a follower rescans anyway)
MIN_AGE = 300.0  # seconds: younger records are never compacted
STEP = 100  # the appender of every STEP-th serial compacts
MAX_BACKLOG = 1_000  # a follower further behind rescans: cheaper than a read per record
MAX_PENDING = 10_000  # unrecorded keys kept for the next append; past it, the rescan finds them
_LOSSES = 1_000  # lost races in one append before it gives up
_READERS = 8  # parallel reads of records on a remote store
_OWN = 64  # records written by this process remembered (their catch-up reads none back)
_DIGITS = 20  # 2**64 fits
_NAME = re.compile(rf"{PREFIX}/(\d{{{_DIGITS}}})")
_RECORD = re.compile(rb"([0-9a-f]{8}) (\[.*\])\n?", re.DOTALL)

Listed = list[tuple[int, StoredFile]]


class _Damaged(Exception):
    """A record no appender wrote (or one that vanished before it was read)."""


def _key(stored: StoredFile) -> str:
    return stored.key


def record_key(serial: int) -> str:
    return f"{PREFIX}/{serial:0{_DIGITS}d}"


def encode(keys: Sequence[str]) -> bytes:
    payload = json.dumps(list(keys), separators=(",", ":")).encode("ascii")
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


def decode(data: bytes) -> list[str]:
    """The keys of a record; `_Damaged` when its CRC or its JSON is wrong."""
    match = _RECORD.fullmatch(data)
    if match is None or int(match.group(1), 16) != zlib.crc32(match.group(2)):
        raise _Damaged("bad record")
    try:
        keys = json.loads(match.group(2).decode("ascii"))
    except ValueError as error:
        raise _Damaged("bad record") from error
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise _Damaged("bad record")
    return keys


class ObjectFeed:
    """`ChangeFeed` in a `Storage` (see the module's docstring for the format)."""

    def __init__(
        self,
        store: Storage,
        *,
        keep: int = KEEP,
        min_age: float = MIN_AGE,
        step: int = STEP,
        max_backlog: int = MAX_BACKLOG,
        background: bool = True,
    ) -> None:
        """*background*: compact in a thread of its own (False: inside the append, for tests
        and one-shot processes that would exit before the thread ends)."""
        if keep < 1 or step < 1 or max_backlog < 1:
            raise ValueError("keep, step and max_backlog must be positive")
        self.store = store
        self.keep = keep
        self.min_age_ns = int(min_age * 1e9)
        self.step = step
        self.max_backlog = max_backlog
        self.background = background
        self._known = 0  # the newest serial this process read or wrote
        self._listed = False  # _known was read from the store (an append may start from it)
        self._known_lock = threading.Lock()
        self._append_lock = threading.Lock()  # one appender per process: no race with itself
        self._read_lock = threading.Lock()
        self._pending: dict[str, None] = {}  # keys whose append failed, recorded with the next
        # The last records written here, by serial: (their version, their keys): not read back
        self._own: dict[int, tuple[int | str, list[str]]] = {}
        self._compactor: threading.Thread | None = None
        _instances.add(self)

    # ------------------------------------------------------------------ ChangeFeed

    def append(self, keys: Sequence[str]) -> int:
        with self._append_lock:
            self._pending.update(dict.fromkeys(keys))
            written = list(self._pending)
            try:
                serial, stored = self._put(encode(written))
            except OSError:
                if len(self._pending) > MAX_PENDING:
                    log.warning("%d changes not recorded: rescans find them", len(self._pending))
                    self._pending.clear()
                raise
            self._pending.clear()
            self._remember(serial, stored, written)
        self._note(serial)
        if serial % self.step == 0:
            self._compact_soon(serial, stored.mtime_ns)
        return serial

    def latest(self) -> int:
        with self._read_lock:
            known = self._known
            listed = self._records(known - 1) if known > 1 else []
            if not listed:
                listed = self._records(0)  # first call, or a feed younger than what we knew
            newest = listed[-1][0] if listed else 0
            self._set_known(newest)
            return newest

    def since(self, serial: int) -> Changes | Resync:
        with self._read_lock:
            found = self._since(serial)
        self._record_pending()
        return found

    def announced(self) -> int:
        return self._known

    def close(self) -> None:
        compactor = self._compactor
        if compactor is not None:
            compactor.join(timeout=10)

    def _forked(self) -> None:
        """In a forked child: the parent's locks may have been held by threads not here."""
        self._known_lock = threading.Lock()
        self._append_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._compactor = None

    # ------------------------------------------------------------------ appending

    def _put(self, body: bytes) -> tuple[int, StoredFile]:
        if not self._listed:
            listed = self._records(self._known)
            self._set_known(listed[-1][0] if listed else self._known)
        serial = self._known + 1
        for losses in range(_LOSSES):
            try:
                return serial, self.store.put(record_key(serial), body, if_absent=True)
            except AlreadyExists:
                listed = self._records(serial)
                newest = listed[-1][0] if listed else serial
                self._note(newest)
                serial = newest + 1
                if losses >= 3:  # many appenders at once: spread them out
                    time.sleep(random.uniform(0, 0.002 * losses))
        raise OSError(f"gave up appending to the change feed after {_LOSSES} lost races")

    def _record_pending(self) -> None:
        """The store answered: record what an append could not (best effort)."""
        if self._pending and self._append_lock.acquire(blocking=False):
            try:
                if self._pending:
                    written = list(self._pending)
                    serial, stored = self._put(encode(written))
                    self._pending.clear()
                    self._remember(serial, stored, written)
                    self._note(serial)
                    log.info("recorded earlier changes as serial %d", serial)
            except OSError:
                pass
            finally:
                self._append_lock.release()

    def _remember(self, serial: int, stored: StoredFile, keys: list[str]) -> None:
        """The catch-up after a write lists its own record: no need to read it back."""
        self._own[serial] = (stored.version, keys)
        while len(self._own) > _OWN:
            del self._own[next(iter(self._own))]

    # ------------------------------------------------------------------ reading

    def _scan(self, after: int) -> Iterator[tuple[int, StoredFile]]:
        """The records numbered above *after*, in order (one listing, streamed; a store that
        can't list from a key lists the whole feed)."""
        floor = record_key(max(after, 0))
        if isinstance(self.store, ScansAfter):
            listing: Iterable[StoredFile] = self.store.scan_after(PREFIX, floor)
        else:
            listing = sorted((s for s in self.store.scan(PREFIX) if s.key > floor), key=_key)
        for stored in listing:
            match = _NAME.fullmatch(stored.key)
            if match is not None and (serial := int(match.group(1))) > after:
                yield serial, stored

    def _records(self, after: int, limit: int | None = None) -> Listed:
        return list(itertools.islice(self._scan(after), limit))

    def _since(self, serial: int) -> Changes | Resync:
        hole = 0
        while True:
            # From *serial* itself (is it there?); past the backlog a rescan is cheaper.
            listed = self._records(serial - 1, self.max_backlog + 2)
            present = bool(listed) and listed[0][0] == serial
            if present:
                listed = listed[1:]
            if not listed:
                if present or serial == 0:
                    self._note(serial)
                    return Changes(serial, [])
                # Compaction never deletes the newest record: the feed is behind this reader
                # (restored from a backup, or started afresh).
                return Resync(self._newest())
            self._note(listed[-1][0])
            run, missing = _contiguous(listed, serial + 1)
            if missing == 0:
                break
            if missing == hole:  # seen by two listings in a row: compacted or deleted
                return Resync(listed[-1][0])
            if run:
                break  # a record after the run may be in flight: the next poll sees it
            hole = missing  # the first one missing: in flight, or compacted? Look again
        if len(run) > self.max_backlog:
            return Resync(listed[-1][0])
        try:
            keys = self._read(run)
        except _Damaged as error:
            log.warning("change feed: %s after serial %d: rescanning", error, serial)
            return Resync(listed[-1][0])
        return Changes(run[-1][0], keys)

    def _read(self, run: Listed) -> list[str]:
        remembered = self._own.copy()  # (appenders add to it meanwhile)
        own = {  # the very objects this process wrote (not another feed's after a reset)
            serial: remembered[serial][1]
            for serial, stored in run
            if serial in remembered and remembered[serial][0] == stored.version
        }
        unread = [stored for serial, stored in run if serial not in own]
        if self.store.remote and len(unread) > 2:
            with ThreadPoolExecutor(min(_READERS, len(unread))) as pool:
                read = dict(zip(unread, pool.map(self._read_one, unread), strict=True))
        else:
            read = {stored: self._read_one(stored) for stored in unread}
        keys: dict[str, None] = {}
        for serial, stored in run:
            keys.update(dict.fromkeys(own[serial] if serial in own else read[stored]))
        return list(keys)

    def _read_one(self, stored: StoredFile) -> list[str]:
        try:
            data = read_all(self.store, stored)
        except FileNotFoundError as error:  # compacted since it was listed
            raise _Damaged(f"record {stored.key} vanished") from error
        try:
            return decode(data)
        except _Damaged as error:
            raise _Damaged(f"damaged record {stored.key}") from error

    def _newest(self) -> int:
        listed = self._records(0)
        newest = listed[-1][0] if listed else 0
        self._set_known(newest)
        return newest

    def _note(self, serial: int) -> None:
        with self._known_lock:
            if serial > self._known:
                self._known = serial
            self._listed = True

    def _set_known(self, serial: int) -> None:
        """What the store says now (lower than before for a feed restored from a backup)."""
        with self._known_lock:
            self._known = serial
            self._listed = True

    # ------------------------------------------------------------------ compaction

    def _compact_soon(self, serial: int, now_ns: int) -> None:
        if not self.background:
            self.compact(serial, now_ns)
            return
        if self._compactor is not None and self._compactor.is_alive():
            return  # the next multiple of step does what this one would have
        self._compactor = threading.Thread(
            target=self.compact, args=(serial, now_ns), name="creamery-feed-compact", daemon=True
        )
        self._compactor.start()

    def compact(self, serial: int, now_ns: int = 0) -> int:
        """Delete the records numbered *serial* - keep or lower that are older than *min_age*
        at *now_ns* (the store's clock: the time of the record just written; 0: this host's).
        Returns how many went. Errors are logged: the next compaction does the same work."""
        young = (now_ns or time.time_ns()) - self.min_age_ns
        removed = 0
        try:
            for old, stored in self._scan(0):
                if old > serial - self.keep or stored.mtime_ns > young:
                    break
                removed += self.store.delete(stored.key)
        except OSError as error:
            log.warning(
                "compacting the change feed failed (%s): the next compaction retries", error
            )
        return removed


def _contiguous(listed: Listed, first: int) -> tuple[Listed, int]:
    """The records numbered *first*, *first* + 1, ... from the start of *listed*, and the first
    serial missing before the end of *listed* (0: none)."""
    expected = first
    for index, (serial, _stored) in enumerate(listed):
        if serial != expected:
            return listed[:index], expected
        expected += 1
    return listed, 0


_instances: weakref.WeakSet[ObjectFeed] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for feed in list(_instances):
        feed._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)
