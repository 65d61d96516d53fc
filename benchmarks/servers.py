"""Installing the tools and building the command line of each server under test."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from corpus import Corpus

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WORK = BENCH / "work"
PYPISERVER_VERSION = "2.4.2"
PYPISERVER_VENV = WORK / "pypiserver-venv"
CLIENT_VENV = WORK / "client-venv"
SERVERS = ("creamery", "pypiserver", "nginx")


def log(msg: str) -> None:
    print(msg, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _make_venv(venv: Path, packages: list[str]) -> None:
    log(f"installing {' '.join(packages)} into {venv}")
    if venv.exists():
        shutil.rmtree(venv)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [
            str(_venv_python(venv)),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            *packages,
        ],
        check=True,
    )


def _apt_install(packages: list[str]) -> None:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SystemExit(f"missing {' '.join(packages)}: install them (Debian: apt-get install)")
    log(f"apt-get install {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-q", *packages], check=True, env=env)


def find_nginx() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(p)), None
    )


def ensure_system_tools(need_nginx: bool) -> None:
    missing = [tool for tool in ("wrk", "curl") if not shutil.which(tool)]
    if need_nginx and not find_nginx():
        missing.append("nginx")
    if missing:
        _apt_install(missing)


def ensure_pypiserver() -> Path:
    """pypiserver with watchdog (cache invalidation) and waitress (threaded server)."""
    exe = PYPISERVER_VENV / "bin" / "pypi-server"
    marker = PYPISERVER_VENV / f".installed-{PYPISERVER_VERSION}"
    if not (exe.exists() and marker.exists()):
        _make_venv(PYPISERVER_VENV, [f"pypiserver=={PYPISERVER_VERSION}", "watchdog", "waitress"])
        marker.touch()
    return exe


def ensure_clients() -> tuple[Path, Path]:
    """(python with pip, uv) in a venv of their own, so client versions don't drift."""
    py = _venv_python(CLIENT_VENV)
    uv = CLIENT_VENV / "bin" / "uv"
    if not (py.exists() and uv.exists()):
        _make_venv(CLIENT_VENV, ["uv"])
    return py, uv


def tool_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[0].strip() if text else "?"


@dataclass
class Launch:
    name: str
    cmd: list[str]
    env: dict[str, str] | None = None
    cwd: Path | None = None
    note: str = ""


def creamery_python(explicit: str | None) -> str:
    if explicit:
        return explicit
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def creamery_cache(corpus: Corpus) -> Path:
    return WORK / f"creamery-cache-{corpus.name}"


def creamery_version(python: str | None) -> str:
    """creamery's version and the commit of the work tree it runs from."""
    version = tool_version(
        [creamery_python(python), "-c", "import creamery; print(creamery.__version__)"]
    )
    commit = tool_version(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--", "src"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return f"creamery {version} (git {commit}{', src modified' if dirty else ''})"


def launch_creamery(
    corpus: Corpus, port: int, workers: int, python: str, extra: list[str]
) -> Launch:
    cmd = [python, "-m", "creamery", "run", "-i", "127.0.0.1", "-p", str(port)]
    if workers != 1:
        cmd += ["--workers", str(workers)]
    cmd += [*extra, str(corpus.packages)]
    # creamery keeps its facts cache under $XDG_CACHE_HOME: keep it in benchmarks/work.
    env = {**os.environ, "XDG_CACHE_HOME": str(creamery_cache(corpus))}
    return Launch("creamery", cmd, env=env, note=f"{workers} worker(s)")


def launch_pypiserver(corpus: Corpus, port: int) -> Launch:
    """pypiserver 2.4.2 has no `--server waitress`; `auto` makes bottle pick waitress first."""
    exe = ensure_pypiserver()
    cmd = [
        str(exe),
        "run",
        "-p",
        str(port),
        "-i",
        "127.0.0.1",
        "--server",
        "auto",
        "--disable-fallback",
        "-a",
        ".",
        "-P",
        ".",
        str(corpus.packages),
    ]
    return Launch("pypiserver", cmd, note=f"{PYPISERVER_VERSION}, auto = waitress, watchdog cache")


NGINX_CONF = """\
# Generated by benchmarks/run.py: static PEP 503 pages + files, the physical-limit reference.
{user}worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    keepalive_timeout 65;
    open_file_cache max=50000 inactive=60s;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    types {{
        text/html html;
    }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        index index.html;
        location / {{
        }}
    }}
}}
"""


def launch_nginx(corpus: Corpus, port: int, workers: str) -> Launch:
    exe = find_nginx()
    if exe is None:
        raise SystemExit("nginx not found")
    prefix = WORK / "nginx"
    prefix.mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read benchmarks/work
    conf.write_text(
        NGINX_CONF.format(user=user, workers=workers, prefix=prefix, port=port, root=corpus.static)
    )
    cmd = [
        exe,
        "-c",
        str(conf),
        "-p",
        str(prefix),
        "-e",
        str(prefix / "error.log"),
        "-g",
        "daemon off;",
    ]
    return Launch("nginx", cmd, note=f"worker_processes {workers}, sendfile on, static pages")
