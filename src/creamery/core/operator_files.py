"""Reading a file an operator names (`-P`, `--permissions`, `--config`, `--welcome`, ...).

Such a path can be anything: a FIFO (a plain open() waits for a writer forever: a start-up that
hangs, a reload thread stuck for good), a directory, a device (`/dev/zero` reads without end),
a huge file, a symlink loop. So it is opened non-blocking, must be a regular file, and is read
only up to a bound: anything else is an OperatorFileError, one line, before a byte is parsed.
The null device is the one exception: `/dev/null` is the shell's empty file (`--ignorelist-file
/dev/null`, as pypiserver users write it), so it reads as empty.
The bytes come from the one open file, so a file replaced mid-read is read whole or not at all.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from creamery.core.config import ConfigError

DEFAULT_MAX_BYTES = 1 << 20

_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


class OperatorFileError(ConfigError):
    """A named file can't be used: `what 'path' problem`; `problem` alone for callers that
    word their own line (a reload keeping the last good contents)."""

    def __init__(
        self, path: str | os.PathLike[str], what: str, problem: str, errno: int | None = None
    ) -> None:
        super().__init__(f"{what} {str(path)!r} {problem}")
        self.path = str(path)
        self.what = what
        self.problem = problem
        self.errno = errno  # the OSError's, when opening or reading failed


def read_with_stat(
    path: str | os.PathLike[str], what: str, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[bytes, os.stat_result]:
    """The file's bytes and the stat of the file read (to notice a later change)."""
    try:
        fd = os.open(path, _FLAGS)
    except OSError as error:
        raise _unreadable(path, what, error) from None
    try:
        st = os.fstat(fd)
        if _is_null_device(st):
            return b"", st
        if not stat.S_ISREG(st.st_mode):
            raise OperatorFileError(path, what, f"is not a regular file ({_kind(st.st_mode)})")
        if st.st_size > max_bytes:
            raise OperatorFileError(path, what, f"is larger than {max_bytes} bytes")
        raw = _read_at_most(fd, max_bytes + 1)  # it may grow after the stat
    except OSError as error:
        raise _unreadable(path, what, error) from None
    finally:
        os.close(fd)
    if len(raw) > max_bytes:
        raise OperatorFileError(path, what, f"is larger than {max_bytes} bytes")
    return raw, st


def read_operator_file(
    path: str | os.PathLike[str], what: str, max_bytes: int = DEFAULT_MAX_BYTES
) -> bytes:
    """The bytes of the file an operator named; OperatorFileError when it can't be used."""
    return read_with_stat(path, what, max_bytes)[0]


def read_operator_text(
    path: str | os.PathLike[str], what: str, max_bytes: int = DEFAULT_MAX_BYTES
) -> str:
    """The file as UTF-8 text (a leading BOM dropped); OperatorFileError when it isn't."""
    raw = read_operator_file(path, what, max_bytes)
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        raise OperatorFileError(path, what, f"is not UTF-8 (byte {error.start})") from None


def read_name_list(path: str | os.PathLike[str], what: str) -> list[str]:
    """A list file's names: one a line, `#` starts a comment, blank lines skipped (not
    normalized: the caller says how)."""
    lines = read_operator_text(path, what).splitlines()
    names = (line.split("#", 1)[0].strip() for line in lines)
    return [name for name in names if name]


def check_operator_file(path: Path | None, what: str) -> Path | None:
    """*path* if it can be read as an operator's file (it is not read); None passes. For a
    start-up check of a file read later: a FIFO fails here, at once, with one line."""
    if path is not None:
        try:
            fd = os.open(path, _FLAGS)
        except OSError as error:
            raise _unreadable(path, what, error) from None
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        mode = st.st_mode
        if not stat.S_ISREG(mode) and not _is_null_device(st):
            raise OperatorFileError(path, what, f"is not a regular file ({_kind(mode)})")
    return path


def _is_null_device(st: os.stat_result) -> bool:
    """Is this the null device (by its device number: a link to it, or a bind mount, too)?"""
    if not stat.S_ISCHR(st.st_mode):
        return False
    try:
        null = os.stat(os.devnull)
    except OSError:
        return False
    return stat.S_ISCHR(null.st_mode) and st.st_rdev == null.st_rdev


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _unreadable(path: str | os.PathLike[str], what: str, error: OSError) -> OperatorFileError:
    reason = error.strerror or type(error).__name__
    return OperatorFileError(path, what, f"can't be read: {reason}", error.errno)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file"
