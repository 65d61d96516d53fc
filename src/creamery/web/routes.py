"""Every route creamery answers, declared once: methods, path, pypiserver action, handler.

`routing.RouteTable` matches them; `web.Creamery` asks the guard about the matched route's
action and calls its handler, so the decision and the dispatch can't disagree. The hot paths
(`/simple/…`, `/packages/…`, `/upstream/…`) are prefix routes to plain ASGI handlers (the app's
own, handed in as `HotPaths`); the rest are Starlette endpoints (a Request in, a Response out)
adapted by `endpoint`, given the application's services (`AppState`), never the app.
"""

from __future__ import annotations

import os
from typing import Protocol

import anyio
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from creamery.http.asgi_types import Receive, Scope, Send
from creamery.http.files import header, is_http10
from creamery.http.routing import (
    POST,
    READ,
    Action,
    Handler,
    Params,
    Route,
    RouteTable,
    endpoint,
)
from creamery.web import account, integrity, json_api, pages, ui, writes, xmlrpc
from creamery.web.guard import principal_of
from creamery.web.pages import relative_redirect
from creamery.web.state import AppState
from creamery.web.ui.home import custom_welcome

# hatch looks for existing files at <upload URL>/+simple/<project>/ (devpi's layout).
DEVPI_SIMPLE = ("/+simple/", "/legacy/+simple/")


def is_xml(scope: Scope) -> bool:
    """POST / is XML-RPC when its body is declared XML (what xmlrpc.client and pip send), the
    legacy upload API otherwise: the one rule that picks both the handler and the action
    (`list` or `update`), so a request is checked for exactly what it will do."""
    content_type = header(scope, b"content-type") or ""
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type in ("text/xml", "application/xml") or media_type.endswith("+xml")


class HotPaths(Protocol):
    """What the table takes from the app itself: the hot paths it answers in plain ASGI (a dict
    lookup and ready bytes), and whether its index is loaded."""

    @property
    def ready(self) -> bool: ...
    async def simple(self, scope: Scope, send: Send, rest: str) -> None: ...
    async def download(self, scope: Scope, send: Send, relpath: str) -> None: ...


def build_table(state: AppState, hot: HotPaths) -> RouteTable:
    return RouteTable(declare(state, hot))


def declare(state: AppState, hot: HotPaths) -> list[Route]:
    config = state.config

    async def simple(scope: Scope, receive: Receive, send: Send, params: Params) -> None:
        await hot.simple(scope, send, params.get("rest", ""))

    async def download(scope: Scope, receive: Receive, send: Send, params: Params) -> None:
        await hot.download(scope, send, params["rest"])

    async def health(request: Request) -> Response:
        # 503 only for what stops this replica serving (a load balancer then sends its
        # traffic elsewhere): a read-only directory still serves, so it stays healthy.
        if not hot.ready:
            return PlainTextResponse("Not ready: the index is loading", status_code=503)
        for root in config.local_roots:
            if not os.access(root, os.R_OK | os.X_OK):
                return PlainTextResponse(f"Unhealthy: {root} is not readable", status_code=503)
        if state.catalog.storage.remote:
            problem = await anyio.to_thread.run_sync(state.catalog.health)
            if problem is not None:
                return PlainTextResponse(
                    f"Unhealthy: {problem}", status_code=503, headers={"Retry-After": "5"}
                )
        return Response("Ok", media_type="text/html")

    async def to_slash(request: Request) -> Response:
        return relative_redirect(request.url.path.rpartition("/")[2] + "/", 301)

    async def project_redirect(request: Request) -> Response:
        project = request.path_params["project"]
        target = (
            f"simple/{project}/" if not request.url.path.endswith("/") else f"../simple/{project}/"
        )
        status = 302 if is_http10(request.scope) else 303
        return relative_redirect(target, status)

    async def not_found(request: Request) -> Response:
        return PlainTextResponse("Not Found", status_code=404)

    async def legacy(request: Request) -> Response:
        return await writes.legacy_api(state, request)

    async def yank(request: Request) -> Response:
        return await writes.yank_api(state, request, yanked=True)

    async def unyank(request: Request) -> Response:
        return await writes.yank_api(state, request, yanked=False)

    rpc = endpoint(xmlrpc.endpoint(state))
    routes = [
        # The hot paths first: one startswith each.
        Route(READ, "/simple/", action=Action.LIST, handler=simple),
        Route(READ, "/simple/*", action=Action.LIST, handler=simple),
        Route(READ, "/packages/*", action=Action.DOWNLOAD, handler=download),
        *(Route(READ, path, action=Action.LIST, handler=simple) for path in DEVPI_SIMPLE),
        *(Route(READ, path + "*", action=Action.LIST, handler=simple) for path in DEVPI_SIMPLE),
        Route(READ, config.health_endpoint, action=Action.PUBLIC, handler=endpoint(health)),
        # pypiserver's welcome page when the operator gave one; else the UI's home page.
        *(
            [Route(READ, "/", action=Action.PUBLIC, handler=endpoint(pages.welcome(state)))]
            if custom_welcome(state)
            else []
        ),
        Route(POST, "/", action=Action.LIST, handler=rpc, when=is_xml),
        Route(POST, "/", action=Action.UPDATE, handler=endpoint(legacy)),
        Route(POST, "/legacy/", action=Action.UPDATE, handler=endpoint(legacy)),
        Route(POST, "/legacy", action=Action.UPDATE, handler=endpoint(legacy)),
        Route(POST, "/-/yank", action=Action.UPDATE, handler=endpoint(yank)),
        Route(POST, "/-/unyank", action=Action.UPDATE, handler=endpoint(unyank)),
        *xmlrpc.routes(state),
        Route(READ, "/favicon.ico", action=Action.PUBLIC, handler=endpoint(not_found)),
        Route(READ, "/simple", action=Action.LIST, handler=endpoint(to_slash)),
        Route(READ, "/packages", action=Action.LIST, handler=endpoint(to_slash)),
        Route(
            READ,
            "/packages/",
            action=Action.LIST,
            handler=endpoint(pages.packages_listing(state)),
        ),
        *json_api.routes(state),
        # PEP 740: PyPI's Integrity API (provenance), guarded like the files.
        *integrity.routes(state),
        # The signed-in user's tokens, the audit log, owners: credentials whatever `-a` says.
        *account.routes(state),
        # Pages for people: home, projects, search, documentation, sign-in, managing.
        *ui.routes(state),
        # pypiserver's catch-all: a redirect to the project's page, open to all like its own.
        Route(READ, "/{project}", action=Action.PUBLIC, handler=endpoint(project_redirect)),
        Route(READ, "/{project}/", action=Action.PUBLIC, handler=endpoint(project_redirect)),
    ]
    if config.metrics:
        # The metrics tell the index's size: guarded like the listings.
        routes.append(Route(READ, "/metrics", action=Action.LIST, handler=metrics(state)))
    else:  # a 404 for all, not the catch-all's redirect to a project called "metrics"
        routes.append(Route(READ, "/metrics", action=Action.PUBLIC, handler=endpoint(not_found)))
    if state.mirror is not None:
        mirror = state.mirror

        async def upstream(scope: Scope, receive: Receive, send: Send, params: Params) -> None:
            await mirror.download(scope, send, params["rest"])

        routes.insert(3, Route(READ, "/upstream/*", action=Action.DOWNLOAD, handler=upstream))
    return routes


def metrics(state: AppState) -> Handler:
    mirror = state.mirror

    async def exposition(request: Request) -> Response:
        collected = state.observer.metrics
        if collected is None:
            return PlainTextResponse("Not Found", status_code=404)
        index = state.catalog.index
        access = state.catalog.access
        principal = principal_of(request.scope)
        if access.narrows(principal):  # counted as this principal sees the index
            visible = access.visible(principal)
            shown = {project for project in index.project_names() if visible(project)}
            projects = len(shown)
            files = sum(dist.project in shown for dist in index.all_distributions())
        else:
            projects, files = len(index.projects), len(index.dists)
        if mirror is not None:
            collected.mirror_bytes.set(await anyio.to_thread.run_sync(mirror.cached_bytes))
        body, media_type = collected.exposition(projects, files)
        return Response(body, media_type=media_type)

    return endpoint(exposition)
