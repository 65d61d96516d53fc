"""Starlette routes for everything off the hot paths: pages, JSON APIs, XML-RPC, uploads."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from creamery import json_api, pages, writes, xmlrpc
from creamery.errors import ResponseHeaders
from creamery.files import is_http10
from creamery.pages import relative_redirect

if TYPE_CHECKING:
    from creamery.web import Creamery


def build_starlette(creamery: Creamery) -> Starlette:
    config = creamery.config

    async def health(request: Request) -> Response:
        if not creamery.ready:
            return PlainTextResponse("Not ready: the index is loading", status_code=503)
        for root in config.roots:
            if not os.access(root, os.R_OK | os.X_OK):
                return PlainTextResponse(f"Unhealthy: {root} is not readable", status_code=503)
        return Response("Ok", media_type="text/html")

    async def metrics(request: Request) -> Response:
        collected = creamery.observer.metrics
        if collected is None:
            return PlainTextResponse("Not Found", status_code=404)
        collected.projects.set(len(creamery.index.projects))
        collected.files.set(len(creamery.index.dists))
        if creamery.mirror is not None:
            collected.mirror_bytes.set(await anyio.to_thread.run_sync(creamery.mirror.cached_bytes))
        body, media_type = collected.exposition()
        return Response(body, media_type=media_type)

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

    async def post_root(request: Request) -> Response:
        if _is_xml(request):
            return await xmlrpc.handle(creamery, request)
        return await writes.legacy_api(creamery, request)

    async def legacy(request: Request) -> Response:
        return await writes.legacy_api(creamery, request)

    async def yank(request: Request) -> Response:
        return await writes.yank_api(creamery, request, yanked=True)

    async def unyank(request: Request) -> Response:
        return await writes.yank_api(creamery, request, yanked=False)

    routes = [
        Route(config.health_endpoint, health, methods=["GET", "HEAD"]),
        Route("/", pages.welcome(creamery), methods=["GET", "HEAD"]),
        Route("/", post_root, methods=["POST"]),
        Route("/legacy/", legacy, methods=["POST"]),
        Route("/legacy", legacy, methods=["POST"]),
        Route("/-/yank", yank, methods=["POST"]),
        Route("/-/unyank", unyank, methods=["POST"]),
        Route("/RPC2", xmlrpc.endpoint(creamery), methods=["POST"]),
        Route("/pypi", xmlrpc.endpoint(creamery), methods=["POST"]),
        Route("/favicon.ico", not_found),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/simple", to_slash, methods=["GET", "HEAD"]),
        Route("/packages", to_slash, methods=["GET", "HEAD"]),
        Route("/packages/", pages.packages_listing(creamery), methods=["GET", "HEAD"]),
        *json_api.routes(creamery),
        *xmlrpc.routes(creamery),
        Route("/{project}", project_redirect, methods=["GET", "HEAD"]),
        Route("/{project}/", project_redirect, methods=["GET", "HEAD"]),
    ]
    return Starlette(routes=routes, middleware=[Middleware(ResponseHeaders)])


def _is_xml(request: Request) -> bool:
    return "xml" in request.headers.get("content-type", "")
