"""This server's absolute URLs, as the request sees it, and pages that carry them.

`base_url` is the index root as the client addressed it: scheme, host and path prefix, from
`X-Forwarded-Proto/-Host/-Prefix` and the ASGI root_path (`--server-base-url`). `Rebased`
serves a rendered page marked `based` (PEP 740 provenance URLs, which must be fully
qualified) with that base put in: once per page and base, kept in a small bounded map, each
with its own strong ETag; a page without such URLs is served as rendered.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from creamery.http.asgi_types import Scope
from creamery.http.files import header
from creamery.render.simple_api import BASE, Page, strong_etag

_SCHEMES = frozenset({"http", "https"})
# A host name or an IP literal, and a port: nothing a header could smuggle into a URL.
_HOST = re.compile(r"(?:[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_BASE_BYTES = BASE.encode()
# A rebased page differs by what `base_url` reads: shared caches must key on it too.
_VARY = b"Accept, Host, X-Forwarded-Host, X-Forwarded-Proto, X-Forwarded-Prefix"
MAX_REBASED = 256  # pages kept with a base put in (projects with provenance x bases seen)


def base_url(scope: Scope) -> str:
    """The absolute URL of the index root as the client sees it, ending with "/".

    Honours X-Forwarded-Proto/-Host/-Prefix and the ASGI root_path (`--server-base-url`).
    Like pypiserver, a path inside X-Forwarded-Host (`proxy.example/priv`) is a prefix too.
    """
    scheme = (_first(header(scope, b"x-forwarded-proto")) or "").lower()
    if scheme not in _SCHEMES:  # `javascript:` would become the welcome page's links
        scheme = str(scope.get("scheme") or "http")
    host, host_path = (
        _host_and_path(_first(header(scope, b"x-forwarded-host")))
        or _host_and_path(header(scope, b"host"))
        or (_server(scope), "")
    )
    prefix = _join_paths(host_path, _first(header(scope, b"x-forwarded-prefix")) or "")
    root_path = str(scope.get("root_path", "")).rstrip("/")
    # A proxy that does not strip its prefix forwards it in both places: count it once.
    if not (prefix and root_path.startswith(prefix)):
        root_path = _join_paths(prefix, root_path)
    return f"{scheme}://{host}{quote(root_path, safe='/%')}/"


def _host_and_path(value: str | None) -> tuple[str, str] | None:
    """A forwarded host as (host[:port], path), or None when it is not a host."""
    if not value:
        return None
    host, _, path = value.partition("/")
    return (host, path) if _HOST.fullmatch(host) else None


def _first(value: str | None) -> str | None:
    """The client-most value of a possibly comma-separated forwarding header."""
    if value is None:
        return None
    return value.split(",", 1)[0].strip() or None


def _server(scope: Scope) -> str:
    server = scope.get("server")
    if not server:
        return "localhost"
    host, port = server[0], server[1]
    return str(host) if port is None else f"{host}:{port}"


def _join_paths(*parts: str) -> str:
    joined = "/".join(p.strip("/") for p in parts if p.strip("/"))
    return "/" + joined if joined else ""


class Rebased:
    """Rendered pages with this server's base URL put in, per base (bounded)."""

    def __init__(self, max_entries: int = MAX_REBASED) -> None:
        self._max = max_entries
        self._pages: dict[tuple[str, str, int], Page] = {}

    def page(self, scope: Scope, page: Page) -> Page:
        """*page* as served to this request: with its base put in when it is `based`."""
        if not page.based:
            return page
        base = base_url(scope)
        key = (page.etag, base, len(page.headers))  # the bytes, and stale or not
        found = self._pages.get(key)
        if found is None:
            found = rebase(page, base)
            if len(self._pages) >= self._max:
                self._pages.clear()  # a burst of new bases: start over rather than grow
            self._pages[key] = found
        return found


def rebase(page: Page, base: str) -> Page:
    """*page* with *base* (validated by `base_url`: URL-safe characters only) put in."""
    body = page.body.replace(_BASE_BYTES, base.encode("ascii"))
    etag = strong_etag(body)
    replaced = {
        b"content-length": str(len(body)).encode(),
        b"etag": etag.encode(),
        b"vary": _VARY,
    }
    headers = [(name, replaced.get(name, value)) for name, value in page.headers]
    return Page(body, etag, headers)
