"""The account endpoints over HTTP (issue 12): a signed-in user's tokens (create, use, list,
revoke), the audit log for admins and project owners, a project's owners; password logins
only, JSON in and out, and every client mistake a 4xx with a one-line reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.dists import make_wheel
from support.forms import upload
from support.servers import Server, run_server

from creamery.catalog.auth import add_user

USERS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw", "admin": "admin-pw"}
JSON = {"Content-Type": "application/json"}
TOKEN_USER = "__token__"

PERMISSIONS = """
[[rules]]
user = "admin"
role = "owner"
projects = ["*", "secret-*"]

[[rules]]
user = "*"
role = "uploader"
projects = ["*"]

[[rules]]
user = "anonymous"
role = "reader"
projects = ["*"]
"""


def auth(user: str) -> tuple[str, str]:
    return user, USERS[user]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("access-http")
    for user, password in USERS.items():
        add_user(base / "htpasswd", user, password, rounds=4)
    (base / "permissions.toml").write_text(PERMISSIONS)
    return base


@pytest.fixture(scope="module")
def srv(base: Path) -> Iterator[Server]:
    """pypiserver's rules (no permission file): uploads need a user, reads are open."""
    root = base / "root"
    root.mkdir()
    args = ("-P", str(base / "htpasswd"), "-a", "update", "--disable-fallback")
    with run_server([root], *args) as server:
        yield server


@pytest.fixture(scope="module")
def owned(base: Path) -> Iterator[Server]:
    """A permission file (admin owns `*`, every user uploads) and first-uploader ownership."""
    root = base / "owned-root"
    root.mkdir()
    args = ("-P", str(base / "htpasswd"), "--permissions", str(base / "permissions.toml"))
    args += ("--owners", "first-uploader", "--disable-fallback")
    with run_server([root], *args) as server:
        yield server


@pytest.fixture(scope="module")
def client(srv: Server) -> Iterator[httpx.Client]:
    with srv.client() as client:
        yield client


def create(client: httpx.Client, user: str, **fields: Any) -> dict[str, Any]:
    response = client.post("/-/tokens", json=fields, auth=auth(user))
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    created: dict[str, Any] = response.json()
    return created


def upload_wheel(
    server: Server, tmp_path: Path, project: str, version: str, credentials: tuple[str, str]
) -> httpx.Response:
    wheel = make_wheel(tmp_path / "dist", project, version)
    return upload(server, wheel.name, wheel.read_bytes(), auth=credentials)


def assert_one_line(response: httpx.Response, status: int, *fragments: str) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    text: str = response.json()["message"]
    assert "\n" not in text and text.strip() == text and text, text
    for fragment in fragments:
        assert fragment in text, text
    return text


def audit_lines(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-ndjson"
    return [json.loads(line) for line in response.text.splitlines()]


# ----------------------------------------------------------------------------- tokens


def test_a_token_made_over_http_uploads_until_it_is_revoked(
    srv: Server, client: httpx.Client, tmp_path: Path
) -> None:
    created = create(
        client, "alice", description="CI", projects=["Tok_Demo"], actions=["upload"], expires="1d"
    )
    secret = created["token"]
    token_id = created["id"]
    assert secret.startswith(f"creamery-{token_id}_")
    assert created["owner"] == "alice"
    assert created["projects"] == ["tok-demo"]
    assert created["actions"] == ["upload"]
    assert created["expires"] is not None and created["expired"] is False
    assert "digest" not in created

    uploaded = upload_wheel(srv, tmp_path, "tok-demo", "1.0", (TOKEN_USER, secret))
    assert uploaded.status_code == 200, uploaded.text
    outside = upload_wheel(srv, tmp_path, "elsewhere", "1.0", (TOKEN_USER, secret))
    assert outside.status_code == 403
    assert "elsewhere" in outside.text

    listed = client.get("/-/tokens", auth=auth("alice"))
    assert listed.status_code == 200
    assert listed.headers["cache-control"] == "no-store"
    mine = {t["id"]: t for t in listed.json()["tokens"]}
    assert token_id in mine
    assert secret not in listed.text
    assert secret.partition("_")[2] not in listed.text
    assert "digest" not in listed.text
    assert mine[token_id]["description"] == "CI"

    revoked = client.delete(f"/-/tokens/{token_id}", auth=auth("alice"))
    assert revoked.status_code == 200, revoked.text
    assert revoked.json() == {"message": f"revoked {token_id}"}
    again = upload_wheel(srv, tmp_path, "tok-demo", "2.0", (TOKEN_USER, secret))
    assert again.status_code == 401
    relisted = client.get("/-/tokens", auth=auth("alice")).json()["tokens"]
    assert token_id not in {t["id"] for t in relisted}
    assert secret not in srv.log()


def test_the_form_route_revokes_too(client: httpx.Client) -> None:
    token_id = create(client, "alice")["id"]
    response = client.post(
        f"/-/tokens/{token_id}/revoke", data={"x": "1"}, auth=auth("alice")
    )  # an HTML form: url-encoded
    assert response.status_code == 200, response.text
    assert response.json()["message"] == f"revoked {token_id}"


def test_another_users_token_answers_like_an_unknown_one(client: httpx.Client) -> None:
    token_id = create(client, "alice", description="alice's")["id"]
    foreign = client.delete(f"/-/tokens/{token_id}", auth=auth("bob"))
    unknown = client.delete("/-/tokens/0123456789ab", auth=auth("bob"))
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json()["message"].replace(token_id, "ID") == unknown.json()["message"].replace(
        "0123456789ab", "ID"
    )
    assert "alice" not in foreign.text
    for garbage in ("x", "0123456789AB", "%20", "%2e%2e"):
        assert client.delete(f"/-/tokens/{garbage}", auth=auth("bob")).status_code == 404
    # Bob's list does not show it; alice's token still works for her.
    assert token_id not in client.get("/-/tokens", auth=auth("bob")).text
    assert token_id in client.get("/-/tokens", auth=auth("alice")).text


def test_tokens_cant_manage_tokens_or_read_the_audit_log(client: httpx.Client) -> None:
    secret = create(client, "alice", actions=["upload", "list", "download", "yank", "remove"])[
        "token"
    ]
    token = (TOKEN_USER, secret)
    for method, path, body in [
        ("GET", "/-/tokens", None),
        ("POST", "/-/tokens", {}),
        ("DELETE", "/-/tokens/0123456789ab", None),
        ("POST", "/-/tokens/0123456789ab/revoke", None),
        ("GET", "/-/audit", None),
        ("GET", "/-/projects/demo/owners", None),
    ]:
        response = client.request(method, path, json=body, auth=token)
        assert_one_line(response, 403, "sign in with your password, not a token")


def test_account_endpoints_need_credentials_even_with_open_reads(client: httpx.Client) -> None:
    for method, path in [("GET", "/-/tokens"), ("POST", "/-/tokens"), ("GET", "/-/audit")]:
        response = client.request(method, path)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == 'Basic realm="pypi"'
    wrong = client.get("/-/tokens", auth=("alice", "nope"))
    assert wrong.status_code == 403
    bad_token = client.get("/-/tokens", auth=(TOKEN_USER, "creamery-0123456789ab_" + "A" * 43))
    assert bad_token.status_code == 401


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"actions": ["fly"]}, "unknown token action 'fly'"),
        ({"actions": "upload"}, "'actions' must be a list of strings"),
        ({"actions": [1]}, "'actions' must be a list of strings"),
        ({"projects": ["not a name!"]}, "invalid project name"),
        ({"projects": {"a": 1}}, "'projects' must be a list of strings"),
        ({"description": 5}, "'description' must be a string"),
        ({"description": "two\nlines"}, "one line"),
        ({"description": "x" * 201}, "at most 200"),
        ({"expires": -5}, "in the future"),
        ({"expires": 0}, "in the future"),
        ({"expires": "2001-01-01T00:00:00Z"}, "in the future"),
        ({"expires": "soon"}, "invalid duration"),
        ({"expires": True}, "'expires' must be"),
        ({"expires": [1]}, "'expires' must be"),
        ({"expires": 1e300}, "more than"),
        ({"owner": "bob"}, "unknown field 'owner'"),
        ([], "must be a JSON object"),
        ("upload", "must be a JSON object"),
    ],
)
def test_bad_token_requests_are_refused_with_one_line(
    client: httpx.Client, body: object, fragment: str
) -> None:
    response = client.post("/-/tokens", json=body, auth=auth("carol"))
    assert_one_line(response, 400, fragment)
    assert "creamery-" not in response.text


def test_an_iso_expiry_in_the_future_is_taken(client: httpx.Client) -> None:
    created = create(client, "carol", expires="2099-01-01T00:00:00+00:00")
    assert created["expires"] == "2099-01-01T00:00:00Z"
    seconds = create(client, "carol", expires=3600)
    assert seconds["expires"] is not None


def test_bad_bodies_and_content_types(client: httpx.Client) -> None:
    alice = auth("alice")
    assert_one_line(
        client.post("/-/tokens", content=b"{not json", headers=JSON, auth=alice),
        400,
        "not valid JSON",
    )
    assert_one_line(
        client.post("/-/tokens", content=b"\xff\xfe", headers=JSON, auth=alice),
        400,
        "not valid JSON",
    )
    deep = b"[" * 200 + b"]" * 200
    response = client.post("/-/tokens", content=deep, headers=JSON, auth=alice)
    assert 400 <= response.status_code < 500
    # A form or plain text could come from another site's page: JSON only.
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"Content-Type": content_type} if content_type else {}
        response = client.post("/-/tokens", content=b"{}", headers=headers, auth=alice)
        assert_one_line(response, 400, "application/json")
    response = client.request(
        "DELETE", "/-/tokens/0123456789ab", content=b"x=1", headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 401  # the guard first
    response = client.request(
        "DELETE",
        "/-/tokens/0123456789ab",
        content=b"x=1",
        headers={"Content-Type": "text/plain"},
        auth=alice,
    )
    assert_one_line(response, 400, "application/json")
    cross = client.post("/-/tokens", json={}, headers={"Sec-Fetch-Site": "cross-site"}, auth=alice)
    assert_one_line(cross, 403, "another site")
    token_id = create(client, "alice")["id"]
    cross_form = client.post(
        f"/-/tokens/{token_id}/revoke", headers={"Sec-Fetch-Site": "same-site"}, auth=alice
    )
    assert_one_line(cross_form, 403, "another site")
    assert token_id in client.get("/-/tokens", auth=alice).text
    same = client.post(
        f"/-/tokens/{token_id}/revoke", headers={"Sec-Fetch-Site": "same-origin"}, auth=alice
    )
    assert same.status_code == 200


def test_a_huge_body_is_413(srv: Server) -> None:
    # A fresh connection: the server stops reading the body and closes it.
    with srv.client() as client:
        big = b'{"description": "' + b"x" * (2 << 20) + b'"}'
        response = client.post("/-/tokens", content=big, headers=JSON, auth=auth("alice"))
        assert_one_line(response, 413, "larger than")
    with srv.client() as client:

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield b'{"description": "'
            for _ in range(20):
                yield b"x" * (128 << 10)
            yield b'"}'

        response = client.post("/-/tokens", content=chunks(), headers=JSON, auth=auth("alice"))
        assert_one_line(response, 413, "larger than")


def test_the_number_of_tokens_per_user_is_bounded(client: httpx.Client) -> None:
    user = "bob"
    existing = len(client.get("/-/tokens", auth=auth(user)).json()["tokens"])
    for _ in range(100 - existing):
        create(client, user)
    refused = client.post("/-/tokens", json={}, auth=auth(user))
    assert_one_line(refused, 409, "revoke some first")
    # Revoking makes room again.
    first = client.get("/-/tokens", auth=auth(user)).json()["tokens"][0]["id"]
    assert client.delete(f"/-/tokens/{first}", auth=auth(user)).status_code == 200
    create(client, user)


def test_the_audit_log_of_pypiserver_rules_is_every_users(
    srv: Server, client: httpx.Client, tmp_path: Path
) -> None:
    """No permission file: every user may do everything, so every user is an admin."""
    assert upload_wheel(srv, tmp_path, "audited", "1.0", auth("carol")).status_code == 200
    entries = audit_lines(client.get("/-/audit", params={"project": "Audited"}, auth=auth("bob")))
    assert [(e["action"], e["user"], e["project"]) for e in entries] == [
        ("upload", "carol", "audited")
    ]
    assert entries[0]["filename"] == "audited-1.0-py3-none-any.whl"
    assert entries[0]["client"] == "127.0.0.1"
    create(client, "alice", description="for the audit")  # over HTTP: audited as alice's
    made = audit_lines(client.get("/-/audit", params={"user": "alice"}, auth=auth("bob")))
    assert "token.create" in {e["action"] for e in made}
    assert_one_line(client.get("/-/audit?since=forever", auth=auth("bob")), 400, "duration")
    assert_one_line(client.get("/-/audit?sinse=7d", auth=auth("bob")), 400, "unknown parameter")
    assert_one_line(client.get("/-/audit?project=a%20b", auth=auth("bob")), 400, "invalid")
    assert audit_lines(client.get("/-/audit?since=7d", auth=auth("bob")))
    assert "creamery-" not in client.get("/-/audit", auth=auth("bob")).text


def test_owners_endpoints_need_ownership(client: httpx.Client) -> None:
    for method, path in [
        ("GET", "/-/projects/demo/owners"),
        ("POST", "/-/projects/demo/owners"),
        ("DELETE", "/-/projects/demo/owners/bob"),
    ]:
        body = {"user": "bob", "role": "maintainer"} if method == "POST" else None
        response = client.request(method, path, json=body, auth=auth("alice"))
        assert response.status_code == 404
        assert response.json() == {"message": "ownership is off (--owners)"}


# ----------------------------------------------------------------------------- owners, audit


def test_owners_admins_and_others(owned: Server, tmp_path: Path) -> None:
    with owned.client() as client:
        # alice's first upload makes her the owner; admin's makes admin the owner of another.
        assert upload_wheel(owned, tmp_path, "apkg", "1.0", auth("alice")).status_code == 200
        assert upload_wheel(owned, tmp_path, "bpkg", "1.0", auth("admin")).status_code == 200
        assert upload_wheel(owned, tmp_path, "secret-x", "1.0", auth("admin")).status_code == 200
        alice, bob, carol, admin = (auth(u) for u in ("alice", "bob", "carol", "admin"))

        listed = client.get("/-/projects/APkg/owners", auth=alice)
        assert listed.status_code == 200, listed.text
        assert listed.json()["project"] == "apkg"
        assert [(g["user"], g["role"]) for g in listed.json()["owners"]] == [("alice", "owner")]

        # Others can see the project but not its owners; a hidden project is unknown.
        assert_one_line(client.get("/-/projects/apkg/owners", auth=carol), 403, "owners")
        hidden = client.get("/-/projects/secret-x/owners", auth=carol)
        unknown = client.get("/-/projects/secret-nothing/owners", auth=carol)
        assert hidden.status_code == unknown.status_code == 404
        assert hidden.json()["message"].replace("secret-x", "P") == unknown.json()[
            "message"
        ].replace("secret-nothing", "P")
        assert client.get("/-/projects/not!a!name/owners", auth=carol).status_code == 404

        # alice grants bob maintainer: he sees the owners, and may not change them.
        grant = client.post(
            "/-/projects/apkg/owners", json={"user": "bob", "role": "maintainer"}, auth=alice
        )
        assert grant.status_code == 200, grant.text
        assert grant.json()["grant"]["role"] == "maintainer"
        assert client.get("/-/projects/apkg/owners", auth=bob).status_code == 200
        refused = client.post(
            "/-/projects/apkg/owners", json={"user": "carol", "role": "owner"}, auth=bob
        )
        assert_one_line(refused, 403, "may not manage 'apkg'")
        assert_one_line(
            client.request("DELETE", "/-/projects/apkg/owners/alice", auth=bob), 403, "manage"
        )
        assert_one_line(
            client.post("/-/projects/bpkg/owners", json={"user": "x", "role": "owner"}, auth=alice),
            403,
            "manage",
        )

        # Bad grants: one line each.
        for body, fragment in [
            ({"user": "bob"}, "missing 'role'"),
            ({"user": "bob", "role": "reader"}, "uploader, maintainer or owner"),
            ({"user": "bob", "role": "boss"}, "unknown role"),
            ({"user": "nobody", "role": "owner"}, "no user 'nobody'"),
            ({"user": 3, "role": "owner"}, "'user'"),
            ({"user": "bob\n", "role": "owner", "x": 1}, "unknown field 'x'"),
            ({"user": "a:b", "role": "owner"}, "'user'"),
        ]:
            response = client.post("/-/projects/apkg/owners", json=body, auth=alice)
            assert_one_line(response, 400, fragment)

        # The last owner stays; with a second owner, the first may go.
        assert_one_line(
            client.request("DELETE", "/-/projects/apkg/owners/alice", auth=alice),
            409,
            "last owner",
        )
        assert_one_line(
            client.post(
                "/-/projects/apkg/owners", json={"user": "alice", "role": "uploader"}, auth=alice
            ),
            409,
            "last owner",
        )
        assert_one_line(
            client.request("DELETE", "/-/projects/apkg/owners/carol", auth=alice),
            404,
            "no role",
        )

        # An owner revokes a token scoped to their project; not one with a wider scope.
        scoped = create(client, "bob", projects=["apkg"], actions=["yank"])["id"]
        wide = create(client, "bob", projects=["apkg", "bpkg"], actions=["yank"])["id"]
        everything = create(client, "bob", actions=["yank"])["id"]
        assert client.delete(f"/-/tokens/{wide}", auth=alice).status_code == 404
        assert client.delete(f"/-/tokens/{everything}", auth=alice).status_code == 404
        assert client.delete(f"/-/tokens/{scoped}", auth=alice).status_code == 200
        assert client.delete(f"/-/tokens/{wide}", auth=admin).status_code == 200
        assert client.delete(f"/-/tokens/{everything}", auth=bob).status_code == 200

        # The audit log: admin sees all, alice her project's entries, carol nothing.
        every = audit_lines(client.get("/-/audit", auth=admin))
        actions = {(e["action"], e["project"]) for e in every}
        assert {("upload", "apkg"), ("upload", "bpkg"), ("owners.grant", "apkg")} <= actions
        assert "token.create" in {e["action"] for e in every}
        hers = audit_lines(client.get("/-/audit", auth=alice))
        assert hers and {e["project"] for e in hers} == {"apkg"}
        assert {"upload", "owners.grant"} <= {e["action"] for e in hers}
        # Tokens scoped to apkg alone are apkg's entries; the others are the admins'.
        assert all(e["project"] == "apkg" for e in hers if e["action"].startswith("token."))
        assert_one_line(client.get("/-/audit?project=bpkg", auth=alice), 403, "audit log")
        assert_one_line(client.get("/-/audit", auth=carol), 403, "admins and project owners")
        # carol may not own anything, so a hidden project and an unknown one answer alike.
        hidden_log = client.get("/-/audit?project=secret-x", auth=carol)
        unknown_log = client.get("/-/audit?project=secret-nothing", auth=carol)
        assert hidden_log.status_code == unknown_log.status_code == 403

        # After a second owner, alice may step down.
        assert client.post(
            "/-/projects/apkg/owners", json={"user": "carol", "role": "owner"}, auth=alice
        ).is_success
        gone = client.request("DELETE", "/-/projects/apkg/owners/alice", auth=alice)
        assert gone.status_code == 200, gone.text
        remaining = client.get("/-/projects/apkg/owners", auth=carol).json()["owners"]
        assert {(g["user"], g["role"]) for g in remaining} == {
            ("carol", "owner"),
            ("bob", "maintainer"),
        }
        assert client.get("/-/projects/apkg/owners", auth=alice).status_code == 403
        revoked = audit_lines(client.get("/-/audit?project=apkg&user=alice", auth=admin))
        assert ("owners.revoke", "alice") in {(e["action"], e["detail"]) for e in revoked}


# ----------------------------------------------------------------------------- store outage


def test_a_store_outage_is_503_with_retry_after(base: Path, s3: Any, s3_bucket: str) -> None:
    args = ("-P", str(base / "htpasswd"), "--disable-fallback", "--s3-timeout", "2")
    with (
        run_server([f"s3://{s3_bucket}"], *args, env=s3.env()) as server,
        server.client(timeout=60) as client,
    ):
        kept = create(client, "alice")["id"]
        s3.stop()
        try:
            for method, path, body in [
                ("POST", "/-/tokens", {}),
                ("DELETE", f"/-/tokens/{kept}", None),
                ("GET", "/-/audit", None),
            ]:
                response = client.request(method, path, json=body, auth=auth("alice"))
                assert_one_line(response, 503)
                assert response.headers["retry-after"].isdigit(), path
        finally:
            s3.start()
        assert client.delete(f"/-/tokens/{kept}", auth=auth("alice")).status_code == 200
        entries = audit_lines(client.get("/-/audit", auth=auth("alice")))
        revokes = [e for e in entries if e["action"] == "token.revoke"]
        assert revokes[-1]["result"] == "ok"
