"""The caching mirror: projects not hosted here are served from the upstream indexes.

It wraps the local catalog rather than changing it: `web.Creamery` asks `handles(project)` and
hands over the simple page of such a project and the `/upstream/<project>/<file>` downloads.
Local projects are never mixed with upstream files (dependency confusion) unless listed in
`--mirror-merge`. See docs/mirror.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import anyio

from creamery.catalog.service import Catalog
from creamery.core.config import Config
from creamery.core.headers import NOSNIFF
from creamery.core.names import METADATA
from creamery.core.objects import S3Options
from creamery.http import files
from creamery.http.absolute import Rebased
from creamery.http.asgi_types import Scope, Send
from creamery.http.conditional import send_page
from creamery.http.files import SmallFiles, send_text
from creamery.http.observe import Observer
from creamery.mirror.cache import Opened, StoreSkipped, open_cache
from creamery.mirror.client import Failure, UpstreamClient
from creamery.mirror.listing import UpstreamFile, is_safe_filename
from creamery.mirror.projects import Known, UpstreamProjects
from creamery.mirror.provenance import UpstreamProvenance
from creamery.mirror.render import render_mirrored
from creamery.mirror.transfer import Downloads, Job
from creamery.render.negotiation import Format
from creamery.render.simple_api import Page, file_entries
from creamery.storage import Storage, StoredFile

log = logging.getLogger("creamery.mirror")
_T = TypeVar("_T")


_PROJECT = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")  # a PEP 503-normalized name
# Digests we verify downloads with, strongest first.
_VERIFY_ALGOS = ("sha256", "sha512", "sha384", "blake2b", "sha3_256", "sha224", "sha1", "md5")
STALE_HEADERS = [(b"warning", b'110 - "Response is Stale"'), (b"x-creamery-stale", b"1")]


class Mirror:
    """Upstream projects beside the *catalog*'s; counts its events in the *observer*'s metrics
    and serves cached files through the app's *small_files*. *hidden* (with a permission file):
    may this request's principal not see this local project? Then, for that request, the
    project is not hosted here (its upstream files are served as for any unknown name)."""

    def __init__(
        self,
        config: Config,
        catalog: Catalog,
        observer: Observer,
        small_files: SmallFiles,
        hidden: Callable[[Scope, str], bool] | None = None,
    ) -> None:
        self.config = config
        self.hidden = hidden
        self.index = catalog.index
        self.facts = catalog.facts
        self.observer = observer
        self.small_files = small_files
        self.merge = frozenset(config.mirror_merge)
        self.cache = open_cache(
            config.mirror_cache_dir(),
            spool=config.facts_cache_dir() / "mirror-spool",  # only for a bucket cache
            options=S3Options(),  # the standard AWS variables and files
            max_size=config.mirror_max_size,
            max_age=config.mirror_max_age,
        )
        self.client = UpstreamClient(
            (config.fallback_url, *config.extra_upstreams), config.upstream_timeout
        )
        self.projects = UpstreamProjects(self.cache, self.client, config.mirror_ttl)
        self.downloads = Downloads(self.cache, self.client, self._evict_soon)
        # PEP 740: upstream provenance behind our Integrity API route, in absolute URLs.
        self.provenance = UpstreamProvenance(self.cache, self.client, self.projects)
        self.rebased = Rebased()
        self._closing: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()  # held, or the loop may drop them
        self._cached_bytes = 0  # the last count (cached_bytes)

    def handles(self, project: str) -> bool:
        """Projects hosted here are ours alone, unless the operator allowed merging them."""
        return project not in self.index.projects or project in self.merge

    def close(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop, so no connections left to close
        self._closing = loop.create_task(self.client.aclose())

    def _count(self, kind: str, result: str) -> None:
        metrics = self.observer.metrics
        if metrics is not None:
            metrics.mirror_events.labels(kind, result).inc()

    def cached_bytes(self) -> int:
        """Bytes of mirrored files kept (lists the cache: for scrapes, not hot paths); the
        last count while the store does not answer, so a scrape never fails for it."""
        try:
            self._cached_bytes = self.cache.size()
        except OSError as error:
            log.warning("mirror cache %s: not counted: %s", self.cache.where, error)
        return self._cached_bytes

    async def _cache_call(self, function: Callable[..., _T], *args: Any) -> _T:
        """A cache call: inline on a directory (cheap system calls), in a thread on a bucket."""
        if self.cache.remote:
            return await anyio.to_thread.run_sync(function, *args)
        return function(*args)

    def _in_background(self, function: Callable[..., object], *args: Any) -> None:
        """Run a blocking cache chore in a thread, without holding up the response."""

        async def chore() -> None:
            try:
                await anyio.to_thread.run_sync(function, *args)
            except Exception:
                log.exception("mirror cache: %s failed", getattr(function, "__name__", function))

        task = asyncio.get_running_loop().create_task(chore())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _evict_soon(self) -> None:
        self._in_background(self.cache.evict)

    # ------------------------------------------------------------------ project pages

    async def serve_project(
        self, scope: Scope, send: Send, project: str, fmt: Format, *, hide_local: bool = False
    ) -> None:
        """The project's page from upstream, merged with the local files when the project is
        merged; *hide_local*: the client may not see the local project, so it gets exactly
        what it would get if there were none."""
        if not _PROJECT.fullmatch(project):
            await send_text(send, 404, f"Not Found ({project} is not a valid project name)")
            return
        local = project in self.index.projects and not hide_local
        known = await self.projects.get(project, fresh=True)
        if known.listing is None and not local:
            if known.failure is not None:
                await send_text(send, known.failure.status, known.failure.text)
            else:
                await send_text(send, 404, f"Not Found (no upstream index has {project})")
            return
        pages = await self._pages(project, known, local)
        extra = STALE_HEADERS if known.failure is not None else None
        self._count("page", "stale" if extra else "served")
        await send_page(scope, send, self.rebased.page(scope, pages[fmt]), extra)

    async def _pages(self, project: str, known: Known, local: bool) -> dict[Format, Page]:
        generation = self.index.project_generation(project) if local else None
        rendered = known.pages
        if rendered is not None and rendered[0] == generation and rendered[1] is known.listing:
            return rendered[2]
        pages = await anyio.to_thread.run_sync(self._render, project, known, local)
        known.pages = (generation, known.listing, pages)
        self.projects.remember(project, known)
        return pages

    def _render(self, project: str, known: Known, local: bool) -> dict[Format, Page]:
        hash_algo = self.config.hash_algo
        entries = []
        if local:
            entries = file_entries(self.index, self.facts, project, hash_algo)
        return render_mirrored(project, known.listing, entries, hash_algo)

    # ------------------------------------------------------------------ files

    async def download(self, scope: Scope, send: Send, rest: str) -> None:
        """`/upstream/<project>/<file>`: from the cache, else from the upstream (and cached)."""
        project, _, filename = rest.partition("/")
        dist = filename.removesuffix(METADATA)
        if not _PROJECT.fullmatch(project) or not is_safe_filename(dist):
            await send_text(send, 404, f"Not Found ({rest} is not a mirrored file)")
            return
        if not self.handles(project) and (self.hidden is None or not self.hidden(scope, project)):
            await send_text(
                send, 404, f"Not Found ({project} is hosted here: upstream files are not served)"
            )
            return
        if self.cache.evict_due():
            self._evict_soon()
        storage = await self._cached(project, filename)
        self._count("file", "hit" if storage is not None else "miss")
        if storage is not None:
            store, stored = storage
            if self.cache.touch(stored):
                self._in_background(self.cache.record_use, stored)
            try:
                await files.send_file(
                    scope, send, store, stored, self.config.cache_control, self.small_files
                )
            finally:
                if isinstance(store, Opened):
                    store.reader.close()  # closed by send_file too, unless it redirected
            return
        job = await self._job(project, filename)
        if isinstance(job, Failure):
            await send_text(send, job.status, job.text)
        elif job is None:
            await send_text(send, 404, f"Not Found ({project}/{filename} is not listed upstream)")
        elif scope["method"] == "HEAD":
            await _send_head(send, job)
        else:
            await self.downloads.serve(scope, send, job)

    async def _cached(self, project: str, filename: str) -> tuple[Storage, StoredFile] | None:
        """The cached file, opened unless its bytes are in memory; None: fetch it upstream.

        Opened here, before a response starts, so a file another replica evicted between the
        lookup and the read is fetched again rather than answered 404. A store that does not
        answer is a miss too: the upstream still can.
        """
        try:
            stored = await self._cache_call(self.cache.cached, project, filename)
            if stored is None:
                return None
            if self.small_files.get(stored) is not None:
                return self.cache.store, stored
            reader = await self._cache_call(self.cache.open, stored)
        except (FileNotFoundError, StoreSkipped):
            return None
        except OSError as error:
            log.warning(
                "mirror cache %s: %s/%s not read: %s", self.cache.where, project, filename, error
            )
            return None
        return Opened(self.cache.store, reader), stored

    async def _job(self, project: str, filename: str) -> Job | Failure | None:
        """Where to fetch *filename* and how to verify it; None when no upstream lists it."""
        known = await self.projects.get(project, fresh=False)
        found = _listed(known, filename)
        if found is None and not self.projects.is_fresh(known):
            known = await self.projects.get(project, fresh=True)  # maybe a new release
            found = _listed(known, filename)
        if found is None or known.listing is None:
            return known.failure if known.listing is None else None
        await self.projects.keep(known)  # the file will be cached: so must its page be
        source = known.listing.source
        if filename.endswith(METADATA):
            digest = (found.core_metadata or {}).get("sha256")
            if digest is None:
                return None
            url = _metadata_url(found.url)
            return Job(project, filename, url, source, "sha256", digest, None)
        algo = next((a for a in _VERIFY_ALGOS if a in found.hashes), None)
        if algo is None or algo not in hashlib.algorithms_available:
            log.info("mirror: %s has no digest we know: cached unverified", found.url)
            algo = None
        digest = found.hashes[algo] if algo is not None else None
        return Job(project, filename, found.url, source, algo, digest, found.size)


def _listed(known: Known, filename: str) -> UpstreamFile | None:
    if known.listing is None:
        return None
    return known.listing.file(filename.removesuffix(METADATA))


def _metadata_url(url: str) -> str:
    """PEP 658: the file's URL with `.metadata` appended to its path."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path + METADATA))


async def _send_head(send: Send, job: Job) -> None:
    """HEAD of a file not cached yet: what the listing says, without downloading it."""
    headers = [(b"content-type", files.content_type(job.filename).encode()), NOSNIFF]
    if job.size is not None:
        headers.append((b"content-length", str(job.size).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
