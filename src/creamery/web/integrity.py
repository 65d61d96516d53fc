"""PyPI's Integrity API: `GET /integrity/<project>/<version>/<filename>/provenance`, the PEP 740
provenance object of one file, which the simple pages link to (`data-provenance`, JSON
`provenance`).

As PyPI answers it (warehouse `api/integrity.py`): `application/vnd.pypi.integrity.v1+json`,
or `application/json` when only that is accepted, 406 otherwise; the project name is looked up
normalized and the version by PEP 440 equality; a 404 is a JSON `{"message": ...}` of one line.
Guarded like the file itself (`download`); a quarantined project's (PEP 792) is not served,
as its files are not. A mirrored file's provenance is the upstream's, fetched once and cached
(`mirror/provenance.py`).
"""

from __future__ import annotations

import json

import anyio
from starlette.requests import Request
from starlette.responses import Response

from creamery.catalog import releases
from creamery.catalog.index import Distribution
from creamery.catalog.provenance import provenance_of
from creamery.core.names import normalize, parse_filename
from creamery.http.routing import READ, Action, Route, endpoint
from creamery.web.guard import principal_of, refusal
from creamery.web.pages import body_response
from creamery.web.state import AppState

PATH = "/integrity/{project}/{version}/{filename}/provenance"
INTEGRITY_V1 = "application/vnd.pypi.integrity.v1+json"
JSON = "application/json"
_HEADERS = {"vary": "Accept", "access-control-allow-origin": "*"}  # PyPI allows CORS reads


def routes(state: AppState) -> list[Route]:
    integrity = Integrity(state)
    return [Route(READ, PATH, action=Action.DOWNLOAD, handler=endpoint(integrity.provenance))]


class Integrity:
    def __init__(self, state: AppState) -> None:
        self.state = state
        self.catalog = state.catalog

    async def provenance(self, request: Request) -> Response:
        media_type = negotiate(request.headers.get("accept"))
        if media_type is None:
            return _message(request, 406, "Request not acceptable")
        params = request.path_params
        project, version, filename = (
            normalize(params["project"]),
            params["version"],
            params["filename"],
        )
        index = self.catalog.index
        access = self.catalog.access
        principal = principal_of(request.scope)
        mirror = self.state.mirror
        shadowed = mirror is not None and mirror.upstream_only(project)  # upstream's alone
        visible = (
            project in index.projects
            and not shadowed
            and (not access.narrows(principal) or access.may(principal, "list", project))
        )
        if visible:
            if access.narrows(principal) and not access.may(principal, "download", project):
                denial = refusal(access, principal, "download", project)
                headers = {k.decode(): v.decode() for k, v in denial.headers}
                return Response(denial.reason, denial.status, headers, media_type="text/plain")
            reason = self.catalog.statuses.served_nothing(project)  # PEP 792
            if reason is not None:
                return _message(request, 404, reason)
            dist = _find(index.distributions(project), version, filename)
            if dist is not None:
                return await self._local(request, dist, media_type)
            if mirror is None or not mirror.handles(project):  # not merged with upstream
                return _message(request, 404, f"{filename} is not a file of {project} {version}")
        elif mirror is None:
            return _message(request, 404, f"{project} is not a project of this index")
        return await self._mirrored(request, project, version, filename, media_type)

    async def _local(self, request: Request, dist: Distribution, media_type: str) -> Response:
        catalog = self.catalog
        # In a thread: a digest not known yet is computed from the file.
        data = await anyio.to_thread.run_sync(provenance_of, catalog.index, catalog.facts, dist)
        if data is None:
            return _message(request, 404, f"No provenance available for {dist.filename}")
        return body_response(request, data, media_type, headers=_HEADERS)

    async def _mirrored(
        self, request: Request, project: str, version: str, filename: str, media_type: str
    ) -> Response:
        mirror = self.state.mirror
        assert mirror is not None
        parsed = parse_filename(filename)
        if parsed is None or not releases.same_version(parsed.version, version):
            return _message(request, 404, f"{filename} is not a file of {project} {version}")
        found = await mirror.provenance_of(request.scope, project, filename)
        if isinstance(found, bytes):
            return body_response(request, found, media_type, headers=_HEADERS)
        if found.status == 404:  # none upstream
            return _message(request, 404, found.text)
        return Response(found.text, found.status, media_type="text/plain")  # upstream failed


def negotiate(accept: str | None) -> str | None:
    """PyPI's choice: the integrity type first, JSON next; None when neither is accepted."""
    if not accept:
        return INTEGRITY_V1
    offered: dict[str, float] = {}
    for part in accept.split(","):
        media, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        offered[media.strip().lower()] = quality
    best: tuple[float, str] | None = None
    for media_type in (INTEGRITY_V1, JSON):
        major = media_type.partition("/")[0]
        quality = offered.get(media_type, offered.get(f"{major}/*", offered.get("*/*", 0.0)))
        if quality > 0 and (best is None or quality > best[0]):
            best = (quality, media_type)
    return None if best is None else best[1]


def _find(dists: list[Distribution], version: str, filename: str) -> Distribution | None:
    for dist in dists:
        if dist.filename == filename and releases.same_version(dist.version, version):
            return dist
    return None


def _message(_request: Request, status: int, message: str) -> Response:
    """PyPI's error shape; no ETag, so a hidden project's 404 is an unknown one's."""
    body = json.dumps({"message": message}).encode()
    return Response(body, status, {"vary": "Accept"}, media_type=JSON)
