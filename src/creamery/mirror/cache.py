"""The mirror's cache: verified files and upstream pages, kept in a `Storage`, surviving restarts.

The same keys in a directory (`--mirror-cache DIR`, plain files) and in a bucket
(`--mirror-cache s3://BUCKET/PREFIX`, one object per file):

    pages/<project>.json         what the upstream listed, and when it was fetched
    files/<project>/<filename>   verified distributions and their .metadata files
    used/<project>/<filename>    object stores only: an empty object, written when the file
                                 was used (its LastModified is the use), at most hourly

Downloads are spooled to a local directory first (`tmp/` of a cache directory; a scratch
directory for a bucket), verified there, then put with `if_absent`: a file is in the cache
whole and verified, or not at all. Replicas sharing a bucket share the cache: what one fetched,
the others serve; two fetching one file at once both verify it and the first put wins.

Last use without atime. A directory records it as today: creamery sets the file's access
time itself on each use (so `noatime` mounts work), leaving the mtime its ETag is made of. An
object store has no access time, and rewriting a file to move its LastModified would change its
ETag; so the use is recorded beside the file instead. Each process keeps the exact last use of
the files it served in memory and writes the file's `used/` object (a zero-byte PUT) only when
the last one it knows of is an hour old: a file in steady use costs one PUT per hour per
replica, an idle file none. A file's last use is the newest of its own LastModified (when it
was cached), its `used/` object and this process's memory, so eviction across replicas is
least-recently-used to within an hour.

Limits: `--mirror-max-size` evicts the least recently used files when the cache outgrows it
(down to 90 % of it); `--mirror-max-age` evicts files unused for longer. A pass lists the
cache: it runs after this process added enough to go over the limit, and at most every
`EVICT_INTERVAL` seconds otherwise, so what other replicas added is counted too.

Eviction is safe beside replicas still serving a file: a response pinned to the version it
opened either completes or fails mid-body (the client retries; never a wrong file), and a
request that finds the file gone fetches it from the upstream again.

`creamery mirror-cache` (`cli/mirror_cache.py`) shows and clears it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from creamery.catalog.facts import compute_digests, parse_core_metadata, read_metadata_bytes
from creamery.core import durable
from creamery.core.config import ConfigError
from creamery.core.names import METADATA, PROVENANCE, parse_filename
from creamery.core.objects import ObjectRoot, S3Options
from creamery.mirror.listing import (
    Listing,
    UpstreamFile,
    is_safe_filename,
    listing_from_json,
    listing_to_json,
)
from creamery.storage import (
    AlreadyExists,
    Reader,
    Storage,
    StoredFile,
    StoreUnavailable,
    chunks,
    read_all,
)
from creamery.storage.local import LocalStorage

log = logging.getLogger("creamery.mirror")

PAGES = "pages"
FILES = "files"
USED = "used"
STALE_TEMP_SECONDS = 24 * 3600  # older partial downloads are leftovers of a crash
EVICT_TO = 0.9  # evict down to this share of the limit, so eviction runs rarely
STORE_BACKOFF = 5.0  # seconds a store that did not answer is left alone (the upstream serves)
USE_RECORD_SECONDS = 3600.0  # a file's `used/` object is rewritten at most this often
EVICT_INTERVAL = 600.0  # seconds between eviction passes (listings) when a limit is set


class StoreSkipped(StoreUnavailable):
    """The store was not asked: it did not answer a moment ago (`STORE_BACKOFF`)."""


@dataclass(frozen=True, slots=True)
class CachedFile:
    key: str  # <project>/<filename>
    stored: StoredFile  # its key in the store: files/<project>/<filename>
    size: int
    last_used: float


def open_cache(
    location: Path | ObjectRoot,
    *,
    spool: Path | None = None,
    options: S3Options | None = None,
    max_size: int | None = None,
    max_age: float | None = None,
) -> MirrorCache:
    """The cache at *location*: a directory, or an `s3://` prefix (the S3 client is imported
    only then). *spool* is the local directory downloads are verified in before they are put
    in a bucket (a directory cache spools in its own `tmp/`)."""
    if isinstance(location, ObjectRoot):
        from creamery.storage.s3 import S3Storage  # the s3 extra: only for an s3:// cache

        if spool is None:
            raise ConfigError(f"mirror cache {location}: no local spool directory given")
        store: Storage = S3Storage(location, options or S3Options())
        return MirrorCache(store, spool, location.url, max_size=max_size, max_age=max_age)
    try:
        for folder in (PAGES, FILES, "tmp"):
            (location / folder).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(
            f"mirror cache {str(location)!r} can't be created: {error.strerror}"
        ) from error
    cache = MirrorCache(
        LocalStorage((location,)),
        location / "tmp",
        str(location),
        max_size=max_size,
        max_age=max_age,
    )
    cache.directory = location
    return cache


class MirrorCache:
    """Pages and verified files in *store*; downloads spooled in *spool* (a local directory).

    Every method may block on the store: on an event loop, run them in a worker thread when
    `remote` is true (`touch` and `added` only touch memory, or make one cheap system call).
    """

    def __init__(
        self,
        store: Storage,
        spool: Path,
        where: str,
        *,
        max_size: int | None = None,
        max_age: float | None = None,
    ) -> None:
        self.store = store
        self.remote = store.remote
        self.spool = spool
        self.where = where  # for messages: the directory or the s3:// URL
        self.directory: Path | None = None  # set for a directory cache
        self.max_size = max_size
        self.max_age = max_age
        self._size: int | None = None  # bytes of files, once counted
        self._counted = -math.inf  # time.monotonic() of the last eviction pass: none yet
        self._evicting = threading.Lock()
        self._used: dict[str, float] = {}  # file key -> last use seen by this process
        self._recorded: dict[str, float] = {}  # file key -> when we last wrote its used/ object
        self._down_until = 0.0  # time.monotonic() until which the store is taken as down
        self._remove_stale_temp_files()

    # ------------------------------------------------------------------ pages

    def load_listing(self, project: str) -> tuple[Listing, float] | None:
        """The stored listing and its fetch time; None when absent or unreadable."""
        key = _page_key(project)
        try:
            with self._reaching():
                stored = self.store.stat(key)
                if stored is None:
                    return None
                return listing_from_json(read_all(self.store, stored))
        except (FileNotFoundError, StoreSkipped):
            return None
        except StoreUnavailable as error:
            log.warning("mirror cache %s: page of %s not read: %s", self.where, project, error)
            return None
        except (OSError, ValueError, TypeError, KeyError) as error:
            log.warning("ignoring damaged mirror page %s/%s: %s", self.where, key, error)
            return None

    def save_listing(self, listing: Listing, fetched: float) -> None:
        self._ensure_directory()
        with self._reaching():
            self.store.put(
                _page_key(listing.project), listing_to_json(listing, fetched), if_absent=False
            )

    def keep_listing(self, listing: Listing, fetched: float) -> None:
        """Write the listing back if its page is gone (`mirror-cache clear` while we ran): a
        file cached from it must find its page after a restart, upstream or not."""
        key = _page_key(listing.project)
        with self._reaching():
            if self.store.stat(key) is None:
                self._ensure_directory()
                with contextlib.suppress(AlreadyExists):  # another replica wrote it back first
                    self.store.put(key, listing_to_json(listing, fetched), if_absent=True)

    def listing_from_files(self, project: str, url: str, source: str) -> Listing | None:
        """A listing of the project's cached files, for when no upstream answers and its page
        is gone: a cached file keeps its project servable offline. Reads (hashes) each file.

        What only the upstream knew (yanks, upload times) is missing; requires-python comes
        from the file's own metadata. It is saved as fetched at time 0: stale, so the page is
        fetched again as soon as an upstream answers.
        """
        found = {s.key.rpartition("/")[2]: s for s in self.store.scan(f"{FILES}/{project}")}
        entries = [
            listed
            for name in sorted(found)
            if not name.endswith((METADATA, PROVENANCE))
            and (listed := self._cached_entry(found[name], found.get(name + METADATA), url))
            is not None
        ]
        if not entries:
            return None
        listing = Listing(project, url, source, tuple(entries))
        self.save_listing(listing, 0.0)
        log.warning("mirror: %s: page rebuilt from %d cached files", project, len(entries))
        return listing

    def forget_listing(self, project: str) -> None:
        self.store.delete(_page_key(project))

    def page_projects(self) -> list[str]:
        """The projects with a stored page."""
        return sorted(
            name.removesuffix(".json")
            for s in self.store.scan(PAGES)
            if (name := s.key.rpartition("/")[2]).endswith(".json")
        )

    # ------------------------------------------------------------------ files

    def cached(self, project: str, filename: str) -> StoredFile | None:
        """StoreUnavailable when the store does not answer (or did not, a moment ago)."""
        with self._reaching():
            return self.store.stat(_file_key(project, filename))

    def open(self, stored: StoredFile) -> Reader:
        """FileNotFoundError when it is gone (evicted meanwhile, by us or another replica)."""
        with self._reaching():
            return self.store.open(stored)

    def touch(self, stored: StoredFile) -> bool:
        """Record a use; True when the store should hear of it (`record_use`, in a thread).

        A directory's file gets its access time set at once (one system call; the mtime, and
        so the ETag, stays as it was). An object store's use is kept in memory and its
        `used/` object rewritten when the last write we know of is `USE_RECORD_SECONDS` old.
        """
        now = time.time()
        path = self.store.local_path(stored)
        if path is not None:
            with contextlib.suppress(OSError):
                os.utime(path, ns=(time.time_ns(), stored.mtime_ns))
            return False
        self._used[stored.key] = now
        known = max(self._recorded.get(stored.key, 0.0), stored.mtime_ns / 1e9)
        return now - known >= USE_RECORD_SECONDS

    def record_use(self, stored: StoredFile) -> None:
        """Write the file's `used/` object (its LastModified is the use); blocking."""
        used_key = USED + stored.key.removeprefix(FILES)
        self._recorded[stored.key] = time.time()
        try:
            with self._reaching():
                self.store.put(used_key, b"", if_absent=False)
        except OSError as error:
            log.info("mirror cache: use of %s not recorded: %s", stored.key, error)

    def new_temp_file(self) -> tuple[int, Path]:
        self.spool.mkdir(parents=True, exist_ok=True)  # survives an `rm -r` of the cache
        # Readable too: clients waiting for the same file read it while it is written.
        return durable.new_temp_file(self.spool, prefix="download-", readable=True)

    def publish(self, temp: Path, project: str, filename: str) -> StoredFile | None:
        """Put a verified download in the cache; None when it was there already (another
        replica or worker stored it first: theirs is verified too). *temp* is gone after."""
        self._ensure_directory()
        key = _file_key(project, filename)
        try:
            with self._reaching():
                stored = self.store.put(key, temp, if_absent=True)
        except AlreadyExists:
            return None
        finally:
            temp.unlink(missing_ok=True)  # the put's, unless it was skipped
        self._used[key] = time.time()  # fetched for a client: that is a use
        return stored

    def read_small(self, project: str, filename: str) -> bytes | None:
        """A small cached file's bytes (an upstream's PEP 740 provenance), None when absent."""
        try:
            with self._reaching():
                stored = self.store.stat(_file_key(project, filename))
                return None if stored is None else read_all(self.store, stored)
        except FileNotFoundError:
            return None

    def keep_small(self, project: str, filename: str, data: bytes) -> None:
        """Cache a small file checked by the caller (first writer wins: theirs is as good)."""
        self._ensure_directory()
        key = _file_key(project, filename)
        with self._reaching(), contextlib.suppress(AlreadyExists):
            self.store.put(key, data, if_absent=True)
        self._used[key] = time.time()

    def added(self, size: int) -> bool:
        """Account for a new file; True when an eviction pass is due."""
        if self.max_size is None and self.max_age is None:
            return False
        if self._size is not None:
            self._size += size
        if self.evict_due():
            return True  # not counted lately: let the pass count what every replica added
        return self.max_size is not None and self._size is not None and self._size > self.max_size

    def evict_due(self) -> bool:
        """Time for a pass, whether or not we added files (others may have; files age):
        every `EVICT_INTERVAL` seconds, or a quarter of the age limit when that is shorter."""
        if self.max_size is None and self.max_age is None:
            return False
        interval = EVICT_INTERVAL if self.max_age is None else min(EVICT_INTERVAL, self.max_age / 4)
        return time.monotonic() - self._counted >= interval

    def evict(self) -> list[CachedFile]:
        """Remove files unused for longer than the age limit, then the least recently used
        until the cache fits its size limit; blocking (run it in a thread). One pass at a time
        per process; replicas may run theirs at once (a file deleted twice is gone once)."""
        if (self.max_size is None and self.max_age is None) or not self._evicting.acquire(
            blocking=False
        ):
            return []
        try:
            self._counted = time.monotonic()
            with self._reaching():
                recorded = self._recorded_uses() if self.remote else {}
                entries = sorted(self._entries(recorded), key=lambda e: e.last_used)
            self._forget_orphans(recorded, entries)
            total = sum(e.size for e in entries)
            removed: list[CachedFile] = []
            cutoff = time.time() - self.max_age if self.max_age is not None else None
            target = int(self.max_size * EVICT_TO) if self.max_size is not None else None
            over = self.max_size is not None and total > self.max_size
            for entry in entries:
                too_old = cutoff is not None and entry.last_used < cutoff
                too_big = over and target is not None and total > target
                if not (too_old or too_big):
                    break  # sorted by last use: the rest are newer
                self._remove(entry)
                total -= entry.size
                removed.append(entry)
            self._size = total
            if removed:
                log.info("mirror cache %s: evicted %d files", self.where, len(removed))
            return removed
        except OSError as error:
            log.warning("mirror cache %s: eviction pass failed: %s", self.where, error)
            return []
        finally:
            self._evicting.release()

    def list_files(self) -> list[CachedFile]:
        """Every cached file with its size and last use (one listing, two for a bucket)."""
        return self._entries(self._recorded_uses() if self.remote else {})

    def _entries(self, recorded: dict[str, float]) -> list[CachedFile]:
        entries = []
        for stored in self.store.scan(FILES):
            project_file = stored.key.removeprefix(FILES + "/")
            if "/" not in project_file:
                continue  # not <project>/<filename>: not ours
            used = max(
                stored.mtime_ns / 1e9,
                recorded.get(stored.key, 0.0),
                self._used.get(stored.key, 0.0),
                self._access_time(stored),
            )
            entries.append(CachedFile(project_file, stored, stored.size, used))
        return entries

    def size(self) -> int:
        """Bytes of cached files (one listing: for scrapes and `show`, not hot paths)."""
        return sum(stored.size for stored in self.store.scan(FILES))

    def clear(self, projects: frozenset[str] = frozenset()) -> int:
        """Remove cached pages and files (of *projects* only, when given); the count of files."""
        removed = 0
        for entry in self.list_files():
            wanted = not projects or entry.key.partition("/")[0] in projects
            if wanted and self._remove(entry):
                removed += 1
        for project in self.page_projects():
            if not projects or project in projects:
                self.forget_listing(project)
        if self.remote:  # usage records of files gone by other means
            for stored in list(self.store.scan(USED)):
                project = stored.key.removeprefix(USED + "/").partition("/")[0]
                if not projects or project in projects:
                    self.store.delete(stored.key)
        if self.directory is not None:
            for folder in _subdirectories(self.directory / FILES):
                with contextlib.suppress(OSError):
                    os.rmdir(folder)  # only when empty
        self._size = None
        return removed

    # ------------------------------------------------------------------ internals

    @contextlib.contextmanager
    def _reaching(self) -> Iterator[None]:
        """Around the store calls of requests: a store that did not answer is left alone for
        `STORE_BACKOFF` seconds (StoreUnavailable at once), so an outage costs one timeout,
        not one per request, while the upstream serves without the cache."""
        if time.monotonic() < self._down_until:
            raise StoreSkipped(f"mirror cache {self.where}: the store did not answer lately")
        try:
            yield
        except StoreUnavailable:
            self._down_until = time.monotonic() + STORE_BACKOFF
            raise

    def _remove(self, entry: CachedFile) -> bool:
        removed = self.store.delete(entry.stored.key)
        if self.remote:
            self.store.delete(USED + entry.stored.key.removeprefix(FILES))
        self._used.pop(entry.stored.key, None)
        self._recorded.pop(entry.stored.key, None)
        return removed

    def _forget_orphans(self, recorded: dict[str, float], entries: list[CachedFile]) -> None:
        """Delete usage records whose file is gone (a use recorded just as another replica
        evicted it). The records are listed before the files: one whose file is missing from
        the later listing has no file."""
        for key in set(recorded) - {entry.stored.key for entry in entries}:
            with contextlib.suppress(OSError):
                self.store.delete(USED + key.removeprefix(FILES))

    def _recorded_uses(self) -> dict[str, float]:
        """File key -> the LastModified of its `used/` object."""
        return {
            FILES + stored.key.removeprefix(USED): stored.mtime_ns / 1e9
            for stored in self.store.scan(USED)
        }

    def _access_time(self, stored: StoredFile) -> float:
        path = self.store.local_path(stored)
        if path is None:
            return 0.0
        try:
            return os.stat(path).st_atime
        except OSError:
            return 0.0

    def _cached_entry(
        self, stored: StoredFile, metadata: StoredFile | None, page_url: str
    ) -> UpstreamFile | None:
        name = stored.key.rpartition("/")[2]
        parsed = parse_filename(name)
        if parsed is None or not is_safe_filename(name):
            return None
        try:
            with self._local_copy(stored) as path:
                digest = compute_digests(path, ()).sha256
                raw: bytes | None = None
                if metadata is not None:
                    with contextlib.suppress(OSError):
                        raw = read_all(self.store, metadata)
                if raw is None:
                    raw = read_metadata_bytes(path, parsed.kind, name)
        except OSError:
            return None
        core = parse_core_metadata(raw)
        return UpstreamFile(
            filename=name,
            url=page_url + name,  # unknown: only served from the cache until revalidated
            hashes={"sha256": digest},
            requires_python=core.requires_python,
            core_metadata={"sha256": core.sha256} if metadata is not None and core.sha256 else None,
            yanked=None,
            size=stored.size,
            upload_time=None,
        )

    @contextlib.contextmanager
    def _local_copy(self, stored: StoredFile) -> Iterator[Path]:
        """The file as a local path (for `zipfile`): itself in a directory, else a spooled copy."""
        path = self.store.local_path(stored)
        if path is not None:
            yield Path(path)
            return
        fd, temp = self.new_temp_file()
        try:
            with os.fdopen(fd, "wb") as out, self.store.open(stored) as reader:
                for chunk in chunks(reader):
                    out.write(chunk)
            yield temp
        finally:
            temp.unlink(missing_ok=True)

    def _ensure_directory(self) -> None:
        """A directory cache removed by hand (`rm -r`) is made again; never a missing mount's
        parent, as LocalStorage refuses a root that is gone."""
        if self.directory is not None and not self.directory.is_dir():
            with contextlib.suppress(OSError):
                self.directory.mkdir(parents=True, exist_ok=True)

    def _remove_stale_temp_files(self) -> None:
        # Other workers may be writing fresh ones: only remove what a crash left long ago.
        cutoff = time.time() - STALE_TEMP_SECONDS
        for item in self.spool.glob("download-*.part"):
            with contextlib.suppress(OSError):
                if item.stat().st_mtime < cutoff:
                    item.unlink()


class Opened:
    """*store*, with one file already opened: `open` hands out *reader* (the version found
    when the request began); every other member is the store's own (delegated, so the class
    keeps up with the Storage protocol). For `http.files.send_file`."""

    def __init__(self, store: Storage, reader: Reader) -> None:
        self.store = store
        self.reader = reader
        self.remote = store.remote

    def open(self, stored: StoredFile) -> Reader:
        return self.reader

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def _page_key(project: str) -> str:
    return f"{PAGES}/{project}.json"


def _file_key(project: str, filename: str) -> str:
    return f"{FILES}/{project}/{filename}"


def _subdirectories(folder: Path) -> list[str]:
    try:
        with os.scandir(folder) as scan:
            return [e.path for e in scan if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []
