"""creamery's per-file state through a `Storage`: the local state directory (the layout every
earlier version wrote, byte for byte), the same keys in an object store's `.creamery/`
prefix, publishing's rollback, yanks, and a wheel's METADATA read from a store by ranges.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest
from support.dists import make_sdist, make_wheel, wheel_metadata
from support.s3 import REGION, S3Server

from creamery.catalog import publish as publishing
from creamery.catalog.facts import FactsCache, StoredFacts, file_version
from creamery.catalog.index import Index
from creamery.core import archives
from creamery.core.objects import ObjectRoot, S3Options
from creamery.storage import AlreadyExists, Reader, Storage
from creamery.storage.local import LocalStorage
from creamery.storage.reader_file import open_reader_file
from creamery.storage.state import FileState, StateDir, object_scratch_dir


def tree(directory: Path) -> dict[str, bytes]:
    """Every file below *directory* with its bytes (hidden temp files included)."""
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def directories(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_dir())


# ----------------------------------------------------------------------------- the local layout

# What earlier versions wrote: `files/<relpath>/<kind>`, the reason or document as the content.
OLD_LAYOUT = {
    "files/demo-1.0.tar.gz/yanked": b"broken build\n",
    "files/sub/dir/demo-1.0-py3-none-any.whl/yanked": b"",
    "files/sub/dir/demo-1.0-py3-none-any.whl/provenance": b'{"version": 1}',
    "files/other-2.0.zip/provenance": b"{}",
    "files/other-2.0.zip/facts": b'{"digests": {}, "version": "1:2:3"}',
    "files/other-2.0.zip/metadata": b"Metadata-Version: 2.1\nName: other\n",
    "files/only-facts-1.0.tar.gz/facts": b"{}",
    "migrated/sub/demo-0.9-py3-none-any.whl.metadata": b"Name: demo\n",
}
OLD_STATE = {
    "demo-1.0.tar.gz": FileState(yanked=True, provenance=False),
    "sub/dir/demo-1.0-py3-none-any.whl": FileState(yanked=True, provenance=True),
    "other-2.0.zip": FileState(yanked=False, provenance=True),
}


def plant(directory: Path, files: dict[str, bytes]) -> None:
    for key, data in files.items():
        path = directory / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def check_reads_the_old_layout(state: StateDir) -> None:
    assert state.scan() == OLD_STATE
    for relpath, expected in OLD_STATE.items():
        assert state.state_of(relpath) == expected
    assert state.state_of("only-facts-1.0.tar.gz") == FileState(False, False)
    assert state.state_of("absent-1.0.tar.gz") == FileState(False, False)
    assert state.yank_reason("demo-1.0.tar.gz") == "broken build"
    assert state.yank_reason("sub/dir/demo-1.0-py3-none-any.whl") == ""
    assert state.yank_reason("other-2.0.zip") is None
    assert state.read("other-2.0.zip", "metadata") == OLD_LAYOUT["files/other-2.0.zip/metadata"]
    assert state.read("other-2.0.zip", "yanked") is None


@pytest.mark.parametrize("through", ["directory", "store"])
def test_an_old_state_directory_reads_the_same(tmp_path: Path, through: str) -> None:
    """`StateDir(path)` (the fast path) and the same directory as a plain `Storage` (the path
    an object store takes) read what earlier versions wrote."""
    directory = tmp_path / "state"
    plant(directory, OLD_LAYOUT)
    if through == "directory":
        state = StateDir(directory)
    else:
        state = StateDir(LocalStorage((directory,)), tmp_path / "scratch")
        assert state.path is None
    check_reads_the_old_layout(state)
    assert tree(directory) == OLD_LAYOUT  # reading changed nothing


def test_writes_keep_the_layout_byte_for_byte(tmp_path: Path) -> None:
    directory = tmp_path / "root" / ".creamery"
    state = StateDir(directory)  # not there yet: the first write creates it
    state.write("demo-1.0.tar.gz", "yanked", b"broken build\n")
    state.write("sub/dir/demo-1.0-py3-none-any.whl", "yanked", b"")
    state.write("sub/dir/demo-1.0-py3-none-any.whl", "provenance", b'{"version": 1}')
    for kind in ("provenance", "facts", "metadata"):
        state.write("other-2.0.zip", kind, OLD_LAYOUT[f"files/other-2.0.zip/{kind}"])
    state.write("only-facts-1.0.tar.gz", "facts", b"{}")
    state.write("gone-1.0.tar.gz", "yanked", b"x")
    state.write("gone-1.0.tar.gz", "facts", b"x")
    state.forget("gone-1.0.tar.gz")
    root = LocalStorage((tmp_path / "root",))
    plant(tmp_path / "root", {"sub/demo-0.9-py3-none-any.whl.metadata": b"Name: demo\n"})
    legacy = root.stat("sub/demo-0.9-py3-none-any.whl.metadata")
    assert legacy is not None and state.migrate(root, legacy)

    assert tree(directory) == OLD_LAYOUT  # no temp file, nothing else
    assert "files/gone-1.0.tar.gz" not in directories(directory)  # no empty entry left
    assert state.delete("demo-1.0.tar.gz", "yanked")
    assert not state.delete("demo-1.0.tar.gz", "yanked")
    assert "files/demo-1.0.tar.gz" not in directories(directory)
    assert state.scan() == {r: s for r, s in OLD_STATE.items() if r != "demo-1.0.tar.gz"}


def test_scratch_of_an_object_root_is_its_own_local_directory(tmp_path: Path) -> None:
    one, two = ObjectRoot("bucket-one", "pkgs"), ObjectRoot("bucket-one", "other")
    assert object_scratch_dir(one, tmp_path) == object_scratch_dir(one, tmp_path)
    assert object_scratch_dir(one, tmp_path) != object_scratch_dir(two, tmp_path)
    assert object_scratch_dir(one, tmp_path).is_relative_to(tmp_path / "scratch")
    scratch = object_scratch_dir(one, tmp_path)
    state = StateDir(LocalStorage((tmp_path / "store",)), scratch)
    fd, spool = state.new_temp_file()
    os.close(fd)
    assert spool.is_relative_to(scratch / "tmp")
    with state.lock("demo-1.0.tar.gz"):
        assert list((scratch / "locks").iterdir())
    with pytest.raises(ValueError, match="scratch"):
        StateDir(LocalStorage((tmp_path / "store",)))


# ----------------------------------------------------------------------------- publishing


class Published:
    """One package root with its state, and what publishing needs of them."""

    def __init__(self, storage: Storage, state: StateDir) -> None:
        self.storage, self.state = storage, state
        self.index = Index(storage, state)
        self.index.load()
        self.target = publishing.Target(storage, state, self.index)

    def upload(
        self, wheel: Path, *, provenance: bytes | None = None, spooled: bool = True
    ) -> publishing.Upload:
        data = wheel.read_bytes()
        fd, spool = self.state.new_temp_file()
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        if not spooled:
            spool.unlink()  # the commit point's put will fail: its content is gone
        return publishing.Upload(
            wheel.name,
            spool,
            provenance=provenance,
            digests={"sha256": hashlib.sha256(data).hexdigest()},
            metadata=wheel_metadata(wheel),
            metadata_read=True,
        )

    def publish(self, upload: publishing.Upload, *, overwrite: bool = False) -> list[str]:
        changed = publishing.publish(self.target, upload, overwrite=overwrite)
        self.index.refresh(changed)
        return changed


def local_published(tmp_path: Path) -> Published:
    (tmp_path / "root").mkdir()
    return Published(LocalStorage((tmp_path / "root",)), StateDir(tmp_path / "state"))


def test_a_failed_commit_point_leaves_no_state_and_overwrite_puts_the_old_back(
    tmp_path: Path,
) -> None:
    site = local_published(tmp_path)
    first = make_wheel(tmp_path / "a", "demo", "1.0", summary="first")
    with pytest.raises(FileNotFoundError):
        site.publish(site.upload(first, provenance=b"{}", spooled=False))
    assert tree(tmp_path / "state" / "files") == {}
    assert directories(tmp_path / "state" / "files") == []
    assert tree(tmp_path / "root") == {}

    site.publish(site.upload(first, provenance=b'{"first": 1}'))
    before = tree(tmp_path / "state")
    second = make_wheel(tmp_path / "b", "demo", "1.0", summary="second")
    with pytest.raises(FileNotFoundError):
        site.publish(site.upload(second, provenance=b"{}", spooled=False), overwrite=True)
    assert tree(tmp_path / "state") == before  # the old provenance, facts and metadata
    assert (tmp_path / "root" / first.name).read_bytes() == first.read_bytes()
    (dist,) = site.index.distributions("demo")
    assert site.index.provenance(dist) == b'{"first": 1}'


def test_published_facts_describe_the_file_published(tmp_path: Path) -> None:
    site = local_published(tmp_path)
    wheel = make_wheel(tmp_path / "a", "demo", "1.0")
    site.publish(site.upload(wheel))
    (dist,) = site.index.distributions("demo")
    facts = FactsCache(None, (), site.storage, site.state)
    stored = facts.stored(dist.stored)
    assert stored is not None and stored.version == file_version(dist.stored)
    assert facts.metadata(dist.stored, "wheel").raw == wheel_metadata(wheel)


# ----------------------------------------------------------------------------- check_names_fit


def test_an_object_root_fits_names_by_key_length() -> None:
    root = ObjectRoot("bucket-one", "some/prefix")
    # The longest key an upload makes: some/prefix/.creamery/files/<name>/provenance
    overhead = len("some/prefix/.creamery/files/") + len("/provenance")
    publishing.check_names_fit("a" * (1024 - overhead), root)
    with pytest.raises(publishing.NameTooLong, match=f"at most {1024 - overhead}"):
        publishing.check_names_fit("a" * (1025 - overhead), root)
    # Multibyte names count in bytes, as S3 does.
    with pytest.raises(publishing.NameTooLong):
        publishing.check_names_fit("é" * (1024 - overhead), root)


# ----------------------------------------------------------------------------- ranged reads


class Counting:
    """A real reader, counting the bytes asked of it (to show what a store would send)."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self.read_bytes = 0
        self.reads = 0

    @property
    def size(self) -> int:
        return self.reader.size

    @property
    def mtime_ns(self) -> int:
        return self.reader.mtime_ns

    @property
    def version(self) -> int | str:
        return self.reader.version

    def read(self, offset: int, length: int) -> bytes:
        data = self.reader.read(offset, length)
        self.read_bytes += len(data)
        self.reads += 1
        return data

    def fileno(self) -> int | None:
        return None

    def close(self) -> None:
        self.reader.close()

    def __enter__(self) -> Counting:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def test_a_wheel_s_metadata_is_read_by_ranges_not_whole(tmp_path: Path) -> None:
    noise = os.urandom(4 << 20)  # incompressible: the wheel is 4 MiB
    wheel = make_wheel(tmp_path, "big", "1.0", files={"big/data.bin": noise})
    storage = LocalStorage((tmp_path,))
    stored = storage.stat(wheel.name)
    assert stored is not None
    with Counting(storage.open(stored)) as reader, open_reader_file(reader) as file:
        found = archives.inspect(file, wheel.name, "wheel")
        assert not file.closed  # the caller's file stays open
    assert found.metadata == wheel_metadata(wheel)
    assert reader.read_bytes < 512 << 10, reader.read_bytes
    sdist = make_sdist(tmp_path, "small", "1.0")
    stored = storage.stat(sdist.name)
    assert stored is not None
    with storage.open(stored) as plain, open_reader_file(plain, 1 << 20) as file:
        found = archives.inspect(file, sdist.name, "sdist")
    assert found.metadata is not None and b"Name: small" in found.metadata


# ----------------------------------------------------------------------------- object stores


@pytest.fixture
def s3_options(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Options:
    pytest.importorskip("creamery.storage.s3", reason="S3Storage is not on this branch yet")
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    return S3Options(endpoint_url=s3.endpoint, region=REGION)


def s3_storage(root: ObjectRoot, options: S3Options) -> Storage:
    from creamery.storage.s3 import S3Storage

    storage: Storage = S3Storage(root, options)
    return storage


@pytest.fixture
def bucket_site(
    s3_bucket: str, s3_options: S3Options, tmp_path: Path
) -> Iterator[tuple[ObjectRoot, Published]]:
    root = ObjectRoot(s3_bucket, "pkgs")
    state = StateDir(s3_storage(root.state(), s3_options), object_scratch_dir(root, tmp_path))
    yield root, Published(s3_storage(root, s3_options), state)


def test_state_in_a_bucket_has_the_directory_s_keys(
    s3: S3Server, bucket_site: tuple[ObjectRoot, Published], tmp_path: Path
) -> None:
    root, site = bucket_site
    state = site.state
    assert state.path is None and state.remote
    for key, data in OLD_LAYOUT.items():
        if key.startswith("files/"):
            relpath, _, kind = key[len("files/") :].rpartition("/")
            state.write(relpath, kind, data)
    check_reads_the_old_layout(state)
    written = [k for k in OLD_LAYOUT if k.startswith("files/")]
    expected = sorted(f"pkgs/.creamery/{k}" for k in written)
    assert s3.keys(root.bucket) == expected
    assert all(s3.get(root.bucket, f"pkgs/.creamery/{k}") == OLD_LAYOUT[k] for k in written)
    # A directory synced from the bucket (`aws s3 sync`) is the same state directory.
    synced = tmp_path / "synced"
    plant(synced, {k.removeprefix("pkgs/.creamery/"): s3.get(root.bucket, k) for k in expected})
    check_reads_the_old_layout(StateDir(synced))

    state.forget("other-2.0.zip")
    assert state.delete("demo-1.0.tar.gz", "yanked")
    assert not state.delete("demo-1.0.tar.gz", "yanked")
    assert not any("other-2.0.zip" in k or "demo-1.0.tar.gz" in k for k in s3.keys(root.bucket))

    # Sidecars of earlier versions, copied into the bucket with the files, move into the state.
    s3.put(root.bucket, "pkgs/sub/x-1.0.tar.gz.yanked", b"old")
    s3.put(root.bucket, "pkgs/sub/x-1.0-py3-none-any.whl.metadata", b"Name: x\n")
    for key in ("sub/x-1.0.tar.gz.yanked", "sub/x-1.0-py3-none-any.whl.metadata"):
        legacy = site.storage.stat(key)
        assert legacy is not None and state.migrate(site.storage, legacy)
        assert not state.migrate(site.storage, legacy)  # nothing left to move
    assert state.yank_reason("sub/x-1.0.tar.gz") == "old"
    keys = s3.keys(root.bucket)
    assert not any(k.startswith("pkgs/sub/") for k in keys)
    assert s3.get(root.bucket, "pkgs/.creamery/files/sub/x-1.0.tar.gz/yanked") == b"old"
    assert "pkgs/.creamery/migrated/sub/x-1.0-py3-none-any.whl.metadata" in keys


def test_publish_into_a_bucket_writes_state_under_creamery(
    s3: S3Server, bucket_site: tuple[ObjectRoot, Published], tmp_path: Path
) -> None:
    root, site = bucket_site
    wheel = make_wheel(tmp_path / "in", "demo", "1.0")
    site.publish(site.upload(wheel, provenance=b'{"p": 1}'))
    base = "pkgs/.creamery/files/" + wheel.name
    claim = "pkgs/.creamery/claims/demo-1-py3-none-any.whl"  # which spelling won the name
    assert s3.keys(root.bucket) == sorted(
        [f"pkgs/{wheel.name}", claim, f"{base}/facts", f"{base}/metadata", f"{base}/provenance"]
    )
    assert s3.get(root.bucket, claim) == wheel.name.encode()
    assert s3.get(root.bucket, f"{base}/metadata") == wheel_metadata(wheel)
    (dist,) = site.index.distributions("demo")
    facts = StoredFacts.from_bytes(s3.get(root.bucket, f"{base}/facts"))
    # The ETag version the store gave the copy, not the spool's inode.
    assert facts is not None and facts.version == file_version(dist.stored)
    assert site.index.provenance(dist) == b'{"p": 1}'
    cache = FactsCache(None, (), site.storage, site.state)
    assert cache.digests(dist.stored).sha256 == hashlib.sha256(wheel.read_bytes()).hexdigest()

    # Yanks: the state the index follows.
    site.state.write(dist.relpath, "yanked", b"bad")
    site.index.refresh([dist.relpath])
    assert site.index.yank_reason(dist) == "bad"
    assert s3.get(root.bucket, f"{base}/yanked") == b"bad"


def test_replicas_racing_on_a_filename_leave_the_winner_s_state(
    s3: S3Server, s3_bucket: str, s3_options: S3Options, tmp_path: Path
) -> None:
    """Replicas share no lock: of several hosts publishing one filename, exactly one wins,
    and the state in the bucket is the winner's alone (a loser wrote nothing)."""
    root = ObjectRoot(s3_bucket, "")
    sites = [
        Published(
            s3_storage(root, s3_options),
            StateDir(s3_storage(root.state(), s3_options), tmp_path / f"host{i}"),
        )
        for i in range(6)
    ]
    wheels = [make_wheel(tmp_path / f"b{i}", "race", "1.0", summary=f"b{i}") for i in range(6)]
    uploads = [
        site.upload(w, provenance=f'{{"who": {i}}}'.encode())
        for i, (site, w) in enumerate(zip(sites, wheels, strict=True))
    ]
    outcomes: list[int | str | None] = [None] * len(sites)
    start = threading.Barrier(len(sites))

    def race(i: int) -> None:
        start.wait()
        try:
            sites[i].publish(uploads[i])
            outcomes[i] = i
        except AlreadyExists:
            outcomes[i] = -1
        except Exception as error:  # named in the assertion below
            outcomes[i] = repr(error)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(sites))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [i for i in outcomes if isinstance(i, int) and i >= 0]
    assert len(winners) == 1 and outcomes.count(-1) == len(sites) - 1, outcomes
    (winner,) = winners
    name = wheels[winner].name
    base = f".creamery/files/{name}"
    claim = ".creamery/claims/race-1-py3-none-any.whl"
    assert s3.keys(root.bucket) == sorted(
        [name, claim, f"{base}/facts", f"{base}/metadata", f"{base}/provenance"]
    )
    assert s3.get(root.bucket, claim) == name.encode()
    assert s3.get(root.bucket, name) == wheels[winner].read_bytes()
    assert s3.get(root.bucket, f"{base}/provenance") == f'{{"who": {winner}}}'.encode()
    assert s3.get(root.bucket, f"{base}/metadata") == wheel_metadata(wheels[winner])


def test_metadata_of_a_wheel_in_a_bucket_without_stored_facts(
    s3: S3Server, s3_bucket: str, s3_options: S3Options, tmp_path: Path
) -> None:
    """A wheel put by another tool (`aws s3 cp`): its METADATA comes by ranged reads."""
    noise = os.urandom(2 << 20)
    wheel = make_wheel(tmp_path, "copied", "1.0", files={"copied/data.bin": noise})
    s3.put(s3_bucket, f"pkgs/{wheel.name}", wheel.read_bytes())
    root = ObjectRoot(s3_bucket, "pkgs")
    storage = s3_storage(root, s3_options)
    state = StateDir(s3_storage(root.state(), s3_options), tmp_path / "scratch")
    stored = storage.stat(wheel.name)
    assert stored is not None and storage.local_path(stored) is None
    cache = FactsCache(tmp_path / "cache", (), storage, state)
    assert cache.metadata(stored, "wheel").raw == wheel_metadata(wheel)
    with Counting(storage.open(stored)) as reader, open_reader_file(reader) as file:
        assert archives.inspect(file, wheel.name, "wheel").metadata == wheel_metadata(wheel)
    assert reader.read_bytes < 512 << 10 and reader.reads <= 6, (reader.read_bytes, reader.reads)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert cache.digests(stored).sha256 == digest
    # The facts computed are shared with the other replicas, in the state, as an upload's.
    base = f"pkgs/.creamery/files/{wheel.name}"
    assert s3.keys(s3_bucket) == [f"{base}/facts", f"{base}/metadata", f"pkgs/{wheel.name}"]
    assert s3.get(s3_bucket, f"{base}/metadata") == wheel_metadata(wheel)


def bucket_tree(s3: S3Server, bucket: str) -> dict[str, bytes]:
    return {key: s3.get(bucket, key) for key in s3.keys(bucket)}


def test_a_failed_commit_point_in_a_bucket_leaves_the_old_state(
    s3: S3Server, bucket_site: tuple[ObjectRoot, Published], tmp_path: Path
) -> None:
    root, site = bucket_site
    first = make_wheel(tmp_path / "a", "demo", "1.0", summary="first")
    with pytest.raises(FileNotFoundError):
        site.publish(site.upload(first, provenance=b"{}", spooled=False))
    assert s3.keys(root.bucket) == []  # no state entry, no object

    site.publish(site.upload(first, provenance=b'{"first": 1}'))
    before = bucket_tree(s3, root.bucket)
    second = make_wheel(tmp_path / "b", "demo", "1.0", summary="second")
    with pytest.raises(FileNotFoundError):
        site.publish(site.upload(second, provenance=b"{}", spooled=False), overwrite=True)
    assert bucket_tree(s3, root.bucket) == before  # the old provenance, facts and metadata

    # A real overwrite: the new bytes with their own state, the facts under the new ETag.
    site.publish(site.upload(second, provenance=b'{"second": 2}'), overwrite=True)
    (dist,) = site.index.distributions("demo")
    assert s3.get(root.bucket, f"pkgs/{second.name}") == second.read_bytes()
    assert site.index.provenance(dist) == b'{"second": 2}'
    cache = FactsCache(None, (), site.storage, site.state)
    assert cache.metadata(dist.stored, "wheel").raw == wheel_metadata(second)
    stored = cache.stored(dist.stored)
    assert (
        stored is not None
        and stored.digests["sha256"] == hashlib.sha256(second.read_bytes()).hexdigest()
    )
