"""The measurements: wrk load, curl download, start-up, new-file visibility, uv and pip."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import procs

JSON_ACCEPT = "application/vnd.pypi.simple.v1+json"
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


@dataclass
class WrkResult:
    rps: float
    p99_ms: float
    requests: int
    errors: dict[str, int] = field(default_factory=dict)


def parse_wrk(text: str) -> WrkResult:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M)
    total = re.search(r"^\s+(\d+) requests in", text, re.M)
    if not (rps and total):
        raise RuntimeError(f"can't parse wrk output:\n{text}")
    errors: dict[str, int] = {}
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if sock:
        for key, value in zip(("connect", "read", "write", "timeout"), sock.groups(), strict=True):
            if int(value):
                errors[key] = int(value)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if bad:
        errors["non-2xx"] = int(bad.group(1))
    p99_ms = float(p99.group(1)) * _UNITS[p99.group(2)] if p99 else float("nan")
    return WrkResult(float(rps.group(1)), p99_ms, int(total.group(1)), errors)


def write_lua(path: Path, paths: list[str]) -> Path:
    """A wrk script cycling through *paths* (each thread starts at a different offset)."""
    items = ",\n".join(f'  "{p}"' for p in paths)
    path.write_text(
        f"local paths = {{\n{items}\n}}\n"
        "local i = 0\n"
        "local n = #paths\n"
        "function setup(thread)\n"
        '  thread:set("offset", math.random(n))\n'
        "end\n"
        "function init(args)\n"
        "  i = tonumber(offset) or 0\n"
        "end\n"
        "function request()\n"
        "  i = i % n + 1\n"
        "  return wrk.format(nil, paths[i])\n"
        "end\n"
    )
    return path


@dataclass
class Load:
    threads: int = 2
    connections: int = 32
    duration: float = 5
    warmup: float = 1
    timeout: str = "30s"
    cpus: set[int] | None = None


def wrk(
    url: str, load: Load, *, script: Path | None = None, headers: tuple[str, ...] = ()
) -> WrkResult:
    """One measured wrk run after a short warm-up; waits for the backlog to drain after each."""

    def once(duration: float) -> WrkResult:
        cmd = ["wrk", f"-t{load.threads}", f"-c{load.connections}", f"-d{duration:g}s"]
        cmd += [f"--timeout={load.timeout}", "--latency"]
        for header in headers:
            cmd += ["-H", header]
        if script is not None:
            cmd += ["-s", str(script)]
        cmd.append(url)
        out = procs.run(cmd, cpus=load.cpus, timeout=duration + 60)
        drain(url, script, headers)
        return parse_wrk(out.stdout)

    if load.warmup > 0:
        once(load.warmup)
    return once(load.duration)


def drain(url: str, script: Path | None, headers: tuple[str, ...]) -> None:
    """Wait until the server has worked off requests queued by the last run.

    A slow server (pypiserver) still serves the requests that wrk left in flight; one more
    request of the same kind returns only once that backlog is gone, so the next run starts
    from an idle server.
    """
    parts = urllib.parse.urlsplit(url)
    path = parts.path or "/"
    if script is not None:
        match = re.search(r'"(/[^"]*)"', script.read_text())
        path = match.group(1) if match else path
    hdrs = dict(h.split(": ", 1) for h in headers)
    with contextlib.suppress(OSError, http.client.HTTPException):
        http_get(parts.port or 80, path, hdrs, timeout=120)


def http_get(
    port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 60
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


def wait_ready(
    proc: subprocess.Popen,
    port: int,
    t0: float,
    log: Path,
    timeout: float = 180,
    path: str = "/simple/",
) -> float:
    """Seconds from *t0* (just before the spawn) to the first 200 on *path* (every 5 ms)."""
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(
                f"server exited with {proc.returncode} before answering: " + " | ".join(tail)
            )
        with socket.socket() as s:
            connected = s.connect_ex(("127.0.0.1", port)) == 0
        if connected:
            try:
                status, _, _ = http_get(port, path, timeout=max(1, deadline - time.monotonic()))
            except (OSError, http.client.HTTPException):
                status = 0
            if status == 200:
                return time.monotonic() - t0
        time.sleep(0.005)
    raise RuntimeError(f"no 200 on {path} within {timeout:.0f} s")


def download_mbps(url: str, cpus: set[int] | None, expected: int) -> float:
    """MB/s (10^6 bytes) of `curl -o /dev/null`, measured after one untimed download."""
    speed = 0.0
    cmd = ["curl", "-sS", "-o", os.devnull, "-w", "%{http_code} %{size_download} %{time_total}"]
    cmd.append(url)
    for _ in range(2):
        out = procs.run(cmd, cpus=cpus, timeout=600)
        code, size, seconds = out.stdout.split()
        if code != "200" or int(size) != expected:
            raise RuntimeError(f"download of {url}: HTTP {code}, {size} of {expected} bytes")
        speed = int(size) / float(seconds) / 1e6
    return speed


def visible_ms(
    port: int, project: str, packages: Path, wheels: dict[str, bytes], timeout: float = 10
) -> list[float | None]:
    """For each new wheel: copy it in, then poll /simple/<project>/ until it is listed.

    Returns milliseconds from the end of the copy to the first page that lists the file
    (None if it did not appear within *timeout*). The copies are removed afterwards.
    """
    results: list[float | None] = []
    with tempfile.TemporaryDirectory(dir=packages.parent) as tmp:
        try:
            for name, data in wheels.items():
                src = Path(tmp) / name
                src.write_bytes(data)
                shutil.copyfile(src, packages / name)
                t0 = time.monotonic()
                seen = None
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                try:
                    while time.monotonic() - t0 < timeout:
                        conn.request("GET", f"/simple/{project}/")
                        body = conn.getresponse().read()
                        if name.encode() in body:
                            seen = (time.monotonic() - t0) * 1e3
                            break
                        time.sleep(0.002)
                finally:
                    conn.close()
                results.append(seen)
                time.sleep(0.2)
        finally:
            for name in wheels:
                (packages / name).unlink(missing_ok=True)
    return results


def client_env() -> dict[str, str]:
    """The environment without pip/uv configuration that could point elsewhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_INPUT="1",
        UV_NO_CONFIG="1",
        UV_PYTHON_DOWNLOADS="never",
    )
    return env


def uv_install_s(
    uv: Path,
    python: str,
    index_url: str,
    package: str,
    cpus: set[int] | None,
    scratch: Path,
    expect: list[str],
) -> float:
    """Seconds of `uv pip install --no-cache` into a fresh venv (venv creation not timed)."""
    env = client_env()
    venv = scratch / "uv-venv"
    shutil.rmtree(venv, ignore_errors=True)
    procs.run([str(uv), "venv", "-q", "--python", python, str(venv)], env=env)
    venv_python = str(venv / "bin" / "python")
    cmd = [str(uv), "pip", "install", "-q", "--python", venv_python, "--index-url", index_url]
    cmd += ["--no-cache", package]
    t0 = time.monotonic()
    procs.run(cmd, cpus=cpus, env=env)
    seconds = time.monotonic() - t0
    listed = procs.run([str(uv), "pip", "list", "--python", venv_python], env=env).stdout
    shutil.rmtree(venv, ignore_errors=True)
    missing = [p for p in expect if p not in listed]
    if missing:
        raise RuntimeError(f"uv install did not install {missing}:\n{listed}")
    return seconds


def pip_download_s(
    python: Path, index_url: str, projects: list[str], cpus: set[int] | None, scratch: Path
) -> float:
    """Seconds of `pip download --no-cache-dir` of *projects* (latest versions)."""
    env = client_env()
    dest = scratch / "pip-download"
    shutil.rmtree(dest, ignore_errors=True)
    cmd = [str(python), "-m", "pip", "download", "-q", "--no-cache-dir", "-d", str(dest)]
    cmd += ["--index-url", index_url, *projects]
    t0 = time.monotonic()
    procs.run(cmd, cpus=cpus, env=env)
    seconds = time.monotonic() - t0
    got = len(list(dest.iterdir()))
    shutil.rmtree(dest, ignore_errors=True)
    if got != len(projects):
        raise RuntimeError(f"pip download fetched {got} files, wanted {len(projects)}")
    return seconds
