"""Rendering of the simple repository API: PEP 503 HTML and PEP 691 JSON, with PEPs 592, 629,
658/714, 700, 740 and 792. Pages are rendered once per change and served as ready bytes with a
strong ETag.

File URLs are relative (`../../packages/<relpath>`), so one rendering serves every host name,
scheme and path prefix a reverse proxy may put in front. PEP 740 wants the provenance URL fully
qualified: it is rendered as `BASE` (a placeholder for this server's base URL) followed by
PyPI's Integrity API path, such a page is marked `based`, and `http/absolute.py` puts in the
base each request sees (once per base, kept): pages without provenance cost nothing more.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from urllib.parse import quote

from creamery.catalog.facts import FactsCache
from creamery.catalog.index import Distribution, Index
from creamery.catalog.provenance import offers_provenance
from creamery.catalog.status import ACTIVE, ProjectStatus
from creamery.core.headers import NOSNIFF
from creamery.core.names import SIGNATURE, version_sort_key
from creamery.render.negotiation import Format

# PEP 629 / 691: 1.1 adds PEP 700 (versions, size, upload-time), 1.2 PEP 708 (rejected since:
# `mirror/render.py` offers it only as an opt-in extension), 1.3 PEP 740 (provenance), 1.4
# PEP 792 (project status).
API_VERSION = "1.4"
# Stands for this server's base URL ("https://host/prefix/") in rendered pages, until served.
# Random: no file name, yank reason or upstream text can contain it by chance or on purpose.
BASE = f"creamery-base-{secrets.token_hex(12)}/"
_BASE_BYTES = BASE.encode()


@dataclass(frozen=True, slots=True)
class Page:
    body: bytes
    etag: str
    headers: list[tuple[bytes, bytes]]  # ready ASGI headers for a 200
    based: bool = False  # the body holds `BASE`: served through `http.absolute.Rebased`


@dataclass(frozen=True, slots=True)
class FileEntry:
    """What a simple page says of one distribution file."""

    filename: str
    version: str
    url: str  # relative to the project page
    hashes: dict[str, str]
    requires_python: str | None
    core_metadata_sha256: str | None  # PEP 658/714; None: no metadata file
    gpg_sig: bool
    yanked: str | None  # PEP 592
    size: int  # PEP 700
    upload_time: str  # PEP 700, ISO 8601 UTC
    provenance: str | None = None  # PEP 740: URL of the provenance object, from `BASE`


def strong_etag(body: bytes) -> str:
    """A strong ETag from the bytes themselves: the same on every worker and after restarts."""
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def make_page(body: bytes, fmt: Format, extra: list[tuple[bytes, bytes]] | None = None) -> Page:
    etag = strong_etag(body)
    headers = [
        (b"content-type", fmt.content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"etag", etag.encode()),
        (b"vary", b"Accept"),
        NOSNIFF,
        *(extra or []),
    ]
    return Page(body, etag, headers, based=_BASE_BYTES in body)


def integrity_url(project: str, version: str, filename: str) -> str:
    """PEP 740: PyPI's Integrity API URL of a file's provenance, from `BASE`."""
    path = "/".join(quote(part, safe="") for part in (project, version, filename))
    return f"{BASE}integrity/{path}/provenance"


def iso_time(mtime_ns: int) -> str:
    moment = datetime.fromtimestamp(mtime_ns / 1e9, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def file_entries(
    index: Index, facts: FactsCache, project: str, hash_algo: str | None
) -> list[FileEntry]:
    """Gather everything a project page shows; reads files (hashes, metadata) on first use."""
    return [entry_for(index, facts, dist, hash_algo) for dist in index.distributions(project)]


def entry_for(
    index: Index, facts: FactsCache, dist: Distribution, hash_algo: str | None
) -> FileEntry:
    hashes: dict[str, str] = {}
    if hash_algo is not None:
        digests = facts.digests(dist.stored)
        hashes = {"sha256": digests.sha256, hash_algo: digests.get(hash_algo)}
    metadata = facts.metadata(dist.stored, dist.parsed.kind)
    # PEP 658: the hash of the very METADATA served at <file>.metadata, from the same facts.
    core_sha = metadata.sha256 if dist.parsed.kind == "wheel" else None
    return FileEntry(
        filename=dist.filename,
        version=dist.version,
        url="../../packages/" + quote(dist.relpath),
        hashes=hashes,
        requires_python=metadata.requires_python,
        core_metadata_sha256=core_sha,
        gpg_sig=index.sidecar(dist, SIGNATURE) is not None,
        yanked=index.yank_reason(dist),
        provenance=(
            integrity_url(dist.project, dist.version, dist.filename)
            if offers_provenance(index, facts, dist)
            else None
        ),
        size=dist.stored.size,
        upload_time=iso_time(dist.stored.mtime_ns),
    )


# ---------------------------------------------------------------- project pages


def render_project_html(
    project: str,
    entries: list[FileEntry],
    hash_algo: str | None,
    status: ProjectStatus = ACTIVE,
) -> bytes:
    name = escape(project)
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "  <head>",
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">',
        *status_metas(status),
        f"    <title>Links for {name}</title>",
        "  </head>",
        "  <body>",
        f"    <h1>Links for {name}</h1>",
    ]
    for entry in entries:
        lines.append(f"    {_anchor(entry, hash_algo)}<br>")
    lines += ["  </body>", "</html>", ""]
    return "\n".join(lines).encode()


def status_metas(status: ProjectStatus) -> list[str]:
    """PEP 792's meta tags: the status always (SHOULD), the reason when one was given."""
    lines = [f'    <meta name="pypi:project-status" content="{escape(status.status)}">']
    if status.reason:
        reason = escape(status.reason)
        lines.append(f'    <meta name="pypi:project-status-reason" content="{reason}">')
    return lines


def _anchor(entry: FileEntry, hash_algo: str | None) -> str:
    href = entry.url
    if hash_algo is not None:
        href += f"#{hash_algo}={entry.hashes[hash_algo]}"
    attributes = [f'href="{escape(href)}"']
    if entry.requires_python:
        attributes.append(f'data-requires-python="{escape(entry.requires_python)}"')
    if entry.core_metadata_sha256:
        value = f"sha256={entry.core_metadata_sha256}"
        attributes.append(f'data-dist-info-metadata="{value}"')
        attributes.append(f'data-core-metadata="{value}"')
    if entry.gpg_sig:
        attributes.append('data-gpg-sig="true"')
    if entry.yanked is not None:
        attributes.append(f'data-yanked="{escape(entry.yanked)}"')
    if entry.provenance is not None:
        attributes.append(f'data-provenance="{escape(entry.provenance)}"')
    return f"<a {' '.join(attributes)}>{escape(entry.filename)}</a>"


def render_project_json(
    project: str,
    entries: list[FileEntry],
    status: ProjectStatus = ACTIVE,
    versions: list[str] | None = None,
) -> bytes:
    """*versions*: PEP 700's list when it is not that of *entries* (a quarantined project
    lists its versions, as PEP 792's example does, but no file)."""
    files = []
    for entry in entries:
        core: dict[str, str] | bool = (
            {"sha256": entry.core_metadata_sha256} if entry.core_metadata_sha256 else False
        )
        item: dict[str, object] = {
            "filename": entry.filename,
            "url": entry.url,
            "hashes": entry.hashes,
            "requires-python": entry.requires_python,
            "core-metadata": core,
            "dist-info-metadata": core,
            "gpg-sig": entry.gpg_sig,
            "yanked": entry.yanked if entry.yanked else entry.yanked is not None,
            "size": entry.size,
            "upload-time": entry.upload_time,
        }
        if entry.provenance is not None:
            item["provenance"] = entry.provenance
        files.append(item)
    if versions is None:
        versions = sorted({e.version for e in entries}, key=version_sort_key)
    document = {
        "meta": {"api-version": API_VERSION},
        "name": project,
        "project-status": status.marker(),  # PEP 792
        "versions": versions,
        "files": files,
    }
    return json.dumps(document, separators=(",", ":")).encode()


def render_project(
    index: Index,
    facts: FactsCache,
    project: str,
    hash_algo: str | None,
    status: ProjectStatus = ACTIVE,
) -> dict[Format, Page]:
    """The project's pages; a quarantined project's list no file (none is read)."""
    versions = None
    if status.quarantined:
        entries: list[FileEntry] = []
        found = {dist.version for dist in index.distributions(project)}
        versions = sorted(found, key=version_sort_key)
    else:
        entries = file_entries(index, facts, project, hash_algo)
    html = render_project_html(project, entries, hash_algo, status)
    body = render_project_json(project, entries, status, versions)
    return {
        Format.TEXT_HTML: make_page(html, Format.TEXT_HTML),
        Format.HTML: make_page(html, Format.HTML),
        Format.JSON: make_page(body, Format.JSON),
    }


# ---------------------------------------------------------------- the root page


def render_root(projects: list[str]) -> dict[Format, Page]:
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "  <head>",
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">',
        "    <title>Simple Index</title>",
        "  </head>",
        "  <body>",
        "    <h1>Simple Index</h1>",
    ]
    for project in projects:
        name = escape(project)
        lines.append(f'    <a href="{quote(project)}/">{name}</a><br>')
    lines += ["  </body>", "</html>", ""]
    html = "\n".join(lines).encode()
    document = {"meta": {"api-version": API_VERSION}, "projects": [{"name": p} for p in projects]}
    body = json.dumps(document, separators=(",", ":")).encode()
    return {
        Format.TEXT_HTML: make_page(html, Format.TEXT_HTML),
        Format.HTML: make_page(html, Format.HTML),
        Format.JSON: make_page(body, Format.JSON),
    }
