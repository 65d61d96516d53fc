"""The one type for a running digest, whichever hashlib constructor made it."""

from __future__ import annotations

from typing import Protocol


class Hasher(Protocol):
    """What creamery uses of a hashlib object: typeshed gives `hashlib.new()`/`sha256()` and
    `blake2b()` no common base class, so this names the part they share."""

    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...
