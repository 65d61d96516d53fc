"""Durable, atomic file writes: the one helper every writer uses.

A file is written to a temp name, flushed to disk (`fsync`), then renamed or linked into place,
and the directory is flushed after the rename, so a power cut leaves the old file or the whole
new one, never a name pointing at missing blocks.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

# New files get 0666 less the umask, as pypiserver's uploads and Apache's htpasswd get, not
# mkstemp's 0600: a web server or backup job running as another user must be able to read them.
FILE_MODE = 0o666
_BINARY = getattr(os, "O_BINARY", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def create_exclusive(path: Path, mode: int = FILE_MODE, *, readable: bool = False) -> int:
    """Open a new file for writing (and reading); FileExistsError when the name is taken."""
    access = os.O_RDWR if readable else os.O_WRONLY
    return os.open(path, access | os.O_CREAT | os.O_EXCL | _BINARY | _CLOEXEC, mode)


def temp_name(directory: Path, prefix: str = ".creamery-") -> Path:
    return directory / f"{prefix}{secrets.token_hex(8)}.part"


def new_temp_file(
    directory: Path, prefix: str = ".creamery-", mode: int = FILE_MODE, *, readable: bool = False
) -> tuple[int, Path]:
    """A new, open temp file in *directory* (a fresh name whatever else is there)."""
    while True:
        path = temp_name(directory, prefix)
        try:
            return create_exclusive(path, mode, readable=readable), path
        except FileExistsError:
            continue


def fsync_file(path: Path) -> None:
    """Flush a closed file's data to disk (a read-only descriptor is enough on POSIX)."""
    fd = os.open(path, os.O_RDONLY | _BINARY | _CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_directory(directory: Path) -> None:
    """Make a rename or link in *directory* survive a power cut (POSIX; a no-op elsewhere)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY | _CLOEXEC)
    try:
        with contextlib.suppress(OSError):  # some file systems refuse fsync on a directory
            os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(
    path: Path,
    data: bytes,
    *,
    mode: int = FILE_MODE,
    before_replace: Callable[[Path], None] | None = None,
) -> None:
    """Create or replace *path* with *data*: readers see the old file or the new one.

    *before_replace* gets the flushed temp file just before it takes the name (to copy an old
    file's owner and mode onto it, say).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = new_temp_file(path.parent, mode=mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if before_replace is not None:
            before_replace(temp)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    fsync_directory(path.parent)


def place(source: Path, target: Path, *, overwrite: bool) -> bool:
    """Move a finished, closed file to *target* durably; False when the name was taken.

    Without *overwrite* a hard link claims the name (it fails on an existing name, so of
    several publishers exactly one wins). The source is flushed first and the target's
    directory after. A source on another file system is copied beside the target first
    (still atomic: the copy is flushed, then linked or renamed). *source* is gone afterwards.
    """
    try:
        fsync_file(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            placed = _link_or_replace(source, target, overwrite=overwrite)
        except OSError as error:
            if error.errno != errno.EXDEV:
                raise
            placed = _place_across_devices(source, target, overwrite=overwrite)
        if placed:
            fsync_directory(target.parent)
        return placed
    finally:
        with contextlib.suppress(FileNotFoundError):
            source.unlink()


def _link_or_replace(source: Path, target: Path, *, overwrite: bool) -> bool:
    if overwrite:
        os.replace(source, target)
        return True
    try:
        os.link(source, target)
    except FileExistsError:
        return False
    return True


def _place_across_devices(source: Path, target: Path, *, overwrite: bool) -> bool:
    copy = temp_name(target.parent)
    try:
        fd = create_exclusive(copy)
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        return _link_or_replace(copy, target, overwrite=overwrite)
    finally:
        with contextlib.suppress(FileNotFoundError):
            copy.unlink()
