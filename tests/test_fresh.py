"""Read-after-copy: a file copied into the directory is served by the very next request.

pypiserver rescans per request, so tools that `cp` a file and then install it work there; with
an index kept in memory, the copy's events must be applied before the request is answered (or,
without events, a 404 and a listing must look on disk first).
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from support.dists import write_wheel
from support.servers import free_port, started

ROUNDS = 200


def _staged_wheels(staging: Path, count: int) -> list[Path]:
    staging.mkdir()
    return [
        staging / write_wheel(str(staging), f"proj{n}", "1.0", f"Name: proj{n}\nVersion: 1.0\n", {})
        for n in range(count)
    ]


def _welcome_count(client: httpx.Client) -> int:
    page = client.get("/")
    assert page.status_code == 200
    found = re.search(r"serving (\d+) packages", page.text)
    assert found, page.text
    return int(found.group(1))


def _copy_then_read(client: httpx.Client, root: Path, wheels: list[Path]) -> list[str]:
    """Copy each wheel, then ask for it at once; every miss, described."""
    misses: list[str] = []
    before = _welcome_count(client)
    for n, wheel in enumerate(wheels):
        shutil.copy(wheel, root)
        project = client.get(f"/simple/proj{n}/")
        if project.status_code != 200 or wheel.name not in project.text:
            misses.append(f"/simple/proj{n}/ answered {project.status_code}")
        listing = client.get("/simple/")
        if f'href="proj{n}/"' not in listing.text:
            misses.append(f"/simple/ lacks proj{n}")
        download = client.get(f"/packages/{wheel.name}")
        if download.status_code != 200 or download.content != wheel.read_bytes():
            misses.append(f"/packages/{wheel.name} answered {download.status_code}")
        metadata = client.get(f"/pypi/proj{n}/json")
        if metadata.status_code != 200:
            misses.append(f"/pypi/proj{n}/json answered {metadata.status_code}")
        if _welcome_count(client) != before + n + 1:
            misses.append(f"the welcome page's count after proj{n} is stale")
    return misses


@pytest.mark.parametrize(
    "watch",
    [
        pytest.param((), id="events"),
        pytest.param(("--disable-watch",), id="no-events"),
    ],
)
def test_a_copied_file_is_served_by_the_next_request(run_server, tmp_path, watch) -> None:
    root = tmp_path / "packages"
    root.mkdir()
    wheels = _staged_wheels(tmp_path / "staging", ROUNDS)
    # No periodic rescan: only the events (or the checks before a 404 and a listing) can help.
    args = ("--rescan-interval", "0", "--disable-fallback", *watch)
    with run_server([root], *args) as server, server.client() as client:
        misses = _copy_then_read(client, root, wheels)
    assert misses == [], f"{len(misses)} misses, first: {misses[:5]}"


def test_a_file_added_to_a_listed_project_is_on_its_page(run_server, tmp_path) -> None:
    """A page hit cannot stat anything: the queued events are applied before it is answered."""
    root = tmp_path / "packages"
    root.mkdir()
    staging = tmp_path / "staging"
    staging.mkdir()
    names = [
        write_wheel(str(staging), "growing", f"1.{n}", f"Name: growing\nVersion: 1.{n}\n", {})
        for n in range(ROUNDS)
    ]
    shutil.copy(staging / names[0], root)
    with (
        run_server([root], "--rescan-interval", "0") as server,
        server.client() as client,
    ):
        assert names[0] in client.get("/simple/growing/").text
        misses = []
        for name in names[1:]:
            (root / name).write_bytes((staging / name).read_bytes())
            if name not in client.get("/simple/growing/").text:
                misses.append(name)
            # A file removed is gone from the page at once, too.
            (root / name).unlink()
            if name in client.get("/simple/growing/").text:
                misses.append(f"{name} (removed)")
    assert misses == [], f"{len(misses)} stale pages, first: {misses[:5]}"


def test_a_file_in_a_new_subdirectory_is_found(run_server, tmp_path) -> None:
    """A directory made and filled at once: its files predate its watch."""
    root = tmp_path / "packages"
    root.mkdir()
    staging = tmp_path / "staging"
    wheels = _staged_wheels(staging, 20)
    with run_server([root], "--rescan-interval", "0") as server, server.client() as client:
        for n, wheel in enumerate(wheels):
            subdirectory = root / f"dir{n}" / "deeper"
            subdirectory.mkdir(parents=True)
            shutil.copy(wheel, subdirectory)
            page = client.get(f"/simple/proj{n}/")
            assert page.status_code == 200 and wheel.name in page.text, n
            assert client.get(f"/packages/dir{n}/deeper/{wheel.name}").status_code == 200
        # A whole tree moved in from outside the root.
        outside = tmp_path / "outside" / "tree"
        outside.mkdir(parents=True)
        extra = write_wheel(str(outside), "moved-in", "1.0", "Name: moved-in\nVersion: 1.0\n", {})
        (outside.parent).rename(root / "moved")
        assert client.get(f"/packages/moved/tree/{extra}").status_code == 200
        assert client.get("/simple/moved-in/").status_code == 200


# ----------------------------------------------------------------------------- in-process units


def test_inotify_drain_applies_what_is_queued_without_waiting(tmp_path: Path) -> None:
    inotify = pytest.importorskip("creamery.changes.inotify")
    if not inotify.available():
        pytest.skip("no inotify here")
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    seen: list[str] = []
    overflows: list[bool] = []
    watch = inotify.Inotify([str(root)], seen.extend, lambda: overflows.append(True))
    try:
        with watch._lock:  # hold the background thread off: the request's side must do it
            (root / "sub" / "a.whl").write_bytes(b"x")
            assert watch.pending()
        watch.drain()
        assert f"{root}/sub/a.whl" in seen
        # Nothing queued any more, once the batch is applied.
        deadline = time.monotonic() + 5
        while watch.pending():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        # A directory made and filled at once is reported (its files are found by a rescan
        # of it), and watched from then on; hidden directories are neither.
        seen.clear()
        (root / "new" / "deeper").mkdir(parents=True)
        (root / ".hidden").mkdir()
        watch.drain()
        assert f"{root}/new" in seen
        (root / "new" / "deeper" / "b.whl").write_bytes(b"y")
        (root / ".hidden" / "c.whl").write_bytes(b"z")
        watch.drain()
        assert f"{root}/new/deeper/b.whl" in seen
        assert not any(".hidden/" in p for p in seen)
        assert overflows == []
    finally:
        watch.stop()


def test_parse_reads_packed_inotify_events() -> None:
    from creamery.changes.inotify import IN_CREATE, IN_ISDIR, _parse

    packed = struct.pack("iIII", 1, IN_CREATE, 0, 8) + b"a.whl\0\0\0"
    packed += struct.pack("iIII", 2, IN_CREATE | IN_ISDIR, 0, 0)
    assert _parse(packed) == [(1, IN_CREATE, 0, "a.whl"), (2, IN_CREATE | IN_ISDIR, 0, "")]


def test_changed_listings_see_a_new_file_even_within_one_timestamp_tick(
    tmp_path: Path,
) -> None:
    from creamery.storage.local import Listing, LocalStorage

    storage = LocalStorage((tmp_path,))
    (tmp_path / "sub").mkdir()
    old = time.time_ns() - 10_000_000_000
    os.utime(tmp_path / "sub", ns=(old, old))
    soon = time.time_ns() + 1_000_123  # listed within a tick of this mtime, whatever the load
    os.utime(tmp_path, ns=(soon, soon))
    list(storage.scan())
    # Listed within a tick of its mtime: a change in that tick leaves no trace, so it counts.
    assert storage.changed_listings() == [Listing("", set(), [])]
    for directory in (tmp_path, tmp_path / "sub"):
        os.utime(directory, ns=(old, old))
    list(storage.scan())
    assert storage.changed_listings() == []
    (tmp_path / "sub" / "x-1.0.tar.gz").write_bytes(b"")
    (tmp_path / "sub" / "new" / "deeper").mkdir(parents=True)
    (tmp_path / "sub" / ".hidden").write_bytes(b"")
    assert storage.changed_listings() == [Listing("sub", {"x-1.0.tar.gz"}, ["sub/new"])]
    for directory in (tmp_path / "sub", tmp_path / "sub/new", tmp_path / "sub/new/deeper"):
        os.utime(directory, ns=(old, old))
    list(storage.scan())
    assert storage.changed_listings() == []
    (tmp_path / "sub").rename(tmp_path / "moved")
    assert {(listing.relpath, listing.files is None) for listing in storage.changed_listings()} >= {
        ("", False),
        ("sub", True),
    }


def test_every_worker_serves_a_copied_file_at_once(run_server, tmp_path) -> None:
    """Each worker applies its own queued events: a new connection may land on any of them.

    (A guard for several workers; the race itself is caught on one keep-alive connection.)
    """
    root = tmp_path / "packages"
    root.mkdir()
    wheels = _staged_wheels(tmp_path / "staging", 20)
    close = {"connection": "close"}
    with run_server([root], "--workers", "2", "--rescan-interval", "0") as server:
        misses = []
        for n, wheel in enumerate(wheels):
            shutil.copy(wheel, root)
            for _ in range(2):
                page = httpx.get(f"{server.url}/simple/proj{n}/", headers=close, timeout=10)
                if page.status_code != 200 or wheel.name not in page.text:
                    misses.append(f"proj{n}: {page.status_code}")
    assert misses == [], f"{len(misses)} misses, first: {misses[:5]}"


def test_without_events_a_download_of_a_copied_file_looks_on_disk(run_server, tmp_path) -> None:
    """A 404 is never answered for a file that is there: the miss `stat`s it in each root."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    wheels = _staged_wheels(tmp_path / "staging", 20)
    args = ("--rescan-interval", "0", "--disable-watch")
    with run_server([first, second], *args) as server, server.client() as client:
        for n, wheel in enumerate(wheels):
            shutil.copy(wheel, second if n % 2 else first)
            download = client.get(f"/packages/{wheel.name}")
            assert download.status_code == 200 and download.content == wheel.read_bytes(), n
        assert client.get("/packages/proj-none-1.0-py3-none-any.whl").status_code == 404


def _inotify_limited(command: list[str]) -> list[str]:
    """*command* in a user namespace whose inotify instance limit is 0: inotify_init fails
    with EMFILE there, as it does when other processes of the user hold them all."""
    limit = "echo 0 > /proc/sys/user/max_inotify_instances"
    shell = ["sh", "-c", f'{limit} && exec "$@"', "sh"]
    return ["unshare", "--user", "--map-root-user", *shell, *command]


def _user_namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(_inotify_limited(["true"]), capture_output=True, timeout=10)
    return probe.returncode == 0


@pytest.mark.skipif(not _user_namespaces_work(), reason="no user namespaces to limit inotify in")
def test_without_inotify_instances_the_server_starts_and_finds_copies(tmp_path: Path) -> None:
    """With the inotify limit reached (EMFILE), the server used to exit 1 at start."""
    root = tmp_path / "packages"
    root.mkdir()
    wheels = _staged_wheels(tmp_path / "staging", 5)
    port = free_port()
    command = [sys.executable, "-m", "creamery", "run", "-i", "127.0.0.1", "-p", str(port)]
    command += ["--rescan-interval", "0", "--disable-fallback", str(root)]
    with started(_inotify_limited(command), port, tmp_path) as server, server.client() as client:
        for n, wheel in enumerate(wheels):
            shutil.copy(wheel, root)
            assert client.get(f"/simple/proj{n}/").status_code == 200, n
        log = server.log()
    assert "file-system events unavailable" in log, log
    assert "Traceback" not in log, log
