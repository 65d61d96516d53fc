"""Writes and what other replicas see of them: uploads (a raw multipart POST, as twine sends
it), propagation to another replica, read-your-writes, and readiness polling of any path."""

from __future__ import annotations

import hashlib
import http.client
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import measure

BOUNDARY = "creamery-bench-boundary-5c1e"


def wait_path(
    proc: subprocess.Popen, port: int, path: str, t0: float, log: Path, timeout: float = 600
) -> float:
    """Seconds from *t0* to the first 200 on *path* (polled every 5 ms)."""
    return measure.wait_ready(proc, port, t0, log, timeout, path=path)


def get(
    port: int, path: str, timeout: float = 30, conn: http.client.HTTPConnection | None = None
) -> tuple[int, bytes]:
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        if own:
            conn.close()


def upload_body(filename: str, data: bytes, project: str, version: str) -> tuple[bytes, str]:
    """The legacy upload API's form, as twine fills it."""
    fields = [
        (":action", "file_upload"),
        ("protocol_version", "1"),
        ("metadata_version", "2.1"),
        ("name", project),
        ("version", version),
        ("filetype", "bdist_wheel"),
        ("pyversion", "py3"),
        ("sha256_digest", hashlib.sha256(data).hexdigest()),
        ("md5_digest", hashlib.md5(data).hexdigest()),
    ]
    out = bytearray()
    for name, value in fields:
        out += f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        out += value.encode() + b"\r\n"
    out += (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="content"; '
        f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    out += data + f"\r\n--{BOUNDARY}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={BOUNDARY}"


def upload(port: int, path: str, filename: str, data: bytes, project: str, version: str) -> float:
    """POST one file; milliseconds until the answer (raises unless 200/201)."""
    body, ctype = upload_body(filename, data, project, version)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    t0 = time.monotonic()
    try:
        headers = {"Content-Type": ctype, "User-Agent": "twine/6.1.0 (creamery benchmark)"}
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        text = resp.read()
    finally:
        conn.close()
    ms = (time.monotonic() - t0) * 1e3
    if resp.status not in (200, 201):
        raise RuntimeError(f"upload of {filename}: HTTP {resp.status} {text[:200]!r}")
    return ms


@dataclass
class Writes:
    upload_ms: list[float] = field(default_factory=list)
    visible_ms: list[float | None] = field(default_factory=list)
    first_read: list[int] = field(default_factory=list)  # status of B's first GET of the file
    first_read_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float | int | None]:
        seen = [v for v in self.visible_ms if v is not None]
        return {
            "upload_p50_ms": pct(self.upload_ms, 50),
            "upload_p99_ms": pct(self.upload_ms, 99),
            "propagation_p50_ms": pct(seen, 50),
            "propagation_p99_ms": pct(seen, 99),
            "propagation_max_ms": max(seen) if seen else None,
            "propagation_missed": len(self.visible_ms) - len(seen),
            "propagation_n": len(self.visible_ms),
            "read_your_writes_ok": sum(1 for s in self.first_read if s == 200),
            "read_your_writes_n": len(self.first_read),
            "read_your_writes_p50_ms": pct(self.first_read_ms, 50),
        }


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def propagation(
    writer: int,
    reader: int,
    upload_path: str,
    page: str,
    project: str,
    versions: list[str],
    make_wheel,
    timeout: float = 10,
) -> Writes:
    """Upload each version to *writer*, then poll *reader*'s *page* every 2 ms until it lists
    the file: milliseconds from the upload's answer to the first page that lists it."""
    out = Writes()
    conn = http.client.HTTPConnection("127.0.0.1", reader, timeout=30)
    try:
        for version in versions:
            filename, data = make_wheel(project, version)
            out.upload_ms.append(upload(writer, upload_path, filename, data, project, version))
            t0 = time.monotonic()
            seen = None
            while time.monotonic() - t0 < timeout:
                status, body = get(reader, page, conn=conn)
                if status == 200 and filename.encode() in body:
                    seen = (time.monotonic() - t0) * 1e3
                    break
                time.sleep(0.002)
            out.visible_ms.append(seen)
    finally:
        conn.close()
    return out


def read_your_writes(
    writer: int,
    reader: int,
    upload_path: str,
    file_path,
    project: str,
    versions: list[str],
    make_wheel,
) -> Writes:
    """Upload to *writer*, then at once GET the new file from *reader*: a client that wrote
    must not see a 404 on another replica (it catches up first)."""
    out = Writes()
    for version in versions:
        filename, data = make_wheel(project, version)
        out.upload_ms.append(upload(writer, upload_path, filename, data, project, version))
        t0 = time.monotonic()
        status, _ = get(reader, file_path(project, filename))
        out.first_read.append(status)
        out.first_read_ms.append((time.monotonic() - t0) * 1e3)
    return out
