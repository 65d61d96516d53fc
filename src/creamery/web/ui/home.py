"""The home page `/`: a search box, how much the index holds, the releases uploaded last, the
index URL to give pip and uv, and pypiserver's welcome text (its sentences are what scripts
and tests look for).

With `--welcome` / `welcome_msg` the operator's template is served instead, exactly as
pypiserver does (`pages.welcome`): no route here then.

What it counts follows the visitor's view: a project the visitor may not see neither counts
nor appears; where `-a list` guards the listings, an anonymous visitor sees neither counts nor
releases (the page stays public, as pypiserver's). A body is rendered once per (index
generation, base URL, view) in a worker thread and kept in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

import anyio
from starlette.requests import Request
from starlette.responses import Response

from creamery.catalog.facts import FactsCache
from creamery.catalog.index import Distribution, Index
from creamery.catalog.versions import metadata_sources
from creamery.core.names import VersionKey, version_sort_key
from creamery.http.routing import READ, Action, Route, endpoint
from creamery.render.simple_api import iso_time
from creamery.storage import StoredFile
from creamery.web.guard import principal_of
from creamery.web.pages import BoundedCache, base_url
from creamery.web.state import AppState
from creamery.web.ui.layout import render, respond

RECENT = 10


@dataclass(frozen=True, slots=True)
class Recent:
    project: str  # normalized: its page's URL
    name: str  # as its metadata spells it
    version: str
    uploaded: str  # ISO 8601 UTC
    summary: str | None


@dataclass(frozen=True, slots=True)
class Counts:
    projects: int
    files: int


def custom_welcome(state: AppState) -> bool:
    config = state.config
    return config.welcome_file is not None or config.welcome_text is not None


def routes(state: AppState) -> list[Route]:
    if custom_welcome(state):
        return []  # pypiserver's welcome page, declared with the other routes
    home = Home(state)
    return [Route(READ, "/", action=Action.PUBLIC, handler=endpoint(home.serve), browser=True)]


class Home:
    def __init__(self, state: AppState) -> None:
        self.state = state
        self.catalog = state.catalog
        self.cache = BoundedCache(max_entries=32)
        self.summaries = Summaries(state.catalog.facts)
        # Where the listings need credentials, anonymous visitors are not told what is here.
        self.list_guarded = state.guard.required("list")

    async def serve(self, request: Request) -> Response:
        access = self.catalog.access
        index = self.catalog.index
        principal = principal_of(request.scope)
        base = base_url(request)
        shown = not (self.list_guarded and principal.anonymous)
        narrowed = access.filters_reads() or access.narrows(principal)
        view = access.view(principal) if narrowed else None
        key = (base, index.generation, view, shown)
        body = self.cache.get(key)
        if body is None:
            visible = access.visible(principal) if narrowed else None
            body = await anyio.to_thread.run_sync(self._render, base, shown, visible)
            self.cache.put(key, body)
        return respond(request, self.state, body)

    def _render(self, base: str, shown: bool, visible: Callable[[str], bool] | None) -> bytes:
        index = self.catalog.index
        counts: Counts | None = None
        recent: list[Recent] = []
        if shown:
            dists = index.all_distributions()
            if visible is not None:
                dists = [d for d in dists if visible(d.project)]
            counts = Counts(len({d.project for d in dists}), len(dists))
            recent = recent_releases(index, dists, self.summaries)
        return render(
            "home.html",
            base=base,
            counts=counts,
            recent=recent,
            index_url=base + "simple/",
            project_url=lambda name: base + "project/" + quote(name) + "/",
        )


def recent_releases(index: Index, dists: list[Distribution], summaries: Summaries) -> list[Recent]:
    """The newest releases by upload time (a release's newest file), newest first."""
    releases: dict[tuple[str, VersionKey], list[Distribution]] = {}
    for dist in dists:
        releases.setdefault((dist.project, version_sort_key(dist.version)), []).append(dist)
    newest = sorted(
        releases.values(), key=lambda files: max(d.stored.mtime_ns for d in files), reverse=True
    )[:RECENT]
    found = []
    for files in newest:
        latest = max(files, key=lambda d: d.stored.mtime_ns)
        name, summary = summaries.of(files)
        found.append(
            Recent(
                project=latest.project,
                name=name or latest.parsed.raw_name,
                version=latest.version,
                uploaded=iso_time(latest.stored.mtime_ns),
                summary=summary,
            )
        )
    return found


class Summaries:
    """Releases' names and summaries, remembered by file version: a re-render after a change
    asks the facts cache only about files it has not seen (which reads a file once ever)."""

    def __init__(self, facts: FactsCache, limit: int = 4096) -> None:
        self.facts = facts
        self._known: dict[StoredFile, tuple[str | None, str | None]] = {}
        self._limit = limit

    def of(self, files: list[Distribution]) -> tuple[str | None, str | None]:
        """(name, summary) from the release's metadata, a wheel's first; None when unknown."""
        named: str | None = None
        for dist in metadata_sources(files):
            stored = dist.stored
            if stored not in self._known:
                try:
                    metadata = self.facts.metadata(stored, dist.parsed.kind)
                except OSError:  # the store did not answer: shown without, asked again later
                    continue
                if len(self._known) >= self._limit:
                    self._known.clear()
                self._known[stored] = (metadata.name, metadata.summary)
            name, summary = self._known[stored]
            named = named or name
            if summary:
                return named, summary
        return named, None
