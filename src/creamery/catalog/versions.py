"""A project's releases as PyPI shows them: files grouped by version (PEP 440 equality), the
release PyPI calls the latest, and a release's core metadata.

Pure reading of the index and the facts cache: the JSON API, XML-RPC, the pages and search
(`catalog/search.py`) share it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from packaging.metadata import RawMetadata, parse_email

from creamery.catalog.facts import FactsCache, dedent_header_description
from creamery.catalog.index import Distribution, Index
from creamery.core.names import VersionKey, parse_version, version_sort_key


@dataclass(frozen=True, slots=True)
class Release:
    version: str  # as the first of its files spells it
    files: list[Distribution]


def releases(index: Index, project: str) -> list[Release]:
    """The project's releases, oldest first; `1.0` and `1.0.0` are one release (PEP 440)."""
    groups: dict[VersionKey, Release] = {}
    for dist in index.distributions(project):
        key = version_sort_key(dist.version)
        if key not in groups:
            groups[key] = Release(dist.version, [])
        groups[key].files.append(dist)
    return list(groups.values())


def find_release(found: list[Release], version: str) -> Release | None:
    wanted = version_sort_key(version)
    return next((r for r in found if version_sort_key(r.version) == wanted), None)


def is_yanked(index: Index, release: Release) -> bool:
    """PEP 592: a release is yanked when every one of its files is."""
    return all(index.is_yanked(d) for d in release.files)


def latest_release(index: Index, found: list[Release]) -> Release:
    """PyPI's choice: the newest release not yanked, preferring final releases."""
    candidates = [r for r in found if not is_yanked(index, r)] or found
    final = [r for r in candidates if not is_prerelease(r.version)]
    return (final or candidates)[-1]


def is_prerelease(version: str) -> bool:
    """A PEP 440 pre- or dev release (a version that does not parse is none)."""
    parsed = parse_version(version)
    return parsed is not None and parsed.is_prerelease


_METADATA_RELIABILITY = {"wheel": 0, "sdist": 1}  # a wheel's METADATA is what installs


def metadata_sources(files: Iterable[Distribution]) -> list[Distribution]:
    """A release's files in the order its core metadata is read from them: wheels first (the
    most reliable), then sdists, then the rest."""
    return sorted(files, key=lambda d: _METADATA_RELIABILITY.get(d.parsed.kind, 2))


def release_metadata(facts: FactsCache, release: Release) -> RawMetadata:
    """Core metadata of the release, from a wheel when there is one (the most reliable)."""
    for dist in metadata_sources(release.files):
        raw = facts.metadata(dist.stored, dist.parsed.kind).raw
        if raw is not None:
            return parse_metadata(raw)
    return RawMetadata()


def parse_metadata(raw: bytes) -> RawMetadata:
    try:
        parsed, _unparsed = parse_email(raw)
    except (ValueError, UnicodeDecodeError):
        return RawMetadata()
    if parsed.get("description"):
        parsed["description"] = dedent_header_description(raw, parsed["description"])
    return parsed
