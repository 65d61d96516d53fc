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

from creamery.catalog.facts import FactsCache
from creamery.catalog.index import Distribution, Index

log = logging.getLogger("creamery.attestations")


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
