"""Package directories on a local (or network) file system: `LocalStorage`.

Several roots, read in order: the first root holding a key wins. Writes go to the first root.
A file's version is its inode: with the size and mtime_ns in `StoredFile`, it tells a replaced
file apart even within one mtime tick (a rename brings the new file's inode).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from creamery.core import durable
from creamery.storage import (
    AlreadyExists,
    Listing,
    StoredFile,
    UnsafeKey,
    is_hidden,
    is_safe_relpath,
)

__all__ = ["LocalReader", "LocalStorage", "is_hidden", "is_safe_relpath"]

log = logging.getLogger("creamery.storage")

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# A change within one timestamp tick of a listing leaves the directory's mtime alone, so a
# directory listed within a tick of its mtime counts as changed. Timestamps with sub-second
# digits come from a fine clock (a jiffy, a few ms); whole seconds may mean 1-2 s ticks (FAT).
_RACY_FINE_NS = 50_000_000
_RACY_COARSE_NS = 2_000_000_000
Listed = dict[str, tuple[int, int]]  # directory -> (its mtime_ns, time.time_ns() when listed)


class LocalReader:
    """An open file: its descriptor pins the version opened, whatever replaces the name."""

    __slots__ = ("_fd", "mtime_ns", "size", "version")

    def __init__(self, fd: int, st: os.stat_result) -> None:
        self._fd = fd
        self.size = st.st_size
        self.mtime_ns = st.st_mtime_ns
        self.version: int | str = st.st_ino

    def read(self, offset: int, length: int) -> bytes:
        data = os.pread(self._fd, length, offset)
        if len(data) == length or not data:
            return data
        parts, got = [data], len(data)  # rare: beyond the kernel's limit per call (2 GiB)
        while got < length and (more := os.pread(self._fd, length - got, offset + got)):
            parts.append(more)
            got += len(more)
        return b"".join(parts)

    def fileno(self) -> int | None:
        return self._fd

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> LocalReader:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class LocalStorage:
    remote = False  # system calls on a local (or mounted) file system: cheap, made inline

    def __init__(self, roots: tuple[Path, ...]) -> None:
        self.roots = tuple(Path(r) for r in roots)
        # Each root's text is the `place` of its files: one string shared by all of them.
        self._places = tuple(str(r) for r in self.roots)
        self._listed: Listed = {}  # every directory the last scan listed

    # ------------------------------------------------------------------ reading

    def scan(self, prefix: str = "") -> Iterator[StoredFile]:
        if prefix and not is_safe_relpath(prefix := prefix.removesuffix("/")):
            return
        seen: set[str] = set()
        listed: Listed = self._listed if prefix else {}
        for place in self._places:
            top = f"{place}/{prefix}" if prefix else place
            if prefix and not os.path.isdir(top):
                continue
            for stored in _walk(place, top, listed):
                if stored.key not in seen:
                    seen.add(stored.key)
                    yield stored
        if not prefix:
            self._listed = listed

    def scan_after(self, prefix: str, after: str) -> Iterator[StoredFile]:
        """`ScansAfter`: the directory read whole (and sorted), no scan's record changed."""
        prefix = prefix.removesuffix("/")
        if not (is_safe_relpath(prefix) and is_safe_relpath(after)):
            return iter(())
        if not after.startswith(prefix + "/"):
            return iter(())
        seen: dict[str, StoredFile] = {}
        for place in self._places:
            top = f"{place}/{prefix}"
            if os.path.isdir(top):
                for stored in _walk(place, top, {}):  # not the scans' record of directories
                    seen.setdefault(stored.key, stored)
        floor = _sort_key(after)
        found = sorted((s for s in seen.values() if _sort_key(s.key) > floor), key=_key_order)
        return iter(found)

    def stat(self, key: str) -> StoredFile | None:
        if not is_safe_relpath(key):
            return None
        for place in self._places:
            try:
                st = os.stat(f"{place}/{key}")
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                return StoredFile(key, st.st_size, st.st_ino, st.st_mtime_ns, place)
        return None

    def open(self, stored: StoredFile) -> LocalReader:
        path = self.local_path(stored)
        if path is None:
            raise FileNotFoundError(errno.ENOENT, "not a file of this storage", stored.key)
        fd = os.open(path, os.O_RDONLY | _CLOEXEC)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise FileNotFoundError(errno.ENOENT, "not a file", stored.key)
        except BaseException:
            os.close(fd)
            raise
        return LocalReader(fd, st)

    def local_path(self, stored: StoredFile) -> str | None:
        if stored.place not in self._places or not is_safe_relpath(stored.key):
            return None
        return f"{stored.place}/{stored.key}"

    def url(self, stored: StoredFile) -> str | None:
        return None  # served from the file itself

    def locate(self, absolute: str) -> str | None:
        """The relpath of an absolute path under one of the roots, or None."""
        for root in self.roots:
            root_text = str(root)
            if absolute.startswith(root_text + os.sep):
                return absolute[len(root_text) + 1 :].replace(os.sep, "/")
        return None

    # ------------------------------------------------------------------ writing

    @property
    def upload_root(self) -> Path:
        return self.roots[0]

    def put(self, key: str, content: Path | bytes, *, if_absent: bool) -> StoredFile:
        spool = content if isinstance(content, Path) else None
        try:
            if not is_safe_relpath(key):
                raise UnsafeKey(f"unsafe key {key!r}")
            root = self.upload_root
            if not root.is_dir():  # never recreate a root that is gone (an unmounted disk)
                raise FileNotFoundError(errno.ENOENT, "the storage root is gone", str(root))
            if if_absent and any(self._holds(place, key) for place in self._places[1:]):
                raise AlreadyExists(key)
            if spool is None:
                assert isinstance(content, bytes)
                spool = _spool_bytes(root, content)
            target = root / key
            if not durable.place(spool, target, overwrite=not if_absent):
                raise AlreadyExists(key)
        finally:
            if spool is not None:
                spool.unlink(missing_ok=True)
        st = os.stat(target)
        return StoredFile(key, st.st_size, st.st_ino, st.st_mtime_ns, self._places[0])

    def delete(self, key: str) -> bool:
        """Remove *key* from every root; True when something was removed."""
        if not is_safe_relpath(key):
            return False
        removed = False
        for root in self.roots:
            path = root / key
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed = True
                durable.fsync_directory(path.parent)
        return removed

    def health(self) -> str | None:
        for root in self.roots:
            if not root.is_dir():
                return f"{root} is gone (not a directory)"
            if not os.access(root, os.R_OK | os.X_OK):
                return f"{root} is not readable"
        if not os.access(self.upload_root, os.W_OK | os.X_OK):
            return f"{self.upload_root} is not writable: uploads would fail"
        return None

    @staticmethod
    def _holds(place: str, key: str) -> bool:
        try:
            return stat.S_ISREG(os.stat(f"{place}/{key}").st_mode)
        except OSError:
            return False

    def changed_listings(self) -> list[Listing]:
        listings: list[Listing] = []
        for directory, (mtime_ns, listed_ns) in list(self._listed.items()):
            try:
                st = os.stat(directory)
            except OSError:
                st = None
            unchanged = st is not None and st.st_mtime_ns == mtime_ns
            if unchanged and listed_ns - mtime_ns >= _racy_window(mtime_ns):
                continue
            listing = self._list(directory)
            if listing is not None:
                listings.append(listing)
        return listings

    def _list(self, directory: str) -> Listing | None:
        """The visible files and the directories not listed before, of one directory."""
        root = next((r for r in map(str, self.roots) if _is_below(directory, r)), None)
        if root is None:
            return None
        relative = directory[len(root) + 1 :].replace(os.sep, "/")
        files: set[str] = set()
        new_directories: list[str] = []
        try:
            self._listed[directory] = (os.stat(directory).st_mtime_ns, time.time_ns())
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    if _is_dir(entry):
                        if entry.path not in self._listed:
                            new_directories.append(_join(relative, entry.name))
                    else:
                        files.add(entry.name)
        except OSError:
            self._listed.pop(directory, None)
            return Listing(relative, None, [])
        return Listing(relative, files, new_directories)


def _sort_key(key: str) -> bytes:
    """S3's order: the UTF-8 bytes (a name that is no UTF-8 keeps its raw bytes)."""
    return key.encode("utf-8", "surrogateescape")


def _key_order(stored: StoredFile) -> bytes:
    return _sort_key(stored.key)


def _is_below(path: str, root: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def _join(directory: str, name: str) -> str:
    return f"{directory}/{name}" if directory else name


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _racy_window(mtime_ns: int) -> int:
    return _RACY_COARSE_NS if mtime_ns % 1_000_000_000 == 0 else _RACY_FINE_NS


def _spool_bytes(directory: Path, data: bytes) -> Path:
    """*data* in a hidden temp file of *directory*, for `durable.place` to flush and link."""
    fd, path = durable.new_temp_file(directory)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _walk(place: str, top: str, listed: Listed) -> Iterator[StoredFile]:
    """Every visible file below *top*; records each directory's mtime in *listed*."""
    stack = [top]
    root_len = len(place) + 1
    while stack:
        directory = stack.pop()
        try:
            # Before listing: a change made while listing leaves a newer mtime behind.
            listed[directory] = (os.stat(directory).st_mtime_ns, time.time_ns())
            entries = os.scandir(directory)
        except OSError as error:
            log.warning("can't list %s: %s", directory, error.strerror)
            continue
        with entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                try:
                    if entry.is_dir():
                        stack.append(entry.path)
                    elif entry.is_file():
                        st = entry.stat()
                        key = entry.path[root_len:].replace(os.sep, "/")
                        # st_ino as `stat()` gives it: a directory entry's may differ (overlayfs)
                        yield StoredFile(key, st.st_size, st.st_ino, st.st_mtime_ns, place)
                except OSError:
                    continue  # vanished while scanning
