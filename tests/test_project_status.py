"""PEP 792 project status end to end: `creamery status` and `/-/projects/<p>/status` against a
running server, what the simple pages (HTML meta, JSON `project-status`), the PyPI JSON API and
the UI page then say, and what twine, pip and uv do with an archived, quarantined or deprecated
project; the mirror passing an upstream's status on; PEP 708 only when asked for.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from support import forms
from support.clients import clean_env, creamery, describe, pip_install, twine_upload, uv_install
from support.dists import make_wheel
from support.forms import post_form
from support.polling import wait_for
from support.s3 import S3Server
from support.s3_proxy import store_proxy
from support.servers import Server, run_server
from support.upstream import UpstreamProcess, run_upstream
from support.wire import listed

from creamery.catalog.auth import add_user
from creamery.catalog.status import MAX_REASON, ProjectStatus, check_reason, check_status, decode
from creamery.mirror.listing import listing_from_json, listing_to_json, parse_html, parse_json

USERS = {"alice": "alice-pw", "bob": "bob-pw"}
JSON_ACCEPT = {"Accept": "application/vnd.pypi.simple.v1+json"}
HTTP = httpx.Client(timeout=30)


def auth(user: str) -> tuple[str, str]:
    return user, USERS[user]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("status")
    for user, password in USERS.items():
        add_user(base / "htpasswd", user, password, rounds=4)
    return base


@pytest.fixture(scope="module")
def root(base: Path) -> Path:
    root = base / "root"
    for project in ("squar", "sdep", "sshape", "scli"):
        make_wheel(root, project, "1.0")
    return root


@pytest.fixture(scope="module")
def srv(base: Path, root: Path) -> Iterator[Server]:
    args = ("-P", str(base / "htpasswd"), "-a", "update", "--owners", "first-uploader")
    with run_server([root], *args, "--disable-fallback") as server:
        yield server


def cli_status(root: Path, *args: str) -> str:
    result = creamery("status", *args, str(root))
    assert result.returncode == 0, describe(result)
    return result.stdout


def simple_page(srv: Server, project: str) -> tuple[str, dict[str, object]]:
    html = HTTP.get(f"{srv.url}/simple/{project}/").text
    document = HTTP.get(f"{srv.url}/simple/{project}/", headers=JSON_ACCEPT).json()
    return html, document


class _Metas(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.metas: dict[str, str] = {}
        self.anchors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "meta" and found.get("name"):
            self.metas[found["name"] or ""] = found.get("content") or ""
        if tag == "a":
            self.anchors.append(found.get("href") or "")


def parsed_html(html: str) -> _Metas:
    parser = _Metas()
    parser.feed(html)
    return parser


def upload(srv: Server, home: Path, wheel: Path, user: str = "alice") -> str:
    """twine's output when it failed ("" when it uploaded); with --verbose, which prints the
    server's answer (without it, twine shows the status line only)."""
    result = twine_upload(
        srv.url + "/", home, "--verbose", str(wheel), user=user, password=USERS[user]
    )
    return result.stdout + result.stderr if result.returncode else ""


def set_status(srv: Server, project: str, user: str, **body: object) -> httpx.Response:
    return HTTP.post(f"{srv.url}/-/projects/{project}/status", json=body, auth=auth(user))


# ---------------------------------------------------------------------- the standard's shapes


def test_pages_carry_pep_792_markers(srv: Server, root: Path) -> None:
    html, document = simple_page(srv, "sshape")
    page = parsed_html(html)
    # Active: said (SHOULD), no reason; the API version that defines the markers.
    assert page.metas["pypi:repository-version"] == "1.4"
    assert page.metas["pypi:project-status"] == "active"
    assert "pypi:project-status-reason" not in page.metas
    assert document["meta"] == {"api-version": "1.4"}
    assert document["project-status"] == {"status": "active"}

    hostile = 'moved to <script>alert("x")</script> & "sshape2"'
    assert cli_status(root, "sshape", "deprecated", "--reason", hostile) == (
        f"sshape: deprecated ({hostile})\n"
    )
    html, document = simple_page(srv, "sshape")
    page = parsed_html(html)
    assert page.metas["pypi:project-status"] == "deprecated"
    assert page.metas["pypi:project-status-reason"] == hostile  # escaped, read back whole
    assert "<script>" not in html
    assert document["project-status"] == {"status": "deprecated", "reason": hostile}
    assert len(page.anchors) == 1  # deprecated: files offered as before
    # The root listing is unchanged by PEP 792.
    assert "project-status" not in HTTP.get(f"{srv.url}/simple/", headers=JSON_ACCEPT).text
    shown = json.loads(cli_status(root, "sshape", "--json"))
    assert shown == {"project": "sshape", "project-status": document["project-status"]}


# ---------------------------------------------------------------------- archived


def test_archived_project_refuses_twine_uploads(srv: Server, root: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = make_wheel(tmp_path / "dists", "sarch", "1.0")
    assert upload(srv, home, first) == ""  # alice owns it now
    archived = set_status(srv, "SArch", "alice", status="archived", reason="moved to sarch2")
    assert archived.status_code == 200, archived.text
    assert archived.json()["project-status"] == {"status": "archived", "reason": "moved to sarch2"}
    assert archived.json()["set_by"] == "alice"

    second = make_wheel(tmp_path / "dists", "sarch", "2.0")
    said = upload(srv, home, second)
    assert "400" in said, said
    assert "project sarch is archived: no new uploads (moved to sarch2)" in said, said
    assert not (root / second.name).exists()
    assert not list((root / ".creamery" / "tmp").rglob("*.part"))  # the spool is gone
    # Its files are still offered.
    assert HTTP.get(f"{srv.url}/packages/{first.name}").status_code == 200
    html, document = simple_page(srv, "sarch")
    assert parsed_html(html).metas["pypi:project-status"] == "archived"
    assert [f["filename"] for f in document["files"]] == [first.name]  # type: ignore[index]
    pypi = HTTP.get(f"{srv.url}/pypi/sarch/json").json()
    assert pypi["project-status"] == {"status": "archived", "reason": "moved to sarch2"}
    assert [u["filename"] for u in pypi["urls"]] == [first.name]
    ui = HTTP.get(f"{srv.url}/project/sarch/").text
    assert 'data-status="archived"' in ui and "moved to sarch2" in ui

    assert set_status(srv, "sarch", "alice", status="active").status_code == 200
    assert upload(srv, home, second) == ""
    assert (root / second.name).exists()
    assert not (root / ".creamery" / "status" / "sarch.json").exists()  # active: no object


# ---------------------------------------------------------------------- quarantined


def test_quarantined_project_offers_and_serves_nothing(
    srv: Server, root: Path, tmp_path: Path
) -> None:
    wheel = "squar-1.0-py3-none-any.whl"
    assert HTTP.get(f"{srv.url}/packages/{wheel}").status_code == 200
    # Set by the CLI while the server runs: the server sees it through the change feed.
    cli_status(root, "squar", "quarantined", "--reason", "malware found")
    html, document = simple_page(srv, "squar")
    page = parsed_html(html)
    assert page.metas["pypi:project-status"] == "quarantined"
    assert page.metas["pypi:project-status-reason"] == "malware found"
    assert page.anchors == []
    assert document["files"] == []
    assert document["versions"] == ["1.0"]  # as PEP 792's example: versions, no files
    assert document["project-status"] == {"status": "quarantined", "reason": "malware found"}
    for path in (wheel, wheel + ".metadata", wheel + ".provenance", wheel + ".asc"):
        refused = HTTP.get(f"{srv.url}/packages/{path}")
        assert refused.status_code == 404, path
        assert "squar is quarantined" in refused.text and "malware found" in refused.text
        assert "\n" not in refused.text.strip()
    assert wheel not in HTTP.get(f"{srv.url}/packages/").text
    pypi = HTTP.get(f"{srv.url}/pypi/squar/json").json()
    assert pypi["urls"] == [] and pypi["releases"] == {"1.0": []}
    assert HTTP.get(f"{srv.url}/pypi/squar/1.0/json").json()["urls"] == []
    ui = HTTP.get(f"{srv.url}/project/squar/").text
    assert 'data-status="quarantined"' in ui and "malware found" in ui and wheel not in ui
    assert "install-command" not in ui  # no pip/uv command to copy for what installs nothing
    # Uploads are refused too.
    said = upload(srv, tmp_path / "home", make_wheel(tmp_path / "d", "squar", "2.0"))
    assert "project squar is quarantined: no new uploads (malware found)" in said

    pip = pip_install(f"{srv.url}/simple/", tmp_path / "pip", tmp_path / "h1", "squar")
    assert pip.returncode != 0, describe(pip)
    uv = uv_install(srv.url, tmp_path / "uv", tmp_path / "h2", "squar")
    assert uv.returncode != 0, describe(uv)
    assert not list((tmp_path / "pip").glob("*.dist-info"))

    cli_status(root, "squar", "active")
    pip = pip_install(f"{srv.url}/simple/", tmp_path / "pip2", tmp_path / "h3", "squar")
    assert pip.returncode == 0, describe(pip)
    uv = uv_install(srv.url, tmp_path / "uv2", tmp_path / "h4", "squar")
    assert uv.returncode == 0, describe(uv)
    assert HTTP.get(f"{srv.url}/packages/{wheel}").status_code == 200


def test_deprecated_project_still_installs(srv: Server, root: Path, tmp_path: Path) -> None:
    cli_status(root, "sdep", "deprecated", "--reason", "use sshape")
    pip = pip_install(f"{srv.url}/simple/", tmp_path / "pip", tmp_path / "h1", "sdep")
    assert pip.returncode == 0, describe(pip)
    uv = uv_install(srv.url, tmp_path / "uv", tmp_path / "h2", "sdep")
    assert uv.returncode == 0, describe(uv)
    ui = HTTP.get(f"{srv.url}/project/sdep/").text
    assert 'data-status="deprecated"' in ui and "use sshape" in ui


# ---------------------------------------------------------------------- HTTP and CLI rules


def test_status_endpoint_rules(srv: Server, tmp_path: Path) -> None:
    assert upload(srv, tmp_path / "home", make_wheel(tmp_path / "d", "sown", "1.0")) == ""
    url = f"{srv.url}/-/projects/sown/status"
    shown = HTTP.get(url, auth=auth("bob"))  # whoever may see the project reads it
    assert shown.status_code == 200 and shown.json()["project-status"] == {"status": "active"}

    refused = set_status(srv, "sown", "bob", status="archived")
    assert refused.status_code == 403, refused.text
    assert HTTP.post(url, json={"status": "archived"}).status_code == 401
    for body, why in [
        ({"status": "retired"}, "unknown project status 'retired'"),
        ({}, "'status' must be one of: active, archived"),
        ({"status": None}, "'status' must be one of: active, archived"),
        ({"status": 3}, "'status' must be one of: active, archived"),
        ({"status": "archived", "reason": "one\ntwo"}, "one line"),
        ({"status": "archived", "reason": "bell\x07"}, "control"),
        ({"status": "archived", "reason": "\u202eevil"}, "control"),
        ({"status": "archived", "reason": "x" * (MAX_REASON + 1)}, "longer than"),
        ({"status": "archived", "extra": 1}, "unknown field 'extra'"),
    ]:
        answer = set_status(srv, "sown", "alice", **body)
        assert answer.status_code == 400, (body, answer.text)
        assert why in answer.json()["message"], (body, answer.text)
    as_form = HTTP.post(url, data={"status": "archived"}, auth=auth("alice"))
    assert as_form.status_code == 400  # a cross-site form can't set it
    cross = HTTP.post(
        url,
        json={"status": "archived"},
        auth=auth("alice"),
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert cross.status_code == 403
    assert set_status(srv, "nothing-here", "alice", status="archived").status_code == 404
    assert HTTP.get(url, auth=auth("alice")).json()["project-status"] == {"status": "active"}

    ok = set_status(srv, "sown", "alice", status="Deprecated", reason="  use sdep  ")
    assert ok.status_code == 200
    assert ok.json()["project-status"] == {"status": "deprecated", "reason": "use sdep"}
    audit = HTTP.get(f"{srv.url}/-/audit?project=sown", auth=auth("alice")).text
    entries = [json.loads(line) for line in audit.splitlines()]
    assert any(e["action"] == "status" and e["detail"] == "deprecated" for e in entries)


def test_cli_status_errors(srv: Server, root: Path) -> None:
    for args, why in [
        (("scli", "gone"), "unknown project status 'gone'"),
        (("scli", "archived", "--reason", "a\nb"), "one line"),
        (("no-such-project", "archived"), "no project 'no-such-project' here"),
        (("scli", "--reason", "why"), "--reason needs a status"),
    ]:
        result = creamery("status", *args, str(root))
        assert result.returncode == 2, describe(result)
        assert why in result.stderr, describe(result)
    assert cli_status(root, "SCli") == "scli: active\n"
    assert cli_status(root, "scli", "archived") == "scli: archived\n"
    assert "archived" in parsed_html(simple_page(srv, "scli")[0]).metas["pypi:project-status"]


def _docs_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.html", "<h1>the docs</h1>")
    return buffer.getvalue()


def test_closed_projects_take_no_documentation_and_quarantined_ones_show_none(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    for project in ("ddocs", "dquar"):
        make_wheel(root, project, "1.0")
    with run_server([root], "-P", ".", "-a", ".", "--disable-fallback") as server:
        fields = [(":action", "doc_upload"), ("name", "dquar"), ("version", "1.0")]
        assert post_form(server, fields, [("content", "d.zip", _docs_zip())]).status_code == 200
        assert HTTP.get(f"{server.url}/docs/dquar/1.0/").status_code == 200
        cli_status(root, "ddocs", "archived", "--reason", "moved")
        cli_status(root, "dquar", "quarantined", "--reason", "malware")
        for project, status in (("ddocs", "archived"), ("dquar", "quarantined")):
            fields = [(":action", "doc_upload"), ("name", project), ("version", "1.0")]
            legacy = post_form(server, fields, [("content", "d.zip", _docs_zip())])
            plain = HTTP.post(f"{server.url}/docs/{project}/1.0/", content=_docs_zip())
            for refused in (legacy, plain):
                assert refused.status_code == 400, refused.text
                assert f"project {project} is {status}: no new uploads" in refused.text
        for path in ("/docs/dquar/1.0/", "/docs/dquar/1.0/index.html", "/docs/dquar/"):
            refused = HTTP.get(server.url + path)
            assert refused.status_code == 404, path
            assert "the docs" not in refused.text
            assert "dquar is quarantined, its files are not served: malware" in refused.text
        assert "dquar" not in HTTP.get(f"{server.url}/docs/").text
        cli_status(root, "dquar", "active")
        assert HTTP.get(f"{server.url}/docs/dquar/1.0/").text == "<h1>the docs</h1>"


@pytest.mark.parametrize("damage", ["truncated", "huge", "unknown status"])
def test_a_damaged_status_object_keeps_the_project_quarantined(tmp_path: Path, damage: str) -> None:
    root = tmp_path / "root"
    wheel = make_wheel(root, "sdamaged", "1.0")
    cli_status(root, "sdamaged", "quarantined", "--reason", "malware")
    stored = root / ".creamery" / "status" / "sdamaged.json"
    written = stored.read_text()
    stored.write_text(
        {
            "truncated": written[: len(written) // 2],
            "huge": written[:-1] + ', "pad": "' + "x" * (64 << 10) + '"}',
            "unknown status": written.replace('"quarantined"', '"frozen"'),
        }[damage]
    )
    said = cli_status(root, "sdamaged")
    assert said.startswith("sdamaged: quarantined (its status object can't be read"), said
    with run_server([root], "-P", ".", "-a", ".", "--disable-fallback") as server:
        refused = HTTP.get(f"{server.url}/packages/{wheel.name}")
        assert refused.status_code == 404 and "sdamaged is quarantined" in refused.text
        assert "status/sdamaged.json is not a status object" in server.log()
    cli_status(root, "sdamaged", "active")  # set again: the object is replaced
    assert not stored.exists()


# ---------------------------------------------------------------------- the mirror


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpstreamProcess]:
    directory = tmp_path_factory.mktemp("status-upstream")
    for project in ("uarch", "uquar", "umerge"):
        make_wheel(directory, project, "1.0")
    with run_upstream(directory) as upstream:
        upstream.control(
            statuses={
                "uarch": {"status": "archived", "reason": "no longer maintained"},
                "uquar": {"status": "quarantined", "reason": "typosquat"},
            }
        )
        yield upstream


@pytest.mark.parametrize("html_only", [False, True])
def test_mirror_passes_upstream_status_on(
    fake: UpstreamProcess, tmp_path: Path, html_only: bool
) -> None:
    fake.control(html_only=html_only)
    local = tmp_path / "local"
    local.mkdir()
    args = ("--mirror", "--fallback-url", fake.index_url, "--mirror-cache", str(tmp_path / "c"))
    try:
        with run_server([local], *args) as mirror:
            html, document = simple_page(mirror, "uarch")
            assert parsed_html(html).metas["pypi:project-status"] == "archived"
            assert document["project-status"] == {
                "status": "archived",
                "reason": "no longer maintained",
            }
            assert len(document["files"]) == 1  # type: ignore[arg-type]
            html, document = simple_page(mirror, "uquar")
            assert parsed_html(html).metas["pypi:project-status-reason"] == "typosquat"
            assert document["files"] == [] and parsed_html(html).anchors == []
            refused = HTTP.get(f"{mirror.url}/upstream/uquar/uquar-1.0-py3-none-any.whl")
            assert refused.status_code == 404 and "quarantined upstream" in refused.text
            ui = HTTP.get(f"{mirror.url}/project/uarch/").text
            assert 'data-status="archived"' in ui
            target = tmp_path / "pip"
            pip = pip_install(f"{mirror.url}/simple/", target, tmp_path / "h", "uquar")
            assert pip.returncode != 0, describe(pip)
    finally:
        fake.control(html_only=False)


def test_mirrored_status_survives_a_restart_with_the_upstream_down(
    fake: UpstreamProcess, tmp_path: Path
) -> None:
    local = tmp_path / "local"
    local.mkdir()
    cache = tmp_path / "cache"
    args = ("--mirror", "--fallback-url", fake.index_url, "--mirror-cache", str(cache))
    with run_server([local], *args, "--mirror-ttl", "0") as mirror:
        assert simple_page(mirror, "uquar")[1]["project-status"]["status"] == "quarantined"  # type: ignore[index]
    fake.control(fail=503)
    try:
        with run_server([local], *args, "--mirror-ttl", "0") as mirror:
            html, document = simple_page(mirror, "uquar")  # the cached page, stale
            assert document["project-status"] == {"status": "quarantined", "reason": "typosquat"}
            assert parsed_html(html).anchors == []
            refused = HTTP.get(f"{mirror.url}/upstream/uquar/uquar-1.0-py3-none-any.whl")
            assert refused.status_code == 404 and "typosquat" in refused.text
    finally:
        fake.control(fail=0)


def test_pep_708_only_when_asked(fake: UpstreamProcess, tmp_path: Path) -> None:
    local = tmp_path / "local"
    make_wheel(local, "umerge", "0.1")
    args = ("--mirror", "--fallback-url", fake.index_url, "--mirror-merge", "umerge")
    for extra, expected in [((), False), (("--mirror-pep708",), True)]:
        cache = ("--mirror-cache", str(tmp_path / f"c{len(extra)}"))
        with run_server([local], *args, *cache, *extra) as mirror:
            html, document = simple_page(mirror, "umerge")
        names = sorted(f["filename"] for f in document["files"])  # type: ignore[attr-defined]
        assert names == ["umerge-0.1-py3-none-any.whl", "umerge-1.0-py3-none-any.whl"]
        assert ("tracks" in document["meta"]) is expected  # type: ignore[operator]
        assert ("alternate-locations" in document) is expected
        assert ('name="pypi:tracks"' in html) is expected
        assert document["meta"]["api-version"] == "1.4"  # type: ignore[index]


def test_a_local_quarantine_covers_a_merged_projects_upstream_files(
    fake: UpstreamProcess, tmp_path: Path
) -> None:
    local = tmp_path / "local"
    make_wheel(local, "umerge", "0.1")
    args = ("--mirror", "--fallback-url", fake.index_url, "--mirror-merge", "umerge")
    with run_server([local], *args, "--mirror-cache", str(tmp_path / "c")) as mirror:
        theirs = f"{mirror.url}/upstream/umerge/umerge-1.0-py3-none-any.whl"
        assert len(simple_page(mirror, "umerge")[1]["files"]) == 2  # type: ignore[arg-type]
        cli_status(local, "umerge", "quarantined", "--reason", "ours, compromised")
        html, document = simple_page(mirror, "umerge")
        assert document["files"] == [] and parsed_html(html).anchors == []
        assert document["project-status"] == {
            "status": "quarantined",
            "reason": "ours, compromised",
        }
        refused = HTTP.get(theirs)
        assert refused.status_code == 404 and "ours, compromised" in refused.text
        cli_status(local, "umerge", "active")
        assert len(simple_page(mirror, "umerge")[1]["files"]) == 2  # type: ignore[arg-type]
        assert HTTP.get(theirs).status_code == 200


# ---------------------------------------------------------------------- units


def test_listings_read_and_keep_the_status() -> None:
    body = json.dumps(
        {
            "meta": {"api-version": "1.4"},
            "name": "demo",
            "project-status": {"status": "quarantined", "reason": "bad\nthings\x1b[31m"},
            "files": [],
        }
    ).encode()
    listing = parse_json(body, "demo", "https://up.example/simple/demo/", "https://up.example/")
    assert (listing.status, listing.status_reason) == ("quarantined", "bad things [31m")
    again, _ = listing_from_json(listing_to_json(listing, 1.0))
    assert (again.status, again.status_reason) == ("quarantined", "bad things [31m")
    html = (
        b'<html><head><meta name="pypi:repository-version" content="1.4">'
        b'<meta name="pypi:project-status" content="Archived">'
        b'<meta name="pypi:project-status-reason" content="old &amp; done"></head></html>'
    )
    listing = parse_html(html, "demo", "https://up.example/simple/demo/", "https://up.example/")
    assert (listing.status, listing.status_reason) == ("archived", "old & done")
    huge = {"status": "QUARANTINED", "reason": "\u202e" * (1 << 20) + "said after a megabyte"}
    document = {"meta": {"api-version": "1.4"}, "files": [], "project-status": huge}
    listing = parse_json(json.dumps(document).encode(), "d", "https://u/d/", "https://u/")
    assert (listing.status, listing.status_reason) == ("quarantined", None)  # only its start
    for marker in ({"status": "frozen"}, {"status": 1}, "archived", None):
        document = {"meta": {"api-version": "1.4"}, "files": [], "project-status": marker}
        listing = parse_json(json.dumps(document).encode(), "d", "https://u/d/", "https://u/")
        assert listing.status is None  # unknown: counts as active


def test_status_values_are_checked() -> None:
    assert check_status(" Quarantined ") == "quarantined"
    with pytest.raises(ValueError, match="unknown project status"):
        check_status("removed")
    assert check_reason("  fine  ") == "fine"
    for bad in ("a\rb", "tab\there", "x" * (MAX_REASON + 1), "a\u2028b"):
        with pytest.raises(ValueError):
            check_reason(bad)
    assert decode(b'{"status": "archived", "reason": "r"}') == ProjectStatus("archived", "r")
    for damaged in (b"not json", b"[]", b'{"status": "gone"}', b'{"status": "archived", "by": 1}'):
        assert decode(damaged) is None


# ---------------------------------------------------------------------- the manage page


def test_owner_sets_the_status_on_the_manage_page(srv: Server, tmp_path: Path) -> None:
    assert upload(srv, tmp_path / "home", make_wheel(tmp_path / "d", "sform", "1.0")) == ""
    csrf = re.compile(r'name="csrf_token" value="([^"]*)"')
    for user in ("bob", "alice"):
        with srv.client() as client:
            signed = client.post(
                "/-/signin",
                data={"username": user, "password": USERS[user], "next": "/"},
                headers={"origin": srv.url},
            )
            assert signed.status_code == 303, signed.text
            page = client.get("/manage/project/sform/")
            assert page.status_code == 200 and 'data-status="active"' in page.text
            # bob's page has no form: the sign-out page's token is his session's.
            token = csrf.search(page.text) or csrf.search(client.get("/-/signout").text)
            assert token is not None
            form = {"csrf_token": token[1], "status": "archived", "reason": "done <here>"}
            answer = client.post("/manage/project/sform/status", data=form)
            if user == "bob":  # not an owner: no form shown, the POST refused
                assert 'class="inline-form status-form"' not in page.text
                assert answer.status_code == 403, answer.text
                continue
            assert answer.status_code == 303, answer.text
            again = client.get("/manage/project/sform/?done=status")
            assert 'data-status="archived"' in again.text and "done &lt;here&gt;" in again.text
            bad = client.post("/manage/project/sform/status", data={**form, "status": "x"})
            assert bad.status_code == 400 and "unknown project status" in bad.text
            forged = client.post("/manage/project/sform/status", data={**form, "csrf_token": "no"})
            assert forged.status_code == 403
    assert parsed_html(simple_page(srv, "sform")[0]).metas["pypi:project-status"] == "archived"


# ---------------------------------------------------------------------- an object root


def test_status_on_an_s3_root(s3: S3Server, s3_bucket: str, tmp_path: Path) -> None:
    env = clean_env(**s3.env(XDG_CACHE_HOME=str(tmp_path / "cache")))
    wheel = make_wheel(tmp_path / "d", "sbucket", "1.0")
    s3.put(s3_bucket, f"index/{wheel.name}", wheel.read_bytes())
    url = f"s3://{s3_bucket}/index"
    with run_server([url], "--disable-fallback", env=s3.env()) as server:
        assert HTTP.get(f"{server.url}/packages/{wheel.name}").status_code == 200
        result = creamery("status", "sbucket", "quarantined", "--reason", "bad", url, env=env)
        assert result.returncode == 0, describe(result)
        key = "index/.creamery/status/sbucket.json"
        assert json.loads(s3.get(s3_bucket, key))["status"] == "quarantined"

        def quarantined() -> bool:
            return HTTP.get(f"{server.url}/packages/{wheel.name}").status_code == 404

        assert wait_for(quarantined, timeout=15)  # the replica reads it in the bucket's feed
        assert simple_page(server, "sbucket")[1]["files"] == []
        result = creamery("status", "sbucket", "active", url, env=env)
        assert result.returncode == 0, describe(result)
        assert key not in s3.keys(s3_bucket, "index/.creamery/")
        assert wait_for(lambda: not quarantined(), timeout=15)


def test_an_upload_finishing_after_the_project_was_archived_is_refused(
    s3: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    """Was: the status was checked once, before the upload was written; one still being
    written when `creamery status` archived the project (here: its existence check held at
    the store) was published into the archived project, 200. Now it is checked again just
    before the commit point, read from the state: 400, nothing stored."""
    first = make_wheel(tmp_path / "1", "slate", "1.0")
    late = make_wheel(tmp_path / "2", "slate", "2.0")
    url = f"s3://{s3_bucket}/late"
    args = ("-a", ".", "-P", ".", "--disable-fallback")
    with (
        store_proxy(s3) as (proxy, endpoint),
        run_server([url], *args, env=s3.env(AWS_ENDPOINT_URL=endpoint)) as server,
        ThreadPoolExecutor(1) as pool,
    ):
        assert forms.upload(server, first.name, first.read_bytes()).status_code == 200
        proxy.hold(lambda method, path: method == "HEAD" and late.name in path)
        pending = pool.submit(forms.upload, server, late.name, late.read_bytes())
        try:
            assert proxy.held.wait(15), server.log()
            result = creamery("status", "slate", "archived", url, env=clean_env(**s3.env()))
            assert result.returncode == 0, describe(result)
        finally:
            proxy.let_go()
        answer = pending.result()
        assert answer.status_code == 400, answer.text
        assert "archived" in answer.text
        assert f"late/{late.name}" not in s3.keys(s3_bucket)
        assert list(listed(server, "slate")) == [first.name]
