"""The access modules on their own: the permission file, tokens, ownership, the audit log, the
trusted-proxy walk and the decisions of `Access`. Pure logic, plus the real state stores (a
local state directory and a bucket's `.creamery/` prefix on moto), attacked with hostile input
and with concurrent writers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.htpasswd import write_sha1_htpasswd
from support.s3 import REGION, S3Server

from creamery.catalog import tokens as tokens_module
from creamery.catalog.access import ANONYMOUS, Access, Principal
from creamery.catalog.audit import AUDIT, AuditLog, Entry, parse_duration
from creamery.catalog.owners import FOUNDED, OWNERS, Owners, user_key
from creamery.catalog.permissions import (
    EVERY_USER,
    OPERATION_ROLES,
    PermissionFile,
    PermissionFileError,
    Policy,
    Role,
)
from creamery.catalog.tokens import (
    PREFIX,
    TOKENS,
    USED,
    TokenStore,
    check_projects,
    mint,
    split_secret,
)
from creamery.core.config import Config
from creamery.core.objects import ObjectRoot, S3Options
from creamery.http.proxy import TrustedProxies
from creamery.storage import Storage, read_all
from creamery.storage.state import StateDir, object_scratch_dir

# ----------------------------------------------------------------------------- state stores


@pytest.fixture
def s3_options(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Options:
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    return S3Options(endpoint_url=s3.endpoint, region=REGION)


def bucket_state(bucket: str, options: S3Options, scratch: Path) -> StateDir:
    """A state in a bucket's `pkgs/.creamery/` prefix, as an object root has it."""
    from creamery.storage.s3 import S3Storage

    root = ObjectRoot(bucket, "pkgs")
    store: Storage = S3Storage(root.state(), options)
    return StateDir(store, object_scratch_dir(root, scratch))


@pytest.fixture(params=["local", "s3"])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> StateDir:
    """Each test that takes `state` runs on a local state directory and on a bucket."""
    if request.param == "local":
        return StateDir(tmp_path / "state")
    bucket = request.getfixturevalue("s3_bucket")
    options = request.getfixturevalue("s3_options")
    return bucket_state(bucket, options, tmp_path)


def twin(state: StateDir, tmp_path: Path) -> StateDir:
    """A second handle on the same state, as another process or replica has it."""
    if state.path is not None:
        return StateDir(state.path)
    return StateDir(state.store, tmp_path / "other-scratch")


def stored_bytes(state: StateDir) -> list[bytes]:
    return [read_all(state.store, s) for s in state.store.scan("")]


def race(count: int, work: Callable[[int], object]) -> list[object]:
    """Run work(0..count-1) in threads released together; their results in order."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return results


# ----------------------------------------------------------------------------- permissions

SPEC_EXAMPLE = """
[groups]
staff = ["alice", "bob"]

[[rules]]
user = "anonymous"        # the principal of unauthenticated requests
role = "reader"
projects = ["*"]

[[rules]]
group = "staff"
role = "reader"
projects = ["secret-*"]
"""


def policy(text: str) -> Policy:
    return Policy.parse(text, "perms.toml")


def rule(who: str, role: str, *projects: str) -> str:
    listed = ", ".join(json.dumps(p) for p in projects)
    return f"[[rules]]\n{who}\nrole = {json.dumps(role)}\nprojects = [{listed}]\n"


def test_the_spec_example_hides_secret_projects_from_anonymous() -> None:
    example = policy(SPEC_EXAMPLE)
    assert example.role(None, "public-tool") == Role.READER
    assert example.role(None, "secret-x") == Role.NONE
    assert example.role("alice", "secret-x") == Role.READER
    assert example.role("carol", "secret-x") == Role.NONE  # a user no rule of secret-* names
    assert example.role("carol", "public-tool") == Role.NONE  # `*` names only anonymous
    assert example.anonymous_named


def test_the_most_specific_pattern_decides() -> None:
    rules_text = [
        rule('user = "u"', "owner", "*"),
        rule('user = "u"', "reader", "acme-*"),
        rule('user = "u"', "maintainer", "acme-tool-*"),
        rule('user = "u"', "uploader", "acme-tool-x"),
        rule('user = "v"', "reader", "acme-tool-x"),
    ]
    for text in ("".join(rules_text), "".join(reversed(rules_text))):  # order does not matter
        rules = policy(text)
        assert rules.role("u", "other") == Role.OWNER
        assert rules.role("u", "acme-lib") == Role.READER  # a glob beats `*`, even lower
        assert rules.role("u", "acme-tool-y") == Role.MAINTAINER  # the longest glob
        assert rules.role("u", "acme-tool-x") == Role.UPLOADER  # exact beats every glob
        assert rules.role("v", "acme-tool-x") == Role.READER
        assert rules.role("v", "acme-tool-y") == Role.NONE
        assert rules.role("v", "other") == Role.NONE


def test_a_project_no_pattern_matches_gives_nothing() -> None:
    rules = policy(rule('user = "u"', "owner", "acme-*"))
    assert rules.role("u", "other") == Role.NONE
    assert rules.role(None, "other") == Role.NONE
    assert not rules.anonymous_named


def test_roles_include_the_lower_ones() -> None:
    assert Role.OWNER > Role.MAINTAINER > Role.UPLOADER > Role.READER > Role.NONE
    rules = policy(rule('user = "m"', "maintainer", "*"))
    may = {op for op, least in OPERATION_ROLES.items() if rules.role("m", "x") >= least}
    assert may == {"list", "download", "upload", "overwrite", "yank", "remove"}
    assert Role.named(" Owner ") == Role.OWNER
    with pytest.raises(ValueError, match="unknown role"):
        Role.named("none")


def test_names_and_patterns_are_normalized() -> None:
    rules = policy(
        rule('user = "u"', "reader", "Acme_*")
        + rule('user = "u"', "maintainer", "My.Big__Tool")
        + rule('user = "u"', "uploader", "[X]-?")
    )
    assert rules.rules[0].patterns == ("acme-*",)
    assert rules.role("u", "acme-tool") == Role.READER
    assert rules.role("u", "my-big-tool") == Role.MAINTAINER
    assert rules.role("u", "x-1") == Role.UPLOADER
    # Inside a class `_` stays one character (as `-`), not a range: `[a_z]` is a, z or -.
    classes = policy(rule('user = "u"', "reader", "[A_Z]x", "tool-[!_.]"))
    assert classes.rules[0].patterns == ("[az-]x", "tool-[!-]")
    assert [n for n in ("ax", "zx", "-x", "mx") if classes.role("u", n)] == ["ax", "zx", "-x"]
    assert classes.role("u", "tool-1") == Role.READER


def test_every_user_and_groups() -> None:
    text = '[groups]\nops = [" dora ", "eve"]\nempty = []\n'
    text += rule(f'user = "{EVERY_USER}"', "reader", "*")
    text += rule('groups = ["ops", "empty"]', "maintainer", "*")
    text += rule('users = ["frank"]\ngroup = "empty"', "uploader", "*")
    rules = policy(text)
    assert rules.role("anyone", "x") == Role.READER
    assert rules.role(None, "x") == Role.NONE  # "*" is every signed-in user, not anonymous
    assert rules.role("dora", "x") == Role.MAINTAINER  # member names are stripped
    assert rules.role("frank", "x") == Role.UPLOADER
    assert not rules.anonymous_named
    # Principals named by the same rules share a view; others do not.
    assert rules.view_key("anyone") == rules.view_key("someone")
    assert rules.view_key("dora") == rules.view_key("eve") != rules.view_key("anyone")
    assert rules.view_key(None) != rules.view_key("anyone")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[[rules]\nuser = 1", "not valid TOML"),
        ("[owners]\nx = 1\n", "unknown table 'owners'"),
        ("rules = 3\n", "array of tables"),
        ("groups = [1]\n", "[groups] must be a table"),
        ('[groups]\nstaff = "alice"\n', "group 'staff' must be a list"),
        ("[groups]\nstaff = [1]\n", "group 'staff' must be a list"),
        ('[[rules]]\nuser = "u"\nrole = "reader"\nprojects = ["*"]\nwho = 1\n', "unknown key"),
        ('[[rules]]\nrole = "reader"\nprojects = ["*"]\n', "needs a 'user' or a 'group'"),
        ('[[rules]]\nuser = []\nrole = "reader"\nprojects = ["*"]\n', "needs a 'user'"),
        ('[[rules]]\nuser = ""\nrole = "reader"\nprojects = ["*"]\n', "'user' must be a name"),
        ('[[rules]]\nuser = 7\nrole = "reader"\nprojects = ["*"]\n', "'user' must be a name"),
        ('[[rules]]\ngroup = "nope"\nrole = "reader"\nprojects = ["*"]\n', "'nope' is not defined"),
        ('[[rules]]\nuser = "u"\nprojects = ["*"]\n', "needs a 'role'"),
        ('[[rules]]\nuser = "u"\nrole = "admin"\nprojects = ["*"]\n', "unknown role 'admin'"),
        ('[[rules]]\nuser = "u"\nrole = 3\nprojects = ["*"]\n', "unknown role 3"),
        ('[[rules]]\nuser = "u"\nrole = "reader"\n', "'projects' must be a non-empty list"),
        ('[[rules]]\nuser = "u"\nrole = "reader"\nprojects = []\n', "non-empty list"),
        ('[[rules]]\nuser = "u"\nrole = "reader"\nprojects = [1]\n', "non-empty string"),
        ('[[rules]]\nuser = "u"\nrole = "reader"\nprojects = [" "]\n', "non-empty string"),
        ('[[rules]]\nuser = "u"\nrole = "reader"\nprojects = {a = 1}\n', "non-empty list"),
        ("rules = [1]\n", "rule 1 must be a table"),
        pytest.param("a = " + "[" * 5000 + "]" * 5000 + "\n", "too deeply", id="deep-arrays"),
        pytest.param("a = " + "{b = " * 5000 + "1" + "}" * 5000, "too deeply", id="deep-tables"),
    ],
)
def test_a_bad_file_is_one_line_naming_the_file_and_why(text: str, problem: str) -> None:
    with pytest.raises(PermissionFileError) as caught:
        policy(text)
    message = str(caught.value)
    assert message.startswith("perms.toml: ")
    assert problem in message
    assert "\n" not in message


def test_odd_patterns_are_globs_that_never_crash() -> None:
    text = rule('user = "u"', "reader", "[", "**", "[!", "]", "a[", "?")
    rules = policy(text)
    for project in ("[", "a", "ab", "a[", "]", "x-y-z"):
        rules.role("u", project)  # no exception, whatever it decides
    assert rules.role("u", "anything") == Role.READER  # `**` matches like `*`
    assert rules.role("u", "[") == Role.READER


def test_a_huge_file_is_refused_quickly(tmp_path: Path) -> None:
    """A 10 MB file is refused at once (not parsed for seconds in a request's thread)."""
    one = rule('user = "u"', "reader", "p-*")
    path = tmp_path / "perms.toml"
    path.write_text(one * (10_000_000 // len(one)))
    started = time.monotonic()
    with pytest.raises(PermissionFileError, match="larger than"):
        PermissionFile(path)
    with pytest.raises(PermissionFileError, match="larger than"):
        Policy.parse(path.read_text(), str(path))
    assert time.monotonic() - started < 5  # a bound against hanging, not a benchmark


def test_many_glob_patterns_decide_without_recompiling_each(tmp_path: Path) -> None:
    """5,000 distinct globs (more than `fnmatch`'s cache holds when repeated): each new project
    is matched once against compiled patterns, not recompiled per project."""
    text = "".join(rule('user = "u"', "reader", f"p{i}-*") for i in range(5000))
    rules = policy(text + rule('user = "u"', "owner", "*"))
    started = time.monotonic()
    for i in range(50):
        assert rules.role("u", f"q{i}") == Role.OWNER
    assert rules.role("u", "p4999-x") == Role.READER
    assert time.monotonic() - started < 30  # a bound against hanging, not a benchmark


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def rewrite(path: Path, text: str) -> None:
    """Replace the file (a new inode, a later mtime), as editors and config tools do."""
    spare = path.with_suffix(".new")
    spare.write_text(text)
    st = spare.stat()
    os.utime(spare, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    spare.replace(path)


def test_the_file_is_reloaded_once_a_second_at_most_and_a_bad_one_keeps_the_last_good(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "perms.toml"
    path.write_text(SPEC_EXAMPLE)
    heard: list[tuple[Policy | None, str | None]] = []
    clock = Clock()
    perms = PermissionFile(path, lambda p, problem: heard.append((p, problem)), clock=clock)
    first = perms.current()
    assert first.role(None, "secret-x") == Role.NONE and perms.generation == 0

    rewrite(path, rule('user = "anonymous"', "reader", "*"))
    clock.now += 0.5
    assert perms.current() is first  # not looked at yet
    clock.now += 0.5
    second = perms.current()
    assert second is not first and second.role(None, "secret-x") == Role.READER
    assert perms.generation == 1 and heard == [(second, None)]

    caplog.clear()
    rewrite(path, "[[rules]]\nuser = ")
    clock.now += 1
    with caplog.at_level(logging.ERROR, "creamery.permissions"):
        assert perms.current() is second
        clock.now += 1
        assert perms.current() is second  # the same problem is said once
    assert heard[-1][0] is None and "not valid TOML" in str(heard[-1][1])
    assert len(heard) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "previous permissions stay in force" in errors[0]
    assert "\n" not in errors[0]

    rewrite(path, '[[rules]]\nuser = "u"\nrole = "boss"\nprojects = ["*"]\n')
    clock.now += 1
    assert perms.current() is second
    assert "unknown role 'boss'" in str(heard[-1][1])

    path.unlink()  # deleted: the last good one stays
    clock.now += 1
    assert perms.current() is second
    assert heard[-1][0] is None and "can't be read" in str(heard[-1][1])

    path.write_text(SPEC_EXAMPLE)
    clock.now += 1
    third = perms.current()
    assert third.role(None, "secret-x") == Role.NONE and perms.generation == 2
    assert heard[-1] == (third, None)


def test_a_reload_that_fails_in_an_unexpected_way_keeps_the_last_good(tmp_path: Path) -> None:
    path = tmp_path / "perms.toml"
    path.write_text(SPEC_EXAMPLE)
    clock = Clock()
    heard: list[str | None] = []
    perms = PermissionFile(path, lambda p, problem: heard.append(problem), clock=clock)
    good = perms.current()
    for text in ("a = " + "[" * 50_000, b"\xff\xfe".decode("latin-1")):
        rewrite(path, text)
        clock.now += 1
        assert perms.current() is good
        assert heard[-1] is not None
    path.write_bytes(b"\xff\xfe")  # not UTF-8
    clock.now += 1
    assert perms.current() is good and "not UTF-8" in str(heard[-1])


def test_at_start_a_bad_file_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(PermissionFileError, match="can't be read"):
        PermissionFile(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("[[rules]]\nrole = 'reader'\nprojects=['*']\n")
    with pytest.raises(PermissionFileError, match=r"bad\.toml: rule 1: needs a 'user'"):
        PermissionFile(tmp_path / "bad.toml")


# ----------------------------------------------------------------------------- tokens


def test_mint_makes_a_prefixed_256_bit_secret_stored_only_as_a_digest() -> None:
    token, secret = mint("alice", projects=["Acme_Tool"], actions=["YANK", " upload "])
    assert secret.startswith(PREFIX)
    token_id, _, encoded = secret[len(PREFIX) :].partition("_")
    assert token_id == token.id and len(token_id) == 12
    import base64

    assert len(base64.urlsafe_b64decode(encoded + "=")) == 32
    assert token.projects == ("acme-tool",)
    assert token.actions == frozenset({"yank", "upload"})
    assert encoded not in token.to_json().decode() and secret not in repr(token)
    assert "digest" not in token.public()
    assert mint("alice")[0].actions == frozenset({"upload"})  # the default
    secrets = {mint("alice")[1] for _ in range(200)}
    assert len(secrets) == 200


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"actions": ["delete"]}, "unknown token action 'delete'"),
        ({"projects": ["not a name!"]}, "invalid project name"),
        ({"projects": [f"p{i}" for i in range(1001)]}, "at most 1000"),
        ({"description": "two\nlines"}, "one line"),
        ({"description": "x" * 201}, "one line"),
        ({"expires": 10.0, "now": 20.0}, "in the future"),
    ],
)
def test_mint_refuses_bad_input(kwargs: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        mint("alice", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("owner", ["", "a:b", "a\nb", "a\0b"])
def test_mint_refuses_an_owner_that_is_no_user_name(owner: str) -> None:
    with pytest.raises(ValueError, match="user name"):
        mint(owner)


def test_project_scope_names_are_stripped_and_normalized() -> None:
    assert check_projects([" Acme.Tool ", "acme_tool", "other"]) == ("acme-tool", "other")


def test_split_secret_takes_only_the_exact_form() -> None:
    token, secret = mint("alice")
    assert split_secret(secret) is not None
    body = secret[len(PREFIX) + 13 :]
    bad = [
        "",
        secret[:-1],
        secret + "A",
        secret + "\n",
        " " + secret,
        secret.replace(PREFIX, "Creamery-"),
        secret.replace(PREFIX, "creamery_"),
        f"{PREFIX}{token.id.upper()}_{body}",
        f"{PREFIX}{token.id[:-1]}_{body}",
        f"{PREFIX}{token.id}0_{body}",
        f"{PREFIX}{token.id}{body}",  # no separator
        f"{PREFIX}{token.id}-{body}",
        f"{PREFIX}{chr(0x661) * 12}_{body}",  # Arabic-Indic digits are digits, not hex digits
        f"{PREFIX}{token.id}_{chr(0x663) * 43}",
        f"{PREFIX}{token.id}_{body[:-1]}é",
        f"{PREFIX}{token.id}_{body[:-1]}=",  # padding
        f"{PREFIX}{token.id}_{body[:-2]}==",
        f"{PREFIX}{token.id}_{body}=",
        f"{PREFIX}{token.id}_{'+' * 43}",  # the standard alphabet, not base64url
        f"{PREFIX}{token.id}_{'/' * 43}",
        f"{PREFIX}{token.id}_{' ' * 43}",
        f"{PREFIX}{token.id}_{chr(0) * 43}",
        f"{PREFIX}{token.id}_{body[:20]}.{body[21:]}",
    ]
    for text in bad:
        assert split_secret(text) is None, text


def test_scope_and_actions() -> None:
    token, _ = mint("alice", projects=["one", "two"], actions=["yank", "upload"])
    assert token.allows("unyank", "one")  # unyank is yank
    assert token.allows("overwrite", "two")  # overwrite is upload
    assert not token.allows("remove", "one")
    assert not token.allows("upload", "three")
    assert token.allows("upload") and not token.allows("download")
    assert not token.allows("manage", "one")
    everywhere, _ = mint("alice", actions=["download"])
    assert everywhere.covers("anything") and everywhere.allows("download", "anything")


def test_a_record_round_trips_and_verifies(state: StateDir, tmp_path: Path) -> None:
    store = TokenStore(state.store)
    token, secret = mint(
        "alice", projects=["a"], actions=["list"], expires=time.time() + 60, description="ci"
    )
    store.create(token)
    other = TokenStore(twin(state, tmp_path).store)
    other.load()
    loaded = other.get(token.id)
    assert loaded == token and loaded is not None and loaded.expires == token.expires
    assert other.verify(secret) == token and store.verify(secret) is token
    assert other.verify(secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
    assert all(secret.encode() not in data for data in stored_bytes(state))
    assert all(secret[len(PREFIX) + 13 :].encode() not in d for d in stored_bytes(state))
    with pytest.raises(ValueError, match="exists already"):
        store.create(token)


def test_verify_costs_an_hmac_for_an_unknown_id_too(monkeypatch: pytest.MonkeyPatch) -> None:
    store = TokenStore(StateDir(Path("/nonexistent-state")).store)
    calls: list[str] = []
    real = tokens_module._digest

    def counting(token_id: str, secret: bytes) -> str:
        calls.append(token_id)
        return real(token_id, secret)

    _, secret = mint("alice")
    monkeypatch.setattr(tokens_module, "_digest", counting)
    assert store.verify(secret) is None
    assert len(calls) == 1  # the unknown id was hashed against the dummy digest
    assert store.verify("creamery-garbage") is None and len(calls) == 1


def test_expired_tokens_verify_but_say_they_expired(tmp_path: Path) -> None:
    store = TokenStore(StateDir(tmp_path).store)
    token, secret = mint("alice", expires=time.time() + 1000)
    store.create(token)
    assert store.verify(secret) is token
    assert not token.expired() and token.expired(time.time() + 1000)
    assert token.public()["expired"] is False


def test_revoke_removes_the_record_and_its_last_use(state: StateDir, tmp_path: Path) -> None:
    store = TokenStore(state.store)
    token, secret = mint("alice")
    store.create(token)
    store.mark_used(token)
    other = TokenStore(twin(state, tmp_path).store)
    other.load()
    assert other.verify(secret) is not None
    assert store.revoke(token.id) == token
    assert store.verify(secret) is None
    assert store.revoke(token.id) is None
    assert store.revoke("../../etc") is None
    other.refresh(token.id)  # what the change feed makes it do
    assert other.verify(secret) is None and other.get(token.id) is None
    assert not list(state.store.scan(TOKENS)) and not list(state.store.scan(USED))
    # A use noted after the revocation (the guard notes uses in a thread) writes nothing.
    assert not store.mark_used(token, now=time.time() + 10_000)
    assert not list(state.store.scan(USED))


def test_first_use_is_seen_exactly_once_across_two_stores(state: StateDir, tmp_path: Path) -> None:
    one = TokenStore(state.store)
    two = TokenStore(twin(state, tmp_path).store)
    for _ in range(6):
        token, _secret = mint("alice")
        one.create(token)
        two.refresh(token.id)
        firsts = race(2, lambda i, t=token: (one, two)[i].mark_used(t))
        assert sorted(firsts) == [False, True]
        # Later uses are not first uses, in either store, even after a reload.
        later = time.time() + 10_000
        assert not one.mark_used(token, now=later) and not two.mark_used(token, now=later)
        three = TokenStore(twin(state, tmp_path).store)
        three.load()
        reloaded = three.get(token.id)
        assert reloaded is not None and reloaded.last_used is not None
        assert not three.mark_used(reloaded)


def test_last_use_is_written_at_most_once_per_interval(tmp_path: Path) -> None:
    store = TokenStore(StateDir(tmp_path).store)
    token, _ = mint("alice")
    store.create(token)
    assert store.use_due(token)
    assert store.mark_used(token, now=100.0)
    assert not store.use_due(token, now=100.0 + tokens_module.USED_EVERY - 1)
    assert not store.mark_used(token, now=200.0)
    stored = store.store.stat(f"{USED}/{token.id}")
    assert stored is not None and read_all(store.store, stored) == b"100.000"
    assert store.use_due(token, now=100.0 + tokens_module.USED_EVERY)


@pytest.mark.parametrize(
    "damage",
    [
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        b"{}",
        pytest.param(b"[" * 100_000, id="deep"),
        b'{"id": "%(id)s", "owner": "bob", "digest": "%(digest)s", "projects": "abc"}',
        b'{"id": "%(id)s", "owner": "bob", "digest": "%(digest)s", "actions": "upload"}',
        b'{"id": "%(id)s", "owner": "bob", "digest": "%(digest)s", "expires": NaN}',
        b'{"id": "%(id)s", "owner": {"a": 1}, "digest": "%(digest)s"}',
        b'{"id": "000000000000", "owner": "bob", "digest": "%(digest)s"}',  # not its own key
    ],
)
def test_damaged_records_are_ignored_with_a_log_line(
    state: StateDir, damage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    store = TokenStore(state.store)
    good, secret = mint("alice")
    store.create(good)
    bad_id = "abcdefabcdef"
    state.store.put(
        f"{TOKENS}/{bad_id}",
        damage.replace(b"%(id)s", bad_id.encode()).replace(b"%(digest)s", b"0" * 64),
        if_absent=True,
    )
    fresh = TokenStore(state.store)
    with caplog.at_level(logging.ERROR, "creamery.tokens"):
        fresh.load()
        fresh.refresh(bad_id)
    assert [t.id for t in fresh.all()] == [good.id]
    assert fresh.verify(secret) is not None
    lines = [r.getMessage() for r in caplog.records if bad_id in r.getMessage()]
    assert lines and all("damaged" in line and "\n" not in line for line in lines)


def test_a_damaged_last_use_record_is_no_use(tmp_path: Path) -> None:
    store = TokenStore(StateDir(tmp_path).store)
    token, _ = mint("alice")
    store.create(token)
    store.store.put(f"{USED}/{token.id}", b"yesterday", if_absent=True)
    store.load()
    loaded = store.get(token.id)
    assert loaded is not None and loaded.last_used is None


# ----------------------------------------------------------------------------- owners


@pytest.mark.parametrize(
    "user", ["alice", "a/b", "a.b", "..", ".hidden", "50%", "%2E", "żółw", "a b"]
)
def test_user_names_round_trip_through_their_keys(
    state: StateDir, tmp_path: Path, user: str
) -> None:
    owners = Owners(state.store)
    owners.grant("Tool_X", user, Role.MAINTAINER, granted_by="root")
    assert "/" not in user_key(user) and not user_key(user).startswith(".")
    fresh = Owners(twin(state, tmp_path).store)
    fresh.load()
    assert fresh.role(user, "tool-x") == Role.MAINTAINER
    assert set(fresh.grants("tool-x")) == {user}
    assert fresh.revoke("tool-x", user)
    assert not fresh.revoke("tool-x", user)
    owners.refresh("tool-x")
    assert not owners.has_owners("tool-x")


def test_grants_refuse_what_is_not_grantable(tmp_path: Path) -> None:
    owners = Owners(StateDir(tmp_path).store)
    with pytest.raises(ValueError, match="uploader, maintainer or owner"):
        owners.grant("tool", "alice", Role.READER)
    for project in ("../x", "a/b", "", "-x"):
        with pytest.raises(ValueError, match="project name"):
            owners.grant(project, "alice", Role.OWNER)
    with pytest.raises(ValueError, match="user name"):
        owners.grant("tool", "", Role.OWNER)


def test_a_project_s_refresh_reads_only_that_project(state: StateDir, tmp_path: Path) -> None:
    owners = Owners(state.store)
    owners.grant("foobar", "mallory", Role.OWNER)
    owners.grant("foo-bar", "mallory", Role.OWNER)
    other = Owners(twin(state, tmp_path).store)
    other.refresh("foo")  # a feed key for project "foo", which has no grants
    assert not other.has_owners("foo")
    assert other.role("mallory", "foo") == Role.NONE


def test_two_first_uploads_make_exactly_one_owner(state: StateDir, tmp_path: Path) -> None:
    one = Owners(state.store)
    two = Owners(twin(state, tmp_path).store)
    for n in range(8):
        project = f"race-{n}"
        claimed = race(2, lambda i, p=project: (one, two)[i].claim(p, ("alice", "bob")[i]))
        assert sorted(claimed) == [False, True]
        fresh = Owners(state.store)
        fresh.load()
        grants = fresh.grants(project)
        assert len(grants) == 1 and next(iter(grants.values())).role == Role.OWNER
        winner = ("alice", "bob")[claimed.index(True)]
        assert set(grants) == {winner}


def test_a_claim_in_flight_elsewhere_is_not_taken_over(state: StateDir) -> None:
    """Another replica put `founded` and has not written its grant yet (or crashed between):
    this upload does not make its own uploader an owner too."""
    state.store.put(f"{FOUNDED}/tool", b"alice", if_absent=True)
    owners = Owners(state.store)
    assert not owners.claim("tool", "bob")
    assert owners.role("bob", "tool") == Role.NONE
    assert not list(state.store.scan(OWNERS))
    # The founder itself finishes its claim on a retry.
    assert owners.claim("tool", "alice")
    assert owners.role("alice", "tool") == Role.OWNER


def test_a_claimed_project_is_not_claimed_again(tmp_path: Path) -> None:
    owners = Owners(StateDir(tmp_path).store)
    assert owners.claim("tool", "alice")
    assert not owners.claim("tool", "bob")
    assert not owners.claim("Tool", "bob")  # the same project, spelled otherwise
    assert set(owners.grants("tool")) == {"alice"}


def test_damaged_grants_are_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = StateDir(tmp_path)
    owners = Owners(state.store)
    owners.grant("tool", "alice", Role.OWNER)
    for i, damage in enumerate([b"nope", b"[]", b'{"role": "admin"}', b"[" * 100_000]):
        state.store.put(f"{OWNERS}/tool/bad{i}", damage, if_absent=True)
    fresh = Owners(state.store)
    with caplog.at_level(logging.ERROR, "creamery.owners"):
        fresh.load()
        fresh.refresh("tool")
    assert set(fresh.grants("tool")) == {"alice"}
    assert sum("damaged" in r.getMessage() for r in caplog.records) >= 4


# ----------------------------------------------------------------------------- audit log


def _append_many(path: str, worker: int, count: int) -> None:
    log = AuditLog(StateDir(Path(path)))
    for i in range(count):
        log.write(Entry("upload", user=f"w{worker}", project="p", filename=f"{worker}-{i}" * 20))


def test_processes_appending_at_once_leave_whole_lines(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_append_many, args=(str(tmp_path), w, 200)) for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert all(w.exitcode == 0 for w in workers)
    lines = b"".join(p.read_bytes() for p in (tmp_path / AUDIT).glob("*.jsonl")).splitlines()
    entries = [json.loads(line) for line in lines]  # every line is one whole object
    assert len(entries) == 800
    for w in range(4):
        assert sorted(e["filename"] for e in entries if e["user"] == f"w{w}") == sorted(
            f"{w}-{i}" * 20 for i in range(200)
        )
    read = list(AuditLog(StateDir(tmp_path)).read())
    assert len(read) == 800


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of *size* mounted at *where* (root and a working `mount` needed, else skip)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root and mount(8) to make a small or read-only file system")
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"can't mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_read_only_state_refuses_the_entry(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "ro", "1m") as mounted:
        log = AuditLog(StateDir(mounted))
        log.write(Entry("upload", project="p"))
        subprocess.run(["mount", "-o", "remount,ro", str(mounted)], check=True)
        with pytest.raises(OSError):
            log.write(Entry("remove", project="p"))
        assert [e.action for e in log.read()] == ["upload"]
        fresh = AuditLog(StateDir(mounted / "never-made"))
        with pytest.raises(OSError):
            fresh.write(Entry("upload"))


def test_a_full_disk_refuses_the_entry_and_leaves_no_torn_line(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "full", "64k") as mounted:
        log = AuditLog(StateDir(mounted))
        written = 0
        with pytest.raises(OSError) as caught:
            for i in range(10_000):
                log.write(Entry("upload", project="p", filename=f"f{i}", detail="x" * 300))
                written += 1
        assert caught.value.errno in (28, None) or "short write" in str(caught.value)
        data = b"".join(p.read_bytes() for p in (mounted / AUDIT).glob("*.jsonl"))
        assert data.endswith(b"\n")
        assert len(data.splitlines()) == written
        assert all(json.loads(line) for line in data.splitlines())


def test_the_log_in_a_bucket(s3_bucket: str, s3_options: S3Options, tmp_path: Path) -> None:
    state = bucket_state(s3_bucket, s3_options, tmp_path)
    log = AuditLog(state)
    day = 86400.0
    start = 1_700_000_000.0  # 2023-11-14
    log.write(Entry("upload", user="alice", project="tool", sha256="ab" * 32), now=start)
    log.write(Entry("yank", user="bob", project="tool", reason="broken"), now=start + day)
    log.write(Entry("upload", user="alice", project="other"), now=start + 2 * day)
    log.write(Entry("remove", user="alice", project="tool"), now=start + 2 * day + 1)
    assert log.days() == ["2023-11-14", "2023-11-15", "2023-11-16"]
    keys = [s.key for s in state.store.scan(AUDIT)]
    assert len(keys) == 4 and all(k.startswith("audit/2023-11-1") for k in keys)
    other = AuditLog(bucket_state(s3_bucket, s3_options, tmp_path / "b"))
    assert [e.action for e in other.read()] == ["upload", "yank", "upload", "remove"]
    assert [e.action for e in other.read(since=start + day)] == ["yank", "upload", "remove"]
    assert [e.reason for e in other.read(user="bob")] == ["broken"]
    assert [e.action for e in other.read(project="tool", user="alice")] == ["upload", "remove"]


def test_read_filters(tmp_path: Path) -> None:
    log = AuditLog(StateDir(tmp_path))
    start = 1_700_000_000.0
    log.write(Entry("upload", user="alice", project="acme-tool"), now=start)
    log.write(Entry("upload", user="bob", project="acme-tool"), now=start + 10)
    log.write(Entry("token.create", user="alice"), now=start + 100_000)
    assert len(list(log.read())) == 3
    assert [e.user for e in log.read(project="acme-tool")] == ["alice", "bob"]
    assert [e.user for e in log.read(project="Acme_Tool")] == ["alice", "bob"]
    assert [e.action for e in log.read(user="alice")] == ["upload", "token.create"]
    assert [e.user for e in log.read(since=start + 5)] == ["bob", "alice"]
    assert list(log.read(since=start + 200_000)) == []
    assert list(log.read(user="nobody")) == []
    (tmp_path / AUDIT / "2023-11-14.jsonl").open("ab").write(b'{"torn": \n[1]\n{"time": 5}\n')
    assert len(list(log.read())) == 3  # damaged lines are skipped, never crash a read
    assert len(list(AuditLog(StateDir(tmp_path / "none")).read())) == 0


def test_entries_hold_the_time_in_utc(tmp_path: Path) -> None:
    log = AuditLog(StateDir(tmp_path))
    entry = log.write(Entry("upload"), now=1_700_000_000.25)
    assert entry.time == "2023-11-14T22:13:20.250000Z"
    assert entry.seconds == 1_700_000_000.25
    assert log.days() == ["2023-11-14"]


def test_an_entry_can_not_choose_its_file(tmp_path: Path) -> None:
    log = AuditLog(StateDir(tmp_path / "state"))
    with pytest.raises(ValueError):
        log.write(Entry("upload", time="../../escape-and-more"))
    assert not (tmp_path / "escape-and-more.jsonl").exists()
    assert not list(tmp_path.rglob("*.jsonl"))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("45s", 45), ("30m", 1800), ("1.5h", 5400), ("90d", 90 * 86400), ("2w", 14 * 86400),
     ("12", 12), (" 7 D ", 7 * 86400)],
)  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["0", "0d", "-1d", "abc", "", "d", "1x", "1dd", "1e3", "inf", "nan", "1_000s", "\u0661\u0662d",
     "99999999999d", "1" * 5000, "1.5.5h", "+5m"],
)  # fmt: skip
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["0s", "0", "0.0d", "99999999999d"])
def test_a_well_written_duration_out_of_range_says_so(text: str) -> None:
    with pytest.raises(ValueError, match="must be more than 0 and at most 100 years"):
        parse_duration(text)


# ----------------------------------------------------------------------------- proxies


@pytest.mark.parametrize(
    ("peer", "header", "client"),
    [
        ("10.0.0.1", "203.0.113.7", "203.0.113.7"),
        ("10.0.0.1", None, "10.0.0.1"),
        ("10.0.0.1", "", "10.0.0.1"),
        ("198.51.100.9", "203.0.113.7", "198.51.100.9"),  # untrusted peer: header ignored
        ("198.51.100.9", "10.0.0.2", "198.51.100.9"),
        ("10.0.0.1", "1.1.1.1, 203.0.113.7, 10.0.0.3", "203.0.113.7"),  # spoofed left part
        ("10.0.0.1", "10.0.0.4, 10.0.0.3", "10.0.0.4"),  # every hop trusted: the leftmost
        ("10.0.0.1", "203.0.113.7, garbage", "10.0.0.1"),  # garbage from the proxy itself
        ("10.0.0.1", "garbage, 203.0.113.7", "203.0.113.7"),
        ("10.0.0.1", "203.0.113.7, 10.0.0.3, nonsense, 10.0.0.2", "10.0.0.2"),
        ("10.0.0.1", "203.0.113.7,", "10.0.0.1"),
        ("10.0.0.1", "203.0.113.7:5555", "203.0.113.7"),
        ("10.0.0.1", "[2001:db8::7]:443", "2001:db8::7"),
        ("10.0.0.1", "2001:db8::7", "2001:db8::7"),
        ("10.0.0.1", "[2001:db8::7]", "2001:db8::7"),
        ("10.0.0.1", "::ffff:203.0.113.7", "203.0.113.7"),
        ("10.0.0.1", "[::ffff:10.0.0.3], 2001:db8::9, [::ffff:10.0.0.2]:80", "2001:db8::9"),
        ("::ffff:10.0.0.1", "203.0.113.7", "203.0.113.7"),  # a v4 peer on a dual-stack socket
        ("fd00::1", "203.0.113.7", "203.0.113.7"),
        ("fd00::1", "[fd00::2]:1, 2001:db8::1", "2001:db8::1"),
        ("10.0.0.1", "unknown", "10.0.0.1"),
        ("10.0.0.1", '"203.0.113.7"', "10.0.0.1"),
        ("10.0.0.1", "203.0.113.7 10.0.0.2", "10.0.0.1"),
        ("10.0.0.1", "300.1.1.1", "10.0.0.1"),
        ("10.0.0.1", "[2001:db8::7", "10.0.0.1"),
        ("not-an-address", "203.0.113.7", "not-an-address"),
    ],
)
def test_forwarded_for_is_walked_from_the_trusted_peer(
    peer: str, header: str | None, client: str
) -> None:
    proxies = TrustedProxies(["10.0.0.0/8", "fd00::/8"])
    assert proxies.client(peer, header) == client


def test_no_trusted_proxy_ignores_the_header() -> None:
    proxies = TrustedProxies([])
    assert not proxies
    assert proxies.client("10.0.0.1", "203.0.113.7") == "10.0.0.1"


def test_a_long_chain_is_read_only_so_far() -> None:
    proxies = TrustedProxies(["10.0.0.0/8"])
    chain = ", ".join(["203.0.113.7"] + ["10.0.0.9"] * 100)
    assert proxies.client("10.0.0.1", chain) == "10.0.0.9"


def test_an_ipv4_mapped_network_trusts_its_ipv4_peers() -> None:
    proxies = TrustedProxies(["::ffff:10.0.0.0/104"])
    assert proxies.trusts("10.0.0.1") and proxies.trusts("::ffff:10.0.0.1")
    assert proxies.client("10.0.0.1", "203.0.113.7") == "203.0.113.7"


# ----------------------------------------------------------------------------- decisions


def make_access(
    tmp_path: Path,
    *,
    permissions: str | None = None,
    owners: bool = False,
    authenticate: frozenset[str] = frozenset({"update"}),
) -> Access:
    tmp_path.mkdir(exist_ok=True)
    path = None
    if permissions is not None:
        path = tmp_path / "perms.toml"
        path.write_text(permissions)
    config = Config(
        authenticate=authenticate,
        permissions=path,
        owners="first-uploader" if owners else None,
        password_file=write_sha1_htpasswd(tmp_path / "htpasswd", "alice", "pw", "bob:x\n"),
    )
    access = Access(config, StateDir(tmp_path / "state"))
    access.load()
    return access


ALICE = Principal("alice")
OPERATIONS = ("list", "download", "upload", "overwrite", "yank", "remove", "manage")


def test_without_a_permission_file_pypiserver_s_rules(tmp_path: Path) -> None:
    access = make_access(tmp_path)
    for operation in ("list", "download"):
        assert access.may(ANONYMOUS, operation, "tool")
    for operation in ("upload", "overwrite", "yank", "remove", "manage"):
        assert not access.may(ANONYMOUS, operation, "tool")
        assert access.may(ALICE, operation, "tool")
    assert not access.filters_reads() and not access.identifies()
    assert access.required("update") and not access.required("list")

    guarded = make_access(tmp_path / "g", authenticate=frozenset({"update", "download", "list"}))
    assert not guarded.may(ANONYMOUS, "list", "tool")
    assert guarded.may(ALICE, "list", "tool") and guarded.required("download")


def test_tokens_narrow_their_owner(tmp_path: Path) -> None:
    access = make_access(tmp_path, authenticate=frozenset({"update", "download"}))
    token, secret = mint("alice", projects=["tool"], actions=["upload"])
    access.tokens.create(token)
    principal = access.authenticate("__token__", secret)
    assert principal == Principal("alice", token)
    assert isinstance(principal, Principal)
    assert access.may(principal, "upload", "tool") and access.may(principal, "overwrite", "tool")
    assert not access.may(principal, "upload", "other")
    assert not access.may(principal, "yank", "tool")
    assert not access.may(principal, "download", "tool")  # guarded, and not a token action
    assert access.may(principal, "list", "tool")  # what anonymous may, a token may
    assert not access.may(principal, "manage", "tool")
    assert "token" in access.why_not(principal, "upload", "other")
    assert secret not in access.why_not(principal, "upload", "other")


def test_bad_credentials(tmp_path: Path) -> None:
    access = make_access(tmp_path)
    token, secret = mint("alice", expires=time.time() + 3600)
    access.tokens.create(token)
    refused = access.authenticate("alice", "wrong")
    assert getattr(refused, "status", None) == 403
    assert access.authenticate("alice", "pw") == ALICE
    for user, password in [
        ("__token__", secret[:-1] + "x"),
        ("__token__", "nonsense"),
    ]:
        result = access.authenticate(user, password)
        assert getattr(result, "status", None) == 401, (user, result)
        assert secret not in getattr(result, "reason", "")
    # A token sent with another user name is a password (a password may start with
    # creamery- too): wrong, so pypiserver's 403, and the secret is not repeated.
    result = access.authenticate("alice", secret)
    assert getattr(result, "status", None) == 403
    assert secret not in getattr(result, "reason", "")
    ghost, ghost_secret = mint("carol")  # an owner no longer in the htpasswd file
    access.tokens.create(ghost)
    assert getattr(access.authenticate("__token__", ghost_secret), "status", None) == 401
    principal = access.authenticate("__token__", secret)
    assert isinstance(principal, Principal) and access.still_valid(principal)
    access.tokens.revoke(token.id)
    assert not access.still_valid(principal)


def test_with_a_permission_file(tmp_path: Path) -> None:
    text = SPEC_EXAMPLE + rule('user = "alice"', "maintainer", "secret-tool")
    access = make_access(tmp_path, permissions=text)
    assert access.may(ANONYMOUS, "list", "tool") and not access.may(ANONYMOUS, "list", "secret-x")
    assert not access.may(Principal("bob"), "upload", "secret-x")
    assert access.may(Principal("bob"), "download", "secret-x")
    assert access.may(Principal("carol"), "list", "tool")  # never less than anonymous
    assert not access.may(Principal("carol"), "list", "secret-x")
    assert access.may(ALICE, "yank", "secret-tool") and not access.may(
        ALICE, "manage", "secret-tool"
    )
    assert access.may(ALICE, "list", "secret-other")  # alice is staff
    assert access.filters_reads() and access.identifies()
    visible = access.visible(ANONYMOUS)
    assert visible("tool") and not visible("secret-x")
    assert access.view(Principal("carol")) != access.view(ANONYMOUS)
    assert access.view(Principal("carol")) == access.view(Principal("dave"))


def test_a_hidden_project_is_refused_like_an_unknown_one(tmp_path: Path) -> None:
    access = make_access(tmp_path, permissions=SPEC_EXAMPLE, owners=True)
    access.owners.grant("secret-x", "alice", Role.OWNER)  # type: ignore[union-attr]
    for principal in (ANONYMOUS, Principal("carol")):
        for operation in OPERATIONS:
            hidden = access.why_not(principal, operation, "secret-x")
            unknown = access.why_not(principal, operation, "secret-y")
            assert hidden.replace("secret-x", "P") == unknown.replace("secret-y", "P")
            assert "\n" not in hidden


def test_ownership_with_and_without_a_permission_file(tmp_path: Path) -> None:
    access = make_access(tmp_path, owners=True)
    owners = access.owners
    assert owners is not None
    assert access.may(Principal("bob"), "upload", "new")  # unowned: any uploader creates
    # ...but nobody grants themselves (or removes, yanks) a name they have not uploaded.
    for operation in ("manage", "remove", "yank", "overwrite"):
        assert not access.may(Principal("bob"), operation, "never-uploaded"), operation
    assert owners.claim("tool", "alice")
    assert access.may(ALICE, "manage", "tool") and access.may(ALICE, "remove", "tool")
    bob = Principal("bob")
    assert not access.may(bob, "upload", "tool")
    assert access.may(bob, "download", "tool")  # reading is never narrowed by ownership
    owners.grant("tool", "bob", Role.UPLOADER, granted_by="alice")
    assert access.may(bob, "upload", "tool") and not access.may(bob, "yank", "tool")

    text = rule('user = "root"', "owner", "*") + rule(f'user = "{EVERY_USER}"', "maintainer", "*")
    ruled = make_access(tmp_path / "ruled", permissions=text, owners=True)
    assert ruled.owners is not None
    ruled.owners.claim("tool", "alice")
    assert ruled.may(Principal("root"), "remove", "tool")  # an admin
    assert ruled.may(Principal("root"), "manage", "tool")
    assert not ruled.may(bob, "upload", "tool")  # a maintainer by the file, no grantee
    assert ruled.may(bob, "list", "tool")
    assert ruled.may(bob, "upload", "unowned")


def test_a_reload_is_audited(tmp_path: Path) -> None:
    access = make_access(tmp_path, permissions=SPEC_EXAMPLE)
    assert access.permissions is not None
    rewrite(access.permissions.path, "broken = ")
    access.permissions._checked -= 5  # as if a second had passed
    assert access.policy is not None
    entries = list(access.audit.read())
    assert [(e.action, e.result) for e in entries] == [("permissions.reload", "failed")]
    assert "not valid TOML" in (entries[0].detail or "")
