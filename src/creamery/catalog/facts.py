"""Facts that cost a read of the file: digests and core metadata.

An upload's facts are computed while it streams in and stored with the file, in the state
directory (`StoredFacts`, written by `publish.py` before the commit point), naming the file
version they describe: they are used first, and no process reads the file to hash it again.
Files placed by other tools get theirs computed once per file version, keyed by (key, version)
(`file_version`), and kept in a small SQLite file so that a restart does not recompute them.
That cache is disposable: delete it at will.

When the state is remote (an object store shared by replicas), facts computed for a file that
had none valid are also written to the state, as an upload's are (`FactsCache._share`): the
other replicas, and this one after a restart, read them instead of reading the file. A local
state is never written by reads.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any, BinaryIO

from creamery.core import archives
from creamery.core.hashing import PYPI_DIGESTS, Hasher, pypi_hashers
from creamery.core.names import parse_filename
from creamery.storage import AlreadyExists, Storage, StoredFile, chunks
from creamery.storage.reader_file import STREAM_BUFFER, ZIP_BUFFER, ReaderFile, open_reader_file
from creamery.storage.state import CORE_METADATA, FACTS, StateDir

log = logging.getLogger("creamery.facts")

_CHUNK = 1 << 20
_REMEMBERED = 16_384  # stored facts kept in memory when the state is remote (~300 bytes each)


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


def file_version(stored: StoredFile) -> str:
    """The version of a file that facts describe: the one place that knows which of
    StoredFile's fields tell one version of a file's bytes from another."""
    return f"{stored.size}:{stored.mtime_ns}:{stored.version}"


@dataclass(frozen=True, slots=True)
class StoredFacts:
    """What the uploader computed, kept in the state directory beside the file's other state."""

    version: str  # file_version() of the bytes described: other bytes, other facts
    digests: dict[str, str]  # sha256, md5, blake2b_256 (PyPI's names) at least
    metadata_read: bool = False  # the core metadata was looked for at upload
    metadata_sha256: str | None = None  # of the stored core metadata; None: there is none

    def to_bytes(self) -> bytes:
        document = {
            "version": self.version,
            "digests": self.digests,
            "metadata_read": self.metadata_read,
            "metadata_sha256": self.metadata_sha256,
        }
        return json.dumps(document, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> StoredFacts | None:
        """None when *data* is not what `to_bytes` writes (damaged: the facts are recomputed)."""
        try:
            document = json.loads(data)
            version, digests = document["version"], document["digests"]
            read, sha = document.get("metadata_read", False), document.get("metadata_sha256")
        except (ValueError, TypeError, KeyError):
            return None
        texts = isinstance(digests, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in digests.items()
        )
        if not isinstance(version, str) or not texts or not isinstance(read, bool):
            return None
        return cls(version, digests, read, sha if isinstance(sha, str) else None)


def compute_digests(path: Path, algos: tuple[str, ...]) -> Digests:
    with path.open("rb") as f:
        return digests_of(iter(lambda: f.read(_CHUNK), b""), algos)


def digests_of(content: Iterable[bytes], algos: tuple[str, ...]) -> Digests:
    hashers = {"sha256": hashlib.sha256(), **{a: hashlib.new(a) for a in algos if a != "sha256"}}
    for chunk in content:
        for hasher in hashers.values():
            hasher.update(chunk)
    sha256 = hashers.pop("sha256").hexdigest()
    return Digests(sha256, {a: h.hexdigest() for a, h in hashers.items()})


def read_metadata_bytes(
    source: Path | BinaryIO, kind: str, filename: str | None = None
) -> bytes | None:
    """METADATA of a wheel, PKG-INFO of an sdist or egg; None when there is none to read.

    *source*: a path, or a seekable binary file named *filename*. Read within the limits of
    `archives`: a file that exceeds one is listed without its core metadata, and says so in
    one log line (the result is cached, so once per file version).
    """
    name = filename or (source.name if isinstance(source, Path) else "")
    try:
        return archives.inspect(source, name, kind).metadata
    except archives.ArchiveLimitError as error:
        log.warning("not reading the metadata of %s: %s", name, error)
    except archives.ArchiveError as error:
        log.info("can't read the metadata of %s: %s", name, error)
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


def dedent_header_description(raw: bytes, description: str) -> str:
    """A Description given as a header, with the continuation indent removed.

    Metadata 1.x (and setuptools until 2.1) put the long description in a header whose
    continuation lines start with 8 spaces, or 7 spaces and `|` (the core metadata spec);
    PyPI and pkginfo strip them, and the blank lines around it (a description that starts on
    the header's next line). A description in the message body is returned as it is.
    """
    head = raw.split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0]
    if not any(line[:12].lower() == b"description:" for line in head.splitlines()):
        return description
    return "\n".join(_strip_continuation(line) for line in description.strip().splitlines())


def _strip_continuation(line: str) -> str:
    if line.startswith("        ") or line.startswith("       |"):
        return line[8:]
    return line


class FactsCache:
    """Digests and metadata of files, computed at most once per file identity.

    Facts stored at upload come first. A file's identity is (key, version) (`file_version`): a
    file replaced by a rename, a link or an in-place copy gets another version, so a fact never
    outlives the bytes it describes. A fact computed while the file changed under the reader is
    returned but not kept.
    """

    def __init__(
        self,
        directory: Path | None,
        algos: tuple[str, ...],
        storage: Storage,
        state: StateDir | None = None,
    ) -> None:
        self.storage = storage  # where the files are read
        self.algos = tuple(a for a in algos if a != "sha256")
        self._state = state  # where facts stored at upload are
        self._lock = threading.Lock()
        _CACHES.add(self)  # its lock is free again in a forked child (`_after_fork_in_child`)
        # A remote state (an object store) costs requests per read: its facts, once read for
        # a file version, are kept (bounded; they never change for that version).
        self._remote = state is not None and state.remote
        self._remembered: OrderedDict[tuple[str, str], StoredFacts] = OrderedDict()
        self._share_failing = False  # the last write of computed facts to the state failed
        self._directory = directory
        self._db: _Database | None = None
        if directory is not None:
            self._db = _Database.acquire(directory)

    def stored(self, stored: StoredFile) -> StoredFacts | None:
        """The facts stored at upload for this very file version; never reads the file."""
        if self._state is None:
            return None
        identity = _identity(stored)
        if self._remote:
            with self._lock:
                known = self._remembered.get(identity)
            if known is not None:
                return known
        data = self._state.read(stored.key, FACTS)
        facts = None if data is None else StoredFacts.from_bytes(data)
        if facts is None or facts.version != identity[1]:
            return None  # none, or of bytes since replaced by another tool
        if self._remote:  # not the absence: the facts of a file just put are written after it
            self._remember(identity, facts)
        return facts

    def _remember(self, identity: tuple[str, str], facts: StoredFacts) -> None:
        """Keep a remote state's facts of one file version (bounded, oldest out first)."""
        with self._lock:
            self._remembered[identity] = facts
            if len(self._remembered) > _REMEMBERED:
                self._remembered.popitem(last=False)

    def pypi_digests(self, stored: StoredFile) -> dict[str, str] | None:
        """sha256, md5 and blake2b-256 when stored at upload; never reads the file."""
        facts = self.stored(stored)
        if facts is None or not all(a in facts.digests for a in PYPI_DIGESTS):
            return None
        return {a: facts.digests[a] for a in PYPI_DIGESTS}

    def _stored_digests(self, stored: StoredFile) -> Digests | None:
        facts = self.stored(stored)
        if facts is None or not all(a in facts.digests for a in ("sha256", *self.algos)):
            return None
        return Digests(facts.digests["sha256"], {a: facts.digests[a] for a in self.algos})

    def _stored_metadata(self, stored: StoredFile) -> CoreMetadata | None:
        facts = self.stored(stored)
        if facts is None or not facts.metadata_read:
            return None
        if facts.metadata_sha256 is None:
            return NO_METADATA  # looked for at upload: there is none
        assert self._state is not None
        metadata = parse_core_metadata(self._state.read(stored.key, CORE_METADATA))
        return metadata if metadata.sha256 == facts.metadata_sha256 else None

    def digests(self, stored: StoredFile) -> Digests:
        known = self.known_digests(stored)
        if known is not None:
            return known
        if not self._remote:
            with self.storage.open(stored) as reader:
                digests = digests_of(chunks(reader), self.algos)
            if self._unchanged(stored):
                self.remember_digests(stored, digests)
            return digests
        # Shared with the other replicas: the digests PyPI publishes too, in the same pass.
        hashers: dict[str, Hasher] = pypi_hashers()
        hashers.update({a: hashlib.new(a) for a in self.algos if a not in hashers})
        with self.storage.open(stored) as reader:
            for chunk in chunks(reader):
                for hasher in hashers.values():
                    hasher.update(chunk)
        found = {a: h.hexdigest() for a, h in hashers.items()}
        digests = Digests(found.pop("sha256"), found)
        if self._unchanged(stored):
            self.remember_digests(stored, digests)
            self._share(stored, digests)
        return Digests(digests.sha256, {a: found[a] for a in self.algos})

    def _share_if_new(self, stored: StoredFile) -> None:
        """Share the facts of *stored* when its digests are known here and not in the state."""
        known = self.known_digests(stored)
        pypi = known is not None and all(a in known.extra for a in PYPI_DIGESTS[1:])
        if known is not None and pypi and self.stored(stored) is None:
            self._share(stored, known)

    def _share(self, stored: StoredFile, digests: Digests) -> None:
        """Write the facts just computed for *stored* to the remote state, in the format and
        under the keys an upload writes (`metadata`, then `facts` naming the file version),
        so that no other replica reads the file again to compute them.

        Done here, in the worker thread that computed them, after computing: it costs this
        request one PUT pair (and the core metadata, which a page reads next anyway), needs no
        queue that a stop could lose, and a store that is down fails the PUTs quickly after
        it failed the reads. A failure (StoreUnavailable, any OSError) is logged once per
        outage and never fails the request: the facts are still returned, and kept locally.

        Never a wrong record: the facts name the version (ETag) they were computed from and
        this is called only when the file still had that version after reading it. A file
        replaced between that check and the write gets another version, so the record is
        ignored by every reader (`stored`) and recomputed, as for an upload's facts once
        another tool replaces the file. The metadata object is checked by its sha256 named in
        the facts. Facts valid for the current version are never overwritten: `facts` is put
        if absent; only a record of another version is replaced. Two replicas computing the
        same file at once write the same content: the second one's AlreadyExists is ignored.
        """
        assert self._state is not None
        state = self._state
        parsed = parse_filename(stored.key.rpartition("/")[2])
        try:
            if parsed is None:
                raw = None
                metadata_read = False
            else:
                raw = self.metadata(stored, parsed.kind, share=False).raw
                metadata_read = True
            facts = StoredFacts(
                file_version(stored),
                {"sha256": digests.sha256, **digests.extra},
                metadata_read,
                None if raw is None else hashlib.sha256(raw).hexdigest(),
            )
            if raw is not None:
                state.write(stored.key, CORE_METADATA, raw)
            key = state.key(stored.key, FACTS)
            try:
                state.store.put(key, facts.to_bytes(), if_absent=True)
            except AlreadyExists:
                there = state.read(stored.key, FACTS)
                old = None if there is None else StoredFacts.from_bytes(there)
                if old is None or old.version != facts.version:  # of bytes since replaced
                    state.write(stored.key, FACTS, facts.to_bytes())
        except OSError as error:  # StoreUnavailable among them
            if not self._share_failing:
                log.warning("can't store computed facts in the state (%s): kept locally", error)
            self._share_failing = True
            return
        if self._share_failing:
            log.info("storing computed facts in the state again")
        self._share_failing = False
        self._remember(_identity(stored), facts)

    def remember_digests(self, stored: StoredFile, digests: Digests) -> None:
        """Keep digests computed for this file version."""
        extra_text = ",".join(f"{a}={h}" for a, h in digests.extra.items())
        self._put(
            "INSERT OR REPLACE INTO digests VALUES (?,?,?,?)",
            stored,
            digests.sha256,
            extra_text,
        )

    def known_digests(self, stored: StoredFile) -> Digests | None:
        """The digests if already computed for this file version; never reads the file."""
        uploaded = self._stored_digests(stored)
        if uploaded is not None:
            return uploaded
        row = self._get("SELECT sha256, extra FROM digests" + _WHERE, stored)
        if row is not None:
            extra = dict(item.split("=", 1) for item in row[1].split(",") if item)
            if all(a in extra for a in self.algos):
                return Digests(row[0], extra)
        return None

    def metadata(self, stored: StoredFile, kind: str, *, share: bool = True) -> CoreMetadata:
        # Both describe this very file version. A remote state costs requests: there the
        # local cache comes first, and keeps what the state held.
        if not self._remote and (uploaded := self._stored_metadata(stored)) is not None:
            return uploaded
        row = self._get("SELECT raw FROM metadata" + _WHERE, stored)
        if row is not None:
            return parse_core_metadata(row[0])
        if self._remote and (uploaded := self._stored_metadata(stored)) is not None:
            self.remember_metadata(stored, uploaded.raw)
            return uploaded
        raw = self._read_metadata(stored, kind)
        if self._unchanged(stored):
            self.remember_metadata(stored, raw)
            # A remote state gets the facts once the digests are known too (a page asks for
            # them first: then `digests` shared both, and this is not reached).
            if share and self._remote:
                self._share_if_new(stored)
        return parse_core_metadata(raw)

    def _read_metadata(self, stored: StoredFile, kind: str) -> bytes | None:
        """Read from the file: a local one by its path, a remote one by ranged reads (a wheel's
        end and one member, not the whole file; an sdist streamed). A file gone meanwhile
        has none (as a local one); the store's failure (`StoreUnavailable`) is raised: that
        is no answer about the file, and is not remembered."""
        path = self.storage.local_path(stored)
        if path is not None:
            return read_metadata_bytes(Path(path), kind)
        filename = stored.key.rpartition("/")[2]
        streamed = archives.archive_format(filename) == "tar"
        try:
            with (
                self.storage.open(stored) as reader,
                open_reader_file(reader, STREAM_BUFFER if streamed else ZIP_BUFFER) as file,
            ):
                raw = read_metadata_bytes(file, kind, filename)
                assert isinstance(file.raw, ReaderFile)
                if file.raw.failure is not None:
                    raise file.raw.failure
        except FileNotFoundError:
            return None
        return raw

    def remember_metadata(self, stored: StoredFile, raw: bytes | None) -> None:
        """Keep metadata read from this file version."""
        self._put("INSERT OR REPLACE INTO metadata VALUES (?,?,?)", stored, raw)

    def _unchanged(self, stored: StoredFile) -> bool:
        """Is the stored version still the one *stored* describes (after reading it)?"""
        try:
            return self.storage.stat(stored.key) == stored
        except OSError:
            return False

    def close(self) -> None:
        """Let go of the database (its app is gone); lookups after this compute afresh."""
        with self._lock:
            db, self._db = self._db, None
        if db is not None and db.pid == os.getpid():  # a parent's is the parent's to close
            db.release()

    def _database(self) -> _Database | None:
        """This process's connection: a child forked with this cache (gunicorn --preload, a
        WSGI host forking its workers) opens its own, as SQLite requires."""
        db = self._db
        if db is None or db.pid == os.getpid() or self._directory is None:
            return db
        with self._lock:
            if self._db is db:
                self._db = _Database.acquire(self._directory)
            return self._db

    def _get(self, sql: str, stored: StoredFile) -> tuple[Any, ...] | None:
        db = self._database()
        if db is None:
            return None
        with db.lock:
            if db.connection is None:  # closed meanwhile
                return None
            try:
                row: tuple[Any, ...] | None = db.connection.execute(
                    sql, _identity(stored)
                ).fetchone()
                return row
            except sqlite3.Error as error:
                log.warning("facts cache read failed: %s", error)
                return None

    def _put(self, sql: str, stored: StoredFile, *values: Any) -> None:
        db = self._database()
        if db is None:
            return
        with db.lock:
            if db.connection is None:  # closed meanwhile
                return
            try:
                db.connection.execute(sql, (*_identity(stored), *values))
                db.connection.commit()
            except sqlite3.Error as error:
                log.warning("facts cache write failed: %s", error)


class _Database:
    """The one connection of this process to a facts cache file, shared by its FactsCaches.

    One per file, not one per cache: in WAL mode every open connection holds a shared lock on
    the database file, and SQLite cannot close the descriptor of a connection closed while
    another connection of the process holds a lock on that file (closing it would drop the
    other's POSIX locks): it keeps it until the last one closes. Apps built and dropped in a
    process that keeps one (pypiserver's users build one per test, all on the same default
    cache) so left a descriptor behind for each app dropped since the last one was built.

    A forked child must not use its parent's connection: it does not hold the parent's POSIX
    locks, so the parent, closing its last connection, deletes the WAL the child writes to
    (the child's facts were lost; with a third process writing, the file was damaged:
    "database disk image is malformed"). The child opens its own (`FactsCache._database`).
    """

    _open: dict[str, _Database] = {}
    _open_lock = threading.Lock()
    # In a child: the parent's connections, kept referenced, never closed nor collected there
    # (closing one would checkpoint and delete the parent's WAL as if it were the last one).
    _inherited: list[sqlite3.Connection] = []

    def __init__(self, key: str, connection: sqlite3.Connection) -> None:
        self.key = key
        self.pid = os.getpid()
        self.connection: sqlite3.Connection | None = connection
        self.lock = threading.Lock()  # one statement (and its commit) at a time
        self.users = 1

    @classmethod
    def acquire(cls, directory: Path) -> _Database | None:
        """The open database in *directory*, opened if none is: None if it cannot be."""
        key = os.path.realpath(directory / "facts.sqlite3")
        with cls._open_lock:
            db = cls._open.get(key)
            if db is not None:
                db.users += 1
                return db
            connection = _open_db(directory)
            if connection is None:
                return None
            db = cls._open[key] = _Database(key, connection)
            return db

    def release(self) -> None:
        """One user less: the last one closes the connection (before another one can open:
        a connection closed while another is open would keep its descriptor)."""
        with self._open_lock:
            self.users -= 1
            if self.users:
                return
            del self._open[self.key]
            with self.lock:
                connection, self.connection = self.connection, None
            if connection is not None:
                connection.close()

    @classmethod
    def after_fork_in_child(cls) -> None:
        cls._open_lock = threading.Lock()  # another thread may have held it at the fork
        cls._inherited.extend(db.connection for db in cls._open.values() if db.connection)
        cls._open = {}


# Every cache of this process: a child forked while another thread held a cache's lock
# (that thread is not in the child) would wait for it forever.
_CACHES: weakref.WeakSet[FactsCache] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    _Database.after_fork_in_child()
    for cache in list(_CACHES):
        cache._lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)

_WHERE = " WHERE path=? AND version=?"
_SCHEMA = 3  # 3: keyed by (key, version); older caches are dropped (they are disposable)


def _identity(stored: StoredFile) -> tuple[str, str]:
    """The cache's key: the file's key and its version."""
    return (stored.key, file_version(stored))


_DAMAGED = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB"})


def _open_db(directory: Path) -> sqlite3.Connection | None:
    try:
        return _connect(directory)
    except (OSError, sqlite3.Error) as error:
        if getattr(error, "sqlite_errorname", "") not in _DAMAGED:
            log.warning("facts cache disabled (%s): facts are recomputed after a restart", error)
            return None
        # The cache is disposable: a damaged one (a crash on a disk that lies about fsync, a
        # stray write) would otherwise stay disabled at every start.
        log.warning("facts cache %s was damaged (%s): starting afresh", directory, error)
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                (directory / f"facts.sqlite3{suffix}").unlink()
    try:
        return _connect(directory)
    except (OSError, sqlite3.Error) as error:
        log.warning("facts cache disabled (%s): facts are recomputed after a restart", error)
        return None


def _connect(directory: Path) -> sqlite3.Connection:
    directory.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(directory / "facts.sqlite3", check_same_thread=False, timeout=10)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA cache_size=-512")  # KiB; rows are read once per file version
        if db.execute("PRAGMA user_version").fetchone()[0] != _SCHEMA:
            db.execute("DROP TABLE IF EXISTS digests")
            db.execute("DROP TABLE IF EXISTS metadata")
            db.execute(f"PRAGMA user_version={_SCHEMA}")
        db.execute(
            "CREATE TABLE IF NOT EXISTS digests (path TEXT PRIMARY KEY, version TEXT,"
            " sha256 TEXT, extra TEXT)"
        )
        db.execute(
            "CREATE TABLE IF NOT EXISTS metadata (path TEXT PRIMARY KEY, version TEXT, raw BLOB)"
        )
        db.commit()
    except BaseException:
        db.close()
        raise
    return db
