"""Signing in with the form, the session cookie, CSRF, and the signed-in pages (manage a
project's releases, API tokens), against `creamery run` processes with httpx and twine.

The session is a signed cookie (`catalog/sessions.py`): these tests check its flags, that a
tampered, expired or outdated one (the password changed) counts for nothing, that it is
credentials for pages and downloads but never for an upload, and that every form refuses a
request without its CSRF token or from another site, changing nothing.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.access_state import audit_entries, create_token, root_of
from support.clients import describe, twine_upload
from support.dists import make_sdist, make_wheel
from support.forms import upload
from support.s3 import S3Server
from support.servers import Server, run_server
from support.wire import listed

from creamery.catalog.auth import HtpasswdFile, add_user
from creamery.catalog.sessions import COOKIE, Signer, cookie_values, load_key
from creamery.catalog.tokens import TOKEN_USER
from creamery.storage.state import StateDir
from creamery.web.ui.session import EXPIRED, safe_next

USER, PASSWORD = "alice", "alice-Pa55word"
READER, READER_PASSWORD = "bob", "bob-Pa55word"
CHANGER, CHANGER_PASSWORD = "carol", "carol-Pa55word"
CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ui-session")


@pytest.fixture(scope="module")
def htpasswd(base: Path) -> Path:
    path = base / "htpasswd"
    for user, password in ((USER, PASSWORD), (READER, READER_PASSWORD)):
        add_user(path, user, password, rounds=4)
    add_user(path, CHANGER, CHANGER_PASSWORD, rounds=4)
    return path


@pytest.fixture(scope="module")
def root(base: Path) -> Path:
    root = base / "root"
    for name, version in (("demo", "1.0"), ("demo", "2.0"), ("keep", "1.0"), ("gone", "1.0")):
        make_wheel(root, name, version, summary=f"{name} for the session tests")
    make_sdist(root, "demo", "1.0", summary="demo for the session tests")
    make_sdist(root, "gone", "1.0", summary="gone for the session tests")
    make_wheel(root, "gone", "2.0", summary="gone for the session tests")
    make_sdist(root, "gone", "2.0", summary="gone for the session tests")
    return root


@pytest.fixture(scope="module")
def server(root: Path, htpasswd: Path) -> Iterator[Server]:
    """Everything needs credentials: a session must do for pages and downloads."""
    args = ("-P", str(htpasswd), "-a", "update,list,download", "--disable-fallback")
    with run_server([root], *args) as running:
        yield running


@contextlib.contextmanager
def sign_in(server: Server, user: str = USER, password: str = PASSWORD) -> Iterator[httpx.Client]:
    """A client signed in with the form (its cookie jar holds the session)."""
    with server.client() as client:
        answer = client.post(
            "/-/signin",
            data={"username": user, "password": password, "next": "/"},
            headers={"origin": server.url},
        )
        assert answer.status_code == 303, answer.text
        assert COOKIE in client.cookies
        yield client


def csrf_of(page: httpx.Response) -> str:
    assert page.status_code == 200, page.text
    found = CSRF.search(page.text)
    assert found is not None and found[1], page.text
    return found[1]


def set_cookie(answer: httpx.Response) -> str:
    (line,) = [v for k, v in answer.headers.multi_items() if k == "set-cookie"]
    return line


def sent_to_sign_in(answer: httpx.Response) -> bool:
    return answer.status_code == 303 and "-/signin?next=" in answer.headers["location"]


# ---------------------------------------------------------------------- pure parts


def test_signer_round_trip_tamper_expiry_and_credential() -> None:
    credentials = {"alice": b"hash-1"}
    signer = Signer(b"k" * 32, credentials.get)
    value = signer.issue("alice", now=1000.0)
    assert value is not None
    assert signer.user(value, now=1001.0) == "alice"
    assert signer.user(value, now=1000.0 + signer.lifetime) is None  # expired
    user, expiry, nonce, mac = value.split(".")
    assert signer.user(f"{user}.{int(expiry) + 60}.{nonce}.{mac}", now=1001.0) is None
    flipped = mac[:-2] + ("A" if mac[-2] != "A" else "B") + mac[-1]
    assert signer.user(f"{user}.{expiry}.{nonce}.{flipped}", now=1001.0) is None
    assert signer.user(f"{user}.{expiry}.AAAA.{mac}", now=1001.0) is None
    assert signer.issue("alice", now=1000.0) != value  # every sign-in its own
    assert Signer(b"x" * 32, credentials.get).user(value, now=1001.0) is None  # another key
    credentials["alice"] = b"hash-2"  # a new password
    assert signer.user(value, now=1001.0) is None
    assert signer.issue("nobody") is None
    for junk in ("", "a.b", "a.1.c", "a.1.c.d.e", "%%.1.%%.%%", "x" * 5000):
        assert signer.user(junk) is None
    assert signer.csrf("session:" + value) != signer.csrf("user:alice")
    assert signer.csrf_matches("user:alice", signer.csrf("user:alice"))
    assert not signer.csrf_matches("user:alice", "")


def test_the_session_key_is_made_once_private_and_shared(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = load_key(StateDir(tmp_path / "state").store, tmp_path / "state")
    again = load_key(StateDir(tmp_path / "state").store, tmp_path / "state")
    assert len(first) == 32 and again == first
    assert (tmp_path / "state" / "access" / "session-key").stat().st_mode & 0o777 == 0o600
    (tmp_path / "file").write_text("not a directory")
    with caplog.at_level(logging.WARNING, "creamery.sessions"):
        alone = load_key(StateDir(tmp_path / "file" / "state").store)
    assert len(alone) == 32 and alone != first
    (line,) = [r.getMessage() for r in caplog.records]
    assert "this process only" in line and first.hex() not in line


def test_cookie_values_and_safe_next() -> None:
    assert cookie_values(f'a=1; {COOKIE}=v1;b=2; {COOKIE}="v2"') == ["v1", "v2"]
    assert cookie_values("a=1") == []
    for wrong in ("//evil.example", "https://evil.example/", "/\\evil", "\\\\evil", "", None):
        assert safe_next(wrong) == "/"
    assert safe_next("/\t/evil.example") == "/"
    assert safe_next("/project/demo/?x=1") == "/project/demo/?x=1"


# ---------------------------------------------------------------------- signing in and out


def test_sign_in_sets_a_session_cookie_and_sign_out_clears_it(server: Server) -> None:
    with server.client() as client:
        form = client.get("/-/signin?next=/project/demo/")
        assert form.status_code == 200
        for field in ('name="username"', 'name="password"', 'name="next"'):
            assert field in form.text
        answer = client.post(
            "/-/signin",
            data={"username": USER, "password": PASSWORD, "next": "/project/demo/"},
        )
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"] == server.url + "/project/demo/"
        cookie = set_cookie(answer)
        assert cookie.startswith(COOKIE + "=")
        flags = [part.strip() for part in cookie.split(";")]
        assert {"HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=43200"} <= set(flags)
        assert "Secure" not in flags  # plain http
        value = client.cookies[COOKIE]
        assert client.get("/manage/account/tokens/").status_code == 200
        out = client.get("/-/signout")
        cleared = client.post("/-/signout", data={"csrf_token": csrf_of(out)})
        assert cleared.status_code == 303
        assert "Max-Age=0" in set_cookie(cleared)
        assert COOKIE not in client.cookies
        assert sent_to_sign_in(client.get("/manage/account/tokens/"))
    entries = [e for e in audit_entries(root_of(server)) if e.action == "login"]
    assert entries and entries[-1].user == USER and entries[-1].client == "127.0.0.1"
    assert value not in server.log()
    assert all(value not in e.to_json() for e in audit_entries(root_of(server)))


def test_a_wrong_password_is_403_with_the_user_name_kept(server: Server) -> None:
    with server.client() as client:
        answer = client.post("/-/signin", data={"username": USER, "password": "nope", "next": "/"})
        assert answer.status_code == 403
        assert f'value="{USER}"' in answer.text
        assert "wrong password" in answer.text
        assert COOKIE not in client.cookies
        token = client.post(
            "/-/signin", data={"username": TOKEN_USER, "password": "creamery-x", "next": "/"}
        )
        assert token.status_code == 403 and "can&#39;t sign in here" in token.text
    failed = [e for e in audit_entries(root_of(server)) if e.action == "login.failed"]
    assert any(e.user == USER for e in failed)
    assert "nope" not in server.log()


@pytest.mark.parametrize(
    "target",
    ["//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"],
)
def test_next_never_leaves_the_index(server: Server, target: str) -> None:
    with server.client() as client:
        answer = client.post(
            "/-/signin", data={"username": USER, "password": PASSWORD, "next": target}
        )
        assert answer.status_code == 303
        assert answer.headers["location"] == server.url + "/"


def test_the_cookie_is_secure_behind_https_and_scoped_to_the_prefix(server: Server) -> None:
    with server.client() as client:
        headers = {"x-forwarded-proto": "https", "x-forwarded-prefix": "/idx"}
        answer = client.post(
            "/-/signin",
            data={"username": USER, "password": PASSWORD, "next": "/"},
            headers=headers,
        )
        assert answer.status_code == 303, answer.text
        host = server.url.partition("://")[2]
        assert answer.headers["location"] == f"https://{host}/idx/"
        flags = [part.strip() for part in set_cookie(answer).split(";")]
        assert "Secure" in flags and "Path=/idx/" in flags


def test_sign_in_from_another_site_is_refused(server: Server) -> None:
    data = {"username": USER, "password": PASSWORD, "next": "/"}
    for headers in ({"origin": "https://evil.example"}, {"sec-fetch-site": "cross-site"}):
        with server.client() as client:
            answer = client.post("/-/signin", data=data, headers=headers)
            assert answer.status_code == 403 and EXPIRED in answer.text
            assert COOKIE not in client.cookies


def test_throttled_after_failed_sign_ins(htpasswd: Path, tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    with run_server([tmp_path / "root"], "-P", str(htpasswd)) as alone, alone.client() as client:
        data = {"username": USER, "password": "wrong", "next": "/"}
        statuses = [client.post("/-/signin", data=data).status_code for _ in range(11)]
        assert statuses[:10] == [403] * 10
        assert statuses[10] == 429
        right = client.post("/-/signin", data={"username": USER, "password": PASSWORD, "next": "/"})
        assert right.status_code == 429 and int(right.headers["retry-after"]) > 0
        assert COOKIE not in client.cookies


# ---------------------------------------------------------------------- what a session is worth


def test_tampered_expired_and_outdated_cookies_are_anonymous(
    server: Server, htpasswd: Path
) -> None:
    with sign_in(server) as client:
        value = client.cookies[COOKIE]
    user, expiry, nonce, mac = value.split(".")
    flipped = mac[:5] + ("A" if mac[5] != "A" else "B") + mac[6:]
    key_file = root_of(server) / ".creamery" / "access" / "session-key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = key_file.read_bytes()
    expired = Signer(key, HtpasswdFile(htpasswd).entry_digest).issue(
        USER, now=time.time() - 13 * 3600
    )
    assert expired is not None
    longer = f"{user}.{int(expiry) + 3600}.{nonce}.{mac}"
    with server.client() as anonymous:
        good = anonymous.get("/manage/account/tokens/", headers={"cookie": f"{COOKIE}={value}"})
        assert good.status_code == 200
        for bad in (f"{user}.{expiry}.{nonce}.{flipped}", expired, longer, "junk"):
            answer = anonymous.get("/manage/account/tokens/", headers={"cookie": f"{COOKIE}={bad}"})
            assert sent_to_sign_in(answer), bad


def test_a_new_password_signs_the_user_out(server: Server, htpasswd: Path) -> None:
    with sign_in(server, CHANGER, CHANGER_PASSWORD) as client, sign_in(server) as other:
        assert client.get("/manage/account/tokens/").status_code == 200
        add_user(htpasswd, CHANGER, "carol-new-Pa55word", rounds=4)
        assert sent_to_sign_in(client.get("/manage/account/tokens/"))
        assert other.get("/manage/account/tokens/").status_code == 200  # others stay


def test_a_session_reads_and_downloads_but_never_uploads(server: Server, tmp_path: Path) -> None:
    with sign_in(server) as client:
        assert client.get("/simple/").status_code == 200
        assert client.get("/simple/demo/").status_code == 200
        assert client.get("/packages/demo-1.0-py3-none-any.whl").status_code == 200
        cookie = {"cookie": f"{COOKIE}={client.cookies[COOKIE]}"}
    assert httpx.get(server.url + "/simple/").status_code == 401
    wheel = make_wheel(tmp_path, "by-cookie", "1.0")
    answer = upload(server, wheel.name, wheel.read_bytes(), headers=cookie)
    assert answer.status_code == 401
    assert listed(server, "by-cookie", auth=(USER, PASSWORD)) == {}


def test_two_servers_over_one_root_share_the_session_key(server: Server, htpasswd: Path) -> None:
    with sign_in(server) as client:
        cookie = {"cookie": f"{COOKIE}={client.cookies[COOKIE]}"}
    args = ("-P", str(htpasswd), "-a", "update,list,download", "--disable-fallback")
    with run_server([root_of(server)], *args) as second, second.client() as other:
        assert other.get("/manage/account/tokens/", headers=cookie).status_code == 200


# ---------------------------------------------------------------------- managing releases


def yanked(server: Server, project: str) -> dict[str, object]:
    files = listed(server, project, auth=(USER, PASSWORD))
    return {name: entry.get("yanked", False) for name, entry in files.items()}


def test_forms_without_their_token_or_from_another_site_change_nothing(server: Server) -> None:
    with sign_in(server) as client:
        token = csrf_of(client.get("/manage/project/demo/"))
        data = {"version": "2.0", "reason": "no"}
        attempts = [
            ({}, {}),
            ({"csrf_token": "wrong"}, {}),
            ({"csrf_token": token}, {"origin": "https://evil.example"}),
            ({"csrf_token": token}, {"sec-fetch-site": "cross-site"}),
        ]
        for extra, headers in attempts:
            answer = client.post(
                "/manage/project/demo/yank", data={**data, **extra}, headers=headers
            )
            assert answer.status_code == 403, (extra, headers)
            assert EXPIRED in answer.text
        # A token is bound to its session: another session's does not do.
        with sign_in(server) as second:
            answer = second.post("/manage/project/demo/yank", data={**data, "csrf_token": token})
            assert answer.status_code == 403
    assert not any(yanked(server, "demo").values())


def test_yank_with_a_reason_and_unyank(server: Server) -> None:
    with sign_in(server) as client:
        page = client.get("/manage/project/demo/")
        assert 'data-version="1.0"' in page.text and "Yank release" in page.text
        assert page.headers["cache-control"] == "no-store"
        token = csrf_of(page)
        answer = client.post(
            "/manage/project/demo/yank",
            data={"csrf_token": token, "version": "1.0", "reason": "broken on 3.12"},
        )
        assert answer.status_code == 303 and answer.headers["location"] == "./?done=yanked"
        states = yanked(server, "demo")
        assert states["demo-1.0-py3-none-any.whl"] == "broken on 3.12"
        assert states["demo-1.0.tar.gz"] == "broken on 3.12"
        assert states["demo-2.0-py3-none-any.whl"] is False
        shown = client.get("/manage/project/demo/?done=yanked")
        assert "Yanked." in shown.text and "broken on 3.12" in shown.text
        entry = [e for e in audit_entries(root_of(server)) if e.action == "yank"][-1]
        assert (entry.user, entry.project, entry.version) == (USER, "demo", "1.0")
        assert entry.reason == "broken on 3.12"
        too_long = client.post(
            "/manage/project/demo/yank",
            data={"csrf_token": token, "version": "2.0", "reason": "x" * 1001},
        )
        assert too_long.status_code == 400
        back = client.post(
            "/manage/project/demo/unyank", data={"csrf_token": token, "version": "1.0"}
        )
        assert back.status_code == 303
        assert not any(yanked(server, "demo").values())
        one = client.post(
            "/manage/project/demo/yank",
            data={"csrf_token": token, "version": "1.0", "filename": "demo-1.0.tar.gz"},
        )
        assert one.status_code == 303
        states = yanked(server, "demo")
        assert states["demo-1.0.tar.gz"] is True or states["demo-1.0.tar.gz"] == ""
        assert states["demo-1.0-py3-none-any.whl"] is False
        client.post(
            "/manage/project/demo/unyank",
            data={"csrf_token": token, "version": "1.0", "filename": "demo-1.0.tar.gz"},
        )
    assert not any(yanked(server, "demo").values())


def test_basic_credentials_work_on_the_forms_too(server: Server) -> None:
    """A visitor whose browser sends Basic credentials: the token is bound to the user name."""
    with server.client(auth=(USER, PASSWORD)) as client:
        token = csrf_of(client.get("/manage/project/keep/"))
        data = {"csrf_token": token, "version": "1.0", "reason": "basic"}
        assert client.post("/manage/project/keep/yank", data=data).status_code == 303
        assert yanked(server, "keep") == {"keep-1.0-py3-none-any.whl": "basic"}
        data["csrf_token"] = "wrong"
        assert client.post("/manage/project/keep/unyank", data=data).status_code == 403
        data["csrf_token"] = token
        assert client.post("/manage/project/keep/unyank", data=data).status_code == 303
        assert yanked(server, "keep") == {"keep-1.0-py3-none-any.whl": False}


def test_every_cookie_header_is_read(server: Server) -> None:
    """HTTP/2 may send one Cookie header per cookie: the session is found in any of them."""
    with sign_in(server) as client:
        value = client.cookies[COOKIE]
    host = server.url.partition("://")[2]
    headers = [f"Host: {host}", "Cookie: theme=dark", f"Cookie: {COOKIE}={value}"]
    answer = server.raw("GET /manage/account/tokens/ HTTP/1.1", headers)
    assert answer.status == 200, answer


def test_delete_a_file_and_a_release_after_confirmation(server: Server) -> None:
    with sign_in(server) as client:
        confirm = client.get("/manage/project/gone/delete?version=1.0&filename=gone-1.0.tar.gz")
        assert 'data-filename="gone-1.0.tar.gz"' in confirm.text
        assert "gone-1.0-py3-none-any.whl" not in confirm.text
        token = csrf_of(confirm)
        one = {"csrf_token": token, "version": "1.0", "filename": "gone-1.0.tar.gz"}
        wrong = client.post("/manage/project/gone/delete", data={**one, "confirm": "gon"})
        assert wrong.status_code == 400 and "to confirm" in wrong.text
        assert "gone-1.0.tar.gz" in listed(server, "gone", auth=(USER, PASSWORD))
        done = client.post("/manage/project/gone/delete", data={**one, "confirm": "gone"})
        assert done.status_code == 303 and done.headers["location"] == "./?done=deleted"
        files = listed(server, "gone", auth=(USER, PASSWORD))
        assert "gone-1.0.tar.gz" not in files and "gone-1.0-py3-none-any.whl" in files
        release = client.get("/manage/project/gone/delete?version=2.0")
        assert release.text.count("data-filename=") == 2
        data = {"csrf_token": token, "version": "2.0", "confirm": "gone"}
        assert client.post("/manage/project/gone/delete", data=data).status_code == 303
        assert set(listed(server, "gone", auth=(USER, PASSWORD))) == {"gone-1.0-py3-none-any.whl"}
    removals = [e for e in audit_entries(root_of(server)) if e.action == "remove"]
    assert any(e.filename == "gone-1.0.tar.gz" and e.user == USER for e in removals)
    assert any(e.version == "2.0" and e.filename is None for e in removals)


def test_unknown_project_and_non_normalized_name(server: Server) -> None:
    with sign_in(server) as client:
        assert client.get("/manage/project/nothing-here/").status_code == 404
        moved = client.get("/manage/project/Demo/")
        assert moved.status_code == 301 and moved.headers["location"] == "../demo/"


# ---------------------------------------------------------------------- tokens


def test_a_token_made_in_the_browser_uploads_with_twine_until_revoked(
    server: Server, tmp_path: Path
) -> None:
    with sign_in(server) as client:
        token = csrf_of(client.get("/manage/account/tokens/"))
        made = client.post(
            "/manage/account/tokens/",
            data={
                "csrf_token": token,
                "description": "ci",
                "projects": "Tok-Web, other_one",
                "actions": ["upload", "list"],
                "expires": "30d",
            },
        )
        assert made.status_code == 200, made.text
        assert made.headers["cache-control"] == "no-store"
        found = re.search(r'<code id="new-token">(creamery-[^<]+)</code>', made.text)
        assert found is not None
        secret = found[1]
        assert f'data-copy="{secret}"' in made.text
        again = client.get("/manage/account/tokens/")
        assert secret not in again.text, again.text[again.text.find(secret) - 300 :][:400]
        assert "other-one, tok-web" in again.text
        wheel = make_wheel(tmp_path, "tok-web", "1.0")
        result = twine_upload(
            server.url + "/", tmp_path / "home", wheel, user=TOKEN_USER, password=secret
        )
        assert result.returncode == 0, describe(result)
        assert wheel.name in listed(server, "tok-web", auth=(USER, PASSWORD))
        # A token can't manage anything in the browser.
        as_token = httpx.get(server.url + "/manage/project/demo/", auth=(TOKEN_USER, secret))
        assert as_token.status_code == 403 and "sign in with your password" in as_token.text
        token_id = secret.removeprefix("creamery-").partition("_")[0]
        revoked = client.post(
            f"/manage/account/tokens/{token_id}/revoke", data={"csrf_token": csrf_of(again)}
        )
        assert revoked.status_code == 303 and revoked.headers["location"] == "../?done=revoked"
        assert token_id not in client.get("/manage/account/tokens/").text
        later = make_wheel(tmp_path, "tok-web", "2.0")
        refused = twine_upload(
            server.url + "/", tmp_path / "home", later, user=TOKEN_USER, password=secret
        )
        assert refused.returncode != 0
        assert "401" in refused.stdout + refused.stderr or "403" in refused.stdout + refused.stderr
    assert secret not in server.log()
    assert all(secret not in e.to_json() for e in audit_entries(root_of(server)))


def test_a_bad_token_form_is_shown_again(server: Server) -> None:
    with sign_in(server) as client:
        token = csrf_of(client.get("/manage/account/tokens/"))
        answer = client.post(
            "/manage/account/tokens/",
            data={"csrf_token": token, "projects": "not a/name", "expires": "90d"},
        )
        assert answer.status_code == 400 and "invalid project name" in answer.text
        assert 'id="new-token"' not in answer.text
        other = client.post(
            "/manage/account/tokens/", data={"csrf_token": token, "expires": "forever"}
        )
        assert other.status_code == 400


def test_someone_elses_token_is_not_found(server: Server) -> None:
    theirs, _secret = create_token(server, READER, description="bob's")
    with sign_in(server) as client:
        token = csrf_of(client.get("/manage/account/tokens/"))
        answer = client.post(
            f"/manage/account/tokens/{theirs.id}/revoke", data={"csrf_token": token}
        )
        assert answer.status_code == 404
        assert theirs.id not in client.get("/manage/account/tokens/").text


# ---------------------------------------------------------------------- rights


PERMISSIONS = f"""\
[[rules]]
user = "{USER}"
role = "maintainer"
projects = ["*"]

[[rules]]
user = "{READER}"
role = "reader"
projects = ["demo"]
"""


def test_a_reader_sees_no_controls_and_may_not_post(root: Path, htpasswd: Path, base: Path) -> None:
    permissions = base / "perms.toml"
    permissions.write_text(PERMISSIONS)
    args = ("-P", str(htpasswd), "--permissions", str(permissions), "--disable-fallback")
    with run_server([root], *args) as guarded, sign_in(guarded, READER, READER_PASSWORD) as client:
        page = client.get("/manage/project/demo/")
        assert page.status_code == 200 and 'id="no-rights"' in page.text
        assert "Yank release" not in page.text and "Delete release" not in page.text
        token = csrf_of(client.get("/-/signout"))  # a page with a form: its token is good
        answer = client.post(
            "/manage/project/demo/yank", data={"csrf_token": token, "version": "2.0"}
        )
        assert answer.status_code == 403 and "may not yank" in answer.text
        assert client.get("/manage/project/demo/delete?version=2.0").status_code == 403
        hidden = client.get("/manage/project/keep/")
        unknown = client.get("/manage/project/kept/")
        assert hidden.status_code == unknown.status_code == 404
        assert hidden.text.replace("keep", "kept") == unknown.text
        assert not any(yanked(guarded, "demo").values())


def test_replicas_over_one_bucket_share_the_session_key(
    s3: S3Server, s3_bucket: str, htpasswd: Path
) -> None:
    """The key is in the bucket's state (made put-if-absent by whichever replica came first):
    a sign-in at one replica holds at the other."""
    root = f"s3://{s3_bucket}/pkgs"
    args = ("-P", str(htpasswd), "-a", "update", "--disable-fallback")
    with (
        run_server([root], *args, env=s3.env()) as one,
        run_server([root], *args, env=s3.env()) as two,
    ):
        with sign_in(one) as client:
            cookie = {"cookie": f"{COOKIE}={client.cookies[COOKIE]}"}
        assert httpx.get(two.url + "/manage/account/tokens/", headers=cookie).status_code == 200
        assert "this process only" not in one.log() + two.log()


def test_a_form_posted_signed_out_comes_back_to_its_page_after_signing_in(server: Server) -> None:
    """A POST can't be repeated after the sign-in: the visitor returns to the nearest page
    above the form's URL (its own page would answer 405 to the browser's GET)."""
    with server.client() as client:
        yank = client.post("/manage/project/demo/yank", data={"version": "1.0"})
        revoke = client.post("/manage/account/tokens/0123456789ab/revoke", data={})
        page = client.get("/manage/project/demo/?done=yanked")
    assert sent_to_sign_in(yank)
    assert yank.headers["location"] == "../../../-/signin?next=/manage/project/demo/"
    assert revoke.headers["location"].endswith("-/signin?next=/manage/account/tokens/")
    assert page.headers["location"].endswith("-/signin?next=/manage/project/demo/%3Fdone%3Dyanked")


def test_serving_writes_no_key_until_the_first_sign_in(htpasswd: Path, tmp_path: Path) -> None:
    """A pypiserver root that is only served stays as it was: the session key is made by the
    first sign-in (private to the server's user), not by starting or by a stray cookie."""
    root = tmp_path / "packages"
    root.mkdir()
    make_sdist(root, "demo", "1.0", summary="demo")
    with run_server([root], "-P", str(htpasswd), "-a", "update") as running:
        junk = {"cookie": f"{COOKIE}=a.b.c.d"}
        assert httpx.get(running.url + "/project/demo/", headers=junk).status_code == 200
        assert sorted(p.name for p in root.iterdir()) == ["demo-1.0.tar.gz"]
        with sign_in(running) as client:
            assert client.get("/manage/account/tokens/").status_code == 200
    key = root / ".creamery" / "access" / "session-key"
    assert key.stat().st_mode & 0o777 == 0o600
