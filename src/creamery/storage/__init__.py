"""Where distributions live. One small interface; `LocalStorage` implements it for directories."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple, Protocol


class StoredFile(NamedTuple):
    """A file under one of the roots, as the scan or a change event saw it."""

    relpath: str  # POSIX path relative to its root: the URL path under /packages/
    root: str  # the root's absolute path, one shared string (no per-file copy: memory)
    size: int
    mtime_ns: int
    inode: int = 0  # tells a replaced file from the old one even within one mtime tick

    @property
    def abspath(self) -> str:
        return f"{self.root}/{self.relpath}"

    @property
    def path(self) -> Path:
        return Path(self.abspath)


class Listing(NamedTuple):
    """One directory as it is now: its visible file names (None: it is gone), and the
    relpaths of the subdirectories that no scan listed yet."""

    relpath: str  # "" for a root
    files: set[str] | None
    new_directories: list[str]


class Storage(Protocol):
    def scan(self) -> Iterator[StoredFile]:
        """Every visible file under every root (first root wins on equal relpaths)."""
        ...

    def stat(self, relpath: str) -> StoredFile | None:
        """The file's current state, or None when no root holds it."""
        ...

    def scan_under(self, relpath: str) -> Iterator[StoredFile]:
        """Every visible file below a directory relpath, in every root."""
        ...

    def changed_listings(self) -> Sequence[Listing]:
        """The directories that may have changed since they were last listed (changes that no
        event reported: no watch, a network file system), listed again by name. One `stat`
        per directory, one listing (no `stat` per file) per changed directory."""
        ...
