"""Signing in with a form: the session cookie, CSRF tokens for every form, `/-/signin` and
`/-/signout`.

Why a form and a cookie rather than HTTP Basic (docs/ui.md, "Signing in"): a browser keeps
Basic credentials until it quits, can't sign out, shows its own dialog, and sends them to
every request of the origin, cross-site ones included; the cookie is HttpOnly, SameSite=Lax,
lasts 12 hours and is signed out with one button. Basic credentials still work on every page
(the dispatcher reads them first), for scripts and for `curl -u`.

The session is a signed value (`catalog/sessions.py`): checking it is one HMAC on the event
loop. It is credentials for pages and for GETs of files (a link on a page), never for an
upload or any other POST outside these pages: twine-style requests need Basic credentials.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import anyio
from starlette.requests import Request
from starlette.responses import Response

from creamery.catalog.access import Access, Actor, Principal, Refused
from creamery.catalog.auth import client_key
from creamery.catalog.sessions import COOKIE, Signer, cookie_values, load_key
from creamery.catalog.tokens import TOKEN_USER
from creamery.http.files import location
from creamery.http.form import ReceivedForm, read_urlencoded
from creamery.http.routing import READ, Action, Handler, Route, endpoint
from creamery.storage.state import StateDir
from creamery.web.guard import client_of, principal_of
from creamery.web.pages import base_url
from creamery.web.state import AppState
from creamery.web.ui.layout import render, respond

log = logging.getLogger("creamery.sessions")

KEY_LOOK_SECONDS = 5.0  # how often a process without the session key looks for one again
MAX_FORM = 64 << 10  # a form of these pages: a token's scope of names fits
EXPIRED = "the form has expired or came from another site: reload the page and try again"
_CROSS_SITE = ("cross-site", "same-site")
Page = Callable[[Request], Awaitable[Response]]


class BrowserSessions:
    """The `Sessions` the guard asks (web/guard.py): a Cookie header's signed-in user."""

    def __init__(self, access: Access, state: StateDir) -> None:
        self._access = access
        self._state = state
        self._lock = threading.Lock()
        self.signer: Signer | None = None  # made by `load`: on start, or the first sign-in
        self._looked = -KEY_LOOK_SECONDS  # when the state last had no key (monotonic)

    def load(self, create: bool = False) -> Signer | None:
        """The shared key's signer, read once per process (a forked worker keeps it). None
        while the state has no key and *create* is false: the first sign-in (or form) makes
        it, so that serving alone writes nothing into the root."""
        with self._lock:
            if self.signer is None:
                key = load_key(self._state.store, self._state.path, create=create)
                if key is None:
                    self._looked = time.monotonic()
                    return None
                self.signer = Signer(key, self._access.authenticator.credential)
            return self.signer

    def made(self) -> Signer:
        """The signer, the key made if there is none yet (a sign-in, a form's CSRF token)."""
        signer = self.signer or self.load(create=True)
        assert signer is not None  # load_key(create=True) always answers a key
        return signer

    def _look_again(self) -> Signer | None:
        """A cookie came before this process knew a key: another process (or replica) made
        it since. A local state is read at once (a stat); a bucket in a thread, at most every
        few seconds (this request is anonymous: the event loop never waits on the store)."""
        if not self._state.store.remote:
            return self.load()
        now = time.monotonic()
        if now - self._looked < KEY_LOOK_SECONDS:
            return None
        self._looked = now
        threading.Thread(target=self.load, name="creamery-session-key", daemon=True).start()
        return None

    def principal(self, cookie: str) -> Principal | None:
        found = self.session(cookie)
        return None if found is None else Principal(found[0])

    def session(self, cookie: str) -> tuple[str, str] | None:
        """The user and the cookie value of the first good session in *cookie*; None when
        good sessions of two users are sent (one tossed in by another site or a sibling
        host, for a longer path so that it comes first: nobody is signed in then)."""
        if COOKIE not in cookie:
            return None
        signer = self.signer or self._look_again()
        if signer is None:
            return None
        found = None
        for value in cookie_values(cookie):
            user = signer.user(value)
            if user is None:
                continue
            if found is None:
                found = user, value
            elif user != found[0]:
                return None
        return found


class Stop(Exception):
    """Answer *response* now (a refusal decided deep in a handler)."""

    def __init__(self, response: Response) -> None:
        super().__init__()
        self.response = response


def sessions_of(state: AppState) -> BrowserSessions:
    sessions = state.guard.sessions
    if not isinstance(sessions, BrowserSessions):  # set where the app is built
        raise RuntimeError("the browser sessions are not set up")
    return sessions


def page(
    request: Request,
    state: AppState,
    template: str,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> Response:
    """A page of these forms: never kept by a cache (it holds a CSRF token, maybe a secret)."""
    body = render(template, base=base_url(request), csrf=csrf_token(request, state), **context)
    all_headers = {"cache-control": "no-store", **(headers or {})}
    return respond(request, state, body, status_code=status, headers=all_headers)


def message(
    request: Request,
    state: AppState,
    status: int,
    text: str,
    *,
    title: str = "",
    headers: dict[str, str] | None = None,
) -> Response:
    """A one-line answer as a page (a refusal, a failure)."""
    return page(
        request,
        state,
        "message.html",
        status=status,
        headers=headers,
        title=title or text.partition(":")[0],
        text=text,
    )


# ---------------------------------------------------------------------- CSRF


def _binding(request: Request, state: AppState) -> str | None:
    """What this visitor's CSRF tokens are bound to: their session cookie's value, or with
    Basic credentials (read first by the dispatcher), their user name; None: anonymous."""
    principal = principal_of(request.scope)
    if principal.user is None:
        return None
    if request.headers.get("authorization"):
        return f"user:{principal.user}"
    found = sessions_of(state).session("; ".join(request.headers.getlist("cookie")))
    return None if found is None else f"session:{found[1]}"


def csrf_token(request: Request, state: AppState) -> str:
    """The hidden `csrf_token` of this visitor's forms ("" for an anonymous visitor)."""
    binding = _binding(request, state)
    if binding is None:
        return ""
    return sessions_of(state).made().csrf(binding)


def check_origin(request: Request, state: AppState) -> None:
    """A form posted from another site is refused: its Origin (when sent) must be this
    index's, and a browser must not mark it cross-site (or same-site: a sibling domain)."""
    site = request.headers.get("sec-fetch-site", "").strip().lower()
    origin = request.headers.get("origin")
    if site in _CROSS_SITE or (origin is not None and origin != origin_of(request)):
        raise Stop(message(request, state, 403, f"Forbidden: {EXPIRED}"))


def origin_of(request: Request) -> str:
    parts = urlsplit(base_url(request))
    return f"{parts.scheme}://{parts.netloc}"


async def read_form(request: Request, state: AppState, *, csrf: bool = True) -> ReceivedForm:
    """The posted form, once its origin (and, with *csrf*, its token) is checked."""
    try:
        check_origin(request, state)
    except Stop as stop:
        raise await _unread(request, stop) from None
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        raise await _unread(
            request, Stop(message(request, state, 400, "Bad Request: expected a form"))
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            too_large = message(request, state, 413, "Content Too Large: the form is too large")
            too_large.headers["connection"] = "close"
            raise Stop(too_large)
    form = read_urlencoded(bytes(body))
    if csrf:
        binding = _binding(request, state)
        sessions = sessions_of(state)
        signer = sessions.signer or sessions.load()  # a key another process made meanwhile
        sent = form.value("csrf_token") or ""
        if binding is None or signer is None or not signer.csrf_matches(binding, sent):
            raise Stop(message(request, state, 403, f"Forbidden: {EXPIRED}"))
    return form


async def _unread(request: Request, stop: Stop) -> Stop:
    """*stop* once the body it refuses is read (up to MAX_FORM): a server that answers with
    much of the body unread resets the connection, and the browser shows that, not the page.
    A longer body is left unread and the connection closed after the answer."""
    read = 0
    async for chunk in request.stream():
        read += len(chunk)
        if read > MAX_FORM:
            stop.response.headers["connection"] = "close"
            break
    return stop


def handler(function: Page) -> Handler:
    """*function*(request) as a route handler, its `Stop`s answered."""

    async def answer(request: Request) -> Response:
        try:
            return await function(request)
        except Stop as stop:
            return stop.response

    return endpoint(answer)


# ---------------------------------------------------------------------- the cookie


def cookie_path(request: Request) -> str:
    return urlsplit(base_url(request)).path or "/"


def set_cookie(response: Response, request: Request, value: str, max_age: int) -> None:
    secure = "; Secure" if base_url(request).startswith("https:") else ""
    response.headers.append(
        "set-cookie",
        f"{COOKIE}={value}; Max-Age={max_age}; Path={cookie_path(request)}; HttpOnly;"
        f" SameSite=Lax{secure}",
    )


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path below the index root, else the home page (an
    absolute URL, `//host`, a backslash or a control character would lead elsewhere)."""
    if (
        not value
        or not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or any(ord(c) < 33 or ord(c) == 127 for c in value)
    ):
        return "/"
    return value


def redirect(target: str) -> Response:
    quoted = location(target).decode("ascii")
    return Response(
        f"Redirecting to {quoted}\n",
        status_code=303,
        headers={"location": quoted, "cache-control": "no-store"},
        media_type="text/plain",
    )


# ---------------------------------------------------------------------- the pages


def routes(state: AppState) -> list[Route]:
    sessions = sessions_of(state)
    access = state.catalog.access
    limiter = state.guard.limiter

    def form(request: Request, status: int = 200, **context: Any) -> Response:
        principal = principal_of(request.scope)
        return page(
            request,
            state,
            "signin.html",
            status=status,
            signed_in=principal.user,
            next=safe_next(context.pop("next", request.query_params.get("next"))),
            **context,
        )

    async def show(request: Request) -> Response:
        return form(request)

    async def sign_in(request: Request) -> Response:
        posted = await read_form(request, state, csrf=False)  # login CSRF: the origin check
        user = (posted.value("username") or "").strip()
        password = posted.value("password") or ""
        after = safe_next(posted.value("next"))
        client = client_of(request.scope)

        def again(status: int, reason: str, headers: dict[str, str] | None = None) -> Response:
            return form(request, status, error=reason, username=user, next=after, headers=headers)

        if not user or not password:
            return again(400, "Enter your user name and password.")
        if user == TOKEN_USER:
            return again(403, "API tokens can't sign in here: use your user name and password.")
        wait = limiter.throttled(client)
        attempt = limiter.reserve(client_key(client)) if wait is None else wait
        if isinstance(attempt, int):
            await state.guard.said_throttled(client, user)  # audited once a minute at most
            retry = {"retry-after": str(attempt)}
            return again(429, "Too many failed logins: try again later.", retry)
        found = await anyio.to_thread.run_sync(access.authenticate, user, password)
        signer = sessions.signer
        if signer is None:  # the index's first sign-in: the key is made now
            signer = await anyio.to_thread.run_sync(sessions.made)
        value = None if isinstance(found, Refused) else signer.issue(user)
        if isinstance(found, Refused) or value is None:  # the reservation stays: a failure
            reason = found.reason if isinstance(found, Refused) else "Forbidden: no such user"
            entry = Actor(user, None, client).entry("login.failed", result="denied", detail=reason)
            await anyio.to_thread.run_sync(access.audit.try_write, entry)
            return again(403, reason)
        limiter.release(attempt)
        entry = Actor(user, None, client).entry("login", detail="sign-in form")
        await anyio.to_thread.run_sync(access.audit.try_write, entry)
        log.info("%s signed in from %s", user, client)
        response = redirect(base_url(request) + after[1:])
        set_cookie(response, request, value, signer.lifetime)
        return response

    async def show_signout(request: Request) -> Response:
        principal = principal_of(request.scope)
        basic = bool(request.headers.get("authorization"))
        return page(request, state, "signout.html", user=principal.user, basic=basic)

    async def sign_out(request: Request) -> Response:
        anonymous = principal_of(request.scope).user is None
        await read_form(request, state, csrf=not anonymous)
        response = redirect("../")  # home (relative: right behind any proxy prefix)
        set_cookie(response, request, "", 0)
        return response

    def route(methods: tuple[str, ...], path: str, function: Page) -> Route:
        return Route(methods, path, action=Action.PUBLIC, handler=handler(function), browser=True)

    return [
        route(READ, "/-/signin", show),
        route(("POST",), "/-/signin", sign_in),
        route(READ, "/-/signout", show_signout),
        route(("POST",), "/-/signout", sign_out),
    ]
