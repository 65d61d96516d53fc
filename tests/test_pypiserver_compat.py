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


# pypiserver reads these two names otherwise than the specs (and creamery) do: it shows
# pywin32 version "217-55" (the wheel's build tag joined to the version) and project "ABC12"
# version "34_V1X-1.2.3"; creamery lists them as pywin32 217 and abc12-34-v1x 1.2.3, which pip
# can install. A removal spelled from what pypiserver showed must still find the file.
_BUILD_TAGGED = "pywin32-217-55-cp27-none-win32.whl"
_PLAIN = "pywin32-217-cp27-none-win32.whl"
_LEGACY = "ABC12-34_V1X-1.2.3.zip"


def test_remove_pkg_spelled_as_pypiserver_showed_it(run_server, tmp_path: Path) -> None:
    """Was: `remove_pkg pywin32 217-55` and `remove_pkg ABC12 34_V1X-1.2.3` answered 404 (they
    remove the file under pypiserver), and nothing removed the build-tagged wheel alone."""
    for name in (_BUILD_TAGGED, _PLAIN, _LEGACY, _LEGACY + ".asc"):
        (tmp_path / name).write_bytes(b"x")
    with run_server([tmp_path], "-P", ".", "-a", ".") as server, server.client() as http:

        def remove(name: str, version: str) -> int:
            form = {":action": "remove_pkg", "name": name, "version": version}
            return http.post("/", data=form).status_code

        assert remove("pywin32", "217-55") == 200
        assert sorted(p.name for p in tmp_path.glob("pywin32*")) == [_PLAIN]
        assert remove("ABC12", "34_V1X-1.2.3") == 200
        assert not list(tmp_path.glob("ABC12*")), "the file and its signature are removed"
        assert remove("pywin32", "217-55") == 404, "nothing left of that spelling"
        assert remove("pywin32", "217-56") == 404
        assert http.get("/simple/pywin32/").text.count(".whl#") == 1


def test_pypiserver_spelling_is_its_guess_of_the_filename() -> None:
    from creamery.names import guess_like_pypiserver

    # pypiserver's own table (tests/test_pkg_helpers.py), the rows creamery reads otherwise
    assert guess_like_pypiserver(_BUILD_TAGGED) == ("pywin32", "217-55")
    assert guess_like_pypiserver(_LEGACY) == ("ABC12", "34_V1X-1.2.3")
    assert guess_like_pypiserver(_PLAIN) == ("pywin32", "217")


def test_serving_alone_leaves_the_default_root_as_it_was(run_server, tmp_path: Path) -> None:
    """deploy.md promises: the default state directory (`.creamery/` in the first root) is made
    by the first write, never by serving, so a read-only use keeps pypiserver's layout."""
    import creamery

    name = "served-1.0.tar.gz"
    (tmp_path / name).write_bytes(b"x")
    app = creamery.wsgi_app(roots=[str(tmp_path)])  # built and scanned, like pypiserver's app()
    with run_server([tmp_path], "-P", ".", "-a", ".") as server, server.client() as http:
        for path in ("/", "/health", "/simple/", "/simple/served/", f"/packages/{name}"):
            assert http.get(path).status_code == 200, path
        assert http.get("/served/json").status_code == 200
        assert http.get("/packages/").status_code == 200
    assert app is not None
    assert [p.name for p in tmp_path.iterdir()] == [name]
