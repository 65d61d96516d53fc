"""creamery's own data, in ONE state directory kept out of the distributions' way.

The package directories hold what pypiserver would hold: the distributions and their `.asc`
signatures. Everything else creamery keeps lives here (`--state-dir`, by default a hidden
`.creamery/` in the first root, which scans skip, so a copy of the root carries its state):

    <state>/files/<relpath>/yanked      PEP 592: present = yanked; content = the reason
    <state>/files/<relpath>/provenance  PEP 740 provenance of the uploaded file
    <state>/files/<relpath>/facts       facts computed at upload: the file version they
                                        describe, its digests, its core metadata's sha256
    <state>/files/<relpath>/metadata    the core metadata (METADATA, PKG-INFO) read at upload
    <state>/changes.feed, .serial       the change feed every process follows (changes/)
    <state>/tmp/                        scratch: uploads are spooled here (cleaned at start)
    <state>/locks/                      per-filename publish locks (empty files)
    <state>/mirror/                     the caching mirror's files (default --mirror-cache)
    <state>/migrated/                   `.metadata` files once written beside wheels

Per-file state sits in a directory named after the file, holding short fixed names, so every
name that fits the package directory fits here. Facts (digests, metadata) are derived from the
file's bytes: those stored at upload name the file version they describe and are ignored once
the file changes (`catalog/facts.py`); files placed by other tools have theirs in the facts cache.
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
from creamery.core.names import LEGACY_SUFFIXES
from creamery.storage import Storage, StoredFile, read_all

log = logging.getLogger("creamery.state")

DEFAULT_NAME = ".creamery"
YANKED = "yanked"
PROVENANCE = "provenance"
FACTS = "facts"
CORE_METADATA = "metadata"
KINDS = (YANKED, PROVENANCE)  # the state the index follows (names loaded at start)
FACT_KINDS = (FACTS, CORE_METADATA)  # read on demand, never scanned
ALL_KINDS = KINDS + FACT_KINDS
_LOCK_STRIPES = 64
_STALE_PART_AGE = 600.0  # seconds: a `.creamery-*.part` in a root older than this is a leftover


class FileState(NamedTuple):
    yanked: bool
    provenance: bool


NO_STATE = FileState(False, False)


class StateDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.files = path / "files"
        self.tmp = path / "tmp"
        self.locks = path / "locks"
        self.migrated = path / "migrated"
        self._spool: Path | None = None
        self._spool_fd: int | None = None

    # ------------------------------------------------------------------ scratch

    def new_temp_file(self) -> tuple[int, Path]:
        """An open temp file in this process's scratch directory (same file system as the state)."""
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

    def clean_scratch(self, roots: Iterable[Path] = ()) -> int:
        """Remove what crashed processes left: spool directories no live process holds, and
        old `.creamery-*.part` files in the roots (earlier versions spooled there). The count."""
        removed = 0
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.tmp):
                if self._is_orphan(entry.path):
                    shutil.rmtree(entry.path, ignore_errors=True)
                    removed += 1
        cutoff = time.time() - _STALE_PART_AGE
        for root in roots:
            for leftover in root.glob(".creamery-*.part"):
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
        """Serialize the publish sequence of one filename across threads and processes."""
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

    def path_of(self, relpath: str, kind: str) -> Path:
        return self.files / relpath / kind

    def state_of(self, relpath: str) -> FileState:
        entry = self.files / relpath
        return FileState((entry / YANKED).is_file(), (entry / PROVENANCE).is_file())

    def read(self, relpath: str, kind: str) -> bytes | None:
        try:
            return self.path_of(relpath, kind).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def write(self, relpath: str, kind: str, data: bytes) -> None:
        durable.write_atomic(self.path_of(relpath, kind), data)

    def delete(self, relpath: str, kind: str) -> bool:
        entry = self.path_of(relpath, kind)
        try:
            entry.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return False
        with contextlib.suppress(OSError):
            durable.fsync_directory(entry.parent)
            entry.parent.rmdir()  # only when empty
        return True

    def forget(self, relpath: str) -> None:
        """Remove everything kept for a file (it was removed)."""
        for kind in ALL_KINDS:
            self.delete(relpath, kind)

    def yank_reason(self, relpath: str) -> str | None:
        data = self.read(relpath, YANKED)
        return None if data is None else data.decode("utf-8", "replace").strip()

    def scan(self) -> dict[str, FileState]:
        """The state of every file that has some (names only: no file is read)."""
        found: dict[str, FileState] = {}
        if not self.files.is_dir():
            return found
        base = len(str(self.files)) + 1
        for directory, _subdirs, names in os.walk(self.files):
            kinds = set(names) & set(KINDS)
            if kinds:
                relpath = directory[base:].replace(os.sep, "/")
                found[relpath] = FileState(YANKED in kinds, PROVENANCE in kinds)
        return found

    # ------------------------------------------------------------------ migration

    def migrate(self, storage: Storage, stored: StoredFile) -> bool:
        """Move a legacy sidecar (`x.whl.yanked`, `.provenance`, `.metadata` beside the file)
        from *storage* into this directory. Copy durably first, then delete the old one: a
        crash in between leaves both, and the next start does it again (idempotent). True
        when moved."""
        relpath = stored.key
        owner, _, suffix = relpath.rpartition(".")
        suffix = suffix.lower()
        try:
            data = read_all(storage, stored)
        except OSError:
            return False
        if suffix == "metadata":
            # Derived from the wheel (served from the facts cache now); kept, not lost.
            durable.write_atomic(self.migrated / relpath, data)
        else:
            self.write(owner, suffix, data)
        try:
            if not storage.delete(relpath):
                return False  # someone else moved it meanwhile
        except OSError as error:
            log.warning("migrated %s into the state directory, can't remove it: %s", relpath, error)
            return False
        log.info("migrated %s into %s", relpath, self.path)
        return True


def is_legacy_sidecar(filename: str) -> bool:
    return filename.lower().endswith(LEGACY_SUFFIXES)
