"""Gaps that pypiserver's own test suite found when pointed at creamery (issue 9, second round).

pypiserver's app holds no operating-system resources, so its users build one app per test (its
own suite builds ~170 in one process) or several per process. creamery's must keep working when
the resources it would like (file-system events) run out, and give back what it holds. Also
what running that suite turned up on the way (a damaged facts cache was never rebuilt).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from support.clients import describe

from creamery.catalog.facts import FactsCache
from creamery.storage.local import LocalStorage

# In a child process: no file descriptor left, as at the per-user inotify instance limit (the
# kernel answers EMFILE for both), then ask for file events; then serve a copied file.
_WATCH_WITHOUT_DESCRIPTORS = textwrap.dedent(
    """
    import errno, os, resource, sys
    from pathlib import Path
    from creamery.changes import local_events
    import watchdog.events, watchdog.observers  # imported before: an import needs descriptors

    root = Path(sys.argv[1])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 256), hard))
    fillers = []
    try:
        while True:
            fillers.append(os.dup(0))
    except OSError as error:
        assert error.errno == errno.EMFILE, error
    try:
        watch = local_events.watch((root,), lambda paths: None, lambda: None)
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
    from creamery.core.names import guess_like_pypiserver

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


# In a child process: build many WSGI apps one after another, as pypiserver's users do in their
# tests, each answering requests, and drop each; what they held must go with them.
_MANY_APPS = textwrap.dedent(
    """
    import gc, io, os, sys, threading, time
    from pathlib import Path
    import creamery

    def get(app, path):
        started = []
        environ = {
            "REQUEST_METHOD": "GET", "PATH_INFO": path, "SCRIPT_NAME": "", "QUERY_STRING": "",
            "SERVER_NAME": "x", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(), "wsgi.errors": sys.stderr,
        }
        body = app(environ, lambda status, headers, exc_info=None: started.append(status))
        data = b"".join(body)
        body.close()
        return started[0], data

    def held():
        return len(os.listdir("/proc/self/fd")), threading.active_count()

    def gone(before):
        now = held()
        return now[0] <= before[0] and now[1] <= before[1]

    base = Path(sys.argv[1])
    keeper = creamery.wsgi_app(roots=[str(base)], state_dir=str(base / ".state"))
    (base / "kept-1.0.tar.gz").write_bytes(b"kept")
    before = held()
    for n in range(40):
        root = base / f"root{n}"
        root.mkdir()
        (root / "pkg-1.0.tar.gz").write_bytes(b"x")
        app = creamery.wsgi_app(roots=[str(root)], state_dir=str(base / f"state{n}"))
        assert get(app, "/health")[0] == "200 OK"
        assert get(app, "/packages/pkg-1.0.tar.gz") == ("200 OK", b"x")
        del app
    deadline = time.monotonic() + 20
    while not gone(before) and time.monotonic() < deadline:
        gc.collect()  # as the interpreter does by itself in time: some apps end in a cycle
        time.sleep(0.1)
    print("before", before, "after", held())
    assert gone(before), f"descriptors and threads still held: {before} -> {held()}"
    assert get(keeper, "/packages/kept-1.0.tar.gz") == ("200 OK", b"kept"), "the kept app works"
    """
)


def test_a_dropped_wsgi_app_releases_its_threads_and_descriptors(tmp_path: Path) -> None:
    """Was: every `wsgi_app()` kept 3 threads and 6 descriptors (its watcher, the event loop
    a2wsgi runs it on) for the life of the process, so a test suite building one app per test
    ran into the descriptor limit (1024 by default) after ~160 apps, and the inotify instance
    limit (128 per user) well before. Then: while one app was kept, each app dropped since the
    last one was built left the descriptor of its facts cache connection behind (SQLite keeps
    it while another connection of the process locks the file, as every one in WAL mode does):
    the apps of a process now share one connection per cache file."""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}  # the facts cache too
    result = subprocess.run(
        [sys.executable, "-c", _MANY_APPS, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, describe(result)


def _damaged_database(path: Path) -> None:
    """A real SQLite file whose first page's b-tree header was overwritten."""
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    with path.open("r+b") as f:
        f.seek(100)
        f.write(b"\xff" * 100)


@pytest.mark.parametrize("damage", ["malformed", "not a database"])
def test_a_damaged_facts_cache_is_started_afresh(run_server, tmp_path: Path, damage: str) -> None:
    """Was: 'facts cache disabled (database disk image is malformed): facts are recomputed after
    a restart', at every start, for good: the disposable cache was never rebuilt."""
    cache, root = tmp_path / "cache", tmp_path / "root"
    cache.mkdir()
    root.mkdir()
    database = cache / "facts.sqlite3"
    if damage == "malformed":
        _damaged_database(database)
    else:
        database.write_bytes(b"this is not a database\n" * 200)
    (root / "cached-1.0.tar.gz").write_bytes(b"x")
    with run_server([root], "--cache-dir", str(cache)) as server, server.client() as http:
        assert "#sha256=" in http.get("/simple/cached/").text
        assert "was damaged" in server.log()
    db = sqlite3.connect(database)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    paths = [row[0] for row in db.execute("SELECT path FROM digests")]
    assert paths == ["cached-1.0.tar.gz"], "the new cache is used"


def _descriptors_of(path: Path) -> int:
    """How many descriptors of this process are open on *path*."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor is gone by now
            count += os.readlink(f"/proc/self/fd/{fd}") == str(path)
    return count


def test_the_facts_caches_of_a_process_share_one_connection_per_file(tmp_path: Path) -> None:
    """Was: one SQLite connection per app. In WAL mode an open connection locks the database
    file, and SQLite keeps the descriptor of a connection closed meanwhile (closing it would
    drop the other's POSIX locks): a kept app made each dropped one leave a descriptor."""
    root, cache = tmp_path / "root", tmp_path / "cache"
    root.mkdir()
    (root / "one-1.0.tar.gz").write_bytes(b"one")
    storage = LocalStorage((root,))
    (stored,) = storage.scan()
    database = cache / "facts.sqlite3"
    kept = FactsCache(cache, (), storage)
    assert _descriptors_of(database) == 1
    for _ in range(5):
        dropped = FactsCache(cache, (), storage)
        digests = dropped.digests(stored)
        dropped.close()
    assert _descriptors_of(database) == 1
    assert kept.known_digests(stored) == digests, "what a dropped one kept, the kept one reads"
    kept.close()
    assert _descriptors_of(database) == 0, "the last one closes the file"
    again = FactsCache(cache, (), storage)
    assert again.known_digests(stored) == digests, "and a new one opens it again"
    again.close()


def test_a_forked_child_keeps_the_facts_it_computes(tmp_path: Path) -> None:
    """gunicorn --preload and WSGI hosts fork workers from a process holding the cache. The
    child used its parent's SQLite connection: it holds none of the parent's POSIX locks, so
    the parent, closing its last connection, deleted the WAL the child went on writing to.
    The child's facts were lost, and with a third process writing, CI saw "database disk
    image is malformed"."""
    root, cache = tmp_path / "root", tmp_path / "cache"
    root.mkdir()
    for name in ("parent", "child"):
        (root / f"{name}-1.0.tar.gz").write_bytes(name.encode())
    storage = LocalStorage((root,))
    by_name = {s.key.partition("-")[0]: s for s in storage.scan()}
    parent = FactsCache(cache, (), storage)
    parent.digests(by_name["parent"])
    go, done = os.pipe(), os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: computes once the parent let go of the file
        os.read(go[0], 1)
        computed = parent.digests(by_name["child"])
        os.write(done[1], computed.sha256.encode())
        os._exit(0)
    parent.close()
    os.write(go[1], b"go")
    sha256 = os.read(done[0], 64).decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    again = FactsCache(cache, (), storage)
    kept = again.known_digests(by_name["child"])
    assert kept is not None and kept.sha256 == sha256, "the child's fact is in the file"
    assert again.known_digests(by_name["parent"]) is not None
    again.close()
    with sqlite3.connect(cache / "facts.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_child_forked_while_another_thread_held_the_cache_s_lock_uses_the_cache(
    tmp_path: Path,
) -> None:
    """Was: the child, to open its own connection, took the cache's lock, which a thread of
    the parent (a feed follower, a request) may have held at the fork; that thread is not
    in the child, so the lock was never released there and the child's first lookup hung
    for good. Now the child starts with the cache's locks free."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "forked-1.0.tar.gz").write_bytes(b"forked")
    storage = LocalStorage((root,))
    (stored,) = storage.scan()
    parent = FactsCache(tmp_path / "cache", (), storage)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with parent._lock:
            held.set()
            release.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    done = os.pipe()
    pid = os.fork()
    if pid == 0:
        computed = parent.digests(stored)
        os.write(done[1], computed.sha256.encode())
        os._exit(0)
    release.set()
    holder.join()
    # A hang detector, not a timing: the child answers at once or never.
    answered, _, _ = select.select([done[0]], [], [], 60)
    if not answered:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert answered, "the child hung on the lock a parent's thread held at the fork"
    assert os.waitstatus_to_exitcode(status) == 0
    assert os.read(done[0], 64).decode() == parent.digests(stored).sha256
    parent.close()
