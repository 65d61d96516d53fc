"""Several stores read as one: `LayeredStorage`, for package roots of different kinds (a local
directory beside an `s3://` root), in the order given.

The same rules as the roots of one `LocalStorage`: the first backend holding a key wins
(`stat`, `scan`); writes go to the first; a delete removes every copy, so nothing shows
through; a conditional put refuses a key a later backend holds (a new upload never shadows a
file that is served). A StoredFile keeps the `place` of the backend it came from, and every
backend refuses a place that is not its own without a request, so `open`, `url` and
`local_path` go to the backend that made it by asking each in turn.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from creamery.core.objects import ObjectRoot, S3Options
from creamery.storage import AlreadyExists, Listing, Reader, Storage, StoredFile, is_safe_relpath
from creamery.storage.local import LocalStorage

__all__ = ["LayeredStorage", "storage_for"]


def storage_for(roots: Sequence[Path | ObjectRoot], options: S3Options | None = None) -> Storage:
    """The Storage of package roots as configured, in their order: directories next to each
    other are one LocalStorage (its several roots), each object root an S3Storage (obstore is
    imported here only when there is one), several of those a LayeredStorage."""
    if not roots:
        raise ValueError("no package root")
    backends: list[Storage] = []
    directories: list[Path] = []
    for root in roots:
        if isinstance(root, ObjectRoot):
            if directories:
                backends.append(LocalStorage(tuple(directories)))
                directories = []
            from creamery.storage.s3 import S3Storage  # the s3 extra, for object roots only

            backends.append(S3Storage(root, options or S3Options()))
        else:
            directories.append(Path(root))
    if directories:
        backends.append(LocalStorage(tuple(directories)))
    return backends[0] if len(backends) == 1 else LayeredStorage(backends)


class LayeredStorage:
    def __init__(self, backends: Sequence[Storage]) -> None:
        if not backends:
            raise ValueError("a layered storage needs at least one backend")
        self.backends = tuple(backends)
        # One remote backend makes every call possibly slow: callers then use a thread.
        self.remote = any(backend.remote for backend in self.backends)

    def __repr__(self) -> str:
        return f"LayeredStorage({list(self.backends)!r})"

    # ------------------------------------------------------------------ reading

    def scan(self, prefix: str = "") -> Iterator[StoredFile]:
        seen: set[str] = set()
        for backend in self.backends:
            for stored in backend.scan(prefix):
                if stored.key not in seen:
                    seen.add(stored.key)
                    yield stored

    def stat(self, key: str) -> StoredFile | None:
        for backend in self.backends:
            stored = backend.stat(key)
            if stored is not None:
                return stored
        return None

    def open(self, stored: StoredFile) -> Reader:
        """The backend whose place *stored* has; a foreign place is FileNotFoundError in
        every backend, found without a request."""
        missing: FileNotFoundError | None = None
        for backend in self.backends:
            try:
                return backend.open(stored)
            except FileNotFoundError as error:
                missing = missing or error
        raise missing or FileNotFoundError(stored.key)

    def local_path(self, stored: StoredFile) -> str | None:
        for backend in self.backends:
            path = backend.local_path(stored)
            if path is not None:
                return path
        return None

    def url(self, stored: StoredFile) -> str | None:
        for backend in self.backends:
            url = backend.url(stored)
            if url is not None:
                return url
        return None

    # ------------------------------------------------------------------ writing

    def put(self, key: str, content: Path | bytes, *, if_absent: bool) -> StoredFile:
        first = self.backends[0]
        if if_absent and is_safe_relpath(key):
            try:
                if any(later.stat(key) is not None for later in self.backends[1:]):
                    raise AlreadyExists(key)
            except BaseException:
                if isinstance(content, Path):
                    content.unlink(missing_ok=True)  # consumed in every case
                raise
        return first.put(key, content, if_absent=if_absent)

    def delete(self, key: str) -> bool:
        """From every backend (a store that fails does not keep the others' copies); the
        first failure is raised once all were asked."""
        removed = False
        failure: OSError | None = None
        for backend in self.backends:
            try:
                removed = backend.delete(key) or removed
            except OSError as error:
                failure = failure or error
        if failure is not None:
            raise failure
        return removed

    def health(self) -> str | None:
        problems = [p for p in (backend.health() for backend in self.backends) if p]
        return "; ".join(problems) if problems else None

    def changed_listings(self) -> list[Listing]:
        """Every backend's: a directory listed in one backend names the files of that one
        only, which is enough (each name that differs from the index is looked up again)."""
        listings: list[Listing] = []
        for backend in self.backends:
            listings += backend.changed_listings()
        return listings


def _is_a_storage(storage: LayeredStorage) -> Storage:
    return storage  # mypy checks the protocol here
