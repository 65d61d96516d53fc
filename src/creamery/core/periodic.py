"""A chore repeated in the background: the server's rescans, the scheduled prune."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable


def repeat(
    seconds: float, chore: Callable[[], object], *, name: str, log: logging.Logger
) -> Callable[[], None]:
    """Run *chore* every *seconds* in a daemon thread named `creamery-<name>`, until the
    returned function is called. A round that fails does not stop the next: an OSError (the
    store or disk is away) is one warning line, anything else is logged with its traceback."""
    stopped = threading.Event()

    def loop() -> None:
        while not stopped.wait(seconds):
            try:
                chore()
            except OSError as error:  # the store is down: the next round tries again
                log.warning("%s failed: %s", name, error)
            except Exception:  # a background chore must not die
                log.exception("%s failed", name)

    threading.Thread(target=loop, name=f"creamery-{name}", daemon=True).start()
    return stopped.set
