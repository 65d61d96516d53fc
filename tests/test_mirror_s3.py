"""The caching mirror with its cache in a bucket (`--mirror-cache s3://BUCKET/PREFIX`): real
`creamery run` replicas, the controllable upstream of `support/upstream.py` (its own process,
a real HTTP server counting what it is asked), and moto as the S3 server, checked with boto3.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from support.clients import clean_env, creamery
from support.dists import make_wheel
from support.polling import wait_for
from support.s3 import S3Server
from support.servers import Server, run_server
from support.upstream import UpstreamProcess

BIG = 256 * 1024  # incompressible bytes in each tbig wheel: larger than the small-file cache
PREFIX = "cache"
ONE, TWO, THREE = (f"tbig-{v}-py3-none-any.whl" for v in ("1.0", "2.0", "3.0"))
FAKE = "tfake-1.0-py3-none-any.whl"


@pytest.fixture(scope="module")
def fake_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("fake-upstream")
    for version in ("1.0", "2.0", "3.0"):
        make_wheel(directory, "tbig", version, files={"tbig/blob.bin": os.urandom(BIG)})
    make_wheel(directory, "tfake", "1.0", requires_python=">=3.8")
    return directory


@contextlib.contextmanager
def replica(
    s3: S3Server, bucket: str, upstream: UpstreamProcess, tmp_path: Path, *args: str
) -> Iterator[Server]:
    """One `creamery run --mirror` replica with its cache in *bucket*; its own local root and
    local spool (`--cache-dir`), so replicas share nothing but the bucket."""
    own = Path(tmp_path) / f"replica-{os.urandom(4).hex()}"
    (own / "local").mkdir(parents=True)
    command = ["--mirror", "--fallback-url", upstream.index_url]
    command += ["--mirror-cache", f"s3://{bucket}/{PREFIX}", "--cache-dir", str(own / "facts")]
    with run_server([own / "local"], *command, *args, env=clean_env(**s3.env())) as server:
        yield server


def spool_of(server: Server) -> Path:
    index = server.args.index("--cache-dir") if "--cache-dir" in server.args else None
    assert index is not None
    return Path(server.args[index + 1]) / "mirror-spool"


def cached(s3: S3Server, bucket: str, project: str) -> set[str]:
    folder = f"{PREFIX}/files/{project}/"
    return {key.removeprefix(folder) for key in s3.keys(bucket, folder)}


def cache_command(s3: S3Server, *args: str) -> subprocess.CompletedProcess[str]:
    """`creamery mirror-cache ARGS`, reaching the bucket as the servers do (AWS variables)."""
    return creamery("mirror-cache", *args, env=clean_env(**s3.env()))


def download(server: Server, project: str, name: str) -> httpx.Response:
    response = httpx.get(f"{server.url}/upstream/{project}/{name}", timeout=30)
    response.raise_for_status()
    return response


# ---------------------------------------------------------------- sharing


def test_a_replica_serves_what_another_fetched_without_asking_the_upstream(
    s3: S3Server, s3_bucket: str, fake: UpstreamProcess, fake_dir: Path, tmp_path: Path
) -> None:
    data = (fake_dir / ONE).read_bytes()
    with (
        replica(s3, s3_bucket, fake, tmp_path) as a,
        replica(s3, s3_bucket, fake, tmp_path) as b,
    ):
        first = download(a, "tbig", ONE)
        assert first.headers["x-creamery-cache"] == "miss"
        assert first.content == data
        # In the bucket, whole and verified, before the client had its last byte.
        assert s3.get(s3_bucket, f"{PREFIX}/files/tbig/{ONE}") == data
        assert f"{PREFIX}/pages/tbig.json" in s3.keys(s3_bucket, PREFIX)
        page = httpx.get(f"{b.url}/simple/tbig/")  # from the page A stored: still fresh
        assert page.status_code == 200 and ONE in page.text
        second = download(b, "tbig", ONE)
        assert "x-creamery-cache" not in second.headers  # a hit: from the bucket
        assert second.content == data
        ranged = httpx.get(f"{b.url}/upstream/tbig/{ONE}", headers={"range": "bytes=100-199"})
        assert ranged.status_code == 206 and ranged.content == data[100:200]
        etag = second.headers["etag"]
        again = httpx.get(f"{b.url}/upstream/tbig/{ONE}", headers={"if-none-match": etag})
        assert again.status_code == 304
        metadata = httpx.get(f"{b.url}/upstream/tbig/{ONE}.metadata")
        assert metadata.status_code == 200  # fetched by B, verified, stored for A
        assert download(a, "tbig", ONE + ".metadata").content == metadata.content
        assert spool_of(a).is_dir() and list(spool_of(a).iterdir()) == []
    stats = fake.stats()
    assert stats[f"/files/{ONE}"] == 1  # one upstream download for two replicas
    assert stats[f"/files/{ONE}.metadata"] == 1
    assert stats["/simple/tbig/"] == 1
    assert cached(s3, s3_bucket, "tbig") == {ONE, ONE + ".metadata"}


def test_replicas_fetching_one_file_at_once_store_one_verified_object(
    s3: S3Server, s3_bucket: str, fake: UpstreamProcess, fake_dir: Path, tmp_path: Path
) -> None:
    data = (fake_dir / TWO).read_bytes()
    with (
        replica(s3, s3_bucket, fake, tmp_path) as a,
        replica(s3, s3_bucket, fake, tmp_path) as b,
    ):
        for server in (a, b):  # pages first, so both download at once below
            httpx.get(f"{server.url}/simple/tbig/").raise_for_status()
        fake.control(chunk_delay=0.005)  # half a second per download: they overlap
        with ThreadPoolExecutor(6) as pool:
            servers = [a, b] * 3
            bodies = list(pool.map(lambda s: download(s, "tbig", TWO).content, servers))
        assert all(body == data for body in bodies)
        assert cached(s3, s3_bucket, "tbig") == {TWO}
        assert s3.get(s3_bucket, f"{PREFIX}/files/tbig/{TWO}") == data
        assert download(a, "tbig", TWO).content == data
        assert download(b, "tbig", TWO).content == data
    assert 1 <= fake.stats()[f"/files/{TWO}"] <= 2  # at most one download per replica


# ---------------------------------------------------------------- verification


def test_a_corrupted_upstream_file_is_never_stored_in_the_bucket(
    s3: S3Server, s3_bucket: str, fake: UpstreamProcess, fake_dir: Path, tmp_path: Path
) -> None:
    with replica(s3, s3_bucket, fake, tmp_path) as a, replica(s3, s3_bucket, fake, tmp_path) as b:
        httpx.get(f"{a.url}/simple/tbig/").raise_for_status()
        fake.control(corrupt=True)
        for server in (a, b):
            with pytest.raises(httpx.TransportError):  # cut short: never a complete bad file
                httpx.get(f"{server.url}/upstream/tbig/{THREE}", timeout=10)
        assert cached(s3, s3_bucket, "tbig") == set()
        assert wait_for(lambda: list(spool_of(a).glob("*.part")) == [])
        assert "does not match its listed sha256 digest" in a.log()
        fake.control(corrupt=False)
        good = download(b, "tbig", THREE)
        assert good.content == (fake_dir / THREE).read_bytes()
    stored = s3.get(s3_bucket, f"{PREFIX}/files/tbig/{THREE}")
    assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(good.content).hexdigest()
    assert fake.stats()[f"/files/{THREE}"] == 3


# ---------------------------------------------------------------- limits and eviction


def test_the_least_recently_used_files_are_evicted_from_the_bucket(
    s3: S3Server, s3_bucket: str, fake: UpstreamProcess, tmp_path: Path
) -> None:
    limit = str(int(BIG * 2.4))
    with replica(s3, s3_bucket, fake, tmp_path, "--mirror-max-size", limit) as a:
        for name in (ONE, TWO, ONE, THREE):  # `one` used again: `two` is the least recent
            download(a, "tbig", name)
            time.sleep(0.05)
        assert wait_for(lambda: cached(s3, s3_bucket, "tbig") == {ONE, THREE}, timeout=10)


def test_files_unused_beyond_the_age_limit_are_evicted(
    s3: S3Server, s3_bucket: str, fake: UpstreamProcess, tmp_path: Path
) -> None:
    with replica(s3, s3_bucket, fake, tmp_path, "--mirror-max-age", "2") as a:
        download(a, "tbig", ONE)
        time.sleep(2.5)  # `one` is now unused for longer than the limit
        download(a, "tfake", FAKE)  # a pass runs after this file is stored
        assert wait_for(lambda: cached(s3, s3_bucket, "tbig") == set(), timeout=10)
        assert cached(s3, s3_bucket, "tfake") == {FAKE}


def test_a_file_evicted_by_another_replica_is_fetched_again(
    s3: S3Server, s3_bucket: str, fake: UpstreamProcess, fake_dir: Path, tmp_path: Path
) -> None:
    """Another replica (here `mirror-cache clear`, the same deletes) removes a file a replica
    found in the bucket before: that replica goes to the upstream, never answers 404."""
    data = (fake_dir / ONE).read_bytes()
    cache_url = f"s3://{s3_bucket}/{PREFIX}"
    with replica(s3, s3_bucket, fake, tmp_path) as a:
        download(a, "tbig", ONE)
        assert download(a, "tbig", ONE).content == data  # a hit
        cleared = cache_command(s3, "clear", "--mirror-cache", cache_url, "--project", "tbig")
        assert cleared.returncode == 0, cleared.stderr
        assert cached(s3, s3_bucket, "tbig") == set()
        again = download(a, "tbig", ONE)
        assert again.headers["x-creamery-cache"] == "miss"
        assert again.content == data
        assert cached(s3, s3_bucket, "tbig") == {ONE}
    assert fake.stats()[f"/files/{ONE}"] == 2


# ---------------------------------------------------------------- the cache command


def test_the_cache_command_shows_and_clears_a_bucket(
    s3: S3Server, s3_bucket: str, fake: UpstreamProcess, tmp_path: Path
) -> None:
    cache_url = f"s3://{s3_bucket}/{PREFIX}"
    with replica(s3, s3_bucket, fake, tmp_path) as a:
        download(a, "tbig", ONE)
        download(a, "tfake", FAKE)
    shown = cache_command(s3, "show", "--mirror-cache", cache_url)
    assert shown.returncode == 0, shown.stderr
    assert f"tbig/{ONE}" in shown.stdout and f"tfake/{FAKE}" in shown.stdout
    assert f"mirror cache {cache_url}: 2 files" in shown.stdout
    assert "pages of 2 projects" in shown.stdout
    one = cache_command(s3, "clear", "--mirror-cache", cache_url, "--project", "tfake")
    assert one.returncode == 0, one.stderr
    assert "removed 1 files of tfake" in one.stdout
    assert s3.keys(s3_bucket, f"{PREFIX}/") == [
        f"{PREFIX}/files/tbig/{ONE}",
        f"{PREFIX}/pages/tbig.json",
    ]
    every = cache_command(s3, "clear", "--mirror-cache", cache_url)
    assert "removed 1 files" in every.stdout
    assert s3.keys(s3_bucket, f"{PREFIX}/") == []
    bad = cache_command(s3, "show", "--mirror-cache", "s3://No_Such/x")
    assert bad.returncode == 2
    assert "not a valid bucket name" in bad.stderr


# ---------------------------------------------------------------- last use across replicas


def test_last_use_is_shared_through_used_objects(
    s3: S3Server, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replica A records a use of `old` (a `used/` object); replica B, which never served it,
    evicts by that record: the file A used stays, the one nobody used since goes."""
    from creamery.core.objects import ObjectRoot, S3Options
    from creamery.mirror import cache as mirror_cache
    from creamery.storage.s3 import S3Storage

    def open_replica(name: str, max_size: int | None = None) -> mirror_cache.MirrorCache:
        store = S3Storage(ObjectRoot(s3_bucket, PREFIX), S3Options(), environ=s3.env())
        return mirror_cache.MirrorCache(store, tmp_path / name, name, max_size=max_size)

    def publish(cache: mirror_cache.MirrorCache, name: str) -> None:
        fd, temp = cache.new_temp_file()
        with os.fdopen(fd, "wb") as out:
            out.write(os.urandom(1000))
        assert cache.publish(temp, "proj", name) is not None
        assert not temp.exists()

    a = open_replica("a")
    publish(a, "old.whl")
    old = a.cached("proj", "old.whl")
    assert old is not None
    assert a.touch(old) is False  # just cached: no record owed for an hour
    time.sleep(1.1)  # S3's LastModified has whole seconds: make the order of events visible
    publish(a, "new.whl")
    time.sleep(1.1)
    monkeypatch.setattr(mirror_cache, "USE_RECORD_SECONDS", 0.0)
    assert a.touch(old) is True
    a.record_use(old)
    assert s3.keys(s3_bucket, f"{PREFIX}/used/") == [f"{PREFIX}/used/proj/old.whl"]

    s3.put(s3_bucket, f"{PREFIX}/used/proj/gone.whl", b"")  # its file evicted meanwhile

    b = open_replica("b", max_size=1500)  # room for one of the two files
    uses = {entry.key: entry.last_used for entry in b.list_files()}
    assert uses["proj/old.whl"] > uses["proj/new.whl"]
    assert [entry.key for entry in b.evict()] == ["proj/new.whl"]
    assert cached(s3, s3_bucket, "proj") == {"old.whl"}
    assert s3.keys(s3_bucket, f"{PREFIX}/used/") == [f"{PREFIX}/used/proj/old.whl"]
    assert b.clear() == 1
    assert s3.keys(s3_bucket, f"{PREFIX}/") == []  # the usage record went with its file


# ---------------------------------------------------------------- store outage


def test_a_store_outage_leaves_the_upstream_serving(
    s3: S3Server, s3_bucket: str, fake: UpstreamProcess, fake_dir: Path, tmp_path: Path
) -> None:
    """The bucket stops answering: pages and files come from the upstream (not cached, never a
    5xx); once it is back, what is fetched is cached again."""
    with replica(s3, s3_bucket, fake, tmp_path) as a:
        download(a, "tfake", FAKE)
        s3.stop()
        try:
            page = httpx.get(f"{a.url}/simple/tbig/", timeout=60)  # waits out one store timeout
            assert page.status_code == 200 and ONE in page.text
            for name in (ONE, TWO):
                assert download(a, "tbig", name).content == (fake_dir / name).read_bytes()
            assert download(a, "tfake", FAKE).content == (fake_dir / FAKE).read_bytes()
            assert "served but not cached" in a.log()
        finally:
            s3.start()
        assert cached(s3, s3_bucket, "tbig") == set()

        def cached_again() -> bool:
            download(a, "tbig", THREE)
            return cached(s3, s3_bucket, "tbig") == {THREE}

        assert wait_for(cached_again, timeout=30, interval=0.5)


def test_a_page_lost_from_the_bucket_is_rebuilt_from_its_files(
    s3: S3Server, s3_bucket: str, fake: UpstreamProcess, fake_dir: Path, tmp_path: Path
) -> None:
    """No page in the bucket and no upstream: a fresh replica lists the cached files (their
    sha256 and metadata read back from the bucket), so installs still work offline."""
    data = (fake_dir / FAKE).read_bytes()
    with replica(s3, s3_bucket, fake, tmp_path) as a:
        download(a, "tfake", FAKE)
        download(a, "tfake", FAKE + ".metadata")
    s3.delete(s3_bucket, f"{PREFIX}/pages/tfake.json")
    fake.control(fail=503)
    with replica(s3, s3_bucket, fake, tmp_path) as b:
        page = httpx.get(
            f"{b.url}/simple/tfake/", headers={"accept": "application/vnd.pypi.simple.v1+json"}
        )
        assert page.status_code == 200, page.text
        assert page.headers["x-creamery-stale"] == "1"
        (entry,) = page.json()["files"]
        assert entry["hashes"] == {"sha256": hashlib.sha256(data).hexdigest()}
        assert entry["requires-python"] == ">=3.8"
        assert entry["core-metadata"] is not False
        assert download(b, "tfake", FAKE).content == data
        assert list(spool_of(b).glob("*.part")) == []  # the copies read for hashing are gone
    assert f"{PREFIX}/pages/tfake.json" in s3.keys(s3_bucket, PREFIX)


def test_workers_of_one_replica_share_the_bucket_cache(
    s3: S3Server, s3_bucket: str, fake: UpstreamProcess, fake_dir: Path, tmp_path: Path
) -> None:
    """`--workers 2`: the s3:// cache reaches each worker process (through the configuration
    they are handed) and every worker serves what one fetched."""
    data = (fake_dir / FAKE).read_bytes()
    with replica(s3, s3_bucket, fake, tmp_path, "--workers", "2") as a:
        assert download(a, "tfake", FAKE).content == data
        assert cached(s3, s3_bucket, "tfake") == {FAKE}
        for _ in range(6):  # new connections: spread over both workers
            assert download(a, "tfake", FAKE).content == data
    assert fake.stats()[f"/files/{FAKE}"] == 1
