"""Upload forms: multipart/form-data bodies written byte for byte, and the POSTs that send them.

Byte for byte (not through httpx's encoder) so that a test controls exactly what the server
parses: unescaped filenames, odd part headers, broken framing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from support.servers import Server

BOUNDARY = "creamery-test-boundary-7d1f0c"
_HTTP = httpx.Client(timeout=60)  # one client: building one costs ~60 ms


def encode_parts(parts: Sequence[tuple[bytes, bytes]], boundary: str = BOUNDARY) -> bytes:
    """A multipart body of *parts*, each (part headers, data); the closing delimiter ends it."""
    delimiter = b"--" + boundary.encode("latin-1", "replace")
    out = bytearray()
    for head, data in parts:
        out += delimiter + b"\r\n" + head + b"\r\n\r\n" + data + b"\r\n"
    out += delimiter + b"--\r\n"
    return bytes(out)


def field_part(name: str, value: str) -> tuple[bytes, bytes]:
    """A form field as a part for `encode_parts`."""
    head = f'Content-Disposition: form-data; name="{name}"'
    return head.encode("utf-8", "surrogateescape"), value.encode("utf-8", "surrogateescape")


def file_part(name: str, filename: str, data: bytes) -> tuple[bytes, bytes]:
    """A file as a part for `encode_parts`; the filename goes out unescaped."""
    head = f'Content-Disposition: form-data; name="{name}"; filename="{filename}"'
    head += "\r\nContent-Type: application/octet-stream"
    return head.encode("utf-8", "surrogateescape"), data


def multipart(
    fields: Sequence[tuple[str, str]] = (),
    files: Sequence[tuple[str, str, bytes]] = (),
) -> tuple[bytes, str]:
    """A multipart/form-data body of *fields* then *files* (name, filename, data), and its
    Content-Type."""
    parts = [field_part(name, value) for name, value in fields]
    parts += [file_part(name, filename, data) for name, filename, data in files]
    return encode_parts(parts), f"multipart/form-data; boundary={BOUNDARY}"


def post_form(
    server: Server,
    fields: Sequence[tuple[str, str]] = (),
    files: Sequence[tuple[str, str, bytes]] = (),
    *,
    auth: tuple[str, str] | None = None,
    path: str = "/",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST `multipart(fields, files)` to *path* on *server*."""
    body, content_type = multipart(fields, files)
    return _HTTP.post(
        server.url + path,
        content=body,
        headers={"Content-Type": content_type, **(headers or {})},
        auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT,  # the client has none
    )


def upload(
    server: Server,
    filename: str,
    data: bytes,
    *fields: tuple[str, str],
    auth: tuple[str, str] | None = None,
    extra_files: Sequence[tuple[str, str, bytes]] = (),
    path: str = "/",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """The legacy upload API's `file_upload` of *data* as *filename*, with more *fields*."""
    return post_form(
        server,
        [(":action", "file_upload"), *fields],
        [("content", filename, data), *extra_files],
        auth=auth,
        path=path,
        headers=headers,
    )
