"""PyPI's JSON API (`/pypi/<project>/json`, `/pypi/<project>/<version>/json`) and pypiserver's
`/<project>/json` (the shape MicroPython's upip reads).

Documents carry absolute URLs, so they are cached per base URL and project generation; building
one reads files (hashes, core metadata) and runs in a thread.

PEP 792's status is in the PyPI documents as a top-level `project-status` object, the simple
API's (PyPI's JSON API has none: it answers 404 for a quarantined project). A quarantined
project's documents offer no file: `urls` and every release's list are empty.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
from packaging.metadata import RawMetadata
from starlette.requests import Request
from starlette.responses import Response

from creamery.catalog.index import Distribution, Index
from creamery.catalog.service import Catalog
from creamery.catalog.versions import Release as Release
from creamery.catalog.versions import find_release as find_release
from creamery.catalog.versions import is_yanked as is_yanked
from creamery.catalog.versions import latest_release as latest_release
from creamery.catalog.versions import parse_metadata as parse_metadata
from creamery.catalog.versions import release_metadata as release_metadata
from creamery.catalog.versions import releases as releases
from creamery.core.hashing import pypi_hashers
from creamery.core.names import SIGNATURE, normalize
from creamery.http.routing import READ, Action, Route, endpoint
from creamery.render.simple_api import entry_for, iso_time
from creamery.storage import Reader, Storage, StoredFile, chunks, is_version
from creamery.web.guard import principal_of
from creamery.web.pages import BASED, BoundedCache, base_url, body_response, relative_redirect
from creamery.web.state import AppState

JSON = "application/json"
NOT_FOUND = json.dumps({"message": "Not Found"}).encode()
_CHUNK = 1 << 20
_PACKAGETYPES = {"wheel": "bdist_wheel", "sdist": "sdist", "egg": "bdist_egg"}
_BDIST_TYPES = {
    ".exe": "bdist_wininst",
    ".msi": "bdist_msi",
    ".rpm": "bdist_rpm",
    ".dmg": "bdist_dmg",
}
_PY_VERSION = re.compile(r"-py(\d+(?:\.\d+)?)", re.IGNORECASE)

Document = dict[str, Any]  # a JSON document: PyPI's shape, nested values of every JSON type


def routes(state: AppState) -> list[Route]:
    mirror = state.mirror
    api = JsonApi(state.catalog, mirror.upstream_only if mirror is not None else None)
    documents = [
        ("/{project}/json", api.legacy),
        ("/pypi/{project}/json", api.project),
        ("/pypi/{project}/{version}/json", api.release),
    ]
    return [
        Route(READ, path, action=Action.LIST, handler=endpoint(serve)) for path, serve in documents
    ]


class JsonApi:
    """*upstream_only* (with the mirror): is a name's project the upstream's alone
    (`--mirror-origin NAME=upstream-only`)? Then one hosted here is not shown: these documents
    describe hosted projects only, so it answers 404 as any name not hosted here does."""

    def __init__(
        self, catalog: Catalog, upstream_only: Callable[[str], bool] | None = None
    ) -> None:
        self.catalog = catalog
        self.upstream_only = upstream_only
        self.digests = FileDigests(catalog.storage)
        self.cache = BoundedCache(max_entries=256, max_bytes=64 << 20)
        # With a permission file, a project the principal may not see is not there.
        self.filtering = catalog.access.filters_reads()

    async def legacy(self, request: Request) -> Response:
        project = request.path_params["project"]
        if normalize(project) != project:
            return relative_redirect(f"../{normalize(project)}/json")
        return await self._serve(request, project, None, self._legacy_document)

    async def project(self, request: Request) -> Response:
        project = request.path_params["project"]
        if normalize(project) != project:
            return relative_redirect(f"../{normalize(project)}/json")
        return await self._serve(request, project, None, self._pypi_document)

    async def release(self, request: Request) -> Response:
        project, version = request.path_params["project"], request.path_params["version"]
        if normalize(project) != project:
            return relative_redirect(f"../../{normalize(project)}/{quote(version)}/json")
        return await self._serve(request, project, version, self._pypi_document)

    async def _serve(
        self,
        request: Request,
        project: str,
        version: str | None,
        build: Callable[[str, str | None, str], Document | None],
    ) -> Response:
        index = self.catalog.index
        principal = principal_of(request.scope)
        access = self.catalog.access
        if (
            project not in index.projects
            or (self.upstream_only is not None and self.upstream_only(project))
            or (
                (self.filtering or principal.token is not None)
                and not access.may(principal, "list", project)
            )
        ):
            return body_response(request, NOT_FOUND, JSON, 404)
        base = base_url(request)
        key = (build.__name__, project, version, base, index.project_generation(project))
        body = self.cache.get(key)
        if body is None:
            document = await anyio.to_thread.run_sync(build, project, version, base)
            if document is None:
                return body_response(request, NOT_FOUND, JSON, 404)
            body = json.dumps(document).encode()
            self.cache.put(key, body)
        return body_response(request, body, JSON, headers=BASED)

    # ------------------------------------------------------------ documents (run in a thread)

    def _legacy_document(self, project: str, _version: str | None, base: str) -> Document | None:
        """pypiserver's shape (`info.version`, `releases.<v>[].url`) with a few PyPI fields."""
        index = self.catalog.index
        found = releases(index, project)
        if not found:
            return None
        offered = not self.catalog.statuses.get(project).quarantined
        return {
            "info": {"name": project, "version": found[-1].version},
            "releases": {
                r.version: [file_basics(index, d, base) for d in r.files if offered] for r in found
            },
        }

    def _pypi_document(self, project: str, version: str | None, base: str) -> Document | None:
        index = self.catalog.index
        found = releases(index, project)
        if not found:
            return None
        chosen = latest_release(index, found) if version is None else find_release(found, version)
        if chosen is None:
            return None
        status = self.catalog.statuses.get(project)
        document: Document = {
            "info": self._info(project, chosen, base),
            "last_serial": index.project_generation(project),
            "project-status": status.marker(),
        }
        offered = not status.quarantined
        if version is None:
            document["releases"] = {r.version: self._files(r, base, offered) for r in found}
        document["urls"] = self._files(chosen, base, offered)
        document["vulnerabilities"] = []
        return document

    def _files(self, release: Release, base: str, offered: bool = True) -> list[Document]:
        if not offered:
            return []  # PEP 792: a quarantined project's files are not offered
        files = []
        for dist in release.files:
            try:
                files.append(self._file(dist, base))
            except OSError:  # deleted while we looked: the next change event drops it
                continue
        return files

    def _file(self, dist: Distribution, base: str) -> Document:
        index, facts = self.catalog.index, self.catalog.facts
        entry = entry_for(index, facts, dist, None)
        digests = facts.pypi_digests(dist.stored) or self.digests.get(dist.stored)
        return {
            **file_basics(index, dist, base),
            "comment_text": "",
            "digests": digests,
            "downloads": -1,
            "md5_digest": digests["md5"],
            "requires_python": entry.requires_python,
            "yanked": entry.yanked is not None,
            "yanked_reason": entry.yanked or None,
        }

    def _info(self, project: str, release: Release, base: str) -> Document:
        index = self.catalog.index
        meta = release_metadata(self.catalog.facts, release)
        name = meta.get("name") or release.files[0].parsed.raw_name
        reasons = [index.yank_reason(d) for d in release.files]
        yanked = all(r is not None for r in reasons)
        info = {
            **metadata_fields(meta),
            "name": name,
            "version": release.version,
            "bugtrack_url": None,
            "docs_url": None,
            "downloads": {"last_day": -1, "last_month": -1, "last_week": -1},
            "package_url": f"{base}simple/{project}/",
            "project_url": f"{base}simple/{project}/",
            "release_url": f"{base}pypi/{project}/{quote(release.version)}/json",
            "yanked": yanked,
            "yanked_reason": next((r for r in reasons if r), None) if yanked else None,
        }
        return dict(sorted(info.items()))


# ---------------------------------------------------------------- files and metadata


def file_basics(index: Index, dist: Distribution, base: str) -> Document:
    """What a file entry says without reading the file."""
    uploaded = iso_time(dist.stored.mtime_ns)
    return {
        "filename": dist.filename,
        "url": f"{base}packages/{quote(dist.relpath)}",
        "size": dist.stored.size,
        "packagetype": packagetype(dist),
        "python_version": python_version(dist),
        "has_sig": index.sidecar(dist, SIGNATURE) is not None,
        "upload_time": uploaded[:19],
        "upload_time_iso_8601": uploaded,
    }


def packagetype(dist: Distribution) -> str:
    kind = dist.parsed.kind
    if kind in _PACKAGETYPES:
        return _PACKAGETYPES[kind]
    return _BDIST_TYPES.get(Path(dist.filename).suffix.lower(), "bdist_dumb")


def python_version(dist: Distribution) -> str:
    """The wheel's python tag, "source" for sdists, the `-pyX.Y` of older binaries."""
    if dist.parsed.kind == "wheel":
        return dist.filename[:-4].split("-")[-3]
    if dist.parsed.kind == "sdist":
        return "source"
    match = _PY_VERSION.search(dist.filename)
    return match.group(1) if match else "any"


def metadata_fields(meta: RawMetadata) -> Document:
    """The `info` fields PyPI takes from core metadata (None when absent, like PyPI)."""
    keywords = meta.get("keywords")
    platforms = meta.get("platforms")
    return {
        "author": meta.get("author"),
        "author_email": meta.get("author_email"),
        "classifiers": meta.get("classifiers", []),
        "description": meta.get("description", ""),
        "description_content_type": meta.get("description_content_type"),
        "download_url": meta.get("download_url"),
        "dynamic": meta.get("dynamic"),
        "home_page": meta.get("home_page"),
        "keywords": ",".join(keywords) if keywords else None,
        "license": meta.get("license"),
        "license_expression": meta.get("license_expression"),
        "license_files": meta.get("license_files"),
        "maintainer": meta.get("maintainer"),
        "maintainer_email": meta.get("maintainer_email"),
        "platform": ", ".join(platforms) if platforms else None,
        "project_urls": meta.get("project_urls"),
        "provides_extra": meta.get("provides_extra"),
        "requires_dist": meta.get("requires_dist"),
        "requires_python": meta.get("requires_python"),
        "summary": meta.get("summary"),
    }


class FileDigests:
    """sha256, md5 and blake2b-256 (PyPI's `digests`) of each file version, hashed in one pass.

    Kept in memory: the facts cache's hashlib names can't express blake2b with a 256-bit digest.
    """

    def __init__(self, storage: Storage, limit: int = 200_000) -> None:
        self.storage = storage
        self._known: dict[StoredFile, dict[str, str]] = {}
        self._limit = limit
        self._lock = threading.Lock()

    def get(self, stored: StoredFile) -> dict[str, str]:
        with self._lock:
            found = self._known.get(stored)
        if found is not None:
            return found
        with self.storage.open(stored) as reader:
            digests = hash_file(reader)
            if not is_version(reader, stored):
                return digests  # replaced since the index saw it: not for *stored*'s key
        with self._lock:
            if len(self._known) >= self._limit:
                self._known.clear()
            self._known[stored] = digests
        return digests


def hash_file(reader: Reader) -> dict[str, str]:
    hashers = pypi_hashers()
    for chunk in chunks(reader, _CHUNK):
        for hasher in hashers.values():
            hasher.update(chunk)
    return {name: hasher.hexdigest() for name, hasher in hashers.items()}
