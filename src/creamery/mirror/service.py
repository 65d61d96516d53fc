"""The caching mirror: projects not hosted here are served from the upstream indexes.

It wraps the local catalog rather than changing it: `web.Creamery` asks `handles(project)` and
hands over the simple page of such a project and the `/upstream/<project>/<file>` downloads.
Local projects are never mixed with upstream files (dependency confusion) unless listed in
`--mirror-merge` (or `--mirror-origin`). What of the upstream is offered, the supply-chain
policies decide (`decide`, mirror/policy.py). See docs/mirror.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import anyio

from creamery.catalog.service import Catalog
from creamery.catalog.status import ACTIVE
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
from creamery.mirror.listing import Listing, UpstreamFile, is_safe_filename
from creamery.mirror.policy import (
    Decision,
    Hidden,
    MinAge,
    OriginRules,
    Policies,
    format_duration,
    parse_origin,
    policy_header,
)
from creamery.mirror.policy_lists import PatternFile, Patterns
from creamery.mirror.projects import Known, UpstreamProjects
from creamery.mirror.provenance import Missing, UpstreamProvenance
from creamery.mirror.render import render_mirrored, upstream_status
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
_MAX_DECISIONS = 4096


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
        self.statuses = catalog.statuses
        self.observer = observer
        self.small_files = small_files
        self.policies = policies_of(config)
        # Per project: (the listing, the lists' generation, what was decided about it).
        self._decisions: dict[str, tuple[Listing, tuple[int, int], Decision]] = {}
        self._said: set[tuple[str, str | None]] = set()  # starved projects logged (once each)
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
        """Projects hosted here are ours alone, unless the operator allowed merging them (or
        made them upstream-only); a local-only name not hosted here is ours to refuse."""
        origin = self.policies.origin(project)
        if origin is None or origin[0] == "local-only":
            return project not in self.index.projects
        return True

    def upstream_only(self, project: str) -> bool:
        """Does a `--mirror-origin` rule make *project* upstream-only? Then a project hosted
        under that name is not shown anywhere: every read surface presents the upstream's."""
        origin = self.policies.origin(project)
        return origin is not None and origin[0] == "upstream-only"

    def local_only_rule(self, project: str) -> str | None:
        """The origin rule that makes *project* local-only (never looked up upstream), as the
        `X-Creamery-Policy` header names it; None: there is none."""
        origin = self.policies.origin(project)
        if origin is None or origin[0] != "local-only":
            return None
        return f"mirror-origin {origin[1]}=local-only"

    async def refusal(self, project: str) -> str | None:
        """The rule that keeps *project* from being looked up upstream at all (local-only, or
        kept out by the allow or deny list), for pages that say why, as the simple API does;
        None: it may be looked up."""
        local_only = self.local_only_rule(project)
        if local_only is not None or not self.policies.filters:
            return local_only
        await self.refresh_lists()
        return self.policies.blocked(project)

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
        local_only = self.local_only_rule(project)
        if local_only is not None:
            await self._refuse_local_only(send, project, local_only, "project")
            return
        shown = not hide_local and not self.upstream_only(project)
        local = project in self.index.projects and shown
        await self.refresh_lists()
        blocked = self.policies.blocked(project) if self.policies.filters else None
        if blocked is not None and not local:  # not even asked upstream
            self._count_policy([blocked.split(" ", 1)[0]], "project")
            text = f"Not Found ({project} is not mirrored here: {blocked})"
            await send_text(send, 404, text, [policy_header(blocked)])
            return
        if blocked is not None:  # merged, hosted here: its hosted files alone, nothing asked
            pages = await anyio.to_thread.run_sync(self._render, project, None, True)
            self._count_policy([blocked.split(" ", 1)[0]], "page")
            await send_page(scope, send, pages[fmt], [policy_header(blocked)])
            return
        known = await self.projects.get(project, fresh=True)
        decision = await self.decide(project, known)
        listing = known.listing if decision is None else decision.listing
        if known.listing is None and not local:
            if known.failure is not None:
                await send_text(send, known.failure.status, known.failure.text)
            else:
                await send_text(send, 404, f"Not Found (no upstream index has {project})")
            return
        pages = await self._pages(project, known, listing, local)
        extra = list(STALE_HEADERS) if known.failure is not None else []
        self._count("page", "stale" if extra else "served")
        said = decision.header() if decision is not None else blocked
        if said is not None:
            extra.append(policy_header(said))
            self._count_policy(decision.kinds() if decision else [said.split(" ", 1)[0]], "page")
        await send_page(scope, send, self.rebased.page(scope, pages[fmt]), extra or None)

    async def _pages(
        self, project: str, known: Known, listing: Listing | None, local: bool
    ) -> dict[Format, Page]:
        """Rendered from *listing*: the upstream's as the policies offer it (a new object
        whenever a decision changes, so a page never outlives the decision it shows)."""
        generation = self.index.project_generation(project) if local else None
        rendered = known.pages
        if rendered is not None and rendered[0] == generation and rendered[1] is listing:
            return rendered[2]
        pages = await anyio.to_thread.run_sync(self._render, project, listing, local)
        known.pages = (generation, listing, pages)
        self.projects.remember(project, known)
        return pages

    def _render(self, project: str, listing: Listing | None, local: bool) -> dict[Format, Page]:
        hash_algo = self.config.hash_algo
        entries = []
        if local:
            entries = file_entries(self.index, self.facts, project, hash_algo)
        return render_mirrored(
            project,
            listing,
            entries,
            hash_algo,
            local_status=self.statuses.get(project) if local else ACTIVE,
            pep708=self.config.mirror_pep708,
        )

    # ------------------------------------------------------------------ policies

    async def decide(self, project: str, known: Known) -> Decision | None:
        """What the policies offer of *known*'s listing (None: no rule filters, or no
        listing). Kept until the listing, a list file or the time (a file old enough now)
        changes it. The one place a listing meets the policies: pages, downloads, the UI."""
        listing = known.listing
        if listing is None or not self.policies.filters:
            return None
        await self.refresh_lists()
        generation = self.policies.generation()
        now = time.time()
        kept = self._decisions.get(project)
        fresh = kept is not None and kept[0] is listing and kept[1] == generation
        if kept is not None and fresh and now < kept[2].valid_until:
            return kept[2]
        # In a thread: a listing of thousands of files against long lists takes milliseconds.
        decision = await anyio.to_thread.run_sync(self.policies.decide, listing, now)
        if len(self._decisions) >= _MAX_DECISIONS:
            self._decisions.clear()
        self._decisions[project] = (listing, generation, decision)
        self._say_starved(project, decision)
        return decision

    async def refresh_lists(self) -> None:
        """The allow and deny files looked at when due, in a worker thread: a reload parses
        up to 1 MiB, which must not hold up every other request."""
        if self.policies.due():
            await anyio.to_thread.run_sync(self.policies.refresh)

    def _say_starved(self, project: str, decision: Decision) -> None:
        """One log line per project (not per request) when the age left it nothing."""
        age = self.policies.min_age
        starved = decision.fallback is not None or (
            decision.listing is not None
            and not decision.listing.files
            and any(h.rule == age.rule for h in decision.hidden if age is not None)
        )
        if not starved or age is None or (project, decision.fallback) in self._said:
            return
        if len(self._said) >= _MAX_DECISIONS:
            self._said.clear()
        self._said.add((project, decision.fallback))
        what = decision.fallback or "nothing"
        log.warning(
            "mirror: every file of %s is newer than %s: offering %s (--mirror-min-age-fallback %s)",
            project,
            format_duration(age.seconds),
            what,
            age.fallback,
        )

    def _count_policy(self, kinds: list[str], what: str) -> None:
        metrics = self.observer.metrics
        if metrics is not None:
            for kind in kinds:
                metrics.mirror_policy.labels(kind, what).inc()

    async def _refuse_local_only(self, send: Send, project: str, rule: str, what: str) -> None:
        self._count_policy(["mirror-origin"], what)
        text = f"Not Found ({project} is local-only: never looked up upstream, not hosted here)"
        await send_text(send, 404, text, [policy_header(rule)])

    async def _file_refusal(self, project: str, dist: str) -> str | None:
        """The rule that keeps this upstream file from being served, None: none does."""
        blocked = self.policies.blocked(project)
        if blocked is not None:
            return blocked
        known = await self.projects.get(project, fresh=False)
        decision = await self.decide(project, known)
        hidden = decision.refusal(dist) if decision is not None else None
        if hidden is None and (known.listing is None or known.listing.file(dist) is None):
            # Not listed (yet): the lists still judge its version; the age, once it is listed.
            hidden = self.policies.file_rule(project, dist)
        return hidden.reason() if hidden is not None else None

    async def _unlisted_refusal(self, project: str, dist: str) -> str | None:
        """The cooldown on a cached file that the listing in hand does not list (so no
        decision judged it: the upstream forgot it, or answers no more): by the upload time
        the cached page last said, else as unknown. None: offered, or listed (judged)."""
        if self.policies.min_age is None:
            return None
        known = await self.projects.known(project)
        if known is not None and known.listing is not None and known.listing.file(dist) is not None:
            return None
        stored = await anyio.to_thread.run_sync(self.cache.load_listing, project)
        listed = stored[0].file(dist) if stored is not None else None
        upload_time = listed.upload_time if listed is not None else None
        hidden = self.policies.unlisted_age(project, dist, upload_time, time.time())
        return hidden.reason() if hidden is not None else None

    # ------------------------------------------------------------------ files

    async def provenance_of(
        self, scope: Scope, project: str, filename: str
    ) -> bytes | Missing | Failure:
        """PEP 740: the upstream's provenance of a mirrored file, under the rules its download
        follows (hosted here, local-only, the supply-chain policies)."""
        if not _PROJECT.fullmatch(project) or not is_safe_filename(filename):
            return Missing(f"{filename} is not a mirrored file")
        if not self.handles(project) and (self.hidden is None or not self.hidden(scope, project)):
            return Missing(f"{project} is hosted here: upstream files are not served")
        if self.local_only_rule(project) is not None:
            return Missing(f"{project} is local-only: never looked up upstream")
        if self.policies.filters:
            refusal = await self._file_refusal(project, filename)
            if refusal is None:  # its cached provenance, of a file no page lists now
                refusal = await self._unlisted_refusal(project, filename)
            if refusal is not None:
                return Missing(f"{filename} is not offered here: {refusal}")
        merged = project in self.index.projects and self.handles(project)
        quarantine = await self._quarantine(project, merged)
        if quarantine is not None:  # PEP 792: as its files, its provenance is not served
            return Missing(quarantine)
        return await self.provenance.get(project, filename)

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
        local_only = self.local_only_rule(project)
        if local_only is not None:
            await self._refuse_local_only(send, project, local_only, "file")
            return
        if self.policies.filters:
            await self.refresh_lists()
            refusal = await self._file_refusal(project, dist)
            if refusal is not None:
                await self._refuse_file(send, project, filename, refusal)
                return
        merged = project in self.index.projects and self.handles(project)
        quarantine = await self._quarantine(project, merged)
        if quarantine is not None:
            await send_text(send, 404, f"Not Found ({quarantine})")
            return
        if self.cache.evict_due():
            self._evict_soon()
        storage = await self._cached(project, filename)
        self._count("file", "hit" if storage is not None else "miss")
        if storage is not None:
            store, stored = storage
            refusal = await self._unlisted_refusal(project, dist)
            if refusal is not None:
                if isinstance(store, Opened):
                    store.reader.close()
                await self._refuse_file(send, project, filename, refusal)
                return
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
        if isinstance(job, Hidden):
            await self._refuse_file(send, project, filename, job.reason())
        elif isinstance(job, Failure):
            await send_text(send, job.status, job.text)
        elif job is None:
            await send_text(send, 404, f"Not Found ({project}/{filename} is not listed upstream)")
        elif scope["method"] == "HEAD":
            await _send_head(send, job)
        else:
            await self.downloads.serve(scope, send, job)

    async def _quarantine(self, project: str, merged: bool) -> str | None:
        """PEP 792: why no file of *project* is served (quarantined here, for a *merged*
        project, or upstream, as the last listing says), or None."""
        local = self.statuses.get(project) if merged else ACTIVE
        if local.quarantined:
            return local.quarantine_reason(project)
        known = await self.projects.known(project)
        status = upstream_status(known.listing if known is not None else None)
        return status.quarantine_reason(project, " upstream") if status.quarantined else None

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

    async def _refuse_file(self, send: Send, project: str, filename: str, reason: str) -> None:
        self._count_policy([reason.split(" ", 1)[0]], "file")
        text = f"Not Found ({project}/{filename} is not offered here: {reason})"
        await send_text(send, 404, text, [policy_header(reason)])

    async def _job(self, project: str, filename: str) -> Job | Failure | Hidden | None:
        """Where to fetch *filename* and how to verify it; None when no upstream lists it,
        the rule when the policies do not offer it (listed just now: see _file_refusal)."""
        known = await self.projects.get(project, fresh=False)
        found = _listed(known, filename)
        if found is None and not self.projects.is_fresh(known):
            known = await self.projects.get(project, fresh=True)  # maybe a new release
            found = _listed(known, filename)
        if found is None or known.listing is None:
            return known.failure if known.listing is None else None
        decision = await self.decide(project, known)
        hidden = decision.refusal(found.filename) if decision is not None else None
        if hidden is not None:
            return hidden
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


def policies_of(config: Config) -> Policies:
    """The mirror's policies as configured (the list files parse: checked at start)."""
    min_age = None
    if config.mirror_min_age is not None:
        min_age = MinAge(
            config.mirror_min_age,
            Patterns(config.mirror_min_age_exempt),
            config.mirror_min_age_unknown,
            config.mirror_min_age_fallback,
        )
    return Policies(
        min_age,
        PatternFile(config.mirror_allow) if config.mirror_allow is not None else None,
        PatternFile(config.mirror_deny) if config.mirror_deny is not None else None,
        OriginRules((parse_origin(rule) for rule in config.mirror_origin), config.mirror_merge),
    )


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
