"""The change feed on a local (or shared network) file system: a journal in the state directory.

    <state>/changes.feed     creamery-feed 1 base=<B>\\n, then one record per append:
                             <serial> <crc32 of the keys, 8 hex digits> <keys as a JSON list>\\n
    <state>/changes.serial   the latest serial (8 bytes, mapped into every process's memory),
                             and the lock appenders take

Serials: the first record after the header is B+1, each later one the previous plus one. An
appender takes an exclusive `flock` on `changes.serial`, reads what was appended since it last
looked, writes its record in one `write`, then stores the serial in the shared 8 bytes; so
appenders in any number of processes never interleave nor reuse a serial. Readers take no lock:
they consume complete lines only, so a record being written is read once it is whole.

A crash in the middle of an append leaves a torn last line. It is never misparsed: the next
appender (holding the lock, so no append is in progress) cuts it off; a damaged line that ends
in a newline fails its CRC or its serial check and is skipped, and its readers get `Resync`.

Compaction: past `max_size` an appender starts the file afresh with base = the last serial, by
an atomic rename. A follower that read the old file to its end (it keeps the old file open, and
drains it before switching) misses nothing; one that is behind the new base gets `Resync`.
The numbering survives restarts and compaction (the base), and the loss of the journal (the
shared serial). Not fsynced: after a power cut every process starts with a full scan anyway.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import logging
import mmap
import os
import re
import threading
import weakref
import zlib
from collections.abc import Sequence
from pathlib import Path

from creamery.changes import Changes, Resync
from creamery.core.durable import write_atomic

log = logging.getLogger("creamery.changes")

FEED_NAME = "changes.feed"
SERIAL_NAME = "changes.serial"
MAX_SIZE = 1 << 20
_HEADER = re.compile(rb"creamery-feed 1 base=(\d+)\n")
_RECORD = re.compile(rb"(\d+) ([0-9a-f]{8}) (\[.*\])")

Record = tuple[int, list[str]]
_LAST = 1 << 63  # reopen(after=_LAST): just after the last record


class _Cursor:
    """One reader's place in the feed: the file it has open, how far it read, the serial there."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1
        self.inode = 0
        self.offset = 0  # just after the last complete line consumed
        self.base = 0
        self.serial = 0  # of the last record consumed (the base before any)
        self.size = 0  # of the file when last read
        self.damaged = False  # a record was skipped or lost since since() last looked

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
        self.fd = -1

    def reopen(self, after: int = -1) -> bool:
        """The file now at the path, positioned after the last record numbered *after* or less
        (found from the end: a restart does not parse a whole journal); False when there is
        none (or it has no header)."""
        self.close()
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:  # none yet; or the state directory is gone (a vanished root)
            return False
        head = os.pread(fd, 64, 0)
        match = _HEADER.match(head)
        if match is None:
            os.close(fd)
            return False
        self.fd, self.inode = fd, os.fstat(fd).st_ino
        self.offset = match.end()
        self.base = self.serial = int(match.group(1))
        self.size = self.offset
        self.damaged = False
        if after > self.base:
            self._skip_to(after)
        return True

    def _skip_to(self, after: int) -> None:
        size = os.fstat(self.fd).st_size
        data = os.pread(self.fd, size - self.offset, self.offset)
        end = data.rfind(b"\n")
        while end > 0:
            start = data.rfind(b"\n", 0, end) + 1
            serial = _valid_serial(data[start:end])
            if serial is not None and serial <= after:
                self.offset += end + 1
                self.serial = serial
                return
            end = start - 1

    def advance(self) -> list[Record]:
        """The complete records appended since the last call, the file replaced by compaction
        followed (after its old file was read to the end). Sets *damaged* on a bad record."""
        if self.fd < 0 and not self.reopen(after=_LAST):
            return []
        try:
            current = os.stat(self.path).st_ino
        except OSError:
            current = self.inode
        records = self._read_to_end()
        if current != self.inode:
            serial = self.serial
            if self.reopen():
                if self.base != serial:
                    self.damaged = True  # records between the two files are gone
                records += self._read_to_end()
        return records

    def _read_to_end(self) -> list[Record]:
        size = os.fstat(self.fd).st_size
        self.size = size
        if size <= self.offset:
            return []
        data = os.pread(self.fd, size - self.offset, self.offset)
        complete, newline, _torn = data.rpartition(b"\n")
        if not newline:
            return []  # being written (or torn): read once it is whole
        self.offset += len(complete) + 1
        records: list[Record] = []
        for line in complete.split(b"\n"):
            records.extend(self._parse(line))
        return records

    def _parse(self, line: bytes) -> list[Record]:
        match = _valid_record(line)
        if match is None:
            self.damaged = True
            return []
        serial = int(match.group(1))
        if serial <= self.serial:
            self.damaged = True  # never written by a working appender
            return []
        if serial != self.serial + 1:
            self.damaged = True
        self.serial = serial
        try:
            keys = json.loads(match.group(3).decode("ascii"))
        except ValueError:
            self.damaged = True
            return []
        return [(serial, [k for k in keys if isinstance(k, str)])]

    def ends_torn(self) -> bool:
        """After `advance`: bytes past the last complete line (a crashed append)."""
        return self.fd >= 0 and self.size > self.offset


def _valid_record(line: bytes) -> re.Match[bytes] | None:
    """A record line whose CRC matches its keys, else None."""
    match = _RECORD.fullmatch(line)
    if match is None or int(match.group(2), 16) != zlib.crc32(match.group(3)):
        return None
    return match


def _valid_serial(line: bytes) -> int | None:
    match = _valid_record(line)
    return None if match is None else int(match.group(1))


class _SharedSerial:
    """The latest serial in 8 bytes of `changes.serial`, mapped into every process's memory:
    reading it is a memory load, so a request can ask "is there news?" at no cost."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mapping: mmap.mmap | None = None
        self._value: ctypes.c_uint64 | None = None
        self._fallback = 0
        self._warned = False
        self._absent = False  # no state directory yet: looked for again on every get()
        self._directory = str(path.parent)

    def open(self) -> None:
        """Map the file (created if missing, in a state directory that exists); until then,
        or where that fails, the serial is this process's own and other processes' writes
        are found by polling."""
        if self._value is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:
            self._absent = True  # nothing was ever written: the first writer makes it
            return
        except OSError as error:
            self._absent = False
            self._warn(error)
            return
        self._absent = False
        try:
            if os.fstat(fd).st_size < 8:
                os.ftruncate(fd, 8)  # concurrent starters all extend it to 8: never shrinks
            self._mapping = mmap.mmap(fd, 8)
            self._value = ctypes.c_uint64.from_buffer(self._mapping)
        except (OSError, ValueError) as error:
            self._warn(error)
        finally:
            os.close(fd)

    def _warn(self, error: Exception) -> None:
        if not self._warned:
            log.warning("can't map %s (%s): other processes' changes are polled", self.path, error)
            self._warned = True

    def get(self) -> int:
        value = self._value
        if value is None and self._absent and os.access(self._directory, os.F_OK):
            # Until the first write anywhere creates the state directory, another process's
            # first write can only be noticed by looking (`access`: no exception, < 1 µs):
            # without it a hit right after that write would be answered from the old state.
            self.open()
            value = self._value
        return self._fallback if value is None else value.value

    def set(self, serial: int) -> None:
        self._fallback = serial
        if self._value is not None and serial > self._value.value:
            self._value.value = serial  # one aligned 8-byte store

    def close(self) -> None:
        self._value = None  # releases the buffer export before the mapping closes
        if self._mapping is not None:
            self._mapping.close()
            self._mapping = None


class LocalFeed:
    """`ChangeFeed` on the state directory (see the module's docstring for the format)."""

    def __init__(self, state_dir: Path, max_size: int = MAX_SIZE) -> None:
        self.path = state_dir / FEED_NAME
        self.max_size = max_size
        self._shared = _SharedSerial(state_dir / SERIAL_NAME)
        self._tail = _Cursor(self.path)  # the appenders' (and latest()'s) view
        self._reader = _Cursor(self.path)  # since()'s
        self._lock = threading.Lock()
        _instances.add(self)

    # ------------------------------------------------------------------ ChangeFeed

    def append(self, keys: Sequence[str]) -> int:
        payload = json.dumps(list(keys), separators=(",", ":")).encode("ascii")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, _Flock(self._shared.path):
            self._shared.open()
            last = self._last_serial()
            if self._tail.fd < 0 or self._tail.size > self.max_size:
                self._start_afresh(last)
            elif self._tail.ends_torn():
                os.truncate(self.path, self._tail.offset)
            serial = last + 1
            line = b"%d %08x %s\n" % (serial, zlib.crc32(payload), payload)
            _append(self.path, line, self._tail.offset)
            self._shared.set(serial)
            return serial

    def latest(self) -> int:
        with self._lock:
            self._shared.open()
            return self._last_serial()

    def since(self, serial: int) -> Changes | Resync:
        with self._lock:
            self._shared.open()
            cursor = self._reader
            gap = False
            if cursor.fd < 0 or cursor.serial != serial:
                if not cursor.reopen(after=serial):  # never written, or lost: the shared serial
                    latest = self._shared.get()
                    return Changes(serial, []) if serial == latest else Resync(latest)
                gap = cursor.base > serial
            keys: dict[str, None] = {}
            for record_serial, record_keys in cursor.advance():
                if record_serial > serial:
                    keys.update(dict.fromkeys(record_keys))
            gap |= cursor.damaged or cursor.serial < serial
            cursor.damaged = False
            return Resync(cursor.serial) if gap else Changes(cursor.serial, list(keys))

    def announced(self) -> int:
        return self._shared.get()

    def close(self) -> None:
        with self._lock:
            self._tail.close()
            self._reader.close()
            self._shared.close()

    # ------------------------------------------------------------------ appending

    def _last_serial(self) -> int:
        self._tail.advance()
        return max(self._tail.serial, self._shared.get())

    def _start_afresh(self, last: int) -> None:
        write_atomic(self.path, b"creamery-feed 1 base=%d\n" % last, mode=0o644)
        if not self._tail.reopen():
            raise OSError(f"{self.path} vanished while it was started afresh")

    def _forked(self) -> None:
        self._lock = threading.Lock()  # the parent's may have been held by a thread not here


def _append(path: Path, line: bytes, expected_size: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    try:
        written = os.write(fd, line)
        if written != len(line):  # the disk is full: leave no torn record behind
            os.ftruncate(fd, expected_size)
            raise OSError(f"{path}: short write ({written} of {len(line)} bytes)")
    finally:
        os.close(fd)


class _Flock:
    """The appenders' lock, on its own open file: a forked child must not share its parent's."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> None:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)  # releases the lock


_instances: weakref.WeakSet[LocalFeed] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for feed in list(_instances):
        feed._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)
