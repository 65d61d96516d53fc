"""Hosted documentation: the zip files uploaded for a project's releases (`doc_upload`).

Each upload is one object in the state store, `docs/<project>/<version>.zip` (a local root's
state directory, or `.creamery/docs/` in a bucket). The shelf keeps in memory which versions
of which projects have documentation; `generation` grows with every change, so pages that
link to the documentation know to render again.
"""

from __future__ import annotations

import threading

from creamery.core.names import normalize, version_sort_key
from creamery.storage import Storage

DOCS = "docs"
SUFFIX = ".zip"


def docs_key(project: str, version: str) -> str:
    return f"{DOCS}/{project}/{version}{SUFFIX}"


class DocsShelf:
    def __init__(self, store: Storage) -> None:
        self.store = store
        self.generation = 0
        self._versions: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def load(self) -> None:
        """Every project's documented versions, from the store's listing."""
        found: dict[str, list[str]] = {}
        for stored in self.store.scan(DOCS + "/"):
            parts = stored.key.split("/")
            if len(parts) != 3 or not parts[2].endswith(SUFFIX):
                continue
            project, version = parts[1], parts[2][: -len(SUFFIX)]
            if project != normalize(project) or not version:
                continue
            found.setdefault(project, []).append(version)
        with self._lock:
            self._versions = {p: sorted(v, key=version_sort_key) for p, v in found.items()}
            self.generation += 1

    def versions(self, project: str) -> list[str]:
        """The versions of *project* that have documentation, oldest first."""
        return list(self._versions.get(project, ()))

    def latest(self, project: str) -> str | None:
        """The newest version with documentation: what `/docs/<project>/` shows."""
        versions = self._versions.get(project)
        return versions[-1] if versions else None

    def projects(self) -> list[str]:
        return sorted(self._versions)
