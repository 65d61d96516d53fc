"""Package roots in S3-compatible object storage: `S3Storage`, over obstore.

Imported only when a root is an `s3://` URL, so a local-directory install never loads an S3
client. The bucket holds the same relative paths a directory would (`<prefix>/<key>`), and
creamery's own state under `<prefix>/.creamery/`, which no scan lists, since hidden keys are
never listed, found, served nor written here.

Versions are ETags: S3 gives a new one to every write, even of the same bytes within one
second, so a replaced object is told apart although `Last-Modified` only has whole seconds.
The one write primitive that makes several replicas safe is the conditional create
(`If-None-Match: *`): of N racing puts of one key exactly one wins. A store that ignores the
header (an old MinIO, Ceph before Reef) silently lets the last writer win.

Errors: a store that does not answer, times out, throttles or answers 5xx raises
`StoreUnavailable` (its `strerror` is one line naming the store, never a credential); one that
refuses the credentials raises `StoreRefused`, a StoreUnavailable too (HTTP answers 503 all
the same: the client did nothing wrong), whose line says to check the credentials. 404 is
FileNotFoundError, or None where the API says so.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

import obstore
from obstore import exceptions as obx
from obstore.store import S3Store

from creamery.core.objects import ObjectRoot, S3Options, S3Settings, resolve_s3_settings
from creamery.storage import (
    AlreadyExists,
    Listing,
    Storage,
    StoredFile,
    StoreUnavailable,
    UnsafeKey,
    is_safe_relpath,
)

if TYPE_CHECKING:
    from obstore import GetOptions, GetResult, ObjectMeta

__all__ = ["S3Reader", "S3Storage", "StoreRefused", "VersionChanged", "describe_error"]

log = logging.getLogger("creamery.storage")

# Objects up to this size are read whole by `open` (one GET, and the reader holds that very
# version whatever happens to the key): the small-file cache of the HTTP layer and every
# sidecar are below it. Larger ones are streamed by one GET; a reader that must jump (a Range
# request) or lost its connection goes on with a ranged GET bound to the ETag it opened.
_WHOLE = 1 << 20
_STREAM_CHUNK = 256 * 1024
_FIRST_WINDOW = 8 << 20  # a ranged GET after a jump asks this much, then twice as much...
_LAST_WINDOW = 128 << 20  # ...up to here; then the rest of the object
# A single PUT is what `If-None-Match: *` can guard (S3's limit is 5 GB), and obstore holds its
# body in memory; an overwrite above this goes multipart, streamed from the spool file.
_MULTIPART = 64 << 20
_SLOWEST_UPLOAD = 512 * 1024  # bytes/s an upload to the store may crawl at before it times out
_CONFLICT_RETRIES = 3  # 409 ConditionalRequestConflict: another conditional write in flight
_STATUS = re.compile(r"status code: (\d{3})")
_BAD_PATH = re.compile(r'Path "(.*)"(?: contained empty path segment|: Encountered)', re.S)


class VersionChanged(AlreadyExists):
    """`S3Storage.replace` found another version than the one it was to replace (or none):
    another writer came first. An AlreadyExists, so code that can't import this module (no
    obstore) still catches it."""


class StoreRefused(StoreUnavailable):
    """The store answered but refused creamery's credentials (401/403): a misconfiguration.
    HTTP answers 503 like any store failure (nothing the client did); the line says what to
    check, and `health()` reports it."""


# ---------------------------------------------------------------------------- errors


def describe_error(error: BaseException) -> tuple[str, int | None]:
    """What went wrong in a few words (no URL, no credential) and the HTTP status if any."""
    text = str(error)
    match = _STATUS.search(text)
    status = int(match.group(1)) if match else None
    if status is not None:
        return f"HTTP {status}", status
    lowered = text.lower()  # obstore's text ends with the Rust error's debug form
    if "connection refused" in lowered or "connectionrefused" in lowered:
        return "connection refused", None
    if "dns error" in lowered or "failed to lookup address" in lowered:
        return "unknown host", None
    if "kind: timeout" in lowered or "timedout" in lowered or "timed out" in lowered:
        return "timeout", None  # not a bare "timeout": every text names its retry_timeout
    if "connection reset" in lowered or "broken pipe" in lowered:
        return "connection lost", None
    if "kind: connect" in lowered:
        return "can't connect", None
    if "error sending request" in lowered:
        return "no answer", None
    return "network error", None


def _line(error: BaseException) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0][:200]


def _translate(error: Exception, where: str, action: str) -> NoReturn:
    """Raise the Storage error for an obstore error of *action* on *where* (a store URL)."""
    if isinstance(error, StoreUnavailable | AlreadyExists):
        raise error
    if isinstance(error, ValueError) and not isinstance(error, obx.BaseError):
        raise OSError(errno.EINVAL, f"{where}: {action}: {_line(error)}") from None
    if isinstance(error, FileNotFoundError):
        raise FileNotFoundError(errno.ENOENT, f"{where}: not found ({action})") from None
    if isinstance(error, obx.AlreadyExistsError):
        raise AlreadyExists(where) from None
    reason, status = describe_error(error)
    if isinstance(error, obx.PermissionDeniedError | obx.UnauthenticatedError) or status in (
        401,
        403,
    ):
        raise StoreRefused(
            errno.EACCES,
            f"{where}: the store refuses creamery's credentials ({action}: {reason or 'denied'});"
            " check the access key, the profile and the bucket policy",
        ) from None
    if status == 404:
        raise FileNotFoundError(errno.ENOENT, f"{where}: no such bucket or key ({action})")
    if status is not None and 400 <= status < 500 and status not in (408, 409, 429):
        raise OSError(errno.EIO, f"{where}: the store refused the request ({action}: {reason})")
    raise StoreUnavailable(
        errno.EAGAIN, f"{where}: the store does not answer ({action}: {reason})"
    ) from None


# ---------------------------------------------------------------------------- the client


def _client_config(settings: S3Settings) -> dict[str, Any]:
    config: dict[str, Any] = {"virtual_hosted_style_request": not settings.path_style}
    if settings.endpoint_url:
        config["endpoint"] = settings.endpoint_url
    if settings.region:
        config["region"] = settings.region
    if settings.access_key_id and settings.secret_access_key:
        config["access_key_id"] = settings.access_key_id
        config["secret_access_key"] = settings.secret_access_key
        if settings.session_token:
            config["session_token"] = settings.session_token
    return config


def _store(bucket: str, settings: S3Settings, timeout: float, whole: float | None) -> S3Store:
    """A client of *bucket*: *timeout* bounds connecting, each read, and the retries of a
    call; *whole* bounds one request body included (None: no bound but each read's, for a
    download streamed at the pace of its client). A store that hangs is a StoreUnavailable
    within about *timeout*."""
    client: dict[str, Any] = {
        "allow_http": settings.allow_http,
        "connect_timeout": _duration(min(timeout, 5.0)),
        "read_timeout": _duration(timeout),
        "timeout": "24h" if whole is None else _duration(whole),
    }
    retry: dict[str, Any] = {
        "max_retries": 2,
        "retry_timeout": timedelta(seconds=timeout),
        "backoff": {
            "init_backoff": timedelta(milliseconds=50),
            "max_backoff": timedelta(seconds=1),
        },
    }
    return S3Store(
        bucket,
        client_options=client,  # type: ignore[arg-type]
        retry_config=retry,  # type: ignore[arg-type]
        **_client_config(settings),
    )


def _duration(seconds: float) -> str:
    return f"{max(int(seconds * 1000), 1)}ms"


def _mtime_ns(moment: datetime) -> int:
    """Whole seconds: HEAD's Last-Modified has no more, and a listing must equal a stat."""
    return int(moment.timestamp()) * 1_000_000_000


class S3Storage:
    """One package root in a bucket (`s3://bucket/prefix`). Every call may wait on the
    network (`remote`): callers on an event loop run them in a worker thread."""

    remote = True
    multipart_bytes = _MULTIPART  # an overwrite above this is a multipart upload

    def __init__(
        self,
        root: ObjectRoot,
        options: S3Options,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.root = root
        self.options = options
        self.place = root.url  # the `place` of every StoredFile: one shared string
        self._base = f"{root.prefix}/" if root.prefix else ""
        self.settings = resolve_s3_settings(options, os.environ if environ is None else environ)
        # Making a client costs ~50 ms (its HTTP stack): two here, one per upload size class.
        self._client = _store(root.bucket, self.settings, options.timeout, options.timeout)
        self._bulk = _store(root.bucket, self.settings, options.timeout, None)
        self._uploaders: dict[int, S3Store] = {}

    def __repr__(self) -> str:
        return f"S3Storage({self.place!r})"

    def _object(self, key: str) -> str:
        return self._base + key

    def _where(self, key: str = "") -> str:
        return f"{self.place}/{key}" if key else self.place

    def _stored(self, key: str, meta: ObjectMeta) -> StoredFile:
        return StoredFile(
            key, meta["size"], meta["e_tag"] or "", _mtime_ns(meta["last_modified"]), self.place
        )

    # ------------------------------------------------------------------ reading

    def scan(self, prefix: str = "") -> Iterator[StoredFile]:
        """Every visible object below the root (or below the directory *prefix*), streamed in
        pages of 1,000 and in key order.

        One recursive listing, not one per directory (10,000 projects would be 10,000 LISTs):
        a hidden directory (`.creamery/` with its state objects, a `.git/`) is jumped over by
        restarting the listing after it (`start-after <prefix>/.creamery0`: every key inside
        sorts before that), so at most its first page is read, not its objects one by one.
        A directory marker (the empty object `a/` consoles create, which obstore lists as
        `a`) is not a file: an empty object listed is confirmed by a HEAD."""
        if prefix:
            prefix = prefix.removesuffix("/")
            if not is_safe_relpath(prefix):
                return
            listed: str | None = self._object(prefix)
        else:
            listed = self.root.prefix or None
        base = len(self._base)
        pending: StoredFile | None = None  # held back one item: is it a directory marker?
        for meta in self._listing(listed):
            rel = meta["path"][base:]
            if not is_safe_relpath(rel):
                continue
            if pending is not None and rel.startswith(pending.key + "/"):
                pending = None  # "a" listed just before "a/x": the marker object "a/"
            if pending is not None and self._is_file(pending):
                yield pending
            pending = self._stored(rel, meta)
        if pending is not None and self._is_file(pending):
            yield pending

    def _is_file(self, stored: StoredFile) -> bool:
        """An empty object may be a directory marker (`a/`, listed as `a`): `a` itself must
        answer a HEAD. Anything else is a file."""
        return stored.size != 0 or self.stat(stored.key) is not None

    def scan_after(self, prefix: str, after: str) -> Iterator[StoredFile]:
        """Beyond the protocol, for a log of numbered objects (the change feed): the visible
        files below the directory *prefix* whose keys sort after *after*, in key order
        (S3's byte order), without listing those before (`start-after`)."""
        prefix = prefix.removesuffix("/")
        if not (is_safe_relpath(prefix) and is_safe_relpath(after)):
            return
        if not after.startswith(prefix + "/"):
            return
        base = len(self._base)
        for meta in self._listing(self._object(prefix), self._object(after)):
            rel = meta["path"][base:]
            if is_safe_relpath(rel):
                yield self._stored(rel, meta)

    def _listing(self, listed: str | None, offset: str | None = None) -> Iterator[ObjectMeta]:
        """The objects below *listed* (after *offset*), in key order, past hidden directories
        and past keys obstore cannot parse (`a//b`, `a/./b`: one odd key must not hide the
        rest)."""
        base = len(self._base)
        floor = offset  # the last key yielded, or where this listing started
        while True:
            restart: str | None = None
            for page in self._pages(listed, offset):
                if isinstance(page, _Skip):
                    # The page with the odd key failed whole: what it held before that key,
                    # by delimiter listings; what the restart jumps over (`P/0`) on its own.
                    yield from self._between(listed, floor, page.key)
                    if page.exact is not None:
                        exact = page.exact
                        yield from self._call("LIST", lambda e=exact: _collect(self._client, e))
                    restart = page.offset
                    break
                for meta in page:
                    jump = _hidden_directory(meta["path"][base:])
                    if jump is not None:
                        restart = self._base + jump
                        break
                    floor = meta["path"]
                    yield meta
                if restart is not None:
                    break
            if restart is None:
                return
            offset = floor = restart

    def _between(self, directory: str | None, low: str | None, high: str) -> Iterator[ObjectMeta]:
        """The objects below *directory* after *low* and before *high*, in key order, one
        delimiter listing per directory that may hold some (a directory that holds an odd
        key itself can't be listed: what it holds before that key is missed, and said)."""
        try:
            result = self._call(
                "LIST", lambda: obstore.list_with_delimiter(self._client, prefix=directory)
            )
        except OSError:
            log.warning("%s: can't list %s around an odd key", self._where(), directory or "/")
            return
        entries: list[tuple[str, ObjectMeta | None]] = [(m["path"], m) for m in result["objects"]]
        entries += [(f"{p}/", None) for p in result["common_prefixes"]]
        for name, meta in sorted(entries, key=lambda entry: entry[0]):
            if meta is not None:
                if (low is None or name > low) and name < high:
                    yield meta
                continue
            # a directory: all its keys start with `name`
            if not high.startswith(name) and name > high:
                continue  # all after high
            if low is not None and not low.startswith(name) and name < low:
                continue  # all before low
            if _hidden_directory(name[len(self._base) :] + "x") is not None:
                continue
            yield from self._between(name[:-1], low, high)

    def _pages(self, listed: str | None, offset: str | None) -> Iterator[Any]:
        """The listing's pages, then a `_Skip` if obstore met a key it can't parse."""
        try:
            stream = obstore.list(self._client, prefix=listed, offset=offset, chunk_size=1000)
            yield from stream
        except obx.InvalidPathError as error:
            skip = _skip_invalid(str(error))
            if skip is None:
                raise OSError(errno.EIO, f"{self._where()}: can't list: {_line(error)}") from None
            log.warning("%s: skipping keys no client can list (%r)", self._where(), skip.key)
            yield skip
        except (obx.BaseError, OSError) as error:
            _translate(error, self._where(listed[len(self._base) :] if listed else ""), "LIST")

    def stat(self, key: str) -> StoredFile | None:
        if not is_safe_relpath(key):
            return None
        try:
            meta = self._call("HEAD", lambda: obstore.head(self._client, self._object(key)), key)
        except FileNotFoundError:
            return None
        return self._stored(key, meta)

    def open(self, stored: StoredFile) -> S3Reader:
        """One GET of the current version (no HEAD first): small objects are read whole,
        larger ones streamed as the reader is read."""
        if stored.place != self.place or not is_safe_relpath(stored.key):
            raise FileNotFoundError(errno.ENOENT, "not a file of this storage", stored.key)
        key = stored.key

        def get() -> tuple[ObjectMeta, GetResult, bytes | None]:
            result = obstore.get(self._bulk, self._object(key))
            meta = result.meta
            body = bytes(result.bytes()) if meta["size"] <= _WHOLE else None
            return meta, result, body

        meta, result, body = self._call("GET", get, key)
        return S3Reader(self, key, meta, None if body is not None else result, body)

    def local_path(self, stored: StoredFile) -> str | None:
        return None  # no file system: METADATA comes from what the upload remembered

    def url(self, stored: StoredFile) -> str | None:
        """A presigned GET URL valid `redirect_seconds`, when redirects are on. Signed here
        (no request): it names the key, not the version (S3 without versioning has none)."""
        seconds = self.options.redirect_seconds
        if not seconds or stored.place != self.place or not is_safe_relpath(stored.key):
            return None
        signed: str = self._call(
            "SIGN",
            lambda: obstore.sign(
                self._client, "GET", self._object(stored.key), timedelta(seconds=seconds)
            ),
            stored.key,
        )
        return signed

    # ------------------------------------------------------------------ writing

    def put(self, key: str, content: Path | bytes, *, if_absent: bool) -> StoredFile:
        """One PUT (conditional with *if_absent*: `If-None-Match: *`), or for a large
        overwrite a multipart upload streamed from the spool (aborted on failure; an upload
        killed mid-way leaves invisible parts that a bucket lifecycle rule should expire).
        The spool is removed in every case. The ETag comes with the answer; a HEAD after it
        gives Last-Modified (if that HEAD fails the put still stands: mtime is then now)."""
        return self._put(key, content, "create" if if_absent else "overwrite")

    def replace(self, key: str, content: Path | bytes, *, version: str) -> StoredFile:
        """Beyond the protocol, for state that several replicas rewrite (a snapshot): put
        *content* only if *key* still holds *version* (`If-Match`), else `VersionChanged`
        (another writer came first, or the key is gone). One PUT, as `put`."""
        return self._put(key, content, {"e_tag": version})

    def _put(self, key: str, content: Path | bytes, mode: Any) -> StoredFile:
        spool = content if isinstance(content, Path) else None
        try:
            if not is_safe_relpath(key):
                raise UnsafeKey(f"unsafe key {key!r}")
            data: Path | bytes
            if spool is not None:
                data, size = spool, spool.stat().st_size  # FileNotFoundError: no spool
            else:
                assert isinstance(content, bytes)
                data, size = content, len(content)
            client = self._uploader(size)
            target = self._object(key)
            # Only an unconditional write may be multipart (a condition needs one request).
            multipart = mode == "overwrite" and size > self.multipart_bytes

            def upload() -> str:
                try:
                    result = obstore.put(client, target, data, mode=mode, use_multipart=multipart)
                except obx.PreconditionError:
                    raise VersionChanged(self._where(key)) from None
                return result["e_tag"] or ""

            for attempt in range(_CONFLICT_RETRIES + 1):
                try:
                    etag: str = self._call("PUT", upload, key)
                    break
                except StoreUnavailable as error:  # 409: a conditional write still in flight
                    if "HTTP 409" not in str(error) or attempt == _CONFLICT_RETRIES:
                        raise
                    time.sleep(0.05 * (attempt + 1))
        finally:
            if spool is not None:
                spool.unlink(missing_ok=True)
        try:
            found = self.stat(key)
        except OSError:
            found = None
        if found is not None and found.version == etag:
            return found
        return StoredFile(key, size, etag, time.time_ns() // 10**9 * 10**9, self.place)

    def _uploader(self, size: int) -> S3Store:
        """The client for a body of *size*: a request may take as long as sending it at
        `_SLOWEST_UPLOAD` (a stalled store still fails, by then), in a few size classes."""
        if size <= _WHOLE:
            return self._client
        tier = _WHOLE
        while tier < size:
            tier *= 8
        client = self._uploaders.get(tier)
        if client is None:
            whole = self.options.timeout + tier / _SLOWEST_UPLOAD
            client = _store(self.root.bucket, self.settings, self.options.timeout, whole)
            self._uploaders[tier] = client
        return client

    def delete(self, key: str) -> bool:
        """HEAD, then DELETE (S3 answers 204 for a key that is not there: the HEAD tells)."""
        if self.stat(key) is None:
            return False
        self._call("DELETE", lambda: obstore.delete(self._client, self._object(key)), key)
        return True

    def health(self) -> str | None:
        """One small LIST (of a prefix that holds nothing): the store answers, the bucket
        exists, the credentials may list. Writes are not probed (that would cost a PUT per
        probe): a store that refuses writes shows on the first upload."""
        probe = self._object(".creamery/health-probe/")
        try:
            self._call("LIST", lambda: obstore.list_with_delimiter(self._client, prefix=probe))
        except FileNotFoundError:
            return f"{self.place}: the bucket does not exist"
        except OSError as error:
            return (error.strerror or str(error)).splitlines()[0]
        return None

    def changed_listings(self) -> list[Listing]:
        """Nothing: an object store has no cheap directory stat to tell a changed directory.
        Objects put or deleted behind creamery's back (`aws s3 cp`) are found by the periodic
        rescan, and writes of other replicas by the change feed."""
        return []

    # ------------------------------------------------------------------ plumbing

    def _call(self, action: str, function: Any, key: str = "") -> Any:
        try:
            return function()
        except (obx.BaseError, OSError, ValueError) as error:
            _translate(error, self._where(key), action)


def _collect(client: S3Store, exact: str) -> list[ObjectMeta]:
    """The objects at *exact* and below it (what a skip past `P/` + "0" would jump over)."""
    found: list[ObjectMeta] = []
    with contextlib.suppress(FileNotFoundError):
        found.append(obstore.head(client, exact))  # a prefix is a directory: not the key itself
    for page in obstore.list(client, prefix=exact, chunk_size=1000):
        found += page
    return found


class _Skip:
    """Where to restart a listing past keys obstore cannot parse."""

    __slots__ = ("exact", "key", "offset")

    def __init__(self, key: str, offset: str, exact: str | None) -> None:
        self.key, self.offset, self.exact = key, offset, exact


def _hidden_directory(rel: str) -> str | None:
    """For a key inside a hidden directory (`.creamery/x`, `a/.git/x`): the offset past that
    directory (`.creamery0`: '0' follows '/', so every key inside sorts before it)."""
    if not (rel.startswith(".") or "/." in rel):
        return None
    start = 0 if rel.startswith(".") else rel.index("/.") + 1
    end = rel.find("/", start)
    return None if end < 0 else rel[:end] + "0"


def _skip_invalid(message: str) -> _Skip | None:
    """Past a key obstore can't parse: an empty segment (`a//b`: restart after `a/0`, and
    list `a/0` itself apart) or a `.`/`..` segment (`a/./b`: all of `a/.*` is hidden anyway,
    restart after `a/.` + the last code point)."""
    match = _BAD_PATH.search(message)
    if match is None:
        return None
    bad = match.group(1)
    segments = bad.split("/")
    done: list[str] = []
    for segment in segments:
        if segment == "":
            parent = "/".join(done)
            if not parent:
                return None  # a key starting with '/': obstore strips it, nothing to skip
            return _Skip(bad, f"{parent}/0", f"{parent}/0")
        if segment.startswith("."):
            return _Skip(bad, "/".join([*done, ".\U0010ffff"]), None)
        done.append(segment)
    return None


class S3Reader:
    """An open version of one object: its ETag is the version, every byte read is of it."""

    __slots__ = (
        "_body",
        "_buffer",
        "_position",
        "_result",
        "_storage",
        "_stream",
        "_window",
        "key",
        "mtime_ns",
        "size",
        "version",
    )

    def __init__(
        self,
        storage: S3Storage,
        key: str,
        meta: ObjectMeta,
        result: GetResult | None,
        body: bytes | None,
    ) -> None:
        self._storage = storage
        self.key = key
        self.size = meta["size"]
        self.mtime_ns = _mtime_ns(meta["last_modified"])
        self.version: int | str = meta["e_tag"] or ""
        self._body = body
        self._result = result  # the GET of open(), not read yet: its stream starts at 0
        self._stream: Iterator[bytes] | None = None
        self._position = 0  # of the stream, past what `_buffer` holds
        self._buffer = bytearray()
        self._window: int | None = None  # of the ranged GETs after a jump; None: to the end

    def read(self, offset: int, length: int) -> bytes:
        end = min(offset + max(length, 0), self.size)
        if offset >= end:
            return b""
        if self._body is not None:
            return self._body[offset:end]
        if self._position - len(self._buffer) != offset:
            self._buffer.clear()
            self._window = _FIRST_WINDOW
            self._seek(offset)
        want = end - offset
        retried = fresh = False
        while len(self._buffer) < want:
            try:
                chunk = self._next_chunk()
            except StoreUnavailable:
                if retried:
                    raise
                retried = True  # a connection lost mid-way: once more from there, same version
                self._seek(self._position)
                continue
            if chunk:
                self._buffer += chunk
                self._position += len(chunk)
                fresh = False
            elif self._position < self.size and self._result is not None and not fresh:
                window = self._window
                self._window = None if window is None or window >= _LAST_WINDOW else window * 2
                self._seek(self._position)  # the window ended: the next, twice as large
                fresh = True
            else:
                break
        data = bytes(self._buffer[:want])
        del self._buffer[:want]
        return data

    def _seek(self, offset: int) -> None:
        """Go on from *offset* by a ranged GET bound to the version opened (If-Match): a
        replaced object answers 412, never other bytes. The range is a window (8 MiB, then
        doubling as the reader goes on) rather than the rest of the object: a zip reader or
        a Range request jumps, reads a little and leaves."""
        self._stream = self._result = None
        storage, key = self._storage, self.key
        window = self._window
        wanted: Any = {"offset": offset} if window is None else (offset, offset + window)
        options: GetOptions = {"range": wanted, "if_match": str(self.version)}
        try:
            self._result = obstore.get(storage._bulk, storage._object(key), options=options)
        except obx.PreconditionError:
            raise FileNotFoundError(
                errno.ENOENT, f"{storage._where(key)} was replaced while being read"
            ) from None
        except (obx.BaseError, OSError, ValueError) as error:
            _translate(error, storage._where(key), "GET")
        self._position = offset

    def _next_chunk(self) -> bytes:
        if self._stream is None:
            if self._result is None:
                return b""
            self._stream = iter(self._result.stream(min_chunk_size=_STREAM_CHUNK))
        stream = self._stream

        def pull() -> bytes:
            try:
                return next(stream)
            except StopIteration:
                return b""

        chunk: bytes = self._storage._call("GET", pull, self.key)
        return chunk

    def fileno(self) -> int | None:
        return None

    def close(self) -> None:
        self._stream = self._result = self._body = None
        self._buffer.clear()

    def __enter__(self) -> S3Reader:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _is_a_storage(storage: S3Storage) -> Storage:
    return storage  # mypy checks the protocol here
