"""Our simple pages for mirrored projects, rendered by `simple_api` like local ones, so they carry
the same standards (hashes, requires-python, yanked, core metadata, sizes, upload times, PEP 792
project status), with file URLs that lead through creamery.

PEP 708 (`tracks` / `alternate-locations`) was rejected: its meta keys are a non-standard
extension here, on the pages only with `--mirror-pep708` (upstream's passed on, and ours when a
project is merged). Merging itself (`--mirror-merge`) never depends on it.

The status shown is the local project's when it has one that is not active (a merged project),
else the upstream's; a quarantined project offers no file, local or upstream.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from html import escape
from urllib.parse import quote

from creamery.catalog.status import ACTIVE, ProjectStatus
from creamery.core.names import parse_filename, version_sort_key
from creamery.mirror.listing import Listing
from creamery.render.negotiation import Format
from creamery.render.simple_api import (
    API_VERSION,
    FileEntry,
    Page,
    integrity_url,
    make_page,
    render_project_html,
    render_project_json,
)

_NO_SIZE_VERSION = "1.0"  # PEP 700 (1.1) makes sizes mandatory; HTML upstreams don't give them
_UNKNOWN_SIZE = -1
# Preferred digests for the HTML fragment, when the configured one is not listed upstream.
_FRAGMENT_ALGOS = ("sha256", "sha512", "sha384", "blake2b", "sha1", "md5")


def upstream_entries(listing: Listing) -> list[FileEntry]:
    """The listing's files, with URLs relative to our project page (`/upstream/<p>/<file>`)."""
    entries = []
    for item in listing.files:
        parsed = parse_filename(item.filename)
        if parsed is None:  # the listing keeps parseable names only
            continue
        entries.append(
            FileEntry(
                filename=item.filename,
                version=parsed.version,
                url=f"../../upstream/{quote(listing.project)}/{quote(item.filename)}",
                hashes=item.hashes,
                requires_python=item.requires_python,
                # Only a digest lets us verify the .metadata file we pass on.
                core_metadata_sha256=(item.core_metadata or {}).get("sha256"),
                gpg_sig=False,
                yanked=item.yanked,
                size=_UNKNOWN_SIZE if item.size is None else item.size,
                upload_time=item.upload_time or "",
                # PEP 740: passed on through our Integrity API route (mirror/provenance.py).
                provenance=(
                    integrity_url(listing.project, parsed.version, item.filename)
                    if item.provenance
                    else None
                ),
            )
        )
    return entries


def upstream_status(listing: Listing | None) -> ProjectStatus:
    """The PEP 792 status the upstream declares for the project (active when none)."""
    if listing is None or listing.status is None:
        return ACTIVE
    return ProjectStatus(listing.status, listing.status_reason or "")


def render_mirrored(
    project: str,
    listing: Listing | None,
    local: Sequence[FileEntry],
    hash_algo: str | None,
    *,
    local_status: ProjectStatus = ACTIVE,
    pep708: bool = False,
) -> dict[Format, Page]:
    """Pages for *project*: upstream files, and local ones first when merged; *pep708*: with
    the rejected PEP's meta keys (an opt-in extension)."""
    status = local_status if not local_status.active else upstream_status(listing)
    upstream = upstream_entries(listing) if listing is not None else []
    local_names = {entry.filename for entry in local}
    entries = [*local, *(e for e in upstream if e.filename not in local_names)]
    entries.sort(key=lambda e: (version_sort_key(e.version), e.filename))
    versions = [*(listing.versions if listing is not None else ()), *(e.version for e in entries)]
    if status.quarantined:
        entries = []  # PEP 792: nothing offered, whatever the upstream lists
    tracks: list[str] = []
    alternates: list[str] = []
    if listing is not None and pep708:
        tracks += listing.tracks
        alternates += listing.alternate_locations
        if local:  # merged: say which upstream project ours extends
            tracks.append(listing.url)
            alternates.append(listing.url)
    version = _api_version(entries)
    algo = _fragment_algo(entries, hash_algo)
    html = _html(project, entries, algo, version, _unique(tracks), _unique(alternates), status)
    body = _json(project, entries, version, _unique(tracks), _unique(alternates), versions, status)
    return {
        Format.TEXT_HTML: make_page(html, Format.TEXT_HTML),
        Format.HTML: make_page(html, Format.HTML),
        Format.JSON: make_page(body, Format.JSON),
    }


def _api_version(entries: Sequence[FileEntry]) -> str:
    if any(entry.size == _UNKNOWN_SIZE for entry in entries):
        return _NO_SIZE_VERSION
    return API_VERSION


def _fragment_algo(entries: Sequence[FileEntry], preferred: str | None) -> str | None:
    """A digest every entry has, for the `#<algo>=` fragment of the HTML links."""
    for algo in dict.fromkeys((preferred, *_FRAGMENT_ALGOS)):
        if algo is not None and all(algo in entry.hashes for entry in entries):
            return algo
    return None


def _html(
    project: str,
    entries: list[FileEntry],
    algo: str | None,
    version: str,
    tracks: list[str],
    alternates: list[str],
    status: ProjectStatus,
) -> bytes:
    html = render_project_html(project, entries, algo, status)
    head = [f'<meta name="pypi:repository-version" content="{version}">']
    head += [f'    <meta name="pypi:tracks" content="{escape(url)}">' for url in tracks]
    head += [
        f'    <meta name="pypi:alternate-locations" content="{escape(url)}">' for url in alternates
    ]
    rendered = f'<meta name="pypi:repository-version" content="{API_VERSION}">'.encode()
    return html.replace(rendered, "\n".join(head).encode(), 1)


def _json(
    project: str,
    entries: list[FileEntry],
    version: str,
    tracks: list[str],
    alternates: list[str],
    versions: Sequence[str],
    status: ProjectStatus,
) -> bytes:
    # PEP 700: the upstream's versions, those without files (or quarantined) included.
    known = sorted(set(versions), key=version_sort_key)
    document = json.loads(render_project_json(project, entries, status, known))
    for item, entry in zip(document["files"], entries, strict=True):
        if entry.size == _UNKNOWN_SIZE:
            del item["size"]
        if not entry.upload_time:
            del item["upload-time"]  # optional in PEP 700
    document["meta"]["api-version"] = version
    if tracks:
        document["meta"]["tracks"] = tracks  # PEP 708: `meta.tracks`
    if alternates:
        document["alternate-locations"] = alternates  # PEP 708: a top-level key
    return json.dumps(document, separators=(",", ":")).encode()


def _unique(urls: list[str]) -> list[str]:
    return list(dict.fromkeys(urls))
