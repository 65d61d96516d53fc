"""Serving distribution files: streamed, HEAD, Range, ETag, Last-Modified, Cache-Control.

Plain ASGI, because this is a hot path. The file is opened first and described from the open
descriptor, so an atomic replacement (`os.replace`) during a download never tears the response.
"""

from __future__ import annotations

import os
from email.utils import formatdate, parsedate_to_datetime
from typing import Any

import anyio

from creamery.storage import StoredFile

Send = Any
Scope = Any

_SMALL = 256 * 1024  # read in one go: cheaper than chunking
_CHUNK = 1024 * 1024
_CONTENT_TYPES = {
    ".zip": "application/zip",
    ".tar.gz": "application/x-tar",
    ".tgz": "application/x-tar",
    ".asc": "text/plain; charset=utf-8",
    ".metadata": "text/plain; charset=utf-8",
}


def content_type(filename: str) -> str:
    lower = filename.lower()
    for suffix, media in _CONTENT_TYPES.items():
        if lower.endswith(suffix):
            return media
    return "application/octet-stream"


def file_etag(size: int, mtime_ns: int) -> str:
    return f'"{size:x}-{mtime_ns:x}"'


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def is_http10(scope: Scope) -> bool:
    """HTTP/1.0 clients get 302 rather than 303; granian reports that version as "1"."""
    return scope.get("http_version") in ("1.0", "1")


def not_modified(scope: Scope, etag: str, mtime_ns: int | None) -> bool:
    """RFC 9110: If-None-Match wins over If-Modified-Since."""
    inm = header(scope, b"if-none-match")
    if inm is not None:
        tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
        return etag in tags or "*" in tags
    ims = header(scope, b"if-modified-since")
    if ims is not None and mtime_ns is not None:
        try:
            since = parsedate_to_datetime(ims).timestamp()
        except (TypeError, ValueError):
            return False
        return int(mtime_ns // 1_000_000_000) <= int(since)
    return False


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


async def send_file(
    scope: Scope, send: Send, stored: StoredFile, cache_control: int | None
) -> None:
    try:
        fd = os.open(stored.path, os.O_RDONLY)
    except OSError:
        await send_text(send, 404, f"Not Found ({stored.relpath} does not exist)")
        return
    try:
        st = os.fstat(fd)
        await _send_open_file(scope, send, fd, st.st_size, st.st_mtime_ns, stored, cache_control)
    finally:
        os.close(fd)


async def _send_open_file(
    scope: Scope,
    send: Send,
    fd: int,
    size: int,
    mtime_ns: int,
    stored: StoredFile,
    cache_control: int | None,
) -> None:
    etag = file_etag(size, mtime_ns)
    headers = [
        (b"etag", etag.encode()),
        (b"last-modified", formatdate(mtime_ns / 1e9, usegmt=True).encode()),
        (b"accept-ranges", b"bytes"),
    ]
    if cache_control is not None:
        headers.append((b"cache-control", f"public, max-age={cache_control}".encode()))
    if not_modified(scope, etag, mtime_ns):
        await send({"type": "http.response.start", "status": 304, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return
    start, end, status = 0, size - 1, 200
    range_header = header(scope, b"range")
    if range_header is not None and _if_range_holds(scope, etag, mtime_ns):
        wanted = parse_range(range_header, size)
        if wanted is False:
            headers.append((b"content-range", f"bytes */{size}".encode()))
            await send_text(send, 416, "Range Not Satisfiable", headers)
            return
        if isinstance(wanted, tuple):
            start, end, status = wanted[0], wanted[1], 206
            headers.append((b"content-range", f"bytes {start}-{end}/{size}".encode()))
    length = max(end - start + 1, 0)
    headers += [
        (b"content-type", content_type(stored.relpath).encode()),
        (b"content-length", str(length).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    if scope["method"] == "HEAD":
        await send({"type": "http.response.body", "body": b""})
        return
    await _stream(send, fd, start, length)


def _if_range_holds(scope: Scope, etag: str, mtime_ns: int) -> bool:
    condition = header(scope, b"if-range")
    if condition is None:
        return True
    if condition.startswith(('"', "W/")):
        return condition == etag
    return condition == formatdate(mtime_ns / 1e9, usegmt=True)


async def _stream(send: Send, fd: int, offset: int, length: int) -> None:
    if length <= _SMALL:
        await send({"type": "http.response.body", "body": os.pread(fd, length, offset)})
        return
    remaining = length
    while remaining > 0:
        chunk = await anyio.to_thread.run_sync(os.pread, fd, min(_CHUNK, remaining), offset)
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
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *(headers or []),
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
