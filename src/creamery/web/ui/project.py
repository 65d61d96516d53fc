"""Project pages at PyPI's URLs: `/project/<name>/` (the latest release) and
`/project/<name>/<version>/`.

A page is rendered once per (project generation, docs generation, base URL, view) in a worker
thread (the first look at a file may read it: digests and metadata go through the facts
cache) and served from memory; the README is rendered once per release (`render/readme.py`).
The "Manage project" link is the visitor's own: it is put in per request (`layout.respond`).

A project the visitor may not see answers exactly like one that does not exist: the same 404
page, or, with the mirror, the upstream project's page as for any name not hosted here. With
the mirror, an upstream-only name (`--mirror-origin NAME=upstream-only`) shows the upstream's
project even when one is hosted here, and a name an allow or deny list keeps out answers 404
with a page (and `X-Creamery-Policy`) naming the rule, as the simple API does.
Projects served through the mirror show what its listing says (versions, files, hashes) and
where it comes from; nothing is downloaded to show them.
"""

from __future__ import annotations

import html
from collections.abc import Hashable, Sequence
from dataclasses import replace
from urllib.parse import quote

import anyio
from starlette.requests import Request
from starlette.responses import Response

from creamery.catalog.access import Principal
from creamery.catalog.status import ProjectStatus
from creamery.core.names import is_valid_project_name, normalize, version_sort_key
from creamery.http.routing import READ, Action, Route, endpoint
from creamery.mirror.listing import Listing
from creamery.mirror.policy import Hidden, policy_header
from creamery.mirror.render import upstream_status
from creamery.render.readme import ReadmeCache
from creamery.web.guard import principal_of
from creamery.web.pages import BoundedCache, Endpoint, base_url, relative_redirect
from creamery.web.state import AppState
from creamery.web.ui.layout import render, respond
from creamery.web.ui.project_view import ProjectView, local_view, mirror_view

MANAGE = b"<!--creamery:manage-->"
_MAX_RELEASES = 4096  # releases whose dependency names are remembered


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
        # (project, version, generation) -> the projects its dependencies name
        self._dependencies: dict[tuple[str, str | None, int], tuple[str, ...]] = {}

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
        shadowed = mirror is not None and mirror.upstream_only(project)
        if project in index.projects and not hidden and not shadowed:
            return await self._local(request, project, version, base, principal)
        if mirror is not None and is_valid_project_name(project):
            rule = await mirror.refusal(project)
            if rule is not None:  # as /simple/ says it: which rule, not a bare "not found"
                return self.not_found(request, base, project, policy=rule)
            known = await mirror.projects.get(project, fresh=True)
            decision = await mirror.decide(project, known)  # as the policies offer it
            listing = known.listing if decision is None else decision.listing
            not_offered = decision.hidden if decision is not None else ()
            if listing is not None:
                hid = tuple((h.filename, h.rule) for h in not_offered)  # a list edited: anew
                key = (
                    "mirror",
                    project,
                    version,
                    listing.url,
                    listing.etag,
                    known.fetched,
                    base,
                    hid,
                )
                body = self.cache.get(key)
                if body is None:
                    body = await anyio.to_thread.run_sync(
                        self._mirrored, listing, version, base, not_offered
                    )
                    if body is None:
                        return self.not_found(request, base, project)
                    self.cache.put(key, body)
                return respond(request, self.state, body, extra={MANAGE: ""})
        return self.not_found(request, base, project)

    async def _local(
        self, request: Request, project: str, version: str | None, base: str, who: Principal
    ) -> Response:
        """A hosted project's page. Its key names what the page depends on: the project's and
        the documentation's generations, the base URL, the view, and which of its dependencies
        are hosted here (they are linked), known from the last rendering of this release."""
        access, index = self.catalog.access, self.catalog.index
        narrowed = access.filters_reads() or access.narrows(who)
        release = (project, version, index.project_generation(project))
        linked = self._dependencies.get(release)
        hosted = None if linked is None else tuple(d in index.projects for d in linked)
        view_key = access.view(who) if narrowed else None
        key: Hashable = (*release, self.catalog.docs.generation, base, view_key, hosted)
        body = self.cache.get(key)
        if body is None:
            rendered = await anyio.to_thread.run_sync(
                self._render_local, project, version, base, who
            )
            if rendered is None:
                return self.not_found(request, base, project)
            body, linked = rendered
            if len(self._dependencies) >= _MAX_RELEASES:
                self._dependencies.clear()
            self._dependencies[release] = linked
            hosted = tuple(d in index.projects for d in linked)
            key = (*release, self.catalog.docs.generation, base, view_key, hosted)
            self.cache.put(key, body)
        extra = {MANAGE: self._manage_link(who, project, base)}
        return respond(request, self.state, body, extra=extra)

    def _render_local(
        self, project: str, version: str | None, base: str, principal: Principal
    ) -> tuple[bytes, tuple[str, ...]] | None:
        """The page, and the projects its dependencies name; None: no such release."""
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
        if self.state.config.attestations != "verify":
            _publishers_unproven(view)
        _show_status(view, catalog.statuses.get(project))
        linked = tuple(item.dependency.project for item in view.dependencies)
        return self._page(view, base), linked

    def _mirrored(
        self, listing: Listing, version: str | None, base: str, hidden: Sequence[Hidden] = ()
    ) -> bytes | None:
        view = mirror_view(listing, version, base, hidden)
        if view is None and hidden and not listing.files and version is None:
            # The policies left nothing: say what and why, rather than "not found".
            ordered = sorted(hidden, key=lambda h: (version_sort_key(h.version), h.filename))
            return render(
                "mirror_hidden.html",
                base=base,
                project=listing.project,
                source=listing.url,
                hidden=ordered,
            )
        if view is None:
            return None
        _show_status(view, upstream_status(listing))
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

    def not_found(
        self, request: Request, base: str, project: str, policy: str | None = None
    ) -> Response:
        """The one answer for a project (or release) not here and one the visitor may not see;
        *policy*: the mirror rule that keeps the upstream project out (said, and in the header
        the simple page sends)."""
        body = render("not_found.html", base=base, project=project, policy=policy)
        headers = None
        if policy is not None:
            name, value = policy_header(policy)
            headers = {name.decode("ascii"): value.decode("ascii")}
        return respond(request, self.state, body, status_code=404, headers=headers)


def _publishers_unproven(view: ProjectView) -> None:
    """Not under `--attestations verify`, a publisher was read from a certificate that nobody
    checked (`store`), or can't be told from one that was: never shown as if proven."""
    view.files = [
        replace(item, publisher=f"{item.publisher} (not verified by this index)")
        if item.publisher
        else item
        for item in view.files
    ]


def _show_status(view: ProjectView, status: ProjectStatus) -> None:
    """PEP 792 on the page: a banner for a status that is not active; no file of a
    quarantined project is offered."""
    view.status, view.status_reason = status.status, status.reason or None
    if status.quarantined:
        view.files = []


def _everything(project: str) -> bool:
    return True
