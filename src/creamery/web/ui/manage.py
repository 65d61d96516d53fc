"""Managing a project in the browser: `/manage/project/<name>/` lists every release and file
with the controls the visitor may use (yank with a reason, un-yank, delete a release or one
file after a confirmation page that names what will go, and for owners the project's PEP 792
status).

Every route is action ACCOUNT (credentials whatever `-a` says: the dispatcher sends an
anonymous visitor to sign in), for a password login only (a token gets 403). A project the
visitor may not see answers exactly like an unknown one. Every POST checks the form's origin
and CSRF token first (`session.read_form`), then the visitor's right (`access.may`), then calls
the catalog in a worker thread (audited there, by `actor_of`), and sends the visitor back to
the page with a short notice (`?done=yanked`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response

from creamery.catalog.access import Principal
from creamery.catalog.releases import same_version
from creamery.catalog.service import ReleaseNotFound, TooManyTokens
from creamery.catalog.status import MAX_REASON, STATUSES
from creamery.core.names import is_valid_project_name, normalize
from creamery.http.errors import RETRY_AFTER, outage_reason
from creamery.http.routing import READ, Action, Route
from creamery.storage import StoreUnavailable
from creamery.web.guard import actor_of, principal_of
from creamery.web.json_api import releases
from creamery.web.pages import relative_redirect
from creamery.web.state import AppState
from creamery.web.ui.session import Page, Stop, handler, message, page, read_form, redirect
from creamery.web.writes import MAX_YANK_REASON

log = logging.getLogger("creamery.manage")

DONE = {
    "yanked": "Yanked.",
    "unyanked": "Un-yanked.",
    "deleted": "Deleted.",
    "status": "Status changed.",
}


@dataclass(frozen=True, slots=True)
class FileRow:
    filename: str
    yanked: bool
    reason: str


@dataclass(frozen=True, slots=True)
class ReleaseRow:
    version: str
    files: list[FileRow]

    @property
    def yanked(self) -> bool:
        return all(f.yanked for f in self.files)

    @property
    def reason(self) -> str:
        return next((f.reason for f in self.files if f.reason), "")


def password_login(request: Request, state: AppState) -> Principal:
    """The visitor, signed in with a password (a token may not manage anything here)."""
    principal = principal_of(request.scope)
    if principal.user is None:  # the dispatcher sends them to sign in first
        raise Stop(message(request, state, 401, "Unauthorized: sign in first"))
    if principal.token is not None:
        raise Stop(
            message(request, state, 403, "Forbidden: sign in with your password, not a token")
        )
    return principal


def unavailable(request: Request, state: AppState, what: str, error: OSError) -> Stop:
    """The store did not answer (nothing changed): a 503 page, try again later."""
    store = ", ".join(root.url for root in state.config.object_roots)
    reason = f"{what}: {outage_reason(error, store)}"
    log.warning("%s", reason)
    headers = {"retry-after": RETRY_AFTER[1].decode()}
    return Stop(message(request, state, 503, reason, title="Service Unavailable", headers=headers))


async def run(
    request: Request,
    state: AppState,
    what: str,
    function: Callable[[], Any],
    *,
    invalid: Callable[[str, int], Stop] | None = None,
) -> Any:
    """A catalog write in a worker thread; its failures as pages (nothing half done).
    *invalid* answers the catalog's ValueError (the client's mistake: 400 by default, 409
    for a token limit reached) with its text and status."""
    try:
        return await anyio.to_thread.run_sync(function)
    except ReleaseNotFound as error:
        raise Stop(message(request, state, 404, f"Not Found: {error}")) from None
    except ValueError as error:
        text = " ".join(str(error).split())
        status = 409 if isinstance(error, TooManyTokens) else 400
        if invalid is not None:
            raise invalid(text, status) from None
        title = "Conflict" if status == 409 else "Bad Request"
        raise Stop(message(request, state, status, f"{title}: {text}")) from None
    except StoreUnavailable as error:
        raise unavailable(request, state, what, error) from None
    except OSError as error:  # a full or read-only state: the server's fault
        log.error("%s: %s", what, error)
        text = f"{what}: {error.strerror or error}"
        raise Stop(message(request, state, 507, text, title="Insufficient Storage")) from None


def routes(state: AppState) -> list[Route]:
    catalog = state.catalog
    access = catalog.access
    index = catalog.index

    def project_of(request: Request, principal: Principal) -> str:
        """The path's project (normalized), 404 like an unknown one when it is hidden."""
        name = request.path_params["name"]
        project = normalize(name) if is_valid_project_name(name) else ""
        if (
            not project
            or project not in index.projects
            or not access.may(principal, "list", project)
        ):
            raise Stop(message(request, state, 404, f"Not Found: no project {name!r}"))
        if project != name:
            raise Stop(relative_redirect(f"../{project}/" + _query(request)))
        return project

    def rows(project: str) -> list[ReleaseRow]:
        found = []
        for release in reversed(releases(index, project)):  # newest first
            files = [
                FileRow(d.filename, index.is_yanked(d), index.yank_reason(d) or "")
                for d in sorted(release.files, key=lambda d: d.filename)
            ]
            found.append(ReleaseRow(release.version, files))
        return found

    async def show(request: Request) -> Response:
        principal = password_login(request, state)
        project = project_of(request, principal)
        found = await anyio.to_thread.run_sync(rows, project)
        done = DONE.get(request.query_params.get("done", ""))
        return page(
            request,
            state,
            "manage_project.html",
            project=project,
            releases=found,
            may_yank=access.may(principal, "yank", project),
            may_remove=access.may(principal, "remove", project),
            done=done,
            max_reason=MAX_YANK_REASON,
            project_status=catalog.statuses.get(project),
            statuses=STATUSES,
            may_status=access.may(principal, "manage", project),
            max_status_reason=MAX_REASON,
        )

    def allowed(request: Request, principal: Principal, operation: str, project: str) -> None:
        if not access.may(principal, operation, project):
            text = access.why_not(principal, operation, project)
            raise Stop(message(request, state, 403, text))

    def target(request: Request, form_value: Callable[[str], str | None]) -> tuple[str, str | None]:
        """The release (and the one file of it, if named) a form is about."""
        version = (form_value("version") or "").strip()
        if not version:
            raise Stop(message(request, state, 400, "Bad Request: which version?"))
        filename = (form_value("filename") or "").strip() or None
        return version, filename

    def yanking(yanked: bool) -> Callable[[Request], Awaitable[Response]]:
        async def post(request: Request) -> Response:
            form = await read_form(request, state)
            principal = password_login(request, state)
            project = project_of(request, principal)
            allowed(request, principal, "yank", project)
            version, filename = target(request, form.value)
            reason = (form.value("reason") or "").strip() if yanked else ""
            if len(reason) > MAX_YANK_REASON:
                text = f"Bad Request: the reason is longer than {MAX_YANK_REASON} characters"
                raise Stop(message(request, state, 400, text))
            actor = actor_of(request.scope)
            await run(
                request,
                state,
                "yank failed" if yanked else "un-yank failed",
                lambda: catalog.set_yanked(
                    project, version, yanked=yanked, reason=reason, filename=filename, actor=actor
                ),
            )
            log.warning(
                "%s %s %s%s by %s",
                "yanked" if yanked else "un-yanked",
                project,
                version,
                f" ({filename})" if filename else "",
                principal,
            )
            return redirect("./?done=" + ("yanked" if yanked else "unyanked"))

        return post

    async def set_status(request: Request) -> Response:
        form = await read_form(request, state)
        principal = password_login(request, state)
        project = project_of(request, principal)
        allowed(request, principal, "manage", project)
        status, reason = form.value("status") or "", form.value("reason") or ""
        actor = actor_of(request.scope)
        changed = await run(
            request,
            state,
            "changing the status failed",
            lambda: catalog.set_status(project, status, reason, actor=actor),
        )
        log.warning("%s set the status of %s to %s", principal, project, changed.status)
        return redirect("./?done=status")

    def confirmation(
        request: Request, project: str, version: str, filename: str | None, **context: Any
    ) -> Response:
        found = [r for r in rows(project) if same_version(r.version, version)]
        files = [f.filename for r in found for f in r.files if filename in (None, f.filename)]
        if not files:
            what = version + (f" ({filename})" if filename else "")
            raise Stop(message(request, state, 404, f"Not Found: {project} {what} not found"))
        return page(
            request,
            state,
            "manage_delete.html",
            project=project,
            version=version,
            filename=filename,
            files=files,
            **context,
        )

    async def confirm(request: Request) -> Response:
        principal = password_login(request, state)
        project = project_of(request, principal)
        allowed(request, principal, "remove", project)
        version, filename = target(request, request.query_params.get)
        return await anyio.to_thread.run_sync(
            lambda: confirmation(request, project, version, filename)
        )

    async def delete(request: Request) -> Response:
        form = await read_form(request, state)
        principal = password_login(request, state)
        project = project_of(request, principal)
        allowed(request, principal, "remove", project)
        version, filename = target(request, form.value)
        if (form.value("confirm") or "").strip() != project:
            error = f"Type the project name, {project}, to confirm."
            return await anyio.to_thread.run_sync(
                lambda: confirmation(request, project, version, filename, error=error, status=400)
            )
        actor = actor_of(request.scope)
        await run(
            request,
            state,
            "delete failed",
            lambda: catalog.remove(project, version, filename=filename, actor=actor),
        )
        log.warning(
            "removed %s %s%s by %s",
            project,
            version,
            f" ({filename})" if filename else "",
            principal,
        )
        if project not in index.projects:  # its last file went: the page is gone too
            return redirect("../../../")
        return redirect("./?done=deleted")

    async def slash(request: Request) -> Response:
        return relative_redirect(request.path_params["name"] + "/" + _query(request))

    def route(methods: tuple[str, ...], path: str, function: Page) -> Route:
        return Route(methods, path, action=Action.ACCOUNT, handler=handler(function), browser=True)

    base = "/manage/project/{name}"
    return [
        route(READ, base, slash),
        route(READ, base + "/", show),
        route(("POST",), base + "/yank", yanking(True)),
        route(("POST",), base + "/unyank", yanking(False)),
        route(("POST",), base + "/status", set_status),
        route(READ, base + "/delete", confirm),
        route(("POST",), base + "/delete", delete),
    ]


def _query(request: Request) -> str:
    query = request.url.query
    return "?" + query if query else ""
