"""App wiring: the ASGI application, its hot paths, and the Starlette app for everything else.

The simple API and file downloads are answered here in plain ASGI (a dict lookup and ready
bytes); every other route goes to Starlette (`routes.py`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import weakref
from typing import Any

import anyio

from creamery import files
from creamery.config import Config
from creamery.facts import FactsCache
from creamery.files import header, send_text
from creamery.guard import Denial, Guard, action_for
from creamery.index import METADATA, Index
from creamery.journal import Journal
from creamery.names import normalize
from creamery.negotiation import Format, format_from_query, negotiate
from creamery.observe import Observer, log_error
from creamery.simple_api import Page, make_page, render_project, render_root
from creamery.storage.local import LocalStorage

log = logging.getLogger("creamery")

Scope = dict[str, Any]
Receive = Any
Send = Any


class Creamery:
    """The ASGI application. One instance per worker process."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.storage = LocalStorage(config.roots)
        self.index = Index(self.storage)
        algos = (config.hash_algo,) if config.hash_algo else ()
        self.facts = FactsCache(config.facts_cache_dir(), algos)
        self.prefix = "" if config.server_base_url == "/" else config.server_base_url
        self.guard = Guard(config)
        self.observer = Observer(config)
        self.small_files = files.SmallFiles()
        self.mirror: Any = None
        if config.mirror:
            from creamery.mirror import Mirror

            self.mirror = Mirror(self)
        self.journal = Journal(config.upload_root)
        self._started = False
        self._loaded = False  # the index scan is done (a forked child keeps it)
        self._start_lock = threading.Lock()
        self._stoppers: list[Any] = []
        from creamery.routes import build_starlette

        self.starlette = build_starlette(self)

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
                self.index.load()
                self._loaded = True
                _restart_in_forked_children(self)
            stop_watch = self.storage.watch(self.index.refresh)
            if stop_watch is not None:
                self._stoppers.append(stop_watch)
            if self.config.rescan_interval > 0:
                self._stoppers.append(self._start_rescans(self.config.rescan_interval))
            self._started = True

    def stop(self) -> None:
        if self.mirror is not None:
            self.mirror.close()
        for stop in self._stoppers:
            stop()
        self._stoppers.clear()

    def _start_rescans(self, interval: float) -> Any:
        stopped = threading.Event()

        def loop() -> None:
            while not stopped.wait(interval):
                try:
                    self.index.rescan()
                except Exception:  # the safety net must not die
                    log.exception("rescan failed")

        threading.Thread(target=loop, name="creamery-rescan", daemon=True).start()
        return stopped.set

    def _forked(self) -> None:
        """In a forked child: the parent's watcher threads did not come along; start anew."""
        self._start_lock = threading.Lock()
        self._stoppers.clear()
        self._started = False

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
        try:
            if self.observer.active():
                await self.observer.observe(self._handle, scope, receive, send)
            else:
                await self._handle(scope, receive, send)
        except Exception as error:
            if not getattr(error, "already_logged", False):
                log_error(self.config, scope, error)
            with contextlib.suppress(Exception):  # fails when the response had started
                await send_text(send, 500, "Internal Server Error: see the server's log")

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if not self._started:
            if not self._loaded and path == self.prefix + self.config.health_endpoint:
                # Health checks don't wait for the scan: they learn it is still loading.
                threading.Thread(target=self.start, name="creamery-start", daemon=True).start()
                await send_text(send, 503, "Not ready: the index is loading")
                return
            await anyio.to_thread.run_sync(self.start)
        if self.prefix:
            if not (path.startswith(self.prefix + "/") or path == self.prefix):
                await send_text(send, 404, "Not Found")
                return
            path = path[len(self.prefix) :] or "/"
            scope["root_path"] = scope.get("root_path", "") + self.prefix
        await self._catch_up()
        method = scope["method"]
        action = action_for(method, path, header(scope, b"content-type") or "")
        if action is not None and self.guard.required(action):
            user = await self.guard.check(action, header(scope, b"authorization"), _client(scope))
            if isinstance(user, Denial):
                await send_text(send, user.status, user.reason, user.headers)
                return
            scope["creamery.user"] = user
        if method in ("GET", "HEAD"):
            if path.startswith("/simple/"):
                await self.simple(scope, send, path[8:])
                return
            if path.startswith("/packages/") and len(path) > 10:
                await self.download(scope, send, path[10:])
                return
            if path.startswith("/upstream/") and self.mirror is not None:
                await self.mirror.download(scope, send, path[10:])
                return
        await self.starlette(scope, receive, send)

    async def _catch_up(self) -> None:
        """Apply what other workers wrote, so a client reads its own writes on any worker."""
        changes = self.journal.poll()
        if changes:
            self.index.refresh(changes)
        elif changes is not None:
            await anyio.to_thread.run_sync(self.index.rescan)

    def record_changes(self, relpaths: list[str]) -> None:
        """After a write: update this worker's index now and tell the other workers."""
        self.index.refresh(relpaths)
        self.journal.append(relpaths)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await anyio.to_thread.run_sync(self.start)
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
                [(b"vary", b"Accept")],
            )
            return
        if rest == "":
            page = await self._root_page(fmt)
            await self._send_page(scope, send, page)
            return
        project, slash, tail = rest.partition("/")
        if tail or not project:
            await send_text(send, 404, "Not Found")
            return
        normalized = normalize(project)
        if not slash or normalized != project:
            # Relative, so it holds behind any proxy prefix (and keeps ?format=).
            target = f"../{normalized}/" if slash else f"{normalized}/"
            query = scope.get("query_string", b"")
            await self._redirect(send, 301, target + ("?" + query.decode() if query else ""))
            return
        if self.mirror is not None and self.mirror.handles(project):
            await self.mirror.serve_project(scope, send, project, fmt)
            return
        found = await self._project_page(project, fmt)
        if found is None:
            await self._unknown_project(scope, send, project)
            return
        await self._send_page(scope, send, found)

    def _negotiate(self, scope: Scope) -> Format | None:
        query = scope.get("query_string", b"")
        if query and b"format=" in query:
            from urllib.parse import parse_qs

            values = parse_qs(query.decode("latin-1")).get("format")
            if values:
                return format_from_query(values[0])
        return negotiate(header(scope, b"accept"))

    async def _root_page(self, fmt: Format) -> Page:
        pages = self.index.pages.get((None, "root"))
        if pages is None:
            generation = self.index.project_generation(None)
            pages = render_root(self.index.project_names())
            self.index.store_page((None, "root"), pages, generation)
        page: Page = pages[fmt]
        return page

    async def _project_page(self, project: str, fmt: Format) -> Page | None:
        pages: dict[Format, Page] | None = self.index.pages.get((project, "page"))
        if pages is None:
            if project not in self.index.projects:
                return None
            generation = self.index.project_generation(project)
            pages = await anyio.to_thread.run_sync(
                render_project, self.index, self.facts, project, self.config.hash_algo
            )
            self.index.store_page((project, "page"), pages, generation)
        page: Page = pages[fmt]
        return page

    async def _unknown_project(self, scope: Scope, send: Send, project: str) -> None:
        if self.config.disable_fallback:
            await send_text(send, 404, f"Not Found ({project} does not exist)")
            return
        status = 302 if files.is_http10(scope) else 303
        target = self.config.fallback_url.rstrip("/") + f"/{project}/"
        await self._redirect(send, status, target)

    async def _send_page(self, scope: Scope, send: Send, page: Page) -> None:
        inm = header(scope, b"if-none-match")
        if inm is not None and page.etag in {t.strip() for t in inm.split(",")}:
            await send(
                {
                    "type": "http.response.start",
                    "status": 304,
                    "headers": [(b"etag", page.etag.encode()), (b"vary", b"Accept")],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": 200, "headers": page.headers})
        body = b"" if scope["method"] == "HEAD" else page.body
        await send({"type": "http.response.body", "body": body})

    async def _redirect(self, send: Send, status: int, location: str) -> None:
        await send_text(
            send, status, f"Redirecting to {location}", [(b"location", location.encode())]
        )

    # ------------------------------------------------------------------ files

    async def download(self, scope: Scope, send: Send, relpath: str) -> None:
        stored = self.index.files.get(relpath)
        if stored is None and relpath.endswith(METADATA):
            await self._send_metadata(scope, send, relpath[: -len(METADATA)])
            return
        if stored is None:
            await send_text(send, 404, f"Not Found ({relpath} does not exist)")
            return
        await files.send_file(scope, send, stored, self.config.cache_control, self.small_files)

    async def _send_metadata(self, scope: Scope, send: Send, relpath: str) -> None:
        """PEP 658: the wheel's METADATA, extracted once and cached."""
        dist = self.index.dists.get(relpath)
        if dist is None or dist.parsed.kind != "wheel":
            await send_text(send, 404, f"Not Found ({relpath}.metadata does not exist)")
            return
        metadata = await anyio.to_thread.run_sync(self.facts.metadata, dist.stored, "wheel")
        if metadata.raw is None:
            await send_text(send, 404, f"Not Found ({relpath} has no metadata)")
            return
        page = make_page(metadata.raw, Format.TEXT_HTML)
        headers = [(k, v) for k, v in page.headers if k not in (b"content-type", b"vary")]
        headers.append((b"content-type", b"text/plain; charset=utf-8"))
        await self._send_page(scope, send, type(page)(page.body, page.etag, headers))


_forkable: weakref.WeakSet[Creamery] = weakref.WeakSet()


def _restart_in_forked_children(app: Creamery) -> None:
    """gunicorn --preload builds (and a WSGI app starts) the app before forking its workers."""
    _forkable.add(app)


def _after_fork_in_child() -> None:
    for app in list(_forkable):
        app._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""


def create_app(config: Config) -> Creamery:
    return Creamery(config)


def app_from_env() -> Creamery:
    """Factory for server workers: the CLI passes the configuration in the environment."""
    from creamery.server import CONFIG_ENV

    config = Config.from_json(os.environ[CONFIG_ENV])
    if config.log_conf is not None:
        from creamery.logs import apply_log_conf

        apply_log_conf(config.log_conf)
    return create_app(config)
