"""The PEP 740 provenance kept for a hosted file, served only while it attests that file.

Attestations name the bytes they are about (their statements' subject digests). The file kept
under a name may change without its state knowing: deleted and another copied in by hand (the
pypiserver way), or a crash between the provenance's write and the file's. A provenance is
offered and served only when every attestation in it names the sha256 the file has now.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
from collections import OrderedDict

from creamery.catalog.facts import FactsCache
from creamery.catalog.index import Distribution, Index

log = logging.getLogger("creamery.attestations")

# Whether a file's kept provenance attests it, by the file's stored version (new bytes, a new
# version): pages are rendered again on every change, and need not read every provenance again
# (one GET each from a bucket).
_MAX_CHECKED = 65536
_checked: OrderedDict[tuple[str, str, int, int], bool] = OrderedDict()
_lock = threading.Lock()


def attests(provenance: bytes, sha256: str) -> bool:
    """Whether every attestation of *provenance* names content of digest *sha256* (not so
    for attestations `store` kept about other bytes, nor after the file changed)."""
    named: set[object] = set()
    try:
        for bundle in json.loads(provenance)["attestation_bundles"]:
            for attestation in bundle["attestations"]:
                encoded = attestation["envelope"]["statement"]
                statement = json.loads(base64.b64decode(encoded, validate=True))
                named.update(subject["digest"]["sha256"] for subject in statement["subject"])
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError, binascii.Error):
        return False
    return named == {sha256}


def provenance_of(index: Index, facts: FactsCache, dist: Distribution) -> bytes | None:
    """The provenance object kept for *dist*, when it attests the bytes *dist* has (reads the
    file to hash it when its digest is not known: call it in a worker thread)."""
    data = index.provenance(dist)
    if data is None:
        return None
    if not attests(data, facts.digests(dist.stored).sha256):
        log.warning("the provenance kept for %s attests other bytes: not served", dist.relpath)
        return None
    return data


def offers_provenance(index: Index, facts: FactsCache, dist: Distribution) -> bool:
    """Whether *dist*'s pages link a provenance (`provenance_of` is not None), remembered by
    the file's stored version."""
    if not index.state_of(dist).provenance:
        return False
    stored = dist.stored
    key = (dist.relpath, str(stored.version), stored.size, stored.mtime_ns)
    with _lock:
        known = _checked.get(key)
    if known is None:
        known = provenance_of(index, facts, dist) is not None
        with _lock:
            _checked[key] = known
            while len(_checked) > _MAX_CHECKED:
                _checked.popitem(last=False)
    return known
