"""Where distributions live. One small interface; `LocalStorage` implements it for directories."""

from __future__ import annotations

from collections.abc import Callable, Iterator
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


ChangeCallback = Callable[[list[str]], None]
"""Receives relpaths whose state may have changed (created, modified, deleted or moved)."""


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

    def watch(self, on_change: ChangeCallback) -> Callable[[], None] | None:
        """Call *on_change* from a background thread when files change; returns a stopper.

        Returns None when change events are unavailable (the caller then rescans periodically).
        """
        ...
