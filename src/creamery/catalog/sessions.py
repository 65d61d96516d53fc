"""Signed-in browser sessions: the shared key, and the signed cookie value (no HTTP here).

A session is a cookie value `<user>.<expiry>.<nonce>.<mac>` (the user base64url, the expiry in
Unix seconds, a random nonce, the MAC base64url): HMAC-SHA256 under a 32-byte key over the
user, the expiry, the nonce and a fingerprint of the user's current credential (their htpasswd
line's hash). Nothing is stored per session: verifying costs one HMAC and a dict lookup (no
bcrypt), and a password changed or removed in the htpasswd file changes the fingerprint,
which signs that user out everywhere.

The key lives in the state store (`access/session-key`, mode 0600 in a state directory),
created put-if-absent so every worker
and every replica over one bucket share it (a cookie made by one is good at all of them). A
state that can't be read or written gets a per-process key (one warning): sessions then work
with one worker only. The key is never logged.

CSRF tokens are HMACs of the session value (or, for a visitor sending Basic credentials, of the
user name) under the same key, with their own label: a form's token is good only with the
cookie it was made for.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from creamery.core import durable
from creamery.storage import AlreadyExists, Storage, read_all

log = logging.getLogger("creamery.sessions")

KEY = "access/session-key"
KEY_BYTES = 32
NONCE_BYTES = 12
LIFETIME = 12 * 3600  # seconds a sign-in lasts
COOKIE = "creamery_session"
MAX_VALUE = 1024  # longer cookie values are not ours: not even decoded
Fingerprint = Callable[[str], bytes | None]  # a user's current credential, None: no such user


def load_key(store: Storage, local: Path | None = None, *, create: bool = True) -> bytes | None:
    """The index's session key: read from *store*, or made there when *create* (put-if-absent:
    of several processes signing someone in at once, one key wins and all read it); None when
    there is none yet and *create* is false (serving alone writes nothing into a root). A
    store that can't be read or written: a key for this process alone, with one warning.
    *local*: the directory *store* keeps its files in (a local state directory), where the key
    is readable by its owner only (who can read it can sign in as anyone)."""
    try:
        stored = store.stat(KEY)
        if stored is None:
            if not create:
                return None
            with contextlib.suppress(AlreadyExists):  # another process's came first: theirs
                store.put(KEY, _new_key(local), if_absent=True)
            stored = store.stat(KEY)
        if local is not None:  # one made by hand, or copied with a backup: private too
            os.chmod(local / KEY, 0o600)
        key = read_all(store, stored) if stored is not None else b""
    except OSError as error:
        log.warning(
            "can't keep the session key in the state (%s): sign-ins hold in this process only",
            error.strerror or type(error).__name__,
        )
        return os.urandom(KEY_BYTES)
    if len(key) < KEY_BYTES:
        log.warning("the session key in the state is damaged: sign-ins hold in this process only")
        return os.urandom(KEY_BYTES)
    return key


def _new_key(local: Path | None) -> bytes | Path:
    """A new key: bytes for a bucket, a private file (linked into place) for a directory."""
    key = os.urandom(KEY_BYTES)
    if local is None:
        return key
    local.mkdir(parents=True, exist_ok=True)
    fd, path = durable.new_temp_file(local, mode=0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key)
    return path


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """Makes and checks session values and CSRF tokens under one key."""

    def __init__(self, key: bytes, fingerprint: Fingerprint, lifetime: int = LIFETIME) -> None:
        self._key = key
        self._fingerprint = fingerprint
        self.lifetime = lifetime

    def __repr__(self) -> str:  # never the key
        return "Signer(...)"

    def _mac(self, user: bytes, expiry: str, nonce: str, credential: bytes) -> bytes:
        fields = (b"session", user, expiry.encode("ascii"), nonce.encode("ascii"), credential)
        return hmac.new(self._key, b"\0".join(fields), hashlib.sha256).digest()

    def issue(self, user: str, now: float | None = None) -> str | None:
        """A session value for *user* (None: no current credential to bind it to). A random
        nonce makes each sign-in's value (and so its CSRF tokens) its own."""
        credential = self._fingerprint(user)
        if credential is None:
            return None
        expiry = str(int((time.time() if now is None else now) + self.lifetime))
        raw = user.encode("utf-8")
        nonce = _b64(os.urandom(NONCE_BYTES))
        mac = _b64(self._mac(raw, expiry, nonce, credential))
        return f"{_b64(raw)}.{expiry}.{nonce}.{mac}"

    def user(self, value: str, now: float | None = None) -> str | None:
        """The user of a good, unexpired session value; None for anything else."""
        if len(value) > MAX_VALUE:
            return None
        parts = value.split(".")
        if len(parts) != 4 or not parts[1].isdigit() or len(parts[1]) > 12:
            return None
        encoded, expiry, nonce, mac = parts
        if not nonce.isascii():
            return None
        try:
            raw, sent = _unb64(encoded), _unb64(mac)
            user = raw.decode("utf-8")
        except (binascii.Error, ValueError):
            return None
        if int(expiry) <= (time.time() if now is None else now):
            return None
        credential = self._fingerprint(user)
        if credential is None:
            # No such user (now): a MAC is still computed, so this costs what a real one does.
            hmac.compare_digest(self._mac(raw, expiry, nonce, b""), sent)
            return None
        if not hmac.compare_digest(self._mac(raw, expiry, nonce, credential), sent):
            return None
        return user

    def csrf(self, binding: str) -> str:
        """The CSRF token of a session value (or, for Basic credentials, `user:<name>`)."""
        message = b"csrf\0" + binding.encode("utf-8", "surrogatepass")
        return _b64(hmac.new(self._key, message, hashlib.sha256).digest())

    def csrf_matches(self, binding: str, sent: str) -> bool:
        return hmac.compare_digest(self.csrf(binding).encode(), sent.encode("utf-8", "replace"))


def cookie_values(header: str, name: str = COOKIE) -> list[str]:
    """Every value of cookie *name* in a Cookie header (several may be sent: one per path)."""
    found = []
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key.strip() == name:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            found.append(value)
    return found
