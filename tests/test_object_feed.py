"""The change feed in a `Storage`: `changes/object_feed.py` on a local directory and on S3.

The behaviours tests/test_change_feed.py checks for the local journal, where they apply: serials
in order and without gaps across threads and processes racing on conditional creates, `since`,
`Resync` after compaction or for a damaged or deleted record, `announced` without I/O; then
what only a store over a network has: an outage (the poll fails, is logged once, recovers; an
append that failed is recorded when the store is back).
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.polling import wait_for
from support.s3 import REGION, S3Server

from creamery.changes import Changes, Resync
from creamery.changes.follower import Follower
from creamery.changes.object_feed import ObjectFeed, encode, record_key
from creamery.core.objects import ObjectRoot, S3Options
from creamery.storage import ScansAfter, Storage
from creamery.storage.layered import LayeredStorage
from creamery.storage.local import LocalStorage

# One maker of a store per backend: each call a new client on the same place (another replica).
MakeStore = Callable[[], Storage]


def _local(path: Path) -> MakeStore:
    path.mkdir(parents=True, exist_ok=True)
    return lambda: LocalStorage((path,))


def _s3_options(s3: S3Server, timeout: float = 10.0) -> S3Options:
    return S3Options(endpoint_url=s3.endpoint, region=REGION, timeout=timeout)


def _s3(s3: S3Server, bucket: str, timeout: float = 10.0) -> MakeStore:
    S3Storage = pytest.importorskip("creamery.storage.s3").S3Storage
    root = ObjectRoot(bucket, "index").state()
    return lambda: S3Storage(root, _s3_options(s3, timeout))


@pytest.fixture
def s3_env(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    pytest.importorskip("obstore")
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    return s3


@pytest.fixture(params=["local", "s3"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> MakeStore:
    if request.param == "local":
        return _local(tmp_path / "state")
    s3 = request.getfixturevalue("s3_env")
    return _s3(s3, request.getfixturevalue("s3_bucket"))


def _feed(make_store: MakeStore, **options: object) -> ObjectFeed:
    return ObjectFeed(make_store(), background=False, **options)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- the protocol


def test_scan_after_lists_in_key_order_from_a_key(make_store: MakeStore) -> None:
    store = make_store()
    assert isinstance(store, ScansAfter)
    for name in ("b/3", "b/1", "b/10", "b/2", "bb/1", "a/1", "b/sub/x"):
        store.put(name, name.encode(), if_absent=True)
    keys = [s.key for s in store.scan_after("b", "b/0")]
    assert keys == ["b/1", "b/10", "b/2", "b/3", "b/sub/x"]  # bytewise, below b/ only
    assert [s.key for s in store.scan_after("b", "b/10")] == ["b/2", "b/3", "b/sub/x"]
    assert [s.key for s in store.scan_after("b/", "b/1")] == ["b/10", "b/2", "b/3", "b/sub/x"]
    assert list(store.scan_after("b", "b/z")) == []
    assert list(store.scan_after("b", "a/0")) == []  # a key outside the prefix
    assert list(store.scan_after("missing", "missing/0")) == []
    assert list(store.scan_after("../b", "../b/0")) == []


def _records(store: Storage) -> list[str]:
    return sorted(s.key for s in store.scan("changes"))


def test_a_store_that_cannot_list_from_a_key_is_listed_whole(tmp_path: Path) -> None:
    """Any Storage: a layered one has no `scan_after`, its feed lists the prefix and sorts."""
    (tmp_path / "state").mkdir()
    store = LayeredStorage([LocalStorage((tmp_path / "state",))])
    assert not isinstance(store, ScansAfter)
    feed = ObjectFeed(store, keep=3, step=5, min_age=0, background=False)
    for n in range(12):
        feed.append([f"k{n}"])
    reader = ObjectFeed(LayeredStorage([LocalStorage((tmp_path / "state",))]))
    assert reader.latest() == 12
    assert reader.since(9) == Changes(12, ["k9", "k10", "k11"])
    assert reader.since(2) == Resync(12)
    assert _records(store) == [record_key(n) for n in range(8, 13)]


def test_serials_follow_each_other_and_since_gives_what_came_after(
    make_store: MakeStore,
) -> None:
    feed = _feed(make_store)
    assert feed.latest() == 0 and feed.since(0) == Changes(0, [])
    assert feed.append(["a"]) == 1
    assert feed.append(["b", "c"]) == 2
    assert feed.append(["a", "d"]) == 3
    reader = _feed(make_store)  # another replica
    assert reader.latest() == 3
    assert reader.since(0) == Changes(3, ["a", "b", "c", "d"])
    assert reader.since(1) == Changes(3, ["b", "c", "a", "d"])
    assert reader.since(3) == Changes(3, [])
    assert reader.append(["e"]) == 4
    assert feed.since(3) == Changes(4, ["e"])
    assert feed.append(["f"]) == 5  # it knew 4 from reading: no lost race
    assert _feed(make_store).append(["g"]) == 6  # a newcomer lists first


def test_keys_are_kept_exactly(make_store: MakeStore) -> None:
    keys = ["sub dir/a b-1.0.tar.gz", "new\nline", "tab\there", "caf\u00e9", "raw\udcff", ""]
    _feed(make_store).append(keys)
    assert _feed(make_store).since(0) == Changes(1, keys)


def test_announced_is_what_this_process_read_or_wrote_without_io(tmp_path: Path) -> None:
    feed = _feed(_local(tmp_path / "state"))
    other = _feed(_local(tmp_path / "state"))
    assert feed.announced() == 0
    feed.append(["a"])
    feed.append(["b"])
    assert feed.announced() == 2
    other.append(["c"])
    assert feed.announced() == 2  # not polled yet: no channel but the store
    (tmp_path / "state").rename(tmp_path / "gone")
    assert feed.announced() == 2  # it did not look
    assert other.latest() == 0  # this one looked
    (tmp_path / "gone").rename(tmp_path / "state")
    assert feed.since(2) == Changes(3, ["c"]) and feed.announced() == 3


def test_announced_needs_no_store(s3_env: S3Server, s3_bucket: str) -> None:
    feed = _feed(_s3(s3_env, s3_bucket, timeout=1.0))
    feed.append(["a"])
    s3_env.stop()
    try:
        assert feed.announced() == 1  # would hang for its timeout if it asked the store
    finally:
        s3_env.start()


# ----------------------------------------------------------------------------- compaction


def test_a_follower_that_keeps_up_never_resyncs_but_one_left_behind_does(
    make_store: MakeStore,
) -> None:
    feed = _feed(make_store, keep=5, step=5, min_age=0)
    follower = _feed(make_store)
    applied = follower.latest()
    seen: list[str] = []
    for n in range(30):  # compacted every 5 appends, 5 kept
        feed.append([f"key{n}"])
        found = follower.since(applied)
        assert isinstance(found, Changes), n
        applied = found.serial
        seen += found.keys
    assert seen == [f"key{n}" for n in range(30)] and applied == 30
    left = _records(make_store())
    assert left == [record_key(n) for n in range(26, 31)]
    # A newcomer asking for what was compacted away: rescan, then carry on from 30.
    assert _feed(make_store).since(3) == Resync(30)
    assert _feed(make_store).since(24) == Resync(30)
    assert _feed(make_store).since(25) == Changes(30, [f"key{n}" for n in range(25, 30)])
    assert _feed(make_store).since(30) == Changes(30, [])
    assert _feed(make_store).latest() == 30
    assert _feed(make_store).append(["more"]) == 31


def test_young_records_are_not_compacted(make_store: MakeStore) -> None:
    feed = _feed(make_store, keep=2, step=4)  # min_age: 5 minutes
    for n in range(8):
        feed.append([f"k{n}"])
    assert len(_records(make_store())) == 8
    assert feed.compact(8, now_ns=2**62) == 6  # later: all but the last `keep` go
    assert feed.since(6) == Changes(8, ["k6", "k7"])


def test_compaction_in_the_background(make_store: MakeStore) -> None:
    feed = ObjectFeed(make_store(), keep=3, step=10, min_age=0)
    for n in range(10):
        feed.append([f"k{n}"])
    feed.close()  # waits for the compactor
    assert _records(make_store()) == [record_key(n) for n in (8, 9, 10)]


def test_a_follower_far_behind_rescans_instead_of_reading_every_record(
    make_store: MakeStore,
) -> None:
    feed = _feed(make_store, max_backlog=4)
    for n in range(6):
        feed.append([f"k{n}"])
    assert feed.since(0) == Resync(6)
    assert feed.since(2) == Changes(6, ["k2", "k3", "k4", "k5"])


def test_a_reader_ahead_of_the_feed_resyncs(make_store: MakeStore) -> None:
    """The feed was restored from a backup (or started afresh): serials it never gave."""
    feed = _feed(make_store)
    feed.append(["a"])
    feed.append(["b"])
    assert _feed(make_store).since(7) == Resync(2)
    assert _feed(make_store).since(3) == Resync(2)
    assert _feed(make_store).since(2) == Changes(2, [])


# ----------------------------------------------------------------------------- damage


def test_a_damaged_record_means_resync_never_a_wrong_key(make_store: MakeStore) -> None:
    store = make_store()
    feed = ObjectFeed(store, background=False)
    feed.append(["a"])
    reader = _feed(make_store)
    assert reader.since(0) == Changes(1, ["a"])
    good = encode(["right"])
    # Not records an appender wrote: a flipped byte, a torn body, no JSON list.
    for serial, junk in (
        (2, good.replace(b"right", b"wrong")),
        (3, good[:-5]),
        (4, b'00000000 {"a": 1}\n'),
    ):
        store.put(record_key(serial), junk, if_absent=True)
    assert feed.append(["b"]) == 5  # counted after what is there
    found = reader.since(1)
    assert found == Resync(5)
    assert reader.since(found.serial) == Changes(5, [])
    assert _feed(make_store).since(4) == Changes(5, ["b"])


def test_a_deleted_record_is_a_hole_then_a_resync(make_store: MakeStore) -> None:
    feed = _feed(make_store)
    for n in range(1, 6):
        feed.append([f"k{n}"])
    make_store().delete(record_key(3))
    reader = _feed(make_store)
    assert reader.since(1) == Changes(2, ["k2"])  # up to the hole: it may be in flight
    assert reader.since(2) == Resync(5)  # listed twice: not in flight
    assert reader.since(3) == Changes(5, ["k4", "k5"])  # the record at 3 is gone: fine
    assert feed.append(["k6"]) == 6


def test_names_that_are_no_records_are_ignored(make_store: MakeStore) -> None:
    store = make_store()
    store.put("changes/README", b"not a record", if_absent=True)
    store.put("changes/123", b"not one of ours", if_absent=True)
    feed = ObjectFeed(store, background=False)
    assert feed.append(["a"]) == 1
    assert _feed(make_store).since(0) == Changes(1, ["a"])


# ----------------------------------------------------------------------------- concurrency


def test_threads_with_feeds_of_their_own_get_distinct_gapless_serials(
    make_store: MakeStore,
) -> None:
    writers, count = 6, 15
    results: list[tuple[int, int, int]] = []
    lock = threading.Lock()
    shared = _feed(make_store)  # two threads share one feed, the others are replicas

    def write(writer: int) -> None:
        feed = shared if writer < 2 else _feed(make_store)
        for n in range(count):
            serial = feed.append([f"w{writer}/k{n}"])
            with lock:
                results.append((serial, writer, n))

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    serials = sorted(serial for serial, _, _ in results)
    assert serials == list(range(1, writers * count + 1)), "a serial was reused or skipped"
    for writer in range(writers):  # each writer's own records in the order it wrote them
        own = [s for s, w, _ in sorted(results, key=lambda r: r[2]) if w == writer]
        assert own == sorted(own)
    found = _feed(make_store).since(0)
    assert isinstance(found, Changes) and found.serial == writers * count
    assert sorted(found.keys) == sorted(f"w{w}/k{n}" for _, w, n in results)


def _append_many(kind: str, where: str, env: dict[str, str], writer: int, count: int, results):  # type: ignore[no-untyped-def]
    import os

    os.environ.update(env)
    if kind == "local":
        store: Storage = LocalStorage((Path(where),))
    else:
        from creamery.storage.s3 import S3Storage

        bucket, endpoint = where.split(" ")
        root = ObjectRoot(bucket, "index").state()
        store = S3Storage(root, S3Options(endpoint_url=endpoint, region=REGION))
    feed = ObjectFeed(store, keep=20, step=10, min_age=0, background=False)  # compacting too
    results.put([(feed.append([f"w{writer}/k{n}"]), writer, n) for n in range(count)])


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_processes_get_distinct_gapless_serials(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if kind == "local":
        where, env = str(tmp_path), {}
        make_store = _local(tmp_path)
    else:
        s3: S3Server = request.getfixturevalue("s3_env")
        bucket = request.getfixturevalue("s3_bucket")
        where, env = f"{bucket} {s3.endpoint}", s3.env()
        make_store = _s3(s3, bucket)
    writers, count = 3, 20
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue = context.Queue()
    processes = [
        context.Process(target=_append_many, args=(kind, where, env, w, count, results))
        for w in range(writers)
    ]
    for process in processes:
        process.start()
    appended = [record for _ in processes for record in results.get(timeout=120)]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    serials = sorted(serial for serial, _, _ in appended)
    assert serials == list(range(1, writers * count + 1)), "a serial was reused or skipped"
    feed = _feed(make_store)
    assert feed.latest() == writers * count
    last = max(appended)
    assert feed.since(last[0] - 1) == Changes(last[0], [f"w{last[1]}/k{last[2]}"])


# ----------------------------------------------------------------------------- following


def test_a_follower_polls_at_its_interval_and_sees_another_replicas_writes(
    make_store: MakeStore,
) -> None:
    applied: list[str] = []
    follower = Follower(_feed(make_store), applied.extend, lambda: None, interval=0.05)
    assert follower.interval == 0.05
    stop = follower.start()
    try:
        writer = _feed(make_store)
        writer.append(["one"])
        writer.append(["two"])
        assert wait_for(lambda: follower.applied == 2, timeout=20)
        assert applied == ["one", "two"]
    finally:
        stop()


def test_a_follower_resumes_from_a_snapshot_serial(make_store: MakeStore) -> None:
    writer = _feed(make_store)
    for n in range(4):
        writer.append([f"k{n}"])
    applied: list[str] = []
    rescans: list[int] = []
    follower = Follower(_feed(make_store), applied.extend, lambda: rescans.append(1))
    assert follower.applied == 4
    follower.resume(2)  # the index came from a snapshot taken at serial 2
    assert follower.catch_up() == 4 and applied == ["k2", "k3"] and not rescans


# ----------------------------------------------------------------------------- an outage


@pytest.fixture
def paused_store(s3_env: S3Server, s3_bucket: str) -> Iterator[tuple[S3Server, MakeStore]]:
    yield s3_env, _s3(s3_env, s3_bucket, timeout=1.0)
    if s3_env.paused:
        s3_env.start()


def test_a_store_outage_fails_the_poll_quietly_and_the_feed_recovers(
    paused_store: tuple[S3Server, MakeStore], caplog: pytest.LogCaptureFixture
) -> None:
    s3, make_store = paused_store
    feed = _feed(make_store)
    other = _feed(make_store)
    assert feed.append(["before"]) == 1
    applied: list[str] = []
    follower = Follower(other, applied.extend, lambda: None, interval=0.05)
    stop = follower.start()
    caplog.set_level(logging.WARNING, logger="creamery.changes")
    try:
        s3.stop()
        with pytest.raises(OSError):
            feed.since(1)
        with pytest.raises(OSError):  # the write is done; the feed keeps its keys
            feed.append(["during"])
        assert wait_for(lambda: "can't read the change feed" in caplog.text, timeout=30)
        s3.start()
        # The first read that reaches the store records what the append could not. (The
        # paused server may also take the put it had queued when it resumes: a record twice
        # is harmless, its keys are refreshed twice.)
        assert isinstance(feed.since(1), Changes)
        latest = feed.latest()
        found = _feed(make_store).since(1)
        assert latest >= 2 and isinstance(found, Changes) and "during" in found.keys
        assert wait_for(lambda: follower.applied == latest, timeout=30)
        assert set(applied) == {"during"}
        assert wait_for(lambda: "can be read again" in caplog.text, timeout=30)
        failures = [r for r in caplog.records if "can't read the change feed" in r.message]
        assert len(failures) == 1, "logged once per outage, not per poll"
    finally:
        stop()
        if s3.paused:
            s3.start()


def test_a_forked_child_appends_though_a_parent_thread_held_the_lock(tmp_path: Path) -> None:
    import os

    feed = _feed(_local(tmp_path / "state"))
    feed.append(["parent"])
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with feed._append_lock:
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(30)
    pid = os.fork()
    if pid == 0:  # the child: the holder thread is not here
        os._exit(0 if feed.append(["child"]) == 2 else 1)
    release.set()
    holder.join()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert feed.since(1) == Changes(2, ["child"])


def test_callers_waiting_on_a_catch_up_share_the_next_one(tmp_path: Path) -> None:
    """A burst of misses makes one listing per round, not one each (each caller still sees
    everything appended before it called)."""

    class Counted(ObjectFeed):
        calls = 0

        def since(self, serial: int) -> Changes | Resync:
            Counted.calls += 1
            return super().since(serial)

    make_store = _local(tmp_path / "state")
    writer = _feed(make_store)
    inside, release = threading.Event(), threading.Event()
    applied: list[str] = []

    def apply(keys: list[str]) -> None:
        applied.extend(keys)
        if keys == ["first"]:
            inside.set()
            release.wait(30)

    follower = Follower(Counted(make_store(), background=False), apply, lambda: None)
    writer.append(["first"])
    first = threading.Thread(target=follower.catch_up)
    first.start()
    inside.wait(30)  # the first catch-up is applying "first"
    writer.append(["second"])  # appended before the waiters call: they must see it
    waiters = [threading.Thread(target=follower.catch_up) for _ in range(8)]
    for waiter in waiters:
        waiter.start()
    assert wait_for(lambda: sum(w.is_alive() for w in waiters) == 8)
    release.set()
    for thread in (first, *waiters):
        thread.join(30)
    assert applied == ["first", "second"] and follower.applied == 2
    assert Counted.calls < 1 + 8  # the waiters shared (typically 2 listings in all)


def test_a_caller_that_needs_an_announced_serial_reads_nothing_once_it_is_applied(
    tmp_path: Path,
) -> None:
    make_store = _local(tmp_path / "state")
    writer = _feed(make_store)
    follower = Follower(_feed(make_store), lambda keys: None, lambda: None)
    writer.append(["a"])
    writer.append(["b"])
    assert follower.catch_up() == 2
    writer.append(["c"])  # not announced to this caller: it asked for 2 only
    assert follower.catch_up(at_least=2) == 2
    assert follower.catch_up(at_least=3) == 3
