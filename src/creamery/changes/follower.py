"""One process following the change feed: the serial it has applied, kept current.

A background thread polls the feed every few tens of milliseconds. Requests don't poll: they
compare the feed's `announced()` serial (a memory load for the local feed) with `applied`, and
only when the feed is ahead, or before an answer that must not be stale (a 404, a listing, a
write's reply), catch up themselves. So a hit costs no system call, and a client reads its own
writes on any worker process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from creamery.changes import ChangeFeed, Resync

log = logging.getLogger("creamery.changes")

POLL_SECONDS = 0.05


class Follower:
    def __init__(
        self,
        feed: ChangeFeed,
        apply: Callable[[list[str]], None],
        rescan: Callable[[], None],
        on_advance: Callable[[int], None] = lambda serial: None,
    ) -> None:
        """*apply* refreshes changed keys, *rescan* compares everything (after a `Resync`);
        *on_advance* hears every new applied serial. Start following before the initial scan:
        what is appended meanwhile is applied again, never missed."""
        self.feed = feed
        self._apply = apply
        self._rescan = rescan
        self.on_advance = on_advance  # the app sets it, to stamp responses
        self._lock = threading.Lock()
        self.applied = feed.latest()
        on_advance(self.applied)

    def poll(self) -> bool:
        """Apply what is new, unless that needs a rescan or another thread is at it: then
        False, and the caller runs `catch_up` where it may block (a worker thread)."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            found = self.feed.since(self.applied)
            if isinstance(found, Resync):
                return False
            if found.keys:
                self._apply(found.keys)
            self._advance(found.serial)
            return True
        finally:
            self._lock.release()

    def catch_up(self) -> int:
        """Apply everything appended before this call; returns the serial applied."""
        with self._lock:
            found = self.feed.since(self.applied)
            if isinstance(found, Resync):
                log.info("changes %d-%d were compacted: rescanning", self.applied, found.serial)
                self._rescan()
            elif found.keys:
                self._apply(found.keys)
            self._advance(found.serial)
            return self.applied

    def _advance(self, serial: int) -> None:
        if serial != self.applied:
            self.applied = serial
            self.on_advance(serial)

    def start(self, interval: float = POLL_SECONDS) -> Callable[[], None]:
        """Poll in a background thread; returns the function that stops it."""
        stopped = threading.Event()

        def loop() -> None:
            while not stopped.wait(interval):
                try:
                    self.catch_up()
                except Exception:  # the follower must not die; the periodic rescan still runs
                    log.exception("following the change feed failed")

        thread = threading.Thread(target=loop, name="creamery-feed", daemon=True)
        thread.start()

        def stop() -> None:
            stopped.set()
            if thread is not threading.current_thread():
                thread.join(timeout=2)

        return stop

    def forked(self) -> None:
        """In a forked child: the parent's lock may have been held by a thread that is not here."""
        self._lock = threading.Lock()
