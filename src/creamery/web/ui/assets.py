"""The UI's stylesheet, script and icons: bundled with creamery (no CDN), served under a name
that carries their digest (`creamery.3f2a9c1e.css`), so browsers may keep them for a year and
a new release can't be mixed with an old one's assets."""

from __future__ import annotations

import functools
import hashlib
import mimetypes
from dataclasses import dataclass
from importlib import resources

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from creamery.http.routing import READ, Action, Route, endpoint
from creamery.web.pages import body_response
from creamery.web.state import AppState

IMMUTABLE = "public, max-age=31536000, immutable"
_FINGERPRINT = 10  # hex digits of the sha256 in the served name


@dataclass(frozen=True, slots=True)
class Asset:
    name: str  # as bundled: creamery.css
    served: str  # with its fingerprint: creamery.3f2a9c1e0b.css
    body: bytes
    media_type: str


@functools.cache
def bundled() -> dict[str, Asset]:
    """Every file of `creamery/static`, by its served name (read once per process)."""
    found: dict[str, Asset] = {}
    for item in resources.files("creamery").joinpath("static").iterdir():
        if not item.is_file() or item.name.startswith("."):
            continue
        body = item.read_bytes()
        stem, dot, suffix = item.name.rpartition(".")
        digest = hashlib.sha256(body).hexdigest()[:_FINGERPRINT]
        served = f"{stem}.{digest}.{suffix}" if dot else f"{item.name}.{digest}"
        media_type = mimetypes.guess_type(item.name)[0] or "application/octet-stream"
        if media_type.startswith("text/") or media_type.endswith(("javascript", "+xml")):
            media_type += "; charset=utf-8"
        found[served] = Asset(item.name, served, body, media_type)
    return found


@functools.cache
def _by_name() -> dict[str, str]:
    return {asset.name: served for served, asset in bundled().items()}


def asset_path(name: str) -> str:
    """The path below the index root a page links *name* with: `-/static/<served name>`."""
    return "-/static/" + _by_name()[name]


def routes(state: AppState) -> list[Route]:
    async def serve(request: Request) -> Response:
        found = bundled().get(request.path_params["name"])
        if found is None:  # an old release's fingerprint, or a guess
            return PlainTextResponse("Not Found: no such asset", status_code=404)
        headers = {"cache-control": IMMUTABLE, "x-content-type-options": "nosniff"}
        return body_response(request, found.body, found.media_type, headers=headers)

    return [Route(READ, "/-/static/{name}", action=Action.PUBLIC, handler=endpoint(serve))]
