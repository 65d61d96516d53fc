"""The local file system's change events: files copied, moved or deleted by other tools.

They need no serial: every process receives them itself. On Linux inotify is read directly
(`inotify.py`: a request can apply what is queued before it is answered); elsewhere watchdog;
without either (or with `--disable-watch`) the periodic rescan and the look before a 404 or a
listing (`Storage.changed_listings`) find the changes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from creamery.changes import inotify
from creamery.storage.local import is_hidden

log = logging.getLogger("creamery.changes")

ChangeCallback = Callable[[list[str]], None]
"""Receives relpaths whose state may have changed (created, modified, deleted or moved)."""


class Watch(Protocol):
    """A running watch on the package directories' change events."""

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


def watch(
    roots: Sequence[Path], on_change: ChangeCallback, on_overflow: Callable[[], None]
) -> Watch | None:
    """Call *on_change* with the relpaths that changed under *roots* (*on_overflow* when events
    were lost: rescan). None when events are unavailable (the caller rescans periodically)."""
    tops = tuple(Path(r) for r in roots)

    def changed(paths: list[str]) -> None:
        relpaths = [_locate(tops, p) for p in paths]
        visible = [r for r in relpaths if r is not None and not is_hidden(r)]
        if visible:
            on_change(visible)

    if inotify.available():
        try:
            return InotifyWatch(tops, changed, on_overflow)
        except OSError as error:
            log.warning("inotify unavailable (%s); trying watchdog", error)
    return _watchdog(tops, changed)


def _locate(roots: tuple[Path, ...], absolute: str) -> str | None:
    """The relpath of an absolute path under one of the roots, or None."""
    for root in roots:
        root_text = str(root)
        if absolute.startswith(root_text + os.sep):
            return absolute[len(root_text) + 1 :].replace(os.sep, "/")
    return None


class InotifyWatch:
    """Linux inotify (`inotify.py`): synchronous where every root is a local file system."""

    def __init__(
        self, roots: tuple[Path, ...], on_change: ChangeCallback, on_overflow: Callable[[], None]
    ) -> None:
        self._inotify = inotify.Inotify([str(r) for r in roots], on_change, on_overflow)
        remote = [r for r in roots if _is_network_file_system(r)]
        if remote:
            log.info(
                "%s on a network file system: changes made elsewhere are found before a 404 "
                "or a listing, and by rescans",
                ", ".join(map(str, remote)),
            )
        self._local = not remote

    @property
    def synchronous(self) -> bool:
        return self._local and self._inotify.complete

    def pending(self) -> bool:
        return self._inotify.pending()

    def drain(self) -> None:
        self._inotify.drain()

    def stop(self) -> None:
        self._inotify.stop()


def _is_network_file_system(root: Path) -> bool:
    kind = inotify.file_system_type(str(root))
    return kind is None or kind in inotify.NETWORK_FILE_SYSTEMS


class WatchdogWatch:
    """watchdog where inotify is missing (macOS, Windows): events arrive late, never drained."""

    synchronous = False

    def __init__(self, stop: Callable[[], None]) -> None:
        self.stop = stop

    def pending(self) -> bool:
        return False

    def drain(self) -> None:
        return None


def _watchdog(roots: tuple[Path, ...], changed: ChangeCallback) -> Watch | None:
    try:
        from watchdog import events
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer
    except ImportError:  # pragma: no cover - watchdog is a dependency
        return None
    # Only writes, moves and deletes: subscribing to opens and closes-after-read would make
    # every download wake this thread (and cost the kernel an event per read).
    wanted: list[type[FileSystemEvent]] = [
        events.FileCreatedEvent,
        events.FileModifiedEvent,
        events.FileClosedEvent,
        events.FileDeletedEvent,
        events.FileMovedEvent,
        events.DirCreatedEvent,
        events.DirDeletedEvent,
        events.DirMovedEvent,
    ]

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            paths = [event.src_path, getattr(event, "dest_path", "") or ""]
            changed([os.fsdecode(p) for p in paths if p])

    try:
        observer = Observer()  # inotify_init can fail too: the per-user instance limit
        for root in roots:
            observer.schedule(Handler(), str(root), recursive=True, event_filter=wanted)
        observer.start()
    except OSError as error:
        log.warning("file-system events unavailable (%s); relying on periodic rescans", error)
        return None

    def stop() -> None:
        observer.stop()
        observer.join(timeout=2)

    return WatchdogWatch(stop)
