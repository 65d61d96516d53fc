"""pdm against `creamery run` processes: resolving, locking and installing hosted packages
through an index behind HTTP Basic auth (and through the caching mirror), and `pdm publish`
with a password or a token.

pdm reads the index differently from pip and uv: it locks for the project's whole
`requires-python` range and for every platform (so the lock names every file of a release),
takes dependencies from PEP 658 metadata (or, with `pypi.json_api`, from the JSON API's
`/pypi/<p>/<v>/json`), and resolves the JSON simple API's relative file URLs itself. pdm only
ever sees these servers: the projects name their source `pypi`, which replaces PyPI.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.access_state import audit_entries, create_token, root_of
from support.clients import PDM, clean_env, describe, pdm, run_client
from support.dists import make_sdist, make_wheel, sign, yank
from support.polling import wait_for
from support.servers import Server, run_server
from support.wire import listed

from creamery.catalog.auth import add_user
from creamery.catalog.tokens import TOKEN_USER
from creamery.core.names import parse_filename

pytestmark = pytest.mark.skipif(PDM is None, reason="pdm is not installed (the test extra has it)")

USER, PASSWORD = "alice", "alice-Pa55word"
WRONG_PASSWORD = "not-alice-s-password"
PAPP_PLIB_PYREQ = ("papp-1.0", "plib-2.0", "pyreq-1.0")  # what pdm locks for papp and pyreq
ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3})')


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pdm")


@pytest.fixture(scope="module")
def htpasswd(base: Path) -> Path:
    path = base / "htpasswd"
    add_user(path, USER, PASSWORD, rounds=4)
    return path


@pytest.fixture(scope="module")
def index(base: Path, htpasswd: Path) -> Iterator[Server]:
    """Reading needs credentials; -v logs every request (what pdm fetched, and how it went)."""
    root = base / "index"
    make_wheel(root, "plib", "1.0")
    make_sdist(root, "plib", "1.0")
    make_wheel(root, "plib", "2.0")
    make_sdist(root, "plib", "2.0")
    make_wheel(root, "plib", "2.0", tag="py3-none-win_amd64")  # never installable here
    yank(make_wheel(root, "plib", "3.0"), "broken build")
    make_wheel(root, "papp", "1.0", requires_dist=["plib>=1.0"])
    make_wheel(root, "pyreq", "1.0", requires_python=">=3.8")
    make_wheel(root, "pyreq", "2.0", requires_python=">=3.10")  # not for all of >=3.9
    make_sdist(root, "sonly", "1.0", requires_dist=["plib<2"])  # no wheel: pdm builds it
    args = ("-v", "-P", str(htpasswd), "-a", "update,list,download", "--disable-fallback")
    with run_server([root], *args) as server:
        yield server


@pytest.fixture(scope="module")
def uploads(base: Path, htpasswd: Path) -> Iterator[Server]:
    """pypiserver's usual setup: uploads need credentials, reading is open."""
    root = base / "uploads"
    root.mkdir()
    with run_server([root], "-P", str(htpasswd), "-a", "update", "--disable-fallback") as server:
        yield server


def consumer(
    directory: Path, source_url: str, *dependencies: str, source_type: str = "index"
) -> Path:
    """A project that depends on *dependencies* and reads only *source_url* (named `pypi`, it
    replaces PyPI); it is not a package itself, so pdm needs no build backend for it."""
    directory.mkdir(parents=True)
    deps = ", ".join(f'"{d}"' for d in dependencies)
    (directory / "pyproject.toml").write_text(
        f'[project]\nname = "consumer"\nversion = "0.1"\nrequires-python = ">=3.9"\n'
        f"dependencies = [{deps}]\n\n"
        "[tool.pdm]\ndistribution = false\n\n"
        f'[[tool.pdm.source]]\nname = "pypi"\nurl = "{source_url}"\ntype = "{source_type}"\n'
    )
    return directory


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, describe(result)
    return result


def lock_packages(project: Path) -> dict[str, dict[str, Any]]:
    """name -> the lock file's entry for it."""
    with open(project / "pdm.lock", "rb") as lock:
        return {p["name"]: p for p in tomllib.load(lock)["package"]}


def served_files(server: Server, project: str, version: str) -> dict[str, str]:
    """filename -> sha256 of the files the index lists for one release."""
    files = listed(server, project, auth=(USER, PASSWORD))
    return {
        name: entry["hashes"]["sha256"]
        for name, entry in files.items()
        if (parsed := parse_filename(name)) is not None and parsed.version == version
    }


def locked_files(entry: dict[str, Any]) -> dict[str, str]:
    """filename -> sha256 of a lock entry's files (`file = name` or, static, `url = ...`)."""
    out = {}
    for file in entry["files"]:
        name = file.get("file") or file["url"].rpartition("/")[2]
        algorithm, _, digest = file["hash"].partition(":")
        assert algorithm == "sha256", file
        out[name] = digest
    return out


def requests_since(server: Server, mark: int) -> list[tuple[str, str, int]]:
    """(method, path, status) of each request the server logged after *mark* characters."""
    return [
        (m["method"], m["path"], int(m["status"]))
        for m in ACCESS_LINE.finditer(server.log()[mark:])
    ]


def logged(server: Server, mark: int, *wanted: tuple[str, int]) -> list[tuple[str, str, int]]:
    """`requests_since`, which must include the (path, status) pairs *wanted*: waited for, as a
    request's line is logged as its response ends, so a client may exit before it is written."""

    def missing() -> set[tuple[str, int]]:
        return set(wanted) - {(p, s) for _m, p, s in requests_since(server, mark)}

    wait_for(lambda: not missing())
    assert not missing(), f"not logged: {missing()}\n{server.log()[mark:]}"
    return requests_since(server, mark)


def venv_versions(project: Path, *modules: str) -> list[str]:
    code = "; ".join(f"import {m}; print({m}.__version__)" for m in modules)
    result = run_client([str(project / ".venv" / "bin" / "python"), "-c", code], clean_env())
    return ok(result).stdout.split()


# ----------------------------------------------------------------------------- reading


def test_pdm_add_with_credentials_from_its_config(index: Server, tmp_path: Path) -> None:
    """`pdm config pypi.username/password` signs pdm in to the source that replaces PyPI;
    `pdm add` resolves a hosted dependency, locks what creamery serves, installs it."""
    home = tmp_path / "home"
    project = consumer(tmp_path / "project", f"{index.url}/simple/")
    ok(pdm(home, "config", "pypi.username", USER))
    ok(pdm(home, "config", "pypi.password", PASSWORD))
    ok(pdm(home, "add", "-p", project, "papp"))
    assert '"papp>=1.0"' in (project / "pyproject.toml").read_text()
    packages = lock_packages(project)
    # plib 3.0 is yanked: the newest release pdm may choose is 2.0.
    assert {name: p["version"] for name, p in packages.items()} == {"papp": "1.0", "plib": "2.0"}
    assert packages["papp"]["dependencies"] == ["plib>=1.0"]
    # Every file of the release, for every platform, with the hash creamery serves.
    for name, entry in packages.items():
        expected = served_files(index, name, entry["version"])
        assert locked_files(entry) == expected
        assert len(expected) == (3 if name == "plib" else 1)
    for name, digest in locked_files(packages["plib"]).items():
        assert hashlib.sha256((root_of(index) / name).read_bytes()).hexdigest() == digest
    assert venv_versions(project, "papp", "plib") == ["1.0", "2.0"]
    for path in (project / "pyproject.toml", project / "pdm.lock"):
        assert PASSWORD not in path.read_text()


def test_pdm_lock_takes_metadata_only_then_sync_downloads(index: Server, tmp_path: Path) -> None:
    """Credentials in the source URL from the environment (`${VAR}`, nothing secret in
    pyproject.toml); `--static-urls` records each file's URL, resolved from the JSON page's
    relative ones. Locking reads PEP 658 metadata, never a wheel; sync downloads and checks."""
    home = tmp_path / "home"
    source = index.url.replace("http://", "http://${CREAMERY_USER}:${CREAMERY_PASSWORD}@")
    project = consumer(tmp_path / "project", f"{source}/simple/", "papp", "pyreq")
    secrets = {"CREAMERY_USER": USER, "CREAMERY_PASSWORD": PASSWORD}
    mark = len(index.log())
    result = ok(pdm(home, "lock", "-p", project, "--static-urls", **secrets))
    metadata = [(f"/packages/{n}-py3-none-any.whl.metadata", 200) for n in PAPP_PLIB_PYREQ]
    fetched = logged(index, mark, *metadata)
    packages = lock_packages(project)
    versions = {name: p["version"] for name, p in packages.items()}
    # pyreq 2.0 needs Python >= 3.10, the project supports 3.9: pdm takes 1.0 (pip on this
    # Python would take 2.0), reading requires-python from the index's listing.
    assert versions == {"papp": "1.0", "plib": "2.0", "pyreq": "1.0"}
    assert packages["pyreq"]["requires_python"] == ">=3.8"
    assert "Skipping pyreq@2.0" in result.stderr, describe(result)
    for name, entry in packages.items():
        served = served_files(index, name, entry["version"])
        assert {f["url"] for f in entry["files"]} == {
            f"{index.url}/packages/{filename}" for filename in served
        }
        assert locked_files(entry) == served
    assert PASSWORD not in (project / "pdm.lock").read_text()
    # PEP 658: the metadata files only (pdm checks them against their hashes), never a wheel.
    assert all(status == 200 for _method, _path, status in fetched), fetched
    paths = {path for _method, path, _status in fetched}
    assert not [p for p in paths if p.endswith((".whl", ".tar.gz"))], paths
    assert "Metadata hash mismatch" not in result.stderr

    mark = len(index.log())
    ok(pdm(home, "sync", "-p", project, **secrets))
    assert venv_versions(project, "papp", "plib", "pyreq") == ["1.0", "2.0", "1.0"]
    logged(index, mark, *[(f"/packages/{n}-py3-none-any.whl", 200) for n in PAPP_PLIB_PYREQ])


def test_pdm_json_api_and_a_hosted_sdist_with_a_read_token(index: Server, tmp_path: Path) -> None:
    """`pypi.json_api`: pdm takes dependencies from `/pypi/<p>/<v>/json` (so an sdist-only
    release needs no build to lock); installing builds that sdist (its backend is in the
    sdist: no network). A read token signs in, from pdm's environment variables."""
    _token, secret = create_token(index, USER, actions=["download", "list"])
    home = tmp_path / "home"
    project = consumer(tmp_path / "project", f"{index.url}/simple/", "sonly")
    env = {"PDM_PYPI_USERNAME": TOKEN_USER, "PDM_PYPI_PASSWORD": secret}
    mark = len(index.log())
    ok(pdm(home, "lock", "-p", project, PDM_PYPI_JSON_API="true", **env))
    wanted = [("/pypi/sonly/1.0/json", 200), ("/pypi/plib/1.0/json", 200)]
    paths = {path for _m, path, _status in logged(index, mark, *wanted)}
    assert "/packages/sonly-1.0.tar.gz" not in paths  # nothing built to lock
    packages = lock_packages(project)
    assert {name: p["version"] for name, p in packages.items()} == {"sonly": "1.0", "plib": "1.0"}
    assert packages["sonly"]["dependencies"] == ["plib<2"]
    assert locked_files(packages["sonly"]) == served_files(index, "sonly", "1.0")
    ok(pdm(home, "sync", "-p", project, **env))
    assert venv_versions(project, "sonly", "plib") == ["1.0", "1.0"]


def test_pdm_find_links_source_skips_yanked_files(index: Server, tmp_path: Path) -> None:
    """A `find_links` source on the /packages/ listing: the listing marks yanked files as the
    simple pages do, so pdm takes plib 2.0, not the yanked 3.0."""
    project = consumer(
        tmp_path / "project", f"{index.url}/packages/", "plib", source_type="find_links"
    )
    env = {"PDM_PYPI_USERNAME": USER, "PDM_PYPI_PASSWORD": PASSWORD}
    ok(pdm(tmp_path / "home", "lock", "-p", project, **env))
    packages = lock_packages(project)
    assert packages["plib"]["version"] == "2.0"
    assert locked_files(packages["plib"]) == served_files(index, "plib", "2.0")


def test_pdm_through_the_caching_mirror(tmp_path: Path) -> None:
    """`--mirror` in front of another index: pdm locks what upstream has (its yank and its
    requires-python passed on, its hashes kept) at the mirror's own URLs, and installs."""
    root, local = tmp_path / "upstream", tmp_path / "local"
    local.mkdir()
    make_wheel(root, "papp", "1.0", requires_dist=["plib>=1.0"])
    make_wheel(root, "plib", "2.0")
    yank(make_wheel(root, "plib", "3.0"), "broken build")
    make_wheel(root, "pyreq", "1.0", requires_python=">=3.8")
    make_wheel(root, "pyreq", "2.0", requires_python=">=3.10")
    mirror_args = ("--mirror", "--mirror-cache", str(tmp_path / "cache"))
    with (
        run_server([root], "--disable-fallback") as upstream,
        run_server([local], *mirror_args, "--fallback-url", f"{upstream.url}/simple/") as mirror,
    ):
        project = consumer(tmp_path / "project", f"{mirror.url}/simple/", "papp", "pyreq")
        home = tmp_path / "home"
        ok(pdm(home, "lock", "-p", project, "--static-urls"))
        ok(pdm(home, "sync", "-p", project))
    packages = lock_packages(project)
    versions = {name: p["version"] for name, p in packages.items()}
    assert versions == {"papp": "1.0", "plib": "2.0", "pyreq": "1.0"}
    for name, entry in packages.items():
        (file,) = entry["files"]
        filename = f"{name}-{entry['version']}-py3-none-any.whl"
        assert file["url"] == f"{mirror.url}/upstream/{name}/{filename}"
        digest = hashlib.sha256((root / filename).read_bytes()).hexdigest()
        assert file["hash"] == f"sha256:{digest}"
    assert venv_versions(project, "papp", "plib", "pyreq") == ["1.0", "2.0", "1.0"]


def test_pdm_with_a_wrong_password_is_refused(index: Server, tmp_path: Path) -> None:
    project = consumer(tmp_path / "project", f"{index.url}/simple/", "papp")
    env = {"PDM_PYPI_USERNAME": USER, "PDM_PYPI_PASSWORD": WRONG_PASSWORD}
    mark = len(index.log())
    result = pdm(tmp_path / "home", "lock", "-v", "-p", project, **env)
    assert result.returncode != 0, describe(result)
    assert "403" in result.stderr, describe(result)  # pdm -v names the server's answer
    assert not (project / "pdm.lock").exists()
    logged(index, mark, ("/simple/papp/", 403))


# ----------------------------------------------------------------------------- publishing


def release(project: Path, name: str, version: str, dest: str = "dist") -> list[Path]:
    """A project directory with a built wheel and sdist of *name* in *dest*: `pdm publish
    --no-build` uploads what is there (built by the suite's offline builders)."""
    project.mkdir(parents=True, exist_ok=True)
    pyproject = project / "pyproject.toml"
    if not pyproject.exists():
        pyproject.write_text(f'[project]\nname = "{name}"\nversion = "{version}"\n')
    built = project / dest
    options: dict[str, Any] = {"requires_python": ">=3.9", "summary": f"{name} by pdm"}
    wheel = make_wheel(built, name, version, **options)
    return [wheel, make_sdist(built, name, version, **options)]


def assert_published(server: Server, path: Path) -> None:
    project = path.name.split("-")[0].replace("_", "-")
    files = listed(server, project)
    assert path.name in files, files
    assert files[path.name]["hashes"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (root_of(server) / path.name).read_bytes() == path.read_bytes()


def assert_not_published(server: Server, path: Path) -> None:
    project = path.name.split("-")[0].replace("_", "-")
    assert path.name not in listed(server, project)
    assert not (root_of(server) / path.name).exists()


def publish(
    project: Path, home: Path, *args: object, **env: str
) -> subprocess.CompletedProcess[str]:
    """`pdm publish --no-build`: what is in the project's dist/ (or --dest)."""
    return pdm(home, "publish", "-p", project, "--no-build", *args, **env)


def test_pdm_publish_with_username_and_password(uploads: Server, tmp_path: Path) -> None:
    project, home = tmp_path / "project", tmp_path / "home"
    files = release(project, "pdm-pass", "1.0")
    target = ("--repository", uploads.url + "/", "--username", USER, "--password", PASSWORD)
    ok(publish(project, home, *target))
    for path in files:
        assert_published(uploads, path)
    # Again: creamery answers 409, as pypiserver does, which pdm knows means "already there".
    again = publish(project, home, *target)
    assert again.returncode != 0 and "409 Conflict" in again.stderr, describe(again)
    skipped = ok(publish(project, home, *target, "--skip-existing"))
    for path in files:
        assert f"Skipping {path.name} because it appears to already exist" in skipped.stderr
        assert_published(uploads, path)


def test_pdm_publish_with_a_wrong_password_is_refused(uploads: Server, tmp_path: Path) -> None:
    project = tmp_path / "project"
    files = release(project, "pdm-wrong", "1.0")
    target = ("--repository", uploads.url + "/", "--username", USER, "--password", WRONG_PASSWORD)
    result = publish(project, tmp_path / "home", "-vv", *target)
    assert result.returncode != 0, describe(result)
    output = result.stdout + result.stderr
    assert "Client error '403 Forbidden'" in output, describe(result)  # what pdm always says
    assert f"Forbidden: wrong password for '{USER}', or no such user" in output  # -vv: the body
    for path in files:
        assert_not_published(uploads, path)


def test_pdm_publish_with_a_token_from_its_config(uploads: Server, tmp_path: Path) -> None:
    """A repository in pdm's configuration with the token as its password alone: pdm then
    sends the user name `__token__`, as for PyPI."""
    token, secret = create_token(uploads, USER, projects=["pdm-token"])
    project, home = tmp_path / "project", tmp_path / "home"
    files = release(project, "pdm-token", "1.0")
    ok(pdm(home, "config", "repository.creamery.url", uploads.url + "/"))
    ok(pdm(home, "config", "repository.creamery.password", secret))
    ok(publish(project, home, "--repository", "creamery"))
    for path in files:
        assert_published(uploads, path)
    entries = [e for e in audit_entries(root_of(uploads)) if e.filename in {f.name for f in files}]
    assert [(e.action, e.user, e.token) for e in entries] == [("upload", USER, token.id)] * 2
    assert secret not in uploads.log()
    # Outside the token's scope: 403, and pdm -vv shows the server's reason.
    other = release(project, "pdm-elsewhere", "1.0", dest="other")
    refused = publish(project, home, "-vv", "--repository", "creamery", "--dest", "other")
    assert refused.returncode != 0, describe(refused)
    assert "403 Forbidden" in refused.stderr, describe(refused)
    assert f"token {token.id} is not scoped to project 'pdm-elsewhere'" in refused.stderr
    for path in other:
        assert_not_published(uploads, path)


def test_pdm_publish_sends_the_signature_beside_a_file(uploads: Server, tmp_path: Path) -> None:
    """`pdm publish` uploads `x.whl.asc` from the dist directory with x.whl (what `pdm publish
    --sign` makes), as two form fields, its name and its text; creamery stores it as twine's."""
    project = tmp_path / "project"
    wheel, sdist = release(project, "pdm-signed", "1.0")
    signature = sign(wheel)
    target = ("--repository", uploads.url + "/", "--username", USER, "--password", PASSWORD)
    ok(publish(project, tmp_path / "home", *target))
    assert (root_of(uploads) / signature.name).read_bytes() == signature.read_bytes()
    files = listed(uploads, "pdm-signed")
    assert (files[wheel.name]["gpg-sig"], files[sdist.name]["gpg-sig"]) == (True, False)
