"""The peers a team would deploy instead: devpi-server (with its replica mode) and CERN's
simple-repository-server, installed in venvs of their own and loaded with the same corpus.

- devpi-server keeps its index in SQLite and its files in its server directory, so the corpus is
  imported once: an export dump (`dataindex.json` + files, devpi's own format, written here
  with hard links) goes through `devpi-import --hard-links --no-events` into
  `work/devpi-server-<corpus>/`, reused while its marker matches. Its replica mode: a primary
  (`--role primary`) and `--primary-url` replicas that follow its changelog; replicas find the
  files through `--replica-file-search-path` (hard links) instead of downloading 40,000 files.
- simple-repository-server serves a directory with one sub-directory per project
  (`<root>/<project>/<files>`), read on every request; the corpus is laid out so with hard
  links in `work/srs-<corpus>/`. It has no replica mode: two processes on one directory are
  its "replicas" (a shared file system).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import corpus as corpus_mod
from corpus import Corpus
from servers import WORK, log

DEVPI_VERSION = "6.20.3"  # the current release (the package lists of this workplace)
SRS_VERSION = "0.10.0"
INDEX = "root/bench"


@dataclass
class Peer:
    name: str
    cmd: list[str]
    page: str  # a format string with {project}
    ready: str  # the path polled until 200
    env: dict[str, str] | None = None


def _venv(directory: Path, package: str) -> Path:
    marker = directory / f".installed-{package}"
    if not marker.exists():
        log(f"installing {package} into {directory}")
        if directory.exists():
            shutil.rmtree(directory)
        subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True)
        pip = [str(directory / "bin" / "python"), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, "--disable-pip-version-check", package], check=True)
        marker.touch()
    return directory / "bin"


def venv_root(explicit: str | None) -> Path:
    return Path(explicit) if explicit else WORK


def devpi_bin(root: Path) -> Path:
    return _venv(root / "devpi-venv", f"devpi-server=={DEVPI_VERSION}")


def srs_bin(root: Path) -> Path:
    return _venv(root / "srs-venv", f"simple-repository-server=={SRS_VERSION}")


def corpus_files(corpus: Corpus) -> list[str]:
    """The corpus's small files (the big wheel is for download tests, not for this one)."""
    return sorted(
        n for n in os.listdir(corpus.packages) if n != corpus.big_file and not n.startswith(".")
    )


def _split(filename: str) -> tuple[str, str]:
    """(project, version) of a corpus file name."""
    stem = re.sub(r"(-py3-none-any\.whl|\.tar\.gz)$", "", filename)
    name, version = stem.split("-", 1)
    return name.replace("_", "-"), version


# ---------------------------------------------------------------- devpi-server


def devpi_serverdir(corpus: Corpus) -> Path:
    return WORK / f"devpi-server-{corpus.name}"


def ensure_devpi(corpus: Corpus, venvs: Path) -> Path:
    """devpi's server directory holding the corpus in index root/bench (imported once)."""
    bindir = devpi_bin(venvs)
    serverdir = devpi_serverdir(corpus)
    marker = serverdir / f".bench-{corpus.files}-{DEVPI_VERSION}"
    if marker.exists():
        return serverdir
    dump = WORK / f"devpi-dump-{corpus.name}"
    shutil.rmtree(dump, ignore_errors=True)
    shutil.rmtree(serverdir, ignore_errors=True)
    projects: dict[str, dict[str, dict]] = {}
    files = []
    for name in corpus_files(corpus):
        project, version = _split(name)
        source = corpus.packages / name
        relpath = f"{INDEX}/{project}/{version}/{name}"
        target = dump / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(source, target)
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        projects.setdefault(project, {})[version] = {
            "name": project,
            "version": version,
            "requires_python": ">=3.8",
        }
        files.append(
            {
                "version": version,
                "entrymapping": {
                    "last_modified": "Mon, 01 Jan 2024 00:00:00 GMT",
                    "hash_spec": f"sha256={digest}",
                    "hashes": {"sha256": digest},
                    "project": project,
                    "version": version,
                },
                "log": [],
                "type": "releasefile",
                "projectname": project,
                "relpath": relpath,
            }
        )
    index = {
        "users": {"root": {"username": "root", "pwhash": "", "created": "2024-01-01T00:00:00Z"}},
        "indexes": {
            INDEX: {
                "indexconfig": {
                    "type": "stage",
                    "bases": [],
                    "volatile": False,
                    "acl_upload": [":ANONYMOUS:"],
                    "acl_toxresult_upload": [":ANONYMOUS:"],
                    "mirror_whitelist": [],
                    "mirror_whitelist_inheritance": "intersection",
                },
                "projects": projects,
                "files": files,
            }
        },
        "dumpversion": "2",
        "pythonversion": list(sys.version_info),
        "devpi_server": DEVPI_VERSION,
    }
    (dump / "dataindex.json").write_text(json.dumps(index))
    log(f"devpi-import of {len(files)} files into {serverdir} (once)")
    cmd = [str(bindir / "devpi-import"), "--serverdir", str(serverdir), "--no-root-pypi"]
    cmd += ["--hard-links", "--no-events", "--root-passwd", "bench", str(dump)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"devpi-import failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    shutil.rmtree(dump, ignore_errors=True)
    marker.touch()
    return serverdir


def devpi_secret() -> Path:
    """The secret a primary and its replicas share (replication is refused without it)."""
    path = WORK / "devpi-secret"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path


def devpi(corpus: Corpus, venvs: Path, port: int, role: str = "standalone") -> Peer:
    bindir = devpi_bin(venvs)
    cmd = [str(bindir / "devpi-server"), "--serverdir", str(ensure_devpi(corpus, venvs))]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--role", role]
    cmd += ["--secretfile", str(devpi_secret())]
    return Peer("devpi", cmd, f"/{INDEX}/+simple/{{project}}/", f"/{INDEX}/+simple/")


def devpi_replica(corpus: Corpus, venvs: Path, port: int, primary: int, name: str) -> Peer:
    """A fresh replica of the primary on *primary* (its own server directory)."""
    bindir = devpi_bin(venvs)
    serverdir = WORK / f"devpi-replica-{name}-{corpus.name}"
    shutil.rmtree(serverdir, ignore_errors=True)
    primary_url = f"http://127.0.0.1:{primary}"
    init = [str(bindir / "devpi-init"), "--serverdir", str(serverdir), "--role", "replica"]
    subprocess.run([*init, "--primary-url", primary_url], check=True, capture_output=True)
    cmd = [str(bindir / "devpi-server"), "--serverdir", str(serverdir), "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--primary-url", primary_url]
    cmd += ["--secretfile", str(devpi_secret())]
    cmd += ["--replica-file-search-path", str(devpi_serverdir(corpus)), "--hard-links"]
    return Peer(f"devpi replica {name}", cmd, f"/{INDEX}/+simple/{{project}}/", "/+status")


def devpi_upload_path() -> str:
    return f"/{INDEX}/"


# ---------------------------------------------------------------- simple-repository-server


def ensure_srs_tree(corpus: Corpus) -> Path:
    """The corpus as `<root>/<project>/<files>` (hard links), as its LocalRepository wants."""
    root = WORK / f"srs-{corpus.name}"
    marker = root / f".bench-{corpus.files}"
    if marker.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    for name in corpus_files(corpus):
        project, _ = _split(name)
        target = root / project / name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(corpus.packages / name, target)
    marker.touch()
    return root


def srs(corpus: Corpus, venvs: Path, port: int) -> Peer:
    bindir = srs_bin(venvs)
    cmd = [str(bindir / "simple-repository-server"), "--host", "127.0.0.1", "--port", str(port)]
    cmd.append(str(ensure_srs_tree(corpus)))
    return Peer("simple-repository-server", cmd, "/simple/{project}/", "/simple/")


def srs_file_path(project: str, filename: str) -> str:
    return f"/resources/{project}/{filename}"


def new_wheel(project: str, version: str) -> tuple[str, bytes]:
    return corpus_mod.wheel_filename(project, version), corpus_mod.build_wheel(project, version)
