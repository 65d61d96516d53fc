"""What every page shares: the template environment, links to the bundled assets, and the
visitor's part of the header.

A page's body is rendered once per change (its cache key names the index generation, the
base URL and the visitor's view) with a placeholder where the header greets the visitor;
`respond` puts the greeting in per request (one `bytes.replace`), so signed-in users and
anonymous visitors share one rendering. Pages link with absolute URLs made from `base_url`
(which honours `--server-base-url`, `X-Forwarded-Prefix` and the ASGI root path).
"""

from __future__ import annotations

import functools
import html
import zlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from creamery.catalog.access import Principal
from creamery.core.version import __version__
from creamery.http.absolute import BASE_VARY
from creamery.http.asgi_types import Scope
from creamery.http.routing import relative_path
from creamery.render.simple_api import strong_etag
from creamery.web.guard import principal_of
from creamery.web.pages import base_url, body_response, templates
from creamery.web.state import AppState
from creamery.web.ui.assets import asset_path

HTML = "text/html; charset=utf-8"
NAV = b"<!--creamery:visitor-->"
SIGN_IN = "-/signin"
# Pages are public documents of the index, but a signed-in user's greeting is theirs alone.
PAGE_HEADERS = {
    "cache-control": "no-cache",
    "vary": f"Cookie, Authorization, {BASE_VARY}",  # links are absolute (`base_url`)
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    # The pages' own assets only: a README that slipped a tag through still can't run script.
    "content-security-policy": (
        "default-src 'self'; img-src 'self' https: data:; style-src 'self'; script-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
}


@functools.cache
def _environment_globals() -> None:
    env = templates()
    env.globals["asset"] = asset_path
    env.globals["creamery_version"] = __version__


# A cached body is the same bytes object request after request: its digest is looked up (a
# bytes object keeps its hash, and the lookup compares identity first), not computed again.
_etag_of = functools.lru_cache(maxsize=128)(strong_etag)


def render(name: str, **context: Any) -> bytes:
    """The page *name* (`templates/ui/<name>`) with *context*; `base` must be in it."""
    _environment_globals()
    return templates().get_template(f"ui/{name}").render(**context).encode("utf-8")


def respond(
    request: Request,
    state: AppState,
    body: bytes,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    extra: Mapping[bytes, str] | None = None,
) -> Response:
    """*body* (a rendering with the visitor placeholder) with this visitor's greeting, a
    strong ETag of both, a 304 when it matches, no body for HEAD.

    *extra*: more per-visitor parts, placeholder (`<!--creamery:...-->`) -> HTML, put in
    like the greeting (a "Manage project" link), so the cached body stays one for all."""
    greeting = visitor(request, state).encode("utf-8")
    page = body.replace(NAV, greeting, 1)
    personal = zlib.crc32(greeting)
    for placeholder, part in (extra or {}).items():
        encoded = part.encode("utf-8")
        page = page.replace(placeholder, encoded, 1)
        personal = zlib.crc32(placeholder + encoded, personal)
    etag = _etag_of(body)[:-1] + f".{personal:08x}" + '"'
    all_headers = {**PAGE_HEADERS, **(headers or {})}
    return body_response(request, page, HTML, status_code, all_headers, etag=etag)


def visitor(request: Request, state: AppState) -> str:
    """The header's right-hand side: who is signed in, or the way to sign in."""
    base = html.escape(base_url(request))
    principal: Principal = principal_of(request.scope)
    if principal.anonymous:
        if state.catalog.access.authenticator.htpasswd is None:
            return ""  # nobody can sign in
        here = html.escape(quote(index_path(request.scope), safe="/"))
        return f'<a class="nav-link" href="{base}{SIGN_IN}?next={here}">Sign in</a>'
    user = html.escape(principal.user or "")
    return (
        f'<span class="nav-user" title="Signed in">{user}</span>'
        f'<a class="nav-link" href="{base}manage/account/tokens/">Tokens</a>'
        f'<a class="nav-link" href="{base}-/signout">Sign out</a>'
    )


def index_path(scope: Scope) -> str:
    """The request's path below the index root, with its query: where to come back to."""
    path = relative_path(scope)
    query = scope.get("query_string", b"").decode("latin-1")
    return path + ("?" + query if query else "")


def sign_in_location(scope: Scope, path: str, back: str | None = None) -> str:
    """A relative redirect from *path* (below the index root) to the sign-in page, coming
    back to *back* afterwards (this page, with its query, by default): right behind any proxy
    prefix."""
    up = "../" * (path.count("/") - 1)
    if back is None:
        query = scope.get("query_string", b"").decode("latin-1")
        back = path + ("?" + query if query else "")
    return f"{up or './'}{SIGN_IN}?next={quote(back, safe='/')}"
