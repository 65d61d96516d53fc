"""Who may do what: htpasswd files, the auth policy, Basic credentials and failure throttling.

Pure logic, no HTTP framework. Password verification is CPU-bound (bcrypt by design), so
async callers should run `Authenticator.check` in a thread.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import fcntl
import functools
import hashlib
import ipaddress
import logging
import math
import os
import stat
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from creamery.core import durable
from creamery.core.config import Auther, Config
from creamery.core.operator_files import OperatorFileError, read_operator_file

if TYPE_CHECKING:
    from passlib.context import CryptContext

logger = logging.getLogger("creamery.auth")

# Every scheme Apache's htpasswd writes, except plaintext: accepting plaintext would turn any
# unrecognised hash into a password equal to its own text, and Apache itself refuses it on Unix.
APACHE_SCHEMES = (
    "bcrypt",
    "sha256_crypt",
    "sha512_crypt",
    "apr_md5_crypt",
    "ldap_sha1",
    "des_crypt",
)


@functools.cache
def _context() -> CryptContext:
    """libpass's context for the Apache schemes, loaded on first use: a server without a
    password file never pays for importing it."""
    from passlib.context import CryptContext

    return CryptContext(schemes=list(APACHE_SCHEMES))


def _missing_backend() -> type[Exception]:
    from passlib.exc import MissingBackendError

    return MissingBackendError


BCRYPT_MAX_BYTES = 72
# Every authenticated request verifies a hash; 10 is OWASP's minimum and keeps that near 60 ms.
DEFAULT_BCRYPT_ROUNDS = 10
# A file modified this recently may change again without changing size or mtime.
_RACY_NS = 2_000_000_000
MAX_HTPASSWD_BYTES = 64 << 20  # ~1M bcrypt lines: a larger -P file is refused unread


# ---------------------------------------------------------------- htpasswd file


@dataclass(frozen=True)
class _Entry:
    scheme: str
    hash: str


@dataclass(frozen=True)
class _Table:
    entries: dict[str, _Entry] = field(default_factory=dict)
    dummy: _Entry | None = None  # verified for unknown users so they cost as much as known ones
    raw: bytes | None = None


def _verify(entry: _Entry, password: str) -> bool:
    secret = password.encode("utf-8")
    if entry.scheme == "bcrypt":
        # bcrypt only ever uses 72 bytes; Apache truncates the same way when hashing.
        secret = secret[:BCRYPT_MAX_BYTES]
    try:
        return bool(_context().handler(entry.scheme).verify(secret, entry.hash))
    except (ValueError, TypeError):  # e.g. a NUL byte bcrypt refuses: simply not a match
        return False
    except _missing_backend():  # the standalone file ships without compiled bcrypt
        logger.error("can't check a %s password: pip install %s", entry.scheme, entry.scheme)
        return False


def _parse_entry(line: str) -> tuple[str, _Entry]:
    """One `user:hash[:ignored]` line; ValueError with a reason that holds no secret."""
    user, sep, rest = line.partition(":")
    if not sep or not user:
        raise ValueError("expected user:hash")
    hashed = rest.partition(":")[0]  # Apache ignores fields after the hash
    scheme = _context().identify(hashed, required=False)
    if scheme is None:
        raise ValueError("unrecognised hash scheme (plaintext is not accepted)")
    try:
        _context().handler(scheme).from_string(hashed)
    except ValueError as error:
        raise ValueError(f"malformed {scheme} hash") from error
    return user, _Entry(scheme, hashed)


def _pick_dummy(entries: dict[str, _Entry]) -> _Entry | None:
    if not entries:
        return None
    common = Counter(e.scheme for e in entries.values()).most_common(1)[0][0]
    return next(e for e in entries.values() if e.scheme == common)


def _parse_table(path: Path, raw: bytes) -> _Table:
    entries: dict[str, _Entry] = {}
    for number, raw_line in enumerate(raw.splitlines(), start=1):
        try:
            line = raw_line.decode("utf-8").strip()
            if not line or line.startswith("#"):
                continue
            user, entry = _parse_entry(line)
        except UnicodeDecodeError:
            logger.warning("%s:%d: line skipped: not UTF-8", path, number)
            continue
        except ValueError as error:
            logger.warning("%s:%d: line skipped: %s", path, number, error)
            continue
        if user in entries:
            logger.warning("%s:%d: line skipped: user already defined above", path, number)
            continue
        entries[user] = entry
    return _Table(entries, _pick_dummy(entries), raw)


class HtpasswdFile:
    """An Apache htpasswd file, re-read whenever it changes on disk.

    A missing or unreadable file denies everyone (fail closed) until it is readable again.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._table = _Table()
        self._signature: tuple[int, ...] | None = None
        self._racy = False
        self._problem: str | None = None
        self._lock = threading.Lock()
        self.reload_if_changed()

    def check(self, user: str, password: str) -> bool:
        self.reload_if_changed()
        table = self._table
        entry = table.entries.get(user)
        if entry is None:
            if table.dummy is not None:
                _verify(table.dummy, password)
            return False
        return _verify(entry, password)

    def fingerprint(self) -> tuple[int, ...] | None:
        """Changes whenever the file does: a key for caching verified credentials."""
        self.reload_if_changed()
        return self._signature

    def __contains__(self, user: object) -> bool:
        self.reload_if_changed()
        return user in self._table.entries

    def entry_digest(self, user: str) -> bytes | None:
        """A digest of *user*'s line (its salted hash): changes when their password does;
        None when there is no such user. One stat, no bcrypt."""
        self.reload_if_changed()
        entry = self._table.entries.get(user)
        if entry is None:
            return None
        return hashlib.sha256(f"{entry.scheme}:{entry.hash}".encode()).digest()

    def reload_if_changed(self) -> None:
        """One stat per call; the file is read only when it looks different."""
        try:
            st = os.stat(self.path)
        except OSError as error:
            self._unavailable(f"can't be read: {error.strerror or type(error).__name__}")
            return
        signature = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if signature == self._signature and not self._racy:
            return
        with self._lock:
            if signature != self._signature or self._racy:
                self._load(signature, st.st_mtime_ns)

    def _load(self, signature: tuple[int, ...], mtime_ns: int) -> None:
        try:
            raw = read_operator_file(self.path, "password file", MAX_HTPASSWD_BYTES)
        except OperatorFileError as error:  # a FIFO, a device, too big: never a hang
            self._unavailable(error.problem)
            return
        if raw != self._table.raw:
            self._table = _parse_table(self.path, raw)
            logger.info("%s: %d user(s) loaded", self.path, len(self._table.entries))
        self._signature = signature
        self._racy = time.time_ns() - mtime_ns < _RACY_NS
        self._problem = None

    def _unavailable(self, problem: str) -> None:
        if problem != self._problem:
            logger.error("%s: password file %s; denying everyone", self.path, problem)
        self._problem = problem
        self._table = _Table()
        self._signature = None


# ---------------------------------------------------------------- policy


class Authenticator:
    """pypiserver's rules: which actions need credentials and whether credentials are good."""

    def __init__(self, config: Config) -> None:
        self.actions = frozenset() if config.auth_disabled else config.authenticate
        self._disabled = config.auth_disabled
        self._auther = config.auther
        self.htpasswd: HtpasswdFile | None = None
        if config.auther is None and config.password_file is not None:
            self.htpasswd = HtpasswdFile(config.password_file)

    def required(self, action: str) -> bool:
        return action in self.actions

    def fingerprint(self) -> tuple[int, ...] | None:
        """Changes when the credentials may have changed (the htpasswd file was edited)."""
        return self.htpasswd.fingerprint() if self.htpasswd is not None else None

    def credential(self, user: str) -> bytes | None:
        """What a signed-in session of *user* is bound to: their htpasswd line's digest (a
        new password signs them out), None when there is no such user. A custom `auther`
        can't say when a password changes: its sessions last until they expire."""
        if self._auther is not None:
            return b"auther"
        if self.htpasswd is not None:
            return self.htpasswd.entry_digest(user)
        return b"open" if self._disabled else None

    def check(self, user: str, password: str) -> bool:
        if self._auther is not None:
            return self._ask_auther(self._auther, user, password)
        if self.htpasswd is not None:
            return self.htpasswd.check(user, password)
        # Without -P, pypiserver refuses every credential; `-P . -a .` accepts any.
        return self._disabled

    @staticmethod
    def _ask_auther(auther: Auther, user: str, password: str) -> bool:
        try:
            return bool(auther(user, password))
        except Exception as error:
            # The message could quote the password, so only the type is logged.
            logger.error("custom auther raised %s; denying", type(error).__name__)
            return False


def parse_basic_authorization(header_value: str | None) -> tuple[str, str] | None:
    """`Basic base64(user:password)` -> (user, password); None for anything else."""
    if not header_value:
        return None
    scheme, _, encoded = header_value.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    encoded = encoded.strip()
    try:
        decoded = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        text = decoded.decode("utf-8")
    except UnicodeDecodeError:
        text = decoded.decode("latin-1")  # RFC 7617's historical default
    user, sep, password = text.partition(":")
    return (user, password) if sep else None


# ---------------------------------------------------------------- throttling


def client_key(address: str) -> str:
    """The limiter key for a client address: IPv6 clients own a whole /64, so that's the key."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass(frozen=True, slots=True)
class Attempt:
    """A reserved login attempt: counted as a failure until released."""

    key: str
    at: float


class FailureLimiter:
    """Slows down clients that keep failing authentication: a sliding window per key.

    After `max_failures` failures within `window` seconds, `retry_after` gives the seconds until
    the oldest of them leaves the window. At most `max_clients` keys are tracked; the least
    recently failing are forgotten first. Nothing ever blocks.
    """

    def __init__(
        self,
        max_failures: int = 10,
        window: float = 60.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 1 or window <= 0 or max_clients < 1:
            raise ValueError("max_failures, window and max_clients must be positive")
        self.max_failures = max_failures
        self.window = window
        self.max_clients = max_clients
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        # Truthy while any client has failures: read without the lock on the hot paths.
        self.failing: OrderedDict[str, deque[float]] = self._failures
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._failures)

    def retry_after(self, key: str) -> int | None:
        with self._lock:
            return self._wait(key, self._clock())

    def throttled(self, client: str) -> int | None:
        """The seconds *client* (an address) must wait, or None; free while nobody failed
        (checked before remembered credentials: a throttled client learns nothing from them)."""
        if not self._failures:
            return None
        return self.retry_after(client_key(client))

    def _wait(self, key: str, now: float) -> int | None:
        """Seconds *key* must wait (it has `max_failures` in the window), or None."""
        times = self._failures.get(key)
        if times is None or len(times) < self.max_failures:
            return None
        wait = times[0] + self.window - now
        return max(1, math.ceil(wait)) if wait > 0 else None

    def reserve(self, key: str) -> Attempt | int:
        """Count an attempt as a failure before it is checked, or the seconds to wait.

        Checking and recording in one step under the lock is what holds the limit when many
        attempts arrive at once: the slow check runs for at most `max_failures` of them.
        A success gives its attempt back with `release`.
        """
        now = self._clock()
        with self._lock:
            wait = self._wait(key, now)
            if wait is not None:
                return wait
            self._append(key, now)
        return Attempt(key, now)

    def release(self, attempt: Attempt) -> None:
        """The attempt succeeded: it no longer counts (earlier failures still do)."""
        with self._lock:
            times = self._failures.get(attempt.key)
            if times is None:
                return
            with suppress(ValueError):
                times.remove(attempt.at)
            if not times:
                del self._failures[attempt.key]

    def record_failure(self, key: str) -> None:
        now = self._clock()
        with self._lock:
            self._append(key, now)

    def _append(self, key: str, now: float) -> None:
        times = self._failures.get(key)
        if times is None:
            times = self._failures[key] = deque(maxlen=self.max_failures)
        else:
            self._failures.move_to_end(key)
        times.append(now)
        self._forget_stale(now)

    def record_success(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def _forget_stale(self, now: float) -> None:
        # Keys are ordered by their latest failure, so stale ones sit at the front.
        while self._failures:
            oldest = next(iter(self._failures.values()))
            if now - oldest[-1] < self.window and len(self._failures) <= self.max_clients:
                break
            self._failures.popitem(last=False)


# ---------------------------------------------------------------- writing


def _check_new_user(user: str, password: str) -> None:
    if not user or user != user.strip() or user.startswith("#"):
        raise ValueError("user name must be non-empty, not start with '#' or whitespace")
    if any(c in user for c in ":\r\n\0"):
        raise ValueError("user name must not contain ':', newlines or NUL")
    if "\0" in password:
        raise ValueError("password must not contain NUL")
    if len(password.encode("utf-8")) > BCRYPT_MAX_BYTES:
        raise ValueError(f"password is longer than bcrypt's {BCRYPT_MAX_BYTES} bytes")


def _line_user(line: bytes) -> bytes | None:
    stripped = line.strip()
    if not stripped or stripped.startswith(b"#") or b":" not in stripped:
        return None
    return stripped.partition(b":")[0]


def _with_user(lines: list[bytes], user: bytes, new_line: bytes) -> list[bytes]:
    """Replace the user's first line (dropping later duplicates) or append one."""
    result: list[bytes] = []
    replaced = False
    for line in lines:
        if _line_user(line) != user:
            result.append(line)
        elif not replaced:
            result.append(new_line)
            replaced = True
    if not replaced:
        if result and not result[-1].endswith(b"\n"):
            result[-1] += b"\n"
        result.append(new_line)
    return result


def _write_atomically(target: Path, data: bytes) -> None:
    try:
        old: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        old = None
    # New files get what Apache's htpasswd gives them (0644 less the umask), so a server
    # running as another user, e.g. in a container, can read them.
    keep_owner = None if old is None else (lambda temp: _copy_ownership(temp, old))
    durable.write_atomic(target, data, mode=0o644, before_replace=keep_owner)


def _copy_ownership(path: Path, old: os.stat_result) -> None:
    os.chmod(path, stat.S_IMODE(old.st_mode))
    if hasattr(os, "chown"):
        with suppress(OSError):  # only root can give a file away; keep ours then
            os.chown(path, old.st_uid, old.st_gid)


def add_user(
    path: str | os.PathLike[str], user: str, password: str, *, rounds: int = DEFAULT_BCRYPT_ROUNDS
) -> None:
    """Add or update `user` with a bcrypt (`$2y$`) hash, replacing the file atomically."""
    _check_new_user(user, password)
    from passlib.hash import bcrypt

    try:
        hashed = bcrypt.using(ident="2y", rounds=rounds).hash(password)
    except _missing_backend() as error:
        raise ValueError(
            "bcrypt is not installed (pip install bcrypt), or write the entry with Apache's"
            " htpasswd -B"
        ) from error
    target = Path(os.path.realpath(path))
    new_line = f"{user}:{hashed}\n".encode()
    with _exclusive(target.parent):  # read, change, replace: one writer at a time
        try:  # a FIFO or a device in its place is refused, not waited on
            lines = read_operator_file(target, "password file", MAX_HTPASSWD_BYTES).splitlines(
                keepends=True
            )
        except OperatorFileError as error:
            if error.errno != errno.ENOENT:
                raise
            lines = []
        _write_atomically(target, b"".join(_with_user(lines, user.encode("utf-8"), new_line)))


@contextlib.contextmanager
def _exclusive(directory: Path) -> Iterator[None]:
    """Concurrent `creamery passwd` runs take turns, so none loses another's user. The lock is
    on the directory: the file itself is replaced (a lock on it would stay with the old one)."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
