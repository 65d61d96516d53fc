"""The signed-in user's API tokens in the browser: `/manage/account/tokens/` lists them (never
a secret), creates one (its secret shown once, on a page no cache keeps) and revokes them.

The same rules as the JSON endpoints (`web/account.py`, whose checks are reused): a password
login only, at most MAX_TOKENS_PER_USER tokens, the catalog's validation of scope, actions
and description; every form carries a CSRF token (`session.read_form`).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from creamery.catalog.tokens import ACTIONS, DEFAULT_ACTIONS
from creamery.http.routing import READ, Action, Route
from creamery.web.account import MAX_TOKENS_PER_USER, expiry_time, may_revoke
from creamery.web.guard import actor_of
from creamery.web.pages import relative_redirect
from creamery.web.state import AppState
from creamery.web.ui.manage import password_login, run
from creamery.web.ui.session import Page, Stop, handler, message, page, read_form, redirect

log = logging.getLogger("creamery.manage")

# The form's choices of lifetime, as `expires` durations (None: never).
EXPIRIES = {"30d": "30d", "90d": "90d", "1y": "365d", "never": None}
DEFAULT_EXPIRY = "90d"
_SEPARATORS = re.compile(r"[\s,]+")


def routes(state: AppState) -> list[Route]:
    catalog = state.catalog
    access = catalog.access

    def listing(request: Request, user: str, status: int = 200, **context: Any) -> Response:
        done = {"revoked": "Token revoked."}.get(request.query_params.get("done", ""))
        context.setdefault("done", done)
        return page(
            request,
            state,
            "tokens.html",
            status=status,
            tokens=[t.public() for t in catalog.tokens_of(user)],
            actions=ACTIONS,
            default_actions=DEFAULT_ACTIONS,
            expiries=list(EXPIRIES),
            default_expiry=DEFAULT_EXPIRY,
            **context,
        )

    async def show(request: Request) -> Response:
        principal = password_login(request, state)
        assert principal.user is not None
        return listing(request, principal.user)

    async def create(request: Request) -> Response:
        form = await read_form(request, state)
        principal = password_login(request, state)
        user = principal.user
        assert user is not None
        description = (form.value("description") or "").strip()
        projects = [p for p in _SEPARATORS.split(form.value("projects") or "") if p]
        actions = form.fields.get("actions", [])
        choice = form.value("expires") or DEFAULT_EXPIRY
        typed = {"description": description, "projects": " ".join(projects)}

        def refuse(text: str, status: int = 400) -> Stop:
            return Stop(listing(request, user, status, error=text, typed=typed))

        if choice not in EXPIRIES:
            raise refuse("Choose when the token expires: " + ", ".join(EXPIRIES) + ".")
        try:
            expires = expiry_time(EXPIRIES[choice])
        except ValueError as error:
            raise refuse(str(error)) from None
        actor = actor_of(request.scope)
        token, secret = await run(
            request,
            state,
            "creating the token failed",
            lambda: catalog.create_token(
                user,
                projects=projects,
                actions=actions,
                expires=expires,
                description=description,
                actor=actor,
                limit=MAX_TOKENS_PER_USER,
            ),
            invalid=refuse,  # the catalog's validation: the form again, as typed
        )
        log.warning("token %s created for %s in the browser", token.id, user)
        return listing(request, user, 200, created=token.public(), secret=secret)

    async def revoke(request: Request) -> Response:
        await read_form(request, state)
        principal = password_login(request, state)
        token_id = request.path_params["id"]
        token = access.tokens.get(token_id)
        if token is None or not may_revoke(access, principal, token):
            raise Stop(message(request, state, 404, f"Not Found: no token {token_id!r}"))
        actor = actor_of(request.scope)
        revoked = await run(
            request,
            state,
            "revoking the token failed",
            lambda: catalog.revoke_token(token_id, actor=actor),
        )
        if revoked is None:  # revoked meanwhile
            raise Stop(message(request, state, 404, f"Not Found: no token {token_id!r}"))
        log.warning("token %s of %s revoked by %s in the browser", token_id, token.owner, principal)
        return redirect("../?done=revoked")

    async def slash(request: Request) -> Response:
        return relative_redirect("tokens/")

    def route(methods: tuple[str, ...], path: str, function: Page) -> Route:
        return Route(methods, path, action=Action.ACCOUNT, handler=handler(function), browser=True)

    base = "/manage/account/tokens"
    return [
        route(READ, base, slash),
        route(READ, base + "/", show),
        route(("POST",), base + "/", create),
        route(("POST",), base + "/{id}/revoke", revoke),
    ]
