"""Rendered simple pages, kept per project until the index says the project changed.

Each entry remembers the index generation of its project (`Index.generations`; `None` is the
root listing) when rendering began: once the project changes again the entry is stale and never
served, and the next render replaces it. So nobody drops entries on a change, a page rendered
while its project changed is never kept as current, and the hot paths read without a lock.

A render that finds the store down (a new file's facts cannot be read) is no reason to answer
503 while the last rendering is in memory: `fall_back` gives that one, marked stale
(`X-Creamery-Stale`), and `held` keeps giving it for `STALE_SECONDS` without trying again, so
an outage costs one store timeout per project and period, not one per request. The next render
that succeeds replaces it. A hit (`get`) never looks at any of this.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from creamery.catalog.index import Index
from creamery.render.negotiation import Format
from creamery.render.simple_api import Page

Pages = dict[Format, Page]  # one rendering per format

STALE = (b"x-creamery-stale", b"store unavailable")  # on a page served from before an outage
STALE_SECONDS = 5.0  # a render that found the store down is not tried again for this long


class PageCache:
    def __init__(self, index: Index, clock: Callable[[], float] = time.monotonic) -> None:
        self._index = index
        self._clock = clock
        self._entries: dict[str | None, tuple[int, Pages]] = {}
        # Projects whose render found the store down: until when (clock), and what is served.
        self._held: dict[str | None, tuple[float, Pages]] = {}

    def get(self, project: str | None) -> Pages | None:
        """The current pages of *project* (None: the root listing), or None to render them."""
        entry = self._entries.get(project)
        if entry is None or entry[0] != self._index.generations.get(project, 0):
            return None
        return entry[1]

    def put(self, project: str | None, generation: int, pages: Pages) -> None:
        """Keep *pages*, rendered from the index as it was at *generation* (read before)."""
        self._entries[project] = (generation, pages)
        self._held.pop(project, None)  # rendered: the store answers again

    def held(self, project: str | None) -> Pages | None:
        """The stale pages `fall_back` gave less than `STALE_SECONDS` ago (serve them, don't
        render), or None: render (the store may be back)."""
        held = self._held.get(project)
        if held is None or held[0] <= self._clock():
            return None
        return held[1]

    def fall_back(self, project: str | None) -> Pages | None:
        """A render of *project* found the store down: the last pages rendered (current or
        not), marked stale and held for `STALE_SECONDS`; None when it never had any."""
        entry = self._entries.get(project)
        if entry is None:
            return None
        pages = {fmt: _marked(page) for fmt, page in entry[1].items()}
        self._held[project] = (self._clock() + STALE_SECONDS, pages)
        return pages

    def forget(self, project: str) -> None:
        """A project that is gone: its pages go too (a stale entry would only take memory)."""
        self._entries.pop(project, None)
        self._held.pop(project, None)


def _marked(page: Page) -> Page:
    """*page* as it was, with its ETag (the bytes are the same), saying it is stale."""
    return Page(page.body, page.etag, [*page.headers, STALE], page.based)
