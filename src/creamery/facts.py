"""Facts that cost a read of the file: digests and core metadata, cached on disk.

Each fact is computed once per file version, keyed by (path, size, mtime), and kept in a small
SQLite file so that a restart does not recompute it. The cache is disposable: delete it at will.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import tarfile
import threading
import zipfile
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from creamery.storage import StoredFile

log = logging.getLogger("creamery.facts")

_CHUNK = 1 << 20
_MAX_METADATA = 8 << 20  # a METADATA file larger than this is not metadata


@dataclass(frozen=True, slots=True)
class Digests:
    sha256: str
    extra: dict[str, str]  # other hashlib algorithms asked for (--hash-algo)

    def get(self, algo: str) -> str:
        return self.sha256 if algo == "sha256" else self.extra[algo]


@dataclass(frozen=True, slots=True)
class CoreMetadata:
    """PEP 658 metadata of a distribution (None fields when absent)."""

    raw: bytes | None  # the METADATA / PKG-INFO bytes, served as <file>.metadata for wheels
    sha256: str | None
    name: str | None
    version: str | None
    summary: str | None
    requires_python: str | None


NO_METADATA = CoreMetadata(None, None, None, None, None, None)


def compute_digests(path: Path, algos: tuple[str, ...]) -> Digests:
    hashers = {"sha256": hashlib.sha256(), **{a: hashlib.new(a) for a in algos if a != "sha256"}}
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            for hasher in hashers.values():
                hasher.update(chunk)
    sha256 = hashers.pop("sha256").hexdigest()
    return Digests(sha256, {a: h.hexdigest() for a, h in hashers.items()})


def read_metadata_bytes(path: Path, kind: str) -> bytes | None:
    """METADATA of a wheel, PKG-INFO of an sdist; None when the archive has none."""
    name = path.name.lower()
    try:
        if kind == "wheel":
            return _wheel_metadata(path)
        if kind == "sdist" and name.endswith(".zip"):
            return _zip_member(path, lambda n: n.count("/") == 1 and n.endswith("/PKG-INFO"))
        if kind == "sdist" and (".tar" in name or name.endswith((".tgz", ".tbz2", ".txz"))):
            return _tar_pkg_info(path)
    except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError, ValueError) as error:
        log.info("can't read metadata of %s: %s", path.name, error)
    return None


def _wheel_metadata(path: Path) -> bytes | None:
    return _zip_member(path, lambda n: n.count("/") == 1 and n.endswith(".dist-info/METADATA"))


def _zip_member(path: Path, wanted: object) -> bytes | None:
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if wanted(info.filename) and info.file_size <= _MAX_METADATA:  # type: ignore[operator]
                return archive.read(info)
    return None


def _tar_pkg_info(path: Path) -> bytes | None:
    with tarfile.open(path) as archive:
        for member in archive:
            if member.name.count("/") == 1 and member.name.endswith("/PKG-INFO"):
                if not member.isfile() or member.size > _MAX_METADATA:
                    return None
                extracted = archive.extractfile(member)
                return extracted.read() if extracted else None
    return None


def parse_core_metadata(raw: bytes | None) -> CoreMetadata:
    if raw is None:
        return NO_METADATA
    headers = BytesHeaderParser().parsebytes(raw)

    def field(key: str) -> str | None:
        value = headers.get(key)
        return str(value).strip() if value is not None else None

    return CoreMetadata(
        raw=raw,
        sha256=hashlib.sha256(raw).hexdigest(),
        name=field("Name"),
        version=field("Version"),
        summary=field("Summary"),
        requires_python=field("Requires-Python") or None,
    )


class FactsCache:
    """Digests and metadata of files, computed at most once per (path, size, mtime)."""

    def __init__(self, directory: Path | None, algos: tuple[str, ...]) -> None:
        self.algos = tuple(a for a in algos if a != "sha256")
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if directory is not None:
            self._db = _open_db(directory)

    def digests(self, stored: StoredFile) -> Digests:
        known = self.known_digests(stored)
        if known is not None:
            return known
        key = stored.abspath
        digests = compute_digests(stored.path, self.algos)
        extra_text = ",".join(f"{a}={h}" for a, h in digests.extra.items())
        self._put(
            "INSERT OR REPLACE INTO digests VALUES (?,?,?,?,?)",
            (key, stored.size, stored.mtime_ns, digests.sha256, extra_text),
        )
        return digests

    def known_digests(self, stored: StoredFile) -> Digests | None:
        """The digests if already computed for this file version; never reads the file."""
        row = self._get(
            "SELECT sha256, extra FROM digests WHERE path=? AND size=? AND mtime_ns=?", stored
        )
        if row is not None:
            extra = dict(item.split("=", 1) for item in row[1].split(",") if item)
            if all(a in extra for a in self.algos):
                return Digests(row[0], extra)
        return None

    def metadata(self, stored: StoredFile, kind: str) -> CoreMetadata:
        row = self._get("SELECT raw FROM metadata WHERE path=? AND size=? AND mtime_ns=?", stored)
        if row is not None:
            return parse_core_metadata(row[0])
        raw = read_metadata_bytes(stored.path, kind)
        self._put(
            "INSERT OR REPLACE INTO metadata VALUES (?,?,?,?)",
            (stored.abspath, stored.size, stored.mtime_ns, raw),
        )
        return parse_core_metadata(raw)

    def _get(self, sql: str, stored: StoredFile) -> tuple[Any, ...] | None:
        if self._db is None:
            return None
        with self._lock:
            try:
                row: tuple[Any, ...] | None = self._db.execute(
                    sql, (stored.abspath, stored.size, stored.mtime_ns)
                ).fetchone()
                return row
            except sqlite3.Error as error:
                log.warning("facts cache read failed: %s", error)
                return None

    def _put(self, sql: str, values: tuple[Any, ...]) -> None:
        if self._db is None:
            return
        with self._lock:
            try:
                self._db.execute(sql, values)
                self._db.commit()
            except sqlite3.Error as error:
                log.warning("facts cache write failed: %s", error)


def _open_db(directory: Path) -> sqlite3.Connection | None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(directory / "facts.sqlite3", check_same_thread=False, timeout=10)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA cache_size=-512")  # KiB; rows are read once per file version
        db.execute(
            "CREATE TABLE IF NOT EXISTS digests (path TEXT PRIMARY KEY, size INT, mtime_ns INT,"
            " sha256 TEXT, extra TEXT)"
        )
        db.execute(
            "CREATE TABLE IF NOT EXISTS metadata (path TEXT PRIMARY KEY, size INT, mtime_ns INT,"
            " raw BLOB)"
        )
        db.commit()
        return db
    except (OSError, sqlite3.Error) as error:
        log.warning("facts cache disabled (%s): facts are recomputed after a restart", error)
        return None
