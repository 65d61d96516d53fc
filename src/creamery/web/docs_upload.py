"""Documentation uploads: the legacy form's `:action=doc_upload` (setuptools' `upload_docs`,
`name` and a `content` zip, `version` when the tool sent one) and a plain `POST` of a zip to
`/docs/<project>/<version>/` for tools that no longer send that action.

Both end here: the project and version are normalized (a missing version is the project's
latest release), the uploader needs `upload` on the project (checked before the zip is
read), the zip is checked whole (`catalog/docs.py`), and the catalog stores it (audited,
announced in the change feed). The spool goes in every case: stored, or deleted.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from starlette.requests import Request

from creamery.catalog.access import Actor, Principal
from creamery.catalog.docs import BadDocs, ZipLimits, canonical_version, check_zip
from creamery.catalog.service import NameTooLong
from creamery.core.names import is_valid_project_name, normalize
from creamery.http.form import FormError, ReceivedForm, read_multipart
from creamery.web import json_api, upload
from creamery.web.state import AppState

log = logging.getLogger("creamery.upload")

ZIP_TYPES = ("application/zip", "application/x-zip-compressed", "application/octet-stream")


def project_of(name: str | None) -> str:
    if name is None or not name.strip():
        raise FormError(400, "doc_upload needs a 'name' field (the project)")
    if not is_valid_project_name(name.strip()):
        raise FormError(400, f"invalid project name {name[:100]!r}")
    return normalize(name.strip())


def version_of(app: AppState, project: str, version: str | None) -> str:
    """The version the documentation is for: the one sent (PEP 440 normalized), else the
    project's latest release (setuptools' `upload_docs` sent no version)."""
    if version is not None and version.strip():
        canonical = canonical_version(version)
        if canonical is None:
            raise FormError(400, f"invalid version {version[:100]!r} (see PEP 440)")
        return canonical
    found = json_api.releases(app.catalog.index, project)
    latest = json_api.latest_release(app.catalog.index, found) if found else None
    canonical = None if latest is None else canonical_version(latest.version)
    if canonical is None:
        raise FormError(
            400,
            f"doc_upload needs a version: {project!r} has no release to put the documentation"
            " under (send a 'version' field)",
        )
    return canonical


def accept_form(
    app: AppState, form: ReceivedForm, principal: Principal, actor: Actor | None
) -> upload.Outcome:
    """`:action=doc_upload` (runs in a worker thread)."""
    project = project_of(form.value("name"))
    upload.check_allowed(app, principal, "upload", project, actor)
    upload.check_open(app, project)  # PEP 792: an archived or quarantined project takes none
    version = version_of(app, project, form.value("version"))
    content = form.files.get("content")
    if content is None:
        raise FormError(400, "doc_upload needs a 'content' zip file")
    publish(app, project, version, content.path, principal, actor)
    return upload.Outcome(200, f"OK: documentation of {project} {version} uploaded")


def check_name_fits(app: AppState, project: str, version: str) -> None:
    """FormError 400 when the project or version is too long a name for the store."""
    try:
        app.catalog.check_docs_name_fits(project, version)
    except NameTooLong as error:
        raise FormError(400, str(error)) from None


def publish(
    app: AppState,
    project: str,
    version: str,
    path: Path,
    principal: Principal,
    actor: Actor | None,
) -> None:
    """Check the zip at *path* and store it (the spool is consumed or left to its owner to
    delete); FormError 400 for a zip creamery won't serve."""
    try:
        check_zip(path, ZipLimits(max_size=app.config.max_upload_size))
    except BadDocs as error:
        raise FormError(400, f"bad documentation zip: {error}") from None
    check_name_fits(app, project, version)
    app.catalog.publish_docs(project, version, path, actor=actor)
    log.warning("documentation of %s %s uploaded by %s", project, version, principal)


async def receive_body(app: AppState, request: Request) -> Path:
    """A plain POST's zip, streamed to a spool file (the caller deletes it): the raw body
    (application/zip or octet-stream) or the `content` field of a multipart form. Within
    --max-upload-size (413), like every upload; a body that stalls ends with the app's 408."""
    content_type = request.headers.get("content-type", "")
    media_type = content_type.partition(";")[0].strip().lower()
    limit = app.config.max_upload_size
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise FormError(413, f"upload larger than the limit of {limit} bytes")
    if media_type == "multipart/form-data":
        form = await read_multipart(content_type, request.receive, app.catalog.new_spool, limit)
        content = form.files.pop("content", None)
        form.discard()
        if content is None:
            raise FormError(400, "the form needs a 'content' zip file")
        return content.path
    if media_type not in ZIP_TYPES:
        raise FormError(
            415, "send the zip as the body (Content-Type: application/zip) or a 'content' field"
        )
    fd, path = app.catalog.new_spool()
    received = 0
    try:
        try:
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit:
                    raise FormError(413, f"upload larger than the limit of {limit} bytes")
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if received == 0:
        path.unlink(missing_ok=True)
        raise FormError(400, "the request has no body: send the documentation zip")
    return path
