"""`creamery run s3://BUCKET[/PREFIX]` end to end: real servers on a real S3 protocol peer
(moto's server mode), real clients (twine, uv, pip), and boto3 as the independent look into the
bucket. Also the configuration of object roots, and that a local install never loads obstore.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from support.clients import (
    clean_env,
    creamery,
    describe,
    installed,
    pip_install,
    twine_upload,
    uv_install,
    uv_publish,
)
from support.dists import make_sdist, make_wheel, sign, wheel_metadata
from support.s3 import S3Server
from support.servers import Server, free_port, run_server

pytest.importorskip("obstore", reason="object roots need the s3 extra")

JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}
WAIT = 30.0  # seconds to wait for something eventual (a replica's poll, the store's return)
BIG = 600 * 1024  # above the 256 KiB small-file cache: always read from the store


def wait_for(check: Callable[[], object], what: str, timeout: float = WAIT) -> object:
    """Poll *check* until it returns something true (no timing assertion: a deadline)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what} (last: {last!r})", pytrace=False)


@pytest.fixture
def dists(tmp_path: Path) -> Path:
    return tmp_path / "dists"


@pytest.fixture
def served(s3: S3Server, s3_bucket: str) -> Iterator[Server]:
    """A server on s3://BUCKET/pkgs, with no authentication."""
    with run_server(
        [f"s3://{s3_bucket}/pkgs"], "-a", ".", "-P", ".", "--disable-fallback", env=s3.env()
    ) as server:
        yield server


def files_of(server: Server, project: str) -> dict[str, dict[str, object]]:
    response = httpx.get(f"{server.url}/simple/{project}/", headers=JSON, timeout=10)
    assert response.status_code == 200, response.text
    return {f["filename"]: f for f in response.json()["files"]}


def big_wheel(directory: Path, name: str, version: str) -> Path:
    """A wheel larger than the small-file cache (random, so it does not compress)."""
    payload = os.urandom(BIG)
    return make_wheel(directory, name, version, files={"blob/data.bin": payload})


# ----------------------------------------------------------------------------- publishing


def test_twine_upload_lands_in_the_bucket_and_pip_installs_it(
    s3: S3Server, s3_bucket: str, served: Server, dists: Path, tmp_path: Path
) -> None:
    lib = make_wheel(dists, "s3lib", "1.0", requires_python=">=3.8")
    sdist = make_sdist(dists, "s3lib", "1.0", requires_python=">=3.8")
    app = make_wheel(dists, "s3app", "1.0", requires_dist=["s3lib"])
    signature = sign(lib)
    home = tmp_path / "home"
    result = twine_upload(served.url + "/", home, lib, signature, sdist, app)
    assert result.returncode == 0, describe(result)

    keys = s3.keys(s3_bucket)
    for path in (lib, sdist, app, signature):
        assert f"pkgs/{path.name}" in keys
        assert s3.get(s3_bucket, f"pkgs/{path.name}") == path.read_bytes()
    # creamery's own state is under the root's .creamery/ prefix, never beside the files.
    assert all(k.startswith("pkgs/.creamery/") for k in keys if not k.startswith("pkgs/s3"))

    files = files_of(served, "s3lib")
    assert set(files) == {lib.name, sdist.name}
    for path in (lib, sdist):
        entry = files[path.name]
        assert entry["hashes"] == {"sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
        assert entry["requires-python"] == ">=3.8"
    metadata = wheel_metadata(lib)
    core = files[lib.name]["core-metadata"]
    assert core == {"sha256": hashlib.sha256(metadata).hexdigest()}
    response = httpx.get(f"{served.url}/packages/{lib.name}.metadata", timeout=10)
    assert (response.status_code, response.content) == (200, metadata)
    response = httpx.get(f"{served.url}/packages/{signature.name}", timeout=10)
    assert (response.status_code, response.content) == (200, signature.read_bytes())
    html = httpx.get(f"{served.url}/simple/s3lib/", timeout=10).text
    assert 'data-gpg-sig="true"' in html

    target = tmp_path / "target"
    result = pip_install(f"{served.url}/simple/", target, home, "s3app")
    assert result.returncode == 0, describe(result)
    assert installed(target) == {"s3app-1.0", "s3lib-1.0"}


def test_uv_publish_and_uv_install(served: Server, dists: Path, tmp_path: Path) -> None:
    wheel = make_wheel(dists, "s3uv", "2.0")
    home = tmp_path / "home"
    result = uv_publish(
        served.url + "/", home, "--username", "any", "--password", "any", str(wheel)
    )
    assert result.returncode == 0, describe(result)
    target = tmp_path / "target"
    result = uv_install(served.url, target, home, "s3uv")
    assert result.returncode == 0, describe(result)
    assert installed(target) == {"s3uv-2.0"}


def test_a_taken_name_is_refused_and_overwrite_replaces_it(
    s3: S3Server, s3_bucket: str, dists: Path, tmp_path: Path
) -> None:
    first = make_wheel(dists / "a", "s3over", "1.0", summary="first")
    second = make_wheel(dists / "b", "s3over", "1.0", summary="second")
    assert first.read_bytes() != second.read_bytes()
    home = tmp_path / "home"
    root = f"s3://{s3_bucket}"
    with run_server([root], "-a", ".", "-P", ".", env=s3.env()) as server:
        assert twine_upload(server.url + "/", home, first).returncode == 0
        again = twine_upload(server.url + "/", home, second)
        assert again.returncode != 0
        assert "400" in again.stdout + again.stderr  # PyPI's "File already exists" for twine
        response = httpx.post(
            server.url + "/",
            data={":action": "file_upload"},
            files={"content": (second.name, second.read_bytes())},
            timeout=10,
        )
        assert response.status_code == 409
        assert "already exists" in response.text
        assert s3.get(s3_bucket, first.name) == first.read_bytes()
    with run_server([root], "-a", ".", "-P", ".", "--overwrite", env=s3.env()) as server:
        result = twine_upload(server.url + "/", home, second)
        assert result.returncode == 0, describe(result)
        assert s3.get(s3_bucket, first.name) == second.read_bytes()
        response = httpx.get(f"{server.url}/packages/{first.name}", timeout=10)
        assert response.content == second.read_bytes()
        digest = files_of(server, "s3over")[first.name]["hashes"]
        assert digest == {"sha256": hashlib.sha256(second.read_bytes()).hexdigest()}


def test_an_invalid_upload_leaves_nothing_in_the_bucket(
    s3: S3Server, s3_bucket: str, served: Server
) -> None:
    before = s3.keys(s3_bucket)
    response = httpx.post(
        served.url + "/",
        data={":action": "file_upload", "name": "broken", "version": "1.0"},
        files={"content": ("broken-1.0-py3-none-any.whl", b"not a zip")},
        timeout=10,
    )
    assert response.status_code == 400
    assert s3.keys(s3_bucket) == before


def test_a_bucket_beside_a_directory_serves_both(
    s3: S3Server, s3_bucket: str, dists: Path, tmp_path: Path
) -> None:
    """Mixed roots, in order: uploads go to the first, the first wins on equal names."""
    local = tmp_path / "local"
    in_dir = make_wheel(local, "s3mixed", "1.0")
    in_bucket = make_wheel(dists, "s3mixed", "2.0")
    s3.put(s3_bucket, f"p/{in_bucket.name}", in_bucket.read_bytes())
    uploaded = make_wheel(dists, "s3mixed", "3.0")
    home = tmp_path / "home"
    for roots, upload_goes_to in (
        ([f"s3://{s3_bucket}/p", local], "bucket"),
        ([local, f"s3://{s3_bucket}/p"], "directory"),
    ):
        with run_server(roots, "-a", ".", "-P", ".", env=s3.env()) as server:
            assert {in_dir.name, in_bucket.name} <= set(files_of(server, "s3mixed"))
            for path in (in_dir, in_bucket):
                response = httpx.get(f"{server.url}/packages/{path.name}", timeout=10)
                assert response.content == path.read_bytes()
            result = twine_upload(server.url + "/", home, uploaded)
            assert result.returncode == 0, describe(result)
            in_the_bucket = f"p/{uploaded.name}" in s3.keys(s3_bucket)
            assert in_the_bucket == (upload_goes_to == "bucket")
            assert (local / uploaded.name).exists() == (upload_goes_to == "directory")
            assert httpx.get(server.url + "/health", timeout=10).status_code == 200
            # Removed through the API (remove_pkg), from wherever it is.
            response = httpx.post(
                server.url + "/",
                data={":action": "remove_pkg", "name": "s3mixed", "version": "3.0"},
                timeout=10,
            )
            assert response.status_code == 200, response.text
            assert uploaded.name not in files_of(server, "s3mixed")


def test_two_replicas_on_one_bucket_see_each_others_writes(
    s3: S3Server, s3_bucket: str, dists: Path, tmp_path: Path
) -> None:
    wheel = make_wheel(dists, "s3rep", "1.0")
    root = f"s3://{s3_bucket}/shared"
    args = ("-a", ".", "-P", ".", "--disable-fallback")
    with (
        run_server([root], *args, env=s3.env()) as one,
        run_server([root], *args, env=s3.env()) as two,
    ):
        result = twine_upload(one.url + "/", tmp_path / "home", wheel)
        assert result.returncode == 0, describe(result)
        # A miss catches up first: the other replica's write is there for the next request.
        assert wheel.name in files_of(two, "s3rep")
        response = httpx.post(
            f"{two.url}/-/yank", json={"project": "s3rep", "version": "1.0", "reason": "r"}
        )
        assert response.status_code == 200, response.text
        wait_for(lambda: files_of(one, "s3rep")[wheel.name].get("yanked") == "r", "the yank")
        target = tmp_path / "target"
        result = pip_install(f"{two.url}/simple/", target, tmp_path / "home", "s3rep==1.0")
        assert result.returncode == 0, describe(result)


# ----------------------------------------------------------------------------- admin commands


def test_cli_yank_unyank_and_remove_on_the_bucket_reach_the_server(
    s3: S3Server, s3_bucket: str, served: Server, dists: Path, tmp_path: Path
) -> None:
    one = make_wheel(dists, "s3yank", "1.0")
    two = make_wheel(dists, "s3yank", "2.0")
    assert twine_upload(served.url + "/", tmp_path / "home", one, two).returncode == 0
    root = f"s3://{s3_bucket}/pkgs"
    env = clean_env(**s3.env())

    result = creamery("yank", "s3yank", "1.0", "--reason", "broken build", root, env=env)
    assert result.returncode == 0, describe(result)
    assert f"yanked {one.name}" in result.stdout
    assert f"pkgs/.creamery/files/{one.name}/yanked" in s3.keys(s3_bucket)

    def yanked() -> object:
        return files_of(served, "s3yank")[one.name].get("yanked")

    assert wait_for(yanked, "the yank to reach the server") == "broken build"

    result = creamery("unyank", "s3yank", "1.0", root, env=env)
    assert result.returncode == 0, describe(result)
    wait_for(lambda: yanked() is False, "the un-yank to reach the server")

    result = creamery("remove", "s3yank", "2.0", root, env=env)
    assert result.returncode == 0, describe(result)
    assert f"pkgs/{two.name}" not in s3.keys(s3_bucket)
    wait_for(lambda: set(files_of(served, "s3yank")) == {one.name}, "the removal")
    response = httpx.get(f"{served.url}/packages/{two.name}", timeout=10)
    assert response.status_code == 404


def test_update_execute_puts_newer_releases_into_the_bucket(
    s3: S3Server, s3_bucket: str, served: Server, tmp_path: Path
) -> None:
    old = make_wheel(tmp_path / "old", "s3upd", "1.0")
    s3.put(s3_bucket, f"pkgs/sub/{old.name}", old.read_bytes())  # placed by another tool
    upstream_root = tmp_path / "upstream"
    new = make_wheel(upstream_root, "s3upd", "2.0")
    with run_server([upstream_root], "--disable-fallback") as upstream:
        env = clean_env(**s3.env())
        root = f"s3://{s3_bucket}/pkgs"
        result = creamery("update", "-x", "--index-url", f"{upstream.url}/simple/", root, env=env)
    assert result.returncode == 0, describe(result)
    assert s3.get(s3_bucket, f"pkgs/sub/{new.name}") == new.read_bytes()  # beside the old one
    # Recorded in the bucket's change feed: the running server lists it.
    wait_for(lambda: f"sub/{new.name}" in json.dumps(files_of(served, "s3upd")), "the update")


def test_cli_refuses_a_bad_url_in_one_line(s3: S3Server) -> None:
    for command in (("run", "s3://Not_A_Bucket"), ("yank", "p", "1.0", "s3://x")):
        result = creamery(*command, env=clean_env(**s3.env()))
        assert result.returncode == 2, describe(result)
        (line,) = result.stderr.strip().splitlines()
        assert "bucket name" in line


def test_cli_without_obstore_names_the_extra(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['obstore'] = None\n"  # as if the s3 extra were not installed
        "from creamery.cli.main import main\n"
        "sys.exit(main(['run', 's3://some-bucket/prefix']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=clean_env(), timeout=60
    )
    assert result.returncode == 2, describe(result)
    (line,) = result.stderr.strip().splitlines()
    assert "pip install 'creamery[s3]'" in line


# ----------------------------------------------------------------------------- downloads


def test_downloads_answer_range_head_etag_and_304(
    served: Server, dists: Path, tmp_path: Path
) -> None:
    small = make_wheel(dists, "s3small", "1.0")
    big = big_wheel(dists, "s3big", "1.0")
    assert twine_upload(served.url + "/", tmp_path / "home", small, big).returncode == 0
    with served.client() as client:
        for path in (small, big):
            data = path.read_bytes()
            url = f"/packages/{path.name}"
            full = client.get(url)
            assert (full.status_code, full.content) == (200, data)
            etag = full.headers["etag"]
            head = client.head(url)
            assert head.status_code == 200
            assert head.headers["content-length"] == str(len(data))
            assert head.headers["etag"] == etag
            part = client.get(url, headers={"Range": "bytes=10-99"})
            assert part.status_code == 206
            assert part.content == data[10:100]
            assert part.headers["content-range"] == f"bytes 10-99/{len(data)}"
            tail = client.get(url, headers={"Range": "bytes=-7"})
            assert tail.content == data[-7:]
            assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
            assert client.get(url, headers={"Range": f"bytes={len(data)}-"}).status_code == 416


def test_an_object_replaced_within_one_second_by_the_same_size_gets_another_etag(
    s3: S3Server, s3_bucket: str
) -> None:
    """S3's Last-Modified has whole seconds: an ETag of size and mtime alone would let a
    client's If-None-Match keep the old bytes after another tool replaced the object (seen
    at the next rescan, every second here)."""
    key = "pkgs/samesize-1.0.tar.gz"
    s3.put(s3_bucket, key, b"A" * 64)
    url = "/packages/samesize-1.0.tar.gz"
    root = f"s3://{s3_bucket}/pkgs"
    args = ("-a", ".", "-P", ".", "--rescan-interval", "1")
    with run_server([root], *args, env=s3.env()) as served, served.client() as client:
        first = wait_for(lambda: (r := client.get(url)).status_code == 200 and r, "the file")
        assert isinstance(first, httpx.Response)
        s3.put(s3_bucket, key, b"B" * 64)  # same size, most likely within the same second
        again = wait_for(
            lambda: (
                (r := client.get(url, headers={"If-None-Match": first.headers["etag"]})).status_code
                == 200
                and r
            ),
            "the replaced object (a 304 would keep the old bytes)",
        )
        assert isinstance(again, httpx.Response)
        assert again.content == b"B" * 64
        assert again.headers["etag"] != first.headers["etag"]


def test_the_conditional_write_probe_honoured_by_moto_leaves_no_trace(
    s3: S3Server, s3_bucket: str
) -> None:
    """At start a replica checks that the store honours If-None-Match: * (replicas rely on
    it); the probe object is gone afterwards, and a store that is down is not a failure."""
    from creamery.catalog.service import check_conditional_writes
    from creamery.core.objects import ObjectRoot, S3Options
    from creamery.storage.s3 import S3Storage

    store = S3Storage(
        ObjectRoot(s3_bucket, "pkgs").state(), S3Options(timeout=1.0), environ=s3.env()
    )
    assert check_conditional_writes(store) is True
    assert s3.keys(s3_bucket) == []
    s3.stop()
    try:
        assert check_conditional_writes(store) is None
    finally:
        s3.start()


def test_s3_redirect_answers_302_to_a_presigned_url(
    s3: S3Server, s3_bucket: str, dists: Path, tmp_path: Path
) -> None:
    wheel = make_wheel(dists, "s3redir", "1.0")
    signature = sign(wheel)
    args = ("-a", ".", "-P", ".", "--s3-redirect", "120")
    with run_server([f"s3://{s3_bucket}/r"], *args, env=s3.env()) as server:
        result = twine_upload(server.url + "/", tmp_path / "home", wheel, signature)
        assert result.returncode == 0, describe(result)
        with server.client() as client:
            for method in ("GET", "HEAD"):
                response = client.request(method, f"/packages/{wheel.name}")
                assert response.status_code == 302, response.text
                assert response.headers["cache-control"] == "no-store"
            location = response.headers["location"]
            assert location.startswith(s3.endpoint)
            fetched = httpx.get(location, timeout=10)
            assert (fetched.status_code, fetched.content) == (200, wheel.read_bytes())
            # Only distributions: signatures and metadata are served as before.
            response = client.get(f"/packages/{signature.name}")
            assert (response.status_code, response.content) == (200, signature.read_bytes())
            response = client.get(f"/packages/{wheel.name}.metadata")
            assert (response.status_code, response.content) == (200, wheel_metadata(wheel))
        # pip follows the redirect to the store.
        target = tmp_path / "target"
        result = pip_install(f"{server.url}/simple/", target, tmp_path / "home", "s3redir")
        assert result.returncode == 0, describe(result)
        assert installed(target) == {"s3redir-1.0"}


# ----------------------------------------------------------------------------- outages


def test_store_outage_serves_memory_answers_503_and_recovers(
    s3: S3Server, s3_bucket: str, dists: Path, tmp_path: Path
) -> None:
    small = make_wheel(dists, "s3down", "1.0")
    big = big_wheel(dists, "s3down", "2.0")
    later = make_wheel(dists, "s3down", "3.0")
    home = tmp_path / "home"
    args = ("-a", ".", "-P", ".", "--disable-fallback", "--s3-timeout", "2")
    with run_server([f"s3://{s3_bucket}"], *args, env=s3.env()) as server:
        assert twine_upload(server.url + "/", home, small, big).returncode == 0
        with server.client(timeout=30) as client:
            page = client.get("/simple/s3down/")
            assert page.status_code == 200
            assert client.get(f"/packages/{small.name}").status_code == 200  # now in memory
            statuses: list[int] = []
            s3.stop()
            try:
                page = client.get("/simple/s3down/")
                assert page.status_code == 200
                assert small.name in page.text
                cached = client.get(f"/packages/{small.name}")
                assert (cached.status_code, cached.content) == (200, small.read_bytes())

                download = client.get(f"/packages/{big.name}")
                assert download.status_code == 503, download.text
                assert download.headers["retry-after"].isdigit()
                assert s3_bucket in download.text
                assert len(download.text.strip().splitlines()) == 1

                health = client.get("/health")
                assert health.status_code == 503
                assert s3_bucket in health.text

                upload = twine_upload(server.url + "/", home, later)
                assert upload.returncode != 0
                assert "503" in upload.stdout + upload.stderr
                # Was "upload failed: ..." for a removal too.
                removal = {":action": "remove_pkg", "name": "s3down", "version": "1.0"}
                removed = client.post("/", data=removal)
                assert removed.status_code == 503, removed.text
                assert removed.text.startswith("removal failed: "), removed.text
                assert len(removed.text.strip().splitlines()) == 1
                for path in ("/", "/packages/", "/pypi/s3down/json", "/simple/"):
                    statuses.append(client.get(path).status_code)
            finally:
                s3.start()
            assert 500 not in statuses, statuses
            wait_for(lambda: client.get("/health").status_code == 200, "the store's return")
            download = client.get(f"/packages/{big.name}")
            assert (download.status_code, download.content) == (200, big.read_bytes())
            assert later.name not in s3.keys(s3_bucket)  # the failed upload left nothing
            result = twine_upload(server.url + "/", home, later)
            assert result.returncode == 0, describe(result)
            assert later.name in files_of(server, "s3down")
            assert small.name in files_of(server, "s3down")  # the failed removal took nothing
        assert "Traceback" not in server.log()


def test_a_server_started_while_the_store_is_down_waits_for_it(
    s3: S3Server, s3_bucket: str, dists: Path, tmp_path: Path
) -> None:
    wheel = make_wheel(dists, "s3late", "1.0")
    s3.put(s3_bucket, wheel.name, wheel.read_bytes())
    port = free_port()
    command = [sys.executable, "-m", "creamery", "run", "-i", "127.0.0.1", "-p", str(port)]
    command += ["-a", ".", "-P", ".", "--s3-timeout", "1", f"s3://{s3_bucket}"]
    env = clean_env(XDG_CACHE_HOME=str(tmp_path / "cache"), **s3.env())
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"

    def health() -> int:
        try:
            return httpx.get(url + "/health", timeout=30).status_code
        except httpx.HTTPError:
            return 0

    s3.stop()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        # Up and answering, but not ready: a load balancer keeps it out of rotation.
        assert wait_for(health, "the replica to answer") == 503, log.read_text()
        assert process.poll() is None, log.read_text()
        s3.start()
        wait_for(lambda: health() == 200, "the replica to become ready")
        assert wheel.name in files_of(Server(url, port, (), process, log), "s3late")
    finally:
        if s3.paused:
            s3.start()
        process.terminate()
        process.wait(10)


# ----------------------------------------------------------------------------- configuration


def test_object_roots_from_environment_file_and_worker_json(s3: S3Server, tmp_path: Path) -> None:
    from creamery.cli.main import build_run_config, parse_args
    from creamery.core.config import Config
    from creamery.core.objects import ObjectRoot

    local = tmp_path / "local"
    local.mkdir()
    config = build_run_config(["run", "s3://bucket-one/pre/fix", str(local), "--s3-redirect"])
    assert config.roots == (ObjectRoot("bucket-one", "pre/fix"), local.resolve())
    assert config.s3_redirect == 300
    assert config.rescan_seconds() == 60.0
    assert config.feed_seconds() == 1.0
    assert Config.from_json(config.to_json()) == config

    environ = {"CREAMERY_PACKAGES_DIRECTORY": f"s3://bucket-two:{local}"}
    args = parse_args(["run"], environ)
    assert args.package_directory == ["s3://bucket-two", str(local)]

    toml = tmp_path / "creamery.toml"
    toml.write_text(
        '[creamery]\npackages-directory = ["s3://bucket-three/p"]\n'
        's3-endpoint-url = "http://127.0.0.1:9000"\nfeed-interval = 0.5\n'
    )
    args = parse_args(["run", "--config", str(toml)], {})
    assert args.package_directory == ["s3://bucket-three/p"]
    assert (args.s3_endpoint_url, args.feed_interval) == ("http://127.0.0.1:9000", 0.5)


def test_a_local_install_never_imports_obstore(tmp_path: Path) -> None:
    """The catalog of a directory, built and loaded as a server's, loads no S3 client."""
    (tmp_path / "pkgs").mkdir()
    make_wheel(tmp_path / "pkgs", "plain", "1.0")
    code = (
        "import sys\n"
        "from creamery.cli.main import build_run_config\n"
        "from creamery.web.app import create_app\n"
        f"app = create_app(build_run_config(['run', {str(tmp_path / 'pkgs')!r}]))\n"
        "app.start()\n"
        "assert app.index.projects, 'nothing loaded'\n"
        "app.stop()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('obstore', 'boto3')))\n"
    )
    env = clean_env(XDG_CACHE_HOME=str(tmp_path / "cache"))
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, describe(result)
    assert json.loads(result.stdout.strip().replace("'", '"')) == []


def test_health_is_ok_on_a_read_only_directory(tmp_path: Path) -> None:
    """Read-only deployments (a `:ro` volume) serve: health stays 200."""
    root = tmp_path / "ro"
    root.mkdir()
    make_wheel(root, "rolib", "1.0")
    state = tmp_path / "state"
    with run_server([root], "--state-dir", str(state)) as server:
        root.chmod(0o555)
        try:
            response = httpx.get(server.url + "/health", timeout=10)
            assert (response.status_code, response.text) == (200, "Ok")
        finally:
            root.chmod(0o755)


def test_an_outage_reason_is_one_line_naming_the_store() -> None:
    """The one-line reason of an outage: what `outage_reason` makes of a multi-line error."""
    from creamery.http.errors import outage_reason
    from creamery.storage import StoreUnavailable

    reason = outage_reason(StoreUnavailable("timed out\n  after 2 s"), "s3://b")
    assert "\n" not in reason
    assert re.search(r"s3://b: timed out after 2 s", reason)
