"""The audit log of a real server session: every write and every security-relevant event is
there, exactly once, with who, from where, what (file, size, the file's real sha256, reason)
and the result; nothing secret is anywhere in the state or the server's output; and a write
that can't be audited fails (the server's fault: 507) with nothing half-done.

Read as `creamery audit` reads it (`AuditLog` on `<root>/.creamery`).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support import forms
from support.access_state import (
    audit_entries,
    create_token,
    open_catalog,
    revoke_token,
    root_of,
    state_dir,
)
from support.clients import describe, twine_upload
from support.dists import make_wheel
from support.polling import wait_for
from support.servers import Server, run_server
from support.wire import listed

from creamery.catalog.audit import Entry
from creamery.catalog.auth import add_user
from creamery.catalog.tokens import TOKEN_USER

USER, PASSWORD = "alice", "alice-Pa55word-9f3k"
WRONG_PASSWORD = "alice-guess-x7Qz"
PROJECT = "audited"
PERMISSIONS = """\
[[rules]]
user = "anonymous"
role = "reader"
projects = ["*"]

[[rules]]
user = "alice"
role = "maintainer"
projects = ["*"]
"""
# Reloaded: one rule more.
PERMISSIONS_2 = (
    PERMISSIONS
    + """
[[rules]]
user = "alice"
role = "owner"
projects = ["audited"]
"""
)


@pytest.fixture
def htpasswd(tmp_path: Path) -> Path:
    path = tmp_path / "htpasswd"
    add_user(path, USER, PASSWORD, rounds=4)
    return path


@pytest.fixture
def permissions(tmp_path: Path) -> Path:
    path = tmp_path / "permissions.toml"
    path.write_text(PERMISSIONS)
    return path


@pytest.fixture
def server(tmp_path: Path, htpasswd: Path, permissions: Path) -> Iterator[Server]:
    root = tmp_path / "root"
    root.mkdir()
    with run_server(
        [root],
        *("-P", str(htpasswd), "-a", "update", "-o", "--disable-fallback"),
        *("--permissions", str(permissions), "--owners", "first-uploader"),
    ) as srv:
        yield srv


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def upload(server: Server, wheel: Path, auth: tuple[str, str]) -> httpx.Response:
    return forms.upload(
        server,
        wheel.name,
        wheel.read_bytes(),
        ("name", PROJECT),
        ("version", wheel.name.split("-")[1]),
        auth=auth,
    )


def post_json(server: Server, path: str, data: dict[str, str]) -> httpx.Response:
    return httpx.post(server.url + path, json=data, auth=(USER, PASSWORD), timeout=30)


def fields(entry: Entry) -> tuple[object, ...]:
    return (
        entry.action,
        entry.result,
        entry.user,
        entry.token,
        entry.client,
        entry.project,
        entry.version,
        entry.filename,
        entry.sha256,
        entry.size,
        entry.reason,
    )


def test_a_session_is_audited_exactly(server: Server, permissions: Path, tmp_path: Path) -> None:
    root = root_of(server)
    here = "127.0.0.1"
    expected: list[tuple[object, ...]] = []

    # An upload (twine, with the password): alice becomes the project's owner.
    original = make_wheel(tmp_path / "v1", PROJECT, "1.0")
    result = twine_upload(
        server.url + "/", tmp_path / "home", original, user=USER, password=PASSWORD
    )
    assert result.returncode == 0, describe(result)
    name, size = original.name, original.stat().st_size
    expected.append(
        ("upload", "ok", USER, None, here, PROJECT, "1.0", name, sha256(original), size, None)
    )
    expected.append(("owners.grant", "ok", USER, None, here, PROJECT, None, None, None, None, None))

    # The same file again, other bytes (-o): an overwrite, with the new file's digest.
    replacement = make_wheel(tmp_path / "v1b", PROJECT, "1.0", summary="rebuilt")
    assert replacement.name == name and sha256(replacement) != sha256(original)
    response = upload(server, replacement, (USER, PASSWORD))
    assert response.status_code == 200, response.text
    assert (root / name).read_bytes() == replacement.read_bytes()
    expected.append(
        ("overwrite", "ok", USER, None, here, PROJECT, "1.0", name, sha256(replacement),
         replacement.stat().st_size, None)
    )  # fmt: skip

    # Yank with a reason, then un-yank.
    response = post_json(
        server, "/-/yank", {"project": PROJECT, "version": "1.0", "reason": "broken build"}
    )
    assert response.status_code == 200, response.text
    expected.append(
        ("yank", "ok", USER, None, here, PROJECT, "1.0", None, None, None, "broken build")
    )
    response = post_json(server, "/-/unyank", {"project": PROJECT, "version": "1.0"})
    assert response.status_code == 200, response.text
    expected.append(("unyank", "ok", USER, None, here, PROJECT, "1.0", None, None, None, None))

    # A token (made on the host, as `creamery token create` does), its first use, revoked.
    token, secret = create_token(server, USER, projects=[PROJECT], description="ci")
    # Scoped to one project: audited under it (`creamery audit --project` finds it).
    expected.append(("token.create", "ok", *_local(), PROJECT, None, None, None, None, None))
    second = make_wheel(tmp_path / "v2", PROJECT, "2.0")
    response = upload(server, second, (TOKEN_USER, secret))
    assert response.status_code == 200, response.text
    first_use = ("token.first-use", "ok", USER, token.id, here, None, None, None, None, None, None)
    upload_2 = ("upload", "ok", USER, token.id, here, PROJECT, "2.0", second.name, sha256(second),
                second.stat().st_size, None)  # fmt: skip
    # The first use is noted beside the request (a thread): it may come after the upload.
    assert wait_for(lambda: any(e.action == "token.first-use" for e in audit_entries(root)))
    expected += [first_use, upload_2]
    revoke_token(server, token.id)
    expected.append(("token.revoke", "ok", *_local(), PROJECT, None, None, None, None, None))

    # Remove a release (the legacy API's remove_pkg).
    response = forms.post_form(
        server,
        [(":action", "remove_pkg"), ("name", PROJECT), ("version", "2.0")],
        auth=(USER, PASSWORD),
    )
    assert response.status_code == 200, response.text
    assert not (root / second.name).exists()
    expected.append(("remove", "ok", USER, None, here, PROJECT, "2.0", None, None, None, None))

    # The permission file, rewritten: reloaded (seen at a request, a stat a second at most).
    permissions.write_text(PERMISSIONS_2)

    def reloaded() -> bool:
        httpx.get(server.url + "/simple/", timeout=10)
        return any(e.action == "permissions.reload" for e in audit_entries(root))

    assert wait_for(reloaded, timeout=10, interval=0.2)
    expected.append(
        ("permissions.reload", "ok", None, None, "", None, None, None, None, None, None)
    )

    # A throttled login (last: from now on this client is throttled for a minute).
    for _ in range(10):
        response = forms.post_form(server, [(":action", "submit")], auth=(USER, WRONG_PASSWORD))
        assert response.status_code == 403
        expected.append(
            ("login.failed", "denied", USER, None, here, None, None, None, None, None, None)
        )
    for _ in range(3):  # audited once, however many are refused
        response = forms.post_form(server, [(":action", "submit")], auth=(USER, WRONG_PASSWORD))
        assert response.status_code == 429
    expected.append(
        ("login.throttled", "denied", USER, None, here, None, None, None, None, None, None)
    )

    # Exactly these, in this order (the token's first use and its upload in either order).
    found = [fields(e) for e in audit_entries(root)]
    if found.index(first_use) > found.index(upload_2):
        # The indices first: `expected[expected.index(upload_2)]` on the left of one tuple
        # assignment would find the upload_2 just put where first_use was, and swap nothing.
        i, j = expected.index(first_use), expected.index(upload_2)
        expected[i], expected[j] = upload_2, first_use
    assert found == expected
    # The details name things, never secrets: the token by its id, the reload by its rules.
    details = {e.action: e.detail for e in audit_entries(root)}
    assert details["token.create"] == f"{token.id} for {USER}: upload on {PROJECT}"
    assert details["token.revoke"] == f"{token.id} of {USER}"
    assert details["permissions.reload"] == "3 rules"
    times = [e.time for e in audit_entries(root)]
    assert all(t.endswith("Z") for t in times) and times == sorted(times)

    # Nothing secret anywhere: the state directory (every file), the server's output.
    secrets = [PASSWORD, WRONG_PASSWORD, secret, secret.partition("_")[2]]
    for path in state_dir(root).rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for word in secrets:
                assert word.encode() not in data, (path, word)
    output = server.log()
    for word in secrets:
        assert word not in output, word


def _local() -> tuple[str, None, str]:
    """user, token, client of a write made by a command on the server's host."""
    from creamery.catalog.access import Actor

    actor = Actor.local()
    return (actor.user or "", None, actor.client)


def test_a_broken_permission_file_is_audited_and_the_last_good_one_stays(
    server: Server, permissions: Path
) -> None:
    root = root_of(server)
    permissions.write_text(PERMISSIONS + "\n[[rules]]\nuser = 'alice'\nrole = 'emperor'\n")

    def audited() -> list[Entry]:
        httpx.get(server.url + "/simple/", timeout=10)
        return [e for e in audit_entries(root) if e.action == "permissions.reload"]

    assert wait_for(audited, timeout=10, interval=0.2)
    (entry,) = audited()
    assert entry.result == "failed"
    assert entry.detail and "emperor" in entry.detail and "\n" not in entry.detail
    # Still in force: alice uploads.
    wheel = make_wheel(root.parent / "dist", PROJECT, "1.0")
    assert upload(server, wheel, (USER, PASSWORD)).status_code == 200


# --------------------------------------------------------------------- unauditable writes


@contextlib.contextmanager
def audit_blocked(root: Path) -> Iterator[None]:
    """The audit directory replaced by a regular file: no entry can be written (as root too,
    where permission bits would not stop anything). Put back afterwards."""
    audit = state_dir(root) / "audit"
    kept = audit.with_name("audit-kept")
    audit.rename(kept)
    audit.write_text("not a directory\n")
    try:
        yield
    finally:
        audit.unlink()
        kept.rename(audit)


def spools(root: Path) -> list[Path]:
    """Upload spools (files in the per-process spool directories) and temp parts left."""
    tmp = state_dir(root) / "tmp"
    left = [p for p in tmp.rglob("*") if not p.is_dir()] if tmp.is_dir() else []
    return sorted([*left, *root.rglob(".creamery-*.part")])


def test_a_write_that_cannot_be_audited_fails_with_nothing_half_done(
    server: Server, tmp_path: Path
) -> None:
    root = root_of(server)
    first = make_wheel(tmp_path, PROJECT, "1.0")
    assert upload(server, first, (USER, PASSWORD)).status_code == 200
    with audit_blocked(root):
        # An upload: the server's fault, not the client's (507), one line; nothing published.
        wheel = make_wheel(tmp_path, PROJECT, "2.0")
        response = upload(server, wheel, (USER, PASSWORD))
        assert response.status_code == 507, response.text
        assert response.text.count("\n") == 1 and PASSWORD not in response.text
        assert wheel.name not in listed(server, PROJECT)
        assert not (root / wheel.name).exists()
        assert spools(root) == []
        # An overwrite: the original stays, byte for byte.
        rebuilt = make_wheel(tmp_path / "b", PROJECT, "1.0", summary="rebuilt")
        assert upload(server, rebuilt, (USER, PASSWORD)).status_code == 507
        assert (root / first.name).read_bytes() == first.read_bytes()
        assert listed(server, PROJECT)[first.name]["hashes"]["sha256"] == sha256(first)
        assert spools(root) == []
        # A yank and a removal: refused, nothing changed.
        response = post_json(
            server, "/-/yank", {"project": PROJECT, "version": "1.0", "reason": "x"}
        )
        assert response.status_code == 507, response.text
        assert not listed(server, PROJECT)[first.name].get("yanked")
        response = forms.post_form(
            server,
            [(":action", "remove_pkg"), ("name", PROJECT), ("version", "1.0")],
            auth=(USER, PASSWORD),
        )
        assert response.status_code == 507, response.text
        assert (root / first.name).exists() and first.name in listed(server, PROJECT)
        # A token: not created (the CLI's command fails the same way).
        catalog = open_catalog(root)
        try:
            with pytest.raises(OSError):
                catalog.create_token(USER)
            assert catalog.access.tokens.all() == []
            assert open_catalog(root).access.tokens.all() == []
        finally:
            catalog.close()
        assert "Traceback" not in server.log()

    # The audit log back: the same upload goes through (nothing was left to collide with).
    response = upload(server, wheel, (USER, PASSWORD))
    assert response.status_code == 200, response.text
    assert wheel.name in listed(server, PROJECT)
    uploads = [e for e in audit_entries(root) if e.action == "upload"]
    assert [(e.filename, e.sha256) for e in uploads] == [
        (first.name, sha256(first)),
        (wheel.name, sha256(wheel)),
    ]
