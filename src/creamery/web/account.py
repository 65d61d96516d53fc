"""A signed-in user's account over HTTP: their API tokens, the audit log, a project's owners.

JSON endpoints for scripts and the web UI to come, all of action ACCOUNT (credentials are
needed whatever `-a` says) and all for a password login: a token can't mint, list or revoke
tokens, nor read the audit log (403).

- `GET /-/tokens`: the caller's tokens (never a secret). `POST /-/tokens` with
  `{"description", "projects", "actions", "expires"}` (all optional; `expires` a duration such
  as "90d", seconds, or an ISO 8601 time): 201 with the token's record and, once, its secret.
- `DELETE /-/tokens/{id}` (or `POST /-/tokens/{id}/revoke`, for an HTML form): revoke one of
  the caller's tokens, or a token whose whole scope the caller owns (`manage`). Any other id
  answers 404 like an unknown one, so ids of other users' tokens are never confirmed.
- `GET /-/audit?since=7d&project=P&user=U`: the audit log as JSON lines (`application/x-ndjson`,
  the lines of `creamery audit --json`), oldest first. Admins see every entry; an owner of
  projects sees the entries of those projects; anyone else gets 403.
- `GET|POST /-/projects/{project}/owners`, `DELETE /-/projects/{project}/owners/{user}`: a
  project's grants (`--owners first-uploader`; 404 when ownership is off). Owners and
  maintainers see them, owners (`manage`) change them; the last owner can't be removed here.
- `GET|POST /-/projects/{project}/status`: a project's PEP 792 status, `{"status", "reason"}`.
  Whoever may see the project reads it; owners (`manage`) set it (`Catalog.set_status`).

Against cross-site requests (a browser that remembers Basic credentials sends them anywhere):
a POST must be `application/json` (a cross-origin page can't send that without a CORS
preflight, which creamery never grants), a DELETE may have no body but no other type, and a
request a browser marks `Sec-Fetch-Site: cross-site` or `same-site` is refused. The revoke
form route takes any body, so only the `Sec-Fetch-Site` check covers it.

Writes are the catalog's (`create_token`, `revoke_token`, `grant`, `ungrant`): audited, recorded
in the change feed, run in a worker thread. Errors answer `{"message": one line}`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from creamery.catalog.access import Access, Actor, Principal
from creamery.catalog.audit import MAX_DURATION, Entry, parse_duration
from creamery.catalog.owners import GRANTABLE, Owners
from creamery.catalog.permissions import Role
from creamery.catalog.service import TooManyTokens
from creamery.catalog.status import ProjectStatus
from creamery.catalog.tokens import Token
from creamery.core.errors import ClientError
from creamery.core.names import is_valid_project_name, normalize
from creamery.core.untrusted import load_json
from creamery.http.routing import READ, Action, Handler, Route, endpoint
from creamery.storage import StoreUnavailable
from creamery.web import writes
from creamery.web.guard import CHALLENGE, actor_of, principal_of
from creamery.web.state import AppState

log = logging.getLogger("creamery.account")

T = TypeVar("T")
MAX_BODY = 1 << 20  # a JSON request: a token's scope of 1,000 names fits many times over
MAX_TOKENS_PER_USER = 100  # every token is kept in every process's memory
MAX_USER_NAME = 200
TOKEN_FIELDS = ("description", "projects", "actions", "expires")
GRANT_FIELDS = ("user", "role")
STATUS_FIELDS = ("status", "reason")
AUDIT_PARAMS = ("since", "project", "user")
NDJSON = "application/x-ndjson"
_BROWSER_CROSS_SITE = ("cross-site", "same-site")


def routes(state: AppState) -> list[Route]:
    account = Account(state)
    answer = account.endpoint
    tokens = "/-/tokens"
    owners = "/-/projects/{project}/owners"
    status = "/-/projects/{project}/status"
    return [
        Route(READ, tokens, action=Action.ACCOUNT, handler=answer(account.list_tokens)),
        Route(("POST",), tokens, action=Action.ACCOUNT, handler=answer(account.create_token)),
        Route(
            ("DELETE",),
            tokens + "/{id}",
            action=Action.ACCOUNT,
            handler=answer(account.revoke_token),
        ),
        Route(
            ("POST",),
            tokens + "/{id}/revoke",
            action=Action.ACCOUNT,
            handler=answer(account.revoke_token, form=True),
        ),
        Route(READ, "/-/audit", action=Action.ACCOUNT, handler=answer(account.audit)),
        Route(READ, owners, action=Action.ACCOUNT, handler=answer(account.list_owners)),
        Route(("POST",), owners, action=Action.ACCOUNT, handler=answer(account.grant)),
        Route(
            ("DELETE",),
            owners + "/{user}",
            action=Action.ACCOUNT,
            handler=answer(account.ungrant),
        ),
        Route(READ, status, action=Action.ACCOUNT, handler=answer(account.show_status)),
        Route(("POST",), status, action=Action.ACCOUNT, handler=answer(account.set_status)),
    ]


def may_revoke(access: Access, principal: Principal, token: Token) -> bool:
    """The owner of a token, or an owner of every project in its (non-empty) scope."""
    if token.owner == principal.user:
        return True
    return bool(token.projects) and all(access.may(principal, "manage", p) for p in token.projects)


def is_admin(access: Access, user: str) -> bool:
    """May *user* read the whole audit log? Without a permission file every user may (each
    may do everything, pypiserver's rules); with one, those its rules make `owner` of `*`."""
    policy = access.policy
    if policy is None:
        return True
    return any(
        rule.role is Role.OWNER and "*" in rule.patterns and policy.applies(rule, user)
        for rule in policy.rules
    )


@dataclass(frozen=True, slots=True)
class Caller:
    """A request's signed-in user (a password login), and how its writes are audited."""

    principal: Principal
    user: str
    actor: Actor


class _Answer(Exception):
    """Stop here and send *response* (a refusal or a failure, decided deep in a handler)."""

    def __init__(self, response: Response) -> None:
        super().__init__()
        self.response = response


def message(status: int, text: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"message": text}, status_code=status, headers=headers)


def _refuse(status: int, text: str) -> _Answer:
    return _Answer(message(status, text))


Endpoint = Callable[[Request, Caller], Awaitable[Response]]


class Account:
    def __init__(self, state: AppState) -> None:
        self.state = state
        self.catalog = state.catalog
        self.access = state.catalog.access

    def endpoint(self, handler: Endpoint, *, form: bool = False) -> Handler:
        """*handler* for password logins only, its refusals and failures as JSON messages."""

        async def answer(request: Request) -> Response:
            try:
                caller = self._caller(request)
                _check_origin(request)
                if not form:
                    _check_content_type(request)
                response = await handler(request, caller)
            except _Answer as stop:
                response = stop.response
            except ClientError as error:
                response = message(error.status, error.reason)
            response.headers["cache-control"] = "no-store"  # a secret, or who did what
            return response

        return endpoint(answer)

    def _caller(self, request: Request) -> Caller:
        principal = principal_of(request.scope)
        if principal.user is None:  # the guard challenges first: only if a route is misdeclared
            headers = {k.decode(): v.decode() for k, v in CHALLENGE}
            raise _Answer(message(401, "Authentication required", headers))
        if principal.token is not None:
            raise _refuse(403, "Forbidden: sign in with your password, not a token")
        return Caller(principal, principal.user, actor_of(request.scope))

    async def _run(self, what: str, function: Callable[[], T]) -> T:
        """Run a catalog call in a worker thread; its ValueError is the client's (400), the
        store's failures are not (503 when it does not answer, 507 when it can't take it)."""
        try:
            return await anyio.to_thread.run_sync(function)
        except TooManyTokens as error:
            raise _refuse(409, _one_line(str(error))) from None
        except ValueError as error:
            raise _refuse(400, _one_line(str(error))) from None
        except StoreUnavailable as error:  # nothing was written: the client may retry
            raise _Answer(writes._unavailable(self.state, what, error, json=True)) from None
        except OSError as error:  # a full or read-only state: the server's fault
            log.error("%s: %s", what, error)
            raise _refuse(507, f"{what}: {error.strerror or error}") from None

    # ------------------------------------------------------------------ tokens

    async def list_tokens(self, request: Request, caller: Caller) -> Response:
        tokens = self.catalog.tokens_of(caller.user)  # the web UI's token page lists the same
        return JSONResponse({"tokens": [t.public() for t in tokens]})

    async def create_token(self, request: Request, caller: Caller) -> Response:
        data = await _json_object(request, TOKEN_FIELDS)
        description = _string(data, "description")
        projects = _strings(data, "projects")
        actions = _strings(data, "actions")
        expires = _expiry(data.get("expires"))
        token, secret = await self._run(
            "creating the token failed",
            lambda: self.catalog.create_token(
                caller.user,
                projects=projects,
                actions=actions,
                expires=expires,
                description=description,
                actor=caller.actor,
                limit=MAX_TOKENS_PER_USER,
            ),
        )
        log.warning("token %s created for %s over HTTP", token.id, caller.user)
        return JSONResponse({**token.public(), "id": token.id, "token": secret}, status_code=201)

    async def revoke_token(self, request: Request, caller: Caller) -> Response:
        token_id = request.path_params["id"]
        unknown = _refuse(404, f"Not Found: no token {token_id!r}")
        token = self.access.tokens.get(token_id)
        if token is None:  # created elsewhere, not yet applied from the feed?
            token = await self._run("revoking the token failed", lambda: self._read(token_id))
        if token is None or not self._may_revoke(caller, token):
            raise unknown
        revoked = await self._run(
            "revoking the token failed",
            lambda: self.catalog.revoke_token(token_id, actor=caller.actor),
        )
        if revoked is None:  # revoked meanwhile by another request
            raise unknown
        log.warning("token %s of %s revoked by %s over HTTP", token_id, token.owner, caller.user)
        return JSONResponse({"message": f"revoked {token_id}"})

    def _read(self, token_id: str) -> Token | None:
        return self.access.tokens.read(token_id)

    def _may_revoke(self, caller: Caller, token: Token) -> bool:
        return may_revoke(self.access, caller.principal, token)

    # ------------------------------------------------------------------ audit log

    async def audit(self, request: Request, caller: Caller) -> Response:
        params = request.query_params
        unknown = sorted(set(params) - set(AUDIT_PARAMS))
        if unknown:
            raise _refuse(400, f"unknown parameter {unknown[0]!r}: use since, project, user")
        since = None
        if params.get("since"):
            try:
                since = time.time() - parse_duration(params["since"])
            except ValueError as error:
                raise _refuse(400, str(error)) from None
        project = params.get("project") or None
        if project is not None:
            if not is_valid_project_name(project):
                raise _refuse(400, f"invalid project name {project!r}")
            project = normalize(project)
        user = params.get("user") or None
        shown = self._audit_filter(caller, project)
        entries = await self._run(
            "reading the audit log failed",
            lambda: [
                e
                for e in self.access.audit.read(since=since, project=project, user=user)
                if shown(e)
            ],
        )
        body = "".join(entry.to_json() + "\n" for entry in entries)
        return Response(body.encode("utf-8"), media_type=NDJSON)

    def _audit_filter(self, caller: Caller, project: str | None) -> Callable[[Entry], bool]:
        """Which entries *caller* may read: all (an admin), those of the projects they own
        (`manage`), or none at all (403: the same answer whether a project exists or not)."""
        principal, may = caller.principal, self.access.may
        if is_admin(self.access, caller.user):
            # Everything but the entries of projects a more specific rule hides from them.
            return lambda entry: entry.project is None or may(principal, "list", entry.project)
        if project is not None:
            if not may(principal, "manage", project):
                raise _refuse(
                    403, f"Forbidden: {caller.user!r} may not read the audit log of {project!r}"
                )
            return lambda entry: True
        if not any(may(principal, "manage", p) for p in self._known_projects()):
            raise _refuse(403, "Forbidden: the audit log is for admins and project owners")
        decided: dict[str, bool] = {}

        def owned(entry: Entry) -> bool:
            name = entry.project
            if name is None:  # logins, tokens, reloads: the admins' business
                return False
            if name not in decided:
                decided[name] = may(principal, "manage", name)
            return decided[name]

        return owned

    def _known_projects(self) -> set[str]:
        """Every project someone could own: uploaded, granted, or named by a rule."""
        known = set(self.catalog.index.projects)
        owners = self.access.owners
        if owners is not None:
            known.update(grant.project for grant in owners.all())
        policy = self.access.policy
        if policy is not None:
            known.update(
                p for rule in policy.rules for p in rule.patterns if not any(c in p for c in "*?[")
            )
        return known

    # ------------------------------------------------------------------ owners

    async def list_owners(self, request: Request, caller: Caller) -> Response:
        owners = self._ownership()
        project = self._project(request, caller, "yank")
        grants = sorted(owners.grants(project).values(), key=lambda g: (-g.role, g.user))
        return JSONResponse({"project": project, "owners": [g.public() for g in grants]})

    async def grant(self, request: Request, caller: Caller) -> Response:
        owners = self._ownership()
        project = self._project(request, caller, "manage")
        data = await _json_object(request, GRANT_FIELDS)
        user = data.get("user")
        if not isinstance(user, str) or not user.strip():
            raise _refuse(400, "'user' must be a user name")
        user = user.strip()
        if len(user) > MAX_USER_NAME or any(c in user for c in ":\x7f") or not user.isprintable():
            raise _refuse(400, "'user' must be a user name")
        if "role" not in data:
            raise _refuse(400, "missing 'role': uploader, maintainer or owner")
        try:
            role = Role.named(data["role"])
        except ValueError as error:
            raise _refuse(400, _one_line(str(error))) from None
        if role not in GRANTABLE:
            raise _refuse(400, "a grant's role is uploader, maintainer or owner")
        if not self.access.owner_exists(user):
            raise _refuse(400, f"no user {user!r} in the password file")
        _keep_an_owner(owners, project, user, role)
        grant = await self._run(
            "granting failed",
            lambda: self.catalog.grant(project, user, role, actor=caller.actor),
        )
        log.warning("%s made %s %s of %s", caller.user, user, role.label, project)
        return JSONResponse(
            {"message": f"{user} is {role.label} of {project}", "grant": grant.public()}
        )

    async def ungrant(self, request: Request, caller: Caller) -> Response:
        owners = self._ownership()
        project = self._project(request, caller, "manage")
        user = request.path_params["user"]
        _keep_an_owner(owners, project, user, None)
        removed = await self._run(
            "removing the grant failed",
            lambda: self.catalog.ungrant(project, user, actor=caller.actor),
        )
        if not removed:
            raise _refuse(404, f"Not Found: {user!r} has no role on {project!r}")
        log.warning("%s removed %s from %s", caller.user, user, project)
        return JSONResponse({"message": f"{user} has no role on {project} now"})

    # ------------------------------------------------------------------ status

    async def show_status(self, request: Request, caller: Caller) -> Response:
        project = self._project(request, caller, "list")
        self._hosted(project)
        return JSONResponse(_status_document(project, self.catalog.statuses.get(project)))

    async def set_status(self, request: Request, caller: Caller) -> Response:
        project = self._project(request, caller, "list")
        self._hosted(project)  # an unknown project is a 404 before anyone's rights
        project = self._project(request, caller, "manage")
        data = await _json_object(request, STATUS_FIELDS)
        if not isinstance(data.get("status"), str):  # absent, null or another type
            raise _refuse(400, "'status' must be one of: active, archived, quarantined, deprecated")
        status, reason = _string(data, "status"), _string(data, "reason")
        changed = await self._run(
            "changing the status failed",
            lambda: self.catalog.set_status(project, status, reason, actor=caller.actor),
        )
        log.warning("%s set the status of %s to %s", caller.user, project, changed.status)
        return JSONResponse(_status_document(project, changed))

    def _hosted(self, project: str) -> None:
        if project not in self.catalog.index.projects and self.catalog.statuses.get(project).active:
            raise _refuse(404, f"Not Found: no project {project!r}")

    def _ownership(self) -> Owners:
        owners = self.access.owners
        if owners is None:
            raise _refuse(404, "ownership is off (--owners)")
        return owners

    def _project(self, request: Request, caller: Caller, operation: str) -> str:
        """The project of the path (normalized) when *caller* may do *operation* to it; a
        project they may not see answers exactly like one that does not exist."""
        name = request.path_params["project"]
        hidden = _refuse(404, f"Not Found: no project {name!r}")
        if not is_valid_project_name(name):
            raise hidden
        project = normalize(name)
        access = self.access
        if access.may(caller.principal, operation, project):
            return project
        if not access.may(caller.principal, "list", project):
            raise hidden
        if operation == "manage":
            raise _refuse(403, access.why_not(caller.principal, operation, project))
        raise _refuse(
            403,
            f"Forbidden: {caller.user!r} may not see the owners of {project!r}"
            " (its owners and maintainers may)",
        )


def _status_document(project: str, status: ProjectStatus) -> dict[str, Any]:
    """The simple API's `project-status` object (PEP 792), and who set it when."""
    return {
        "project": project,
        "project-status": status.marker(),
        "set_by": status.by,
        "set_at": status.time or None,
    }


def _keep_an_owner(owners: Owners, project: str, user: str, role: Role | None) -> None:
    """Refuse to take the last owner's role away (nobody but an admin could manage it then)."""
    grants = owners.grants(project)
    current = grants.get(user)
    if current is None or current.role != Role.OWNER or role == Role.OWNER:
        return
    if not any(g.role == Role.OWNER for u, g in grants.items() if u != user):
        raise _refuse(409, f"{user!r} is the last owner of {project!r}: make another owner first")


# ---------------------------------------------------------------------- the request


def _check_origin(request: Request) -> None:
    site = request.headers.get("sec-fetch-site", "").strip().lower()
    if site in _BROWSER_CROSS_SITE:
        raise _refuse(403, "Forbidden: a request from another site")


def _check_content_type(request: Request) -> None:
    if request.method not in ("POST", "DELETE"):
        return
    content_type = request.headers.get("content-type")
    if content_type is None and request.method == "DELETE":
        return
    media_type = (content_type or "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        raise _refuse(400, "send a JSON body (Content-Type: application/json)")


async def _json_object(request: Request, fields: tuple[str, ...]) -> dict[str, Any]:
    declared = request.headers.get("content-length", "")
    too_large = _refuse(413, f"the request body is larger than {MAX_BODY} bytes")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise too_large
    data = load_json(bytes(body) or b"{}", "the request body", max_bytes=MAX_BODY)
    if not isinstance(data, dict):
        raise _refuse(400, "the request body must be a JSON object")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise _refuse(400, f"unknown field {unknown[0]!r}: expected {', '.join(fields)}")
    return data


def _string(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _refuse(400, f"{key!r} must be a string")
    return value


def _strings(data: dict[str, Any], key: str) -> list[str]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _refuse(400, f"{key!r} must be a list of strings")
    return value


def _expiry(value: object) -> float | None:
    try:
        return expiry_time(value)
    except ValueError as error:
        raise _refuse(400, str(error)) from None


def expiry_time(value: object) -> float | None:
    """`expires`: a duration ("90d"), seconds (a number) or an ISO 8601 time -> a Unix time
    (None: never); ValueError with one line."""
    now = time.time()
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("'expires' must be a duration such as \"90d\", seconds, or a time")
    if isinstance(value, int | float):
        seconds = float(value)
        if not math.isfinite(seconds) or seconds <= 0:
            raise ValueError("the expiry must be in the future")
        if seconds > MAX_DURATION:
            raise ValueError(f"'expires' is more than {MAX_DURATION // 86400} days away")
        return now + seconds
    try:
        return now + parse_duration(value)
    except ValueError as error:
        problem = _one_line(str(error))
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(problem) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = moment.timestamp()
    if seconds <= now:
        raise ValueError("the expiry must be in the future")
    if seconds - now > MAX_DURATION:
        raise ValueError(f"'expires' is more than {MAX_DURATION // 86400} days away")
    return seconds


def _one_line(text: str) -> str:
    return " ".join(text.split())
