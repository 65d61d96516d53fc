"""Facts (digests, core metadata) of files placed in a bucket by other tools are computed by
the first replica that needs them and written to the shared state, so the other replicas (and
this one after a restart) read them instead of the file. A local root's state is never written
by reads. Real servers on a real S3 protocol peer (moto), boto3 as the independent checker, and
a proxy that holds back the reads of the file itself to prove a replica did not read it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest
from support.dists import make_wheel, wheel_metadata
from support.s3 import S3Server
from support.s3_proxy import store_proxy
from support.servers import Server, run_server

from creamery.catalog.facts import FactsCache, StoredFacts
from creamery.storage.local import LocalStorage
from creamery.storage.state import StateDir

pytest.importorskip("obstore", reason="object roots need the s3 extra")

JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}
OPEN = ("-a", ".", "-P", ".", "--disable-fallback")
BIG = 600 * 1024  # above the small-file cache: always read from the store


def page(server: Server, project: str) -> dict[str, dict[str, object]]:
    response = httpx.get(f"{server.url}/simple/{project}/", headers=JSON, timeout=30)
    assert response.status_code == 200, response.text
    return {f["filename"]: f for f in response.json()["files"]}


def test_facts_computed_by_one_replica_are_read_by_another(
    s3: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    wheel = make_wheel(tmp_path, "sharedfacts", "1.0", files={"blob.bin": os.urandom(BIG)})
    data, metadata = wheel.read_bytes(), wheel_metadata(wheel)
    sha = hashlib.sha256(data).hexdigest()
    s3.put(s3_bucket, f"pkgs/{wheel.name}", data)  # another tool's copy: no facts stored
    root = f"s3://{s3_bucket}/pkgs"
    state_key = f"pkgs/.creamery/files/{wheel.name}"
    with run_server([root], *OPEN, env=s3.env()) as a:
        entry = page(a, "sharedfacts")[wheel.name]
        assert entry["hashes"] == {"sha256": sha}
        assert entry["core-metadata"] == {"sha256": hashlib.sha256(metadata).hexdigest()}
    facts = StoredFacts.from_bytes(s3.get(s3_bucket, f"{state_key}/facts"))
    assert facts is not None
    assert facts.digests["sha256"] == sha
    assert facts.digests["md5"] == hashlib.md5(data).hexdigest()
    assert facts.metadata_read and facts.metadata_sha256 == hashlib.sha256(metadata).hexdigest()
    assert s3.get(s3_bucket, f"{state_key}/metadata") == metadata
    head = s3.client().head_object(Bucket=s3_bucket, Key=f"pkgs/{wheel.name}")
    assert head["ETag"].strip('"') in facts.version  # the version it describes

    def wheel_read(method: str, path: str) -> bool:
        return method == "GET" and path.split("?")[0].endswith(f"/pkgs/{wheel.name}")

    with store_proxy(s3) as (proxy, endpoint):
        proxy.hold(wheel_read, drop=True)  # B can't read the file: only the stored facts
        env = s3.env(AWS_ENDPOINT_URL=endpoint)
        with run_server([root], *OPEN, "--s3-timeout", "2", env=env) as b:
            entry = page(b, "sharedfacts")[wheel.name]
            assert entry["hashes"] == {"sha256": sha}
            assert entry["core-metadata"] == {"sha256": hashlib.sha256(metadata).hexdigest()}
            served = httpx.get(f"{b.url}/packages/{wheel.name}.metadata", timeout=30)
            assert (served.status_code, served.content) == (200, metadata)
            assert not proxy.held.is_set()  # not even tried
    # Read again, nothing is rewritten: the facts valid for this version stay as they were.
    assert StoredFacts.from_bytes(s3.get(s3_bucket, f"{state_key}/facts")) == facts


def test_facts_of_a_replaced_file_are_recomputed_and_replaced(
    s3: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    first = make_wheel(tmp_path / "1", "swapped", "1.0", files={"a.bin": os.urandom(BIG)})
    second = make_wheel(tmp_path / "2", "swapped", "1.0", files={"b.bin": os.urandom(BIG)})
    key = f"pkgs/{first.name}"
    s3.put(s3_bucket, key, first.read_bytes())
    root = f"s3://{s3_bucket}/pkgs"
    with run_server([root], *OPEN, env=s3.env()) as a:
        assert page(a, "swapped")[first.name]["hashes"] == {
            "sha256": hashlib.sha256(first.read_bytes()).hexdigest()
        }
    s3.put(s3_bucket, key, second.read_bytes())  # another tool replaces it: another ETag
    with run_server([root], *OPEN, env=s3.env()) as b:
        want = hashlib.sha256(second.read_bytes()).hexdigest()
        assert page(b, "swapped")[first.name]["hashes"] == {"sha256": want}
    facts = StoredFacts.from_bytes(s3.get(s3_bucket, f"pkgs/.creamery/files/{first.name}/facts"))
    assert facts is not None and facts.digests["sha256"] == want


def test_reads_write_nothing_into_a_local_state_directory(tmp_path: Path) -> None:
    root = tmp_path / "packages"
    root.mkdir()
    wheel = make_wheel(root, "localfacts", "1.0")
    state = StateDir(root / ".creamery")
    storage = LocalStorage((root,))
    cache = FactsCache(tmp_path / "cache", ("md5",), storage, state)
    try:
        stored = storage.stat(wheel.name)
        assert stored is not None
        digests = cache.digests(stored)
        assert digests.sha256 == hashlib.sha256(wheel.read_bytes()).hexdigest()
        assert cache.metadata(stored, "wheel").raw == wheel_metadata(wheel)
    finally:
        cache.close()
    assert not (root / ".creamery").exists() or not any((root / ".creamery").rglob("*"))


def test_a_local_server_writes_no_facts_into_its_state(tmp_path: Path) -> None:
    root = tmp_path / "packages"
    root.mkdir()
    wheel = make_wheel(root, "localpage", "1.0")
    with run_server([root], *OPEN) as server:
        entry = page(server, "localpage")[wheel.name]
        assert entry["hashes"] == {"sha256": hashlib.sha256(wheel.read_bytes()).hexdigest()}
    assert not list((root / ".creamery").glob("files/**/facts"))


def test_a_store_that_refuses_the_facts_fails_no_request(
    s3: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    """The facts' PUTs never reach the store: pages still answer, with the right hashes, and
    the failure is one log line for the outage, not one per file."""
    wheels = [
        make_wheel(tmp_path, f"refused{i}", "1.0", files={"x.bin": os.urandom(BIG)})
        for i in range(2)
    ]
    for wheel in wheels:
        s3.put(s3_bucket, f"pkgs/{wheel.name}", wheel.read_bytes())

    def facts_write(method: str, path: str) -> bool:
        return method == "PUT" and "/.creamery/files/" in path

    with store_proxy(s3) as (proxy, endpoint):
        proxy.hold(facts_write, drop=True)
        env = s3.env(AWS_ENDPOINT_URL=endpoint)
        with run_server([f"s3://{s3_bucket}/pkgs"], *OPEN, "--s3-timeout", "2", env=env) as a:
            for i, wheel in enumerate(wheels):
                entry = page(a, f"refused{i}")[wheel.name]
                assert entry["hashes"] == {"sha256": hashlib.sha256(wheel.read_bytes()).hexdigest()}
            assert a.log().count("can't store computed facts") == 1, a.log()
    assert not [k for k in s3.keys(s3_bucket) if k.endswith("/facts")]
