"""A small package index that tests can make slow, failing or hash-corrupting; its own process.

It serves the distributions of one directory as PEP 691 JSON or PEP 503 HTML at
`/simple/<project>/` and their bytes at `/files/<filename>` (wheels' METADATA at
`/files/<filename>.metadata`, PEP 658; a `<filename>.provenance` lying beside a file is its
PEP 740 provenance, linked from the pages and served at `/files/<filename>.provenance`).
It uses only the standard library, so it shares no code with creamery. `POST /_control`
with a JSON object changes how it behaves; `GET /_stats` tells how often each path was asked
for; `POST /_reset` clears both.

Controls (all off by default):
  delay        seconds to wait before answering (longer than the client's timeout: a hang)
  chunk_delay  seconds between 4 KiB chunks of a file (a slow download)
  fail         answer every index request with this status; -1 drops the connection instead
  corrupt      flip one byte of every file served; the listed hash stays the true one
  html_only    answer HTML even when JSON is asked for (no sizes, no upload times)
  no_length    send files chunked, without Content-Length
  versions     {project: [versions]}: list these as the JSON page's PEP 700 `versions`
  statuses     {project: {"status": ..., "reason": ...}}: PEP 792 markers (API 1.4); a
               quarantined project's page lists no file, as PyPI's does

Run `python upstream.py DIRECTORY`: it prints `port <N>` once it listens on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import email.parser
import hashlib
import html
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

CHUNK = 4096
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
DEFAULT_CONTROLS: dict[str, Any] = {
    "delay": 0.0,
    "chunk_delay": 0.0,
    "fail": 0,
    "corrupt": False,
    "html_only": False,
    "no_length": False,
    "versions": {},  # project -> the PEP 700 `versions` to list (some may have no files)
    "statuses": {},  # project -> PEP 792 `project-status` object
}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def project_of(filename: str) -> str:
    if filename.endswith(".whl"):
        return normalize(filename.split("-")[0])
    stem = filename.removesuffix(".tar.gz").removesuffix(".zip")
    return normalize(stem.rpartition("-")[0])


def wheel_metadata(path: Path) -> bytes:
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if name.count("/") == 1 and name.endswith(".dist-info/METADATA"):
                return archive.read(name)
    raise ValueError(f"{path} has no METADATA")


def describe(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    entry: dict[str, Any] = {
        "filename": path.name,
        "url": f"../../files/{path.name}",
        "hashes": {"sha256": hashlib.sha256(data).hexdigest()},
        "requires-python": None,
        "core-metadata": False,
        "yanked": False,
        "size": len(data),
        "upload-time": datetime.fromtimestamp(path.stat().st_mtime, UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        ),
    }
    if path.with_name(path.name + ".provenance").is_file():
        entry["provenance"] = f"../../files/{path.name}.provenance"
    if path.name.endswith(".whl"):
        metadata = wheel_metadata(path)
        entry["core-metadata"] = {"sha256": hashlib.sha256(metadata).hexdigest()}
        headers = email.parser.BytesHeaderParser().parsebytes(metadata)
        entry["requires-python"] = headers.get("Requires-Python")
    return entry


def render_html(
    project: str, files: list[dict[str, Any]], status: dict[str, str] | None = None
) -> bytes:
    version = "1.0" if status is None else "1.4"
    lines = ["<!DOCTYPE html><html><head>"]
    lines.append(f'<meta name="pypi:repository-version" content="{version}">')
    if status is not None:
        lines.append(f'<meta name="pypi:project-status" content="{html.escape(status["status"])}">')
        if status.get("reason"):
            reason = html.escape(status["reason"])
            lines.append(f'<meta name="pypi:project-status-reason" content="{reason}">')
    lines.append(f"<title>Links for {project}</title></head><body>")
    for item in files:
        href = f"{item['url']}#sha256={item['hashes']['sha256']}"
        attributes = f'href="{html.escape(href)}"'
        if item["requires-python"]:
            attributes += f' data-requires-python="{html.escape(item["requires-python"])}"'
        if item["core-metadata"]:
            attributes += f' data-core-metadata="sha256={item["core-metadata"]["sha256"]}"'
        if item.get("provenance"):
            attributes += f' data-provenance="{html.escape(item["provenance"])}"'
        lines.append(f"<a {attributes}>{html.escape(item['filename'])}</a><br>")
    lines.append("</body></html>")
    return "\n".join(lines).encode()


class State:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.controls = dict(DEFAULT_CONTROLS)
        self.stats: Counter[str] = Counter()
        self.lock = threading.Lock()

    def files_of(self, project: str) -> list[dict[str, Any]]:
        paths = sorted(
            p for p in self.directory.iterdir() if p.is_file() and p.suffix != ".provenance"
        )
        return [describe(p) for p in paths if project_of(p.name) == project]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read /_stats instead."""

    def do_POST(self) -> None:
        state = self.server.state
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        with state.lock:
            if self.path == "/_reset":
                state.controls = dict(DEFAULT_CONTROLS)
                state.stats.clear()
            else:
                state.controls.update(body)
        self._send(200, "application/json", json.dumps(state.controls).encode())

    def do_GET(self) -> None:
        state = self.server.state
        if self.path == "/_stats":
            with state.lock:
                self._send(200, "application/json", json.dumps(state.stats).encode())
            return
        with state.lock:
            state.stats[self.path] += 1
            controls = dict(state.controls)
        time.sleep(controls["delay"])
        if controls["fail"] == -1:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if controls["fail"]:
            self._send(controls["fail"], "text/plain", b"failing on purpose\n")
            return
        if self.path.startswith("/simple/"):
            self._page(self.path[8:].strip("/"), controls)
        elif self.path.startswith("/files/"):
            self._file(self.path[7:], controls)
        else:
            self._send(404, "text/plain", b"not found\n")

    def _page(self, project: str, controls: dict[str, Any]) -> None:
        files = self.server.state.files_of(project)
        status = controls["statuses"].get(project)
        if status is not None and status.get("status") == "quarantined":
            files = []
        if not files and status is None:
            self._send(404, "text/plain", b"no such project\n")
        elif JSON_TYPE in (self.headers.get("accept") or "") and not controls["html_only"]:
            document: dict[str, Any] = {"meta": {"api-version": "1.1"}, "name": project}
            document["files"] = files
            if project in controls["versions"]:
                document["versions"] = controls["versions"][project]
            if status is not None:
                document["meta"]["api-version"] = "1.4"
                document["project-status"] = status
            self._send(200, JSON_TYPE, json.dumps(document).encode())
        else:
            self._send(200, "text/html", render_html(project, files, status))

    def _file(self, filename: str, controls: dict[str, Any]) -> None:
        path = self.server.state.directory / filename.removesuffix(".metadata")
        if "/" in filename or not path.is_file():
            self._send(404, "text/plain", b"no such file\n")
            return
        data = wheel_metadata(path) if filename.endswith(".metadata") else path.read_bytes()
        if controls["corrupt"]:
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        self.send_response(200)
        self.send_header("content-type", "application/octet-stream")
        if controls["no_length"]:
            self.send_header("transfer-encoding", "chunked")
        else:
            self.send_header("content-length", str(len(data)))
        self.end_headers()
        for start in range(0, len(data), CHUNK):
            time.sleep(controls["chunk_delay"])
            self._write(data[start : start + CHUNK], chunked=controls["no_length"])
        if controls["no_length"]:
            self.wfile.write(b"0\r\n\r\n")

    def _write(self, data: bytes, *, chunked: bool) -> None:
        if chunked:
            data = f"{len(data):x}\r\n".encode() + data + b"\r\n"
        self.wfile.write(data)
        self.wfile.flush()

    def _send(self, status: int, media: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", media)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, directory: Path) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.state = State(directory)


def main() -> None:
    server = Server(Path(sys.argv[1]))
    print(f"port {server.server_address[1]}", flush=True)
    server.serve_forever()


# ---------------------------------------------------------------- for the tests


@dataclass
class UpstreamProcess:
    """A running upstream process (this module run as a script)."""

    url: str  # http://127.0.0.1:PORT, no trailing slash
    process: subprocess.Popen[str]

    @property
    def index_url(self) -> str:
        return f"{self.url}/simple/"

    def control(self, **controls: Any) -> None:
        httpx.post(f"{self.url}/_control", json=controls, timeout=5).raise_for_status()

    def reset(self) -> None:
        httpx.post(f"{self.url}/_reset", json={}, timeout=5).raise_for_status()

    def stats(self) -> dict[str, int]:
        answer: dict[str, int] = httpx.get(f"{self.url}/_stats", timeout=5).json()
        return answer


@contextlib.contextmanager
def run_upstream(directory: Path) -> Iterator[UpstreamProcess]:
    process = subprocess.Popen(
        [sys.executable, __file__, str(directory)],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("port "):
            raise RuntimeError(f"the upstream server did not start: {line!r}")
        yield UpstreamProcess(f"http://127.0.0.1:{int(line.split()[1])}", process)
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    main()
