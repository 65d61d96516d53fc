from __future__ import annotations

import base64
import logging
import os
import shutil
import stat
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from passlib.hash import apr_md5_crypt, bcrypt, des_crypt, ldap_sha1, sha256_crypt, sha512_crypt

from creamery.catalog import auth
from creamery.catalog.auth import (
    Authenticator,
    FailureLimiter,
    HtpasswdFile,
    add_user,
    client_key,
    parse_basic_authorization,
)
from creamery.core.config import Config

HTPASSWD = shutil.which("htpasswd") or "/usr/bin/htpasswd"
needs_htpasswd = pytest.mark.skipif(
    not os.access(HTPASSWD, os.X_OK), reason="Apache htpasswd not installed"
)

PASSLIB_SCHEMES: dict[str, Callable[[str], str]] = {
    "bcrypt-2y": bcrypt.using(ident="2y", rounds=4).hash,
    "bcrypt-2b": bcrypt.using(ident="2b", rounds=4).hash,
    "bcrypt-2a": bcrypt.using(ident="2a", rounds=4).hash,
    "apr1": apr_md5_crypt.hash,
    "sha1": ldap_sha1.hash,
    "sha256": sha256_crypt.using(rounds=5000).hash,
    "sha512": sha512_crypt.using(rounds=5000).hash,
    "des": des_crypt.hash,
}
PREFIXES = {
    "bcrypt-2y": "$2y$",
    "bcrypt-2b": "$2b$",
    "bcrypt-2a": "$2a$",
    "apr1": "$apr1$",
    "sha1": "{SHA}",
    "sha256": "$5$",
    "sha512": "$6$",
    "des": "",
}


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def bump_mtime(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


def run_htpasswd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HTPASSWD, *args], capture_output=True, text=True, check=False)


# ---------------------------------------------------------------- schemes


@pytest.mark.parametrize("scheme", sorted(PASSLIB_SCHEMES))
def test_passlib_generated_schemes(tmp_path: Path, scheme: str) -> None:
    hashed = PASSLIB_SCHEMES[scheme]("s3cret!")
    assert hashed.startswith(PREFIXES[scheme])
    htpasswd = HtpasswdFile(write(tmp_path / "htpasswd", f"alice:{hashed}\n"))

    assert htpasswd.check("alice", "s3cret!")
    assert not htpasswd.check("alice", "s3cret")
    assert not htpasswd.check("alice", "")
    assert not htpasswd.check("bob", "s3cret!")


def test_every_scheme_in_one_file(tmp_path: Path) -> None:
    lines = [f"{name}:{make(f'pw-{name}')}" for name, make in PASSLIB_SCHEMES.items()]
    htpasswd = HtpasswdFile(write(tmp_path / "htpasswd", "\n".join(lines) + "\n"))

    for name in PASSLIB_SCHEMES:
        assert htpasswd.check(name, f"pw-{name}"), name
        assert not htpasswd.check(name, "pw-other"), name


HTPASSWD_FLAGS = {
    "bcrypt": (["-B", "-C", "4"], "$2y$"),
    "md5": (["-m"], "$apr1$"),
    "sha1": (["-s"], "{SHA}"),
    "sha256": (["-2"], "$5$"),
    "sha512": (["-5"], "$6$"),
    "crypt": (["-d"], ""),
}


@needs_htpasswd
@pytest.mark.parametrize("scheme", sorted(HTPASSWD_FLAGS))
def test_real_htpasswd_tool(tmp_path: Path, scheme: str) -> None:
    flags, prefix = HTPASSWD_FLAGS[scheme]
    path = tmp_path / "htpasswd"
    # crypt(3) DES only uses 8 ASCII characters
    password = "password" if scheme == "crypt" else "pässword"
    result = run_htpasswd("-c", "-b", *flags, str(path), "alice", password)
    if result.returncode != 0 or not path.exists():
        pytest.skip(f"this htpasswd doesn't support {flags[0]}: {result.stderr.strip()}")
    assert path.read_text(encoding="utf-8").split(":", 1)[1].startswith(prefix)
    htpasswd = HtpasswdFile(path)

    assert htpasswd.check("alice", password)
    assert not htpasswd.check("alice", "nope")
    assert not htpasswd.check("mallory", password)


@needs_htpasswd
def test_real_htpasswd_bcrypt_long_password_is_truncated_like_apache(tmp_path: Path) -> None:
    path = tmp_path / "htpasswd"
    long_password = "a" * 100
    run_htpasswd("-c", "-b", "-B", "-C", "4", str(path), "alice", long_password)
    htpasswd = HtpasswdFile(path)

    assert htpasswd.check("alice", long_password)
    assert htpasswd.check("alice", "a" * 72)
    assert not htpasswd.check("alice", "a" * 71)


def test_bcrypt_password_bytes_the_library_refuses_are_just_wrong(tmp_path: Path) -> None:
    hashed = bcrypt.using(ident="2y", rounds=4).hash("pw")
    htpasswd = HtpasswdFile(write(tmp_path / "htpasswd", f"alice:{hashed}\n"))

    assert not htpasswd.check("alice", "pw\0")
    assert not htpasswd.check("alice", "x" * 500)


# ---------------------------------------------------------------- file handling


def test_comments_blank_lines_crlf_and_extra_fields(tmp_path: Path) -> None:
    hashed = apr_md5_crypt.hash("pw")
    text = f"# users\r\n\r\n  alice:{hashed}:Alice Liddell\r\n"
    htpasswd = HtpasswdFile(write(tmp_path / "htpasswd", text))

    assert htpasswd.check("alice", "pw")
    assert "# users" not in htpasswd


def test_first_entry_of_a_duplicate_user_wins(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = f"alice:{ldap_sha1.hash('first')}\nalice:{ldap_sha1.hash('second')}\n"
    with caplog.at_level(logging.WARNING, logger="creamery.auth"):
        htpasswd = HtpasswdFile(write(tmp_path / "htpasswd", text))

    assert htpasswd.check("alice", "first")
    assert not htpasswd.check("alice", "second")
    assert "htpasswd:2: line skipped" in caplog.text


def test_malformed_lines_are_skipped_with_one_log_line_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = sha512_crypt.hash("pw")
    path = tmp_path / "htpasswd"
    path.write_bytes(
        b"no-colon-here\n"
        b":$apr1$nouser\n"
        b"plain:hunter2\n"
        b"short:$2y$05$tooshort\n"
        b"latin:\xff\xfe\n" + f"alice:{good}\n".encode()
    )
    with caplog.at_level(logging.INFO, logger="creamery.auth"):
        htpasswd = HtpasswdFile(path)
        htpasswd.check("alice", "pw")

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage().split(": line skipped")[0] for r in warnings] == [
        f"{path}:{n}" for n in range(1, 6)
    ]
    assert htpasswd.check("alice", "pw")
    assert not htpasswd.check("plain", "hunter2")
    assert "hunter2" not in caplog.text
    assert "tooshort" not in caplog.text
    assert good not in caplog.text


def test_unchanged_file_is_not_parsed_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "htpasswd", f"bad\nalice:{ldap_sha1.hash('pw')}\n")
    with caplog.at_level(logging.WARNING, logger="creamery.auth"):
        htpasswd = HtpasswdFile(path)
        for _ in range(5):
            htpasswd.check("alice", "pw")

    assert len(caplog.records) == 1


def test_user_added_later_is_seen_without_restart(tmp_path: Path) -> None:
    path = write(tmp_path / "htpasswd", f"alice:{apr_md5_crypt.hash('a')}\n")
    htpasswd = HtpasswdFile(path)
    assert not htpasswd.check("bob", "b")

    with path.open("a", encoding="utf-8") as f:
        f.write(f"bob:{apr_md5_crypt.hash('b')}\n")
    bump_mtime(path)

    assert htpasswd.check("bob", "b")
    assert htpasswd.check("alice", "a")


def test_same_size_rewrite_in_place_is_seen(tmp_path: Path) -> None:
    path = write(tmp_path / "htpasswd", f"alice:{ldap_sha1.hash('old')}\n")
    htpasswd = HtpasswdFile(path)
    assert htpasswd.check("alice", "old")
    before = path.stat()

    path.write_text(f"alice:{ldap_sha1.hash('new')}\n", encoding="utf-8")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))

    assert path.stat().st_size == before.st_size
    assert htpasswd.check("alice", "new")
    assert not htpasswd.check("alice", "old")


def test_removed_user_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "htpasswd", f"alice:{ldap_sha1.hash('a')}\n")
    htpasswd = HtpasswdFile(path)
    assert htpasswd.check("alice", "a")

    write(path, "")
    bump_mtime(path)

    assert not htpasswd.check("alice", "a")


def test_missing_file_denies_everyone_until_it_returns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "htpasswd"
    with caplog.at_level(logging.ERROR, logger="creamery.auth"):
        htpasswd = HtpasswdFile(path)
        assert not htpasswd.check("alice", "a")
        assert not htpasswd.check("alice", "a")
    assert len(caplog.records) == 1

    write(path, f"alice:{ldap_sha1.hash('a')}\n")
    assert htpasswd.check("alice", "a")

    path.unlink()
    assert not htpasswd.check("alice", "a")


def test_unknown_user_costs_a_verification(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bcrypt_hash = bcrypt.using(ident="2y", rounds=4).hash
    text = "".join(f"u{i}:{bcrypt_hash('pw')}\n" for i in range(3))
    htpasswd = HtpasswdFile(write(tmp_path / "htpasswd", text + f"s:{ldap_sha1.hash('pw')}\n"))
    verified: list[str] = []
    real_verify = auth._verify

    def spy(entry: auth._Entry, password: str) -> bool:
        verified.append(entry.scheme)
        return real_verify(entry, password)

    monkeypatch.setattr(auth, "_verify", spy)

    assert not htpasswd.check("nobody", "pw")
    # The dummy follows the file's most common scheme, so unknown users cost like real ones.
    assert verified == ["bcrypt"]


# ---------------------------------------------------------------- policy


def make_config(**changes: object) -> Config:
    return Config().with_updates(**changes)


def test_required_follows_the_configured_actions() -> None:
    authenticator = Authenticator(make_config(authenticate=frozenset({"update", "download"})))

    assert authenticator.required("update")
    assert authenticator.required("download")
    assert not authenticator.required("list")


def test_auth_disabled_requires_nothing_and_accepts_anything() -> None:
    authenticator = Authenticator(
        make_config(authenticate=frozenset(), password_file=None, auth_disabled=True)
    )

    assert not any(authenticator.required(a) for a in ("download", "list", "update"))
    assert authenticator.check("anyone", "anything")


def test_without_password_file_every_credential_is_refused() -> None:
    authenticator = Authenticator(make_config())

    assert authenticator.required("update")
    assert not authenticator.check("admin", "admin")
    assert not authenticator.check("", "")


def test_password_file_is_used(tmp_path: Path) -> None:
    path = write(tmp_path / "htpasswd", f"alice:{sha256_crypt.hash('pw')}\n")
    authenticator = Authenticator(make_config(password_file=path))

    assert authenticator.check("alice", "pw")
    assert not authenticator.check("alice", "wrong")


def test_auther_takes_precedence_over_the_password_file(tmp_path: Path) -> None:
    path = write(tmp_path / "htpasswd", f"alice:{sha256_crypt.hash('pw')}\n")
    calls: list[tuple[str, str]] = []

    def auther(user: str, password: str) -> bool:
        calls.append((user, password))
        return user == "robot"

    authenticator = Authenticator(make_config(password_file=path, auther=auther))

    assert authenticator.check("robot", "x")
    assert not authenticator.check("alice", "pw")
    assert calls == [("robot", "x"), ("alice", "pw")]


def test_auther_without_password_file_and_truthy_results() -> None:
    authenticator = Authenticator(make_config(auther=lambda user, password: user or None))

    assert authenticator.check("someone", "x") is True
    assert authenticator.check("", "x") is False


def test_auther_that_raises_denies_without_logging_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def auther(user: str, password: str) -> bool:
        raise RuntimeError(f"bad password {password}")

    authenticator = Authenticator(make_config(auther=auther))
    with caplog.at_level(logging.DEBUG, logger="creamery.auth"):
        assert not authenticator.check("alice", "topsecret")

    assert "RuntimeError" in caplog.text
    assert "topsecret" not in caplog.text


# ---------------------------------------------------------------- Basic credentials


def basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode("ascii")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (basic(b"alice:pw"), ("alice", "pw")),
        (basic(b"alice:p:w:"), ("alice", "p:w:")),
        (basic(b":"), ("", "")),
        (basic("jörg:pässword".encode()), ("jörg", "pässword")),
        (basic("jörg:pw".encode("latin-1")), ("jörg", "pw")),
        ("bAsIc   " + base64.b64encode(b"alice:pw").decode() + "  ", ("alice", "pw")),
        ("Basic " + base64.b64encode(b"alice:p").decode().rstrip("="), ("alice", "p")),
        (None, None),
        ("", None),
        ("Basic", None),
        ("Basic ", None),
        ("Bearer abc.def", None),
        ("Basic !!!not-base64!!!", None),
        ("Basic " + base64.b64encode(b"no-colon").decode(), None),
        ("Basic a", None),
    ],
)
def test_parse_basic_authorization(header: str | None, expected: tuple[str, str] | None) -> None:
    assert parse_basic_authorization(header) == expected


# ---------------------------------------------------------------- limiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limiter_slows_down_after_repeated_failures() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(max_failures=3, window=60, clock=clock)

    for _ in range(2):
        limiter.record_failure("10.0.0.1")
        assert limiter.retry_after("10.0.0.1") is None
    clock.now += 10
    limiter.record_failure("10.0.0.1")

    assert limiter.retry_after("10.0.0.1") == 50
    assert limiter.retry_after("10.0.0.2") is None
    clock.now += 49.5
    assert limiter.retry_after("10.0.0.1") == 1
    clock.now += 0.5
    assert limiter.retry_after("10.0.0.1") is None


def test_limiter_window_slides() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(max_failures=2, window=60, clock=clock)
    limiter.record_failure("ip")
    clock.now += 59
    limiter.record_failure("ip")
    clock.now += 2  # the first failure has left the window
    assert limiter.retry_after("ip") is None

    limiter.record_failure("ip")
    assert limiter.retry_after("ip") == 58


def test_limiter_success_resets() -> None:
    limiter = FailureLimiter(max_failures=2, window=60, clock=FakeClock())
    limiter.record_failure("ip")
    limiter.record_failure("ip")
    assert limiter.retry_after("ip") is not None

    limiter.record_success("ip")

    assert limiter.retry_after("ip") is None
    assert len(limiter) == 0
    limiter.record_success("never-seen")


def test_limiter_memory_is_bounded_evicting_the_oldest() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(max_failures=1, window=60, max_clients=100, clock=clock)
    for i in range(1000):
        limiter.record_failure(f"client-{i}")
        clock.now += 0.001

    assert len(limiter) == 100
    assert limiter.retry_after("client-0") is None
    assert limiter.retry_after("client-999") is not None


def test_limiter_forgets_stale_clients() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(max_failures=5, window=60, clock=clock)
    for i in range(50):
        limiter.record_failure(f"client-{i}")
    clock.now += 61
    limiter.record_failure("fresh")

    assert len(limiter) == 1


def test_limiter_refreshes_recency_on_failure() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(max_failures=2, window=60, max_clients=2, clock=clock)
    limiter.record_failure("a")
    limiter.record_failure("b")
    limiter.record_failure("a")  # "a" is now the most recent
    limiter.record_failure("c")  # evicts "b"

    assert limiter.retry_after("a") is not None
    limiter.record_failure("b")
    assert limiter.retry_after("b") is None


@pytest.mark.parametrize(
    "kwargs", [{"max_failures": 0}, {"window": 0}, {"max_clients": 0}, {"window": -1}]
)
def test_limiter_rejects_nonsense_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        FailureLimiter(**kwargs)


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::ffff", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("unix-socket", "unix-socket"),
    ],
)
def test_client_key(address: str, key: str) -> None:
    assert client_key(address) == key


# ---------------------------------------------------------------- add_user


def test_add_user_creates_a_bcrypt_2y_file(tmp_path: Path) -> None:
    path = tmp_path / "htpasswd"
    add_user(path, "alice", "pässword", rounds=4)

    text = path.read_text(encoding="utf-8")
    assert text.startswith("alice:$2y$04$") and text.endswith("\n")
    assert text.count("\n") == 1
    assert HtpasswdFile(path).check("alice", "pässword")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644 & ~umask


def test_add_user_default_cost() -> None:
    assert auth.DEFAULT_BCRYPT_ROUNDS >= 10


def test_add_user_updates_in_place_keeping_other_lines(tmp_path: Path) -> None:
    bob = apr_md5_crypt.hash("b")
    original = f"# team\r\nbob:{bob}\r\nalice:{{SHA}}old\r\n\r\nalice:dup\r\ncarol:{bob}"
    path = write(tmp_path / "htpasswd", original)
    path.chmod(0o600)
    inode = path.stat().st_ino

    add_user(path, "alice", "new", rounds=4)

    lines = path.read_bytes().split(b"\n")
    assert lines[0] == b"# team\r"
    assert lines[1] == f"bob:{bob}\r".encode()
    assert lines[2].startswith(b"alice:$2y$")
    assert lines[3:] == [b"\r", f"carol:{bob}".encode()]
    assert path.stat().st_ino != inode
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list(tmp_path.iterdir()) == [path]
    htpasswd = HtpasswdFile(path)
    assert htpasswd.check("alice", "new")
    assert htpasswd.check("bob", "b")


def test_add_user_appends_after_a_missing_final_newline(tmp_path: Path) -> None:
    path = write(tmp_path / "htpasswd", f"bob:{ldap_sha1.hash('b')}")
    add_user(path, "alice", "a", rounds=4)

    htpasswd = HtpasswdFile(path)
    assert htpasswd.check("bob", "b")
    assert htpasswd.check("alice", "a")


def test_add_user_is_seen_by_a_running_reader(tmp_path: Path) -> None:
    path = tmp_path / "htpasswd"
    add_user(path, "alice", "a", rounds=4)
    htpasswd = HtpasswdFile(path)
    assert not htpasswd.check("bob", "b")

    add_user(path, "bob", "b", rounds=4)

    assert htpasswd.check("bob", "b")


def test_concurrent_add_user_loses_no_user(tmp_path: Path) -> None:
    path = tmp_path / "htpasswd"
    users = [f"user{i}" for i in range(24)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda user: add_user(path, user, user + "-pw", rounds=4), users))
    htpasswd = HtpasswdFile(path)
    assert [user for user in users if user not in htpasswd] == []


def test_add_user_through_a_symlink_updates_the_target(tmp_path: Path) -> None:
    target = tmp_path / "real"
    add_user(target, "alice", "a", rounds=4)
    link = tmp_path / "link"
    link.symlink_to(target)

    add_user(link, "bob", "b", rounds=4)

    assert link.is_symlink()
    assert HtpasswdFile(target).check("bob", "b")


def test_add_user_failure_leaves_the_original_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = f"bob:{ldap_sha1.hash('b')}\n"
    path = write(tmp_path / "htpasswd", original)

    def broken_replace(src: object, dst: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(auth.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        add_user(path, "alice", "a", rounds=4)

    assert path.read_text(encoding="utf-8") == original
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize(
    "user", ["", "al:ice", "al\nice", "al\rice", "al\0ice", "#alice", " alice", "alice\t"]
)
def test_add_user_rejects_bad_user_names(tmp_path: Path, user: str) -> None:
    with pytest.raises(ValueError):
        add_user(tmp_path / "htpasswd", user, "pw", rounds=4)
    assert not (tmp_path / "htpasswd").exists()


@pytest.mark.parametrize("password", ["x" * 73, "é" * 37, "a\0b"])
def test_add_user_rejects_passwords_bcrypt_cannot_keep(tmp_path: Path, password: str) -> None:
    with pytest.raises(ValueError):
        add_user(tmp_path / "htpasswd", "alice", password, rounds=4)


@needs_htpasswd
def test_add_user_output_is_accepted_by_apache_htpasswd(tmp_path: Path) -> None:
    path = tmp_path / "htpasswd"
    add_user(path, "alice", "s3cret", rounds=4)

    assert run_htpasswd("-v", "-b", str(path), "alice", "s3cret").returncode == 0
    assert run_htpasswd("-v", "-b", str(path), "alice", "wrong").returncode != 0


# ---------------------------------------------------------------- logs


def test_no_secret_reaches_the_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "htpasswd"
    with caplog.at_level(logging.DEBUG):
        add_user(path, "alice", "password-one", rounds=4)
        hashed = path.read_text(encoding="utf-8").split(":", 1)[1].strip()
        with path.open("a", encoding="utf-8") as f:
            f.write("broken:password-two\n")
        authenticator = Authenticator(make_config(password_file=path))
        authenticator.check("alice", "password-one")
        authenticator.check("alice", "password-three")
        authenticator.check("nobody", "password-four")

    for secret in ("password-one", "password-two", "password-three", "password-four", hashed):
        assert secret not in caplog.text
