"""App wiring: the ASGI application, its hot paths, and the Starlette app for everything else.

The simple API and file downloads are answered here in plain ASGI (a dict lookup and ready
bytes); every other route goes to Starlette (`routes.py`). Every answer carries the change
feed's serial this process had applied (`X-Creamery-Serial`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

import anyio

from creamery.catalog import attestations, provenance
from creamery.catalog.access import ANONYMOUS, Principal
from creamery.catalog.service import Catalog
from creamery.changes import local_events
from creamery.changes.follower import Follower
from creamery.changes.local_events import Watch
from creamery.core.config import CONFIG_ENV, Config
from creamery.core.names import METADATA, PROVENANCE, SIGNATURE, normalize
from creamery.core.periodic import repeat
from creamery.http import files
from creamery.http.absolute import Rebased
from creamery.http.asgi_types import Message, Receive, Scope, Send
from creamery.http.conditional import send_page
from creamery.http.errors import (
    RETRY_AFTER,
    answer_client_error,
    answer_outage,
    closed_by_the_server,
    is_client_error,
    outage_reason,
)
from creamery.http.files import GONE, header, location, send_text
from creamery.http.limits import NO_BODY, Limits, TimedBody, has_body
from creamery.http.observe import Observer, log_error
from creamery.http.proxy import TrustedProxies
from creamery.http.reaper import start_reaper
from creamery.http.routing import Route, WrongMethod, bad_path, relative_path
from creamery.render.negotiation import Format, format_from_query, negotiate
from creamery.render.page_cache import PageCache, Pages
from creamery.render.simple_api import Page, make_page, render_project, render_root
from creamery.storage import StoreUnavailable
from creamery.web.guard import CLIENT, PRINCIPAL, Denial, Guard, client_of, principal_of, refusal
from creamery.web.routes import build_table
from creamery.web.state import AppState
from creamery.web.ui.layout import sign_in_location
from creamery.web.ui.session import BrowserSessions

if TYPE_CHECKING:
    from creamery.mirror.service import Mirror

log = logging.getLogger("creamery")

_SETTLE_SECONDS = 0.3  # a sidecar put beside a file by hand is moved once this old
_START_RETRY_SECONDS = 2.0  # an object store down at start: try loading again this often
_MAX_VIEWS = 1000  # root pages kept, one per distinct view of the projects
SERIAL = b"x-creamery-serial"
Headers = list[tuple[bytes, bytes]]


class Creamery:
    """The ASGI application. One instance per worker process."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.catalog = Catalog(config)
        # Shortcuts into the catalog, for the hot paths.
        self.state = self.catalog.state
        self.storage = self.catalog.storage
        self.index = self.catalog.index
        self.facts = self.catalog.facts
        # An object store: every storage call waits on the network, so none runs on the loop.
        self.remote = self.storage.remote
        self.store_name = ", ".join(r.url for r in config.object_roots) or "the package directory"
        # --s3-redirect: downloads of distributions answer 302 to the store's presigned URL.
        self.redirects = config.s3_redirect is not None and bool(config.object_roots)
        self.prefix = "" if config.server_base_url == "/" else config.server_base_url
        self.access = self.catalog.access
        self.guard = Guard(self.access)
        # Signed-in browser sessions (their key is read from the state on start).
        self.sessions = BrowserSessions(self.access, self.state)
        self.guard.sessions = self.sessions
        # With a permission file, principals see different projects: pages and files check.
        self.filtering = self.access.filters_reads()
        self._root_views: dict[Hashable, tuple[int, Pages]] = {}
        self.proxies = TrustedProxies(config.trusted_proxies)
        self.observer = Observer(config)
        self.limits = Limits(
            config.max_client_requests, config.body_timeout, self.prefix + config.health_endpoint
        )
        self.small_files = files.SmallFiles()
        self.pages = PageCache(self.index)  # the simple pages, for the hot path
        self.rebased = Rebased()  # those with absolute URLs (provenance), per base URL
        self.mirror: Mirror | None = None
        if config.mirror:
            from creamery.mirror.service import Mirror  # only when enabled: it brings in httpx

            hidden = self._hides if self.filtering else None
            self.mirror = Mirror(config, self.catalog, self.observer, self.small_files, hidden)
        self.app_state = AppState(
            config, self.catalog, self.guard, self.observer, self.small_files, self.mirror
        )
        self.feed = self.catalog.feed
        self._announced = self.feed.announced  # bound once: asked before every request
        self._follower: Follower | None = None  # the catalog's, once started
        self.serial_headers: Headers = [(SERIAL, b"0")]  # replaced (never changed) on news
        self.catalog.follower.on_advance = self._serial_applied
        self._serial_applied(self.catalog.follower.applied)
        self._started = False
        self._loaded = False  # the index scan is done (a forked child keeps it)
        self._start_lock = threading.Lock()
        self._retrying = False  # start_or_wait: a thread waits for the store
        self._migration_lock = threading.Lock()
        self._migration_timer: threading.Timer | None = None
        self._stoppers: list[Callable[[], None]] = []
        self._watch: Watch | None = None
        self.routes = build_table(self.app_state, self)

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        """Scan the roots (once) and start watching them (once per process)."""
        with self._start_lock:
            if self._started:
                return
            if self._loaded:  # forked after the scan: catch up on what changed meanwhile
                catch_up = threading.Thread(target=self.index.rescan, daemon=True)
                catch_up.start()
            else:
                self.state.clean_scratch(self.config.local_roots)
                self._follower = self.catalog.follower  # made before the scan (see Catalog)
                self.catalog.load_index()  # a snapshot of an object root, else a scan
                # The session key every worker and replica shares: made now in a bucket (its
                # replicas then agree at once), by the first sign-in in a directory (serving
                # alone leaves a pypiserver root as it was; its processes read it in a stat).
                self.sessions.load(create=self.state.remote)
                self.catalog.migrate_legacy_sidecars()
                attestations.warn_if_unverifiable(self.config.attestations)
                self._loaded = True
                _restart_in_forked_children(self)
            assert self._follower is not None
            self._stoppers.append(self._follower.start())  # every --feed-interval
            local_roots = self.config.local_roots
            if self.config.watch and local_roots:  # a bucket sends no events
                self._watch = local_events.watch(
                    local_roots, self._files_changed, self.index.rescan
                )
            if self._watch is not None:
                self._stoppers.append(self._watch.stop)
            rescan = self.config.rescan_seconds()
            if rescan > 0:
                self._stoppers.append(self._start_rescans(rescan))
            self._stoppers.extend(self.catalog.start_background())  # an object root's snapshots
            if self.config.prune_every is not None:  # retention: docs/retention.md
                self._stoppers.append(self._start_pruning(self.config.prune_every))
            self._started = True

    def start_or_wait(self) -> None:
        """`start`; with an object store that does not answer, keep trying in the background
        (the replica answers 503, its health check says not ready) instead of failing."""
        with self._start_lock:
            if self._retrying:
                return  # already waiting for the store
        try:
            self.start()
        except OSError as error:
            if not self.remote:
                raise
            log.warning("the store did not answer (%s): not ready, trying again", error)
            self._start_when_the_store_answers()

    def _start_when_the_store_answers(self) -> None:
        """An object store that is down at start: serve 503s (health: not ready) and try again
        every few seconds, rather than exit."""
        with self._start_lock:
            if self._retrying:
                return
            self._retrying = True

        def retry() -> None:
            while not self._started:
                time.sleep(_START_RETRY_SECONDS)
                try:
                    self.start()
                except OSError:
                    continue  # said once already
                except Exception:  # a background task must not die silently
                    log.exception("loading the index failed")
            log.warning("the store answers: the index is loaded")

        threading.Thread(target=retry, name="creamery-start", daemon=True).start()

    def _try_start(self) -> None:
        """A health check's nudge (a WSGI host builds the app lazily): start, or wait."""
        if not self._retrying:
            self.start_or_wait()

    def stop(self) -> None:
        if self.mirror is not None:
            self.mirror.close()
        for stop in self._stoppers:
            stop()
        self._stoppers.clear()
        self.feed.close()  # its descriptors; reopened if this app is used again

    def _files_changed(self, relpaths: list[str]) -> None:
        self.index.refresh(relpaths)
        if self.index.legacy:  # a `.yanked` put beside a file by hand: taken in shortly
            self._schedule_migration()

    def _schedule_migration(self) -> None:
        with self._migration_lock:
            if self._migration_timer is not None:
                return
            # Events arrive while the file is still being written: let it settle first.
            timer = threading.Timer(_SETTLE_SECONDS, self._migrate_settled)
            timer.daemon = True
            self._migration_timer = timer
        timer.start()

    def _migrate_settled(self) -> None:
        with self._migration_lock:
            self._migration_timer = None
        try:
            if self.catalog.migrate_legacy_sidecars(min_age=_SETTLE_SECONDS):
                self._schedule_migration()
        except Exception:  # a background task must not die
            log.exception("moving sidecars into the state directory failed")

    def _start_rescans(self, interval: float) -> Callable[[], None]:
        return repeat(interval, self._rescan, name="rescan", log=log)

    def _rescan(self) -> None:
        """The safety net: what no event announced, legacy sidecars, stale scratch files."""
        self.index.rescan()
        self.catalog.migrate_legacy_sidecars(min_age=_SETTLE_SECONDS)
        self.state.clean_scratch(self.config.local_roots)

    def _start_pruning(self, interval: float) -> Callable[[], None]:
        from creamery.catalog.prune import Schedule
        from creamery.catalog.prune_rules import rules_of_config

        return Schedule(self.catalog, interval, lambda: rules_of_config(self.config)).start()

    def _forked(self) -> None:
        """In a forked child: the parent's watcher threads did not come along; start anew."""
        self._start_lock = threading.Lock()
        self._stoppers.clear()
        self._watch = None  # the parent's reader thread is not here; its descriptor is the parent's
        if self._follower is not None:
            self._follower.forked()
        self._started = False

    def _serial_applied(self, serial: int) -> None:
        self.serial_headers = [(SERIAL, str(serial).encode())]

    @property
    def ready(self) -> bool:
        return self._started or self._loaded

    # ------------------------------------------------------------------ ASGI entry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            return
        # The per-client count, inline: this runs before every request, hot paths included.
        limits = self.limits
        client = scope.get("client")
        address: str = client[0] if client else ""
        if self.proxies:  # behind a trusted reverse proxy: its X-Forwarded-For names the client
            address = scope[CLIENT] = self.proxies.client(
                address, header(scope, b"x-forwarded-for")
            )
        count = limits.in_progress.get(address, 0)
        counted = count < limits.cap or scope["path"] == limits.exempt
        if counted:
            limits.in_progress[address] = count + 1
            handler = self._handle if scope["method"] in NO_BODY else self._timed
        else:
            handler = self._refuse
        try:
            if self.observer.active():
                await self.observer.observe(handler, scope, receive, send)
            else:
                await handler(scope, receive, send)
        except Exception as error:
            if is_client_error(error):  # the client's mistake, or it went away: never a 500
                with contextlib.suppress(Exception):
                    await answer_client_error(scope, self.stamp(send), error, started=False)
                return
            if closed_by_the_server(error):  # it answered the client's mistake itself
                log.info(
                    "%s %r: the server had answered and closed the connection: %s",
                    scope["method"],
                    scope["path"],
                    error,
                )
                return
            if self._is_outage(error):  # the store did not answer: 503, Retry-After
                await answer_outage(self.stamp(send), error, store=self.store_name)
                return
            if not getattr(error, "already_logged", False):
                log_error(self.config, scope, error)
            with contextlib.suppress(Exception):  # fails when the response had started
                await send_text(
                    send, 500, "Internal Server Error: see the server's log", self.serial_headers
                )
        finally:
            if counted:
                count = limits.in_progress[address] - 1
                if count:
                    limits.in_progress[address] = count
                else:  # addresses that have gone leave nothing behind
                    del limits.in_progress[address]

    def _is_outage(self, error: Exception) -> bool:
        """StoreUnavailable; with an object store, any OSError of its own (a file that is
        gone is a 404, answered where it is found)."""
        return isinstance(error, StoreUnavailable) or (
            self.remote and isinstance(error, OSError) and not isinstance(error, GONE)
        )

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Past --max-client-requests: 429."""
        await self.limits.refuse(self.stamp(send), client_of(scope))

    async def _timed(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A request that may carry a body: one that stalls ends with 408 (--body-timeout)."""
        limits = self.limits
        if not limits.body_timeout:
            await self._handle(scope, receive, send)
            return
        body = has_body(scope["headers"])
        timed = TimedBody(receive, self.stamp(send), limits.body_timeout, body=body)
        try:
            await self._handle(scope, timed.receive, timed.send)
        except Exception:
            if not timed.timed_out:  # anything raised after a timeout is its consequence
                raise
        if timed.timed_out:
            limits.report_body_timeout(client_of(scope), scope["method"], scope["path"])
            await timed.finish()

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = relative_path(scope)
        if not self._started:
            if not self._loaded and path == self.prefix + self.config.health_endpoint:
                # Health checks don't wait for the scan: they learn it is still loading.
                threading.Thread(target=self._try_start, name="creamery-start", daemon=True).start()
                await send_text(send, 503, "Not ready: the index is loading", self.serial_headers)
                return
            if self._retrying:  # the store was down at start: one thread tries, not every request
                headers = [RETRY_AFTER, *self.serial_headers]
                reason = f"Service Unavailable: not ready, waiting for {self.store_name}"
                await send_text(send, 503, reason, headers)
                return
            await anyio.to_thread.run_sync(self.start)
        problem = bad_path(path)
        if problem is not None:
            await send_text(send, 400, f"Bad Request: {problem}", self.serial_headers)
            return
        if self.prefix:
            if not (path.startswith(self.prefix + "/") or path == self.prefix):
                await send_text(send, 404, "Not Found", self.serial_headers)
                return
            path = path[len(self.prefix) :] or "/"
            scope["root_path"] = scope.get("root_path", "") + self.prefix
        # Events already queued (a file copied just before this request) and other processes'
        # writes (announced in shared memory): no file-system call when there is no news.
        watch = self._watch
        if watch is not None and watch.pending():
            await anyio.to_thread.run_sync(watch.drain)
        follower = self._follower
        if follower is not None and (announced := self._announced()) > follower.applied:
            try:
                await self._follow(follower, announced)
            except OSError as error:  # what is in memory is served; a miss looks again (settle)
                if not self._is_outage(error):
                    raise
        method = scope["method"]
        found = self.routes.match(method, path, scope)
        if found is None:
            await send_text(send, 404, "Not Found", self.serial_headers)
            return
        if isinstance(found, WrongMethod):
            allow = ", ".join(found.allowed).encode()
            await send_text(
                send, 405, "Method Not Allowed", [(b"allow", allow), *self.serial_headers]
            )
            return
        if not found.route.hot or (self.mirror is not None and path.startswith("/upstream/")):
            send = self.stamp(send)  # the index's hot paths add it to their ready header lists
        action = found.route.needs
        guard = self.guard
        if found.route.browser:
            if not await self._identify_visitor(scope, send, found.route, path):
                return
        elif action is not None and (guard.identifies or action in guard.always_required):
            authorization = header(scope, b"authorization")
            if authorization:
                known = guard.remembered(authorization, scope)
            else:  # anonymous: no coroutine unless the route needs credentials (a 401)
                known = None if guard.required(action) else ANONYMOUS
                if known is None and method in ("GET", "HEAD"):  # a file a page links to
                    known = guard.session_principal(scope)
            principal = known or await guard.check(action, authorization, client_of(scope))
            if isinstance(principal, Denial):
                await send_text(
                    self.stamp(send), principal.status, principal.reason, principal.headers
                )
                return
            scope[PRINCIPAL] = principal
            scope["creamery.user"] = principal.user or ""
        if not found.route.hot:
            await self.settle(miss=False)  # listings, JSON API, XML-RPC: all in one place
        await found.route.handler(scope, receive, send, found.params)

    async def _identify_visitor(self, scope: Scope, send: Send, route: Route, path: str) -> bool:
        """A page for people: who is visiting (Basic credentials, else a signed-in session,
        else anonymous), put in the scope even where the route is open (the page greets them).
        An anonymous visitor a route needs credentials from is sent to the sign-in page (False:
        answered here)."""
        guard = self.guard
        action = route.needs
        authorization = header(scope, b"authorization")
        principal: Principal | Denial | None = None
        needed = action is not None and (guard.required(action) or action in guard.always_required)
        if authorization:
            principal = guard.remembered(authorization, scope)
            if principal is None:
                # Checked even where the page is open: it greets the visitor and offers what
                # they may do. Credentials that fail there show the page as to anyone (as
                # pypiserver's open pages ignore them), unless a permission file is in force.
                principal = await guard.check(
                    action or "list", authorization, client_of(scope), identify=True
                )
                open_page = not needed and not guard.identifies
                if isinstance(principal, Denial) and open_page and principal.status != 429:
                    principal = ANONYMOUS
        else:
            principal = guard.session_principal(scope)
        if principal is None:
            if needed:
                target = sign_in_location(scope, path, self._page_to_return_to(scope, path))
                await self._redirect(self.stamp(send), 303, target)
                return False
            principal = ANONYMOUS
        if isinstance(principal, Denial):
            await send_text(self.stamp(send), principal.status, principal.reason, principal.headers)
            return False
        scope[PRINCIPAL] = principal
        scope["creamery.user"] = principal.user or ""
        return True

    def _page_to_return_to(self, scope: Scope, path: str) -> str | None:
        """After signing in, a form's POST can't be repeated: the nearest page above it is
        shown (`/manage/project/p/yank` -> `/manage/project/p/`). None: this page itself."""
        if scope["method"] in ("GET", "HEAD"):
            return None
        while path != "/":
            path = path.rstrip("/").rpartition("/")[0] + "/"
            found = self.routes.match("GET", path, scope)
            if found is not None and not isinstance(found, WrongMethod) and found.route.browser:
                return path
        return "/"

    async def _follow(self, follower: Follower, announced: int | None = None) -> None:
        """Apply what the change feed has that this process has not (on the event loop when
        that is quick; a rescan, or waiting for the background poll, in a worker thread).
        *announced*: all this request needs (the serial announced): a catch-up already under
        way that reaches it is enough (an object feed: no LIST per request)."""
        if self.remote or not follower.poll():  # an object feed reads the store
            await anyio.to_thread.run_sync(follower.catch_up, announced)

    def stamp(self, send: Send) -> Send:
        """*send* with X-Creamery-Serial added to the response's headers (once: wrappers nest),
        as applied when the response starts."""

        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if all(name != SERIAL for name, _ in headers):
                    message = {**message, "headers": headers + self.serial_headers}
            await send(message)

        return stamped

    async def settle(self, *relpaths: str, miss: bool = True) -> None:
        """Before a 404 or a listing: apply what the file-system events have, find the changes
        that no event reported (no watch, a network file system), and look on disk for
        *relpaths*. Before a 404 (*miss*) also read the change feed itself, not only what
        shared memory announced (a writer on another machine may share the state directory);
        a listing relies on the announcement, applied as every request starts (this machine),
        and the background poll (others), as hits do. The hits of the hot paths never come
        here: no file-system calls."""
        follower = self._follower
        if follower is not None and miss:
            await self._follow(follower)
        watch = self._watch
        if watch is not None and watch.pending():
            await anyio.to_thread.run_sync(watch.drain)
        if relpaths:
            await anyio.to_thread.run_sync(self.index.look_for, list(relpaths))
        if watch is None or not watch.synchronous:
            await anyio.to_thread.run_sync(self.index.catch_up_unreported)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await anyio.to_thread.run_sync(self.start_or_wait)
                except Exception as error:
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # ------------------------------------------------------------------ simple API

    async def simple(self, scope: Scope, send: Send, rest: str) -> None:
        fmt = self._negotiate(scope)
        if fmt is None:
            await send_text(
                send,
                406,
                "Not Acceptable: this index offers HTML and PEP 691 JSON",
                [(b"vary", b"Accept"), *self.serial_headers],
            )
            return
        if rest == "":  # an exact route: the dispatcher has looked on disk already
            if self._narrowed(scope):
                page = self._root_page_for(principal_of(scope), fmt)
            else:
                page = await self._root_page(fmt)
            await send_page(scope, send, page, self.serial_headers)
            return
        project, slash, tail = rest.partition("/")
        if tail or not project:
            await send_text(send, 404, "Not Found", self.serial_headers)
            return
        normalized = normalize(project)
        if not slash or normalized != project:
            # Relative, so it holds behind any proxy prefix (and keeps ?format=).
            target = f"../{normalized}/" if slash else f"{normalized}/"
            query = scope.get("query_string", b"")
            query_text = query.decode("utf-8", "surrogateescape")  # location() restores the bytes
            await self._redirect(send, 301, target + ("?" + query_text if query else ""))
            return
        if project not in self.index.projects:
            await self.settle()  # copied just now? (before the mirror takes it as not hosted)
        if self._narrowed(scope) and not self.access.may(
            scope.get(PRINCIPAL, ANONYMOUS), "list", project
        ):
            denial = self._out_of_scope(scope, "list", project)
            if denial is not None:
                await send_text(send, denial.status, denial.reason, self.serial_headers)
                return
            await self._hidden_project(scope, send, project, fmt)
            return
        if self.mirror is not None and self.mirror.handles(project):
            await self.mirror.serve_project(scope, self.stamp(send), project, fmt)
            return
        found = await self._project_page(project, fmt)
        if found is None:
            await self._not_hosted(scope, send, project, fmt)
            return
        if found.based:  # PEP 740 provenance URLs: absolute, with this request's base
            found = self.rebased.page(scope, found)
        await send_page(scope, send, found, self.serial_headers)

    def _negotiate(self, scope: Scope) -> Format | None:
        query = scope.get("query_string", b"")
        if query and b"format=" in query:
            from urllib.parse import parse_qs

            values = parse_qs(query.decode("latin-1")).get("format")
            if values:
                return format_from_query(values[0])
        return negotiate(header(scope, b"accept"))

    async def _root_page(self, fmt: Format) -> Page:
        pages = self.pages.get(None)
        if pages is None:
            generation = self.index.project_generation(None)
            pages = render_root(self.index.project_names())
            self.pages.put(None, generation, pages)
        return pages[fmt]

    def _root_page_for(self, principal: Principal, fmt: Format) -> Page:
        """The root page of the projects *principal* may see: rendered once per view (the
        principals who see the same projects) and index generation, not per request."""
        view = self.access.view(principal)
        generation = self.index.project_generation(None)
        kept = self._root_views.get(view)
        if kept is None or kept[0] != generation:
            visible = self.access.visible(principal)
            pages = render_root([n for n in self.index.project_names() if visible(normalize(n))])
            if len(self._root_views) >= _MAX_VIEWS:
                self._root_views.clear()
            kept = self._root_views[view] = (generation, pages)
        return kept[1][fmt]

    def _narrowed(self, scope: Scope) -> bool:
        """Does this request see less than everything? With a permission file, or with a
        token (whose scope and actions narrow what its owner may read)."""
        if self.filtering:
            return True
        principal = scope.get(PRINCIPAL)
        return principal is not None and principal.token is not None and principal.token.narrows

    def _out_of_scope(self, scope: Scope, operation: str, project: str) -> Denial | None:
        """A token's refusal where its owner would be allowed: 403 naming the project (the
        same for a project that does not exist: a scope is a list of names, so nothing
        leaks). None: the owner may not either, so the project is hidden (like unknown)."""
        principal = principal_of(scope)
        if principal.token is None or not self.access.may(
            Principal(principal.user), operation, project
        ):
            return None
        return refusal(self.access, principal, operation, project)

    def _hides(self, scope: Scope, project: str) -> bool:
        """May this request's principal not see *project* (normalized)?"""
        return not self.access.may(principal_of(scope), "list", project)

    async def _hidden_project(self, scope: Scope, send: Send, project: str, fmt: Format) -> None:
        """A project this principal may not see answers exactly as one that does not exist:
        the mirror's upstream page (without local files), or the fallback redirect, or 404."""
        if self.mirror is not None:
            await self.mirror.serve_project(scope, self.stamp(send), project, fmt, hide_local=True)
            return
        await self._unknown_project(scope, send, project)

    async def _project_page(self, project: str, fmt: Format) -> Page | None:
        pages = self.pages.get(project)
        if pages is None:
            if project not in self.index.projects:
                self.pages.forget(project)
                return None
            pages = self.pages.held(project)  # the store was down a moment ago: stale ones
            if pages is None:
                pages = await self._render_project(project)
        return pages[fmt]

    async def _render_project(self, project: str) -> Pages:
        """Render *project*'s pages and keep them. A store that does not answer (a new file's
        facts not read yet) leaves the last rendering served, marked stale, for a while; 503
        (raised) only when there is none."""
        generation = self.index.project_generation(project)
        try:
            status = self.catalog.statuses.get(project)
            pages = await anyio.to_thread.run_sync(
                render_project, self.index, self.facts, project, self.config.hash_algo, status
            )
        except OSError as error:
            if not self._is_outage(error) or (stale := self.pages.fall_back(project)) is None:
                raise
            reason = outage_reason(error, self.store_name)
            log.warning("%s: serving the last page of %s (stale)", reason, project)
            return stale
        self.pages.put(project, generation, pages)
        return pages

    async def _not_hosted(self, scope: Scope, send: Send, project: str, fmt: Format) -> None:
        """A project with no page here. Without the mirror: the fallback redirect (or 404).
        With it, `handles()` took the project as hosted a moment ago and its last file went
        since: the mirror answers as it now would, or 404 if it still does not; never the
        fallback redirect, which would send the client past the mirror's policies."""
        if self.mirror is None:
            await self._unknown_project(scope, send, project)
        elif self.mirror.handles(project):
            await self.mirror.serve_project(scope, self.stamp(send), project, fmt)
        else:
            text = f"Not Found ({project} does not exist)"
            await send_text(send, 404, text, self.serial_headers)

    async def _unknown_project(self, scope: Scope, send: Send, project: str) -> None:
        if self.config.disable_fallback:
            await send_text(send, 404, f"Not Found ({project} does not exist)", self.serial_headers)
            return
        status = 302 if files.is_http10(scope) else 303
        target = self.config.fallback_url.rstrip("/") + f"/{project}/"
        await self._redirect(send, status, target)

    async def _redirect(self, send: Send, status: int, target: str) -> None:
        quoted = location(target)
        headers = [(b"location", quoted), *self.serial_headers]
        await send_text(send, status, f"Redirecting to {quoted.decode()}", headers)

    # ------------------------------------------------------------------ files

    async def download(self, scope: Scope, send: Send, relpath: str) -> None:
        if self.catalog.statuses.quarantined and await self._refuse_quarantined(
            scope, send, relpath
        ):
            return
        stored = self.index.files.get(relpath)
        if stored is None and not self._metadata_of_known_wheel(relpath):
            # Not known: maybe copied just now, by a tool whose event was not reported.
            owner = relpath[: -len(METADATA)] if relpath.endswith(METADATA) else None
            await self.settle(*(r for r in (relpath, owner) if r))
            stored = self.index.files.get(relpath)
        if stored is None and self._narrowed(scope) and not self._may_download(scope, relpath):
            await self._refuse_download(scope, send, relpath)
            return
        if stored is None and relpath.endswith(METADATA):
            await self._send_metadata(scope, send, relpath[: -len(METADATA)])
            return
        if stored is None and relpath.endswith(PROVENANCE):
            await self._send_provenance(scope, send, relpath[: -len(PROVENANCE)])
            return
        if stored is None:
            await send_text(send, 404, f"Not Found ({relpath} does not exist)", self.serial_headers)
            return
        if self._narrowed(scope) and not self._may_download(scope, relpath):
            await self._refuse_download(scope, send, relpath)
            return
        if self.redirects and relpath in self.index.dists:
            url = await anyio.to_thread.run_sync(self.storage.url, stored)
            if url is not None:
                await self._redirect_to_store(send, url)
                return
        try:
            await files.send_file(
                scope,
                send,
                self.storage,
                stored,
                self.config.cache_control,
                self.small_files,
                self.serial_headers,
            )
        except OSError as error:  # the store's failure, not the client's: 503, Retry-After
            await answer_outage(send, error, store=self.store_name, headers=self.serial_headers)

    async def _refuse_quarantined(self, scope: Scope, send: Send, relpath: str) -> bool:
        """PEP 792: no file of a quarantined project is served (its metadata, provenance and
        signatures neither): 404 saying why (to whoever may see the project). False: not one
        of those."""
        project = self._project_of_file(relpath)
        reason = self.catalog.statuses.served_nothing(project)
        if reason is None:
            return False
        if self._narrowed(scope) and not self.access.may(principal_of(scope), "list", project):
            reason = f"{relpath} does not exist"
        await send_text(send, 404, f"Not Found ({reason})", self.serial_headers)
        return True

    def _project_of_file(self, relpath: str) -> str:
        """The normalized project a served file belongs to ("" for a file of no project:
        the permission file's `*` rules decide for those)."""
        dist = self.index.dists.get(relpath)
        if dist is not None:  # a distribution: the usual download
            return dist.parsed.project
        for suffix in (METADATA, PROVENANCE, SIGNATURE):
            if relpath.endswith(suffix) and relpath[: -len(suffix)] in self.index.dists:
                relpath = relpath[: -len(suffix)]
                break
        dist = self.index.dists.get(relpath)
        return "" if dist is None else dist.parsed.project

    def _may_download(self, scope: Scope, relpath: str) -> bool:
        """May this request's principal download *relpath* (no coroutine: a hot path)?"""
        principal = scope.get(PRINCIPAL, ANONYMOUS)
        return self.access.may(principal, "download", self._project_of_file(relpath))

    async def _refuse_download(self, scope: Scope, send: Send, relpath: str) -> None:
        """A file of a project the principal may not see is a 404, like a file that does not
        exist (outside a token's scope too: a 403 would tell its holder the file exists); one
        it may see but not download, 401 or 403."""
        principal = principal_of(scope)
        project = self._project_of_file(relpath)
        if not self.access.may(principal, "list", project):
            await send_text(send, 404, f"Not Found ({relpath} does not exist)", self.serial_headers)
            return
        denial = refusal(self.access, principal, "download", project)
        await send_text(send, denial.status, denial.reason, [*denial.headers, *self.serial_headers])

    async def _redirect_to_store(self, send: Send, url: str) -> None:
        """--s3-redirect: the bytes come from the store; the URL expires, so nobody keeps it."""
        headers = [(b"location", location(url)), (b"cache-control", b"no-store")]
        await send_text(
            send, 302, "Found: download from the package store", headers + self.serial_headers
        )

    def _metadata_of_known_wheel(self, relpath: str) -> bool:
        return relpath.endswith(METADATA) and relpath[: -len(METADATA)] in self.index.dists

    async def _send_metadata(self, scope: Scope, send: Send, relpath: str) -> None:
        """PEP 658: the wheel's METADATA, extracted once and cached."""
        dist = self.index.dists.get(relpath)
        if dist is None or dist.parsed.kind != "wheel":
            await send_text(
                send, 404, f"Not Found ({relpath}.metadata does not exist)", self.serial_headers
            )
            return
        metadata = await anyio.to_thread.run_sync(self.facts.metadata, dist.stored, "wheel")
        if metadata.raw is None:
            await send_text(
                send, 404, f"Not Found ({relpath} has no metadata)", self.serial_headers
            )
            return
        page = make_page(metadata.raw, Format.TEXT_HTML)
        headers = [(k, v) for k, v in page.headers if k not in (b"content-type", b"vary")]
        headers.append((b"content-type", b"text/plain; charset=utf-8"))
        await send_page(scope, send, type(page)(page.body, page.etag, headers), self.serial_headers)

    async def _send_provenance(self, scope: Scope, send: Send, relpath: str) -> None:
        """PEP 740: the provenance uploaded with the file, from the state directory."""
        dist = self.index.dists.get(relpath)
        data = None
        if dist is not None:  # in a thread: a digest not known yet is computed from the file
            data = await anyio.to_thread.run_sync(
                provenance.provenance_of, self.index, self.facts, dist
            )
        if data is None:
            await send_text(
                send, 404, f"Not Found ({relpath}.provenance does not exist)", self.serial_headers
            )
            return
        page = make_page(data, Format.TEXT_HTML)
        headers = [(k, v) for k, v in page.headers if k not in (b"content-type", b"vary")]
        headers.append((b"content-type", b"application/json"))
        await send_page(scope, send, type(page)(page.body, page.etag, headers), self.serial_headers)


_forkable: weakref.WeakSet[Creamery] = weakref.WeakSet()


def _restart_in_forked_children(app: Creamery) -> None:
    """gunicorn --preload builds (and a WSGI app starts) the app before forking its workers."""
    _forkable.add(app)


def _after_fork_in_child() -> None:
    for app in list(_forkable):
        app._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)


def create_app(config: Config) -> Creamery:
    return Creamery(config)


def app_from_env() -> Creamery:
    """Factory for server workers: the CLI passes the configuration in the environment."""
    config = Config.from_json(os.environ[CONFIG_ENV])
    if config.log_conf is not None:
        from creamery.http.logs import apply_log_conf  # start-up cost: logging.config, rarely

        apply_log_conf(config.log_conf)
    app = create_app(config)
    start_reaper(config)  # only servers load the app this way: this process accepts connections
    return app
