"""Files an operator names (`-P`, `--permissions`, `--config`, `--welcome`, `--log-conf`,
`--prune-rules`, `--mirror-merge @FILE`, ...) may be anything: a FIFO (a plain open() waits for
a writer forever), a directory, `/dev/zero`, a huge file, a symlink loop. At start that is one
line and exit 2; on a reload the server logs one line, never hangs and never answers 5xx.
Real files throughout; chmod 000 is not tried (the tests run as root, who reads anyway)."""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from support.clients import creamery, describe
from support.dists import make_wheel
from support.htpasswd import write_sha1_htpasswd
from support.servers import run_server

from creamery.catalog.auth import HtpasswdFile, add_user
from creamery.catalog.permissions import PermissionFile, PermissionFileError
from creamery.catalog.prune_rules import RulesError, read_rules
from creamery.cli.mirror_options import parse_merge_list
from creamery.cli.settings import read_file
from creamery.cli.update import read_ignorelist
from creamery.core.config import ConfigError
from creamery.core.operator_files import (
    OperatorFileError,
    check_operator_file,
    read_name_list,
    read_operator_file,
    read_operator_text,
)
from creamery.http.logs import apply_log_conf
from creamery.mirror.policy_lists import PatternFile, PolicyError
from creamery.web.pages import _welcome_template

T = TypeVar("T")
PROMPTLY = 5.0  # seconds: any of these answers takes milliseconds; a hang takes forever
PERMISSIONS = '[[rules]]\nuser = "anonymous"\nrole = "reader"\nprojects = ["*"]\n'


def promptly(call: Callable[[], T]) -> T:
    """*call*'s result (or its exception), failing the test if it takes more than PROMPTLY."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(PROMPTLY)
    assert outcome, f"still waiting after {PROMPTLY}s: it hangs"
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]  # type: ignore[return-value]


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def loop(path: Path) -> Path:
    path.symlink_to(path)
    return path


def sparse(path: Path, size: int) -> Path:
    with path.open("wb") as file:
        file.truncate(size)
    return path


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[dict[str, tuple[Path, str]]]:
    """Each kind of path that is not a readable regular file, with what the error says."""
    yield {
        "fifo": (fifo(tmp_path / "fifo"), "is not a regular file (a FIFO)"),
        "directory": (tmp_path, "is not a regular file (a directory)"),
        "device": (Path("/dev/zero"), "is not a regular file (a device)"),
        "loop": (loop(tmp_path / "loop"), "can't be read: Too many levels of symbolic links"),
        "missing": (tmp_path / "missing", "can't be read: No such file or directory"),
    }


KINDS = ("fifo", "directory", "device", "loop", "missing")


# ----------------------------------------------------------------------------- the helper


@pytest.mark.parametrize("kind", KINDS)
def test_a_path_that_is_no_regular_file_is_refused_at_once(
    hostile: dict[str, tuple[Path, str]], kind: str
) -> None:
    path, said = hostile[kind]
    for attempt in (
        lambda: read_operator_file(path, "thing file", 100),
        lambda: check_operator_file(path, "thing file"),
    ):
        with pytest.raises(OperatorFileError) as error:
            promptly(attempt)
        assert str(error.value) == f"thing file {str(path)!r} {said}"
        assert isinstance(error.value, ConfigError)  # a start-up error: one line, exit 2


def test_a_file_is_read_to_its_bound_and_no_further(tmp_path: Path) -> None:
    exact = tmp_path / "exact"
    exact.write_bytes(b"x" * 100)
    assert read_operator_file(exact, "thing file", 100) == b"x" * 100
    assert check_operator_file(exact, "thing file") == exact
    assert check_operator_file(None, "thing file") is None
    huge = sparse(tmp_path / "huge", 1 << 40)  # a terabyte, stat'ed and refused, not read
    with pytest.raises(OperatorFileError, match=r"'\S+huge' is larger than 100 bytes$"):
        promptly(lambda: read_operator_file(huge, "thing file", 100))


def test_the_null_device_reads_as_an_empty_file() -> None:
    """`--ignorelist-file /dev/null`, as pypiserver reads it (an empty list), was refused as
    "not a regular file (a device)"; other devices still are (above)."""
    assert promptly(lambda: read_operator_file(os.devnull, "ignore list")) == b""
    assert read_name_list(os.devnull, "ignore list") == []
    assert check_operator_file(Path(os.devnull), "ignore list") == Path(os.devnull)
    assert read_ignorelist(os.devnull) == frozenset()


def test_text_is_utf8_and_a_name_list_skips_comments(tmp_path: Path) -> None:
    path = tmp_path / "names"
    path.write_bytes("\ufeffone # first\n\n  # nothing\ntwo\r\n".encode())
    assert read_operator_text(path, "list").startswith("one")
    assert read_name_list(path, "list") == ["one", "two"]
    path.write_bytes(b"ok\n\xff\n")
    with pytest.raises(OperatorFileError, match=r"is not UTF-8 \(byte 3\)$"):
        read_name_list(path, "list")


def test_a_file_replaced_mid_way_is_read_from_the_one_opened(tmp_path: Path) -> None:
    """The bytes come from one open file: whatever is renamed over the path afterwards, what
    was read is one version, whole."""
    path = tmp_path / "file"
    path.write_bytes(b"old\n")
    fd = os.open(path, os.O_RDONLY)
    try:
        replacement = tmp_path / "new"
        replacement.write_bytes(b"new\n")
        os.replace(replacement, path)
        assert os.read(fd, 100) == b"old\n"  # the premise: an open file outlives its name
    finally:
        os.close(fd)
    assert read_operator_file(path, "file") == b"new\n"


# ----------------------------------------------------------------------------- each reader


@pytest.mark.parametrize("kind", KINDS)
def test_every_reader_refuses_a_hostile_file_with_one_line(
    hostile: dict[str, tuple[Path, str]], kind: str, tmp_path: Path
) -> None:
    path, said = hostile[kind]
    readers: list[tuple[Callable[[], object], type[Exception], str]] = [
        (lambda: read_file(path, []), ConfigError, f"config file {str(path)!r} {said}"),
        (lambda: read_rules(path), RulesError, f"rules file {str(path)!r} {said}"),
        (lambda: _welcome_template(path, None), ConfigError, f"welcome file {str(path)!r} {said}"),
        (lambda: read_ignorelist(str(path)), ConfigError, f"ignore list {str(path)!r} {said}"),
        (lambda: PermissionFile(path), PermissionFileError, f"{path}: {said}"),
        (lambda: PatternFile(path), PolicyError, f"{path}: {said}"),
        (
            lambda: apply_log_conf(path),
            ConfigError,
            f"logging configuration {str(path)!r} {said}",
        ),
    ]
    for read, error_type, line in readers:
        with pytest.raises(error_type) as error:
            promptly(read)
        assert str(error.value) == line


@pytest.mark.parametrize("kind", ["fifo", "directory", "device", "loop"])
def test_creamery_passwd_refuses_a_hostile_password_file(
    hostile: dict[str, tuple[Path, str]], kind: str
) -> None:
    path, said = hostile[kind]
    with pytest.raises(ValueError, match=f"password file '.*' {re.escape(said)}$"):
        promptly(lambda: add_user(path, "alice", "secret", rounds=4))


def test_creamery_passwd_on_a_fifo_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = fifo(tmp_path / "htpasswd")
    result = creamery("passwd", path, "alice", "--password-stdin", stdin="pw\n", timeout=60)
    assert result.returncode == 2, describe(result)
    assert result.stderr.strip().splitlines() == [
        f"creamery: error: password file {str(path)!r} is not a regular file (a FIFO)"
    ], describe(result)


# ----------------------------------------------------------------------------- reloads


def replace_with_fifo(path: Path) -> None:
    """A FIFO renamed over *path*, as a hostile or careless operator might."""
    staged = fifo(path.with_name(path.name + ".fifo"))
    os.replace(staged, path)


def test_a_permission_file_replaced_by_a_fifo_keeps_the_last_policy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "perms.toml"
    path.write_text(PERMISSIONS)
    now = [0.0]
    file = PermissionFile(path, clock=lambda: now[0])
    policy = file.policy
    replace_with_fifo(path)
    for _ in range(3):
        now[0] += 2
        with caplog.at_level(logging.ERROR, "creamery"):
            assert promptly(file.current) is policy
    said = [r.getMessage() for r in caplog.records if "FIFO" in r.getMessage()]
    assert len(said) == 1 and str(path) in said[0] and "stay in force" in said[0], said


def test_a_password_file_replaced_by_a_fifo_denies_everyone_without_a_hang(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Credentials fail closed (as for a missing -P file): nobody gets in, nothing hangs."""
    path = write_sha1_htpasswd(tmp_path / "htpasswd", "alice", "pw")
    passwords = HtpasswdFile(path)
    assert passwords.check("alice", "pw")
    replace_with_fifo(path)
    with caplog.at_level(logging.ERROR, "creamery"):
        for _ in range(3):
            assert promptly(lambda: passwords.check("alice", "pw")) is False
    said = [r.getMessage() for r in caplog.records if "FIFO" in r.getMessage()]
    assert len(said) == 1 and str(path) in said[0] and "denying everyone" in said[0], said
    path.unlink()
    write_sha1_htpasswd(path, "alice", "pw")
    assert passwords.check("alice", "pw")  # readable again: taken again


def test_a_running_server_whose_files_become_fifos_answers_without_5xx(tmp_path: Path) -> None:
    """The permission and password files, and the prune rules, all turned into FIFOs under a
    live server: every request is still answered, promptly, and never with a 5xx."""
    root = tmp_path / "root"
    make_wheel(root, "app", "1.0")
    htpasswd = write_sha1_htpasswd(tmp_path / "htpasswd", "alice", "pw")
    permissions = tmp_path / "perms.toml"
    permissions.write_text(PERMISSIONS)
    args = ("-P", str(htpasswd), "-a", "update", "--permissions", str(permissions))
    with run_server([root], *args) as server, server.client(timeout=PROMPTLY) as http:
        assert http.get("/simple/app/").status_code == 200
        replace_with_fifo(permissions)
        replace_with_fifo(htpasswd)
        time.sleep(1.5)  # the permission file is looked at once a second

        def said_once() -> bool:
            return "FIFO" in server.log()

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not said_once():
            assert http.get("/simple/app/").status_code == 200  # the last good policy
            upload = http.post("/", auth=("alice", "pw"), data={":action": "remove_pkg"})
            assert upload.status_code < 500, upload.text  # -P now denies: a 4xx
            time.sleep(0.2)
        assert said_once(), server.log()
        upload = http.post("/", auth=("alice", "pw"), data={":action": "remove_pkg"})
        assert upload.status_code in (401, 403), upload.text
        assert http.get("/simple/app/").status_code == 200
        lines = [line for line in server.log().splitlines() if "FIFO" in line]
        assert len([line for line in lines if str(permissions) in line]) == 1, lines
        assert len([line for line in lines if str(htpasswd) in line]) == 1, lines


# ----------------------------------------------------------------------------- at start


def start_fails_with(*args: object) -> str:
    """`creamery run --print-config ARGS`'s one error line (it must exit 2, promptly)."""
    try:
        result = creamery("run", "--print-config", *args, timeout=20)
    except Exception as error:  # TimeoutExpired: it hung
        pytest.fail(f"creamery {args} did not end: {error}")
    assert result.returncode == 2, describe(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("creamery: error: "), describe(result)
    return lines[0].removeprefix("creamery: error: ")


def test_a_fifo_config_rules_or_password_file_at_start_is_one_line(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    config = fifo(tmp_path / "creamery.toml")
    said = start_fails_with("--config", config, root)
    assert said == f"config file {str(config)!r} is not a regular file (a FIFO)"
    rules = fifo(tmp_path / "rules.toml")
    said = start_fails_with("--prune-every", "1d", "--prune-rules", rules, root)
    assert f"rules file {str(rules)!r} is not a regular file (a FIFO)" in said
    passwords = fifo(tmp_path / "htpasswd")
    said = start_fails_with("-P", passwords, root)
    assert said == f"password file {str(passwords)!r} is not a regular file"


@pytest.mark.parametrize(
    ("option", "what"),
    [
        ("--permissions", "permission file"),
        ("--welcome", "welcome file"),
        ("--log-conf", "logging configuration"),
    ],
)
def test_a_fifo_named_at_start_is_one_line_and_exit_2(
    tmp_path: Path, option: str, what: str
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    path = fifo(tmp_path / "named")
    said = start_fails_with(option, path, root)
    assert said == f"{what} {str(path)!r} is not a regular file (a FIFO)"


def test_a_fifo_merge_list_at_start_is_one_line_and_exit_2(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    path = fifo(tmp_path / "merge.txt")
    said = start_fails_with("--mirror", "--mirror-merge", f"@{path}", root)
    assert said == f"merge list file {str(path)!r} is not a regular file (a FIFO)"
    listed = tmp_path / "merge-ok.txt"  # the names of a regular list are read as before
    listed.write_text("Acme_Tools # ours\n\nother\n")
    assert parse_merge_list([f"@{listed}", "x"]) == ("acme-tools", "other", "x")
