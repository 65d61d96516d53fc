"""Waiting for what a server does in the background (file-system events, log lines, reapers)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(condition: Callable[[], object], timeout: float = 5.0, interval: float = 0.02) -> bool:
    """Poll *condition* until it is true; after *timeout*, the truth of one last call.

    An AssertionError raised while polling counts as "not yet"; the last call is not guarded,
    so a condition that asserts fails the test with its own message.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except AssertionError:
            pass
        time.sleep(interval)
    return bool(condition())
