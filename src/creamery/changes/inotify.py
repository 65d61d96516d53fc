"""Linux inotify, read directly, so that a request can apply the events already queued.

The kernel queues an inotify event inside the system call that changed the file: when `cp`
returns, the event is waiting on our descriptor. watchdog then passes it through three threads
and queues (and holds an unpaired move back for 0.5 s), so a request made right after a copy
could be answered before the index knew. Here one descriptor is read under one lock, by a
background thread or by the request that finds it readable, and applied before the lock is
released. So "the descriptor is not readable and no batch is being applied" means every change
made before the check is in the index, and the check costs one `poll` (no file-system access).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import select
import struct
import threading
from collections.abc import Callable, Iterable

log = logging.getLogger("creamery.changes")

IN_MODIFY = 0x2
IN_ATTRIB = 0x4
IN_CLOSE_WRITE = 0x8
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x01000000
IN_EXCL_UNLINK = 0x04000000
IN_ISDIR = 0x40000000
# Writes, moves and deletes only: opens and closes-after-read would wake us on every download.
WATCH_MASK = (
    IN_MODIFY
    | IN_ATTRIB
    | IN_CLOSE_WRITE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CREATE
    | IN_DELETE
    | IN_ONLYDIR
    | IN_EXCL_UNLINK
)
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len (struct inotify_event)

# File systems whose changes made on another machine produce no inotify event here.
NETWORK_FILE_SYSTEMS = frozenset(
    {
        0x6969,  # NFS
        0x517B,  # SMB
        0xFF534D42,  # CIFS
        0xFE534D42,  # SMB2
        0x65735546,  # FUSE (sshfs, s3fs, virtiofs shares, ...)
        0x00C36400,  # Ceph
        0x5346414F,  # AFS
        0x6B414653,  # kAFS
        0x01021997,  # 9P (WSL and VM shares)
        0x73757245,  # Coda
        0x01161970,  # GFS2
        0x7461636F,  # OCFS2
        0x0BD00BD0,  # Lustre
        0x47504653,  # GPFS
        0x786F4256,  # VirtualBox shared folders
    }
)

OnChange = Callable[[list[str]], None]


def _libc() -> ctypes.CDLL | None:
    # The running interpreter's own symbols include the C library's (glibc or musl); no
    # ctypes.util.find_library, which may spawn ldconfig at import time.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.inotify_init1  # noqa: B018 - raises AttributeError where there is no inotify
        libc.inotify_add_watch  # noqa: B018
    except (OSError, AttributeError, TypeError):  # TypeError: Windows has no CDLL(None)
        return None
    return libc


_LIBC = _libc()


def available() -> bool:
    return _LIBC is not None


def file_system_type(path: str) -> int | None:
    """statfs(2)'s f_type (its first field on every Linux ABI), or None when unknown."""
    if _LIBC is None:
        return None
    buffer = ctypes.create_string_buffer(512)
    if _LIBC.statfs(os.fsencode(path), buffer) != 0:
        return None
    return ctypes.c_long.from_buffer(buffer).value & 0xFFFFFFFF


class Inotify:
    """Watches directory trees; `pending()` and `drain()` make queued events visible at once.

    *on_change* receives absolute paths whose state may have changed (files or directories);
    *on_overflow* is called when the kernel dropped events (the caller rescans).
    """

    def __init__(
        self,
        tops: Iterable[str],
        on_change: OnChange,
        on_overflow: Callable[[], None],
    ) -> None:
        if _LIBC is None:
            raise OSError(errno.ENOSYS, "inotify is not available")
        fd = _LIBC.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        self._fd = fd
        self._on_change = on_change
        self._on_overflow = on_overflow
        self._dirs: dict[int, str] = {}  # watch descriptor -> absolute directory path
        self._lock = threading.Lock()  # held while reading *and* applying a batch
        self.complete = True  # False once a directory could not be watched
        self.tops = tuple(tops)
        for top in self.tops:
            self._watch_tree(top, required=True)
        self._poller = select.poll()  # a poll object: half the cost of select.select
        self._poller.register(fd, select.POLLIN)
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="creamery-inotify", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ the request's side

    def pending(self) -> bool:
        """True when events are queued or being applied (one zero-timeout select, no I/O)."""
        # In this order: a batch leaves the descriptor only while the lock is held, so "not
        # readable", then "not locked", proves the batch read before was applied.
        try:
            readable = bool(self._poller.poll(0))
        except RuntimeError:  # polled by another thread at this moment: assume events
            return True
        return readable or self._lock.locked()

    def drain(self) -> None:
        """Apply every event queued so far; returns when they are in the index."""
        with self._lock:
            if self._fd < 0:
                return
            paths, overflow = self._read_all()
            if overflow:
                for top in self.tops:
                    self._watch_tree(top, required=False)  # directories made meanwhile
                self._on_overflow()
            elif paths:
                self._on_change(sorted(paths))

    def stop(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(timeout=2)
        with self._lock:
            os.close(self._fd)
            self._fd = -1
        os.close(self._stop_r)
        os.close(self._stop_w)

    # ------------------------------------------------------------------ background

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        while True:
            ready = {fd for fd, _ in poller.poll()}
            if self._stop_r in ready:
                return
            try:
                self.drain()
            except Exception:  # the watcher must not die; the periodic rescan still runs
                log.exception("applying file-system events failed")

    # ------------------------------------------------------------------ reading events

    def _read_all(self) -> tuple[set[str], bool]:
        paths: set[str] = set()
        overflow = False
        while True:
            try:
                data = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                return paths, overflow
            if not data:
                return paths, overflow
            for wd, mask, _cookie, name in _parse(data):
                if mask & IN_Q_OVERFLOW:
                    overflow = True
                    continue
                if mask & IN_IGNORED:
                    self._dirs.pop(wd, None)
                    continue
                directory = self._dirs.get(wd)
                if directory is None:
                    continue
                path = f"{directory}/{name}" if name else directory
                if mask & IN_ISDIR:
                    self._directory_event(mask, path)
                paths.add(path)

    def _directory_event(self, mask: int, path: str) -> None:
        if mask & (IN_MOVED_FROM | IN_DELETE):
            self._forget_tree(path)
        hidden = path.rpartition("/")[2].startswith(".")  # our state directory, for one
        if mask & (IN_CREATE | IN_MOVED_TO) and not hidden:
            # Files put in it before this watch existed are found by the caller's rescan of
            # the directory (its path is reported too).
            self._watch_tree(path, required=False)

    # ------------------------------------------------------------------ watches

    def _watch_tree(self, top: str, *, required: bool) -> None:
        seen: set[tuple[int, int]] = set()
        stack = [top]
        while stack:
            directory = stack.pop()
            try:
                st = os.stat(directory)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue  # a symbolic link loop
            seen.add((st.st_dev, st.st_ino))
            if not self._add_watch(directory, required=required and directory == top):
                continue
            try:
                with os.scandir(directory) as entries:
                    for entry in entries:
                        if not entry.name.startswith(".") and _is_dir(entry):
                            stack.append(entry.path)
            except OSError:
                continue

    def _add_watch(self, directory: str, *, required: bool) -> bool:
        assert _LIBC is not None
        wd = _LIBC.inotify_add_watch(self._fd, os.fsencode(directory), WATCH_MASK)
        if wd >= 0:
            self._dirs[wd] = directory
            return True
        code = ctypes.get_errno()
        if code in (errno.ENOENT, errno.ENOTDIR):
            return False  # vanished meanwhile: its deletion event follows
        if required:
            raise OSError(code, f"can't watch {directory}: {os.strerror(code)}")
        if self.complete:
            log.warning(
                "can't watch %s (%s): changes there are seen by rescans only%s",
                directory,
                os.strerror(code),
                " (raise fs.inotify.max_user_watches)" if code == errno.ENOSPC else "",
            )
        self.complete = False
        return False

    def _forget_tree(self, top: str) -> None:
        assert _LIBC is not None
        prefix = top + "/"
        for wd, directory in list(self._dirs.items()):
            if directory == top or directory.startswith(prefix):
                del self._dirs[wd]
                _LIBC.inotify_rm_watch(self._fd, wd)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _parse(data: bytes) -> list[tuple[int, int, int, str]]:
    events = []
    offset = 0
    while offset + _HEADER.size <= len(data):
        wd, mask, cookie, length = _HEADER.unpack_from(data, offset)
        offset += _HEADER.size
        name = data[offset : offset + length].rstrip(b"\0")
        offset += length
        events.append((wd, mask, cookie, os.fsdecode(name)))
    return events
