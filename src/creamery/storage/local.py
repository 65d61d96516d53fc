"""Package directories on a local (or network) file system."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from creamery import durable
from creamery.storage import ChangeCallback, StoredFile

if TYPE_CHECKING:
    from creamery.state import StateDir

log = logging.getLogger("creamery.storage")


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
        self.scratch = scratch

    # ------------------------------------------------------------------ reading

    def scan(self) -> Iterator[StoredFile]:
        seen: set[str] = set()
        for root in self.roots:
            for stored in _walk(root, root):
                if stored.relpath not in seen:
                    seen.add(stored.relpath)
                    yield stored

    def scan_under(self, relpath: str) -> Iterator[StoredFile]:
        for root in self.roots:
            top = root / relpath
            if top.is_dir():
                yield from _walk(root, top)

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

    # ------------------------------------------------------------------ change events

    def watch(self, on_change: ChangeCallback) -> Callable[[], None] | None:
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
        storage = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                paths = [event.src_path, getattr(event, "dest_path", "") or ""]
                relpaths = [storage.locate(os.fsdecode(p)) for p in paths if p]
                changed = [r for r in relpaths if r is not None and not is_hidden(r)]
                if changed:
                    on_change(changed)

        observer = Observer()
        try:
            for root in self.roots:
                observer.schedule(Handler(), str(root), recursive=True, event_filter=wanted)
            observer.start()
        except OSError as error:
            log.warning("file-system events unavailable (%s); relying on periodic rescans", error)
            return None

        def stop() -> None:
            observer.stop()
            observer.join(timeout=2)

        return stop


def _walk(root: Path, top: Path) -> Iterator[StoredFile]:
    stack = [str(top)]
    root_text = str(root)
    root_len = len(root_text) + 1
    while stack:
        directory = stack.pop()
        try:
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
