"""The PEP 740 provenance kept for a hosted file, served only while it attests that file.

Attestations name the bytes they are about (their statements' subject digests). The file kept
under a name may change without its state knowing: deleted and another copied in by hand (the
pypiserver way), or a crash between the provenance's write and the file's. A provenance whose
attestations name another sha256 than the file has now is neither offered nor served, nor is
one damaged on disk.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import weakref
from collections import OrderedDict
from typing import Any

from creamery.catalog.attestations import is_provenance_document
from creamery.catalog.facts import FactsCache
from creamery.catalog.index import Distribution, Index

log = logging.getLogger("creamery.attestations")

# Whether a file's kept provenance attests it, by the file's stored version (new bytes, a new
# version): pages are rendered again on every change, and need not read every provenance again
# (one GET each from a bucket).
_MAX_CHECKED = 65536
Checked = OrderedDict[tuple[str, str, int, int], bool]
_checked: weakref.WeakKeyDictionary[Index, Checked] = weakref.WeakKeyDictionary()  # per index
_lock = threading.Lock()


def other_bytes(provenance: bytes, sha256: str) -> bool:
    """Whether an attestation of *provenance* names content of another digest than *sha256*
    (one whose statement can't be read names none: `store` keeps what it can't read)."""
    named: set[object] = set()
    for attestation in _attestations(provenance):
        try:
            statement = json.loads(base64.b64decode(attestation["envelope"]["statement"]))
            named.update(subject["digest"]["sha256"] for subject in statement["subject"])
        except (ValueError, TypeError, KeyError, RecursionError, binascii.Error):
            continue
    return bool(named - {sha256})


def _attestations(provenance: bytes) -> list[Any]:
    try:
        bundles = json.loads(provenance)["attestation_bundles"]
        return [a for bundle in bundles for a in bundle["attestations"]]
    except (ValueError, TypeError, KeyError, RecursionError):
        return []


def provenance_of(index: Index, facts: FactsCache, dist: Distribution) -> bytes | None:
    """The provenance object kept for *dist*, unless it is damaged (no longer reads as one)
    or attests other bytes (reads the file to hash it when its digest is not known: call it
    in a worker thread). Why not is said in the log."""
    data = index.provenance(dist)
    if data is None:
        return None
    if not is_provenance_document(data):
        log.warning("the provenance kept for %s is damaged: not served", dist.relpath)
        return None
    if other_bytes(data, facts.digests(dist.stored).sha256):
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
        checked = _checked.setdefault(index, OrderedDict())
        known = checked.get(key)
    if known is None:
        known = provenance_of(index, facts, dist) is not None
        with _lock:
            checked[key] = known
            while len(checked) > _MAX_CHECKED:
                checked.popitem(last=False)
    return known
