"""The storage contract: what every backend does, checked by the same tests.

Each backend is one branch of the `backend` fixture ("local": a directory; "s3": a prefix of a
bucket on a moto server, checked with boto3 as the independent client): the storage under
test, and a few hooks that reach behind its API to set up what the API can't (a hidden file,
two versions in one mtime tick, a store that goes away) and to see everything it holds, temp
files included. Local-only behaviour (several roots, linking the spool, fsync order) and
S3-only behaviour (tests/test_s3_storage.py) are tested on their own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.s3 import S3Server

from creamery.core.objects import ObjectRoot, S3Options
from creamery.storage import AlreadyExists, Storage, StoredFile, UnsafeKey, read_all
from creamery.storage.layered import LayeredStorage, storage_for
from creamery.storage.local import LocalStorage
from creamery.storage.state import StateDir

UNSAFE_KEYS = [
    "../x",
    "/abs",
    "/etc/passwd",
    "a/../../b",
    "a/..",
    "..",
    ".",
    "a/./b",
    "a//b",
    "a/",
    "",
    "a\0b",
    "a\\..\\b",
    ".hidden",
    "a/.hidden/b",
]


@dataclass
class Backend:
    storage: Storage
    spool: Callable[[bytes], Path]  # a closed spool file in the local scratch area
    plant: Callable[[str, bytes], None]  # a file written behind the storage's back, any name
    # give a key this mtime (a coarse clock); False where the store keeps its own clock (S3:
    # the caller tries again until two writes share one second)
    same_tick: Callable[[str, int], bool]
    everything: Callable[[], set[str]]  # every name the store holds, hidden and temp included
    break_store: Callable[[], None]  # the store goes away (a root removed, a bucket deleted)
    has_urls: bool  # url() gives presigned URLs


@pytest.fixture(params=["local", "s3", "layered"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "local":
        yield _local_backend(tmp_path)
    elif request.param == "s3":
        s3: S3Server = request.getfixturevalue("s3")
        yield _s3_backend(tmp_path, s3, request.getfixturevalue("s3_bucket"))
    elif request.param == "layered":
        s3 = request.getfixturevalue("s3")
        yield _layered_backend(tmp_path, s3, request.getfixturevalue("s3_bucket"))
    else:  # pragma: no cover
        raise AssertionError(f"no backend {request.param!r}")


def _layered_backend(tmp_path: Path, s3: S3Server, bucket: str) -> Backend:
    """A bucket that takes the uploads, before a directory of older packages (a migration):
    the hooks are the bucket's, and everything() shows what the directory holds too."""
    first = _s3_backend(tmp_path, s3, bucket)
    (tmp_path / "later").mkdir()
    later = _local_backend(tmp_path / "later")

    def everything() -> set[str]:
        return first.everything() | {f"later:{name}" for name in later.everything()}

    return Backend(
        LayeredStorage([first.storage, later.storage]),
        first.spool,
        first.plant,
        first.same_tick,
        everything,
        first.break_store,
        has_urls=True,
    )


def _spooler(tmp_path: Path) -> Callable[[bytes], Path]:
    scratch = StateDir(tmp_path / "state")

    def spool(data: bytes) -> Path:
        fd, path = scratch.new_temp_file()
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        return path

    return spool


def s3_storage(s3: S3Server, root: ObjectRoot, **options: object) -> Storage:
    """An S3Storage of *root* on the moto server, configured as a creamery process would be:
    by the standard AWS variables."""
    pytest.importorskip("obstore", reason="the s3 extra (obstore) is not installed")
    from creamery.storage.s3 import S3Storage

    settings = S3Options(**{"redirect_seconds": 60, "timeout": 5.0, **options})  # type: ignore[arg-type]
    return S3Storage(root, settings, environ=s3.env())


def _s3_backend(tmp_path: Path, s3: S3Server, bucket: str) -> Backend:
    root = ObjectRoot(bucket, "team/packages")
    base = root.prefix + "/"

    def plant(key: str, data: bytes) -> None:
        s3.put(bucket, root.key(key), data)

    def same_tick(key: str, mtime_ns: int) -> bool:
        modified = s3.client().head_object(Bucket=bucket, Key=root.key(key))["LastModified"]
        return int(modified.timestamp()) * 1_000_000_000 == mtime_ns

    def everything() -> set[str]:
        """Every key of the bucket: below the root as relpaths, others as they are (so a
        stray key outside the prefix shows too), and unfinished multipart uploads."""
        found = {k.removeprefix(base) if k.startswith(base) else f"/{k}" for k in s3.keys(bucket)}
        uploads = s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        return found | {f"multipart:{u['Key']}" for u in uploads}

    def break_store() -> None:
        client = s3.client()
        for key in s3.keys(bucket):
            client.delete_object(Bucket=bucket, Key=key)
        client.delete_bucket(Bucket=bucket)

    return Backend(
        s3_storage(s3, root),
        _spooler(tmp_path),
        plant,
        same_tick,
        everything,
        break_store,
        has_urls=True,
    )


def _local_backend(tmp_path: Path) -> Backend:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "x").write_bytes(b"outside the root")  # what `../x` would reach
    spool = _spooler(tmp_path)

    def plant(key: str, data: bytes) -> None:
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def same_tick(key: str, mtime_ns: int) -> bool:
        os.utime(root / key, ns=(mtime_ns, mtime_ns))
        return True

    def everything() -> set[str]:
        found = set()
        for directory, _, names in os.walk(root):
            found |= {os.path.relpath(os.path.join(directory, n), root) for n in names}
        return found

    def break_store() -> None:
        for directory, subdirectories, names in os.walk(root, topdown=False):
            for name in names:
                os.unlink(os.path.join(directory, name))
            for name in subdirectories:
                os.rmdir(os.path.join(directory, name))
        root.rmdir()

    return Backend(
        LocalStorage((root,)),
        spool,
        plant,
        same_tick,
        everything,
        break_store,
        has_urls=False,
    )


def keys(files: Iterator[StoredFile]) -> set[str]:
    return {stored.key for stored in files}


# ---------------------------------------------------------------- the shape


def test_a_stored_file_is_key_size_version_mtime_and_nothing_about_paths() -> None:
    assert StoredFile._fields == ("key", "size", "version", "mtime_ns", "place")
    for leaked in ("root", "abspath", "path", "inode", "relpath"):
        assert not hasattr(StoredFile, leaked)


def test_files_of_a_listing_share_one_place_object(backend: Backend) -> None:
    """40,000+ of them sit in the index: nothing per file but the key is a new object."""
    for n in range(20):
        backend.storage.put(f"d{n % 3}/f{n}.whl", b"x", if_absent=True)
    listed = list(backend.storage.scan())
    assert len(listed) == 20
    assert len({id(stored.place) for stored in listed}) == 1


# ---------------------------------------------------------------- listing and stat


def test_scan_lists_visible_files_and_a_prefix_is_a_directory(backend: Backend) -> None:
    storage = backend.storage
    for key in ("top.whl", "a/x.whl", "a/b/y.whl", "ab/z.whl"):
        storage.put(key, key.encode(), if_absent=True)
    for hidden in (".top", "a/.git/q.whl", "a/.w.whl", ".creamery/files/a/yanked"):
        backend.plant(hidden, b"never listed")
    assert keys(storage.scan()) == {"top.whl", "a/x.whl", "a/b/y.whl", "ab/z.whl"}
    assert keys(storage.scan("a")) == {"a/x.whl", "a/b/y.whl"}  # not ab/
    assert keys(storage.scan("a/")) == {"a/x.whl", "a/b/y.whl"}
    assert keys(storage.scan("a/b")) == {"a/b/y.whl"}
    assert keys(storage.scan("missing")) == set()
    assert keys(storage.scan("top.whl")) == set()  # a file is not a directory
    for unsafe in ("..", "../root", "/", "a/.git", ".creamery"):
        assert keys(storage.scan(unsafe)) == set(), unsafe
    for stored in storage.scan():
        assert storage.stat(stored.key) == stored


def test_stat_of_missing_hidden_directory_and_escaping_keys_is_none(backend: Backend) -> None:
    storage = backend.storage
    storage.put("a/x.whl", b"x", if_absent=True)
    backend.plant(".hidden", b"h")
    backend.plant("a/.hidden/b", b"h")
    assert storage.stat("missing.whl") is None
    assert storage.stat("a") is None  # a directory
    for key in UNSAFE_KEYS:
        assert storage.stat(key) is None, key
    found = storage.stat("a/x.whl")
    assert found is not None and (found.key, found.size) == ("a/x.whl", 1)


# ---------------------------------------------------------------- reading


def test_ranged_reads_at_the_start_middle_end_and_past_it(backend: Backend) -> None:
    data = bytes(range(256)) * 40
    stored = backend.storage.put("r/data.bin", data, if_absent=True)
    size = len(data)
    with backend.storage.open(stored) as reader:
        assert (reader.size, reader.mtime_ns, reader.version) == (
            stored.size,
            stored.mtime_ns,
            stored.version,
        )
        assert reader.read(0, 10) == data[:10]
        assert reader.read(1000, 500) == data[1000:1500]
        assert reader.read(size - 10, 10) == data[-10:]
        assert reader.read(size - 5, 100) == data[-5:]  # short only at the end
        assert reader.read(size, 10) == b""
        assert reader.read(size + 100, 10) == b""
        assert reader.read(0, size) == data
    assert read_all(backend.storage, stored) == data


def test_a_reader_keeps_the_version_it_opened(backend: Backend) -> None:
    storage = backend.storage
    old = storage.put("v.bin", b"old bytes", if_absent=True)
    with storage.open(old) as reader:
        new = storage.put("v.bin", b"new bytes!", if_absent=False)
        assert reader.read(0, 100) == b"old bytes"
    with storage.open(new) as reader:
        assert reader.read(0, 100) == b"new bytes!"


def test_opening_a_deleted_file_is_file_not_found(backend: Backend) -> None:
    stored = backend.storage.put("gone.whl", b"x", if_absent=True)
    assert backend.storage.delete("gone.whl")
    with pytest.raises(FileNotFoundError):
        backend.storage.open(stored)


def test_the_local_fast_path_is_the_same_bytes(backend: Backend) -> None:
    stored = backend.storage.put("fast/a.whl", b"zip bytes", if_absent=True)
    path = backend.storage.local_path(stored)
    if path is not None:
        assert Path(path).read_bytes() == b"zip bytes"
    with backend.storage.open(stored) as reader:
        fd = reader.fileno()
        if fd is not None:
            assert os.pread(fd, 100, 0) == b"zip bytes"
    url = backend.storage.url(stored)
    assert (url is not None) == backend.has_urls


# ---------------------------------------------------------------- writing


def test_put_if_absent_refuses_a_taken_key_and_keeps_its_content(backend: Backend) -> None:
    storage = backend.storage
    first = storage.put("p/one.whl", b"first", if_absent=True)
    loser = backend.spool(b"second")
    with pytest.raises(AlreadyExists):
        storage.put("p/one.whl", loser, if_absent=True)
    with pytest.raises(AlreadyExists):
        storage.put("p/one.whl", b"third", if_absent=True)
    assert not loser.exists(), "the spool is consumed in every case"
    assert storage.stat("p/one.whl") == first
    assert read_all(storage, first) == b"first"


def test_of_racing_puts_if_absent_exactly_one_wins(backend: Backend) -> None:
    storage = backend.storage
    racers = 8
    spools = [backend.spool(f"racer {n}".encode()) for n in range(racers)]
    start = threading.Barrier(racers)
    won: list[int] = []
    lost: list[int] = []

    def race(n: int) -> None:
        start.wait()
        try:
            storage.put("race.whl", spools[n], if_absent=True)
            won.append(n)
        except AlreadyExists:
            lost.append(n)

    threads = [threading.Thread(target=race, args=(n,)) for n in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1 and len(lost) == racers - 1
    stored = storage.stat("race.whl")
    assert stored is not None
    assert read_all(storage, stored) == f"racer {won[0]}".encode()
    assert not any(spool.exists() for spool in spools)
    assert backend.everything() == {"race.whl"}


def test_replace_puts_a_new_version(backend: Backend) -> None:
    storage = backend.storage
    old = storage.put("r.whl", b"old", if_absent=True)
    new = storage.put("r.whl", backend.spool(b"newer"), if_absent=False)
    assert storage.stat("r.whl") == new != old
    assert read_all(storage, new) == b"newer"
    fresh = storage.put("fresh.whl", b"no old version", if_absent=False)
    assert storage.stat("fresh.whl") == fresh


def test_put_from_bytes_and_from_a_spool(backend: Backend) -> None:
    storage = backend.storage
    from_bytes = storage.put("b/from-bytes.whl", b"bytes", if_absent=True)
    spool = backend.spool(b"spooled")
    from_spool = storage.put("b/from-spool.whl", spool, if_absent=True)
    assert not spool.exists(), "the spool is consumed"
    assert (from_bytes.size, from_spool.size) == (5, 7)
    assert storage.stat("b/from-bytes.whl") == from_bytes
    assert storage.stat("b/from-spool.whl") == from_spool
    assert read_all(storage, from_spool) == b"spooled"
    assert backend.everything() == {"b/from-bytes.whl", "b/from-spool.whl"}


def test_identity_changes_when_a_file_is_replaced_within_one_mtime_tick(
    backend: Backend,
) -> None:
    storage = backend.storage
    for _attempt in range(5):  # a store with its own clock: until both land in one second
        first = storage.put("same.whl", b"one", if_absent=False)
        storage.put("same.whl", b"two", if_absent=False)  # same size
        if backend.same_tick("same.whl", first.mtime_ns):
            break
    else:
        pytest.fail("two writes never shared one mtime tick")
    second = storage.stat("same.whl")
    assert second is not None
    assert (second.size, second.mtime_ns) == (first.size, first.mtime_ns)
    assert second.version != first.version
    assert second != first


def test_delete_present_and_absent(backend: Backend) -> None:
    storage = backend.storage
    storage.put("d/x.whl", b"x", if_absent=True)
    assert storage.delete("d/x.whl") is True
    assert storage.stat("d/x.whl") is None
    assert keys(storage.scan()) == set()
    assert storage.delete("d/x.whl") is False
    assert storage.delete("never.whl") is False
    backend.plant(".hidden", b"h")
    for key in UNSAFE_KEYS:
        assert storage.delete(key) is False, key
    assert ".hidden" in backend.everything()


def test_a_failed_put_leaves_no_trace(backend: Backend) -> None:
    storage = backend.storage
    storage.put("taken.whl", b"taken", if_absent=True)
    before = backend.everything()
    for key in UNSAFE_KEYS:
        spool = backend.spool(b"evil")
        with pytest.raises(UnsafeKey):
            storage.put(key, spool, if_absent=False)
        assert not spool.exists(), key
        with pytest.raises(UnsafeKey):
            storage.put(key, b"evil", if_absent=True)
    with pytest.raises(AlreadyExists):
        storage.put("taken.whl", backend.spool(b"loser"), if_absent=True)
    with pytest.raises(FileNotFoundError):
        storage.put("nospool.whl", Path(str(backend.spool(b"")) + ".missing"), if_absent=True)
    assert backend.everything() == before


def test_health_is_none_when_fine_and_a_line_when_the_store_is_gone(backend: Backend) -> None:
    assert backend.storage.health() is None
    backend.storage.put("x.whl", b"x", if_absent=True)
    backend.break_store()
    problem = backend.storage.health()
    assert isinstance(problem, str) and problem and "\n" not in problem
    with pytest.raises(OSError):
        backend.storage.put("y.whl", b"y", if_absent=True)
    assert backend.storage.health() is not None, "a failed put does not bring the store back"


# ---------------------------------------------------------------- local directories only


def _roots(tmp_path: Path, count: int = 2) -> tuple[Path, ...]:
    roots = tuple(tmp_path / f"root{n}" for n in range(count))
    for root in roots:
        root.mkdir()
    return roots


def test_local_first_root_wins_and_uploads_go_to_it(tmp_path: Path) -> None:
    first, second = _roots(tmp_path)
    (second / "sub").mkdir()
    (second / "sub" / "both.whl").write_bytes(b"second root")
    (second / "sub" / "only.whl").write_bytes(b"only in the second")
    storage = LocalStorage((first, second))
    placed = storage.put("sub/both.whl", b"first root", if_absent=False)
    assert (first / "sub" / "both.whl").read_bytes() == b"first root"
    for listed in (list(storage.scan()), list(storage.scan("sub"))):
        assert sorted(s.key for s in listed) == ["sub/both.whl", "sub/only.whl"]
        assert placed in listed
    assert storage.stat("sub/both.whl") == placed
    with pytest.raises(AlreadyExists):  # a later root holds it: not shadowed by a new upload
        storage.put("sub/only.whl", b"shadow", if_absent=True)
    assert not (first / "sub" / "only.whl").exists()
    assert storage.delete("sub/both.whl")  # from every root: nothing shows through
    assert storage.stat("sub/both.whl") is None


def test_local_the_spool_is_linked_not_copied(tmp_path: Path) -> None:
    (root,) = _roots(tmp_path, 1)
    state = StateDir(tmp_path / "state")
    storage = LocalStorage((root,))
    fd, spool = state.new_temp_file()
    os.write(fd, b"upload")
    os.close(fd)
    inode = spool.stat().st_ino
    stored = storage.put("u.whl", spool, if_absent=True)
    assert stored.version == inode == (root / "u.whl").stat().st_ino


def test_local_put_is_durable_file_flushed_then_placed_then_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (root,) = _roots(tmp_path, 1)
    storage = LocalStorage((root,))
    events: list[str] = []
    real_fsync, real_link, real_replace = os.fsync, os.link, os.replace

    def fsync(fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        events.append("fsync dir" if os.path.isdir(target) else "fsync file")
        real_fsync(fd)

    def link(source: str | Path, target: str | Path) -> None:
        events.append("place")
        real_link(source, target)

    def replace(source: str | Path, target: str | Path) -> None:
        events.append("place")
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "link", link)
    monkeypatch.setattr(os, "replace", replace)
    storage.put("sub/new.whl", b"new", if_absent=True)
    assert events == ["fsync file", "place", "fsync dir"]
    events.clear()
    storage.put("sub/new.whl", b"newer", if_absent=False)
    assert events == ["fsync file", "place", "fsync dir"]


def test_local_a_forged_stored_file_reads_nothing(tmp_path: Path) -> None:
    (root,) = _roots(tmp_path, 1)
    (tmp_path / "secret").write_bytes(b"secret")
    storage = LocalStorage((root,))
    for forged in (
        StoredFile("secret", 6, 0, 0, str(tmp_path)),
        StoredFile("../secret", 6, 0, 0, str(root)),
    ):
        assert storage.local_path(forged) is None
        with pytest.raises(FileNotFoundError):
            storage.open(forged)


def test_local_health_names_a_later_root_that_is_gone(tmp_path: Path) -> None:
    first, second = _roots(tmp_path)
    storage = LocalStorage((first, second))
    assert storage.health() is None
    second.rmdir()
    assert str(second) in (storage.health() or "")


# ---------------------------------------------------------------- several backends


@pytest.fixture
def mixed(tmp_path: Path, s3: S3Server, s3_bucket: str) -> tuple[LayeredStorage, Path, str]:
    """A directory first (it takes the uploads), then a bucket's prefix."""
    directory = tmp_path / "first"
    directory.mkdir()
    bucket_root = ObjectRoot(s3_bucket, "later")
    storage = LayeredStorage([LocalStorage((directory,)), s3_storage(s3, bucket_root)])
    return storage, directory, s3_bucket


def test_layered_first_backend_wins_and_uploads_go_to_it(
    mixed: tuple[LayeredStorage, Path, str], s3: S3Server
) -> None:
    storage, directory, bucket = mixed
    assert storage.remote, "one remote backend: callers use a thread"
    s3.put(bucket, "later/sub/both.whl", b"bucket")
    s3.put(bucket, "later/sub/only.whl", b"only in the bucket")
    placed = storage.put("sub/both.whl", b"directory", if_absent=False)
    assert (directory / "sub" / "both.whl").read_bytes() == b"directory"
    for listed in (list(storage.scan()), list(storage.scan("sub"))):
        assert sorted(s.key for s in listed) == ["sub/both.whl", "sub/only.whl"]
        assert placed in listed
    assert storage.stat("sub/both.whl") == placed
    with pytest.raises(AlreadyExists):  # the bucket holds it: no new upload shadows it
        storage.put("sub/only.whl", b"shadow", if_absent=True)
    assert not (directory / "sub" / "only.whl").exists()
    assert storage.delete("sub/both.whl")  # from every backend: nothing shows through
    assert storage.stat("sub/both.whl") is None
    assert s3.keys(bucket) == ["later/sub/only.whl"]


def test_layered_a_file_is_read_from_the_backend_it_came_from(
    mixed: tuple[LayeredStorage, Path, str], s3: S3Server, tmp_path: Path
) -> None:
    storage, directory, bucket = mixed
    s3.put(bucket, "later/remote.whl", b"from the bucket")
    local = storage.put("local.whl", b"from the directory", if_absent=True)
    remote = storage.stat("remote.whl")
    assert remote is not None and remote.place != local.place
    assert storage.local_path(local) == str(directory / "local.whl")
    assert storage.local_path(remote) is None
    assert storage.url(local) is None
    url = storage.url(remote)
    assert url is not None and "X-Amz-Signature=" in url
    assert read_all(storage, local) == b"from the directory"
    assert read_all(storage, remote) == b"from the bucket"
    with storage.open(local) as reader:
        assert reader.fileno() is not None
    s3.delete(bucket, "later/remote.whl")
    with pytest.raises(FileNotFoundError):
        storage.open(remote)
    forged = StoredFile("local.whl", 1, 0, 0, str(tmp_path))
    with pytest.raises(FileNotFoundError):
        storage.open(forged)
    spool = _spooler(tmp_path)(b"loser")
    with pytest.raises(AlreadyExists):
        storage.put("local.whl", spool, if_absent=True)
    assert not spool.exists()


def test_layered_health_names_each_backend_with_a_problem(
    mixed: tuple[LayeredStorage, Path, str], s3: S3Server
) -> None:
    storage, directory, bucket = mixed
    assert storage.health() is None
    client = s3.client()
    client.delete_bucket(Bucket=bucket)
    directory.rmdir()
    problem = storage.health()
    assert problem is not None and "\n" not in problem
    assert str(directory) in problem and f"s3://{bucket}/later" in problem


def test_storage_for_groups_directories_and_makes_one_store_per_bucket(
    tmp_path: Path, s3: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from creamery.storage.s3 import S3Storage

    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)  # as `creamery run` would find them
    first, second, third = _roots(tmp_path, 3)
    assert isinstance(storage_for([first]), LocalStorage)
    local = storage_for([first, second])
    assert isinstance(local, LocalStorage) and local.roots == (first, second)
    bucket = ObjectRoot(s3_bucket, "p")
    alone = storage_for([bucket])
    assert isinstance(alone, S3Storage) and alone.place == f"s3://{s3_bucket}/p"
    mixed = storage_for([first, second, bucket, third], S3Options(timeout=2.0))
    assert isinstance(mixed, LayeredStorage)
    kinds = [type(b).__name__ for b in mixed.backends]
    assert kinds == ["LocalStorage", "S3Storage", "LocalStorage"]
    mixed.put("a/x.whl", b"x", if_absent=True)
    assert (first / "a" / "x.whl").exists()
    with pytest.raises(ValueError):
        storage_for([])


def test_a_local_install_never_imports_the_s3_client(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from creamery.storage.layered import storage_for;"
        f" storage_for([Path({str(tmp_path)!r})]);"
        " assert 'obstore' not in sys.modules, 'obstore imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ})
