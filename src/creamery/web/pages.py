"""Web pages for people: the welcome page and the /packages/ listing, plus the HTTP helpers the
other Starlette modules share (`base_url`, cached bodies, HEAD-aware responses)."""

from __future__ import annotations

import functools
import re
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import anyio
from starlette.requests import Request
from starlette.responses import Response

from creamery.catalog.access import ANONYMOUS
from creamery.catalog.facts import Digests, FactsCache
from creamery.catalog.index import Distribution, Index
from creamery.core.config import ConfigError
from creamery.core.names import SIGNATURE, VersionKey, version_sort_key
from creamery.core.operator_files import read_operator_file
from creamery.core.version import __version__
from creamery.http import absolute
from creamery.http.conditional import etag_matches
from creamery.http.files import location
from creamery.render.simple_api import strong_etag
from creamery.storage import StoredFile
from creamery.web.guard import principal_of
from creamery.web.state import AppState

if TYPE_CHECKING:
    import jinja2

Endpoint = Callable[[Request], Awaitable[Response]]


@functools.cache
def templates() -> jinja2.Environment:
    """Loaded on first use: most requests never render a template, and jinja2 weighs ~10 MB."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("creamery", "templates"),
        autoescape=True,
        keep_trailing_newline=True,
        finalize=lambda value: "" if value is None else value,
    )


# bottle's SimpleTemplate writes unescaped output as {{!expr}}; jinja2 spells it |safe.
MAX_WELCOME_BYTES = 1 << 20  # a larger --welcome template is refused unread
_BOTTLE_RAW = re.compile(r"\{\{\s*!(.+?)\}\}", re.DOTALL)


# ---------------------------------------------------------------- HTTP helpers


def base_url(request: Request) -> str:
    """The absolute URL of the index root as the client sees it, ending with "/" (see
    `http.absolute.base_url`: X-Forwarded-*, root_path and `--server-base-url`)."""
    return absolute.base_url(request.scope)


def body_response(
    request: Request,
    body: bytes,
    media_type: str,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    *,
    etag: str | None = None,
) -> Response:
    """A response with a strong ETag (*etag*, else the body's digest), a 304 on a matching
    If-None-Match, no body for HEAD."""
    etag = strong_etag(body) if etag is None else etag
    all_headers = {**(headers or {}), "etag": etag}
    if status_code == 200 and etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=all_headers)
    if request.method == "HEAD":
        all_headers["content-length"] = str(len(body))
        return Response(b"", status_code, all_headers, media_type)
    return Response(body, status_code, all_headers, media_type)


def relative_redirect(target: str, status: int = 301) -> Response:
    """A redirect with a relative Location: right behind any proxy or path prefix."""
    quoted = location(target).decode("ascii")
    return Response(
        f"Redirecting to {quoted}\n",
        status_code=status,
        headers={"location": quoted},
        media_type="text/plain",
    )


# A response holding absolute URLs (`base_url`): shared caches must key on what made them.
BASED = {"vary": absolute.BASE_VARY}


class BoundedCache:
    """A small LRU of rendered bodies. Keys carry the index generation they were made at, so
    stale entries are never hit and simply age out; the bounds stop varied Host headers from
    growing it without end."""

    def __init__(self, max_entries: int = 64, max_bytes: int = 32 << 20) -> None:
        self._entries: OrderedDict[Hashable, bytes] = OrderedDict()
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0

    def get(self, key: Hashable) -> bytes | None:
        body = self._entries.get(key)
        if body is not None:
            self._entries.move_to_end(key)
        return body

    def put(self, key: Hashable, body: bytes) -> None:
        if len(body) > self._max_bytes:
            return
        old = self._entries.pop(key, None)
        self._bytes += len(body) - (len(old) if old is not None else 0)
        self._entries[key] = body
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= len(evicted)


# ---------------------------------------------------------------- the welcome page


def welcome(state: AppState) -> Endpoint:
    """GET / : the bundled page, or pypiserver's custom template (`--welcome`, `welcome_msg`)."""
    config = state.config
    # A custom template is checked at start (a broken one is a start-up error); the bundled
    # one is known to be good and loaded on the first visit.
    custom = config.welcome_file is not None or config.welcome_text is not None
    checked = _welcome_template(config.welcome_file, config.welcome_text) if custom else None
    cache = BoundedCache(max_entries=32)
    # The page is public, as pypiserver's is; an index whose listing is protected does not
    # tell everyone how many packages it holds.
    count_hidden = state.guard.required("list")
    catalog = state.catalog
    access = catalog.access
    # With a permission file, the page counts what anonymous visitors may see (the page is
    # public: nobody is asked who they are), so hidden projects don't add to it.
    filtering = access.filters_reads()

    async def endpoint(request: Request) -> Response:
        base = base_url(request)
        view = access.view(ANONYMOUS) if filtering else None
        key = (base, catalog.index.generation, view)
        body = cache.get(key)
        if body is None:
            template = checked or _welcome_template(None, None)
            count: int | None = None
            if count_hidden:
                count = None
            elif filtering:
                visible = access.visible(ANONYMOUS)
                count = sum(visible(d.project) for d in catalog.index.all_distributions())
            else:
                count = len(catalog.index.dists)
            body = render_welcome(template, base, count)
            cache.put(key, body)
        return body_response(request, body, "text/html; charset=utf-8", headers=BASED)

    return endpoint


def render_welcome(template: jinja2.Template, base: str, count: int | None) -> bytes:
    """*count* None: the number of packages is not shown (custom templates get "")."""
    variables = {
        "URL": base,
        "VERSION": __version__,
        "NUMPKGS": count,
        "PACKAGES": base + "packages/",
        "SIMPLE": base + "simple/",
    }
    return template.render(variables).encode("utf-8")


def _welcome_template(path: Path | None, text: str | None) -> jinja2.Template:
    if path is not None:
        raw = read_operator_file(path, "welcome file", MAX_WELCOME_BYTES)  # a FIFO: no hang
        text = raw.decode("utf-8", errors="replace")
    if text is None:
        return templates().get_template("welcome.html")
    from jinja2 import TemplateSyntaxError

    try:
        return templates().from_string(bottle_to_jinja(text))
    except TemplateSyntaxError as error:
        source = str(path) if path is not None else "the welcome message"
        raise ConfigError(f"{source} is not a valid template: {error.message}") from error


def bottle_to_jinja(text: str) -> str:
    """Translate bottle's unescaped `{{!expr}}`; `{{expr}}` means the same in both."""
    return _BOTTLE_RAW.sub(lambda m: "{{ (" + m.group(1).strip() + ")|safe }}", text)


# ---------------------------------------------------------------- the /packages/ listing


def packages_listing(state: AppState) -> Endpoint:
    """GET /packages/ : every distribution file and signature, linked relatively with a digest.

    Rendered once per index generation (and once more when digests computed in the background
    arrive), so a request costs a cache hit. With a permission file, once per view (the
    principals who see the same projects): the files of projects the principal may not see
    are not listed.
    """
    cache = BoundedCache(max_entries=16, max_bytes=256 << 20)
    catalog = state.catalog
    access = catalog.access
    filtering = access.filters_reads()
    digests = ListingDigests(catalog.facts, state.config.hash_algo)

    async def endpoint(request: Request) -> Response:
        index = catalog.index
        principal = principal_of(request.scope)
        narrowed = filtering or access.narrows(principal)
        view = access.view(principal) if narrowed else None
        key = (index.generation, digests.epoch, view)
        body = cache.get(key)
        if body is None:
            visible = access.visible(principal) if narrowed else None
            quarantined = catalog.statuses.quarantined
            if quarantined:  # PEP 792: their files are neither offered nor served
                visible = _not_in(quarantined, visible)
            body = await anyio.to_thread.run_sync(render_listing, index, digests, visible)
            cache.put(key, body)
        return body_response(request, body, "text/html; charset=utf-8")

    return endpoint


def _not_in(hidden: frozenset[str], visible: Callable[[str], bool] | None) -> Callable[[str], bool]:
    if visible is None:
        return lambda project: project not in hidden
    return lambda project: project not in hidden and visible(project)


# Digests of files not hashed yet are computed while rendering up to this many bytes; the rest
# in the background, so a first listing of a big directory answers in well under a second.
INLINE_HASH_BYTES = 128 << 20


class ListingDigests:
    """The `#<algo>=<digest>` fragments of the listing, remembered by file version.

    A re-render after a change costs a dict lookup per file: the facts cache (SQLite) is asked
    only for files this listing has not seen, and only files it has never hashed are read.
    """

    def __init__(self, facts: FactsCache, algo: str | None) -> None:
        self.facts = facts
        self.algo = algo
        self.epoch = 0  # bumped when background hashing finishes: the listing is re-rendered
        self._known: dict[StoredFile, str] = {}
        self._hashing = threading.Lock()

    def fragments(self, dists: list[Distribution]) -> dict[str, str]:
        """relpath -> `#algo=digest` for files whose digest is known now; hashes the others."""
        if self.algo is None:
            return {}
        known: dict[StoredFile, str] = {}
        missing: list[StoredFile] = []
        budget = INLINE_HASH_BYTES
        for dist in dists:
            stored = dist.stored
            digest = self._known.get(stored)
            if digest is None:
                found = self.facts.known_digests(stored)
                if found is None and stored.size <= budget:
                    budget -= stored.size
                    found = self._compute(stored)
                if found is None:
                    missing.append(stored)
                    continue
                digest = found.get(self.algo)
            known[stored] = digest
        fragments = {stored.key: f"#{self.algo}={digest}" for stored, digest in known.items()}
        self._known = known  # forgets files no longer listed
        if missing:  # after the fragments: the thread adds to self._known as it goes
            self._hash_in_background(missing)
        return fragments

    def _compute(self, stored: StoredFile) -> Digests | None:
        try:
            return self.facts.digests(stored)
        except OSError:  # gone or unreadable since the scan: listed without a digest
            return None

    def _hash_in_background(self, files: list[StoredFile]) -> None:
        if not self._hashing.acquire(blocking=False):
            return  # one hashing thread at a time; the next render hands over what is left

        def run() -> None:
            try:
                for stored in files:
                    found = self._compute(stored)
                    if found is not None and self.algo is not None:
                        self._known[stored] = found.get(self.algo)
            finally:
                self._hashing.release()  # before the bump: the re-render may hand over more
                self.epoch += 1

        threading.Thread(target=run, name="creamery-listing-digests", daemon=True).start()


def listed_relpaths(index: Index) -> list[str]:
    """Distributions and their signatures, by (directory, project, version) like pypiserver."""
    rows: list[tuple[tuple[str | VersionKey, ...], str]] = []
    for dist in index.all_distributions():
        directory = dist.relpath.rpartition("/")[0]
        key = (directory, dist.project, version_sort_key(dist.version), dist.filename)
        rows.append((key, dist.relpath))
        if index.sidecar(dist, SIGNATURE) is not None:
            rows.append(((*key, SIGNATURE), dist.relpath + SIGNATURE))
    rows.sort(key=lambda row: row[0])
    return [relpath for _, relpath in rows]


def render_listing(
    index: Index, digests: ListingDigests, visible: Callable[[str], bool] | None = None
) -> bytes:
    """The listing page; with *visible*, only the files of the projects it accepts."""
    relpaths = listed_relpaths(index)
    dists = [dist for relpath in relpaths if (dist := index.dists.get(relpath)) is not None]
    # Digests of every file, whoever asks: the digest memory then serves every view.
    fragments = digests.fragments(dists)
    if visible is not None:
        dists = [d for d in dists if visible(d.project)]
        shown = {d.relpath for d in dists}
        relpaths = [r for r in relpaths if r.removesuffix(SIGNATURE) in shown]
    # PEP 592's `data-yanked`, as on the simple pages: find-links clients (pip, pdm) read it
    # here too, and skip a yanked file unless pinned to it.
    yanked = {d.relpath: index.yank_reason(d) for d in dists}
    links = [
        (quote(relpath) + fragments.get(relpath, ""), relpath, yanked.get(relpath))
        for relpath in relpaths
    ]
    return templates().get_template("packages.html").render(links=links).encode("utf-8")
