"""The one place that decides whether a request may go on, and who it comes from.

pypiserver's answers: no credentials -> 401 with a Basic challenge (pip, uv and twine then
retry with URL, keyring or .pypirc credentials); a wrong password -> 403; a token that is
invalid, revoked or expired -> 401 (sign in again). Repeated failures from one client get 429
with Retry-After. Verified credentials are remembered (keyed by an HMAC of the header and the
password file's state), so pip's burst of requests costs one bcrypt check; a remembered token
is looked up again (a dict lookup) so a revocation takes effect at once. What a principal may
do to a project is `catalog/access.py`'s decision, asked by the handlers.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Protocol

import anyio

from creamery.catalog.access import ANONYMOUS, Access, Actor, Principal, Refused
from creamery.catalog.auth import FailureLimiter, client_key, parse_basic_authorization
from creamery.catalog.tokens import TOKEN_USER
from creamery.http.asgi_types import Scope
from creamery.http.observe import CLIENT_KEY

log = logging.getLogger("creamery.guard")


class Sessions(Protocol):
    """Signed-in browser sessions: the principal a request's Cookie header names, if any."""

    def principal(self, cookie: str) -> Principal | None: ...


CHALLENGE = [(b"www-authenticate", b'Basic realm="pypi"')]
_REMEMBER_SECONDS = 300.0
_REMEMBER_MAX = 10_000
_TOKEN_OWNER_SECONDS = 1.0  # a remembered token re-checks the password file this often
_CLIENTS_PER_CREDENTIAL = 64  # client keys remembered per credential (throttling exemptions)
PRINCIPAL = "creamery.principal"  # the scope key handlers read the principal from
CLIENT = CLIENT_KEY  # the client's address (X-Forwarded-For from a trusted proxy)


@dataclass(frozen=True, slots=True)
class _Remembered:
    """Credentials verified a moment ago: who they are, until when, against which state of
    the password file, and from which clients (their `client_key`)."""

    principal: Principal
    until: float
    generation: int
    clients: frozenset[str]


@dataclass(frozen=True, slots=True)
class Denial:
    status: int
    reason: str
    headers: list[tuple[bytes, bytes]]


def principal_of(scope: Scope) -> Principal:
    """The principal the guard found for this request (anonymous when it asked nobody)."""
    found = scope.get(PRINCIPAL)
    return found if isinstance(found, Principal) else ANONYMOUS


def actor_of(scope: Scope) -> Actor:
    """Who made this request, for the audit log."""
    return Actor.of(principal_of(scope), client_of(scope))


def client_of(scope: Scope) -> str:
    found = scope.get(CLIENT)
    if isinstance(found, str):
        return found
    client = scope.get("client")
    return str(client[0]) if client else ""


def refusal(access: Access, principal: Principal, operation: str, project: str) -> Denial:
    """Why *principal* may not do *operation* to *project*: a 401 challenge to an anonymous
    request (a client retries with credentials), a 403 with the reason otherwise."""
    if principal.anonymous:
        return Denial(401, "Authentication required", CHALLENGE)
    return Denial(403, access.why_not(principal, operation, project), [])


def _too_many(wait: int) -> Denial:
    return Denial(
        429, "Too many failed logins: try again later", [(b"retry-after", str(wait).encode())]
    )


class Guard:
    def __init__(self, access: Access) -> None:
        self.access = access
        self.limiter = FailureLimiter()
        # With a permission file, credentials are checked wherever they are sent.
        self.identifies = access.identifies()
        # Without one, the actions that need credentials (-a, and the account routes).
        self.always_required = access.always_required
        # Verified credentials, by the Authorization header as sent (str hashes are keyed per
        # process, so lookups leak no timing).
        self._verified: dict[str, _Remembered] = {}
        self._htpasswd = access.authenticator.htpasswd
        self._fingerprint: tuple[int, ...] | None = access.authenticator.fingerprint()
        self._generation = 0
        self._looked = time.monotonic()
        self._throttled_said: dict[str, float] = {}
        self._lock = threading.Lock()
        # Browser sign-in (web/ui/session.py): None until the UI's sessions are set up.
        self.sessions: Sessions | None = None

    def required(self, action: str) -> bool:
        return self.access.required(action)

    def session_principal(self, scope: Scope) -> Principal | None:
        """The user of a signed-in browser session (its cookie); None without a valid one."""
        sessions = self.sessions
        if sessions is None:
            return None
        # HTTP/2 may send one Cookie header per cookie: all of them count.
        cookies = [v for k, v in scope["headers"] if k == b"cookie"]
        if not cookies:
            return None
        return sessions.principal("; ".join(v.decode("latin-1") for v in cookies))

    async def check(
        self, action: str, authorization: str | None, client: str, *, identify: bool = False
    ) -> Principal | Denial:
        """The principal of the request (anonymous when the route is open and nobody needs
        to know), or why it may not go on. *identify*: credentials sent are checked even
        where the route is open (a page greets its visitor and offers what they may do)."""
        needed = self.required(action)
        if not needed and not self.identifies and not identify:
            return ANONYMOUS
        credentials = parse_basic_authorization(authorization)
        if credentials is None:
            return Denial(401, "Authentication required", CHALLENGE) if needed else ANONYMOUS
        user, password = credentials
        wait = self.limiter.throttled(client)
        if wait is not None:  # before the remembered ones: a right guess must not show
            await self.said_throttled(client, user)
            return _too_many(wait)
        key = authorization or ""
        remembered = self._recall(key)  # (the limiter was asked just above)
        if remembered is not None:
            return remembered.principal
        attempt = self.limiter.reserve(client_key(client))
        if isinstance(attempt, int):
            await self.said_throttled(client, user)
            return _too_many(attempt)
        if user == TOKEN_USER:  # one HMAC: no thread needed
            found = self.access.authenticate(user, password)
        else:
            found = await anyio.to_thread.run_sync(self.access.authenticate, user, password)
        if isinstance(found, Refused):  # the reservation stays: it is this failure
            failed = Actor(None if user == TOKEN_USER else user, None, client)
            entry = failed.entry("login.failed", result="denied", detail=found.reason)
            await anyio.to_thread.run_sync(self.access.audit.try_write, entry)
            headers = CHALLENGE if found.status == 401 else []
            return Denial(found.status, found.reason, headers)
        self.limiter.release(attempt)
        # Failures are not forgiven by a success: one account must not unlock guessing another's.
        self._remember(key, found, client)
        if found.token is not None and self.access.tokens.use_due(found.token):
            threading.Thread(
                target=self._note_use, args=(found, client), name="creamery-token-use", daemon=True
            ).start()
        return found

    def _note_use(self, principal: Principal, client: str) -> None:
        """When a token was last used (at most once per 10 minutes); its first use audited."""
        token = principal.token
        assert token is not None
        try:
            if self.access.tokens.mark_used(token):
                entry = Actor.of(principal, client).entry("token.first-use", detail=token.id)
                self.access.audit.try_write(entry)
        except OSError as error:
            log.warning("can't note the use of token %s: %s", token.id, error)

    async def said_throttled(self, client: str, user: str) -> None:
        """Audit a throttled client once a minute at most (a flood must not flood the log)."""
        key = client_key(client)
        now = time.monotonic()
        with self._lock:
            if now - self._throttled_said.get(key, -1e9) < self.limiter.window:
                return
            if len(self._throttled_said) > _REMEMBER_MAX:
                self._throttled_said.clear()
            self._throttled_said[key] = now
        named = None if user in ("", TOKEN_USER) else user
        entry = Actor(named, None, client).entry("login.throttled", result="denied")
        await anyio.to_thread.run_sync(self.access.audit.try_write, entry)

    def remembered(self, authorization: str, scope: Scope) -> Principal | None:
        """The principal of credentials verified a moment ago (None: check them): the hot
        paths' way in, without a coroutine. Not once the password file changed, nor for a
        token revoked or expired since; for a throttled client, only credentials it verified
        itself before the attack (a CI job behind the same NAT keeps working; a guess matching
        what another client verified does not show)."""
        found = self._recall(authorization)
        if found is None:
            return None
        if self.limiter.failing:
            key = client_key(client_of(scope))
            if key not in found.clients and self.limiter.retry_after(key) is not None:
                return None
        return found.principal

    def _recall(self, authorization: str) -> _Remembered | None:
        found = self._verified.get(authorization)
        now = time.monotonic()
        if found is None or now > found.until:
            return None
        token = found.principal.token
        # A password: the file is looked at every time (an edit applies at once). A token's
        # owner removed from the file: within a second (a stat costs a quarter of a request).
        if token is None or now - self._looked >= _TOKEN_OWNER_SECONDS:
            self._looked = now
            self._look_at_the_password_file()
        if found.generation != self._generation:
            return None
        if token is not None and not self.access.still_valid(found.principal):
            return None  # revoked (or expired) since
        return found

    def _look_at_the_password_file(self) -> None:
        """One stat: an edited password file forgets what was remembered."""
        htpasswd = self._htpasswd
        if htpasswd is None:
            return
        fingerprint = htpasswd.fingerprint()
        if fingerprint != self._fingerprint:
            self._fingerprint = fingerprint
            self._generation += 1

    def _remember(self, key: str, principal: Principal, client: str) -> None:
        if len(self._verified) >= _REMEMBER_MAX:
            self._verified.clear()
        self._look_at_the_password_file()
        now = time.monotonic()
        until = now + _REMEMBER_SECONDS
        token = principal.token
        if token is not None and token.expires is not None:  # forgotten when it expires
            until = min(until, now + token.expires - time.time())
        known = self._verified.get(key)
        clients = {client_key(client)}
        if known is not None and known.principal == principal:
            clients |= known.clients
        if len(clients) > _CLIENTS_PER_CREDENTIAL:
            clients = {client_key(client)}
        self._verified[key] = _Remembered(principal, until, self._generation, frozenset(clients))
