"""Yanking (PEP 592) end to end: the HTTP API (`/-/yank`, `/-/unyank`) and the CLI
(`creamery yank/unyank`) against a running two-worker server, what the simple pages and JSON
APIs then say, and what pip and uv do with a yanked release.
"""

from __future__ import annotations

import html
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.clients import creamery, describe, pip_download, uv_install
from support.dists import make_sdist, make_wheel
from support.servers import Server, run_server
from support.wire import JSON_ACCEPT

from creamery.catalog.auth import add_user

USER, PASSWORD = "releaser", "yank-s3cret"
AUTH = (USER, PASSWORD)
FRESH = {"Connection": "close"}  # a new connection per request, so either worker may answer
HTTP = httpx.Client(timeout=30)  # one client: building one costs ~60 ms


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("yank")


@pytest.fixture(scope="module")
def root(base: Path) -> Path:
    root = base / "root"
    for project in ("yhttp", "ynoreason", "yfile", "yauth", "ycli", "ypip", "yfull"):
        make_wheel(root, project, "1.0")
        make_wheel(root, project, "2.0")
        make_sdist(root, project, "2.0")
    return root


@pytest.fixture(scope="module")
def srv(base: Path, root: Path) -> Iterator[Server]:
    htpasswd = base / "htpasswd"
    add_user(htpasswd, USER, PASSWORD, rounds=4)
    with run_server(
        [root], "--workers", "2", "-P", str(htpasswd), "-a", "update", "--disable-fallback"
    ) as server:
        yield server


def files_of(project: str, version: str) -> list[str]:
    return [f"{project}-{version}-py3-none-any.whl"] + (
        [f"{project}-{version}.tar.gz"] if version == "2.0" else []
    )


def yank_api(
    server: Server, action: str, payload: object, auth: tuple[str, str] | None = AUTH
) -> httpx.Response:
    return HTTP.post(f"{server.url}/-/{action}", json=payload, auth=auth)


def html_yanks(server: Server, project: str) -> dict[str, str | None]:
    """filename -> data-yanked value (None: not yanked), from the HTML page."""
    response = HTTP.get(f"{server.url}/simple/{project}/", headers=FRESH)
    assert response.status_code == 200
    found: dict[str, str | None] = {}
    for attributes, filename in re.findall(r"<a ([^>]*)>([^<]+)</a>", response.text):
        match = re.search(r'data-yanked="([^"]*)"', attributes)
        found[filename] = match.group(1) if match else None
    return found


def json_yanks(server: Server, project: str) -> dict[str, bool | str]:
    """filename -> PEP 691 "yanked" (False, True or the reason)."""
    response = HTTP.get(f"{server.url}/simple/{project}/", headers={**JSON_ACCEPT, **FRESH})
    assert response.status_code == 200
    return {f["filename"]: f["yanked"] for f in response.json()["files"]}


def assert_state(server: Server, project: str, yanked: dict[str, str | None]) -> None:
    """*yanked*: filename -> reason for yanked files; every other file must not be yanked."""
    for _ in range(3):  # fresh connections: both workers must agree
        html = html_yanks(server, project)
        assert set(yanked) <= set(html), (yanked, html)
        assert html == {name: yanked.get(name) for name in html}
        expected_json = {name: (yanked[name] or True) if name in yanked else False for name in html}
        assert json_yanks(server, project) == expected_json


def sidecars(root: Path) -> dict[str, str]:
    """filename -> reason, as the state directory holds it (nothing is written beside files)."""
    assert not list(root.glob("*.yanked"))
    state = root / ".creamery" / "files"
    return {p.parent.name: p.read_text() for p in state.glob("*/yanked")}


# ----------------------------------------------------------------------------- HTTP API


def listing_yanked(srv: Server, project: str) -> dict[str, str]:
    """filename -> `data-yanked` of the /packages/ listing's yanked links to *project*."""
    text = HTTP.get(f"{srv.url}/packages/", headers=FRESH).text
    found = re.findall(r'<a href="[^"]*" data-yanked="([^"]*)">([^<]*)</a>', text)
    return {name: html.unescape(reason) for reason, name in found if name.startswith(project)}


def test_http_yank_and_unyank_are_visible_at_once(srv: Server, root: Path) -> None:
    for _ in range(4):  # both workers have rendered the listing before the yank
        assert listing_yanked(srv, "yhttp") == {}
    response = yank_api(
        srv, "yank", {"project": "YHttp", "version": "2.0", "reason": "broken build"}
    )
    assert response.status_code == 200, response.text
    assert sorted(response.json()["files"]) == sorted(files_of("yhttp", "2.0"))
    # No waiting, on either worker.
    assert_state(srv, "yhttp", dict.fromkeys(files_of("yhttp", "2.0"), "broken build"))
    assert {k: v for k, v in sidecars(root).items() if k.startswith("yhttp")} == dict.fromkeys(
        files_of("yhttp", "2.0"), "broken build"
    )
    # The /packages/ listing (pip --find-links, pdm's find_links sources) says so too.
    expected = dict.fromkeys(files_of("yhttp", "2.0"), "broken build")
    for _ in range(4):
        assert listing_yanked(srv, "yhttp") == expected

    # The PyPI-style JSON API agrees: 2.0 is yanked, so the latest version is 1.0.
    project = HTTP.get(f"{srv.url}/pypi/yhttp/json", headers=FRESH).json()
    assert project["info"]["version"] == "1.0"
    assert all(f["yanked"] for f in project["releases"]["2.0"])
    assert {f["yanked_reason"] for f in project["releases"]["2.0"]} == {"broken build"}
    assert not any(f["yanked"] for f in project["releases"]["1.0"])
    release = HTTP.get(f"{srv.url}/pypi/yhttp/2.0/json", headers=FRESH).json()
    assert release["info"]["yanked"] is True
    assert release["info"]["yanked_reason"] == "broken build"

    response = yank_api(srv, "unyank", {"project": "yhttp", "version": "2.0"})
    assert response.status_code == 200, response.text
    assert_state(srv, "yhttp", {})
    assert not any(name.startswith("yhttp") for name in sidecars(root))
    assert listing_yanked(srv, "yhttp") == {}
    project = HTTP.get(f"{srv.url}/pypi/yhttp/json", headers=FRESH).json()
    assert project["info"]["version"] == "2.0"
    assert not any(f["yanked"] for f in project["releases"]["2.0"])


def test_yank_without_reason(srv: Server) -> None:
    response = yank_api(srv, "yank", {"project": "ynoreason", "version": "1.0"})
    assert response.status_code == 200, response.text
    # PEP 592: data-yanked present but empty; PEP 691: "yanked": true.
    assert_state(srv, "ynoreason", dict.fromkeys(files_of("ynoreason", "1.0"), ""))
    # Yanking again with a reason replaces the reason.
    response = yank_api(
        srv, "yank", {"project": "ynoreason", "version": "1.0.0", "reason": "late reason"}
    )
    assert response.status_code == 200, response.text
    assert_state(srv, "ynoreason", dict.fromkeys(files_of("ynoreason", "1.0"), "late reason"))


def test_yank_one_file_of_a_release(srv: Server) -> None:
    sdist = "yfile-2.0.tar.gz"
    response = yank_api(
        srv, "yank", {"project": "yfile", "version": "2.0", "filename": sdist, "reason": "bad"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["files"] == [sdist]
    assert_state(srv, "yfile", {sdist: "bad"})
    # A release is yanked only when all its files are (PEP 592 and PyPI's JSON).
    release = HTTP.get(f"{srv.url}/pypi/yfile/2.0/json", headers=FRESH).json()
    assert release["info"]["yanked"] is False
    response = yank_api(srv, "unyank", {"project": "yfile", "version": "2.0", "filename": sdist})
    assert response.status_code == 200, response.text
    assert_state(srv, "yfile", {})


def test_yank_needs_the_update_action(srv: Server, root: Path) -> None:
    before = sidecars(root)
    payload = {"project": "yauth", "version": "1.0"}
    anonymous = yank_api(srv, "yank", payload, auth=None)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == 'Basic realm="pypi"'
    assert yank_api(srv, "yank", payload, auth=(USER, "wrong")).status_code == 403
    assert yank_api(srv, "unyank", payload, auth=None).status_code == 401
    assert sidecars(root) == before
    assert_state(srv, "yauth", {})


@pytest.mark.parametrize(
    ("payload", "status", "fragment"),
    [
        ({"project": "nosuchproject", "version": "1.0"}, 404, "not found"),
        ({"project": "yauth", "version": "9.9"}, 404, "not found"),
        ({"project": "yauth", "version": "1.0", "filename": "nope.whl"}, 404, "not found"),
        ({"project": "yauth"}, 400, "version"),
        ({"version": "1.0"}, 400, "project"),
        ({"project": "yauth", "version": "1.0", "reason": 42}, 400, "reason"),
        (["yauth", "1.0"], 400, "JSON object"),
    ],
    ids=["project", "version", "filename", "no-version", "no-project", "bad-reason", "list"],
)
def test_yank_errors(srv: Server, root: Path, payload, status: int, fragment: str) -> None:
    before = sidecars(root)
    response = yank_api(srv, "yank", payload)
    assert response.status_code == status, response.text
    message = response.json()["message"]
    assert fragment in message and "\n" not in message
    assert sidecars(root) == before


@pytest.mark.parametrize("blocked", files_of("yfull", "2.0"))
def test_a_yank_the_state_directory_refuses_is_507_and_changes_nothing(
    srv: Server, root: Path, blocked: str
) -> None:
    """A full or read-only state directory: 507 (the server's fault, not 500), and no file of
    the release is left yanked, whichever file's marker could not be written."""
    blocker = root / ".creamery" / "files" / blocked  # a file where its directory must go
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_bytes(b"")
    try:
        response = yank_api(srv, "yank", {"project": "yfull", "version": "2.0", "reason": "x"})
        assert response.status_code == 507, response.text
        assert "yank failed" in response.json()["message"]
        assert not any(name.startswith("yfull") for name in sidecars(root))
        assert_state(srv, "yfull", {})
    finally:
        blocker.unlink()
    assert yank_api(srv, "yank", {"project": "yfull", "version": "2.0"}).status_code == 200
    assert yank_api(srv, "unyank", {"project": "yfull", "version": "2.0"}).status_code == 200
    assert "Traceback" not in srv.log()


def test_yank_body_must_be_json(srv: Server) -> None:
    response = HTTP.post(
        f"{srv.url}/-/yank",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
        auth=AUTH,
    )
    assert response.status_code == 400
    assert "JSON" in response.json()["message"]
    assert HTTP.get(f"{srv.url}/-/yank").status_code == 405


# ----------------------------------------------------------------------------- CLI


def test_cli_yank_and_unyank(srv: Server, root: Path) -> None:
    wanted = dict.fromkeys(files_of("ycli", "2.0"), "security hole")
    result = creamery("yank", "YCli", "2.0", "--reason", "security hole", str(root))
    assert result.returncode == 0, result.stderr
    assert all(name in result.stdout for name in wanted), result.stdout
    assert {k: v for k, v in sidecars(root).items() if k.startswith("ycli")} == wanted
    # No file-system event tells of it (the state directory is hidden): the catalog's change
    # log does, before both workers' next answer.
    assert_state(srv, "ycli", wanted)

    result = creamery("unyank", "ycli", "2.0", str(root))
    assert result.returncode == 0, result.stderr
    assert not any(name.startswith("ycli") for name in sidecars(root))
    assert_state(srv, "ycli", {})

    result = creamery("yank", "ycli", "1.0", "--file", "ycli-1.0-py3-none-any.whl", str(root))
    assert result.returncode == 0, result.stderr
    assert_state(srv, "ycli", {"ycli-1.0-py3-none-any.whl": ""})
    assert creamery("unyank", "ycli", "1.0", str(root)).returncode == 0
    assert_state(srv, "ycli", {})

    result = creamery("yank", "ycli", "9.9", "--reason", "x", str(root))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "not found" in result.stderr, result.stderr


def test_cli_remove_is_seen_at_once_without_file_system_events(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for version in ("1.0", "2.0"):
        make_wheel(root, "yremove", version)
    make_wheel(root, "ywhole", "1.0")
    quiet = ("--disable-watch", "--rescan-interval", "0", "--disable-fallback")
    with run_server([root], "--workers", "2", *quiet) as server:
        assert len(json_yanks(server, "yremove")) == 2

        result = creamery("remove", "yremove", "1.0", str(root))
        assert result.returncode == 0, result.stderr
        assert "removed yremove-1.0-py3-none-any.whl" in result.stdout
        for _ in range(3):  # fresh connections: both workers
            assert list(json_yanks(server, "yremove")) == ["yremove-2.0-py3-none-any.whl"]
            gone = HTTP.get(f"{server.url}/packages/yremove-1.0-py3-none-any.whl", headers=FRESH)
            assert gone.status_code == 404

        result = creamery("remove", "ywhole", str(root))
        assert result.returncode == 0, result.stderr
        for _ in range(3):
            response = HTTP.get(f"{server.url}/simple/ywhole/", headers=FRESH)
            assert response.status_code == 404


# ----------------------------------------------------------------------------- installers


def pip_downloaded(server: Server, dest: Path, requirement: str) -> subprocess.CompletedProcess:
    """`pip download` that must succeed."""
    result = pip_download(server.url, dest, dest.parent / "home", requirement)
    assert result.returncode == 0, describe(result)
    return result


def downloaded(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir())


def uv_installed(server: Server, target: Path, requirement: str) -> str:
    """`uv pip install` that must succeed; the installed `ypip/__init__.py`."""
    result = uv_install(server.url, target, target.parent / "uv-home", requirement)
    assert result.returncode == 0, describe(result)
    return (target / "ypip" / "__init__.py").read_text()


def test_installers_skip_a_yanked_release_unless_pinned(srv: Server, tmp_path: Path) -> None:
    response = yank_api(srv, "yank", {"project": "ypip", "version": "2.0", "reason": "do not use"})
    assert response.status_code == 200, response.text

    pip_downloaded(srv, tmp_path / "latest", "ypip")
    assert downloaded(tmp_path / "latest") == ["ypip-1.0-py3-none-any.whl"]

    pinned = pip_downloaded(srv, tmp_path / "pinned", "ypip==2.0")
    assert downloaded(tmp_path / "pinned") == ["ypip-2.0-py3-none-any.whl"]
    output = pinned.stdout + pinned.stderr
    assert "yanked" in output and "do not use" in output, output

    assert uv_installed(srv, tmp_path / "uv-latest", "ypip") == '__version__ = "1.0"\n'
    assert uv_installed(srv, tmp_path / "uv-pinned", "ypip==2.0") == '__version__ = "2.0"\n'

    response = yank_api(srv, "unyank", {"project": "ypip", "version": "2.0"})
    assert response.status_code == 200, response.text
    pip_downloaded(srv, tmp_path / "after", "ypip")
    assert downloaded(tmp_path / "after") == ["ypip-2.0-py3-none-any.whl"]
