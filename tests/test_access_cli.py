"""`creamery token`, `creamery owners` and `creamery audit` as an operator runs them: the real
CLI in subprocesses, on package directories, on an s3:// root (moto), and beside a running
two-worker server that honours (then refuses) a token the CLI made.

A token's secret is printed once, by `token create`: never by `token list`, never in the audit
log, never in any file of the state.
"""

from __future__ import annotations

import getpass
import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from support.clients import clean_env, creamery, describe
from support.dists import make_wheel
from support.forms import upload
from support.polling import wait_for
from support.s3 import S3Server
from support.servers import Server, run_server

from creamery.catalog.auth import add_user
from creamery.cli.main import main

USER, PASSWORD = "alice", "t0ken-cli-s3cret"
SECRET = re.compile(r"creamery-[0-9a-f]{12}_[A-Za-z0-9_-]{43}")
LOCAL_USER = f"local:{getpass.getuser()}"
AUDIT_FIELDS = {"time", "user", "token", "client", "action", "project", "filename", "sha256"}
AUDIT_FIELDS |= {"reason", "result"}
FRESH = {"Connection": "close"}  # a new connection per request, so either worker may answer


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "packages"
    path.mkdir()
    return path


@pytest.fixture
def htpasswd(tmp_path: Path) -> Path:
    path = tmp_path / "htpasswd"
    add_user(path, USER, PASSWORD, rounds=4)
    return path


Run = Callable[..., "subprocess.CompletedProcess[str]"]


class Here:
    """The CLI's `main()` in this process, for the many queries of one test (a Python start
    for each costs a second or two); the writes they look at are made in subprocesses."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *args: object, env: None = None) -> subprocess.CompletedProcess[str]:
        status = main([str(a) for a in args])
        captured = self.capsys.readouterr()
        return subprocess.CompletedProcess(args, status, captured.out, captured.err)

    def ok(self, *args: object) -> subprocess.CompletedProcess[str]:
        return ok(*args, run=self)

    def refused(self, *args: object) -> str:
        return refused(*args, run=self)

    def audit(self, *args: object) -> list[dict[str, object]]:
        return audit(*args, run=self)


def ok(
    *args: object, env: dict[str, str] | None = None, run: Run = creamery
) -> subprocess.CompletedProcess[str]:
    result = run(*args, env=env)
    assert result.returncode == 0, describe(result)
    assert "Traceback" not in result.stderr, describe(result)
    return result


def refused(*args: object, env: dict[str, str] | None = None, run: Run = creamery) -> str:
    """The one error line of a command that must fail with status 2."""
    result = run(*args, env=env)
    assert result.returncode == 2, describe(result)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("creamery: error: "), describe(result)
    assert not SECRET.search(result.stderr)
    return lines[0]


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def create(*args: object, env: dict[str, str] | None = None) -> dict[str, object]:
    """`token create ... --json`: the token's public fields and its secret."""
    (record,) = json_lines(ok("token", "create", *args, "--json", env=env).stdout)
    assert SECRET.fullmatch(str(record["token"])), record
    return record


def files_text(directory: Path) -> str:
    """Every file under *directory*, as one text (to look for a secret in)."""
    parts = [p.read_bytes().decode("utf-8", "replace") for p in directory.rglob("*") if p.is_file()]
    return "\n".join(parts)


def audit(
    *args: object, env: dict[str, str] | None = None, run: Run = creamery
) -> list[dict[str, object]]:
    return json_lines(ok("audit", "--json", *args, env=env, run=run).stdout)


def iso(text: object) -> float:
    return datetime.fromisoformat(str(text)).timestamp()


# ----------------------------------------------------------------------------- tokens


def test_create_shows_the_secret_once_and_list_and_revoke_never(root: Path) -> None:
    result = ok("token", "create", USER, "--project", "Acme_Tools", "--action", "upload,yank",
                "--description", "ci job", str(root))  # fmt: skip
    fields = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    assert SECRET.fullmatch(fields["token"]), result.stdout
    assert fields["token"].startswith(f"creamery-{fields['id']}_")
    assert fields["owner"] == USER and fields["projects"] == "acme-tools"
    assert fields["actions"] == "upload, yank" and fields["expires"] == "never"
    assert "shown only now" in result.stderr
    secret, token_id = fields["token"], fields["id"]
    other = create("bob", str(root))
    assert other["actions"] == ["upload"] and other["projects"] == [] and other["expires"] is None
    assert other["owner"] == "bob" and other["expired"] is False and other["last_used"] is None

    state = root / ".creamery"
    assert secret not in files_text(state) and str(other["token"]) not in files_text(state)
    (record,) = [p for p in state.rglob(token_id) if p.is_file()]
    digest = json.loads(record.read_text())["digest"]

    table = ok("token", "list", str(root)).stdout
    header, *rows = table.splitlines()
    assert header.split("  ")[0] == "id" and "last used" in header and "expired" in header
    assert len(rows) == 2 and any(r.startswith(token_id) for r in rows), table
    listed = json_lines(ok("token", "list", "--json", str(root)).stdout)
    assert {r["id"] for r in listed} == {token_id, other["id"]}
    mine = json_lines(ok("token", "list", USER, "--json", str(root)).stdout)
    assert [r["id"] for r in mine] == [token_id]
    assert mine[0]["projects"] == ["acme-tools"] and mine[0]["description"] == "ci job"
    assert json_lines(ok("token", "list", "--json", "nobody", str(root)).stdout) == []
    for output in (table, json.dumps(listed)):
        assert not SECRET.search(output) and digest not in output
        assert "digest" not in output

    assert (
        ok("token", "revoke", token_id, str(root)).stdout == f"revoked token {token_id} of alice\n"
    )
    assert [r["id"] for r in json_lines(ok("token", "list", "--json", str(root)).stdout)] == [
        other["id"]
    ]
    assert "no token with id" in refused("token", "revoke", token_id, str(root))
    # A leaked secret pasted as it is revokes its token, and is never repeated.
    assert ok("token", "revoke", str(other["token"]), str(root)).stdout.startswith("revoked")
    assert ok("token", "list", str(root)).stdout == "no tokens\n"
    assert "not a token id" in refused("token", "revoke", "creamery-nonsense", str(root))

    entries = audit(str(root))
    assert [e["action"] for e in entries] == ["token.create"] * 2 + ["token.revoke"] * 2
    assert all(e["user"] == LOCAL_USER and e["client"] == "cli" for e in entries)
    everything = files_text(state)
    assert secret not in everything and str(other["token"]) not in everything
    assert not SECRET.search(everything)


# The parsing cases run `main()` in this process (the same entry point, without a Python start
# for each case).


def in_process(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    status = main([str(a) for a in args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize(
    ("duration", "seconds"),
    [("90d", 90 * 86400), ("12h", 12 * 3600), ("30m", 1800), ("45s", 45), ("2w", 14 * 86400)],
)
def test_expires_takes_s_m_h_d_w(
    root: Path, duration: str, seconds: int, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = in_process(
        capsys, "token", "create", USER, "--expires", duration, "--json", root
    )
    assert status == 0, err
    (record,) = json_lines(out)
    assert abs(iso(record["expires"]) - iso(record["created"]) - seconds) <= 2, record
    assert record["expired"] is False


@pytest.mark.parametrize(
    ("args", "words"),
    [
        *(([f"--expires={d}"], "--expires: invalid duration") for d in ("5y", "0", "-1d", "abc")),
        *(([f"--expires={d}"], "--expires: invalid duration") for d in ("", "1e9d", "90 days")),
        (["--action", "push"], "unknown token action 'push'"),
        (["--action", "upload,bogus"], "unknown token action 'bogus'"),
        (["--project", "not a name!"], "invalid project name"),
        (["--description", "two\nlines"], "one line"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_token_input_is_one_line(
    root: Path, args: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = in_process(capsys, "token", "create", USER, *args, root)
    assert status == 2 and out == "" and len(err.splitlines()) == 1, err
    assert err.startswith("creamery: error: ") and words in err
    assert not (root / ".creamery" / "access").exists()  # nothing made


def test_token_owner_must_be_in_the_password_file(root: Path, htpasswd: Path) -> None:
    line = refused("token", "create", "mallory", "-P", htpasswd, str(root))
    assert "no user 'mallory'" in line
    assert "does not exist" in refused("token", "create", USER, "-P", root / "nope", str(root))
    # The server's environment names it too.
    env = clean_env(CREAMERY_PASSWORDS=str(htpasswd))
    assert "no user 'mallory'" in refused("token", "create", "mallory", str(root), env=env)
    assert create(USER, "--passwords", htpasswd, str(root))["owner"] == USER
    assert create(USER, str(root), env=env)["owner"] == USER
    assert len(json_lines(ok("token", "list", "--json", str(root)).stdout)) == 2


def test_list_tells_a_user_from_a_directory(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    here = Here(capsys)
    state = tmp_path / "state"
    located = ("--state-dir", state, str(root))
    token_id = create(USER, *located)["id"]
    create("bob", *located)
    for args in (
        ["--json", USER, *located],
        [USER, "--json", *located],
        ["--json", "--state-dir", state, USER, str(root)],
    ):
        assert [r["id"] for r in json_lines(here.ok("token", "list", *args).stdout)] == [token_id]
    assert len(json_lines(here.ok("token", "list", "--json", *located).stdout)) == 2
    assert not (root / ".creamery").exists()  # --state-dir was used, not the default


# ----------------------------------------------------------------------------- owners


def test_owners_add_remove_list(
    root: Path, htpasswd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    here = Here(capsys)
    assert ok("owners", "add", "Acme_Tools", USER, "--role", "owner", str(root)).stdout == (
        "alice is owner of acme-tools\n"
    )
    assert "maintainer" in ok("owners", "add", "acme.tools", "bob", str(root)).stdout
    here.ok("owners", "add", "other", "bob", "--role", "UPLOADER", str(root))

    grants = json_lines(here.ok("owners", "list", "--json", str(root)).stdout)
    assert [(g["project"], g["user"], g["role"]) for g in grants] == [
        ("acme-tools", "alice", "owner"),
        ("acme-tools", "bob", "maintainer"),
        ("other", "bob", "uploader"),
    ]
    assert all(g["granted_by"] == LOCAL_USER for g in grants)
    only = json_lines(here.ok("owners", "list", "ACME-tools", "--json", str(root)).stdout)
    assert {g["user"] for g in only} == {"alice", "bob"}
    table = here.ok("owners", "list", "other", str(root)).stdout.splitlines()
    assert table[0].split() == ["project", "user", "role", "granted", "by", "since"]
    assert table[1].split()[:3] == ["other", "bob", "uploader"]

    # The role changes in place; removing takes it away; twice is an error.
    here.ok("owners", "add", "acme-tools", "bob", "--role", "uploader", str(root))
    only = json_lines(here.ok("owners", "list", "acme-tools", "--json", str(root)).stdout)
    assert {g["user"]: g["role"] for g in only} == {"alice": "owner", "bob": "uploader"}
    assert ok("owners", "remove", "ACME_TOOLS", "bob", str(root)).returncode == 0
    assert "has no role on acme-tools" in here.refused(
        "owners", "remove", "acme-tools", "bob", str(root)
    )
    only = json_lines(here.ok("owners", "list", "acme-tools", "--json", str(root)).stdout)
    assert [g["user"] for g in only] == [USER]
    assert (
        here.ok("owners", "list", "nothing-here", str(root)).stdout == "no grants on nothing-here\n"
    )

    assert "invalid choice" in here.refused(
        "owners", "add", "p", "bob", "--role", "reader", str(root)
    )
    assert "invalid project name" in here.refused("owners", "add", "no way!", "bob", str(root))
    assert "no user 'bob'" in here.refused("owners", "add", "p", "bob", "-P", htpasswd, str(root))

    entries = here.audit(str(root))
    assert [(e["action"], e["project"]) for e in entries] == [
        ("owners.grant", "acme-tools"),
        ("owners.grant", "acme-tools"),
        ("owners.grant", "other"),
        ("owners.grant", "acme-tools"),
        ("owners.revoke", "acme-tools"),
    ]


# ----------------------------------------------------------------------------- audit


def test_audit_filters_and_json_fields(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    here = Here(capsys)
    make_wheel(root, "acme", "1.0")
    ok("yank", "acme", "1.0", "--reason", "broken build", str(root))
    ok("owners", "add", "acme", USER, str(root))
    ok("owners", "add", "other", USER, str(root))
    create(USER, str(root))
    # An entry from ten days ago, in the log's own format (a day's file of JSON lines).
    old = time.time() - 10 * 86400
    day = time.strftime("%Y-%m-%d", time.gmtime(old))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(old))
    entry = {"action": "remove", "result": "ok", "user": "bob", "token": None, "client": "10.0.0.9",
             "project": "acme", "version": "0.1", "time": stamp}  # fmt: skip
    log = root / ".creamery" / "audit" / f"{day}.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        out.write(json.dumps(entry) + "\n")

    everything = here.audit(str(root))
    assert all(set(e) >= AUDIT_FIELDS for e in everything), everything
    assert [e["action"] for e in everything] == [
        "remove", "yank", "owners.grant", "owners.grant", "token.create"
    ]  # fmt: skip
    assert [e["time"] for e in everything] == sorted(str(e["time"]) for e in everything)
    yank = everything[1]
    assert yank["project"] == "acme" and yank["reason"] == "broken build" and yank["token"] is None
    assert yank["user"] == LOCAL_USER and yank["result"] == "ok"

    assert [e["action"] for e in here.audit("--since", "7d", str(root))] == [
        "yank", "owners.grant", "owners.grant", "token.create"
    ]  # fmt: skip
    assert len(here.audit("--since", "2w", str(root))) == 5
    assert [e["action"] for e in here.audit("--project", "ACME", str(root))] == [
        "remove", "yank", "owners.grant"
    ]  # fmt: skip
    assert [e["version"] for e in here.audit("--user", "bob", str(root))] == ["0.1"]
    assert (
        len(here.audit("--user", LOCAL_USER, "--project", "acme", "--since", "1d", str(root))) == 2
    )
    assert here.audit("--user", "nobody", str(root)) == []
    assert here.ok("audit", "--user", "nobody", str(root)).stdout == "no audit entries\n"

    table = here.ok("audit", "--project", "acme", str(root)).stdout.splitlines()
    assert table[0].split() == [
        "time", "user", "token", "client", "action", "project", "target", "result", "detail"
    ]  # fmt: skip
    assert len(table) == 4
    assert "bob" in table[1] and "10.0.0.9" in table[1] and "0.1" in table[1]
    assert "reason='broken build'" in table[2]
    column = table[0].index("action")  # the columns line up
    assert table[1].index("remove") == table[2].index("yank") == column

    assert "--since" in here.refused("audit", "--since", "soon", str(root))
    assert "invalid project name" in here.refused("audit", "--project", "no way!", str(root))


def test_audit_table_escapes_control_characters(root: Path) -> None:
    log = root / ".creamery" / "audit" / f"{time.strftime('%Y-%m-%d', time.gmtime())}.jsonl"
    log.parent.mkdir(parents=True)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    entry = {
        "action": "yank",
        "user": "eve",
        "project": "p",
        "reason": "\x1b[2Jgone\n",
        "time": stamp,
    }
    log.write_text(json.dumps(entry) + "\n")
    table = ok("audit", str(root)).stdout
    assert "\x1b" not in table and "\\x1b[2Jgone\\n" in table and len(table.splitlines()) == 2
    assert "\x1b" not in ok("audit", "--json", str(root)).stdout


# ----------------------------------------------------------------------------- s3


def test_on_an_s3_root(s3: S3Server, s3_bucket: str, tmp_path: Path) -> None:
    env = clean_env(**s3.env(XDG_CACHE_HOME=str(tmp_path / "cache")))
    url = f"s3://{s3_bucket}/index"
    record = create(USER, "--project", "acme", "--expires", "1d", url, env=env)
    listed = json_lines(ok("token", "list", USER, "--json", url, env=env).stdout)
    assert [r["id"] for r in listed] == [record["id"]] and listed[0]["projects"] == ["acme"]
    ok("owners", "add", "acme", USER, "--role", "owner", url, env=env)
    grants = json_lines(ok("owners", "list", "--json", url, env=env).stdout)
    assert [(g["project"], g["user"], g["role"]) for g in grants] == [("acme", USER, "owner")]
    ok("token", "revoke", str(record["id"]), url, env=env)
    assert ok("token", "list", url, env=env).stdout == "no tokens\n"

    assert [e["action"] for e in audit(url, env=env)] == [
        "token.create", "owners.grant", "token.revoke"
    ]  # fmt: skip
    # The token was scoped to acme alone: its creation and revocation are acme's entries too.
    assert len(audit("--project", "acme", url, env=env)) == 3
    keys = s3.keys(s3_bucket, "index/.creamery/")
    assert any("/audit/" in k for k in keys) and any("/access/owners/" in k for k in keys)
    assert not any(k.startswith("index/.creamery/access/tokens/") for k in keys)  # revoked
    stored = "\n".join(s3.get(s3_bucket, k).decode("utf-8", "replace") for k in keys)
    assert str(record["token"]) not in stored and not SECRET.search(stored)


# ----------------------------------------------------------------------------- a server


@pytest.fixture
def server(root: Path, htpasswd: Path) -> Iterator[Server]:
    with run_server([root], "-P", str(htpasswd), "-a", "update", "--workers", "2") as srv:
        yield srv


def test_a_running_server_honours_then_refuses_a_cli_token(
    server: Server, root: Path, htpasswd: Path, tmp_path: Path
) -> None:
    record = create(USER, "--project", "tokproj", "-P", htpasswd, str(root))
    secret, token_id = str(record["token"]), str(record["id"])
    auth = ("__token__", secret)
    first = make_wheel(tmp_path / "dists", "tokproj", "1.0")

    # The server learns of the token through the change feed: the first upload may race it.
    def uploaded() -> bool:
        response = upload(server, first.name, first.read_bytes(), auth=auth)
        assert response.status_code == 200, response.text
        return True

    assert wait_for(uploaded, timeout=10)
    assert (root / first.name).is_file()
    outside = make_wheel(tmp_path / "dists", "elsewhere", "1.0")
    response = upload(server, outside.name, outside.read_bytes(), auth=auth)
    assert response.status_code == 403, response.text

    ok("token", "revoke", token_id, str(root))
    versions = iter(range(2, 1000))

    def refused_now() -> bool:
        wheel = make_wheel(tmp_path / "dists", "tokproj", f"{next(versions)}.0")
        response = upload(server, wheel.name, wheel.read_bytes(), auth=auth, headers=FRESH)
        assert response.status_code in (200, 401), response.text
        return response.status_code == 401

    assert wait_for(refused_now, timeout=15, interval=0.1)
    # Refused from now on, whichever worker answers (a new connection each time; few enough
    # failures to stay below the login throttle).
    for version in range(1000, 1004):
        wheel = make_wheel(tmp_path / "dists", "tokproj", f"{version}.0")
        response = upload(server, wheel.name, wheel.read_bytes(), auth=auth, headers=FRESH)
        assert response.status_code == 401, response.text

    uploads = [e for e in audit("--project", "tokproj", str(root)) if e["action"] == "upload"]
    assert uploads and uploads[0]["filename"] == first.name
    assert uploads[0]["user"] == USER and uploads[0]["token"] == token_id
    assert uploads[0]["sha256"] and uploads[0]["result"] == "ok"
    assert all(e["token"] == token_id for e in uploads)
    assert secret not in files_text(root / ".creamery") and secret not in server.log()
