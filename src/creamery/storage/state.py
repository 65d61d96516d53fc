"""creamery's own data, kept out of the distributions' way: the state.

The package directories hold what pypiserver would hold: the distributions and their `.asc`
signatures. Everything else creamery keeps is its state. For a local root it is ONE state
directory (`--state-dir`, by default a hidden `.creamery/` in the first root, which scans skip,
so a copy of the root carries its state); for an object root (`s3://bucket/prefix`) it is the
`<prefix>/.creamery/` prefix of the bucket, with the same keys below it:

    files/<relpath>/yanked        PEP 592: present = yanked; content = the reason
    files/<relpath>/provenance    PEP 740 provenance of the uploaded file
    files/<relpath>/facts         facts computed at upload: the file version they
                                  describe, its digests, its core metadata's sha256
    files/<relpath>/metadata      the core metadata (METADATA, PKG-INFO) read at upload
    changes.feed, .serial         the change feed every process follows (changes/)
    status/<project>.json         PEP 792 project status (catalog/status.py); none: active
    mirror/                       the caching mirror's files (default --mirror-cache)
    migrated/                     `.metadata` files once written beside wheels

Per-file state (`files/`, `migrated/`) goes through a `Storage` (`StateDir.store`): a
`LocalStorage` rooted at the state directory, or an object store rooted at the `.creamery/`
prefix. Each write is a `put` (atomic and durable in every backend). Per-file state sits under
a key named after the file, ending in short fixed names, so every name that fits the package
directory fits here. Facts (digests, metadata) are derived from the file's bytes: those stored
at upload name the file version they describe and are ignored once the file changes
(`catalog/facts.py`); files placed by other tools have theirs in the local facts cache, and
with the state in a bucket also here, written by the first replica that computed them, so the
others read them instead of the file.

What is only this host's business stays on a local directory, the *scratch* directory:

    <scratch>/tmp/      uploads are spooled here (cleaned at start)
    <scratch>/locks/    per-filename publish locks (empty files)

For a local root the scratch directory is the state directory itself (as it always was). For
an object root it is a local directory the caller chooses: `object_scratch_dir` proposes one in
the user's cache directory. The locks only order one host's processes; across replicas the
store's put-if-absent (the distribution's commit point) is the authority.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

from creamery.core import durable
from creamery.core.names import LEGACY_SUFFIXES, same_file_key
from creamery.core.objects import ObjectRoot
from creamery.storage import Storage, StoredFile, read_all
from creamery.storage.local import LocalStorage

log = logging.getLogger("creamery.state")

DEFAULT_NAME = ".creamery"
FILES = "files"  # the per-file state's top key
CLAIMS = "claims"  # in a bucket: which spelling of a file won it (`publish._claim`)
MIGRATED = "migrated"
YANKED = "yanked"
PROVENANCE = "provenance"
FACTS = "facts"
CORE_METADATA = "metadata"
KINDS = (YANKED, PROVENANCE)  # the state the index follows (names loaded at start)
FACT_KINDS = (FACTS, CORE_METADATA)  # read on demand, never scanned
ALL_KINDS = KINDS + FACT_KINDS
LONGEST_KIND = max(len(kind) for kind in ALL_KINDS)
_LOCK_STRIPES = 64
_STALE_PART_AGE = 600.0  # seconds: a `.creamery-*.part` in a root older than this is a leftover


class FileState(NamedTuple):
    yanked: bool
    provenance: bool


NO_STATE = FileState(False, False)


def object_scratch_dir(root: ObjectRoot, cache_dir: Path | None = None) -> Path:
    """A local scratch directory for an object root's state: `<cache>/scratch/<hash of the
    root's URL>`, *cache_dir* defaulting to `$XDG_CACHE_HOME/creamery` (`~/.cache/creamery`).
    One per root, so two indexes on one host never clean each other's spools; disposable."""
    if cache_dir is None:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        cache_dir = Path(base) / "creamery"
    digest = hashlib.sha256(root.url.encode()).hexdigest()[:16]
    return cache_dir / "scratch" / digest


class _StateDirectory(LocalStorage):
    """The local state directory as a store: created by the first write (a fresh root has
    none yet), as the state directory always was."""

    def put(self, key: str, content: Path | bytes, *, if_absent: bool) -> StoredFile:
        self.upload_root.mkdir(parents=True, exist_ok=True)
        return super().put(key, content, if_absent=if_absent)


class StateDir:
    """creamery's per-file state in a `Storage`, and this host's scratch directory.

    `StateDir(path)`: a local state directory (per-file state below `path/files/`, scratch in
    `path/tmp` and `path/locks`). `StateDir(store, scratch)`: per-file state in *store* (an
    object store rooted at `<prefix>/.creamery`), scratch in the local directory *scratch*.
    *path* is the local state directory, None for a store elsewhere: what needs a file system
    path (the local change feed, `check_names_fit`) asks for it.
    """

    def __init__(self, store: Storage | Path, scratch: Path | None = None) -> None:
        if isinstance(store, Path):
            self.path: Path | None = store
            self.store: Storage = _StateDirectory((store,))
            scratch = store if scratch is None else scratch
        elif scratch is None:
            raise ValueError("a state store needs a local scratch directory")
        else:
            self.path, self.store = None, store
        self.scratch = scratch
        self.tmp = scratch / "tmp"
        self.locks = scratch / "locks"
        self._spool: Path | None = None
        self._spool_fd: int | None = None

    @property
    def remote(self) -> bool:
        """Every state call may wait on a network (`Storage.remote`)."""
        return self.store.remote

    def __repr__(self) -> str:
        return f"StateDir({self.path or self.store!r})"

    # ------------------------------------------------------------------ scratch

    def new_temp_file(self) -> tuple[int, Path]:
        """An open temp file in this process's scratch directory (for a local root: on the
        state's file system, so publishing links it into place)."""
        return durable.new_temp_file(self._spool_dir(), prefix="upload-")

    def _spool_dir(self) -> Path:
        # One directory per process, flock'ed while the process lives: a cleaner can tell a
        # crashed process's leftovers (lock free) from a live upload (lock held).
        if self._spool is not None and self._spool.is_dir():
            return self._spool
        self.tmp.mkdir(parents=True, exist_ok=True)
        spool = self.tmp / f"{os.getpid()}-{os.urandom(4).hex()}"
        spool.mkdir()
        fd = os.open(spool, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if self._spool_fd is not None:
            os.close(self._spool_fd)
        self._spool, self._spool_fd = spool, fd
        return spool

    def clean_scratch(self, roots: Iterable[object] = ()) -> int:
        """Remove what crashed processes left: spool directories no live process holds, and
        old `.creamery-*.part` files in the local roots and the state directory (earlier
        versions spooled there; a put of small state spools there). The count of those that
        held something. Roots that are not local directories (an object root) are skipped."""
        removed = 0
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.tmp):
                if self._is_orphan(entry.path):
                    # An empty one is what any process that took an upload leaves when it
                    # stops: only a spooled file is the trace of an interrupted upload.
                    removed += _holds_anything(entry.path)
                    shutil.rmtree(entry.path, ignore_errors=True)
        cutoff = time.time() - _STALE_PART_AGE
        directories = [r for r in roots if isinstance(r, Path)]
        directories += [self.path] if self.path is not None else []
        for directory in directories:
            for leftover in directory.glob(".creamery-*.part"):
                with contextlib.suppress(OSError):
                    if leftover.stat().st_mtime < cutoff:
                        leftover.unlink()
                        removed += 1
        if removed:
            log.warning("removed %d leftovers of interrupted uploads", removed)
        return removed

    def _is_orphan(self, path: str) -> bool:
        if self._spool is not None and path == str(self._spool):
            return False
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False
            raise
        finally:
            os.close(fd)  # also releases the lock we took
        return True

    # ------------------------------------------------------------------ locks

    @contextlib.contextmanager
    def lock(self, filename: str) -> Iterator[None]:
        """Serialize the publish sequence of one filename across this host's threads and
        processes (other replicas are ordered by the store's put-if-absent)."""
        stripe = int.from_bytes(hashlib.blake2b(filename.encode(), digest_size=2).digest())
        self.locks.mkdir(parents=True, exist_ok=True)
        path = self.locks / f"{stripe % _LOCK_STRIPES:02d}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # per open file: also excludes this process's threads
            yield
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ per-file state

    @staticmethod
    def key(relpath: str, kind: str) -> str:
        """The key of one kind of a file's state in the store."""
        return f"{FILES}/{relpath}/{kind}"

    def state_of(self, relpath: str) -> FileState:
        return FileState(
            self.store.stat(self.key(relpath, YANKED)) is not None,
            self.store.stat(self.key(relpath, PROVENANCE)) is not None,
        )

    def read(self, relpath: str, kind: str) -> bytes | None:
        if self.path is not None:  # the local fast path: one open, no stat
            try:
                return (self.path / FILES / relpath / kind).read_bytes()
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                return None
        stored = self.store.stat(self.key(relpath, kind))
        if stored is None:
            return None
        try:
            return read_all(self.store, stored)
        except FileNotFoundError:
            return None  # removed since

    def write(self, relpath: str, kind: str, data: bytes) -> None:
        self.store.put(self.key(relpath, kind), data, if_absent=False)

    def delete(self, relpath: str, kind: str) -> bool:
        try:
            removed = self.store.delete(self.key(relpath, kind))
        except NotADirectoryError:
            return False
        if removed:
            self.drop_empty_entry(relpath)
        return removed

    def drop_empty_entry(self, relpath: str) -> None:
        """A local state directory keeps no empty entry directory (object stores have none)."""
        if self.path is not None:
            with contextlib.suppress(OSError):
                (self.path / FILES / relpath).rmdir()  # only when empty

    def forget(self, relpath: str) -> None:
        """Remove everything kept for a file (it was removed), in a bucket its claim too."""
        for kind in ALL_KINDS:
            self.delete(relpath, kind)
        if self.remote:
            self._drop_claim(relpath)

    @staticmethod
    def claim_key(filename: str) -> str:
        """Which spelling of *filename* holds its name between replicas (`publish._claim`)."""
        return f"{CLAIMS}/{same_file_key(filename)}"

    def _drop_claim(self, relpath: str) -> None:
        """The claim goes with the file it names (one naming another spelling stays)."""
        key = self.claim_key(relpath.rpartition("/")[2])
        held = self.store.stat(key)
        with contextlib.suppress(FileNotFoundError):
            if held is not None and read_all(self.store, held) == relpath.encode():
                self.store.delete(key)

    def yank_reason(self, relpath: str) -> str | None:
        data = self.read(relpath, YANKED)
        return None if data is None else data.decode("utf-8", "replace").strip()

    def scan(self) -> dict[str, FileState]:
        """The state of every file that has some (names only: no file is read)."""
        if self.path is not None:
            return self._scan_directory(self.path / FILES)
        kinds: dict[str, set[str]] = {}
        for stored in self.store.scan(FILES):
            relpath, _, kind = stored.key[len(FILES) + 1 :].rpartition("/")
            if relpath and kind in KINDS:
                kinds.setdefault(relpath, set()).add(kind)
        return {r: FileState(YANKED in k, PROVENANCE in k) for r, k in kinds.items()}

    @staticmethod
    def _scan_directory(files: Path) -> dict[str, FileState]:
        # Names only (a stat per file would cost 40,000 system calls at start).
        found: dict[str, FileState] = {}
        if not files.is_dir():
            return found
        base = len(str(files)) + 1
        for directory, _subdirs, names in os.walk(files):
            kinds = set(names) & set(KINDS)
            if kinds:
                relpath = directory[base:].replace(os.sep, "/")
                found[relpath] = FileState(YANKED in kinds, PROVENANCE in kinds)
        return found

    # ------------------------------------------------------------------ migration

    def migrate(self, storage: Storage, stored: StoredFile) -> bool:
        """Move a legacy sidecar (`x.whl.yanked`, `.provenance`, `.metadata` beside the file)
        from *storage* into the state. Copy durably first, then delete the old one: a crash
        in between leaves both, and the next start does it again (idempotent). True when
        moved."""
        relpath = stored.key
        owner, _, suffix = relpath.rpartition(".")
        suffix = suffix.lower()
        try:
            data = read_all(storage, stored)
        except OSError:
            return False
        if suffix == "metadata":
            # Derived from the wheel (served from the facts cache now); kept, not lost.
            self.store.put(f"{MIGRATED}/{relpath}", data, if_absent=False)
        else:
            self.write(owner, suffix, data)
        try:
            if not storage.delete(relpath):
                return False  # someone else moved it meanwhile
        except OSError as error:
            log.warning("migrated %s into the state, can't remove it: %s", relpath, error)
            return False
        log.info("migrated %s into %s", relpath, self.path or self.store)
        return True


def is_legacy_sidecar(filename: str) -> bool:
    return filename.lower().endswith(LEGACY_SUFFIXES)


def _holds_anything(directory: str) -> bool:
    try:
        with os.scandir(directory) as entries:
            return any(True for _ in entries)
    except OSError:
        return False
