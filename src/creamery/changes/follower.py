"""One process following the change feed: the serial it has applied, kept current.

A background thread polls the feed every *interval* seconds (the local feed: 50 ms, two
`stat`s; an object feed: 1 s, one list request, so a write is seen by every replica within 2 s).
Requests don't poll: they compare the feed's `announced()` serial (a memory load for the local
feed) with `applied`, and only when the feed is ahead, or before an answer that must not be
stale (a 404, a listing, a write's reply), catch up themselves. So a hit costs no system call,
and a client reads its own writes on any worker process.

A feed that can't be read (a store that is down) is logged once per outage, not per poll, and
polled again at the same interval until it answers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from creamery.changes import ChangeFeed, Resync

log = logging.getLogger("creamery.changes")

POLL_SECONDS = 0.05  # the local feed's; an object feed's is `object_feed.POLL_SECONDS`


class Follower:
    def __init__(
        self,
        feed: ChangeFeed,
        apply: Callable[[list[str]], None],
        rescan: Callable[[], None],
        on_advance: Callable[[int], None] = lambda serial: None,
        *,
        interval: float = POLL_SECONDS,
    ) -> None:
        """*apply* refreshes changed keys, *rescan* compares everything (after a `Resync`);
        *on_advance* hears every new applied serial; *interval*: seconds between two polls of
        the background thread. Start following before the initial scan: what is appended
        meanwhile is applied again, never missed. (An index restored from a snapshot instead
        `resume`s from the snapshot's serial.)"""
        if interval <= 0:
            raise ValueError("the poll interval must be positive")
        self.feed = feed
        self.interval = interval
        self._apply = apply
        self._rescan = rescan
        self.on_advance = on_advance  # the app sets it, to stamp responses
        self._lock = threading.Lock()
        self._covered = 0.0  # when the last complete catch-up began (time.monotonic)
        try:
            self.applied = feed.latest()
        except OSError as error:  # a store that is down: the first catch-up rescans if needed
            log.warning("can't read the change feed (%s): following it from the start", error)
            self.applied = feed.announced()
        on_advance(self.applied)

    def resume(self, serial: int) -> None:
        """The index now holds what was applied up to *serial* (it was restored from a
        snapshot): the next catch-up applies what came after (or rescans when that is gone)."""
        with self._lock:
            self.applied = serial
            self._covered = 0.0
            self.on_advance(serial)

    def poll(self) -> bool:
        """Apply what is new, unless that needs a rescan or another thread is at it: then
        False, and the caller runs `catch_up` where it may block (a worker thread)."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            started = time.monotonic()
            found = self.feed.since(self.applied)
            if isinstance(found, Resync):
                return False
            if found.keys:
                self._apply(found.keys)
            self._advance(found.serial)
            self._covered = started
            return True
        finally:
            self._lock.release()

    def catch_up(self, at_least: int | None = None) -> int:
        """Apply everything appended before this call; returns the serial applied. Callers
        that wait while another thread catches up share its work when it began after they
        arrived (a burst of misses on an object feed makes one LIST, not one each). With
        *at_least* (the serial the feed announced), a caller needs no more than that serial
        applied: when the catch-up it waited for got there, it reads nothing itself."""
        arrived = time.monotonic()
        with self._lock:
            if self._covered > arrived or (at_least is not None and self.applied >= at_least):
                return self.applied
            started = time.monotonic()
            found = self.feed.since(self.applied)
            if isinstance(found, Resync):
                log.info("changes %d-%d were compacted: rescanning", self.applied, found.serial)
                self._rescan()
            elif found.keys:
                self._apply(found.keys)
            self._advance(found.serial)
            self._covered = started
            return self.applied

    def _advance(self, serial: int) -> None:
        if serial != self.applied:
            self.applied = serial
            self.on_advance(serial)

    def start(self, interval: float | None = None) -> Callable[[], None]:
        """Poll in a background thread every *interval* seconds (default: the constructor's);
        returns the function that stops it."""
        every = self.interval if interval is None else interval
        stopped = threading.Event()

        def loop() -> None:
            unavailable = False
            while not stopped.wait(every):
                try:
                    self.catch_up()
                except OSError as error:  # the store is down: once per outage, not per poll
                    if not unavailable:
                        log.warning("can't read the change feed (%s): retrying", error)
                        unavailable = True
                    continue
                except Exception:  # the follower must not die; the periodic rescan still runs
                    log.exception("following the change feed failed")
                    continue
                if unavailable:
                    log.warning("the change feed can be read again")
                    unavailable = False

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
