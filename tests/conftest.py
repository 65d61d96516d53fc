"""Shared harness: a corpus of real distributions and real `creamery run` server processes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from dists import make_sdist, make_wheel, sign, wheel_metadata, yank

START_TIMEOUT = 15.0
PORT_ATTEMPTS = 3  # another process may take the free port before the server binds it
# The corpus's one fixed upload time (PEP 700), set as the mtime of `FIXED_MTIME_FILE`.
FIXED_MTIME = 1614834367  # 2021-03-04T05:06:07Z
FIXED_MTIME_ISO = "2021-03-04T05:06:07"
FIXED_MTIME_FILE = "tlib-2.0-py3-none-any.whl"
SECRET = "creamery-test-secret-outside-the-roots"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without the user's pip/uv configuration, plus *extra*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(extra)
    return env


BIN = Path(sys.executable).parent
UV = str(BIN / "uv")


def uv_install_command(index_url: str, target: Path, *requirements: str) -> list[str]:
    """`uv pip install` into *target* from *index_url*, ignoring any uv configuration."""
    return [
        UV,
        *("pip", "install", "--no-config", "--python", sys.executable),
        *("--target", str(target), "--index-url", f"{index_url}/simple/", *requirements),
    ]


CLIENT_TIMEOUT = 120  # seconds for one pip, uv or twine run


def run_client(
    command: Sequence[str], env: dict[str, str], stdin: str | None = None, timeout: float = 0
) -> subprocess.CompletedProcess[str]:
    """Run a client (pip, uv, twine, creamery) to completion, its output captured."""
    return subprocess.run(
        command,
        env=env,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout or CLIENT_TIMEOUT,
    )


def describe(result: subprocess.CompletedProcess[str]) -> str:
    """A finished command and its output, for assertion messages."""
    command = " ".join(str(a) for a in result.args)
    return f"$ {command}\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"


def client_env(home: Path) -> dict[str, str]:
    """For pip, uv and twine in subprocesses: no user configuration, keyring or colours."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in clean_env().items() if not k.startswith("TWINE_")}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        PIP_CONFIG_FILE="/dev/null",
        PYTHONNOUSERSITE="1",
        TWINE_NON_INTERACTIVE="1",
        PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring",
        NO_COLOR="1",
        UV_NO_CONFIG="1",
        UV_CACHE_DIR=str(home / "uv-cache"),
        UV_NO_PROGRESS="1",
        UV_PYTHON_DOWNLOADS="never",
    )
    return env


@dataclass
class RawResponse:
    status: int
    reason: str
    version: str
    headers: dict[str, str]  # lower-cased names
    body: bytes


@dataclass
class Server:
    """A running `creamery run` process."""

    url: str  # http://127.0.0.1:PORT, no trailing slash
    port: int
    roots: tuple[Path, ...]
    process: subprocess.Popen
    log_path: Path
    args: tuple[str, ...] = ()
    command: tuple[str, ...] = ()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, **kwargs) -> httpx.Client:
        kwargs.setdefault("timeout", 10.0)
        return httpx.Client(base_url=self.url, **kwargs)

    def raw(self, request_line: str, headers: Sequence[str] = (), body: bytes = b"") -> RawResponse:
        """Send one request exactly as written (no URL normalization), e.g. `GET /x HTTP/1.0`."""
        lines = [request_line, f"Host: 127.0.0.1:{self.port}", "Connection: close", *headers]
        if body:
            lines.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
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
            payload = _dechunk(payload)
        return RawResponse(int(status), reason[0] if reason else "", version, parsed, payload)


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return bytes(out)


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
        yield server
    finally:
        crashed = server is not None and server.process.poll() is not None
        report = server.log() if crashed and server else ""
        if server is not None:
            _stop(server.process)
        shutil.rmtree(workdir, ignore_errors=True)
    if crashed:  # it died on its own while in use: say so, with its output
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
    process = _spawn(command, workdir, env, log_path)
    return Server(
        url=f"http://127.0.0.1:{port}",
        port=port,
        roots=tuple(Path(r) for r in roots),
        process=process,
        log_path=log_path,
        args=tuple(args),
        command=tuple(command),
    )


def _spawn(
    command: Sequence[str], workdir: Path, env: dict[str, str], log_path: Path
) -> subprocess.Popen:
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
    process = _spawn(parts, workdir, environment, log_path)
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


def _stop(process: subprocess.Popen) -> None:
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


# ----------------------------------------------------------------------------- the corpus


@dataclass
class Corpus:
    """Two package roots with known contents; every path here is a real file."""

    base: Path
    roots: tuple[Path, Path]
    files: dict[str, Path] = field(default_factory=dict)  # filename -> path, served ones only
    hidden: dict[str, Path] = field(default_factory=dict)  # dot-files / dot-dirs: never served
    secret: Path | None = None  # a file beside the roots, for traversal attempts

    def add(self, path: Path) -> Path:
        self.files[path.name] = path
        return path

    def relpath(self, filename: str) -> str:
        """The path under /packages/ (relative to the file's root, with forward slashes)."""
        path = self.files.get(filename) or self.hidden[filename]
        for root in self.roots:
            if path.is_relative_to(root):
                return path.relative_to(root).as_posix()
        raise AssertionError(f"{path} is in no root")

    def data(self, filename: str) -> bytes:
        return self.files[filename].read_bytes()

    def sha256(self, filename: str) -> str:
        return hashlib.sha256(self.data(filename)).hexdigest()

    def metadata(self, filename: str) -> bytes:
        return wheel_metadata(self.files[filename])

    def project_files(self, project: str) -> set[str]:
        from creamery.core.names import parse_filename

        return {
            name
            for name in self.files
            if (parsed := parse_filename(name)) is not None and parsed.project == project
        }


def build_corpus(base: Path) -> Corpus:
    """Projects with dependencies, yanks, signatures, requires-python, odd names and hiding."""
    root, root2 = base / "root1", base / "root2"
    root.mkdir(parents=True)
    root2.mkdir(parents=True)
    corpus = Corpus(base=base, roots=(root, root2))
    add = corpus.add

    # tlib: several versions across both roots; 0.5 yanked without reason, 3.0 with one.
    yank(add(make_wheel(root, "tlib", "0.5", summary="Test library")))
    add(make_sdist(root2, "tlib", "0.9", summary="Test library"))
    add(make_wheel(root, "tlib", "1.0", summary="Test library"))
    add(make_sdist(root, "tlib", "1.0", summary="Test library"))
    add(make_wheel(root, "tlib", "2.0", summary="Test library"))
    add(make_sdist(root, "tlib", "2.0", summary="Test library"))
    yank(add(make_wheel(root, "tlib", "3.0", summary="Test library")), "broken build")
    os.utime(corpus.files[FIXED_MTIME_FILE], (FIXED_MTIME, FIXED_MTIME))

    # tapp lives in a subdirectory and depends on tlib.
    add(make_wheel(root / "sub", "tapp", "1.0", requires_dist=["tlib>=1.0"], summary="Test app"))

    # A non-normalized project name, spelled two ways in filenames.
    add(make_wheel(root, "Foo.Bar_baz", "0.2", summary="Oddly named project"))
    add(make_sdist(root, "Foo.Bar_baz", "0.1", filename_name="Foo.Bar_baz"))

    # requires-python: 2.0 can't be installed by any Python 3.
    add(make_wheel(root, "tpyreq", "1.0", requires_python=">=3.8,<4", summary="Needs py3"))
    add(make_wheel(root, "tpyreq", "2.0", requires_python=">=4", summary="Needs py4"))

    sign(add(make_wheel(root, "tsigned", "1.0", summary="Signed project")))

    add(make_wheel(root2, "tother", "1.0", summary="A zebra among packages"))

    # Must never be listed or served.
    dotfile = make_wheel(root, "thidden", "1.0")
    corpus.hidden[".thidden-1.0-py3-none-any.whl"] = dotfile.rename(
        root / ".thidden-1.0-py3-none-any.whl"
    )
    hidden_in_dir = make_wheel(root / ".hiddendir", "thidden2", "1.0")
    corpus.hidden[hidden_in_dir.name] = hidden_in_dir

    corpus.secret = base / "secret.txt"
    corpus.secret.write_text(SECRET)
    return corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return build_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session", name="run_server")
def run_server_fixture():
    """`run_server(roots, *args, ready_paths=..., env=...)` as a context manager."""
    return run_server


@pytest.fixture(scope="module")
def server(corpus: Corpus) -> Iterator[Server]:
    """One default server over the corpus per test module."""
    with run_server(corpus.roots) as srv:
        yield srv
