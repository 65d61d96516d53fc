"""Servers on 127.0.0.1 for the tests: `creamery run` processes (started on a free port, waited
for, stopped with their workers, their output kept), any other server command, and in-thread
WSGI or `http.server` servers.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest

from support.clients import clean_env
from support.wire import RawResponse, raw_request

START_TIMEOUT = 15.0
PORT_ATTEMPTS = 3  # another process may take the free port before the server binds it


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """A running server process (`creamery run`, or any command given to `started`)."""

    url: str  # http://127.0.0.1:PORT, no trailing slash
    port: int
    roots: tuple[Path | str, ...]  # directories, and s3:// roots as given
    process: subprocess.Popen[bytes]
    log_path: Path
    args: tuple[str, ...] = ()
    command: tuple[str, ...] = ()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, **kwargs: Any) -> httpx.Client:
        kwargs.setdefault("timeout", 10.0)
        return httpx.Client(base_url=self.url, **kwargs)

    def raw(self, request_line: str, headers: Sequence[str] = (), body: bytes = b"") -> RawResponse:
        """Send one request exactly as written (no URL normalization), e.g. `GET /x HTTP/1.0`."""
        return raw_request(self.port, request_line, headers, body)


@contextlib.contextmanager
def run_server(
    roots: Sequence[Path | str],
    *args: str,
    ready_paths: Sequence[str] = ("/health",),
    timeout: float = START_TIMEOUT,
    env: dict[str, str] | None = None,
) -> Iterator[Server]:
    """Start `python -m creamery run -i 127.0.0.1 -p PORT *args *roots`; stop it on exit.

    Ready means one of *ready_paths* answered 200. A server that exits or does not become
    ready within *timeout* seconds fails the test with its output.
    """
    workdir = Path(tempfile.mkdtemp(prefix="creamery-server-"))
    # The facts cache (hashes, METADATA) must not leak between servers or into ~/.cache.
    server_env = clean_env(XDG_CACHE_HOME=str(workdir / "cache"), **(env or {}))
    server = None
    try:
        for attempt in range(PORT_ATTEMPTS):
            server = _start(workdir, roots, args, server_env)
            if _wait_ready(server, ready_paths, timeout, last=attempt == PORT_ATTEMPTS - 1):
                break
            _stop(server.process)  # lost a race for its port: try another one
        assert server is not None
        yield server
    finally:
        crashed = server is not None and server.process.poll() is not None
        report = server.log() if crashed and server else ""
        if server is not None:
            _stop(server.process)
        shutil.rmtree(workdir, ignore_errors=True)
    if crashed and server is not None:  # it died on its own while in use: say so, with its output
        pytest.fail(
            f"server exited with {server.process.returncode} while in use\n"
            f"command: {' '.join(server.command)}\n--- server output ---\n{report}",
            pytrace=False,
        )


def _start(
    workdir: Path, roots: Sequence[Path | str], args: Sequence[str], env: dict[str, str]
) -> Server:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "creamery",
        "run",
        "-i",
        "127.0.0.1",
        "-p",
        str(port),
        *args,
        *[str(r) for r in roots],
    ]
    log_path = workdir / f"server-{port}.log"
    process = spawn(command, workdir, env, log_path)
    return Server(
        url=f"http://127.0.0.1:{port}",
        port=port,
        roots=tuple(r if str(r).startswith("s3://") else Path(r) for r in roots),
        process=process,
        log_path=log_path,
        args=tuple(args),
        command=tuple(command),
    )


def spawn(
    command: Sequence[str], workdir: Path, env: dict[str, str], log_path: Path
) -> subprocess.Popen[bytes]:
    """Start a server with its output in *log_path*, in a process group of its own."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=workdir,
            start_new_session=True,  # its own process group, so workers go with it
        )


@contextlib.contextmanager
def started(
    command: Sequence[object], port: int, workdir: Path, ready: str = "/health", **env: str
) -> Iterator[Server]:
    """Run any server *command* (a pyz, gunicorn, nginx...) until it answers *ready*."""
    log_path = workdir / f"server-{port}.log"
    environment = clean_env(HOME=str(workdir), XDG_CACHE_HOME=str(workdir / "cache"), **env)
    parts = [str(part) for part in command]
    process = spawn(parts, workdir, environment, log_path)
    server = Server(f"http://127.0.0.1:{port}", port, (), process, log_path, command=tuple(parts))
    try:
        _wait_ready(server, [ready], 60.0, last=True)
        yield server
    finally:
        _stop(process)


def _wait_ready(server: Server, paths: Sequence[str], timeout: float, *, last: bool) -> bool:
    """True once ready; False when the port was taken under us (and *last* is false)."""
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            output = server.log()
            if not last and "in use" in output.lower():
                return False
            pytest.fail(
                f"server exited with {server.process.returncode} before it was ready\n"
                f"command: {' '.join(server.command)}\n--- server output ---\n{output}",
                pytrace=False,
            )
        for path in paths:
            try:
                response = httpx.get(server.url + path, timeout=1.0)
            except httpx.HTTPError as error:
                last_error = repr(error)
                continue
            if response.status_code == 200:
                return True
            last_error = f"{path} answered {response.status_code}"
        time.sleep(0.05)
    pytest.fail(
        f"server not ready after {timeout:.0f} s ({last_error})\n"
        f"command: {' '.join(server.command)}\n--- server output ---\n{server.log()}",
        pytrace=False,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    # Workers left behind by the server are in the group we created for it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


# ----------------------------------------------------------------------------- in a thread


@contextlib.contextmanager
def serve_in_thread(server: socketserver.TCPServer) -> Iterator[str]:
    """Serve with *server* (bound to 127.0.0.1) in a thread; yields http://127.0.0.1:PORT."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


def serve_wsgi(app: Callable[..., object]) -> contextlib.AbstractContextManager[str]:
    """Serve the WSGI *app* with wsgiref on a free port in a thread; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, _ThreadingWSGIServer, _QuietHandler)  # type: ignore[arg-type]
    return serve_in_thread(server)


def serve_http(
    handler: type[http.server.BaseHTTPRequestHandler],
) -> contextlib.AbstractContextManager[str]:
    """Run the `http.server` *handler* on a free port in a thread; yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.block_on_close = False
    return serve_in_thread(server)
