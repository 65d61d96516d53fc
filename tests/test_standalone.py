"""The standalone file: `scripts/build-standalone` makes creamery.pyz, which serves, takes uploads
and installs with a bare Python that has no package at all (not even pip).

This is also CI's smoke test of a built artifact: the build runs once per session, offline, from
the packages of the running environment.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.clients import python_m, twine_upload
from support.dists import make_sdist, make_wheel
from support.htpasswd import write_sha1_htpasswd
from support.readmes import MALICIOUS_MARKDOWN, readme_wheel
from support.servers import Server, free_port, started

import creamery

ROOT = Path(__file__).resolve().parent.parent
COMPILED = (".so", ".pyd", ".dylib", ".dll")
USER, PASSWORD = "uploader", "s3cret"
# Written by Apache's `htpasswd -B` (bcrypt): the bundle has no bcrypt module to check it.
BCRYPT_HASH = "$2y$04$tBhBZEZpeGGrK1UfoEQMje13huGo0LEzJUKEmMiP546BoDdFaVOmO"
# Modules creamery uses where installed; the bare Python must have none of them.
DEPENDENCIES = ("starlette", "jinja2", "uvicorn", "granian", "bcrypt", "watchdog", "passlib")


@pytest.fixture(scope="session")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("standalone") / "creamery.pyz"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build-standalone"), "-o", str(target)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return target


@pytest.fixture(scope="session")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The interpreter of a fresh virtual environment without pip or anything else."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    probe = "import importlib.util as u, sys; print([m for m in sys.argv[1:] if u.find_spec(m)])"
    found = subprocess.run(
        [python, "-I", "-c", probe, *DEPENDENCIES], capture_output=True, text=True, check=True
    )
    assert found.stdout.strip() == "[]", "the bare Python has packages"
    return python


@pytest.fixture(scope="module")
def standalone(pyz: Path, bare_python: Path, tmp_path_factory: pytest.TempPathFactory):
    """`python creamery.pyz run` on the bare Python, uploads for {SHA} user `uploader`."""
    base = tmp_path_factory.mktemp("standalone-server")
    packages = base / "packages"
    make_wheel(packages, "tstandalone", "1.0", summary="Served by the standalone file")
    readme_wheel(packages, "treadme", "1.0", MALICIOUS_MARKDOWN, summary="A hostile README")
    htpasswd = write_sha1_htpasswd(base / "htpasswd", USER, PASSWORD, f"bcrypter:{BCRYPT_HASH}\n")
    port = free_port()
    command = [bare_python, "-I", pyz, "run", "-i", "127.0.0.1", "-p", str(port)]
    command += ["-P", htpasswd, "--rescan-interval", "0", packages]  # 0: events only
    with started(command, port, base) as server:
        yield server


@pytest.fixture
def client(standalone: Server) -> Iterator[httpx.Client]:
    with standalone.client() as http:
        yield http


# ---------------------------------------------------------------- the file


def test_bundle_is_pure_python_with_a_fallback_server(pyz: Path) -> None:
    names = zipfile.ZipFile(pyz).namelist()
    assert not [name for name in names if name.endswith(COMPILED)]
    tops = {name.split("/", 1)[0] for name in names}
    assert {"__main__.py", "creamery", "uvicorn", "starlette", "jinja2", "passlib"} <= tops
    assert not {"granian", "bcrypt"} & tops
    assert any(name.startswith("creamery/templates/") for name in names)
    assert pyz.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    assert pyz.stat().st_mode & stat.S_IXUSR


def test_version(pyz: Path, bare_python: Path) -> None:
    result = subprocess.run(
        [bare_python, "-I", pyz, "--version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"creamery {creamery.__version__}"


# ---------------------------------------------------------------- serving


def test_auto_server_is_uvicorn_and_pages_render(client: httpx.Client) -> None:
    health = client.get("/health")
    assert health.status_code == 200
    assert health.headers["server"] == "uvicorn"
    welcome = client.get("/")  # jinja2 templates load from inside the zip
    assert welcome.status_code == 200
    assert "tstandalone" in client.get("/simple/").text


def test_readmes_are_escaped_text_without_the_compiled_sanitizer(client: httpx.Client) -> None:
    """The bundle has no nh3 (compiled), so readme_renderer can't sanitize: a README is shown
    as escaped plain text, never as HTML that nothing cleaned."""
    page = client.get("/project/treadme/")
    assert page.status_code == 200
    assert "Harmless text first." in page.text
    assert "<script>window.pwned" not in page.text and "&lt;script&gt;window.pwned" in page.text


def test_pip_installs_from_it(standalone: Server, tmp_path: Path) -> None:
    target = tmp_path / "site"
    index = standalone.url + "/simple/"
    result = python_m(
        *("pip", "install", "--disable-pip-version-check", "--no-deps", "--no-cache-dir"),
        *("--target", target, "--index-url", index, "tstandalone==1.0"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (target / "tstandalone" / "__init__.py").is_file()


def test_twine_uploads_with_a_sha1_htpasswd_user(
    standalone: Server, client: httpx.Client, tmp_path: Path
) -> None:
    files = [
        make_wheel(tmp_path, "tuploaded", "2.0"),
        make_sdist(tmp_path, "tuploaded", "2.0"),
    ]
    home = tmp_path / "home"
    refused = twine_upload(standalone.url + "/", home, *files, user=USER, password="wrong")
    assert refused.returncode != 0
    assert "403" in refused.stdout + refused.stderr
    result = twine_upload(standalone.url + "/", home, *files, user=USER, password=PASSWORD)
    assert result.returncode == 0, result.stdout + result.stderr
    page = client.get("/simple/tuploaded/").text
    assert all(f.name in page for f in files)


def test_file_system_events_work_from_the_zip(standalone: Server, client: httpx.Client) -> None:
    """Started with --rescan-interval 0: only watchdog (inotify through ctypes) can see this."""
    packages = Path(standalone.command[-1])
    dropped = make_wheel(packages.parent / "elsewhere", "tdropped", "1.0")
    shutil.move(dropped, packages / dropped.name)
    deadline = time.monotonic() + 10
    while "tdropped" not in client.get("/simple/").text:
        assert time.monotonic() < deadline, "a copied file did not show up: no file events"
        time.sleep(0.1)


def test_a_bcrypt_user_without_bcrypt_is_refused_with_a_clear_log_line(
    standalone: Server, client: httpx.Client
) -> None:
    before = len(standalone.log())
    response = client.post("/", auth=("bcrypter", PASSWORD), files={":action": (None, "verify")})
    assert response.status_code in (401, 403, 503)
    log = standalone.log()[before:]
    assert "bcrypt" in log
    assert "Traceback" not in log
