"""Operations on releases that already exist: removal and yanking (PEP 592).

Shared by the HTTP API and the CLI (which works directly on the directories). The state lives
in storage beside each file (`<file>.yanked`), so it survives restarts and backups.
"""

from __future__ import annotations

from collections.abc import Iterable

from creamery.index import METADATA, PROVENANCE, SIGNATURE, YANKED, Distribution, Index
from creamery.names import normalize, parse_version
from creamery.storage.local import LocalStorage

SIDECARS = (SIGNATURE, YANKED, METADATA, PROVENANCE)


class ReleaseNotFound(LookupError):
    """No file matches the project (and version, and filename)."""


def same_version(a: str, b: str) -> bool:
    """PEP 440 equality (`1.0` == `1.0.0`), raw equality for legacy versions."""
    va, vb = parse_version(a), parse_version(b)
    if va is not None and vb is not None:
        return va == vb
    return a == b


def matching_files(
    index: Index, project: str, version: str | None = None, filename: str | None = None
) -> list[Distribution]:
    """Files of a project (a release, or one file), matching the normalized name."""
    found = [
        dist
        for dist in index.distributions(normalize(project))
        if (version is None or same_version(dist.version, version))
        and (filename is None or dist.filename == filename)
    ]
    if not found:
        what = normalize(project) + (f" {version}" if version else "")
        what += f" ({filename})" if filename else ""
        raise ReleaseNotFound(f"{what} not found")
    return found


def remove(
    storage: LocalStorage, index: Index, project: str, version: str | None = None
) -> list[str]:
    """Delete every file of the release (or the project) and its sidecars; the relpaths."""
    changed = remove_files(storage, matching_files(index, project, version))
    index.refresh(changed)
    return changed


def remove_files(storage: LocalStorage, dists: Iterable[Distribution]) -> list[str]:
    """Delete distributions with their sidecars; the relpaths that were removed."""
    changed: list[str] = []
    for dist in dists:
        for relpath in (dist.relpath, *(dist.relpath + s for s in SIDECARS)):
            if storage.delete(relpath):
                changed.append(relpath)
    return changed


def set_yanked(
    storage: LocalStorage,
    index: Index,
    project: str,
    version: str,
    *,
    yanked: bool,
    reason: str = "",
    filename: str | None = None,
) -> list[str]:
    """Yank (with an optional reason) or un-yank a release or one of its files."""
    changed: list[str] = []
    for dist in matching_files(index, project, version, filename):
        sidecar = dist.relpath + YANKED
        if yanked:
            storage.write_bytes(sidecar, reason.strip().encode())
            changed.append(sidecar)
        elif storage.delete(sidecar):
            changed.append(sidecar)
    index.refresh(changed)
    return changed


def describe(dists: Iterable[Distribution]) -> str:
    return ", ".join(d.filename for d in dists)
