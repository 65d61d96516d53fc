"""Where distributions live: the `Storage` protocol every backend implements.

`LocalStorage` (`local.py`) implements it for directories; an object store can implement it
too: nothing outside a backend knows about roots, absolute paths or inodes. A file is named by
its *key*, a POSIX relpath (the URL path under /packages/), and identified by `StoredFile`:
(key, size, version, mtime_ns), where the version is opaque to everyone but its backend.

Keys follow one rule in every backend (`is_safe_relpath`): relative, no `.`/`..`/empty
segment, no NUL or backslash, nothing hidden (a segment starting with `.`). A key breaking it
is never listed, found, served nor written.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import NamedTuple, Protocol, runtime_checkable


class StoredFile(NamedTuple):
    """One version of a stored file, as a listing, `stat` or `put` saw it.

    Two StoredFiles are equal only when they describe the same bytes: a replaced file has
    another version even within one mtime tick. The index holds one per file (40,000+): no
    field but the key is a new object per file.
    """

    key: str  # POSIX relpath: the URL path under /packages/
    size: int
    version: int | str  # opaque: tells a replaced file apart (locally the inode; an ETag...)
    mtime_ns: int
    place: str = ""  # private to the backend that made it (locally: its root, one shared string)


class AlreadyExists(Exception):
    """`put(..., if_absent=True)` found the key taken: the storage is the authority on it.

    Not an OSError: the store worked, the client asked for a name that is not free."""


class StoreUnavailable(OSError):
    """The store did not answer, or answered with its own failure (a network error, a timeout,
    a 5xx): the request may succeed later. HTTP answers it with 503 and `Retry-After`; a read
    of a key that is gone raises FileNotFoundError instead (404)."""


class UnsafeKey(ValueError):
    """A key that breaks the key rule (`is_safe_relpath`) was given to a write."""


def is_hidden(key: str) -> bool:
    """Dot files and anything inside a dot directory are never listed nor served."""
    return key.startswith(".") or "/." in key


def is_safe_relpath(key: str) -> bool:
    """A key that stays inside its root: no absolute path, no `.`, `..` or empty segment, no
    NUL or backslash, not hidden. String tests only: it runs on every file served."""
    if not key or key[0] in "/." or "\0" in key or "\\" in key or "/." in key:
        return False
    return "//" not in key and not key.endswith("/")


class Reader(Protocol):
    """An open version of one stored file: its bytes stay those of the version opened, even
    if the key is replaced meanwhile. A context manager; `close()` it when done."""

    @property
    def size(self) -> int: ...

    @property
    def mtime_ns(self) -> int: ...

    @property
    def version(self) -> int | str:
        """Of the version opened, which may be newer than the StoredFile asked for (a local
        file system keeps no old versions): compare it to know."""
        ...

    def read(self, offset: int, length: int) -> bytes:
        """Up to *length* bytes from *offset*; shorter only at the end (b"" past it)."""
        ...

    def fileno(self) -> int | None:
        """The local fast path: an open descriptor (for `pread`, `sendfile`), else None."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Reader: ...

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...


class Listing(NamedTuple):
    """One directory as it is now: its visible file names (None: it is gone), and the
    relpaths of the subdirectories that no scan listed yet."""

    relpath: str  # "" for a root
    files: set[str] | None
    new_directories: list[str]


class Storage(Protocol):
    """What the catalog needs of a store. Errors: `AlreadyExists`, `UnsafeKey`, and OSError
    for the store's own failures (a full disk; `StoreUnavailable` for a store that does not
    answer); a read of a key that is gone raises FileNotFoundError.

    *remote*: every call may wait on a network (an object store): callers on an event loop
    run them in a worker thread. False for a local file system, whose calls are cheap enough
    to make inline on the hot paths."""

    remote: bool

    # ------------------------------------------------------------------ reading

    def scan(self, prefix: str = "") -> Iterator[StoredFile]:
        """Every visible file (first root wins on equal keys); with *prefix*, a directory key,
        only those below it. Streamed: never the whole listing in memory at once."""
        ...

    def stat(self, key: str) -> StoredFile | None:
        """The file's current version, or None (absent, a directory, hidden or unsafe key)."""
        ...

    def open(self, stored: StoredFile) -> Reader:
        """Open *stored* for reading (its current version where the store keeps no old ones:
        the reader says which it opened). FileNotFoundError when it is gone."""
        ...

    def local_path(self, stored: StoredFile) -> str | None:
        """The real file's path where the store is a file system (for `zipfile`), else None."""
        ...

    def url(self, stored: StoredFile) -> str | None:
        """A URL a client may fetch *stored* from directly (presigned), or None: serve it."""
        ...

    # ------------------------------------------------------------------ writing

    def put(self, key: str, content: Path | bytes, *, if_absent: bool) -> StoredFile:
        """Store *content* at *key*, durably (flushed and in place when this returns), and
        atomically (readers see the old version or the new one); the version stored.

        *content* is bytes, or a closed spool file in the scratch area, moved into place (not
        copied, where the store can) and gone afterwards in every case. With *if_absent*, of
        several puts of one key exactly one wins; the others raise AlreadyExists (the content
        stays the winner's). Without it, an existing version is replaced. A failed put leaves
        nothing behind.
        """
        ...

    def delete(self, key: str) -> bool:
        """Remove *key* (every copy of it); True when something was removed."""
        ...

    def health(self) -> str | None:
        """None when the store can serve and take uploads, else the problem in one line."""
        ...

    def changed_listings(self) -> Sequence[Listing]:
        """The directories that may have changed since they were last listed (changes that no
        event reported: no watch, a network file system), listed again by name. One `stat`
        per directory, one listing (no `stat` per file) per changed directory."""
        ...


@runtime_checkable
class ScansAfter(Protocol):
    """A store that lists from a key on (`LocalStorage`, `S3Storage`): a reader of a numbered
    series (the change feed's records) polls with one request (S3's `start-after`), not a
    listing of the whole prefix. Other stores are read with `scan`."""

    def scan_after(self, prefix: str, after: str) -> Iterator[StoredFile]:
        """The visible files below the directory *prefix* whose keys sort after *after* (a
        key below *prefix*; else nothing), in key order: bytewise on the UTF-8 keys, as S3
        lists. Streamed; a local directory is read whole to sort it."""
        ...


def read_all(storage: Storage, stored: StoredFile) -> bytes:
    """The whole content of a small file (a signature, a sidecar)."""
    with storage.open(stored) as reader:
        return reader.read(0, reader.size)


def chunks(reader: Reader, size: int = 1 << 20) -> Iterator[bytes]:
    """The bytes of the version opened, in order, *size* at a time."""
    offset, end = 0, reader.size
    while offset < end and (chunk := reader.read(offset, min(size, end - offset))):
        offset += len(chunk)
        yield chunk


def is_version(reader: Reader, stored: StoredFile) -> bool:
    """Did *reader* open the very version *stored* describes (not a newer one)?"""
    return (reader.version, reader.size, reader.mtime_ns) == (
        stored.version,
        stored.size,
        stored.mtime_ns,
    )
