"""Where distributions live. One small interface; `LocalStorage` implements it for directories."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
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


ChangeCallback = Callable[[list[str]], None]
"""Receives relpaths whose state may have changed (created, modified, deleted or moved)."""


class Watch(Protocol):
    """A running watch on the storage's change events."""

    @property
    def synchronous(self) -> bool:
        """True when `drain()` applies every change made on this machine before it was called
        (Linux inotify on local file systems); False when events arrive late or not at all."""
        ...

    def pending(self) -> bool:
        """Cheap (no file-system access): are events queued that are not applied yet?"""
        ...

    def drain(self) -> None:
        """Apply the queued events now; returns when they are applied."""
        ...

    def stop(self) -> None: ...


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

    def watch(self, on_change: ChangeCallback, on_overflow: Callable[[], None]) -> Watch | None:
        """Call *on_change* when files change (*on_overflow* when events were lost: rescan).

        Returns None when change events are unavailable (the caller then rescans periodically).
        """
        ...

    def changed_listings(self) -> Sequence[Listing]:
        """The directories that may have changed since they were last listed (changes that no
        event reported: no watch, a network file system), listed again by name. One `stat`
        per directory, one listing (no `stat` per file) per changed directory."""
        ...
