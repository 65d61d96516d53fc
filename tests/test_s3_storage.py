"""What only an object store does, on a moto server, with boto3 as the independent checker:
many replicas racing one key, an outage and the recovery, a download whose object is replaced
under it, presigned URLs, the prefix as the root's boundary, and keys other tools leave in a
bucket. The contract every backend keeps is tests/test_storage_contract.py."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from support.s3 import SECRET_KEY, S3Server
from support.servers import free_port
from test_storage_contract import s3_storage

from creamery.core.objects import ObjectRoot
from creamery.storage import (
    AlreadyExists,
    StoredFile,
    StoreUnavailable,
    chunks,
    read_all,
)
from creamery.storage.state import StateDir

pytest.importorskip("obstore", reason="the s3 extra (obstore) is not installed")

from creamery.storage.s3 import S3Storage, StoreRefused, VersionChanged, describe_error

ROOT_PREFIX = "idx"


@pytest.fixture
def root(s3_bucket: str) -> ObjectRoot:
    return ObjectRoot(s3_bucket, ROOT_PREFIX)


@pytest.fixture
def storage(s3: S3Server, root: ObjectRoot) -> S3Storage:
    made = s3_storage(s3, root)
    assert isinstance(made, S3Storage)
    return made


def spool_of(tmp_path: Path, data: bytes) -> Path:
    fd, path = StateDir(tmp_path / "state").new_temp_file()
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    return path


def test_of_twenty_replicas_racing_one_key_exactly_one_wins(
    s3: S3Server, root: ObjectRoot, tmp_path: Path
) -> None:
    """Each racer has its own client, as replicas on other hosts would."""
    racers = 20
    stores = [s3_storage(s3, root) for _ in range(racers)]
    spools = [spool_of(tmp_path, f"racer {n:02d}".encode()) for n in range(racers)]
    start = threading.Barrier(racers)
    won: list[int] = []
    lost: list[int] = []
    failed: list[BaseException] = []

    def race(n: int) -> None:
        start.wait()
        try:
            stores[n].put("pkg/race-1.0.tar.gz", spools[n], if_absent=True)
            won.append(n)
        except AlreadyExists:
            lost.append(n)
        except BaseException as error:
            failed.append(error)

    threads = [threading.Thread(target=race, args=(n,)) for n in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failed == []
    assert len(won) == 1 and len(lost) == racers - 1
    assert s3.keys(root.bucket) == [root.key("pkg/race-1.0.tar.gz")]
    assert s3.get(root.bucket, root.key("pkg/race-1.0.tar.gz")) == f"racer {won[0]:02d}".encode()
    assert not any(spool.exists() for spool in spools)


def test_an_outage_is_store_unavailable_within_the_timeout_and_recovery_is_by_itself(
    s3: S3Server, root: ObjectRoot, tmp_path: Path
) -> None:
    storage = s3_storage(s3, root, timeout=1.0)
    big = os.urandom(3 << 20)
    stored = storage.put("pkg/big.whl", big, if_absent=True)
    small = storage.put("pkg/small.whl", b"small", if_absent=True)
    s3.stop()
    try:
        problem = storage.health()
        assert problem is not None and "\n" not in problem
        assert problem.startswith(f"{root.url}: the store does not answer (LIST: ")
        assert "secret" not in problem.lower()
        with pytest.raises(StoreUnavailable, match="does not answer"):
            storage.stat("pkg/small.whl")
        with pytest.raises(StoreUnavailable):
            storage.open(small)
        with pytest.raises(StoreUnavailable):
            storage.open(stored)
        with pytest.raises(StoreUnavailable):
            list(storage.scan())
        spool = spool_of(tmp_path, b"during the outage")
        with pytest.raises(StoreUnavailable):
            storage.put("pkg/new.whl", spool, if_absent=True)
        assert not spool.exists()
        with pytest.raises(StoreUnavailable):
            storage.delete("pkg/small.whl")
    finally:
        s3.start()
    assert storage.health() is None
    assert storage.stat("pkg/small.whl") == small
    assert read_all(storage, stored) == big
    # A put that timed out has an unknown outcome: the store may have taken the request before
    # it went silent, and carry it out when it returns. Never half of it, though.
    late = storage.stat("pkg/new.whl")
    if late is not None:
        assert read_all(storage, late) == b"during the outage"
    expected = {"pkg/big.whl", "pkg/small.whl"} | ({"pkg/new.whl"} if late else set())
    assert {s.key for s in storage.scan()} == expected
    assert s3.keys(root.bucket) == sorted(root.key(k) for k in expected)


def test_an_outage_mid_download_is_store_unavailable(s3: S3Server, root: ObjectRoot) -> None:
    storage = s3_storage(s3, root, timeout=1.0)
    data = os.urandom(4 << 20)
    stored = storage.put("pkg/big.whl", data, if_absent=True)
    with storage.open(stored) as reader:
        assert reader.read(0, 1000) == data[:1000]
        s3.stop()
        try:
            with pytest.raises(StoreUnavailable):
                reader.read(3 << 20, 1 << 20)  # a jump: a new ranged GET
        finally:
            s3.start()


def test_a_download_never_mixes_two_versions(s3: S3Server, storage: S3Storage) -> None:
    old = bytes([1]) * (3 << 20)
    new = bytes([2]) * (3 << 20)
    stored = storage.put("pkg/swap.whl", old, if_absent=True)
    with storage.open(stored) as reader:
        first = reader.read(0, 1 << 20)
        s3.put(storage.root.bucket, storage.root.key("pkg/swap.whl"), new)  # replaced meanwhile
        # Reading on: the same GET (the old version) or a refusal, never the new bytes.
        try:
            rest = b"".join(chunks(reader))
        except FileNotFoundError:
            rest = b""
        assert set(first + rest) <= {1}
        with pytest.raises(FileNotFoundError, match="replaced"):
            reader.read(100, 10)  # a jump needs a new GET: the version opened is gone
    with storage.open(stored) as reader:
        assert reader.version != stored.version  # the current one, and it says so
        assert reader.read(0, 4) == new[:4]


def test_a_large_object_reads_in_order_and_by_jumps(storage: S3Storage) -> None:
    data = os.urandom((3 << 20) + 12345)
    stored = storage.put("pkg/large.whl", data, if_absent=True)
    with storage.open(stored) as reader:
        assert b"".join(chunks(reader, 300_000)) == data
    with storage.open(stored) as reader:
        for offset, length in ((2 << 20, 5000), (10, 10), (len(data) - 7, 100), (1 << 20, 1)):
            assert reader.read(offset, length) == data[offset : offset + length]
        assert reader.read(len(data), 10) == b""


def test_after_a_jump_reads_go_on_in_growing_windows(storage: S3Storage) -> None:
    """A jump asks for a window (8 MiB, then 16...), not the rest of the object: reading on
    past a window's end opens the next one, of the same version."""
    data = os.urandom(26 << 20)
    stored = storage.put("pkg/huge.whl", data, if_absent=True)
    with storage.open(stored) as reader:
        assert reader.read(1, 10) == data[1:11]
        got, offset = bytearray(), 11
        while chunk := reader.read(offset, 3 << 20):
            got += chunk
            offset += len(chunk)
        assert bytes(got) == data[11:]
        assert reader.read(len(data) - 5, 100) == data[-5:]
        assert reader.read(0, len(data)) == data  # one read across windows


def test_a_large_spool_overwrite_goes_multipart_and_a_large_create_in_one_put(
    s3: S3Server, storage: S3Storage, tmp_path: Path
) -> None:
    storage.multipart_bytes = 5 << 20  # S3's smallest part: keeps the test small
    created = storage.put("pkg/a.whl", spool_of(tmp_path, b"a" * (6 << 20)), if_absent=True)
    replaced = storage.put("pkg/a.whl", spool_of(tmp_path, b"b" * (11 << 20)), if_absent=False)
    assert created.version != replaced.version
    assert "-" in str(replaced.version), "a multipart ETag: <md5 of the parts>-<count>"
    assert storage.stat("pkg/a.whl") == replaced
    assert s3.get(storage.root.bucket, storage.root.key("pkg/a.whl")) == b"b" * (11 << 20)
    assert s3.keys(storage.root.bucket) == [storage.root.key("pkg/a.whl")]
    uploads = s3.client().list_multipart_uploads(Bucket=storage.root.bucket)
    assert uploads.get("Uploads", []) == []


def test_the_prefix_is_the_roots_boundary(s3: S3Server, storage: S3Storage) -> None:
    bucket = storage.root.bucket
    for outside in ("top.whl", "idxx/near.whl", "other/idx/deep.whl", "idx.whl"):
        s3.put(bucket, outside, b"not this root's")
    storage.put("pkg/in.whl", b"in", if_absent=True)
    assert [s.key for s in storage.scan()] == ["pkg/in.whl"]
    assert storage.stat("../top.whl") is None
    assert storage.stat("x.whl") is None
    assert sorted(s3.keys(bucket, "idx/")) == ["idx/pkg/in.whl"]
    assert storage.delete("pkg/in.whl")
    assert s3.keys(bucket, "idx/") == []
    assert len(s3.keys(bucket)) == 4, "nothing outside the prefix was touched"


def test_the_state_prefix_and_odd_keys_of_other_tools_do_not_break_a_scan(
    s3: S3Server, storage: S3Storage
) -> None:
    bucket, root = storage.root.bucket, storage.root
    wanted = {f"p{n % 7}/f-{n}.whl" for n in range(30)} | {"a/0", "a/z.whl", "z.whl"}
    wanted |= {"0-first.whl", "a-b/x.whl", "a-b/c/y.whl"}  # in the page an odd key spoils
    for key in sorted(wanted):
        s3.put(bucket, root.key(key), b"x")
    s3.put(bucket, root.key("empty.whl"), b"")  # an empty file is a file
    wanted.add("empty.whl")
    odd = [
        ".creamery/feed/000001",
        ".creamery/snapshot",
        "a/",  # a console's "folder"
        "empty-folder/",
        "a//double.whl",
        "a/./dot.whl",
        "a/../up.whl",
        "p1/.git/HEAD",
        ".top",
    ]
    odd += [f".creamery/files/p{n}/yanked" for n in range(30)]
    for key in odd:  # a folder marker is empty
        s3.put(bucket, root.key(key), b"" if key.endswith("/") else b"hidden or odd")
    assert {s.key for s in storage.scan()} == wanted
    assert {s.key for s in storage.scan("a")} == {"a/0", "a/z.whl"}
    assert {s.key for s in storage.scan("p1")} == {k for k in wanted if k.startswith("p1/")}
    assert storage.stat("a") is None


def test_scan_streams_more_than_one_page(s3: S3Server, storage: S3Storage) -> None:
    client = s3.client()

    def plant(n: int) -> None:
        client.put_object(Bucket=storage.root.bucket, Key=storage.root.key(f"p/{n:05d}"), Body=b"1")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(plant, range(1001)))
    seen = [s.key for s in storage.scan()]
    assert len(seen) == len(set(seen)) == 1001


def test_url_is_a_presigned_get_when_redirects_are_on(s3: S3Server, root: ObjectRoot) -> None:
    storage = s3_storage(s3, root, redirect_seconds=30)
    stored = storage.put("pkg/a.whl", b"wheel bytes", if_absent=True)
    url = storage.url(stored)
    assert url is not None and "X-Amz-Signature=" in url and "X-Amz-Expires=30" in url
    assert httpx.get(url).content == b"wheel bytes"
    assert s3_storage(s3, root, redirect_seconds=None).url(stored) is None
    forged = StoredFile("../x", 1, "", 0, stored.place)
    assert storage.url(forged) is None


def test_the_put_answer_is_what_a_stat_and_boto3_see(s3: S3Server, storage: S3Storage) -> None:
    stored = storage.put("pkg/a.whl", b"abc", if_absent=True)
    head = s3.client().head_object(Bucket=storage.root.bucket, Key=storage.root.key("pkg/a.whl"))
    assert stored.version == head["ETag"]
    assert stored.size == head["ContentLength"] == 3
    assert stored.mtime_ns == int(head["LastModified"].timestamp()) * 10**9
    assert storage.stat("pkg/a.whl") == stored
    assert list(storage.scan()) == [stored]


def test_a_store_nobody_answers_at_says_so(s3: S3Server, s3_bucket: str) -> None:
    refused = s3_storage(s3, ObjectRoot(s3_bucket), endpoint_url="http://127.0.0.1:1")
    assert refused.health() == (
        f"s3://{s3_bucket}: the store does not answer (LIST: connection refused)"
    )
    with pytest.raises(StoreUnavailable, match="connection refused"):
        refused.stat("a.whl")


def test_refused_credentials_are_a_clear_store_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A moto server that checks signatures (after its first unauthenticated call, which
    makes the bucket): creamery's keys are unknown to it, so it answers 403."""
    monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "1")
    server = S3Server(free_port(), tmp_path)
    server.launch()
    try:
        bucket = server.new_bucket()
        storage = s3_storage(server, ObjectRoot(bucket, "p"))
        problem = storage.health()
        assert problem is not None and problem.startswith(f"s3://{bucket}/p: the store refuses")
        assert "check the access key" in problem and SECRET_KEY not in problem
        with pytest.raises(StoreRefused):
            storage.put("a.whl", b"x", if_absent=True)
        with pytest.raises(StoreRefused):
            list(storage.scan())
    finally:
        server.shutdown()


def test_a_bucket_that_does_not_exist(s3: S3Server) -> None:
    storage = s3_storage(s3, ObjectRoot("creamery-no-such-bucket"))
    problem = storage.health()
    assert problem == "s3://creamery-no-such-bucket: the bucket does not exist"
    with pytest.raises(FileNotFoundError):
        storage.put("a.whl", b"x", if_absent=True)
    assert storage.stat("a.whl") is None


def test_errors_are_classified_in_one_line_without_the_url() -> None:
    import obstore.exceptions as obx

    from creamery.storage.s3 import _translate

    cases = [
        ("Server returned non-2xx status code: 503 Service Unavailable: <xml>", "HTTP 503"),
        ("HTTP error: error sending request\n\nretry_timeout: 1s, kind: Timeout", "timeout"),
        ("error sending request\nretry_timeout: 1s, source: TimedOut", "timeout"),
        ("tcp connect error, retry_timeout: 1s, ConnectionRefused", "connection refused"),
        ('ConnectError("dns error", "failed to lookup address information")', "unknown host"),
        ("error sending request, retry_timeout: 1s", "no answer"),
    ]
    for text, reason in cases:
        assert describe_error(obx.GenericError(text))[0] == reason
        with pytest.raises(StoreUnavailable) as raised:
            _translate(obx.GenericError(text), "s3://b/p/k", "GET")
        line = raised.value.strerror
        assert line == f"s3://b/p/k: the store does not answer (GET: {reason})"
    with pytest.raises(StoreRefused, match="credentials") as refused_keys:
        _translate(obx.PermissionDeniedError("403 Forbidden"), "s3://b", "PUT")
    assert (refused_keys.value.strerror or "").startswith("s3://b: the store refuses")
    with pytest.raises(StoreRefused, match="credentials"):
        _translate(obx.UnauthenticatedError("bad key"), "s3://b", "PUT")
    with pytest.raises(StoreUnavailable, match="HTTP 429"):
        _translate(obx.GenericError("status code: 429 Too Many Requests"), "s3://b", "PUT")
    with pytest.raises(FileNotFoundError):
        _translate(obx.GenericError("status code: 404 Not Found: NoSuchBucket"), "s3://b", "PUT")
    with pytest.raises(OSError, match="refused the request") as refused:
        _translate(obx.GenericError("status code: 400 Bad Request"), "s3://b", "PUT")
    assert not isinstance(refused.value, StoreUnavailable)


def test_replace_only_the_version_one_read(s3: S3Server, storage: S3Storage) -> None:
    """For state several replicas rewrite: a write based on a stale read loses."""
    first = storage.put("state/snapshot", b"v1", if_absent=True)
    second = storage.replace("state/snapshot", b"v2", version=str(first.version))
    assert storage.stat("state/snapshot") == second and second.version != first.version
    with pytest.raises(VersionChanged):
        storage.replace("state/snapshot", b"stale", version=str(first.version))
    with pytest.raises(AlreadyExists):  # what callers without obstore catch
        storage.replace("state/snapshot", b"stale", version=str(first.version))
    with pytest.raises(VersionChanged):
        storage.replace("state/none", b"x", version=str(first.version))
    assert s3.get(storage.root.bucket, storage.root.key("state/snapshot")) == b"v2"
    assert s3.keys(storage.root.bucket) == [storage.root.key("state/snapshot")]


def test_scan_after_lists_only_what_follows(storage: S3Storage) -> None:
    for n in range(12):
        storage.put(f"feed/{n:08d}", b"r", if_absent=True)
    storage.put("feeder/00000099", b"not in feed/", if_absent=True)
    after = [s.key for s in storage.scan_after("feed", "feed/00000008")]
    assert after == ["feed/00000009", "feed/00000010", "feed/00000011"]
    assert [s.key for s in storage.scan_after("feed/", "feed/00000011")] == []
    assert len(list(storage.scan_after("feed", "feed/0"))) == 12
    assert list(storage.scan_after("feed", "other/x")) == []
    assert list(storage.scan_after("../feed", "../feed/1")) == []


def test_a_store_of_the_state_prefix_is_hidden_from_the_root(
    s3: S3Server, root: ObjectRoot, storage: S3Storage
) -> None:
    state = s3_storage(s3, root.state())
    state.put("files/pkg/a.whl/yanked", b"reason", if_absent=True)
    storage.put("pkg/a.whl", b"wheel", if_absent=True)
    assert [s.key for s in state.scan()] == ["files/pkg/a.whl/yanked"]
    assert [s.key for s in storage.scan()] == ["pkg/a.whl"]
    assert storage.stat(".creamery/files/pkg/a.whl/yanked") is None
    assert s3.keys(root.bucket) == [
        root.key(".creamery/files/pkg/a.whl/yanked"),
        root.key("pkg/a.whl"),
    ]
