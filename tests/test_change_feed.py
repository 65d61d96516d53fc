"""The change feed: serials every process agrees on, compaction, crashes, and the header.

Units of `changes/local_feed.py` (several real processes appending at once, compaction, a torn
last record, a restart), then a real two-worker server: every answer carries X-Creamery-Serial,
and what one worker wrote or found copied is what the next request to any worker sees.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from support.dists import make_wheel
from support.servers import run_server

from creamery.changes import Changes, Resync
from creamery.changes.local_feed import FEED_NAME, LocalFeed

CLOSE = {"Connection": "close"}  # a new connection each: either worker may answer
HTTP = httpx.Client(timeout=10)  # one client: a new one per request costs more than 50 ms
SERIAL = "x-creamery-serial"


# ----------------------------------------------------------------------------- the local feed


def _append_many(state: str, writer: int, count: int, results: multiprocessing.Queue) -> None:
    feed = LocalFeed(Path(state), max_size=2048)  # small: compaction happens meanwhile
    results.put([(feed.append([f"w{writer}/k{n}"]), writer, n) for n in range(count)])


def test_serials_are_unique_and_increasing_across_processes(tmp_path: Path) -> None:
    writers, count = 4, 60
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue = context.Queue()
    processes = [
        context.Process(target=_append_many, args=(str(tmp_path), w, count, results))
        for w in range(writers)
    ]
    for process in processes:
        process.start()
    appended = [record for _ in processes for record in results.get(timeout=60)]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    serials = sorted(serial for serial, _, _ in appended)
    assert serials == list(range(1, writers * count + 1)), "a serial was reused or skipped"
    for writer in range(writers):  # each writer's own records in the order it wrote them
        own = [serial for serial, w, _ in sorted(appended, key=lambda r: r[2]) if w == writer]
        assert own == sorted(own)
    feed = LocalFeed(tmp_path, max_size=2048)
    assert feed.latest() == writers * count
    last = max(appended)
    assert feed.since(last[0] - 1) == Changes(last[0], [f"w{last[1]}/k{last[2]}"])


def test_a_follower_that_keeps_up_never_resyncs_but_one_left_behind_does(tmp_path: Path) -> None:
    feed = LocalFeed(tmp_path, max_size=300)
    follower = LocalFeed(tmp_path)  # another process's view: its own descriptors
    applied = follower.latest()
    seen: list[str] = []
    for n in range(100):  # compacted many times over
        feed.append([f"key{n}"])
        found = follower.since(applied)
        assert isinstance(found, Changes), n
        applied = found.serial
        seen += found.keys
    assert seen == [f"key{n}" for n in range(100)] and applied == 100
    assert (tmp_path / FEED_NAME).stat().st_size < 400
    # A newcomer asking for what was compacted away: rescan, then carry on from 100.
    assert LocalFeed(tmp_path).since(3) == Resync(100)
    assert LocalFeed(tmp_path).since(100) == Changes(100, [])


def test_a_torn_last_record_is_ignored_then_cut_off(tmp_path: Path) -> None:
    feed = LocalFeed(tmp_path)
    feed.append(["a"])
    feed.append(["b", "c"])
    with (tmp_path / FEED_NAME).open("ab") as f:  # a writer that died mid-append
        f.write(b'3 00000000 ["tor')
    reader = LocalFeed(tmp_path)
    assert reader.since(0) == Changes(2, ["a", "b", "c"])
    assert reader.since(2) == Changes(2, [])
    assert LocalFeed(tmp_path).append(["d"]) == 3  # the next appender cuts the torn bytes
    assert reader.since(2) == Changes(3, ["d"])
    assert b"tor" not in (tmp_path / FEED_NAME).read_bytes()


def test_a_damaged_record_means_resync_never_a_wrong_key(tmp_path: Path) -> None:
    feed = LocalFeed(tmp_path)
    feed.append(["a"])
    reader = LocalFeed(tmp_path)
    assert reader.since(0) == Changes(1, ["a"])
    with (tmp_path / FEED_NAME).open("ab") as f:  # complete lines, but not records we wrote
        f.write(b'2 12345678 ["wrong"]\n\0\0\0\0\n')
    assert feed.append(["b"]) == 2  # counted after the last good record
    found = reader.since(1)
    assert isinstance(found, Resync)
    assert reader.since(found.serial) == Changes(found.serial, [])


def test_numbering_survives_restart_compaction_and_a_lost_journal(tmp_path: Path) -> None:
    feed = LocalFeed(tmp_path, max_size=100)
    for n in range(10):
        feed.append([f"k{n}"])
    feed.close()
    restarted = LocalFeed(tmp_path, max_size=100)
    assert restarted.latest() == 10
    assert restarted.append(["after"]) == 11
    (tmp_path / FEED_NAME).unlink()  # the shared serial still knows where numbering was
    assert LocalFeed(tmp_path).append(["again"]) == 12
    assert LocalFeed(tmp_path).since(11) == Changes(12, ["again"])


def test_keys_are_kept_exactly(tmp_path: Path) -> None:
    keys = ["sub dir/a b-1.0.tar.gz", "new\nline", "tab\there", "caf\u00e9", "raw\udcff"]
    feed = LocalFeed(tmp_path)
    feed.append(keys)
    assert LocalFeed(tmp_path).since(0) == Changes(1, keys)


def test_another_process_announces_its_serial_through_shared_memory(tmp_path: Path) -> None:
    feed = LocalFeed(tmp_path)
    assert feed.latest() == 0  # maps the shared serial
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from creamery.changes.local_feed import LocalFeed
        feed = LocalFeed(Path(sys.argv[1]))
        print(feed.append(["x"]), feed.append(["y"]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.split() == ["1", "2"], done.stderr
    assert feed.announced() == 2  # no read of the journal


def test_a_first_write_is_announced_to_a_reader_that_started_before_the_state_dir(
    tmp_path: Path,
) -> None:
    """Serving alone creates no state directory; the first write (another process) makes it,
    and a reader that could map nothing at its start still hears of it without polling."""
    state = tmp_path / "not-yet"
    feed = LocalFeed(state)
    assert feed.latest() == 0 and not state.exists()
    state.mkdir()
    writer = LocalFeed(state)
    assert writer.append(["first"]) == 1
    assert feed.announced() == 1


# ----------------------------------------------------------------------------- a real server


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("feed-root")
    make_wheel(root, "present", "1.0")
    with run_server(
        [root], "--workers", "2", "-P", ".", "-a", ".", "--disable-fallback", "--metrics"
    ) as server:
        yield server


def _serial(response: httpx.Response) -> int:
    assert SERIAL in response.headers, (response.status_code, dict(response.headers))
    return int(response.headers[SERIAL])


def test_every_answer_carries_the_serial(two_workers) -> None:
    url = two_workers.url
    page = HTTP.get(f"{url}/simple/present/", headers=CLOSE)
    etag = page.headers["etag"]
    answers = [
        page,
        HTTP.get(f"{url}/simple/present/", headers={**CLOSE, "If-None-Match": etag}),
        HTTP.get(f"{url}/simple/absent/", headers=CLOSE),
        HTTP.get(f"{url}/simple/present/", headers={**CLOSE, "Accept": "image/png"}),
        HTTP.get(f"{url}/simple/Present/", headers=CLOSE),
        HTTP.get(f"{url}/simple/", headers=CLOSE),
        HTTP.get(f"{url}/packages/present-1.0-py3-none-any.whl", headers=CLOSE),
        HTTP.get(
            f"{url}/packages/present-1.0-py3-none-any.whl",
            headers={**CLOSE, "Range": "bytes=0-3"},
        ),
        HTTP.get(f"{url}/packages/absent-1.0.tar.gz", headers=CLOSE),
        HTTP.get(f"{url}/", headers=CLOSE),
        HTTP.get(f"{url}/packages/", headers=CLOSE),
        HTTP.get(f"{url}/pypi/present/json", headers=CLOSE),
        HTTP.get(f"{url}/health", headers=CLOSE),
        HTTP.get(f"{url}/metrics", headers=CLOSE),
        HTTP.get(f"{url}/nowhere", headers=CLOSE),
        HTTP.delete(f"{url}/simple/present/", headers=CLOSE),
        HTTP.post(f"{url}/", data={":action": "nonsense"}, headers=CLOSE),
    ]
    statuses = {r.status_code for r in answers}
    assert {200, 206, 301, 304, 404, 405, 406} <= statuses, statuses
    for response in answers:
        assert _serial(response) >= 0
        assert response.headers.get_list(SERIAL) == [response.headers[SERIAL]]  # once


def test_an_upload_raises_the_serial_and_every_worker_sees_it(two_workers, tmp_path) -> None:
    url = two_workers.url
    before = max(_serial(HTTP.get(f"{url}/health", headers=CLOSE)) for _ in range(6))
    for n in range(4):
        wheel = make_wheel(tmp_path, "fed", f"{n}.0")
        answer = HTTP.post(
            f"{url}/",
            data={":action": "file_upload"},
            files={"content": (wheel.name, wheel.read_bytes())},
            headers=CLOSE,
        )
        assert answer.status_code == 200, answer.text
        written = _serial(answer)
        assert written > before
        before = written
        for _ in range(6):  # both workers, at once: a hit for every version after the first
            page = HTTP.get(f"{url}/simple/fed/", headers=CLOSE)
            assert page.status_code == 200 and wheel.name in page.text
            assert _serial(page) >= written
            served = HTTP.get(f"{url}/packages/{wheel.name}", headers=CLOSE)
            assert served.content == wheel.read_bytes()
        # A yank changes only the state directory (no file event): the feed alone carries it.
        yank = {"project": "fed", "version": f"{n}.0", "reason": f"r{n}"}
        answer = HTTP.post(f"{url}/-/yank", json=yank, headers=CLOSE)
        assert answer.status_code == 200, answer.text
        assert _serial(answer) == before + 1
        before = _serial(answer)
        for _ in range(12):
            page = HTTP.get(f"{url}/simple/fed/", headers=CLOSE)
            assert f'data-yanked="r{n}"' in page.text
            assert _serial(page) >= before


def test_a_copied_file_is_served_at_once_by_either_worker(two_workers, tmp_path) -> None:
    root = two_workers.roots[0]
    for n in range(6):
        wheel = make_wheel(tmp_path / f"staging{n}", "copied", f"{n}.0")
        shutil.copy(wheel, root / wheel.name)
        served = HTTP.get(f"{two_workers.url}/packages/{wheel.name}", headers=CLOSE)
        assert served.status_code == 200 and served.content == wheel.read_bytes()
        page = HTTP.get(
            f"{two_workers.url}/simple/copied/",
            headers={**CLOSE, "Accept": "application/vnd.pypi.simple.v1+json"},
        )
        assert wheel.name in {f["filename"] for f in json.loads(page.text)["files"]}
