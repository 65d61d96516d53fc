"""Gaps that pypiserver's own test suite found when pointed at creamery (issue 9, second round).

pypiserver's app holds no operating-system resources, so its users build one app per test (its
own suite builds ~170 in one process) or several per process. creamery's must keep working when
the resources it would like (file-system events) run out.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import describe

# In a child process: no file descriptor left, as at the per-user inotify instance limit (the
# kernel answers EMFILE for both), then ask for file events; then serve a copied file.
_WATCH_WITHOUT_DESCRIPTORS = textwrap.dedent(
    """
    import errno, os, resource, sys
    from pathlib import Path
    from creamery.storage.local import LocalStorage
    import watchdog.events, watchdog.observers  # imported before: an import needs descriptors

    root = Path(sys.argv[1])
    storage = LocalStorage((root,))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 256), hard))
    fillers = []
    try:
        while True:
            fillers.append(os.dup(0))
    except OSError as error:
        assert error.errno == errno.EMFILE, error
    try:
        watch = storage.watch(lambda paths: None, lambda: None)
    finally:
        for fd in fillers:
            os.close(fd)
    print("watch:", watch)
    """
)


def test_file_events_unavailable_fall_back_to_rescans(tmp_path: Path) -> None:
    """At the inotify instance limit (EMFILE) the app still builds, without file events.

    Was: our inotify reader gave up and fell back to watchdog, whose observer raised the same
    EMFILE out of `wsgi_app()`, so the 129th app in one process (or any app on a machine whose
    editors use up the user's 128 instances) could not be built at all.
    """
    result = subprocess.run(
        [sys.executable, "-c", _WATCH_WITHOUT_DESCRIPTORS, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, describe(result)
    assert "watch: None" in result.stdout, describe(result)
    assert "relying on periodic rescans" in result.stderr, describe(result)
