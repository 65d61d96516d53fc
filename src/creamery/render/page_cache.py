"""Rendered simple pages, kept per project until the index says the project changed.

Each entry remembers the index generation of its project (`Index.generations`; `None` is the
root listing) when rendering began: once the project changes again the entry is stale and never
served, and the next render replaces it. So nobody drops entries on a change, a page rendered
while its project changed is never kept as current, and the hot paths read without a lock.
"""

from __future__ import annotations

from creamery.catalog.index import Index
from creamery.render.negotiation import Format
from creamery.render.simple_api import Page

Pages = dict[Format, Page]  # one rendering per format


class PageCache:
    def __init__(self, index: Index) -> None:
        self._index = index
        self._entries: dict[str | None, tuple[int, Pages]] = {}

    def get(self, project: str | None) -> Pages | None:
        """The current pages of *project* (None: the root listing), or None to render them."""
        entry = self._entries.get(project)
        if entry is None or entry[0] != self._index.generations.get(project, 0):
            return None
        return entry[1]

    def put(self, project: str | None, generation: int, pages: Pages) -> None:
        """Keep *pages*, rendered from the index as it was at *generation* (read before)."""
        self._entries[project] = (generation, pages)

    def forget(self, project: str) -> None:
        """A project that is gone: its pages go too (a stale entry would only take memory)."""
        self._entries.pop(project, None)
