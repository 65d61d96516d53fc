"""Documentation hosting: a zip uploaded with the legacy `:action=doc_upload` (as setuptools'
`upload_docs` sent it) or a plain `POST /docs/<project>/<version>/` is checked whole, kept
in the state store and served from `/docs/` inside a CSP sandbox; a hostile zip is refused
with nothing stored; hidden projects' docs answer like unknown ones; other processes and
replicas see an upload through the change feed. Real server processes, httpx as the client.
"""

from __future__ import annotations

import io
import os
import unicodedata
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.access_state import audit_entries, create_token, state_dir
from support.clients import creamery, describe
from support.dists import make_wheel
from support.htpasswd import sha1_hash, write_sha1_htpasswd
from support.polling import wait_for
from support.s3 import S3Server
from support.servers import Server, run_server

from creamery.catalog.docs import (
    BadDocs,
    ZipLimits,
    canonical_version,
    check_zip,
    served_root,
    unsafe_name,
)

USER = ("ann", "ann-pw")
OTHER = ("bob", "bob-pw")
TOKEN_USER = "__token__"
SANDBOX = "sandbox allow-scripts allow-popups allow-popups-to-escape-sandbox allow-forms"
ZIP = {"Content-Type": "application/zip"}
MAX_UPLOAD = 4 << 20

PERMISSIONS = """\
[[rules]]
user = "anonymous"
role = "reader"
projects = ["public-*"]

[[rules]]
user = "ann"
role = "uploader"
projects = ["*"]

[[rules]]
user = "ann"
role = "uploader"
projects = ["public-*"]
"""


def make_zip(members: dict[str, bytes | str], **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are the point of some tests
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in members.items():
                archive.writestr(name, data)
            for name, data in kwargs.get("extra", []):  # type: ignore[attr-defined]
                archive.writestr(name, data)
    return buffer.getvalue()


SITE = {
    "index.html": "<html><head><script src='_static/app.js'></script></head>home</html>",
    "guide/index.html": "<html>guide</html>",
    "guide/install.html": "<html>install</html>",
    "_static/app.js": "document.title = 'x';",
    "_static/style.css": "body { color: red }",
    "_static/logo.png": b"\x89PNG\r\n\x1a\n0000",
    "objects.inv": b"# Sphinx inventory\n",
}


def symlink_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.html", "<html></html>")
        link = zipfile.ZipInfo("passwd")
        link.create_system = 3
        link.external_attr = (0o120777 << 16) | 0x20
        archive.writestr(link, "/etc/passwd")
    return buffer.getvalue()


def encrypted_zip() -> bytes:
    """A zip whose member says it is encrypted (zipfile can't write encrypted members)."""
    data = bytearray(make_zip({"index.html": "<html></html>"}))
    local = data.index(b"PK\x03\x04")
    central = data.index(b"PK\x01\x02")
    data[local + 6] |= 0x1
    data[central + 8] |= 0x1
    return bytes(data)


def many_members(count: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for i in range(count):
            archive.writestr(f"{i}", b"")
    return buffer.getvalue()


HOSTILE = {
    "traversal": make_zip({"index.html": "x", "../x": "evil"}),
    "absolute": make_zip({"index.html": "x", "/etc/x": "evil"}),
    "backslash": make_zip({"index.html": "x", "a\\..\\..\\x": "evil"}),
    "drive": make_zip({"index.html": "x", "C:/x": "evil"}),
    "symlink": symlink_zip(),
    "bomb": make_zip({"index.html": "x", "zeros.html": b"\0" * (8 << 20)}),
    "too-many": many_members(20_001),
    "not-a-zip": b"this is not a zip file at all",
    "encrypted": encrypted_zip(),
    "duplicate": make_zip({"index.html": "a"}, extra=[("index.html", "b")]),
    "nfc-duplicate": make_zip(
        {"caf\u00e9.html": "a", unicodedata.normalize("NFD", "caf\u00e9.html"): "b"}
    ),
    "control": make_zip({"index.html": "x", "a\x01b.html": "evil"}),
}


# ---------------------------------------------------------------------- the validator


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_validator_refuses_hostile_zips(case: str, tmp_path: Path) -> None:
    path = tmp_path / "docs.zip"
    path.write_bytes(HOSTILE[case])
    with pytest.raises(BadDocs) as raised:
        check_zip(path)
    reason = str(raised.value)
    assert "\n" not in reason and 5 < len(reason) < 200, reason


def test_validator_accepts_a_site_and_bounds_it(tmp_path: Path) -> None:
    path = tmp_path / "docs.zip"
    path.write_bytes(make_zip(SITE))
    check_zip(path)
    with pytest.raises(BadDocs, match="larger than the limit"):
        check_zip(path, ZipLimits(max_size=100))
    with pytest.raises(BadDocs, match="more than 3 members"):
        check_zip(path, ZipLimits(max_members=3))
    with pytest.raises(BadDocs, match="expands to more than"):
        check_zip(path, ZipLimits(max_total=50))
    # Small members compress badly or well: the ratio has slack for them.
    path.write_bytes(make_zip({"index.html": b" " * 60_000}))
    check_zip(path)


def test_validator_names_and_root() -> None:
    for bad in ("../x", "/x", "a/../b", "a//b", "./a", "a\\b", "C:x", "a\0b", ""):
        assert unsafe_name(bad) is not None, bad
    for good in ("index.html", "a/b/c.html", "dir/", "caf\u00e9.html", "a..b"):
        assert unsafe_name(good) is None, good
    assert served_root(["html/index.html", "html/_static/x.css"]) == "html/"
    assert served_root(["index.html", "html/a.html"]) == ""
    assert served_root(["a/index.html", "b/index.html"]) == ""
    assert served_root(["readme.txt"]) == ""
    assert canonical_version("1.0") == "1.0"
    assert canonical_version("1.0RC1") == "1.0rc1"
    assert canonical_version("nope!") is None


# ---------------------------------------------------------------------- servers


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("docs")


@pytest.fixture(scope="module")
def htpasswd(base: Path) -> Path:
    return write_sha1_htpasswd(
        base / "htpasswd", USER[0], USER[1], f"{OTHER[0]}:{sha1_hash(OTHER[1])}\n"
    )


@pytest.fixture(scope="module")
def root(base: Path) -> Path:
    root = base / "root"
    make_wheel(root, "released", "2.0", summary="has a release")
    make_wheel(root, "released", "1.0", summary="has a release")
    return root


@pytest.fixture(scope="module")
def srv(root: Path, htpasswd: Path) -> Iterator[Server]:
    with run_server(
        [root],
        "-P",
        str(htpasswd),
        "-a",
        "update",
        "--max-upload-size",
        str(MAX_UPLOAD),
        "--disable-fallback",
    ) as server:
        yield server


def post_zip(
    server: Server, project: str, version: str, data: bytes, auth: object = USER
) -> httpx.Response:
    return httpx.post(
        f"{server.url}/docs/{project}/{version}/",
        content=data,
        headers=ZIP,
        auth=auth,  # type: ignore[arg-type]
        timeout=30,
    )


def legacy(
    server: Server, fields: dict[str, str], data: bytes, auth: object = USER
) -> httpx.Response:
    return httpx.post(
        server.url + "/",
        data={":action": "doc_upload", **fields},
        files={"content": ("docs.zip", data, "application/zip")},
        auth=auth,  # type: ignore[arg-type]
        timeout=30,
    )


def docs_state(root: Path) -> list[str]:
    """What the state directory holds of documentation, and any leftover spool."""
    state = root / ".creamery"
    found = [p.relative_to(state).as_posix() for p in state.rglob("*") if p.is_file()]
    return sorted(p for p in found if p.startswith("docs/") or p.endswith(".part"))


def assert_member(response: httpx.Response, content_type: str) -> None:
    assert response.status_code == 200, (response.url, response.status_code, response.text)
    assert response.headers["content-type"] == content_type
    assert response.headers["content-security-policy"] == SANDBOX
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "cross-origin-resource-policy" not in response.headers  # it would block their assets
    assert "set-cookie" not in response.headers
    assert response.headers["etag"]


def test_legacy_doc_upload_with_and_without_version(srv: Server, root: Path) -> None:
    response = legacy(srv, {"name": "Released", "version": "1.0"}, make_zip({"index.html": "v1"}))
    assert response.status_code == 200, response.text
    assert response.text.startswith("OK")
    # setuptools' upload_docs sent no version: the latest release's.
    response = legacy(srv, {"name": "released"}, make_zip(SITE))
    assert response.status_code == 200, response.text
    assert "released 2.0" in response.text
    assert "docs/released/1.0.zip" in docs_state(root)
    assert "docs/released/2.0.zip" in docs_state(root)
    with httpx.Client(base_url=srv.url, timeout=10) as http:
        latest = http.get("/docs/released/")
        assert latest.status_code == 302 and latest.headers["location"] == "2.0/"
        assert http.get("/docs/released/1.0/").text == "v1"
        assert "home" in http.get("/docs/released/", follow_redirects=True).text
        listing = http.get("/docs/")
        assert listing.status_code == 200
        assert 'href="http://127.0.0.1' in listing.text and "/docs/released/" in listing.text
        assert "/project/released/" in listing.text
    entries = [e for e in audit_entries(root) if e.action == "docs.upload"]
    assert any(e.project == "released" and e.version == "2.0" and e.user == "ann" for e in entries)


def test_legacy_doc_upload_needs_a_version_or_a_release(srv: Server, root: Path) -> None:
    before = docs_state(root)
    response = legacy(srv, {"name": "no-release-here"}, make_zip(SITE))
    assert response.status_code == 400
    assert response.text.startswith("doc_upload needs a version")
    response = legacy(srv, {"name": "released", "version": "not a version"}, make_zip(SITE))
    assert response.status_code == 400 and "version" in response.text
    assert docs_state(root) == before


def test_plain_post_raw_and_multipart(srv: Server, root: Path) -> None:
    response = post_zip(srv, "Plain.Proj", "1.0.0RC1", make_zip(SITE))
    assert response.status_code == 201, response.text
    assert response.text.strip().endswith("/docs/plain-proj/1.0.0rc1/")
    assert len(response.text.strip().splitlines()) == 1
    response = httpx.post(
        f"{srv.url}/docs/plain-proj/2.0/",
        files={"content": ("docs.zip", make_zip({"html/index.html": "two"}), "application/zip")},
        auth=USER,
    )
    assert response.status_code == 201, response.text
    assert {"docs/plain-proj/1.0.0rc1.zip", "docs/plain-proj/2.0.zip"} <= set(docs_state(root))
    with httpx.Client(base_url=srv.url, timeout=10) as http:
        # Sphinx's html/ directory zipped up: served from inside it.
        assert http.get("/docs/plain-proj/2.0/").text == "two"
        # Names and versions normalized by redirects.
        moved = http.get("/docs/Plain.Proj/1.0.0RC1/guide/")
        assert (
            moved.status_code == 301
            and moved.headers["location"] == "../../../plain-proj/1.0.0RC1/guide/"
        )
        assert http.get("/docs/Plain.Proj/1.0.0RC1/guide/", follow_redirects=True).text == (
            "<html>guide</html>"
        )


def test_browsing_members(srv: Server) -> None:
    assert post_zip(srv, "browse", "1.0", make_zip(SITE)).status_code == 201
    with httpx.Client(base_url=srv.url + "/docs/browse/1.0", timeout=10) as http:
        assert_member(http.get("/"), "text/html; charset=utf-8")
        assert_member(http.get("/guide/"), "text/html; charset=utf-8")
        assert http.get("/guide/").text == "<html>guide</html>"
        assert_member(http.get("/guide/install.html"), "text/html; charset=utf-8")
        script = http.get("/_static/app.js")
        assert_member(script, script.headers["content-type"])
        assert script.headers["content-type"] in (
            "text/javascript; charset=utf-8",
            "application/javascript; charset=utf-8",  # an older /etc/mime.types
        )
        assert_member(http.get("/_static/style.css"), "text/css; charset=utf-8")
        assert_member(http.get("/_static/logo.png"), "image/png")
        assert_member(http.get("/objects.inv"), "application/octet-stream")
        directory = http.get("/guide")
        assert directory.status_code == 301 and directory.headers["location"] == "guide/"
        missing = http.get("/nothing.html")
        assert missing.status_code == 404 and "text/html" in missing.headers["content-type"]
        page = http.get("/")
        again = http.get("/", headers={"If-None-Match": page.headers["etag"]})
        assert again.status_code == 304 and again.headers["content-security-policy"] == SANDBOX
        head = http.head("/guide/install.html")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(SITE["guide/install.html"]))
    assert httpx.get(srv.url + "/docs/browse/9.9/").status_code == 404
    # Paths are looked up among the zip's members, never on a file system.
    for escape in ("../../../etc/passwd", "..%2f..%2fetc/passwd", "%2e%2e/%2e%2e/index.html"):
        answer = srv.raw(f"GET /docs/browse/1.0/{escape} HTTP/1.1")
        assert answer.status in (400, 404), (escape, answer.status)
    assert httpx.get(srv.url + "/docs/browse").headers["location"] == "browse/"
    assert httpx.get(srv.url + "/docs").headers["location"] == "docs/"


def test_replacing_a_version(srv: Server) -> None:
    assert post_zip(srv, "replace-me", "1.0", make_zip({"index.html": "first"})).status_code == 201
    first = httpx.get(srv.url + "/docs/replace-me/1.0/")
    assert first.text == "first"
    assert post_zip(srv, "replace-me", "1.0", make_zip({"index.html": "second"})).status_code == 201
    second = httpx.get(srv.url + "/docs/replace-me/1.0/")
    assert second.text == "second"
    assert second.headers["etag"] != first.headers["etag"]


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_zips_are_refused_with_nothing_stored(srv: Server, root: Path, case: str) -> None:
    before = docs_state(root)
    response = post_zip(srv, "hostile", "1.0", HOSTILE[case])
    assert response.status_code == 400, (case, response.text)
    assert len(response.text.strip().splitlines()) == 1
    response = legacy(srv, {"name": "hostile", "version": "1.0"}, HOSTILE[case])
    assert response.status_code == 400, (case, response.text)
    assert docs_state(root) == before
    assert httpx.get(srv.url + "/docs/hostile/1.0/").status_code == 404


def test_too_large_and_unauthorized(srv: Server, root: Path) -> None:
    before = docs_state(root)
    big = os.urandom(MAX_UPLOAD + 1024)
    assert post_zip(srv, "big", "1.0", big).status_code == 413
    assert legacy(srv, {"name": "big", "version": "1.0"}, big).status_code == 413
    assert post_zip(srv, "anon", "1.0", make_zip(SITE), auth=None).status_code == 401
    assert (
        legacy(srv, {"name": "anon", "version": "1"}, make_zip(SITE), auth=None).status_code == 401
    )
    assert post_zip(srv, "anon", "1.0", make_zip(SITE), auth=("ann", "wrong")).status_code in (
        401,
        403,
    )
    wrong_type = httpx.post(
        srv.url + "/docs/x/1.0/", content=b"x", auth=USER, headers={"Content-Type": "text/plain"}
    )
    assert wrong_type.status_code == 415
    assert docs_state(root) == before


def test_a_token_scoped_elsewhere_is_refused(srv: Server, root: Path) -> None:
    _token, secret = create_token(srv, USER[0], projects=["elsewhere"])
    response = post_zip(srv, "released", "1.0", make_zip(SITE), auth=(TOKEN_USER, secret))
    assert response.status_code == 403, response.text
    assert secret not in response.text
    response = post_zip(srv, "elsewhere", "1.0", make_zip(SITE), auth=(TOKEN_USER, secret))
    assert response.status_code == 201, response.text


def test_a_second_server_sees_uploads(srv: Server, root: Path, htpasswd: Path) -> None:
    with run_server([root], "-P", str(htpasswd), "-a", "update", "--disable-fallback") as other:
        assert post_zip(srv, "shared", "1.0", make_zip({"index.html": "one"})).status_code == 201
        assert wait_for(lambda: httpx.get(other.url + "/docs/shared/1.0/").text == "one")
        assert post_zip(srv, "shared", "1.0", make_zip({"index.html": "two"})).status_code == 201
        assert wait_for(lambda: httpx.get(other.url + "/docs/shared/1.0/").text == "two")
        assert "/docs/shared/" in httpx.get(other.url + "/docs/").text


def test_an_upload_that_cannot_be_audited_stores_nothing(srv: Server, root: Path) -> None:
    assert post_zip(srv, "audited", "1.0", make_zip(SITE)).status_code == 201  # the audit dir
    before = docs_state(root)
    audit = state_dir(root) / "audit"
    kept = audit.with_name("audit-kept")
    audit.rename(kept)
    audit.write_text("not a directory\n")  # no entry can be written, as root too
    try:
        response = post_zip(srv, "audited", "2.0", make_zip(SITE))
        assert response.status_code == 507, response.text
        assert USER[1] not in response.text
        response = legacy(srv, {"name": "audited", "version": "3.0"}, make_zip(SITE))
        assert response.status_code == 507, response.text
    finally:
        audit.unlink()
        kept.rename(audit)
    assert docs_state(root) == before
    assert httpx.get(srv.url + "/docs/audited/2.0/").status_code == 404


def test_the_cli_removes_docs(srv: Server, root: Path) -> None:
    assert post_zip(srv, "removable", "1.0", make_zip(SITE)).status_code == 201
    assert post_zip(srv, "removable", "2.0", make_zip(SITE)).status_code == 201
    result = creamery("docs", "remove", "Removable", "2.0", root)
    assert result.returncode == 0, describe(result)
    assert "removable 2.0" in result.stdout
    assert wait_for(lambda: httpx.get(srv.url + "/docs/removable/2.0/").status_code == 404)
    assert httpx.get(srv.url + "/docs/removable/").headers["location"] == "1.0/"
    result = creamery("docs", "remove", "removable", "2.0", root)
    assert result.returncode != 0 and "no documentation of removable 2.0" in result.stderr
    result = creamery("docs", "remove", "removable", root)
    assert result.returncode == 0, describe(result)
    assert wait_for(lambda: httpx.get(srv.url + "/docs/removable/").status_code == 404)
    assert not [p for p in docs_state(root) if p.startswith("docs/removable/")]
    entries = [e for e in audit_entries(root) if e.action == "docs.remove"]
    assert [e.version for e in entries if e.project == "removable"] == ["2.0", None]


# ---------------------------------------------------------------------- hidden projects


@pytest.fixture(scope="module")
def guarded(base: Path, htpasswd: Path) -> Iterator[Server]:
    root = base / "guarded"
    root.mkdir()
    permissions = base / "perms.toml"
    permissions.write_text(PERMISSIONS)
    with run_server(
        [root],
        "-P",
        str(htpasswd),
        "-a",
        "update",
        "--permissions",
        str(permissions),
        "--disable-fallback",
    ) as server:
        yield server


def test_hidden_docs_answer_like_unknown(guarded: Server) -> None:
    assert post_zip(guarded, "secret-thing", "1.0", make_zip(SITE)).status_code == 201
    assert post_zip(guarded, "public-thing", "1.0", make_zip(SITE)).status_code == 201
    for path in ("/docs/{}/", "/docs/{}/1.0/", "/docs/{}/1.0/guide/install.html", "/docs/{}"):
        hidden = httpx.get(guarded.url + path.format("secret-thing"))
        unknown = httpx.get(guarded.url + path.format("secret-other"))
        assert hidden.status_code == unknown.status_code == 404, path
        # The same but for the name (the sign-in link comes back to the path asked for).
        assert hidden.text.replace("secret-thing", "N") == unknown.text.replace("secret-other", "N")
        volatile = {"date", "etag", "x-creamery-serial"}
        assert {k: v for k, v in hidden.headers.items() if k not in volatile} == {
            k: v for k, v in unknown.headers.items() if k not in volatile
        }
    listing = httpx.get(guarded.url + "/docs/").text
    assert "public-thing" in listing and "secret-thing" not in listing
    seen = httpx.get(guarded.url + "/docs/secret-thing/1.0/", auth=USER)
    assert (
        seen.status_code == 200
        and "secret-thing" in httpx.get(guarded.url + "/docs/", auth=USER).text
    )
    # bob may read nothing and upload nothing here.
    assert post_zip(guarded, "public-thing", "2.0", make_zip(SITE), auth=OTHER).status_code == 403


# ---------------------------------------------------------------------- a bucket


def test_docs_in_a_bucket(s3: S3Server, s3_bucket: str) -> None:
    with run_server(
        [f"s3://{s3_bucket}/pkgs"], "-a", ".", "-P", ".", "--disable-fallback", env=s3.env()
    ) as server:
        data = make_zip(SITE)
        response = post_zip(server, "in-bucket", "1.0", data, auth=None)
        assert response.status_code == 201, response.text
        keys = [k for k in s3.keys(s3_bucket) if k.endswith("docs/in-bucket/1.0.zip")]
        assert len(keys) == 1, s3.keys(s3_bucket)
        assert s3.get(s3_bucket, keys[0]) == data
        page = httpx.get(server.url + "/docs/in-bucket/1.0/guide/install.html")
        assert_member(page, "text/html; charset=utf-8")
        assert page.text == "<html>install</html>"
        # A replacement is a new object version: never the old zip from the cache.
        replaced = make_zip({"index.html": "replaced"})
        assert post_zip(server, "in-bucket", "1.0", replaced, auth=None).status_code == 201
        assert httpx.get(server.url + "/docs/in-bucket/1.0/").text == "replaced"
        assert s3.get(s3_bucket, keys[0]) == replaced


def test_docs_need_sign_in_when_listing_does(base: Path, htpasswd: Path) -> None:
    root = base / "listing-guarded"
    root.mkdir()
    with run_server(
        [root], "-P", str(htpasswd), "-a", "update,list", "--disable-fallback"
    ) as server:
        assert post_zip(server, "private-docs", "1.0", make_zip(SITE)).status_code == 201
        for path in ("/docs/", "/docs/private-docs/1.0/guide/"):
            anonymous = httpx.get(server.url + path)
            assert anonymous.status_code == 303, path
            assert "-/signin?next=" in anonymous.headers["location"]
        page = httpx.get(server.url + "/docs/private-docs/1.0/guide/", auth=USER)
        assert_member(page, "text/html; charset=utf-8")
