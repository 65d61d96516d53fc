"""The one type for a running digest, whichever hashlib constructor made it, and the one set
of digests PyPI publishes for a file (computed while an upload streams in, by `update -x`
while it downloads, and for the JSON API of files placed by other tools)."""

from __future__ import annotations

import hashlib
from typing import Protocol

PYPI_DIGESTS = ("sha256", "md5", "blake2b_256")  # the JSON API's `digests`, as facts keep them


class Hasher(Protocol):
    """What creamery uses of a hashlib object: typeshed gives `hashlib.new()`/`sha256()` and
    `blake2b()` no common base class, so this names the part they share."""

    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


def pypi_hashers() -> dict[str, Hasher]:
    """Fresh hashers for `PYPI_DIGESTS`, in one pass over the bytes."""
    return {
        "sha256": hashlib.sha256(),
        "md5": hashlib.md5(usedforsecurity=False),
        "blake2b_256": hashlib.blake2b(digest_size=32),
    }
