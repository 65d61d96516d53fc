"""The search page, `/search/?q=` (PyPI's URL): projects by name and summary, from the
catalog's in-memory search index (`catalog/search.py`).

The same URL answers JSON (`Accept: application/json`, or `&format=json`) for the page's
instant search (`static/creamery.js`). Results are filtered by what the visitor may see
before anything is counted, and rendered once per (query, index generation, summaries epoch,
base URL, view): a popular query costs a dict lookup until the index changes.
`/search/opensearch.xml` lets a browser add the index as a search engine.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from html import escape
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response

from creamery.catalog.search import MAX_QUERY, QueryTooLong, Results, clean_query
from creamery.http.absolute import BASE_VARY
from creamery.http.routing import READ, Action, Route, endpoint
from creamery.render.simple_api import iso_time
from creamery.web.guard import principal_of
from creamery.web.pages import BoundedCache, base_url, body_response, relative_redirect
from creamery.web.state import AppState
from creamery.web.ui.assets import asset_path
from creamery.web.ui.layout import render, respond

LIMIT = 100  # results shown; the count says how many matched
JSON = "application/json"
OPENSEARCH = "application/opensearchdescription+xml"
# One URL, two shapes: caches must tell them apart.
VARY = {"vary": f"Accept, Cookie, Authorization, {BASE_VARY}"}  # and absolute links
JSON_HEADERS = {
    "cache-control": "no-cache",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    **VARY,
}


def routes(state: AppState) -> list[Route]:
    page = SearchPage(state)
    return [
        Route(READ, "/search", action=Action.LIST, handler=endpoint(page.moved), browser=True),
        Route(READ, "/search/", action=Action.LIST, handler=endpoint(page.serve), browser=True),
        # What a browser needs to offer the index as a search engine: no project in it.
        Route(
            READ,
            "/search/opensearch.xml",
            action=Action.PUBLIC,
            handler=endpoint(page.opensearch),
            browser=True,
        ),
    ]


class SearchPage:
    def __init__(self, state: AppState) -> None:
        self.state = state
        self.catalog = state.catalog
        self.cache = BoundedCache(max_entries=256, max_bytes=16 << 20)

    async def moved(self, request: Request) -> Response:
        query = request.scope.get("query_string", b"").decode("latin-1")
        return relative_redirect("search/" + ("?" + query if query else ""))

    async def serve(self, request: Request) -> Response:
        params = request.query_params
        as_json = params.get("format") == "json" or wants_json(request.headers.get("accept"))
        base = base_url(request)
        try:
            query = clean_query(params.get("q", ""))
        except QueryTooLong as error:
            return self._refused(request, base, str(error), as_json)
        catalog = self.catalog
        search = catalog.search
        if catalog.index.generation != search.generation:
            # Only the projects that changed, but that may be many after a big upload.
            await anyio.to_thread.run_sync(search.sync)
        access = catalog.access
        principal = principal_of(request.scope)
        narrowed = access.filters_reads() or access.narrows(principal)
        view = access.view(principal) if narrowed else None
        key: Hashable = (query, search.generation, search.epoch, base, view, as_json)
        body = self.cache.get(key)
        if body is None:
            visible = access.visible(principal) if narrowed else None
            results = search.search(query, visible=visible, view=view, limit=LIMIT)
            body = document(query, results, base) if as_json else page(query, results, base)
            self.cache.put(key, body)
        if as_json:
            return body_response(request, body, JSON, headers=JSON_HEADERS)
        return respond(request, self.state, body, headers=VARY)

    def _refused(self, request: Request, base: str, reason: str, as_json: bool) -> Response:
        message = f"Bad Request: {reason}"
        if as_json:
            body = json.dumps({"message": message}).encode()
            return body_response(request, body, JSON, 400, headers=JSON_HEADERS)
        body = render(
            "search.html",
            base=base,
            query="",
            results=None,
            error=f"That query is too long: queries are limited to {MAX_QUERY} characters.",
            limit=LIMIT,
            max_query=MAX_QUERY,
        )
        return respond(request, self.state, body, status_code=400, headers=VARY)

    async def opensearch(self, request: Request) -> Response:
        base = base_url(request)
        key = ("opensearch", base)
        body = self.cache.get(key)
        if body is None:
            body = opensearch_description(base).encode("utf-8")
            self.cache.put(key, body)
        headers = {"cache-control": "public, max-age=86400", "x-content-type-options": "nosniff"}
        return body_response(request, body, OPENSEARCH, headers=headers)


def wants_json(accept: str | None) -> bool:
    """JSON for a client that asks for it and not for HTML (a browser asks for both)."""
    if not accept:
        return False
    return "application/json" in accept and "text/html" not in accept


def page(query: str, results: Results, base: str) -> bytes:
    return render(
        "search.html",
        base=base,
        query=query,
        results=results,
        hits=[_shown(hit, base) for hit in results.hits],
        error=None,
        limit=LIMIT,
        max_query=MAX_QUERY,
    )


def document(query: str, results: Results, base: str) -> bytes:
    return json.dumps(
        {
            "query": query,
            "total": results.total,
            "complete": results.complete,
            "results": [_shown(hit, base) for hit in results.hits],
        }
    ).encode()


def _shown(hit: Any, base: str) -> dict[str, str]:
    uploaded = iso_time(hit.uploaded_ns) if hit.uploaded_ns else ""
    return {
        "project": hit.project,
        "name": hit.name,
        "version": hit.version,
        "summary": hit.summary,
        "uploaded": uploaded,
        "date": uploaded[:10],
        "url": f"{base}project/{hit.project}/",
    }


def opensearch_description(base: str) -> str:
    root = escape(base)
    icon = escape(base + asset_path("icon.svg"))
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<OpenSearchDescription xmlns="http://a9.com/-/spec/opensearch/1.1/">
  <ShortName>creamery</ShortName>
  <Description>Projects of the package index at {root}</Description>
  <InputEncoding>UTF-8</InputEncoding>
  <Image type="image/svg+xml">{icon}</Image>
  <Url type="text/html" method="get" template="{root}search/?q={{searchTerms}}"/>
  <Url type="application/json" method="get"
       template="{root}search/?q={{searchTerms}}&amp;format=json"/>
  <Url type="{OPENSEARCH}" rel="self" template="{root}search/opensearch.xml"/>
</OpenSearchDescription>
"""
