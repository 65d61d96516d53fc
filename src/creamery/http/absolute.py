"""This server's absolute URLs, as the request sees it, and pages that carry them.

`base_url` is the index root as the client addressed it: scheme, host and path prefix, from
`X-Forwarded-Proto/-Host/-Prefix` and the ASGI root_path (`--server-base-url`). `Rebased`
serves a rendered page marked `based` (PEP 740 provenance URLs, which must be fully
qualified) with that base put in: once per page and base, kept in a small map bounded in
entries and bytes (the base is repeated once per file, and the client chooses it), each with
its own strong ETag; a page without such URLs is served as rendered.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from urllib.parse import quote

from creamery.http.asgi_types import Scope
from creamery.http.files import header
from creamery.render.simple_api import BASE, Page, strong_etag

_SCHEMES = frozenset({"http", "https"})
# A host name or an IP literal, and a port: nothing a header could smuggle into a URL.
_HOST = re.compile(r"(?:[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_BASE_BYTES = BASE.encode()
# What `base_url` reads: a response holding absolute URLs names them in Vary, so that shared
# caches key on them too (one client's X-Forwarded-Host must not reach another's copy).
BASE_VARY = "Host, X-Forwarded-Host, X-Forwarded-Proto, X-Forwarded-Prefix"
_VARY = f"Accept, {BASE_VARY}".encode()
MAX_REBASED = 256  # pages kept with a base put in (projects with provenance x bases seen)
MAX_REBASED_BYTES = 64 << 20  # and their bytes: each file's URL holds the base once
# A forwarded value (or Host) longer than this is not a proxy's: ignored, as a malformed one.
MAX_FORWARDED = 1024


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
    if not value or len(value) > MAX_FORWARDED:
        return None
    host, _, path = value.partition("/")
    return (host, path) if _HOST.fullmatch(host) else None


def _first(value: str | None) -> str | None:
    """The client-most value of a possibly comma-separated forwarding header."""
    if value is None or len(value) > MAX_FORWARDED:
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
    """Rendered pages with this server's base URL put in, per base: the most recently served
    ones, within *max_entries* and *max_bytes* (a page larger than that is not kept)."""

    def __init__(self, max_entries: int = MAX_REBASED, max_bytes: int = MAX_REBASED_BYTES) -> None:
        self._max = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0
        self._pages: OrderedDict[tuple[str, str, tuple[tuple[bytes, bytes], ...]], Page] = (
            OrderedDict()
        )

    @property
    def held(self) -> int:
        """The bytes of the pages kept."""
        return self._bytes

    def page(self, scope: Scope, page: Page) -> Page:
        """*page* as served to this request: with its base put in when it is `based`."""
        if not page.based:
            return page
        base = base_url(scope)
        # The bytes, and every header: the HTML and text/html renderings have the same body
        # (and ETag) under different content types; a stale page has one header more.
        key = (page.etag, base, tuple(page.headers))
        found = self._pages.get(key)
        if found is not None:
            self._pages.move_to_end(key)
            return found
        found = rebase(page, base)
        if len(found.body) <= self._max_bytes:
            self._pages[key] = found
            self._bytes += len(found.body)
            while len(self._pages) > self._max or self._bytes > self._max_bytes:
                _, evicted = self._pages.popitem(last=False)
                self._bytes -= len(evicted.body)
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
