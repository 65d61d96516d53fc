"""Clients in subprocesses: pip, uv, twine, pdm and `python -m creamery`, with no user
configuration.

Everything here takes URLs, not servers, so it works against any index a test runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

BIN = Path(sys.executable).parent
UV = str(BIN / "uv")
PDM = shutil.which("pdm", path=str(BIN)) or shutil.which("pdm")
CLIENT_TIMEOUT = 120  # seconds for one pip, uv, twine or creamery run


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without the user's pip/uv configuration, plus *extra*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(extra)
    return env


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


def python_m(
    *args: object, env: dict[str, str] | None = None, stdin: str | None = None, timeout: float = 0
) -> subprocess.CompletedProcess[str]:
    """`python -m ARGS` with this environment's Python; by default in `clean_env()`."""
    command = [sys.executable, "-m", *map(str, args)]
    return run_client(command, clean_env() if env is None else env, stdin, timeout)


def creamery(
    *args: object, env: dict[str, str] | None = None, stdin: str | None = None, timeout: float = 0
) -> subprocess.CompletedProcess[str]:
    """`python -m creamery ARGS` (the CLI as an operator runs it); by default in `clean_env()`."""
    return python_m("creamery", *args, env=env, stdin=stdin, timeout=timeout)


def creamery_passwd(path: Path, user: str, password: str) -> Path:
    """Add *user* to the htpasswd file *path* with the real `creamery passwd` (bcrypt)."""
    result = creamery("passwd", path, user, "--password-stdin", stdin=password + "\n")
    assert result.returncode == 0, describe(result)
    return path


# ----------------------------------------------------------------------------- installers


def uv_install_command(index_url: str, target: Path, *requirements: str) -> list[str]:
    """`uv pip install` into *target* from *index_url*, ignoring any uv configuration."""
    return [
        UV,
        *("pip", "install", "--no-config", "--python", sys.executable),
        *("--target", str(target), "--index-url", f"{index_url}/simple/", *requirements),
    ]


def uv_install(
    index_url: str, target: Path, home: Path, *requirements: str
) -> subprocess.CompletedProcess[str]:
    """`uv pip install --target` from *index_url* (a server's base URL, credentials allowed)."""
    return run_client(uv_install_command(index_url, target, *requirements), client_env(home))


def pip_install(
    index_url: str, target: Path, home: Path, *requirements: str
) -> subprocess.CompletedProcess[str]:
    """`pip install --target` from *index_url* (a full index URL, `.../simple/`)."""
    command = [
        *(sys.executable, "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check"),
        *("--no-input", "--timeout", "15", "--target", str(target), "--index-url", index_url),
        *requirements,
    ]
    return run_client(command, client_env(home))


def pip_download(
    server_url: str, dest: Path, home: Path, *requirements: str, verbose: bool = False
) -> subprocess.CompletedProcess[str]:
    """`pip download` of wheels only, no dependencies; *verbose* (-vv) prints HTTP statuses."""
    command = [
        *(sys.executable, "-m", "pip", "download", *(["-vv"] if verbose else [])),
        *("--no-cache-dir", "--disable-pip-version-check", "--no-input"),
        *("--keyring-provider", "disabled", "--timeout", "15"),
        *("--no-deps", "--only-binary", ":all:", "-d", str(dest)),
        *("--index-url", f"{server_url}/simple/", *requirements),
    ]
    return run_client(command, client_env(home))


def installed(target: Path) -> set[str]:
    """`name-version` of every distribution installed in a --target directory."""
    return {p.name.removesuffix(".dist-info") for p in target.glob("*.dist-info")}


# ----------------------------------------------------------------------------- publishers


def twine(home: Path, *args: object, **env: str) -> subprocess.CompletedProcess[str]:
    """`twine upload --non-interactive --disable-progress-bar ARGS`, its home in *home*."""
    command = [
        *(sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar"),
        *map(str, args),
    ]
    return run_client(command, {**client_env(home), **env})


def twine_upload(
    repository: str,
    home: Path,
    *files: object,
    user: str = "any",
    password: str = "any",
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """`twine upload --repository-url REPOSITORY -u USER -p PASSWORD FILES...`."""
    return twine(home, "--repository-url", repository, "-u", user, "-p", password, *files, **env)


def uv_publish(publish_url: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`uv publish --publish-url PUBLISH_URL ARGS`, ignoring any uv configuration."""
    command = [UV, "publish", "--no-config", "--publish-url", publish_url, *args]
    return run_client(command, client_env(home))


# ----------------------------------------------------------------------------- pdm


def pdm_env(home: Path, **extra: str) -> dict[str, str]:
    """For pdm: its configuration, cache and logs in *home*, no update check (it asks PyPI)
    and no PyPI, never an active virtualenv of ours (each project gets its own `.venv`);
    then *extra*."""
    env = {
        k: v
        for k, v in client_env(home).items()
        if not k.startswith("PDM_") and k not in ("VIRTUAL_ENV", "CONDA_PREFIX")
    }
    env.update(
        PDM_CHECK_UPDATE="false",
        PDM_NON_INTERACTIVE="1",
        PDM_IGNORE_ACTIVE_VENV="1",
        PDM_USE_UV="false",
        PDM_CACHE_DIR=str(home / "pdm-cache"),
        PDM_LOG_DIR=str(home / "pdm-logs"),
        # Where pdm would go to PyPI (a project with no source named `pypi`), nothing listens.
        PDM_PYPI_URL="http://127.0.0.1:9/simple/",
    )
    env.update(extra)
    return env


def pdm(home: Path, *args: object, **env: str) -> subprocess.CompletedProcess[str]:
    """`pdm ARGS` in `pdm_env(home, **env)`."""
    assert PDM is not None, "pdm is not installed (the test extra has it)"
    return run_client([PDM, *map(str, args)], pdm_env(home, **env))
