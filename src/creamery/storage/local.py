"""Package directories on a local (or network) file system."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from creamery.core import durable
from creamery.storage import Listing, StoredFile

if TYPE_CHECKING:
    from creamery.storage.state import StateDir

log = logging.getLogger("creamery.storage")

# A change within one timestamp tick of a listing leaves the directory's mtime alone, so a
# directory listed within a tick of its mtime counts as changed. Timestamps with sub-second
# digits come from a fine clock (a jiffy, a few ms); whole seconds may mean 1-2 s ticks (FAT).
_RACY_FINE_NS = 50_000_000
_RACY_COARSE_NS = 2_000_000_000
Listed = dict[str, tuple[int, int]]  # directory -> (its mtime_ns, time.time_ns() when listed)


def is_hidden(relpath: str) -> bool:
    """Dot files and anything inside a dot directory are never listed nor served."""
    return any(part.startswith(".") for part in relpath.split("/"))


def is_safe_relpath(relpath: str) -> bool:
    """A relpath that stays inside its root: no absolute path, no `..`, no NUL, not hidden."""
    if not relpath or "\0" in relpath or "\\" in relpath or relpath.startswith("/"):
        return False
    parts = PurePosixPath(relpath).parts
    return all(part not in ("..", ".") for part in parts) and not is_hidden(relpath)


class LocalStorage:
    def __init__(self, roots: tuple[Path, ...], scratch: StateDir | None = None) -> None:
        self.roots = tuple(Path(r) for r in roots)
        self._listed: Listed = {}  # every directory the last scan listed
        self.scratch = scratch

    # ------------------------------------------------------------------ reading

    def scan(self) -> Iterator[StoredFile]:
        seen: set[str] = set()
        listed: Listed = {}
        for root in self.roots:
            for stored in _walk(root, root, listed):
                if stored.relpath not in seen:
                    seen.add(stored.relpath)
                    yield stored
        self._listed = listed

    def scan_under(self, relpath: str) -> Iterator[StoredFile]:
        for root in self.roots:
            top = root / relpath
            if top.is_dir():
                yield from _walk(root, top, self._listed)

    def stat(self, relpath: str) -> StoredFile | None:
        if not is_safe_relpath(relpath):
            return None
        for root in self.roots:
            path = root / relpath
            try:
                st = path.stat()
            except OSError:
                continue
            if os.path.isfile(path):
                return StoredFile(relpath, str(root), st.st_size, st.st_mtime_ns, st.st_ino)
        return None

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

    def new_temp_file(self) -> tuple[int, Path]:
        """An open temp file to spool an upload into: in the scratch area of the state
        directory when there is one (outside the package directory, cleaned at start), else
        a hidden file in the upload root."""
        if self.scratch is not None:
            return self.scratch.new_temp_file()
        while True:
            path = durable.temp_name(self.upload_root)
            try:
                return durable.create_exclusive(path), path
            except FileExistsError:
                continue

    def publish(self, temp: Path, relpath: str, *, overwrite: bool) -> bool:
        """Move a finished temp file to *relpath* in the upload root, atomically and durably.

        Without *overwrite* the file appears only if the name is free (of several concurrent
        publishers exactly one wins): returns False when it was taken. The temp file is gone
        afterwards in every case.
        """
        return durable.place(temp, self._upload_path(relpath), overwrite=overwrite)

    def write_bytes(self, relpath: str, data: bytes) -> None:
        """Create or replace a small file (a signature) atomically and durably."""
        durable.write_atomic(self._upload_path(relpath), data)

    def delete(self, relpath: str) -> bool:
        """Remove *relpath* from every root; True when something was removed."""
        if not is_safe_relpath(relpath):
            return False
        removed = False
        for root in self.roots:
            path = root / relpath
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed = True
                durable.fsync_directory(path.parent)
        return removed

    def _upload_path(self, relpath: str) -> Path:
        if not is_safe_relpath(relpath):
            raise ValueError(f"unsafe path {relpath!r}")
        return self.upload_root / relpath

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


def _walk(root: Path, top: Path, listed: Listed) -> Iterator[StoredFile]:
    """Every visible file below *top*; records each directory's mtime in *listed*."""
    stack = [str(top)]
    root_text = str(root)
    root_len = len(root_text) + 1
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
                        relpath = entry.path[root_len:].replace(os.sep, "/")
                        yield StoredFile(
                            relpath, root_text, st.st_size, st.st_mtime_ns, entry.inode()
                        )
                except OSError:
                    continue  # vanished while scanning
