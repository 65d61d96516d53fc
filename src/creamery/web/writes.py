"""HTTP endpoints that change the index: the legacy upload API and the yank API.

The guard has already checked the `update` action; the user is in the scope. The writes
themselves are the catalog's (`catalog/service.py`), which records them.
"""

from __future__ import annotations

import logging

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from creamery.catalog.service import ReleaseNotFound
from creamery.core.errors import ClientError
from creamery.core.headers import printable_value
from creamery.core.names import is_valid_project_name, normalize
from creamery.core.untrusted import load_json
from creamery.http.errors import RETRY_AFTER, outage_reason
from creamery.http.form import FormError, ReceivedForm, read_multipart, read_urlencoded
from creamery.http.status_line import reason_phrase
from creamery.storage import StoreUnavailable
from creamery.web import docs_upload, upload
from creamery.web.guard import CHALLENGE, actor_of, principal_of
from creamery.web.pages import base_url
from creamery.web.state import AppState

CHALLENGE_HEADERS = [(k.decode(), v.decode()) for k, v in CHALLENGE]

MAX_YANK_REASON = 1000
WARNING_HEADER = "X-Creamery-Warning"
MAX_WARNING_HEADER = 1024  # the body has the whole text

log = logging.getLogger("creamery.writes")

_MAX_SMALL_BODY = 1 << 20  # url-encoded forms and JSON requests


async def legacy_api(app: AppState, request: Request) -> Response:
    """`POST /` (and `/legacy/`): file_upload, remove_pkg, submit, verify, doc_upload."""
    form: ReceivedForm | None = None
    try:
        form = await _read_form(app, request)
        outcome = await _dispatch(app, form, request)
    except ClientError as error:
        log.info("upload rejected (%d): %s", error.status, error.reason)
        _count_upload(app, "rejected")
        reason_phrase(request.scope, error.reason)  # twine shows the status line's reason
        headers = dict(CHALLENGE_HEADERS) if error.status == 401 else None
        return PlainTextResponse(error.reason + "\n", status_code=error.status, headers=headers)
    except StoreUnavailable as error:  # nothing was published: the client may retry
        return _unavailable(app, _failed(form), error)
    except OSError as error:  # a full scratch disk, a store refusing a write: not the client's
        what = _failed(form)
        log.error("%s: %s", what, error)
        text = f"{what.capitalize()}: {error.strerror or error}\n"
        return PlainTextResponse(text, status_code=507)
    finally:
        if form is not None:
            form.discard()
    if form.value(":action") == "file_upload":
        _count_upload(app, "accepted")
    return _outcome_response(outcome)


_FAILED = {"remove_pkg": "removal failed", "doc_upload": "documentation upload failed"}


def _failed(form: ReceivedForm | None) -> str:
    """What failed, as the answer names it: the form's action (an upload, unless it says)."""
    action = form.value(":action") if form is not None else None
    return _FAILED.get(action or "", "upload failed")


def _outcome_response(outcome: upload.Outcome) -> Response:
    """The answer to an accepted write; its warnings in the body (twine --verbose shows it)
    and in `X-Creamery-Warning` headers, one each."""
    body = "".join(f"\nwarning: {warning}" for warning in outcome.warnings)
    response = PlainTextResponse(outcome.message + body + "\n", status_code=outcome.status)
    for warning in outcome.warnings:
        response.headers.append(WARNING_HEADER, warning_header_value(warning))
    return response


def warning_header_value(warning: str) -> str:
    """*warning* as a legal header value: printable ASCII (the rest escaped, CR and LF too, so
    text from an upload can never start a header of its own), at most MAX_WARNING_HEADER."""
    return printable_value(warning, MAX_WARNING_HEADER)


def _unavailable(app: AppState, what: str, error: OSError, *, json: bool = False) -> Response:
    """The store did not answer: 503 with Retry-After and the reason, naming the store. The
    write was undone (or never reached its commit point): nothing to clean up, retry later."""
    store = ", ".join(root.url for root in app.config.object_roots)
    reason = f"{what}: {outage_reason(error, store)}"
    log.warning("%s", reason)
    headers = {"Retry-After": RETRY_AFTER[1].decode()}
    if json:
        return JSONResponse({"message": reason}, status_code=503, headers=headers)
    return PlainTextResponse(reason + "\n", status_code=503, headers=headers)


def _count_upload(app: AppState, outcome: str) -> None:
    if app.observer.metrics is not None:
        app.observer.metrics.uploads.labels(outcome).inc()


async def _read_form(app: AppState, request: Request) -> ReceivedForm:
    content_type = request.headers.get("content-type", "")
    limit = app.config.max_upload_size
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise FormError(413, f"upload larger than the limit of {limit} bytes")
    if content_type.startswith("multipart/form-data"):
        spool = app.catalog.new_spool
        return await read_multipart(content_type, request.receive, spool, limit)
    if content_type.startswith("application/x-www-form-urlencoded"):
        return read_urlencoded(await _small_body(request))
    raise FormError(400, "expected a multipart/form-data or url-encoded form")


async def _small_body(request: Request) -> bytes:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_SMALL_BODY:
            raise FormError(413, "request body too large")
    return body


async def _dispatch(app: AppState, form: ReceivedForm, request: Request) -> upload.Outcome:
    action = form.value(":action")
    if action is None:
        raise FormError(400, "Missing ':action' field!")
    principal = principal_of(request.scope)
    actor = actor_of(request.scope)
    if action == "file_upload":
        agent = request.headers.get("user-agent", "")
        return await anyio.to_thread.run_sync(
            upload.accept_file, app, form, agent, principal, actor
        )
    if action == "remove_pkg":
        return await anyio.to_thread.run_sync(upload.remove_release, app, form, principal, actor)
    if action in ("submit", "verify"):
        return upload.Outcome(200, "OK")
    if action == "doc_upload":
        return await anyio.to_thread.run_sync(docs_upload.accept_form, app, form, principal, actor)
    raise FormError(400, f"Unsupported ':action' field: {action}")


async def docs_api(app: AppState, request: Request, project: str, version: str) -> Response:
    """`POST /docs/<project>/<version>/` with the zip as the body or a `content` field: 201
    with the documentation's URL."""
    principal = principal_of(request.scope)
    actor = actor_of(request.scope)
    spool = None
    try:
        if not is_valid_project_name(project):
            raise FormError(400, f"invalid project name {project[:100]!r}")
        name = normalize(project)
        await anyio.to_thread.run_sync(
            lambda: upload.check_allowed(app, principal, "upload", name, actor, version=version)
        )
        upload.check_open(app, name)  # PEP 792: an archived or quarantined project takes none
        canonical = docs_upload.version_of(app, name, version)
        docs_upload.check_name_fits(app, name, canonical)  # before the body is read
        spool = await docs_upload.receive_body(app, request)
        await anyio.to_thread.run_sync(
            docs_upload.publish, app, name, canonical, spool, principal, actor
        )
    except ClientError as error:
        log.info("documentation upload rejected (%d): %s", error.status, error.reason)
        headers = dict(CHALLENGE_HEADERS) if error.status == 401 else None
        return PlainTextResponse(error.reason + "\n", status_code=error.status, headers=headers)
    except StoreUnavailable as error:
        return _unavailable(app, "documentation upload failed", error)
    except OSError as error:
        log.error("documentation upload failed: %s", error)
        return PlainTextResponse(f"Upload failed: {error.strerror}\n", status_code=507)
    finally:
        if spool is not None:
            spool.unlink(missing_ok=True)
    url = f"{base_url(request)}docs/{name}/{canonical}/"
    return PlainTextResponse(
        f"Documentation of {name} {canonical} uploaded: {url}\n",
        status_code=201,
        headers={"location": url},
    )


async def yank_api(app: AppState, request: Request, *, yanked: bool) -> Response:
    """`POST /-/yank` and `/-/unyank` with JSON {project, version, filename?, reason?}."""
    try:
        body = await _small_body(request)
        data = _yank_request(body, request.headers.get("content-type", ""))
    except ClientError as error:
        return JSONResponse({"message": error.reason}, status_code=error.status)
    project, version = data["project"], data["version"]
    principal = principal_of(request.scope)
    normalized = normalize(project)
    try:
        await anyio.to_thread.run_sync(
            lambda: upload.check_allowed(
                app,
                principal,
                "yank",
                normalized,
                actor_of(request.scope),
                version=version,
            )
        )
    except FormError as denial:
        headers = dict(CHALLENGE_HEADERS) if denial.status == 401 else None
        return JSONResponse({"message": denial.reason}, status_code=denial.status, headers=headers)
    try:
        changed = await anyio.to_thread.run_sync(
            lambda: app.catalog.set_yanked(
                project,
                version,
                yanked=yanked,
                reason=data.get("reason") or "",
                filename=data.get("filename") or None,
                actor=actor_of(request.scope),
            )
        )
    except ReleaseNotFound as error:
        return JSONResponse({"message": str(error)}, status_code=404)
    except StoreUnavailable as error:
        return _unavailable(app, "yank failed", error, json=True)
    except OSError as error:  # the state directory is full or read-only: the server's fault
        log.error("yank failed: %s", error)
        return JSONResponse({"message": f"yank failed: {error.strerror}"}, status_code=507)
    verb = "yanked" if yanked else "un-yanked"
    log.warning("%s %s %s by %s", verb, project, version, principal)
    files = sorted(set(changed))
    return JSONResponse({"message": f"{verb} {project} {version}", "files": files})


def _yank_request(body: bytes, content_type: str) -> dict[str, str]:
    if "json" in content_type:
        data = load_json(body or b"{}", "the request body")
    else:
        form = read_urlencoded(body)
        data = {k: v[0] for k, v in form.fields.items() if v}
    if not isinstance(data, dict):
        raise FormError(400, "expected a JSON object")
    for key in ("project", "version"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise FormError(400, f"missing {key!r}")
    for key in ("reason", "filename"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise FormError(400, f"{key!r} must be a string")
    if len(data.get("reason") or "") > MAX_YANK_REASON:
        # The reason is repeated in every page of the project: keep it a sentence.
        raise FormError(400, f"'reason' is longer than {MAX_YANK_REASON} characters")
    return {k: v.strip() for k, v in data.items() if isinstance(v, str)}
