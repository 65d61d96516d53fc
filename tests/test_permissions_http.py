"""Read permissions over HTTP (`--permissions`): a hidden project is absent from every API and
answers exactly like a project that does not exist, so its existence does not leak; roles
decide writes; the file is reloaded live and a broken one is refused.

The permission file gives anonymous readers `*` except `secret-*`, which only group staff
(alice) may read. Servers are real processes; pip and uv run as users run them.
"""

from __future__ import annotations

import json
import re
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.clients import creamery, describe, pip_download, uv_install
from support.dists import make_wheel, sign
from support.forms import post_form, upload
from support.htpasswd import write_sha1_htpasswd
from support.polling import wait_for
from support.servers import Server, run_server
from support.upstream import UpstreamProcess

from creamery.catalog.service import Catalog
from creamery.cli.main import build_run_config

JSON = "application/vnd.pypi.simple.v1+json"
PASSWORDS = {"alice": "alice-pw", "carol": "carol-pw", "upl": "upl-pw", "maint": "maint-pw"}
ALICE = ("alice", PASSWORDS["alice"])  # staff: reads secret-*
CAROL = ("carol", PASSWORDS["carol"])  # signed in, but no rule names her: a reader like anyone
UPL = ("upl", PASSWORDS["upl"])
MAINT = ("maint", PASSWORDS["maint"])
PERMISSIONS = """\
[groups]
staff = ["alice"]

[[rules]]
user = "anonymous"
role = "reader"
projects = ["*"]

[[rules]]
group = "staff"
role = "reader"
projects = ["secret-*"]

[[rules]]
user = "upl"
role = "uploader"
projects = ["*"]

[[rules]]
user = "maint"
role = "maintainer"
projects = ["*"]
"""
# A hidden project, and an unknown one whose name is as long (so Content-Length is the same).
HIDDEN, UNKNOWN = "secret-thing", "secret-other"
HIDDEN_WHEEL = "secret_thing-1.0-py3-none-any.whl"
UNKNOWN_WHEEL = "secret_other-1.0-py3-none-any.whl"
# Headers that may differ between two answers that say the same thing.
VOLATILE = {"date", "x-creamery-serial"}


def make_index(base: Path) -> tuple[Path, Path, Path]:
    """(root, htpasswd, permission file): public-app, public-lib and the hidden secret-thing,
    each wheel signed; secret-thing has a PEP 740 provenance too."""
    root = base / "packages"
    for name in ("public-app", "public-lib", HIDDEN):
        sign(make_wheel(root, name, "1.0", summary=f"{name} does things"))
    provenance = b'{"version": 1, "attestation_bundles": []}'
    (root / (HIDDEN_WHEEL + ".provenance")).write_bytes(provenance)  # taken into the state
    (root / ("public_app-1.0-py3-none-any.whl.provenance")).write_bytes(provenance)
    users = "".join(f"{u}:{_sha(p)}\n" for u, p in PASSWORDS.items() if u != "alice")
    htpasswd = write_sha1_htpasswd(base / "htpasswd", "alice", PASSWORDS["alice"], users)
    permissions = base / "perms.toml"
    permissions.write_text(PERMISSIONS)
    return root, htpasswd, permissions


def _sha(password: str) -> str:
    from support.htpasswd import sha1_hash

    return sha1_hash(password)


def answer(response: httpx.Response, *names: str) -> tuple[object, ...]:
    """What a client can tell of a response, with *names* (the project asked for, also as
    filenames spell it) replaced, so a hidden and an unknown project's answers compare."""
    placeholder = "NAME"
    spellings = [spelling for name in names for spelling in (name, name.replace("-", "_"))]

    def blind(text: str) -> str:
        for spelling in spellings:
            text = text.replace(spelling, placeholder)
        return text

    headers = sorted(
        (key, blind(value)) for key, value in response.headers.items() if key not in VOLATILE
    )
    return response.status_code, headers, blind(response.content.decode("latin-1"))


def same_as_unknown(http: httpx.Client, path: str, **kwargs: object) -> httpx.Response:
    """GET *path* (naming the hidden project) and the same path naming the unknown one: the
    answers must be byte for byte the same (but for the name itself)."""
    hidden = http.get(path, **kwargs)  # type: ignore[arg-type]
    unknown_path = path.replace(HIDDEN, UNKNOWN).replace(HIDDEN.replace("-", "_"), "secret_other")
    unknown = http.get(unknown_path, **kwargs)  # type: ignore[arg-type]
    assert answer(hidden, HIDDEN) == answer(unknown, UNKNOWN), (path, hidden.text, unknown.text)
    return hidden


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_index(tmp_path_factory.mktemp("perms"))


@pytest.fixture(scope="module")
def guarded(index: tuple[Path, Path, Path]) -> Iterator[Server]:
    """Default fallback (a redirect to pypi.org for unknown projects), metrics on."""
    root, htpasswd, permissions = index
    args = ("-P", str(htpasswd), "--permissions", str(permissions), "--metrics")
    with run_server([root], *args) as server:
        yield server


@pytest.fixture(scope="module")
def no_fallback(index: tuple[Path, Path, Path]) -> Iterator[Server]:
    root, htpasswd, permissions = index
    args = ("-P", str(htpasswd), "--permissions", str(permissions), "--disable-fallback")
    with run_server([root], *args) as server:
        yield server


@pytest.fixture(params=["fallback", "disable-fallback"])
def either(request: pytest.FixtureRequest) -> Server:
    """Each server: unknown projects redirect to the fallback, or answer 404."""
    name = "guarded" if request.param == "fallback" else "no_fallback"
    server: Server = request.getfixturevalue(name)
    return server


# ---------------------------------------------------------------- the simple API


def test_root_page_hides_what_a_principal_may_not_list(either: Server) -> None:
    with either.client() as http:
        html = http.get("/simple/")
        staff = http.get("/simple/", auth=ALICE)
        carol = http.get("/simple/", auth=CAROL)
        pep691 = http.get("/simple/", headers={"accept": JSON})
        staff691 = http.get("/simple/", headers={"accept": JSON}, auth=ALICE)
        devpi = http.get("/+simple/")
    assert html.status_code == staff.status_code == 200
    assert "public-app" in html.text and HIDDEN not in html.text
    assert HIDDEN in staff.text
    assert carol.content == html.content  # the same view: the same page
    assert [p["name"] for p in pep691.json()["projects"]] == ["public-app", "public-lib"]
    assert HIDDEN in [p["name"] for p in staff691.json()["projects"]]
    assert html.headers["etag"] != staff.headers["etag"]
    assert devpi.status_code == 200 and HIDDEN not in devpi.text


def test_project_page_of_a_hidden_project_is_an_unknown_projects(either: Server) -> None:
    with either.client() as http:
        for path in (f"/simple/{HIDDEN}/", f"/+simple/{HIDDEN}/", f"/legacy/+simple/{HIDDEN}/"):
            hidden = same_as_unknown(http, path)
            assert hidden.status_code in (303, 404)
            same_as_unknown(http, path, headers={"accept": JSON})
            same_as_unknown(http, path, auth=CAROL)
        # The spelling redirect says nothing either (it happens before any lookup).
        hidden = http.get("/simple/Secret_Thing/")
        unknown = http.get("/simple/Secret_Other/")
        assert hidden.status_code == 301
        assert answer(hidden, "Secret_Thing", HIDDEN) == answer(unknown, "Secret_Other", UNKNOWN)
        staff = http.get(f"/simple/{HIDDEN}/", auth=ALICE)
    assert staff.status_code == 200 and HIDDEN_WHEEL in staff.text


def test_files_of_a_hidden_project_are_files_that_do_not_exist(either: Server) -> None:
    with either.client() as http:
        for suffix in ("", ".metadata", ".asc", ".provenance"):
            hidden = same_as_unknown(http, f"/packages/{HIDDEN_WHEEL}{suffix}")
            assert hidden.status_code == 404
            same_as_unknown(http, f"/packages/{HIDDEN_WHEEL}{suffix}", auth=CAROL)
            head = http.head(f"/packages/{HIDDEN_WHEEL}{suffix}")
            unknown_head = http.head(f"/packages/{UNKNOWN_WHEEL}{suffix}")
            assert answer(head, HIDDEN) == answer(unknown_head, UNKNOWN)
            staff = http.get(f"/packages/{HIDDEN_WHEEL}{suffix}", auth=ALICE)
            assert staff.status_code == 200, (suffix, staff.text)
        visible = http.get("/packages/public_app-1.0-py3-none-any.whl.provenance")
    assert visible.status_code == 200


def test_provenance_of_a_hidden_project_is_provenance_that_does_not_exist(
    either: Server,
) -> None:
    """PEP 740's Integrity API route, as the files it describes."""
    path = f"/integrity/{HIDDEN}/1.0/{HIDDEN_WHEEL}/provenance"
    with either.client() as http:
        assert same_as_unknown(http, path).status_code == 404
        same_as_unknown(http, path, auth=CAROL)
        staff = http.get(path, auth=ALICE)
        assert staff.status_code == 200, staff.text
        visible = http.get("/integrity/public-app/1.0/public_app-1.0-py3-none-any.whl/provenance")
    assert visible.status_code == 200


# ---------------------------------------------------------------- the other APIs


def test_json_api_of_a_hidden_project_is_an_unknown_projects(either: Server) -> None:
    with either.client() as http:
        for path in (f"/pypi/{HIDDEN}/json", f"/pypi/{HIDDEN}/1.0/json", f"/{HIDDEN}/json"):
            hidden = same_as_unknown(http, path)
            assert hidden.status_code == 404
            assert http.get(path, auth=ALICE).status_code == 200
        assert http.get("/pypi/public-app/json").status_code == 200


def test_xmlrpc_hides_hidden_projects(guarded: Server) -> None:
    anonymous = xmlrpc.client.ServerProxy(f"{guarded.url}/RPC2")
    staff = xmlrpc.client.ServerProxy(guarded.url.replace("//", "//alice:alice-pw@") + "/RPC2")
    assert anonymous.list_packages() == ["public-app", "public-lib"]
    assert HIDDEN in staff.list_packages()  # type: ignore[operator]
    found = anonymous.search({"summary": "does things"})
    assert [hit["name"] for hit in found] == ["public-app", "public-lib"]  # type: ignore[union-attr, attr-defined, index]
    assert anonymous.search({"name": "secret"}) == []
    assert anonymous.search("secret") == []  # pypiserver's plain-string form
    assert [hit["name"] for hit in staff.search({"name": "secret"})] == [HIDDEN]  # type: ignore[union-attr, attr-defined, index]
    assert anonymous.package_releases(HIDDEN) == anonymous.package_releases(UNKNOWN) == []
    assert staff.package_releases(HIDDEN) == ["1.0"]
    # pip search posts to the index URL: the same answers there.
    on_simple = xmlrpc.client.ServerProxy(f"{guarded.url}/simple/")
    assert on_simple.search({"name": "secret"}) == []


def test_packages_listing_and_welcome_count_only_what_may_be_seen(either: Server) -> None:
    with either.client() as http:
        listing = http.get("/packages/")
        staff = http.get("/packages/", auth=ALICE)
        welcome = http.get("/")
    assert listing.status_code == staff.status_code == 200
    assert "public_app-1.0-py3-none-any.whl" in listing.text
    assert "public_app-1.0-py3-none-any.whl.asc" in listing.text
    assert "secret" not in listing.text
    assert HIDDEN_WHEEL in staff.text and HIDDEN_WHEEL + ".asc" in staff.text
    assert "serving 2 packages" in welcome.text  # three wheels, one hidden


def test_metrics_count_what_the_scraper_may_see(guarded: Server) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    def counts(auth: tuple[str, str] | None) -> dict[str, float]:
        with guarded.client() as http:
            response = http.get("/metrics", auth=auth) if auth else http.get("/metrics")
        assert response.status_code == 200
        assert HIDDEN not in response.text and "secret" not in response.text  # no such label
        families = text_string_to_metric_families(response.text)
        return {
            f.name: f.samples[0].value
            for f in families
            if f.name in ("creamery_projects", "creamery_files")
        }

    assert counts(None) == {"creamery_projects": 2, "creamery_files": 2}
    assert counts(ALICE) == {"creamery_projects": 3, "creamery_files": 3}


# ---------------------------------------------------------------- installers


@pytest.mark.parametrize("tool", ["pip", "uv"])
def test_installers_fail_for_a_hidden_project_as_for_an_unknown_one(
    no_fallback: Server, tmp_path: Path, tool: str
) -> None:
    def install(url: str, name: str) -> tuple[int, str]:
        target = tmp_path / f"{tool}-{name}-{url.count('@')}"
        if tool == "pip":
            result = pip_download(url, target, tmp_path / "home", name)
        else:
            result = uv_install(url, target, tmp_path / "home", name)
        output = result.stdout + result.stderr
        return result.returncode, output

    hidden_code, hidden_output = install(no_fallback.url, HIDDEN)
    unknown_code, unknown_output = install(no_fallback.url, UNKNOWN)
    assert hidden_code != 0 and unknown_code != 0
    # The same words, the name aside (uv's timings vary: digits are blinded too).
    blind = re.compile(r"\d+(\.\d+)?m?s|" + "|".join(map(re.escape, (HIDDEN, UNKNOWN))))
    assert blind.sub("X", hidden_output) == blind.sub("X", unknown_output)
    staff_url = no_fallback.url.replace("//", "//alice:alice-pw@")
    code, output = install(staff_url, HIDDEN)
    assert code == 0, output


# ---------------------------------------------------------------- roles and tokens


def test_roles_decide_writes(guarded: Server, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "public-new", "1.0")
    data = wheel.read_bytes()
    assert upload(guarded, wheel.name, data, auth=CAROL).status_code == 403  # a reader
    assert upload(guarded, wheel.name, data).status_code == 401  # anonymous: challenged
    assert upload(guarded, wheel.name, data, auth=UPL).status_code == 200
    # An uploader may not overwrite, even where the server allows overwriting (-o below).
    remove = [(":action", "remove_pkg"), ("name", "public-new"), ("version", "1.0")]
    refused = post_form(guarded, remove, auth=UPL)
    assert refused.status_code == 403 and "public-new" in refused.text
    assert "\n" not in refused.text.strip()
    yank = {"project": "public-new", "version": "1.0", "reason": "broken"}
    with guarded.client() as http:
        assert http.post("/-/yank", json=yank, auth=UPL).status_code == 403
        yanked = http.post("/-/yank", json=yank, auth=MAINT)
        assert yanked.status_code == 200, yanked.text
        page = http.get("/simple/public-new/", headers={"accept": JSON}).json()
        assert page["files"][0]["yanked"] == "broken"
    assert post_form(guarded, remove, auth=MAINT).status_code == 200
    with guarded.client() as http:
        assert http.get("/packages/public_new-1.0-py3-none-any.whl").status_code == 404


def test_overwrite_needs_a_maintainer(index: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _root, htpasswd, permissions = index
    args = ("-P", str(htpasswd), "--permissions", str(permissions), "-o")
    local = tmp_path / "root"
    make_wheel(local, "public-app", "1.0")
    with run_server([local], *args) as server:
        again = make_wheel(tmp_path / "again", "public-app", "1.0", summary="rebuilt")
        data = again.read_bytes()
        refused = upload(server, again.name, data, auth=UPL)
        assert refused.status_code == 403, refused.text
        assert upload(server, again.name, data, auth=MAINT).status_code == 200


def test_token_scope_narrows_reads(index: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _root, htpasswd, permissions = index
    local = tmp_path / "root"
    for name in ("public-app", HIDDEN, "secret-more"):
        make_wheel(local, name, "1.0")
    argv = [str(local), "-P", str(htpasswd), "--permissions", str(permissions)]
    with run_server([local], *argv[1:]) as server:
        catalog = Catalog(build_run_config(["run", *argv]))
        _token, secret = catalog.create_token(
            "alice", projects=[HIDDEN], actions=["list", "download"], description="reads"
        )
        auth = ("__token__", secret)
        with server.client() as http:

            def listed() -> list[str]:
                response = http.get("/simple/", headers={"accept": JSON}, auth=auth)
                assert response.status_code == 200, response.text
                return [p["name"] for p in response.json()["projects"]]

            # The token sees what anonymous sees, plus its own scope: not secret-more.
            assert wait_for(lambda: listed() == ["public-app", HIDDEN])
            assert http.get(f"/simple/{HIDDEN}/", auth=auth).status_code == 200
            assert "secret-more" in http.get("/simple/", auth=ALICE).text
            hidden = http.get("/packages/secret_more-1.0-py3-none-any.whl", auth=auth)
            unknown = http.get("/packages/secret_nope-1.0-py3-none-any.whl", auth=auth)
            assert answer(hidden, "secret_more") == answer(unknown, "secret_nope")


# ---------------------------------------------------------------- the file itself


def test_permission_file_is_reloaded_live_and_a_broken_one_is_not_taken(
    index: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _root, htpasswd, _permissions = index
    local = tmp_path / "root"
    make_wheel(local, "public-app", "1.0")
    make_wheel(local, HIDDEN, "1.0")
    permissions = tmp_path / "perms.toml"
    permissions.write_text(PERMISSIONS)
    with run_server([local], "-P", str(htpasswd), "--permissions", str(permissions)) as server:

        def anonymous_sees() -> bool:
            return HIDDEN in httpx.get(server.url + "/simple/").text

        assert not anonymous_sees()
        opened = PERMISSIONS + '\n[[rules]]\nuser = "anonymous"\nrole = "reader"\n'
        permissions.write_text(opened + f'projects = ["{HIDDEN}"]\n')
        assert wait_for(anonymous_sees, timeout=10)
        assert httpx.get(f"{server.url}/pypi/{HIDDEN}/json").status_code == 200
        permissions.write_text(PERMISSIONS + "[[rules]]\nrole = 'nobody'\n")

        def refused() -> bool:  # the file is looked at when a request needs it
            anonymous_sees()
            return "stay in force" in server.log()

        assert wait_for(refused, timeout=10), server.log()
        lines = [line for line in server.log().splitlines() if "stay in force" in line]
        assert len(lines) == 1 and str(permissions) in lines[0]
        assert anonymous_sees()  # the last good file is still the one in force
        assert httpx.get(f"{server.url}/packages/secret_thing-1.0-py3-none-any.whl").is_success


def test_a_broken_permission_file_at_start_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rules]]\nuser = "anonymous"\nrole = "godlike"\nprojects = ["*"]\n')
    result = creamery("run", "--permissions", bad, tmp_path, timeout=30)
    assert result.returncode == 2, describe(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "godlike" in lines[0], describe(result)
    garbage = tmp_path / "garbage.toml"
    garbage.write_text("[[rules]\n")
    result = creamery("run", "--permissions", garbage, tmp_path, timeout=30)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------- the mirror


@pytest.fixture(scope="module")
def fake_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The upstream: its own secret-thing (9.0) and the merged secret-merged (9.0)."""
    directory = tmp_path_factory.mktemp("fake-upstream")
    make_wheel(directory, HIDDEN, "9.0")
    make_wheel(directory, "secret-merged", "9.0")
    make_wheel(directory, "tlib", "9.0")
    return directory


def test_mirror_shows_no_local_file_of_a_hidden_project(
    index: tuple[Path, Path, Path], fake: UpstreamProcess, tmp_path: Path
) -> None:
    _root, htpasswd, permissions = index
    local = tmp_path / "local"
    make_wheel(local, HIDDEN, "1.0")
    make_wheel(local, "secret-merged", "1.0")
    make_wheel(local, "secret-solo", "1.0")  # nowhere upstream
    args = (
        *("-P", str(htpasswd), "--permissions", str(permissions), "--mirror"),
        *("--fallback-url", fake.index_url, "--mirror-cache", str(tmp_path / "cache")),
        *("--mirror-merge", "secret-merged"),
    )
    with run_server([local], *args) as server, server.client() as http:
        # Hosted here, not merged: anonymous gets upstream's project, as for any unknown name.
        anonymous = http.get(f"/simple/{HIDDEN}/", headers={"accept": JSON}).json()
        assert [f["filename"] for f in anonymous["files"]] == ["secret_thing-9.0-py3-none-any.whl"]
        upstream_file = http.get(f"/upstream/{HIDDEN}/secret_thing-9.0-py3-none-any.whl")
        assert upstream_file.status_code == 200
        staff = http.get(f"/simple/{HIDDEN}/", headers={"accept": JSON}, auth=ALICE).json()
        assert [f["filename"] for f in staff["files"]] == [HIDDEN_WHEEL]  # ours alone
        for_staff = http.get(f"/upstream/{HIDDEN}/secret_thing-9.0-py3-none-any.whl", auth=ALICE)
        assert for_staff.status_code == 404
        # Merged: anonymous sees upstream's files only; staff both.
        merged = http.get("/simple/secret-merged/", headers={"accept": JSON}).json()
        assert [f["filename"] for f in merged["files"]] == ["secret_merged-9.0-py3-none-any.whl"]
        both = http.get("/simple/secret-merged/", headers={"accept": JSON}, auth=ALICE).json()
        assert len(both["files"]) == 2
        again = http.get("/simple/secret-merged/", headers={"accept": JSON}).json()
        assert again == merged  # the staff's rendering is not served to anonymous
        # Only here: exactly what a name nobody has gets.
        solo = http.get("/simple/secret-solo/")
        nope = http.get("/simple/secret-nope/")
        assert answer(solo, "secret-solo") == answer(nope, "secret-nope")
        assert solo.status_code == 404
        assert answer(
            http.get("/upstream/secret-solo/secret_solo-1.0-py3-none-any.whl"), "secret-solo"
        ) == answer(
            http.get("/upstream/secret-nope/secret_nope-1.0-py3-none-any.whl"), "secret-nope"
        )
        assert "secret" not in http.get("/simple/").text
        assert http.get("/simple/secret-solo/", auth=ALICE).status_code == 200


def test_json_bodies_name_no_hidden_project(guarded: Server) -> None:
    """A last sweep: nothing an anonymous client can GET mentions the hidden project."""
    paths = [
        "/",
        "/simple/",
        "/packages/",
        "/pypi/public-app/json",
        "/simple/public-app/",
        "/metrics",
        "/public-app/json",
    ]
    with guarded.client() as http:
        for path in paths:
            response = http.get(path)
            assert response.status_code == 200, path
            assert "secret" not in response.text, path
            assert "secret" not in json.dumps(dict(response.headers)), path
