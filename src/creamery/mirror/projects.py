"""What we know of each upstream project: its listing, how fresh it is, and our rendered pages.

Kept in a bounded LRU in memory and as files in the cache (so restarts and offline periods have
something to serve). A listing older than the TTL is revalidated (conditionally, with the
upstream's ETag) by one request while concurrent requests for the project wait for its answer.
When the upstream fails, the last listing is served stale and the upstream is left alone for a
short backoff, so an outage does not make every request wait for a timeout.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

import anyio

from creamery.mirror.cache import MirrorCache
from creamery.mirror.client import Answer, Failure, UpstreamClient
from creamery.mirror.listing import Listing
from creamery.render.negotiation import Format
from creamery.render.simple_api import Page

log = logging.getLogger("creamery.mirror")

NEGATIVE_TTL = 60.0  # "no upstream has it" is remembered at most this long
FAILURE_BACKOFF = 15.0  # seconds before asking a failing upstream again (at most the TTL)
MAX_PROJECTS = 1024
MAX_BYTES = 64 << 20  # rendered pages held in memory; the listings stay on disk


@dataclass(eq=False)
class Known:
    listing: Listing | None  # None: no upstream lists the project (or none answered yet)
    fetched: float  # time.time() of the last answer; 0: never answered
    failure: Failure | None = None  # the last attempt failed: the listing, if any, is stale
    retry_at: float = 0.0
    # Our rendered pages, and what they were rendered from: (local generation, listing, pages).
    pages: tuple[int | None, Listing | None, dict[Format, Page]] | None = None

    def weight(self) -> int:
        """Roughly the bytes held; HTML pages share their body between two formats."""
        size = 256 * len(self.listing.files) if self.listing is not None else 0
        if self.pages is not None:
            size += sum(len(body) for body in {page.body for page in self.pages[2].values()})
        return size


class _Pending:
    def __init__(self) -> None:
        self.done = anyio.Event()
        self.result: Known | None = None


class UpstreamProjects:
    def __init__(self, cache: MirrorCache, client: UpstreamClient, ttl: float) -> None:
        self.cache = cache
        self.client = client
        self.ttl = ttl
        self._known: OrderedDict[str, Known] = OrderedDict()
        self._weights: dict[str, int] = {}
        self._bytes = 0
        self._pending: dict[str, _Pending] = {}

    async def get(self, project: str, *, fresh: bool) -> Known:
        """What we know; with *fresh*, revalidated first when older than the TTL."""
        known = self._known.get(project)
        if known is None:
            known = await self._load(project)
        if known is not None:
            self.remember(project, known)
            if not fresh or self.is_fresh(known) or time.time() < known.retry_at:
                return known
        return await self._refresh(project, known)

    async def known(self, project: str) -> Known | None:
        """What we know now (in memory, else the listing cached on disk); never asks the
        upstream."""
        known = self._known.get(project)
        if known is None:
            known = await self._load(project)
            if known is not None:
                self.remember(project, known)
        return known

    def is_fresh(self, known: Known) -> bool:
        ttl = self.ttl if known.listing is not None else min(self.ttl, NEGATIVE_TTL)
        return known.failure is None and time.time() - known.fetched < ttl

    def remember(self, project: str, known: Known) -> None:
        """Keep *known* (again) as the most recent entry, and stay within the memory bounds."""
        self._bytes -= self._weights.pop(project, 0)
        self._known.pop(project, None)
        self._known[project] = known
        self._weights[project] = weight = known.weight()
        self._bytes += weight
        while len(self._known) > 1 and (len(self._known) > MAX_PROJECTS or self._bytes > MAX_BYTES):
            oldest, _ = self._known.popitem(last=False)
            self._bytes -= self._weights.pop(oldest, 0)

    async def _load(self, project: str) -> Known | None:
        stored = await anyio.to_thread.run_sync(self.cache.load_listing, project)
        if stored is None:
            return None
        listing, fetched = stored
        return Known(listing, fetched)

    async def _refresh(self, project: str, known: Known | None) -> Known:
        pending = self._pending.get(project)
        if pending is not None:  # someone is asking the upstream already: share the answer
            await pending.done.wait()
            return pending.result or Known(None, 0.0, Failure(502, "the upstream request failed"))
        pending = self._pending[project] = _Pending()
        try:
            pending.result = await self._fetch(project, known)
            self.remember(project, pending.result)
        finally:
            del self._pending[project]
            pending.done.set()
        return pending.result

    async def _fetch(self, project: str, known: Known | None) -> Known:
        previous = known.listing if known is not None else None
        answer = await self.client.fetch_listing(project, previous)
        now = time.time()
        if isinstance(answer, Listing):
            await self._save(answer, now)
            return Known(answer, now)
        if answer is Answer.NOT_MODIFIED and known is not None and previous is not None:
            known.fetched, known.failure = now, None
            await self._keep(previous, now)
            return known
        if answer is Answer.NOT_FOUND:
            if previous is not None:
                await anyio.to_thread.run_sync(self.cache.forget_listing, project)
            return Known(None, now)
        failure = answer if isinstance(answer, Failure) else Failure(502, "unexpected 304")
        if previous is None:
            known = await self._from_cached_files(project) or known
        return self._failed(project, known, failure, now)

    async def _from_cached_files(self, project: str) -> Known | None:
        """No listing anywhere and no upstream answers: what the cached files tell."""
        upstream = self.client.upstreams[0]
        try:
            listing = await anyio.to_thread.run_sync(
                self.cache.listing_from_files,
                project,
                upstream.project_url(project),
                upstream.index_url,
            )
        except OSError as error:
            log.warning("mirror: can't rebuild the page of %s: %s", project, error)
            return None
        return Known(listing, 0.0) if listing is not None else None

    async def keep(self, known: Known) -> None:
        """Before a file of *known* is cached: its page must be on disk too (see keep_listing)."""
        if known.listing is not None:
            await self._keep(known.listing, known.fetched)

    async def _keep(self, listing: Listing, fetched: float) -> None:
        try:
            await anyio.to_thread.run_sync(self.cache.keep_listing, listing, fetched)
        except OSError as error:
            log.warning("mirror: can't store the page of %s: %s", listing.project, error)

    def _failed(self, project: str, known: Known | None, failure: Failure, now: float) -> Known:
        stale = known is not None and known.listing is not None
        log.warning(
            "mirror: %s: %s; serving %s",
            project,
            failure.reason,
            "the cached page (stale)" if stale else "an error",
        )
        retry_at = now + min(FAILURE_BACKOFF, self.ttl)
        if known is None:
            return Known(None, 0.0, failure, retry_at)
        known.failure, known.retry_at = failure, retry_at
        return known

    async def _save(self, listing: Listing, fetched: float) -> None:
        try:
            await anyio.to_thread.run_sync(self.cache.save_listing, listing, fetched)
        except OSError as error:
            log.warning("mirror: can't store the page of %s: %s", listing.project, error)
