"""Serving distribution files: streamed, HEAD, Range, ETag, Last-Modified, Cache-Control.

Plain ASGI, because this is a hot path. The file is opened through the storage first and
described from what was opened, so an atomic replacement (`os.replace`, a new object version)
during a download never tears the response.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from urllib.parse import quote

import anyio

from creamery.core.headers import NOSNIFF
from creamery.core.names import METADATA, SIGNATURE
from creamery.http.asgi_types import Scope, Send
from creamery.http.conditional import etag_matches
from creamery.storage import Reader, Storage, StoredFile, is_version

# RFC 3986 reserved characters and "%" stay as they are, so a URL that is already quoted is kept.
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~"
_NOT_ETAG_CHARACTER = re.compile(r"[^0-9A-Za-z-]")  # of a store's ETag: quotes, W/
_HEADER_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")

_SMALL = 256 * 1024  # read in one go: cheaper than chunking
_CHUNK = 1024 * 1024
_CONTENT_TYPES = {
    ".zip": "application/zip",
    ".tar.gz": "application/x-tar",
    ".tgz": "application/x-tar",
    SIGNATURE: "text/plain; charset=utf-8",
    METADATA: "text/plain; charset=utf-8",
}


def content_type(filename: str) -> str:
    lower = filename.lower()
    for suffix, media in _CONTENT_TYPES.items():
        if lower.endswith(suffix):
            return media
    return "application/octet-stream"


def file_etag(size: int, mtime_ns: int, version: int | str = 0) -> str:
    """A local file's ETag is its size and mtime (as before: unchanged across restarts). An
    object's version is the store's own ETag: its Last-Modified has whole seconds only, so
    two same-size versions written within one second would otherwise share one ETag."""
    if isinstance(version, str) and (tag := _NOT_ETAG_CHARACTER.sub("", version)):
        return f'"{size:x}-{tag}"'
    return f'"{size:x}-{mtime_ns:x}"'


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def location(target: str) -> bytes:
    """A Location header value: percent-encoded to printable ASCII (no CR, LF, NUL, space or
    character beyond latin-1 can reach the header, whatever the path the client sent)."""
    try:
        raw = target.encode("utf-8", "surrogateescape")  # undecodable bytes of the request
    except UnicodeEncodeError:
        raw = target.encode("utf-8", "surrogatepass")
    return quote(raw, safe=_URL_SAFE).encode("ascii")


def safe_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """*headers* with nosniff, and control characters in values replaced: never a split header."""
    cleaned = [
        (name, _HEADER_CONTROL.sub(b" ", value) if _HEADER_CONTROL.search(value) else value)
        for name, value in headers
    ]
    if all(name != NOSNIFF[0] for name, _ in cleaned):
        cleaned.append(NOSNIFF)
    return cleaned


def is_http10(scope: Scope) -> bool:
    """HTTP/1.0 clients get 302 rather than 303; granian reports that version as "1"."""
    return scope.get("http_version") in ("1.0", "1")


def parse_range(value: str, size: int) -> tuple[int, int] | bool | None:
    """One `bytes=` range as (start, end inclusive); None: ignore the header; False: 416."""
    unit, _, spec = value.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None  # other units and multiple ranges: answer with the whole file
    first, sep, last = spec.strip().partition("-")
    if not sep:
        return None
    try:
        if not first:
            length = int(last)
            if length <= 0:
                return False
            return (max(size - length, 0), size - 1)
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start < 0 or start >= size or end < start:
        return False
    return (start, min(end, size - 1))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a response needs to know of one file version; small files carry their bytes."""

    size: int
    mtime_ns: int
    etag: str
    last_modified: str
    headers: list[tuple[bytes, bytes]]  # validators, type and cache policy
    body: bytes | None


class SmallFiles:
    """Small files kept in memory, keyed by the index's StoredFile (key, size, version, mtime).

    The index changes the key when the file changes, so a stale copy is never served; an
    entry is only stored when the bytes read are the key's very version.
    """

    def __init__(self, max_bytes: int = 16 << 20) -> None:
        self.max_bytes = max_bytes
        self._entries: dict[StoredFile, Snapshot] = {}
        self._bytes = 0

    def get(self, stored: StoredFile) -> Snapshot | None:
        return self._entries.get(stored)

    def put(self, stored: StoredFile, snapshot: Snapshot) -> None:
        size = len(snapshot.body or b"")
        while self._entries and self._bytes + size > self.max_bytes:
            oldest = next(iter(self._entries))
            self._bytes -= len(self._entries.pop(oldest).body or b"")
        self._entries[stored] = snapshot
        self._bytes += size


async def send_file(
    scope: Scope,
    send: Send,
    storage: Storage,
    stored: StoredFile,
    cache_control: int | None,
    small_files: SmallFiles,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """*extra*: headers for every response (the caller's X-Creamery-Serial). A file that is
    gone answers 404; the store's other failures (OSError, `StoreUnavailable`) are raised,
    before the response starts or (mid-stream) after it."""
    extra = extra or []
    cached = small_files.get(stored)
    if cached is not None:
        await _respond(scope, send, cached, None, extra)
        return
    try:
        if storage.remote:  # a network round trip: not on the event loop
            reader, snapshot = await anyio.to_thread.run_sync(_open, storage, stored, cache_control)
        else:
            reader, snapshot = _open(storage, stored, cache_control)
    except GONE:
        await send_text(send, 404, f"Not Found ({stored.key} does not exist)", extra)
        return
    try:
        if snapshot.body is not None and is_version(reader, stored):
            small_files.put(stored, snapshot)
        await _respond(scope, send, snapshot, reader, extra)
    finally:
        reader.close()


# What a read of a key that is no longer there raises (any other OSError is the store's own
# failure: the caller answers 503).
GONE = (FileNotFoundError, NotADirectoryError, IsADirectoryError)


def _open(
    storage: Storage, stored: StoredFile, cache_control: int | None
) -> tuple[Reader, Snapshot]:
    reader = storage.open(stored)
    try:
        return reader, _snapshot(reader, stored.key, cache_control)
    except BaseException:
        reader.close()
        raise


def _snapshot(reader: Reader, relpath: str, cache_control: int | None) -> Snapshot:
    size, mtime_ns = reader.size, reader.mtime_ns
    etag = file_etag(size, mtime_ns, reader.version)
    last_modified = formatdate(mtime_ns / 1e9, usegmt=True)
    headers = [
        (b"etag", etag.encode()),
        (b"last-modified", last_modified.encode()),
        (b"accept-ranges", b"bytes"),
        (b"content-type", content_type(relpath).encode()),
        NOSNIFF,
    ]
    if cache_control is not None:
        headers.append((b"cache-control", f"public, max-age={cache_control}".encode()))
    body = reader.read(0, size) if size <= _SMALL else None
    if body is not None and len(body) != size:
        body = None  # changed while read: stream it instead
    return Snapshot(size, mtime_ns, etag, last_modified, headers, body)


_CONDITIONAL = (b"if-none-match", b"if-modified-since", b"range", b"if-range")


async def _respond(
    scope: Scope,
    send: Send,
    snap: Snapshot,
    reader: Reader | None,
    extra: list[tuple[bytes, bytes]],
) -> None:
    asked = {k: v.decode("latin-1") for k, v in scope["headers"] if k in _CONDITIONAL}
    headers = snap.headers + extra
    if asked and _not_modified(asked, snap):
        validators = [h for h in headers if h[0] != b"content-type"]
        await send({"type": "http.response.start", "status": 304, "headers": validators})
        await send({"type": "http.response.body", "body": b""})
        return
    start, end, status = 0, snap.size - 1, 200
    range_header = asked.get(b"range")
    if range_header is not None and _if_range_holds(asked.get(b"if-range"), snap):
        wanted = parse_range(range_header, snap.size)
        if wanted is False:
            headers = [(b"content-range", f"bytes */{snap.size}".encode()), *extra]
            await send_text(send, 416, "Range Not Satisfiable", headers)
            return
        if isinstance(wanted, tuple):
            start, end, status = wanted[0], wanted[1], 206
            headers.append((b"content-range", f"bytes {start}-{end}/{snap.size}".encode()))
    length = max(end - start + 1, 0)
    headers.append((b"content-length", str(length).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    if scope["method"] == "HEAD":
        await send({"type": "http.response.body", "body": b""})
    elif snap.body is not None:
        await send({"type": "http.response.body", "body": snap.body[start : start + length]})
    elif reader is not None:
        await _stream(send, reader, start, length)


def _not_modified(asked: dict[bytes, str], snap: Snapshot) -> bool:
    """RFC 9110: If-None-Match wins over If-Modified-Since."""
    inm = asked.get(b"if-none-match")
    if inm is not None:
        return etag_matches(inm, snap.etag)
    ims = asked.get(b"if-modified-since")
    if ims is not None:
        try:
            since = parsedate_to_datetime(ims).timestamp()
        except (TypeError, ValueError):
            return False
        return snap.mtime_ns // 1_000_000_000 <= int(since)
    return False


def _if_range_holds(condition: str | None, snap: Snapshot) -> bool:
    if condition is None:
        return True
    if condition.startswith(('"', "W/")):
        return condition == snap.etag
    return condition == snap.last_modified


async def _stream(send: Send, reader: Reader, offset: int, length: int) -> None:
    remaining = length
    while remaining > 0:
        chunk = await anyio.to_thread.run_sync(reader.read, offset, min(_CHUNK, remaining))
        if not chunk:
            break  # the file shrank under us: end the response short rather than hang
        offset += len(chunk)
        remaining -= len(chunk)
        await send({"type": "http.response.body", "body": chunk, "more_body": remaining > 0})
    if remaining > 0:
        await send({"type": "http.response.body", "body": b""})


async def send_text(
    send: Send, status: int, text: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = (text + "\n").encode()
    all_headers = [
        *(headers or []),
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send(
        {"type": "http.response.start", "status": status, "headers": safe_headers(all_headers)}
    )
    await send({"type": "http.response.body", "body": body})
