"""The one place that decides whether a request may do an action (download, list, update).

pypiserver's answers: no credentials -> 401 with a Basic challenge (pip, uv and twine then
retry with URL, keyring or .pypirc credentials); wrong ones -> 403. Repeated failures from one
client get 429 with Retry-After. Verified credentials are remembered (keyed by an HMAC of the
header and the password file's state), so pip's burst of requests costs one bcrypt check.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from dataclasses import dataclass

import anyio

from creamery.catalog.auth import (
    Authenticator,
    FailureLimiter,
    client_key,
    parse_basic_authorization,
)
from creamery.core.config import Config

CHALLENGE = [(b"www-authenticate", b'Basic realm="pypi"')]
_REMEMBER_SECONDS = 300.0
_REMEMBER_MAX = 10_000


@dataclass(frozen=True, slots=True)
class Denial:
    status: int
    reason: str
    headers: list[tuple[bytes, bytes]]


class Guard:
    def __init__(self, config: Config) -> None:
        self.authenticator = Authenticator(config)
        self.limiter = FailureLimiter()
        self._secret = os.urandom(32)
        self._verified: dict[bytes, tuple[str, float]] = {}

    def required(self, action: str) -> bool:
        return self.authenticator.required(action)

    async def check(self, action: str, authorization: str | None, client: str) -> str | Denial:
        """The authenticated user ("" when the action is open), or why not."""
        if not self.required(action):
            return ""
        credentials = parse_basic_authorization(authorization)
        if credentials is None:
            return Denial(401, "Authentication required", CHALLENGE)
        user, password = credentials
        key = self._remember_key(authorization or "")
        remembered = self._verified.get(key)
        if remembered is not None and remembered[1] > time.monotonic():
            return remembered[0]
        attempt = self.limiter.reserve(client_key(client))
        if isinstance(attempt, int):
            return Denial(
                429,
                "Too many failed logins: try again later",
                [(b"retry-after", str(attempt).encode())],
            )
        ok = await anyio.to_thread.run_sync(self.authenticator.check, user, password)
        if not ok:  # the reservation stays: it is this failure
            # A refusal is always the credentials (every valid user may do every guarded
            # action); the same words for an unknown user keep user names secret.
            return Denial(403, f"Forbidden: wrong password for {user!r}, or no such user", [])
        self.limiter.release(attempt)
        # Failures are not forgiven by a success: one account must not unlock guessing another's.
        self._remember(key, user)
        return user

    def _remember_key(self, authorization: str) -> bytes:
        state = repr(self.authenticator.fingerprint()).encode()
        return hmac.new(
            self._secret, state + b"\0" + authorization.encode(), hashlib.sha256
        ).digest()

    def _remember(self, key: bytes, user: str) -> None:
        if len(self._verified) >= _REMEMBER_MAX:
            self._verified.clear()
        self._verified[key] = (user, time.monotonic() + _REMEMBER_SECONDS)
