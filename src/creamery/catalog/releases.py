"""Operations on releases that already exist: removal and yanking (PEP 592).

Used by the catalog (`service.py`), which records what they change: these functions change
files and state, not the index. Yank state lives in the state directory (`state.py`), so it
survives restarts and is part of its backup.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from creamery.catalog.index import Distribution, Index
from creamery.core.names import SIGNATURE, guess_like_pypiserver, normalize, parse_version
from creamery.storage import Storage
from creamery.storage.state import YANKED, StateDir


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


def spelled_like_pypiserver(index: Index, project: str, version: str) -> list[Distribution]:
    """Files that pypiserver would list as *project* *version*, where creamery reads them
    otherwise (`pywin32-217-55-...whl` is pywin32 217-55 there, 217 with build tag 55 here;
    `ABC12-34_V1X-1.2.3.zip` is ABC12 34_V1X-1.2.3 there), so a removal spelled from what
    pypiserver showed still finds them. Looks at every file: removals are rare."""
    wanted = (normalize(project), version)
    return [
        dist
        for dist in index.all_distributions()
        if (guess := guess_like_pypiserver(dist.filename)) is not None
        and (normalize(guess[0]), guess[1]) == wanted
    ]


def remove(storage: Storage, index: Index, project: str, version: str | None = None) -> list[str]:
    """Delete every file of the release (or the project) and its sidecars; the relpaths."""
    return remove_files(storage, index.state, to_remove(index, project, version))


def to_remove(
    index: Index, project: str, version: str | None = None, filename: str | None = None
) -> list[Distribution]:
    """The files a removal of the release (or the project, or one file of the release)
    deletes; ReleaseNotFound."""
    try:
        return matching_files(index, project, version, filename)
    except ReleaseNotFound:
        if filename is not None:
            raise
        dists = spelled_like_pypiserver(index, project, version) if version else []
        if not dists:
            raise
        return dists


def remove_files(
    storage: Storage, state: StateDir | None, dists: Iterable[Distribution]
) -> list[str]:
    """Delete distributions with their signatures and state; the relpaths that changed."""
    changed: list[str] = []
    for dist in dists:
        # The file first: a crash after it leaves state without a file, which is ignored.
        for relpath in (dist.relpath, dist.relpath + SIGNATURE):
            if storage.delete(relpath):
                changed.append(relpath)
        if state is not None:
            state.forget(dist.relpath)
    return changed


def set_yanked(
    storage: Storage,
    index: Index,
    project: str,
    version: str,
    *,
    yanked: bool,
    reason: str = "",
    filename: str | None = None,
) -> list[str]:
    """Yank (with an optional reason) or un-yank a release or one of its files; the relpaths
    of the files whose state changed."""
    state = index.state
    if state is None:
        raise RuntimeError("yanking needs a state directory")
    changed: list[str] = []
    before: dict[str, bytes | None] = {}
    try:
        for dist in matching_files(index, project, version, filename):
            before[dist.relpath] = state.read(dist.relpath, YANKED)
            if yanked:
                state.write(dist.relpath, YANKED, reason.strip().encode())
                changed.append(dist.relpath)
            elif state.delete(dist.relpath, YANKED):
                changed.append(dist.relpath)
    except OSError:
        # All or nothing: a release is never left half yanked (a full or read-only state dir).
        _restore_yanked(state, {relpath: before[relpath] for relpath in changed})
        raise
    return changed


def _restore_yanked(state: StateDir, previous: dict[str, bytes | None]) -> None:
    for relpath, data in previous.items():
        with contextlib.suppress(OSError):
            if data is None:
                state.delete(relpath, YANKED)
            else:
                state.write(relpath, YANKED, data)


def describe(dists: Iterable[Distribution]) -> str:
    return ", ".join(d.filename for d in dists)
