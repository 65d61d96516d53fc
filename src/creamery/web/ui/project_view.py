"""What a project page shows, gathered from the index, the facts cache and the metadata (run in
a worker thread: the first look at a file may read it), or from the mirror's listing for a
project served from upstream. The template (`ui/project.html`) only lays it out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

from markupsafe import Markup
from packaging.metadata import RawMetadata

from creamery.catalog.attestations import publishers_in
from creamery.catalog.facts import FactsCache, file_version
from creamery.catalog.index import Distribution, Index
from creamery.catalog.provenance import provenance_of
from creamery.catalog.versions import (
    Release,
    find_release,
    is_prerelease,
    is_yanked,
    latest_release,
    metadata_sources,
    parse_metadata,
    releases,
)
from creamery.core.names import (
    METADATA,
    SIGNATURE,
    VersionKey,
    parse_filename,
    version_sort_key,
)
from creamery.mirror.listing import Listing
from creamery.mirror.policy import Hidden
from creamery.render import metadata_view as mv
from creamery.render.readme import ReadmeCache
from creamery.render.simple_api import BASE, integrity_url, iso_time
from creamery.web.json_api import python_version


@dataclass(frozen=True, slots=True)
class ReleaseItem:
    version: str
    uploaded: str  # ISO 8601 UTC, "" when unknown
    pre: bool
    yanked: bool
    yank_reason: str | None
    current: bool


@dataclass(frozen=True, slots=True)
class FileItem:
    filename: str
    url: str
    size: int | None
    uploaded: str
    kind: str  # "Wheel", "Source", …
    python: str
    abi: str | None
    platform: str | None
    requires_python: str | None
    sha256: str | None
    signature_url: str | None = None
    provenance_url: str | None = None
    publisher: str | None = None  # PEP 740: who the provenance says published the file
    metadata_url: str | None = None
    yanked: str | None = None


@dataclass(frozen=True, slots=True)
class DependencyItem:
    dependency: mv.Dependency
    url: str | None  # its page here, when hosted and visible


@dataclass
class ProjectView:
    project: str  # normalized
    name: str  # as its metadata spells it
    version: str
    latest: str
    is_latest: bool
    summary: str | None
    releases: list[ReleaseItem]
    files: list[FileItem]
    yanked: bool = False
    yank_reason: str | None = None
    pre: bool = False
    readme: Markup | None = None
    requires_python: str | None = None
    urls: list[tuple[str, str]] = field(default_factory=list)
    classifiers: list[tuple[str, list[str]]] = field(default_factory=list)
    authors: list[mv.Person] = field(default_factory=list)
    maintainers: list[mv.Person] = field(default_factory=list)
    license: mv.License = field(default_factory=lambda: mv.License(None, None))
    license_classifiers: list[str] = field(default_factory=list)
    dependencies: list[DependencyItem] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)
    docs_url: str | None = None
    mirror_source: str | None = None  # the upstream page it is served from
    mirror_hidden: list[Hidden] = field(default_factory=list)  # upstream files a policy hid
    status: str = "active"  # PEP 792 (a quarantined project's page lists no file)
    status_reason: str | None = None


def local_view(
    index: Index,
    facts: FactsCache,
    readmes: ReadmeCache,
    project: str,
    version: str | None,
    base: str,
    visible: Callable[[str], bool],
) -> ProjectView | None:
    """The page of a hosted project (its latest release, or *version*); None: no such one."""
    found = releases(index, project)
    if not found:
        return None
    latest = latest_release(index, found)
    chosen = latest if version is None else find_release(found, version)
    if chosen is None:
        return None
    source, meta = release_metadata(facts, chosen)
    name = meta.get("name") or chosen.files[0].parsed.raw_name
    reasons = [index.yank_reason(d) for d in chosen.files]
    yanked = all(r is not None for r in reasons)
    view = ProjectView(
        project=project,
        name=name,
        version=chosen.version,
        latest=latest.version,
        is_latest=chosen is latest,
        summary=meta.get("summary"),
        releases=[_release_item(index, r, r is chosen) for r in reversed(found)],
        files=[item for d in chosen.files if (item := _file_item(index, facts, d, base))],
        yanked=yanked,
        yank_reason=next((r for r in reasons if r), None) if yanked else None,
        pre=is_prerelease(chosen.version),
    )
    describe(view, meta, base, index, visible)
    description = meta.get("description")
    if description and description.strip() and source is not None:
        key = (source.relpath, file_version(source.stored))
        content_type = meta.get("description_content_type")
        view.readme = Markup(readmes.render(key, description, content_type))  # sanitized (nh3)
    return view


def release_metadata(
    facts: FactsCache, release: Release
) -> tuple[Distribution | None, RawMetadata]:
    """Core metadata of the release and the file it came from: a wheel's when there is one."""
    for dist in metadata_sources(release.files):
        try:
            raw = facts.metadata(dist.stored, dist.parsed.kind).raw
        except OSError:  # gone meanwhile, or the store did not answer: the next file
            continue
        if raw is not None:
            return dist, parse_metadata(raw)
    return None, RawMetadata()


def describe(
    view: ProjectView, meta: RawMetadata, base: str, index: Index, visible: Callable[[str], bool]
) -> None:
    """The sidebar's facts from the release's metadata."""
    classifiers = meta.get("classifiers") or []
    view.requires_python = meta.get("requires_python")
    view.urls = mv.project_urls(meta)
    view.classifiers = mv.grouped_classifiers(classifiers)
    view.authors = mv.people(meta.get("author"), meta.get("author_email"))
    view.maintainers = mv.people(meta.get("maintainer"), meta.get("maintainer_email"))
    view.license = mv.license_of(meta)
    view.license_classifiers = mv.license_classifiers(classifiers)
    view.keywords = [k.strip() for k in meta.get("keywords") or [] if k.strip()]
    view.dependencies = [
        DependencyItem(
            dep,
            f"{base}project/{quote(dep.project)}/"
            if dep.project in index.projects and visible(dep.project)
            else None,
        )
        for dep in mv.dependencies(meta.get("requires_dist") or [])
    ]


def _release_item(index: Index, release: Release, current: bool) -> ReleaseItem:
    reasons = [index.yank_reason(d) for d in release.files]
    yanked = is_yanked(index, release)
    first = min(d.stored.mtime_ns for d in release.files)
    return ReleaseItem(
        version=release.version,
        uploaded=iso_time(first),
        pre=is_prerelease(release.version),
        yanked=yanked,
        yank_reason=next((r for r in reasons if r), None) if yanked else None,
        current=current,
    )


_KINDS = {"wheel": "Wheel", "sdist": "Source", "egg": "Egg"}


def _file_item(index: Index, facts: FactsCache, dist: Distribution, base: str) -> FileItem | None:
    try:
        sha256 = facts.digests(dist.stored).sha256
        metadata = facts.metadata(dist.stored, dist.parsed.kind)
    except OSError:  # deleted while we looked: the next change event drops it
        return None
    url = f"{base}packages/{quote(dist.relpath)}"
    tags = mv.wheel_tags(dist.filename)
    provenance = _provenance(index, facts, dist)
    return FileItem(
        filename=dist.filename,
        url=url,
        size=dist.stored.size,
        uploaded=iso_time(dist.stored.mtime_ns),
        kind=_KINDS.get(dist.parsed.kind, "Binary"),
        python=tags[0] if tags else python_version(dist),
        abi=tags[1] if tags else None,
        platform=tags[2] if tags else None,
        requires_python=metadata.requires_python,
        sha256=sha256,
        signature_url=url + SIGNATURE if index.sidecar(dist, SIGNATURE) is not None else None,
        provenance_url=(
            integrity_url(dist.project, dist.version, dist.filename).replace(BASE, base, 1)
            if provenance is not None
            else None
        ),
        publisher=("; ".join(publishers_in(provenance)) or None) if provenance else None,
        metadata_url=url + METADATA if dist.parsed.kind == "wheel" and metadata.raw else None,
        yanked=index.yank_reason(dist),
    )


def _provenance(index: Index, facts: FactsCache, dist: Distribution) -> bytes | None:
    """The file's provenance, when it has one that attests its bytes."""
    if not index.state_of(dist).provenance:
        return None
    try:
        return provenance_of(index, facts, dist)
    except OSError:
        return None


# ---------------------------------------------------------------- served from the mirror


def mirror_view(
    listing: Listing, version: str | None, base: str, hidden: Sequence[Hidden] = ()
) -> ProjectView | None:
    """What the mirror knows of an upstream project: its versions and files (no metadata:
    reading it would cost a download per page), and what the mirror's policies hid."""
    by_version: dict[VersionKey, tuple[str, list[FileItem]]] = {}
    for item in listing.files:
        parsed = parse_filename(item.filename)
        if parsed is None:
            continue
        key = version_sort_key(parsed.version)
        tags = mv.wheel_tags(item.filename)
        entry = FileItem(
            filename=item.filename,
            url=f"{base}upstream/{quote(listing.project)}/{quote(item.filename)}",
            size=item.size,
            uploaded=item.upload_time or "",
            kind=_KINDS.get(parsed.kind, "Binary"),
            python=tags[0] if tags else ("source" if parsed.kind == "sdist" else "any"),
            abi=tags[1] if tags else None,
            platform=tags[2] if tags else None,
            requires_python=item.requires_python,
            sha256=item.hashes.get("sha256"),
            # PEP 740: through our Integrity route, which fetches and caches the upstream's.
            provenance_url=(
                integrity_url(listing.project, parsed.version, item.filename).replace(BASE, base, 1)
                if item.provenance
                else None
            ),
            yanked=item.yanked,
        )
        by_version.setdefault(key, (parsed.version, []))[1].append(entry)
    if not by_version:
        return None
    ordered = [by_version[k] for k in sorted(by_version)]
    candidates = [v for v in ordered if not all(f.yanked is not None for f in v[1])] or ordered
    finals = [v for v in candidates if not is_prerelease(v[0])]
    latest = (finals or candidates)[-1]
    if version is None:
        chosen = latest
    else:
        found = by_version.get(version_sort_key(version))
        if found is None:
            return None
        chosen = found
    items = []
    for release_version, files in reversed(ordered):
        reasons = [f.yanked for f in files]
        yanked = all(r is not None for r in reasons)
        times = sorted(f.uploaded for f in files if f.uploaded)
        items.append(
            ReleaseItem(
                version=release_version,
                uploaded=times[0] if times else "",
                pre=is_prerelease(release_version),
                yanked=yanked,
                yank_reason=next((r for r in reasons if r), None) if yanked else None,
                current=release_version == chosen[0],
            )
        )
    chosen_reasons = [f.yanked for f in chosen[1]]
    chosen_yanked = all(r is not None for r in chosen_reasons)
    return ProjectView(
        project=listing.project,
        name=listing.project,
        version=chosen[0],
        latest=latest[0],
        is_latest=chosen is latest,
        summary=None,
        releases=items,
        files=sorted(chosen[1], key=lambda f: f.filename),
        yanked=chosen_yanked,
        yank_reason=next((r for r in chosen_reasons if r), None) if chosen_yanked else None,
        pre=is_prerelease(chosen[0]),
        mirror_source=listing.url,
        mirror_hidden=sorted(hidden, key=lambda h: (version_sort_key(h.version), h.filename)),
        requires_python=next((f.requires_python for f in chosen[1] if f.requires_python), None),
    )
