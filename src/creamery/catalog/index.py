"""The in-memory index: projects and their files, kept current by change events.

Built once at start from file *names* (nothing is read), then updated by `refresh` with the
relpaths that events (or uploads, or a periodic rescan) report. Every change bumps the
changed projects' generation (and the root's, `None`): caches of what is derived from the index
(rendered pages, documents) key their entries by it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import NamedTuple

from creamery.core.names import (
    ParsedFilename,
    VersionKey,
    is_sidecar,
    parse_filename,
    version_sort_key,
)
from creamery.storage import Listing, Storage, StoredFile
from creamery.storage.state import NO_STATE, FileState, StateDir, is_legacy_sidecar

log = logging.getLogger("creamery.index")


class Distribution(NamedTuple):
    stored: StoredFile
    parsed: ParsedFilename

    @property
    def relpath(self) -> str:
        return self.stored.key

    @property
    def filename(self) -> str:
        return self.stored.key.rpartition("/")[2]

    @property
    def project(self) -> str:
        return self.parsed.project

    @property
    def version(self) -> str:
        return self.parsed.version

    def sort_key(self) -> tuple[VersionKey, str]:
        return (version_sort_key(self.parsed.version), self.filename)


class Index:
    def __init__(self, storage: Storage, state: StateDir | None = None) -> None:
        self.storage = storage
        self.state = state
        self.file_state: dict[str, FileState] = {}  # relpath -> what the state directory holds
        self.legacy: dict[str, StoredFile] = {}  # sidecars beside files, not yet migrated
        self.files: dict[str, StoredFile] = {}  # every servable relpath, sidecars included
        self.dists: dict[str, Distribution] = {}  # relpath -> distribution
        self.projects: dict[str, dict[str, Distribution]] = {}  # project -> relpath -> dist
        self.generation = 0  # bumped on every change
        # project (None: the root listing) -> the generation it last changed at; read by the
        # hot paths without locking (a dict lookup), written only under the lock.
        self.generations: dict[str | None, int] = {}
        self._lock = threading.RLock()
        self._unreported_lock = threading.Lock()  # concurrent callers share one rescan
        self._unreported_look_started = 0.0

    # ------------------------------------------------------------------ building and updating

    def load(self) -> None:
        with self._lock:
            for stored in self.storage.scan():
                self._add(stored)
            if self.state is not None:
                self.file_state = self.state.scan()
            self._changed(set(self.projects))
        log.info("index loaded: %d projects, %d files", len(self.projects), len(self.dists))

    def refresh(self, relpaths: Iterable[str]) -> None:
        """Re-read the state of these relpaths (files or directories) from storage."""
        touched: set[str] = set()
        with self._lock:
            for relpath in relpaths:
                touched |= self._refresh_one(relpath)
            if touched:
                self._changed(touched)

    def touch(self, project: str) -> None:
        """*project* changed outside its files (its PEP 792 status): what is derived from it
        (pages, documents) is made again."""
        with self._lock:
            self._changed({project})

    def rescan(self) -> None:
        """Compare a full scan with the index and apply the differences (a safety net)."""
        # Streamed, so a rescan of 100,000 files never holds a second copy of the index.
        with self._lock:
            unseen = set(self.files)
        changed: list[str] = []
        for stored in self.storage.scan():
            unseen.discard(stored.key)
            if self.files.get(stored.key) != stored:
                changed.append(stored.key)
        changed += unseen
        if self.state is not None:
            on_disk = self.state.scan()
            changed += [
                r
                for r in on_disk.keys() | self.file_state
                if on_disk.get(r) != self.file_state.get(r)
            ]
        if changed:
            log.info("rescan found %d changes", len(changed))
            self.refresh(changed)

    def catch_up_unreported(self) -> None:
        """Find changes no event reported (no watch, a network file system) before a 404 or a
        listing: one `stat` per directory, and the names of those that changed listed again.
        Files replaced under the same name are left to events and the periodic rescan."""
        arrived = time.monotonic()
        with self._unreported_lock:
            if self._unreported_look_started > arrived:
                return  # a look that began after this call arrived has just finished
            self._unreported_look_started = time.monotonic()
            listings = self.storage.changed_listings()
            if listings:
                self.refresh(self._differences(listings))

    def _differences(self, listings: Iterable[Listing]) -> list[str]:
        with self._lock:
            known = list(self.files)
        by_directory: dict[str, set[str]] = {}
        for relpath in known:
            directory, _, name = relpath.rpartition("/")
            by_directory.setdefault(directory, set()).add(name)
        changed: list[str] = []
        for listing in listings:
            if listing.files is None:
                if listing.relpath:
                    changed.append(listing.relpath)  # gone: refresh forgets what was below
                continue
            prefix = listing.relpath + "/" if listing.relpath else ""
            indexed = by_directory.get(listing.relpath, set())
            changed += [prefix + name for name in listing.files ^ indexed]
            changed += listing.new_directories
        return changed

    def look_for(self, relpaths: list[str]) -> None:
        """Before a 404: index any of these files that is on disk but not known (yet)."""
        found = [r for r in relpaths if r not in self.files and self.storage.stat(r) is not None]
        if found:
            self.refresh(found)

    def _refresh_one(self, relpath: str) -> set[str]:
        touched: set[str] = set()
        if self.state is not None:
            touched |= self._refresh_state(relpath)
        stored = self.storage.stat(relpath)
        if stored is not None:
            touched |= self._remove(relpath)
            touched |= self._add(stored)
            return touched
        touched |= self._remove(relpath)
        # A directory moved or deleted: forget everything below it, then look again.
        prefix = relpath.rstrip("/") + "/"
        for below in [r for r in self.files if r.startswith(prefix)]:
            touched |= self._remove(below)
        for stored in self.storage.scan(relpath):
            touched |= self._add(stored)
        return touched

    def _refresh_state(self, relpath: str) -> set[str]:
        assert self.state is not None
        now = self.state.state_of(relpath)
        if now == self.file_state.get(relpath, NO_STATE):
            return set()
        if now == NO_STATE:
            self.file_state.pop(relpath, None)
        else:
            self.file_state[relpath] = now
        dist = self.dists.get(relpath)
        return {dist.project} if dist else set()

    def _add(self, stored: StoredFile) -> set[str]:
        # Scans and stat() never yield hidden paths: no need to check again here.
        filename = stored.key.rpartition("/")[2]
        if is_legacy_sidecar(filename):
            # Never listed nor served: moved into the state directory (`catalog/service.py`).
            self.legacy[stored.key] = stored
            return set()
        if is_sidecar(filename):
            self.files[stored.key] = stored
            owner = self.dists.get(filename_owner(stored.key))
            return {owner.project} if owner else set()
        parsed = parse_filename(filename)
        if parsed is None:
            if not filename.endswith((".tmp", ".part")):
                log.info("skipping %s: not a distribution filename", stored.key)
            return set()
        dist = Distribution(stored, parsed)
        self.files[stored.key] = stored
        self.dists[stored.key] = dist
        self.projects.setdefault(parsed.project, {})[stored.key] = dist
        return {parsed.project}

    def _remove(self, relpath: str) -> set[str]:
        self.legacy.pop(relpath, None)
        self.files.pop(relpath, None)
        dist = self.dists.pop(relpath, None)
        if dist is None:
            owner = self.dists.get(filename_owner(relpath))
            return {owner.project} if owner else set()
        files = self.projects.get(dist.project)
        if files is not None:
            files.pop(relpath, None)
            if not files:
                del self.projects[dist.project]
        return {dist.project}

    def _changed(self, projects: set[str]) -> None:
        self.generation += 1
        for project in (*projects, None):
            self.generations[project] = self.generation

    # ------------------------------------------------------------------ snapshots

    def load_snapshot(
        self,
        files: Iterable[StoredFile],
        file_state: dict[str, FileState],
        parsed: dict[str, ParsedFilename] | None = None,
    ) -> None:
        """Build the index from a snapshot (`catalog/snapshot.py`) instead of a scan: the
        files (sidecars and legacy sidecars included) and the state of each, as `snapshot`
        gave them; *parsed*: the distributions' parsed names by key, when the snapshot's
        parser is this one (start-up then parses no filename)."""
        known = parsed or {}
        with self._lock:
            self.files.clear()
            self.dists.clear()
            self.projects.clear()
            self.legacy.clear()
            for stored in files:
                name = known.get(stored.key)
                if name is None:
                    self._add(stored)
                    continue
                dist = Distribution(stored, name)
                self.files[stored.key] = stored
                self.dists[stored.key] = dist
                self.projects.setdefault(name.project, {})[stored.key] = dist
            self.file_state = dict(file_state)
            self._changed(set(self.projects))
        log.info("index loaded: %d projects, %d files", len(self.projects), len(self.dists))

    def snapshot(
        self,
    ) -> tuple[list[StoredFile], dict[str, FileState], dict[str, ParsedFilename]]:
        """What `load_snapshot` needs to rebuild this index: every file it knows, their state,
        the distributions' parsed names."""
        with self._lock:
            files = [*self.files.values(), *self.legacy.values()]
            parsed = {key: dist.parsed for key, dist in self.dists.items()}
            return files, dict(self.file_state), parsed

    # ------------------------------------------------------------------ reading

    def project_generation(self, project: str | None) -> int:
        return self.generations.get(project, 0)

    def project_names(self) -> list[str]:
        with self._lock:
            return sorted(self.projects)

    def distributions(self, project: str) -> list[Distribution]:
        """The project's files, oldest version first (PEP 440 order, then filename)."""
        with self._lock:
            files = list(self.projects.get(project, {}).values())
        return sorted(files, key=Distribution.sort_key)

    def all_distributions(self) -> list[Distribution]:
        with self._lock:
            return list(self.dists.values())

    def sidecar(self, dist: Distribution, suffix: str) -> StoredFile | None:
        return self.files.get(dist.relpath + suffix)

    def state_of(self, dist: Distribution) -> FileState:
        return self.file_state.get(dist.relpath, NO_STATE)

    def is_yanked(self, dist: Distribution) -> bool:
        return self.state_of(dist).yanked

    def yank_reason(self, dist: Distribution) -> str | None:
        """PEP 592: None when not yanked, else the reason ("" when none was given)."""
        if self.state is None or not self.state_of(dist).yanked:
            return None
        return self.state.yank_reason(dist.relpath)

    def provenance(self, dist: Distribution) -> bytes | None:
        """The provenance object kept for *dist*, as kept (`catalog.provenance` says whether
        it may be served)."""
        if self.state is None or not self.state_of(dist).provenance:
            return None
        return self.state.read(dist.relpath, "provenance")


def filename_owner(sidecar_relpath: str) -> str:
    """The distribution relpath a sidecar belongs to (`x.whl.asc` -> `x.whl`)."""
    return sidecar_relpath.rpartition(".")[0]
