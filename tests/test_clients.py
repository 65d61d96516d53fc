"""Real installers (pip, uv) against a real server, in subprocesses, isolated from user config."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from support.clients import UV, clean_env, describe, installed
from support.corpus import Corpus
from support.servers import Server, run_server

PIP = [sys.executable, "-m", "pip"]
PIP_FLAGS = ["--no-cache-dir", "--disable-pip-version-check", "--no-input", "--timeout", "15"]
TIMEOUT = 300


def pip_env(**extra: str) -> dict[str, str]:
    return clean_env(PIP_CONFIG_FILE=os.devnull, PYTHONNOUSERSITE="1", **extra)


def uv_env(tmp_path: Path) -> dict[str, str]:
    return clean_env(
        UV_CACHE_DIR=str(tmp_path / "uv-cache"),
        UV_PYTHON_DOWNLOADS="never",
        UV_NO_PROGRESS="1",
        UV_HTTP_TIMEOUT="15",
        XDG_CONFIG_HOME=str(tmp_path / "config"),
    )


def run(command: list[str], env: dict[str, str], *, ok: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        command,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    if ok:
        assert result.returncode == 0, describe(result)
    return result


def pip(server: Server, *args: str, env: dict[str, str] | None = None, ok: bool = True):
    return run(
        [*PIP, args[0], *PIP_FLAGS, "--index-url", f"{server.url}/simple/", *args[1:]],
        env or pip_env(),
        ok=ok,
    )


def module_version(target: Path, module: str) -> str:
    text = (target / module / "__init__.py").read_text()
    match = re.search(r'__version__ = "([^"]+)"', text)
    assert match, text
    return match.group(1)


def test_pip_installs_app_with_hosted_dependency(server: Server, tmp_path: Path) -> None:
    target = tmp_path / "target"
    pip(server, "install", "--target", str(target), "tapp")
    # tlib 3.0 is yanked: the newest installable release is 2.0.
    assert installed(target) == {"tapp-1.0", "tlib-2.0"}
    assert module_version(target, "tapp") == "1.0"
    assert module_version(target, "tlib") == "2.0"


def test_pip_installs_pinned_yanked_version(server: Server, tmp_path: Path) -> None:
    target = tmp_path / "target"
    result = pip(server, "install", "--target", str(target), "tlib==3.0")
    assert installed(target) == {"tlib-3.0"}
    assert "yanked" in result.stderr + result.stdout
    assert "broken build" in result.stderr + result.stdout  # the reason reached pip


def test_pip_skips_release_excluded_by_requires_python(server: Server, tmp_path: Path) -> None:
    target = tmp_path / "target"
    pip(server, "install", "--target", str(target), "tpyreq")
    assert installed(target) == {"tpyreq-1.0"}


def test_pip_refuses_explicit_requires_python_mismatch(server: Server, tmp_path: Path) -> None:
    result = pip(server, "install", "--target", str(tmp_path / "t"), "tpyreq==2.0", ok=False)
    assert result.returncode != 0
    assert "Requires-Python" in result.stderr + result.stdout


def test_pip_resolves_non_normalized_name(server: Server, tmp_path: Path) -> None:
    target = tmp_path / "target"
    pip(server, "install", "--target", str(target), "Foo.Bar_baz")
    assert installed(target) == {"foo_bar_baz-0.2"}
    assert module_version(target, "foo_bar_baz") == "0.2"


def test_pip_download_wheel(server: Server, corpus: Corpus, tmp_path: Path) -> None:
    dest = tmp_path / "dl"
    pip(server, "download", "--no-deps", "--only-binary", ":all:", "-d", str(dest), "tlib")
    (downloaded,) = dest.iterdir()
    assert downloaded.name == "tlib-2.0-py3-none-any.whl"
    assert downloaded.read_bytes() == corpus.data(downloaded.name)


def test_pip_download_sdist(server: Server, corpus: Corpus, tmp_path: Path) -> None:
    """pip prepares the sdist's metadata with its (offline, in-tree) build backend."""
    dest = tmp_path / "dl"
    pip(server, "download", "--no-deps", "--no-binary", ":all:", "-d", str(dest), "tlib==1.0")
    (downloaded,) = dest.iterdir()
    assert downloaded.name == "tlib-1.0.tar.gz"
    assert downloaded.read_bytes() == corpus.data(downloaded.name)


def test_pip_download_from_subdirectory_and_second_root(
    server: Server, corpus: Corpus, tmp_path: Path
) -> None:
    dest = tmp_path / "dl"
    pip(server, "download", "--no-deps", "-d", str(dest), "tapp", "tother")
    assert {p.name for p in dest.iterdir()} == {
        "tapp-1.0-py3-none-any.whl",
        "tother-1.0-py3-none-any.whl",
    }
    for path in dest.iterdir():
        assert path.read_bytes() == corpus.data(path.name)


def test_pip_installs_from_hosted_sdist(server: Server, tmp_path: Path) -> None:
    target = tmp_path / "target"
    pip(server, "install", "--target", str(target), "--no-binary", "tlib", "tlib==2.0")
    assert installed(target) == {"tlib-2.0"}
    assert module_version(target, "tlib") == "2.0"


def _served_hashes(server: Server, project: str) -> dict[str, str]:
    response = httpx.get(
        f"{server.url}/simple/{project}/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
        timeout=10,
    )
    assert response.status_code == 200
    return {f["filename"]: f["hashes"]["sha256"] for f in response.json()["files"]}


def test_pip_require_hashes(server: Server, corpus: Corpus, tmp_path: Path) -> None:
    tapp, tlib = _served_hashes(server, "tapp"), _served_hashes(server, "tlib")
    for served in (tapp, tlib):
        for filename, digest in served.items():
            assert digest == hashlib.sha256(corpus.data(filename)).hexdigest()
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(
        f"tapp==1.0 --hash=sha256:{tapp['tapp-1.0-py3-none-any.whl']}\n"
        f"tlib==2.0 --hash=sha256:{tlib['tlib-2.0-py3-none-any.whl']}"
        f" --hash=sha256:{tlib['tlib-2.0.tar.gz']}\n"
    )
    target = tmp_path / "target"
    pip(server, "install", "--require-hashes", "--target", str(target), "-r", str(requirements))
    assert installed(target) == {"tapp-1.0", "tlib-2.0"}

    # The same check fails on a wrong hash: pip really compared the served bytes.
    requirements.write_text(f"tlib==2.0 --hash=sha256:{'0' * 64}\n")
    result = pip(
        server,
        "install",
        "--require-hashes",
        "--target",
        str(tmp_path / "t2"),
        "-r",
        str(requirements),
        ok=False,
    )
    assert result.returncode != 0
    assert "DO NOT MATCH THE HASHES" in result.stderr


def test_pip_index_url_from_environment(server: Server, corpus: Corpus, tmp_path: Path) -> None:
    dest = tmp_path / "dl"
    env = pip_env(PIP_INDEX_URL=f"{server.url}/simple/")
    run([*PIP, "download", *PIP_FLAGS, "--no-deps", "-d", str(dest), "tapp"], env)
    (downloaded,) = dest.iterdir()
    assert downloaded.read_bytes() == corpus.data("tapp-1.0-py3-none-any.whl")


def test_pip_through_a_path_prefix(corpus: Corpus, tmp_path: Path) -> None:
    """`--server-base-url /prefix`: the whole index, files included, lives under the prefix."""
    with run_server(
        corpus.roots, "--server-base-url", "/prefix", ready_paths=("/prefix/health", "/health")
    ) as prefixed:
        target = tmp_path / "target"
        run(
            [
                *PIP,
                "install",
                *PIP_FLAGS,
                "--index-url",
                f"{prefixed.url}/prefix/simple/",
                "--target",
                str(target),
                "tapp",
            ],
            pip_env(),
        )
    assert installed(target) == {"tapp-1.0", "tlib-2.0"}


# ----------------------------------------------------------------------------------- uv


@pytest.fixture
def uv_venv(tmp_path: Path) -> Path:
    venv = tmp_path / "venv"
    run([UV, "venv", "--no-config", "--python", sys.executable, str(venv)], uv_env(tmp_path))
    return venv


def uv_pip_install(server: Server, venv: Path, tmp_path: Path, *args: str):
    return run(
        [
            UV,
            "pip",
            "install",
            "--no-config",
            "--python",
            str(venv / "bin" / "python"),
            "--index-url",
            f"{server.url}/simple/",
            *args,
        ],
        uv_env(tmp_path),
    )


def venv_versions(venv: Path, *modules: str) -> list[str]:
    code = "; ".join(f"import {m}; print({m}.__version__)" for m in modules)
    result = run([str(venv / "bin" / "python"), "-c", code], clean_env())
    return result.stdout.split()


def test_uv_pip_install(server: Server, uv_venv: Path, tmp_path: Path) -> None:
    uv_pip_install(server, uv_venv, tmp_path, "tapp", "Foo.Bar_baz")
    assert venv_versions(uv_venv, "tapp", "tlib", "foo_bar_baz") == ["1.0", "2.0", "0.2"]


def test_uv_skips_yanked_and_requires_python(server: Server, uv_venv: Path, tmp_path: Path) -> None:
    uv_pip_install(server, uv_venv, tmp_path, "tlib", "tpyreq")
    assert venv_versions(uv_venv, "tlib", "tpyreq") == ["2.0", "1.0"]


def test_uv_builds_hosted_sdist(server: Server, uv_venv: Path, tmp_path: Path) -> None:
    uv_pip_install(server, uv_venv, tmp_path, "--no-binary", "tlib", "tlib==1.0")
    assert venv_versions(uv_venv, "tlib") == ["1.0"]
