"""The mirror's cache directory: plain files, written atomically, surviving restarts.

    <cache>/pages/<project>.json         what the upstream listed, and when it was fetched
    <cache>/files/<project>/<filename>   verified distributions and their .metadata files
    <cache>/tmp/                         downloads in progress (same file system: atomic rename)

A file's access time records when it was last served (set explicitly, so `noatime` mounts work
too, and without touching the modification time that its ETag is made of); the least recently
used files go first when the cache outgrows `--mirror-max-size`. `creamery mirror-cache`
(`cli/mirror_cache.py`) shows and clears it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from creamery.catalog.facts import compute_digests, parse_core_metadata, read_metadata_bytes
from creamery.core import durable
from creamery.core.config import ConfigError
from creamery.core.names import METADATA, parse_filename
from creamery.mirror.listing import (
    Listing,
    UpstreamFile,
    is_safe_filename,
    listing_from_json,
    listing_to_json,
)
from creamery.storage import StoredFile
from creamery.storage.local import LocalStorage

log = logging.getLogger("creamery.mirror")

STALE_TEMP_SECONDS = 24 * 3600  # older partial downloads are leftovers of a crash
EVICT_TO = 0.9  # evict down to this share of the limit, so eviction runs rarely


@dataclass(frozen=True, slots=True)
class CachedFile:
    key: str  # <project>/<filename>
    path: Path
    size: int
    last_used: float


class MirrorCache:
    def __init__(self, directory: Path, max_size: int | None) -> None:
        self.directory = directory
        self.pages = directory / "pages"
        self.files = directory / "files"
        self.store = LocalStorage((self.files,))  # the cached files, served like hosted ones
        self.temp = directory / "tmp"
        self.max_size = max_size
        self._size: int | None = None  # bytes of files, once counted
        self._evicting = threading.Lock()
        try:
            for folder in (self.pages, self.files, self.temp):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(
                f"mirror cache {str(directory)!r} can't be created: {error.strerror}"
            ) from error
        self._remove_stale_temp_files()

    # ------------------------------------------------------------------ pages

    def page_path(self, project: str) -> Path:
        return self.pages / f"{project}.json"

    def load_listing(self, project: str) -> tuple[Listing, float] | None:
        """The stored listing and its fetch time; None when absent or unreadable."""
        path = self.page_path(project)
        try:
            return listing_from_json(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError) as error:
            log.warning("ignoring damaged mirror page %s: %s", path, error)
            return None

    def save_listing(self, listing: Listing, fetched: float) -> None:
        durable.write_atomic(self.page_path(listing.project), listing_to_json(listing, fetched))

    def keep_listing(self, listing: Listing, fetched: float) -> None:
        """Write the listing back if its page is gone from disk (`mirror-cache clear` while we
        ran): a file cached from it must find its page after a restart, upstream or not."""
        if not self.page_path(listing.project).exists():
            self.save_listing(listing, fetched)

    def listing_from_files(self, project: str, url: str, source: str) -> Listing | None:
        """A listing of the project's cached files, for when no upstream answers and its page
        is gone: a cached file keeps its project servable offline. Reads (hashes) each file.

        What only the upstream knew (yanks, upload times) is missing; requires-python comes
        from the file's own metadata. It is saved as fetched at time 0: stale, so the page is
        fetched again as soon as an upstream answers.
        """
        try:
            with os.scandir(self.files / project) as scan:
                paths = sorted(
                    Path(item.path)
                    for item in scan
                    if item.is_file(follow_symlinks=False) and not item.name.endswith(METADATA)
                )
        except (FileNotFoundError, NotADirectoryError):
            return None
        entries = [listed for path in paths if (listed := _cached_entry(path, url)) is not None]
        if not entries:
            return None
        listing = Listing(project, url, source, tuple(entries))
        self.save_listing(listing, 0.0)
        log.warning("mirror: %s: page rebuilt from %d cached files", project, len(entries))
        return listing

    def forget_listing(self, project: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.page_path(project).unlink()

    # ------------------------------------------------------------------ files

    def file_path(self, project: str, filename: str) -> Path:
        return self.files / project / filename

    def cached(self, project: str, filename: str) -> StoredFile | None:
        return self.store.stat(f"{project}/{filename}")

    def touch(self, stored: StoredFile) -> None:
        """Record a use for LRU eviction; the mtime (and so the ETag) stays as it was."""
        path = self.store.local_path(stored)
        with contextlib.suppress(OSError):
            if path is not None:
                os.utime(path, ns=(time.time_ns(), stored.mtime_ns))

    def new_temp_file(self) -> tuple[int, Path]:
        self.temp.mkdir(parents=True, exist_ok=True)  # survives an `rm -r` of the cache
        # Readable too: clients waiting for the same file read it while it is written.
        return durable.new_temp_file(self.temp, prefix="download-", readable=True)

    def publish(self, temp: Path, project: str, filename: str) -> Path:
        final = self.file_path(project, filename)
        durable.place(temp, final, overwrite=True)
        return final

    def added(self, size: int) -> bool:
        """Account for a new file; True when the cache is now over its limit."""
        if self.max_size is None:
            return False
        if self._size is None:
            return True  # not counted yet: let the eviction pass count it
        self._size += size
        return self._size > self.max_size

    def evict(self) -> list[CachedFile]:
        """Remove least recently used files until the cache fits; blocking (run in a thread)."""
        if self.max_size is None or not self._evicting.acquire(blocking=False):
            return []
        try:
            entries = sorted(self.list_files(), key=lambda e: e.last_used)
            total = sum(e.size for e in entries)
            removed: list[CachedFile] = []
            if total > self.max_size:
                target = int(self.max_size * EVICT_TO)
                for entry in entries:
                    if total <= target:
                        break
                    with contextlib.suppress(FileNotFoundError):
                        entry.path.unlink()
                    total -= entry.size
                    removed.append(entry)
            self._size = total
            if removed:
                log.info("mirror cache: evicted %d files to stay under the limit", len(removed))
            return removed
        finally:
            self._evicting.release()

    def list_files(self) -> list[CachedFile]:
        entries = []
        for project in _subdirectories(self.files):
            with os.scandir(project) as scan:
                for item in scan:
                    if item.is_file(follow_symlinks=False) and not item.name.startswith("."):
                        st = item.stat(follow_symlinks=False)
                        key = f"{Path(project).name}/{item.name}"
                        entries.append(CachedFile(key, Path(item.path), st.st_size, st.st_atime))
        return entries

    def clear(self, projects: frozenset[str] = frozenset()) -> int:
        """Remove cached pages and files (of *projects* only, when given); the count of files."""
        removed = 0
        for entry in self.list_files():
            if not projects or entry.key.partition("/")[0] in projects:
                with contextlib.suppress(FileNotFoundError):
                    entry.path.unlink()
                    removed += 1
        for page in self.pages.glob("*.json"):
            if not projects or page.stem in projects:
                page.unlink(missing_ok=True)
        for project in _subdirectories(self.files):
            with contextlib.suppress(OSError):
                os.rmdir(project)  # only when empty
        self._size = None
        return removed

    def _remove_stale_temp_files(self) -> None:
        # Other workers may be writing fresh ones: only remove what a crash left long ago.
        cutoff = time.time() - STALE_TEMP_SECONDS
        for item in self.temp.glob("*.part"):
            with contextlib.suppress(OSError):
                if item.stat().st_mtime < cutoff:
                    item.unlink()


def _cached_entry(path: Path, page_url: str) -> UpstreamFile | None:
    parsed = parse_filename(path.name)
    if parsed is None or not is_safe_filename(path.name):
        return None
    try:
        size = path.stat().st_size
        digest = compute_digests(path, ()).sha256
    except OSError:
        return None
    metadata_path = path.with_name(path.name + METADATA)
    try:
        raw: bytes | None = metadata_path.read_bytes()
    except OSError:
        raw = read_metadata_bytes(path, parsed.kind)
    core = parse_core_metadata(raw)
    return UpstreamFile(
        filename=path.name,
        url=page_url + path.name,  # unknown: only served from the cache until revalidated
        hashes={"sha256": digest},
        requires_python=core.requires_python,
        core_metadata={"sha256": core.sha256} if metadata_path.exists() and core.sha256 else None,
        yanked=None,
        size=size,
        upload_time=None,
    )


def _subdirectories(folder: Path) -> list[str]:
    try:
        with os.scandir(folder) as scan:
            return [e.path for e in scan if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []
