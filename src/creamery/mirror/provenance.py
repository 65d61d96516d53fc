"""PEP 740 provenance of mirrored files: the upstream's, passed on.

Our pages link a mirrored file's provenance to our own Integrity API route; the first request
fetches the upstream's object (the URL its page gave), checks that it is a provenance object
in shape and size (its attestations are evidence about the upstream's file, checked by whoever
installs; the file itself is verified by its digest), and caches it beside the file, as
`<file>.provenance`, the way `.metadata` files are kept.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import anyio
import httpx

from creamery.core.errors import ClientError
from creamery.core.names import PROVENANCE
from creamery.core.untrusted import load_json
from creamery.mirror.cache import MirrorCache, StoreSkipped
from creamery.mirror.client import Failure, UpstreamClient, describe, read_at_most
from creamery.mirror.projects import UpstreamProjects

MAX_PROVENANCE_BYTES = 1 << 20  # PyPI's are ~10 KB per attestation, at most two per file


@dataclass(frozen=True, slots=True)
class Missing:
    """No provenance to pass on, and why (a 404)."""

    reason: str
    status: int = 404

    @property
    def text(self) -> str:
        return self.reason


class UpstreamProvenance:
    def __init__(
        self, cache: MirrorCache, client: UpstreamClient, projects: UpstreamProjects
    ) -> None:
        self.cache = cache
        self.client = client
        self.projects = projects

    async def get(self, project: str, filename: str) -> bytes | Missing | Failure:
        """The provenance object of the mirrored *filename* of *project* (normalized)."""
        cached = await self._cached(project, filename)
        if cached is not None:
            return cached
        known = await self.projects.get(project, fresh=False)
        listing = known.listing
        if listing is None:
            if known.failure is not None:
                return known.failure
            return Missing(f"No provenance available for {filename} (no upstream has {project})")
        found = listing.file(filename)
        if found is None:
            return Missing(f"No provenance available for {filename} (not listed upstream)")
        if found.provenance is None:
            return Missing(f"No provenance available for {filename}")
        fetched = await self._fetch(found.provenance, listing.source, filename)
        if isinstance(fetched, bytes):
            await self._keep(project, filename, fetched)
        return fetched

    async def _cached(self, project: str, filename: str) -> bytes | None:
        try:
            if self.cache.remote:
                return await anyio.to_thread.run_sync(
                    self.cache.read_small, project, filename + PROVENANCE
                )
            return self.cache.read_small(project, filename + PROVENANCE)
        except (StoreSkipped, OSError):
            return None  # the cache is down: the upstream can still answer

    async def _keep(self, project: str, filename: str, data: bytes) -> None:
        with contextlib.suppress(OSError):  # not cached: fetched again next time
            await anyio.to_thread.run_sync(
                self.cache.keep_small, project, filename + PROVENANCE, data
            )

    async def _fetch(self, url: str, source: str, filename: str) -> bytes | Missing | Failure:
        timeout = self.client.timeout
        try:
            with anyio.fail_after(timeout):
                async with self.client.stream_file(url, source) as response:
                    if response.status_code in (404, 410):
                        return Missing(f"No provenance available for {filename} (upstream: 404)")
                    if response.status_code != 200:
                        return Failure(502, f"{url} answered {response.status_code}")
                    body = await read_at_most(response, MAX_PROVENANCE_BYTES)
        except (TimeoutError, httpx.TimeoutException):
            return Failure(504, f"{url} did not answer within {timeout:g} s")
        except httpx.HTTPError as error:
            return Failure(502, f"{url} failed: {describe(error)}")
        if body is None:
            return Failure(502, f"{url} sent more than {MAX_PROVENANCE_BYTES} bytes")
        if not is_provenance(body):
            return Failure(502, f"{url} sent no PEP 740 provenance object")
        return body


def is_provenance(body: bytes) -> bool:
    """PEP 740's shape: version 1, a non-empty list of bundles, each a publisher (an object
    or null) and a non-empty list of attestation objects."""
    try:
        document = load_json(body, "provenance", max_bytes=MAX_PROVENANCE_BYTES)
    except ClientError:
        return False
    if not isinstance(document, dict) or document.get("version") != 1:
        return False
    bundles = document.get("attestation_bundles")
    if not isinstance(bundles, list) or not bundles:
        return False
    for bundle in bundles:
        if not isinstance(bundle, dict) or not isinstance(bundle.get("publisher"), dict | None):
            return False
        attestations = bundle.get("attestations")
        if not isinstance(attestations, list) or not attestations:
            return False
        if not all(isinstance(a, dict) and a.get("version") == 1 for a in attestations):
            return False
    return True
