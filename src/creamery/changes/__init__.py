"""The change feed: every write, numbered, so every process (and later every replica) catches up.

A writer appends the keys (relpaths) it changed and gets the record's serial; a follower asks
for what came since the serial it has applied. Serials only grow, and are the same in every
process that reads the same feed. When the records a follower needs are gone (the feed was
compacted, or is damaged) it gets `Resync` instead: rescan everything, then carry on from its
serial.

- `local_feed`: the feed as a journal file in the state directory.
- `follower`: keeps one process's "applied serial" current (a background poll, and a
  synchronous catch-up before answers that must not be stale).
- `local_events`, `inotify`: the local file system's own change events (changes made by other
  tools), which need no serial: each process receives them itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol


class Changes(NamedTuple):
    """The keys changed after the serial asked for, up to and including *serial*."""

    serial: int
    keys: list[str]


class Resync(NamedTuple):
    """The records after the serial asked for are gone: rescan, then you are at *serial*."""

    serial: int


class ChangeFeed(Protocol):
    def append(self, keys: Sequence[str]) -> int:
        """Record that *keys* changed (after the change is made: this is its commit point).
        Returns the record's serial. Raises OSError when the feed can't be written."""
        ...

    def latest(self) -> int:
        """The serial of the last record appended (0 for a feed never written to)."""
        ...

    def since(self, serial: int) -> Changes | Resync:
        """What changed after *serial*. Resync when those records were compacted away, are
        damaged, or *serial* is not one this feed has given (a feed restored from a backup)."""
        ...

    def announced(self) -> int:
        """The latest serial as far as it can be known without I/O (no system call): a
        follower compares it with what it applied before every request. A feed that has no
        such channel returns the last serial it read, and its followers rely on their poll."""
        ...

    def close(self) -> None: ...
