"""Project pages at PyPI's URLs: `/project/<name>/` (the latest release) and
`/project/<name>/<version>/`.

A page is rendered once per (project generation, docs generation, base URL, view) in a worker
thread (the first look at a file may read it: digests and metadata go through the facts
cache) and served from memory; the README is rendered once per release (`render/readme.py`).
The "Manage project" link is the visitor's own: it is put in per request (`layout.respond`).

A project the visitor may not see answers exactly like one that does not exist: the same 404
page, or, with the mirror, the upstream project's page as for any name not hosted here.
Projects served through the mirror show what its listing says (versions, files, hashes) and
where it comes from; nothing is downloaded to show them.
"""

from __future__ import annotations

import html
from collections.abc import Hashable
from urllib.parse import quote

import anyio
from starlette.requests import Request
from starlette.responses import Response

from creamery.catalog.access import Principal
from creamery.core.names import is_valid_project_name, normalize
from creamery.http.routing import READ, Action, Route, endpoint
from creamery.render.readme import ReadmeCache
from creamery.web.guard import principal_of
from creamery.web.pages import BoundedCache, Endpoint, base_url, relative_redirect
from creamery.web.state import AppState
from creamery.web.ui.layout import render, respond
from creamery.web.ui.project_view import ProjectView, local_view, mirror_view

MANAGE = b"<!--creamery:manage-->"


def routes(state: AppState) -> list[Route]:
    pages = ProjectPages(state)

    async def latest(request: Request) -> Response:
        return await pages.serve(request, request.path_params["project"], None)

    async def release(request: Request) -> Response:
        params = request.path_params
        return await pages.serve(request, params["project"], params["version"])

    async def to_slash(request: Request) -> Response:
        params = request.path_params
        project = params["project"]
        normalized = normalize(project)
        if "version" in params:
            target = f"{quote(params['version'])}/"
            if normalized != project:
                target = f"../{quote(normalized)}/{target}"
        else:
            target = f"{quote(normalized)}/"
        return relative_redirect(target)

    def page(path: str, handler: Endpoint) -> Route:
        return Route(READ, path, action=Action.LIST, handler=endpoint(handler), browser=True)

    return [
        page("/project/{project}/", latest),
        page("/project/{project}/{version}/", release),
        page("/project/{project}", to_slash),
        page("/project/{project}/{version}", to_slash),
    ]


class ProjectPages:
    def __init__(self, state: AppState) -> None:
        self.state = state
        self.catalog = state.catalog
        self.cache = BoundedCache(max_entries=256, max_bytes=64 << 20)
        self.readmes = ReadmeCache()

    async def serve(self, request: Request, project: str, version: str | None) -> Response:
        normalized = normalize(project)
        if normalized != project:
            up = "../" if version is None else "../../"
            tail = "" if version is None else quote(version) + "/"
            return relative_redirect(f"{up}{quote(normalized)}/{tail}")
        principal = principal_of(request.scope)
        access = self.catalog.access
        index = self.catalog.index
        base = base_url(request)
        narrowed = access.filters_reads() or access.narrows(principal)
        hidden = narrowed and not access.may(principal, "list", project)
        mirror = self.state.mirror
        if project in index.projects and not hidden:
            view_key = access.view(principal) if narrowed else None
            docs = self.catalog.docs
            generations = (index.project_generation(project), docs.generation)
            key: Hashable = (project, version, *generations, base, view_key)
            body = self.cache.get(key)
            if body is None:
                body = await anyio.to_thread.run_sync(
                    self._render_local, project, version, base, principal
                )
                if body is None:
                    return self.not_found(request, base, project)
                self.cache.put(key, body)
            extra = {MANAGE: self._manage_link(principal, project, base)}
            return respond(request, self.state, body, extra=extra)
        if mirror is not None and is_valid_project_name(project):
            known = await mirror.projects.get(project, fresh=True)
            listing = known.listing
            if listing is not None:
                seen = (listing.url, listing.etag, known.fetched)
                key = ("mirror", project, version, *seen, base)
                body = self.cache.get(key)
                if body is None:
                    view = mirror_view(listing, version, base)
                    if view is None:
                        return self.not_found(request, base, project)
                    body = await anyio.to_thread.run_sync(self._page, view, base)
                    self.cache.put(key, body)
                return respond(request, self.state, body, extra={MANAGE: ""})
        return self.not_found(request, base, project)

    def _render_local(
        self, project: str, version: str | None, base: str, principal: Principal
    ) -> bytes | None:
        catalog = self.catalog
        narrowed = catalog.access.filters_reads() or catalog.access.narrows(principal)
        visible = catalog.access.visible(principal) if narrowed else _everything
        view = local_view(
            catalog.index, catalog.facts, self.readmes, project, version, base, visible
        )
        if view is None:
            return None
        if catalog.docs.versions(project):
            view.docs_url = f"{base}docs/{quote(project)}/"
        return self._page(view, base)

    def _page(self, view: ProjectView, base: str) -> bytes:
        project_url = f"{base}project/{quote(view.project)}/"
        index_url = base + "simple/"
        return render(
            "project.html",
            base=base,
            view=view,
            project_url=project_url,
            install=f"pip install --index-url {index_url} {view.name}=={view.version}",
            install_uv=f"uv pip install --index-url {index_url} {view.name}=={view.version}",
        )

    def _manage_link(self, principal: Principal, project: str, base: str) -> str:
        """The link to the management page, for a signed-in visitor who may use it."""
        access = self.catalog.access
        if principal.anonymous or not (
            access.may(principal, "yank", project) or access.may(principal, "remove", project)
        ):
            return ""
        href = html.escape(f"{base}manage/project/{quote(project)}/")
        return f'<a class="button manage-link" href="{href}">Manage project</a>'

    def not_found(self, request: Request, base: str, project: str) -> Response:
        """The one answer for a project (or release) not here and one the visitor may not see."""
        body = render("not_found.html", base=base, project=project)
        return respond(request, self.state, body, status_code=404)


def _everything(project: str) -> bool:
    return True
