"""HTTP on the wire: one raw HTTP/1.x exchange, and a project's files as the JSON API lists them.

Not named `http`: `upstream.py` runs as a script from this directory, where a module of that name
would shadow the standard library's.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from support.servers import Server

JSON_ACCEPT = {"Accept": "application/vnd.pypi.simple.v1+json"}
_HTTP = httpx.Client(timeout=30)  # one client: building one costs ~60 ms


@dataclass
class RawResponse:
    status: int
    reason: str
    version: str
    headers: dict[str, str]  # lower-cased names
    body: bytes


def raw_request(
    port: int, request_line: str, headers: Sequence[str] = (), body: bytes = b""
) -> RawResponse:
    """Send one request exactly as written (no URL normalization), e.g. `GET /x HTTP/1.0`."""
    lines = [request_line, f"Host: 127.0.0.1:{port}", "Connection: close", *headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    response = b"".join(chunks)
    head, _, payload = response.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    version, status, *reason = status_line.split(" ", 2)
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    if parsed.get("transfer-encoding", "").lower() == "chunked":
        payload = dechunk(payload)
    return RawResponse(int(status), reason[0] if reason else "", version, parsed, payload)


def dechunk(data: bytes) -> bytes:
    """The payload of a chunked transfer-encoded body."""
    out = bytearray()
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return bytes(out)


def listed(server: Server, project: str, **kwargs: Any) -> dict[str, dict[str, Any]]:
    """filename -> file entry of `/simple/<project>/` as JSON; {} when the project is unknown."""
    response = _HTTP.get(f"{server.url}/simple/{project}/", headers=JSON_ACCEPT, **kwargs)
    if response.status_code == 404:
        return {}
    assert response.status_code == 200, response.text
    return {f["filename"]: f for f in response.json()["files"]}
