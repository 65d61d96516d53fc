"""Index snapshots (`catalog/snapshot.py`): a replica starts without listing the whole store.

A round trip gives the index a listing gives (every StoredFile, its place, the file state); a
damaged snapshot is skipped for an older one, and none usable means a full listing; two
writers never clobber each other and only the newest snapshots are kept; a snapshot of another
layout is not used; the follower catches up from a snapshot's serial, or rescans when those
records are gone. On a local directory and on S3.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from support.s3 import REGION, S3Server

from creamery.catalog import snapshot
from creamery.catalog.index import Index
from creamery.changes.follower import Follower
from creamery.changes.object_feed import ObjectFeed
from creamery.core.objects import ObjectRoot, S3Options
from creamery.storage import Storage
from creamery.storage.local import LocalStorage
from creamery.storage.state import FileState, StateDir

# (package storage, state store): each call new clients on the same places (another replica)
MakeStores = Callable[[], tuple[Storage, Storage]]

FILES = [
    "alpha-1.0-py3-none-any.whl",
    "alpha-1.0-py3-none-any.whl.asc",
    "alpha-1.1.tar.gz",
    "team/beta-2.0-py3-none-any.whl",
    "team/beta-2.0-py3-none-any.whl.metadata",  # a legacy sidecar: kept, never listed
    "team/Gamma_Delta-0.1.tar.gz",
    "caf\u00e9/epsilon-3.0-py3-none-any.whl",
    "README.txt",  # no distribution: not in the index
]


@pytest.fixture(params=["local", "s3"])
def make_stores(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> MakeStores:
    if request.param == "local":
        packages, state = tmp_path / "packages", tmp_path / "packages" / ".creamery"
        state.mkdir(parents=True)
        return lambda: (LocalStorage((packages,)), LocalStorage((state,)))
    s3: S3Server = request.getfixturevalue("s3")
    pytest.importorskip("obstore")
    S3Storage = pytest.importorskip("creamery.storage.s3").S3Storage
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    root = ObjectRoot(request.getfixturevalue("s3_bucket"), "index")
    options = S3Options(endpoint_url=s3.endpoint, region=REGION)
    return lambda: (S3Storage(root, options), S3Storage(root.state(), options))


def _fill(storage: Storage) -> None:
    for key in FILES:
        storage.put(key, key.encode(), if_absent=True)


def _loaded(storage: Storage) -> Index:
    index = Index(storage)
    index.load()
    index.file_state = {FILES[0]: FileState(True, False), FILES[3]: FileState(False, True)}
    return index


def _same(a: Index, b: Index) -> None:
    assert a.files == b.files
    assert [tuple(s) for s in a.files.values()] == [tuple(s) for s in b.files.values()]
    assert {k: s.place for k, s in a.files.items()} == {k: s.place for k, s in b.files.items()}
    assert a.dists == b.dists and a.legacy == b.legacy
    assert {p: set(d) for p, d in a.projects.items()} == {p: set(d) for p, d in b.projects.items()}
    assert a.file_state == b.file_state


def test_a_round_trip_gives_the_index_a_listing_gives(make_stores: MakeStores) -> None:
    storage, state = make_stores()
    _fill(storage)
    written = _loaded(storage)
    assert snapshot.write(state, written, 7) is True
    assert [found.stored.key for found in snapshot.listed(state)] == [snapshot.snapshot_key(7)]
    storage2, state2 = make_stores()
    restored = Index(storage2)
    assert snapshot.load_latest(state2, restored) == 7
    _same(written, restored)
    assert restored.project_names() == ["alpha", "beta", "epsilon", "gamma-delta"]
    assert restored.generation > 0  # caches keyed by generations see a change
    # The restored files are this storage's own: they open and read.
    for stored in restored.files.values():
        with storage2.open(stored) as reader:
            assert reader.read(0, 100) == stored.key.encode()


def test_no_snapshot_means_a_full_listing(make_stores: MakeStores) -> None:
    storage, state = make_stores()
    assert snapshot.load_latest(state, Index(storage)) is None


def test_a_damaged_snapshot_is_skipped_for_an_older_one(make_stores: MakeStores) -> None:
    storage, state = make_stores()
    _fill(storage)
    index = _loaded(storage)
    assert snapshot.write(state, index, 3)
    files, file_state, parsed = index.snapshot()
    good = gzip.decompress(snapshot.encode(files, file_state, 9, parsed))
    damaged = [
        (9, gzip.compress(good)[:-20]),  # torn
        (8, gzip.compress(good.replace(b"alpha", b"alphb", 1))[:-8] + b"\0" * 8),  # its CRC
        (7, b"not gzip at all"),
        (6, gzip.compress(good)),  # names serial 9: not this one
        (5, gzip.compress(b'{"format": "creamery-index-snapshot", "version": 99}')),
        (4, gzip.compress(json.dumps({**json.loads(good), "serial": 4, "files": [[1]]}).encode())),
    ]
    for serial, data in damaged:
        state.put(snapshot.snapshot_key(serial), data, if_absent=True)
    restored = Index(storage)
    assert snapshot.load_latest(state, restored) == 3
    _same(index, restored)
    state.delete(snapshot.snapshot_key(3))
    assert snapshot.load_latest(state, Index(storage)) is None  # none usable: list everything


def test_parsed_names_are_kept_unless_another_parser_wrote_them(tmp_path: Path) -> None:
    storage, state = LocalStorage((tmp_path / "packages",)), LocalStorage((tmp_path / "s",))
    for directory in ("packages", "s"):
        (tmp_path / directory).mkdir()
    _fill(storage)
    index = _loaded(storage)
    files, file_state, parsed = index.snapshot()
    assert set(parsed) == set(index.dists)
    document = json.loads(gzip.decompress(snapshot.encode(files, file_state, 1, parsed)))
    assert document["parser"] == snapshot.parser_identity() != ""
    for row in document["files"]:  # a parser that names every project "other"
        if len(row) > 5:
            row[5] = "other"

    def load(parser: str) -> Index:
        serial = 2 if parser else 3
        body = json.dumps({**document, "serial": serial, "parser": parser}).encode()
        state.put(snapshot.snapshot_key(serial), gzip.compress(body), if_absent=True)
        restored = Index(storage)
        assert snapshot.load_latest(state, restored) == serial
        state.delete(snapshot.snapshot_key(serial))
        return restored

    assert load(snapshot.parser_identity()).project_names() == ["other"]  # not parsed again
    assert load("").project_names() == index.project_names()  # parsed again
    restored = Index(storage)
    assert snapshot.write(state, index, 4) and snapshot.load_latest(state, restored) == 4
    _same(index, restored)
    assert all(restored.dists[k].parsed == d.parsed for k, d in index.dists.items())


def test_two_writers_never_clobber_each_other_and_two_are_kept(make_stores: MakeStores) -> None:
    storage, state = make_stores()
    _fill(storage)
    index = _loaded(storage)
    results: list[bool] = []
    lock = threading.Lock()

    def write(writer: int) -> None:
        mine = Index(storage)
        mine.load()
        if writer:
            mine.file_state = {FILES[0]: FileState(True, True)}  # would differ if it won
        won = snapshot.write(make_stores()[1], mine if writer else index, 5)
        with lock:
            results.append(won)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(results) == [False, False, False, True]
    for serial in (6, 8, 10):
        assert snapshot.write(state, index, serial)
    assert [f.serial for f in snapshot.listed(state)] == [10, 8]  # the newest two
    assert not snapshot.write(state, index, 10)  # taken: left alone


def test_a_snapshot_of_another_layout_is_not_used(tmp_path: Path) -> None:
    old, state = tmp_path / "old", LocalStorage((tmp_path / "state",))
    for directory in ("state", "old", "first"):
        (tmp_path / directory).mkdir()
    _fill(LocalStorage((old,)))
    assert snapshot.write(state, _loaded(LocalStorage((old,))), 4)
    old.rename(tmp_path / "new")  # the directory moved: its files' place is another now
    assert snapshot.load_latest(state, Index(LocalStorage((tmp_path / "new",)))) is None
    # Two roots: the files of each keep their own place.
    first, second = LocalStorage((tmp_path / "first",)), LocalStorage((tmp_path / "new",))
    first.put("zeta-1.0.tar.gz", b"z", if_absent=True)
    both = LocalStorage((tmp_path / "first", tmp_path / "new"))
    written = _loaded(both)
    assert snapshot.write(state, written, 5)
    restored = Index(LocalStorage((tmp_path / "first", tmp_path / "new")))
    assert snapshot.load_latest(state, restored) == 5
    _same(written, restored)
    assert {s.place for s in restored.files.values()} == {
        str(tmp_path / p) for p in ("first", "new")
    }
    assert second.stat("alpha-1.1.tar.gz") is not None


def test_the_state_directory_state_round_trips(tmp_path: Path) -> None:
    packages = tmp_path / "packages"
    (packages / ".creamery").mkdir(parents=True)
    storage, state_dir = LocalStorage((packages,)), StateDir(packages / ".creamery")
    _fill(storage)
    state_dir.write(FILES[2], "yanked", b"broken")
    index = Index(storage, state_dir)
    index.load()
    assert index.is_yanked(index.dists[FILES[2]])
    store = LocalStorage((packages / ".creamery",))
    assert snapshot.write(store, index, 1)
    restored = Index(LocalStorage((packages,)), StateDir(packages / ".creamery"))
    assert snapshot.load_latest(store, restored) == 1
    assert restored.is_yanked(restored.dists[FILES[2]])
    assert restored.yank_reason(restored.dists[FILES[2]]) == "broken"


# ----------------------------------------------------------------------------- start-up


def test_a_replica_catches_up_from_the_snapshot_serial(make_stores: MakeStores) -> None:
    storage, state = make_stores()
    _fill(storage)
    feed = ObjectFeed(state, background=False)
    for key in FILES[:3]:
        feed.append([key])
    index = Index(storage)
    index.load()
    assert snapshot.write(state, index, feed.latest())
    storage.put("late-1.0.tar.gz", b"late", if_absent=True)  # after the snapshot
    storage.delete("alpha-1.1.tar.gz")
    feed.append(["late-1.0.tar.gz", "alpha-1.1.tar.gz"])

    storage2, state2 = make_stores()  # a replica starting
    restored = Index(storage2)
    rescans: list[int] = []
    follower = Follower(
        ObjectFeed(state2), restored.refresh, lambda: rescans.append(1), interval=1.0
    )
    serial = snapshot.load_latest(state2, restored)
    assert serial == 3
    follower.resume(serial)
    assert follower.catch_up() == 4 and not rescans
    assert "late-1.0.tar.gz" in restored.dists and "alpha-1.1.tar.gz" not in restored.dists
    fresh = Index(storage2)
    fresh.load()
    assert restored.files == fresh.files


def test_a_replica_rescans_when_the_records_after_the_snapshot_are_gone(
    make_stores: MakeStores,
) -> None:
    storage, state = make_stores()
    _fill(storage)
    index = _loaded(storage)
    assert snapshot.write(state, index, 0)
    feed = ObjectFeed(state, keep=2, step=5, min_age=0, background=False)
    for n in range(10):
        feed.append([f"k{n}"])
    restored = Index(make_stores()[0])
    rescans: list[int] = []
    follower = Follower(ObjectFeed(state), restored.refresh, lambda: rescans.append(1))
    follower.resume(snapshot.load_latest(state, restored) or 0)
    assert follower.catch_up() == 10 and rescans == [1]


def test_a_snapshot_is_due_when_the_feed_moved_on(make_stores: MakeStores) -> None:
    storage, state = make_stores()
    _fill(storage)
    snapshots = snapshot.Snapshots(state, _loaded(storage), interval=3600, changes=10)
    assert snapshots.due(0)  # none yet: even at serial 0
    assert snapshots.maybe_write(0)
    assert not snapshots.due(0) and not snapshots.due(9)  # young, and few changes
    assert snapshots.due(10)
    assert snapshots.maybe_write(12)
    assert not snapshots.maybe_write(12)
    old = snapshot.Snapshots(state, snapshots.index, interval=1e-9, changes=1000)
    assert old.due(13) and not old.due(12)  # any change, once the newest is old enough
    assert snapshot.Snapshots(state, Index(storage)).load() == 12
