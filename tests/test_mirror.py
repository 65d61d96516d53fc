"""The caching mirror (`--mirror`) against real upstreams in their own processes: another
creamery serving the corpus, and `support/upstream.py`, which can be made slow, failing or
hash-corrupting. Installers (pip, uv) run through the mirror as users would.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from support.clients import UV, clean_env, creamery
from support.corpus import Corpus
from support.dists import make_wheel
from support.polling import wait_for
from support.servers import Server, run_server
from support.upstream import UpstreamProcess, run_upstream

from creamery.mirror.client import Upstream
from creamery.mirror.listing import ListingError, parse_html, parse_json

JSON = "application/vnd.pypi.simple.v1+json"
BIG = 256 * 1024  # incompressible bytes in each tbig wheel
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]


# ---------------------------------------------------------------- harness


@contextlib.contextmanager
def run_mirror(index_url: str, cache: Path, *args: str, local: Path | None = None):
    """A `creamery run --mirror` process over *local* (an empty directory by default)."""
    if local is None:
        local = cache.parent / "local"
        local.mkdir(exist_ok=True)
    with run_server(
        [local], "--mirror", "--fallback-url", index_url, "--mirror-cache", str(cache), *args
    ) as server:
        yield server


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def cached(cache: Path, project: str) -> set[str]:
    folder = cache / "files" / project
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def in_progress(cache: Path) -> list[Path]:
    return list((cache / "tmp").glob("*.part"))


@pytest.fixture(scope="module")
def upstream(corpus: Corpus) -> Iterator[Server]:
    """Another creamery, serving the corpus."""
    with run_server(corpus.roots) as server:
        yield server


@pytest.fixture(scope="module")
def fake_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("fake-upstream")
    for version in ("1.0", "2.0", "3.0"):
        blob = os.urandom(BIG)
        make_wheel(directory, "tbig", version, files={"tbig/blob.bin": blob})
    make_wheel(directory, "tlib", "9.0", summary="tlib as another index has it")
    make_wheel(directory, "tfake", "1.0", requires_python=">=3.8")
    return directory


@pytest.fixture(scope="module")
def mirror_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mirror") / "cache"


@pytest.fixture(scope="module")
def mirror(upstream: Server, mirror_cache: Path) -> Iterator[Server]:
    """A mirror of the creamery upstream, shared by the tests that only read through it."""
    with run_mirror(f"{upstream.url}/simple/", mirror_cache) as server:
        yield server


# ---------------------------------------------------------------- pages


def test_mirrored_page_keeps_every_standard(mirror: Server, upstream: Server) -> None:
    theirs = httpx.get(f"{upstream.url}/simple/tlib/", headers={"accept": JSON}).json()
    response = httpx.get(f"{mirror.url}/simple/tlib/", headers={"accept": JSON})
    assert response.status_code == 200
    assert response.headers["content-type"] == JSON
    assert len(response.headers.get_list("x-creamery-serial")) == 1  # a mirrored page too
    ours = response.json()
    assert ours["meta"] == theirs["meta"]
    assert ours["versions"] == theirs["versions"]
    for mine, original in zip(ours["files"], theirs["files"], strict=True):
        # hashes, requires-python, yanked, core-metadata, size and upload-time pass unchanged
        assert mine["url"] == f"../../upstream/tlib/{original['filename']}"
        assert {**mine, "url": None} == {**original, "url": None}


def test_mirrored_html_page_is_the_upstream_page_with_our_urls(
    mirror: Server, upstream: Server
) -> None:
    theirs = httpx.get(f"{upstream.url}/simple/tlib/").text
    response = httpx.get(f"{mirror.url}/simple/tlib/")
    assert response.status_code == 200
    assert response.text == re.sub(r'href="../../packages/', 'href="../../upstream/tlib/', theirs)
    assert 'data-yanked="broken build"' in response.text
    again = httpx.get(
        f"{mirror.url}/simple/tlib/", headers={"if-none-match": response.headers["etag"]}
    )
    assert again.status_code == 304


def test_unknown_project_is_404_without_redirect(mirror: Server) -> None:
    response = httpx.get(f"{mirror.url}/simple/no-such-project/")
    assert response.status_code == 404
    assert "no upstream index has no-such-project" in response.text


def test_files_are_streamed_verified_then_served_from_the_cache(
    mirror: Server, mirror_cache: Path, corpus: Corpus
) -> None:
    name = "tlib-2.0-py3-none-any.whl"
    first = httpx.get(f"{mirror.url}/upstream/tlib/{name}")
    assert first.status_code == 200
    assert first.headers["x-creamery-cache"] == "miss"
    assert first.content == corpus.data(name)
    assert (mirror_cache / "files" / "tlib" / name).read_bytes() == corpus.data(name)
    second = httpx.get(f"{mirror.url}/upstream/tlib/{name}")
    assert second.content == corpus.data(name)
    assert "x-creamery-cache" not in second.headers
    assert [first.headers["x-creamery-serial"]] == second.headers.get_list("x-creamery-serial")
    etag = second.headers["etag"]
    assert (
        httpx.get(f"{mirror.url}/upstream/tlib/{name}", headers={"if-none-match": etag}).status_code
        == 304
    )
    part = httpx.get(f"{mirror.url}/upstream/tlib/{name}", headers={"range": "bytes=10-19"})
    assert part.status_code == 206
    assert part.content == corpus.data(name)[10:20]
    metadata = httpx.get(f"{mirror.url}/upstream/tlib/{name}.metadata")
    assert metadata.status_code == 200
    assert metadata.content == corpus.metadata(name)
    assert in_progress(mirror_cache) == []


@pytest.mark.parametrize(
    "path",
    [
        "/upstream/tlib/not-listed-1.0-py3-none-any.whl",
        "/upstream/tlib/..%2f..%2fsecret.txt",
        "/upstream/Not_Normal/tlib-2.0-py3-none-any.whl",
        "/upstream/tlib/tlib-2.0.tar.gz.metadata",  # sdists have no PEP 658 metadata here
    ],
)
def test_only_listed_files_are_fetched(mirror: Server, path: str) -> None:
    assert httpx.get(mirror.url + path).status_code == 404


def test_pip_installs_through_the_mirror(
    mirror: Server, mirror_cache: Path, tmp_path: Path
) -> None:
    target = tmp_path / "target"
    command = [*PIP, "install", "--no-cache-dir", "--target", str(target)]
    command += ["--index-url", f"{mirror.url}/simple/", "tapp"]
    env = clean_env(PIP_CONFIG_FILE=os.devnull, PYTHONNOUSERSITE="1")
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {p.name for p in target.glob("*.dist-info")} == {
        "tapp-1.0.dist-info",
        "tlib-2.0.dist-info",
    }
    assert "tapp-1.0-py3-none-any.whl" in cached(mirror_cache, "tapp")


def test_uv_installs_through_the_mirror(mirror: Server, mirror_cache: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    command = [UV, "pip", "install", "--no-config", "--python", sys.executable]
    command += ["--target", str(target), "--index-url", f"{mirror.url}/simple/", "tapp"]
    env = clean_env(UV_CACHE_DIR=str(tmp_path / "uv-cache"), UV_PYTHON_DOWNLOADS="never")
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (target / "tapp" / "__init__.py").is_file()
    assert (target / "tlib" / "__init__.py").read_text() == '__version__ = "2.0"\n'
    assert "tlib-2.0-py3-none-any.whl" in cached(mirror_cache, "tlib")


# ---------------------------------------------------------------- downloads


def test_concurrent_first_requests_share_one_download(
    fake: UpstreamProcess, fake_dir: Path, tmp_path: Path
) -> None:
    name = "tbig-1.0-py3-none-any.whl"
    fake.control(chunk_delay=0.01)  # about a second for the whole file
    cache = tmp_path / "cache"
    with run_mirror(fake.index_url, cache) as mirror, ThreadPoolExecutor(8) as pool:
        url = f"{mirror.url}/upstream/tbig/{name}"
        bodies = list(pool.map(lambda _: httpx.get(url, timeout=30).content, range(8)))
    assert all(body == (fake_dir / name).read_bytes() for body in bodies)
    assert fake.stats()[f"/files/{name}"] == 1
    assert fake.stats()["/simple/tbig/"] == 1
    assert cached(cache, "tbig") == {name}


@pytest.mark.parametrize("no_length", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("server", ["granian", "uvicorn"])
def test_a_corrupted_download_is_aborted_and_never_kept(
    fake: UpstreamProcess, tmp_path: Path, no_length: bool, server: str
) -> None:
    name = "tbig-2.0-py3-none-any.whl"
    cache = tmp_path / "cache"
    with run_mirror(fake.index_url, cache, "--server", server) as mirror:
        httpx.get(f"{mirror.url}/simple/tbig/").raise_for_status()
        fake.control(corrupt=True, no_length=no_length)
        for _ in range(2):  # nothing bad was kept: the second client is not served from it
            with pytest.raises(httpx.TransportError):
                httpx.get(f"{mirror.url}/upstream/tbig/{name}", timeout=10)
            assert cached(cache, "tbig") == set()
            assert wait_for(lambda: in_progress(cache) == [])
        fake.control(corrupt=False)
        good = httpx.get(f"{mirror.url}/upstream/tbig/{name}", timeout=10)
        assert (
            hashlib.sha256(good.content).hexdigest() in httpx.get(f"{mirror.url}/simple/tbig/").text
        )
        assert "does not match its listed sha256 digest" in mirror.log()
    assert fake.stats()[f"/files/{name}"] == 3
    assert cached(cache, "tbig") == {name}


def test_least_recently_used_files_are_evicted(fake: UpstreamProcess, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    one, two, three = (f"tbig-{v}-py3-none-any.whl" for v in ("1.0", "2.0", "3.0"))
    with run_mirror(fake.index_url, cache, "--mirror-max-size", str(int(BIG * 2.4))) as mirror:
        for name in (one, two, one, three):  # `one` used again: `two` is the least recent
            httpx.get(f"{mirror.url}/upstream/tbig/{name}").raise_for_status()
            time.sleep(0.05)
        assert wait_for(lambda: cached(cache, "tbig") == {one, three})


def test_mirrored_versions_keep_the_upstreams_versions_without_files(
    fake: UpstreamProcess, tmp_path: Path
) -> None:
    """PEP 700 `versions` lists releases whose files are all gone (requests 0.0.1, 2.15.0)."""
    listed = ["0.0.1", "0.12.01", "1.0", "2.15.0"]
    fake.control(versions={"tfake": listed})
    cache = tmp_path / "cache"
    with run_mirror(fake.index_url, cache) as mirror:
        page = httpx.get(f"{mirror.url}/simple/tfake/", headers={"accept": JSON}).json()
        assert page["versions"] == listed
        assert [f["filename"] for f in page["files"]] == ["tfake-1.0-py3-none-any.whl"]
    fake.control(fail=503)  # restarted with the upstream down: the page comes from the disk
    with run_mirror(fake.index_url, cache) as mirror:
        page = httpx.get(f"{mirror.url}/simple/tfake/", headers={"accept": JSON}).json()
        assert page["versions"] == listed


# ---------------------------------------------------------------- failures and offline


def test_stopped_upstream_still_serves_what_was_cached(fake_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    name = "tfake-1.0-py3-none-any.whl"
    data = (fake_dir / name).read_bytes()
    with run_upstream(fake_dir) as upstream:
        with run_mirror(upstream.index_url, cache, "--mirror-ttl", "0") as mirror:
            httpx.get(f"{mirror.url}/simple/tfake/").raise_for_status()
            httpx.get(f"{mirror.url}/upstream/tfake/{name}").raise_for_status()
            upstream.process.terminate()
            upstream.process.wait(timeout=10)
            assert_offline_service(mirror, name, data)
            assert "serving the cached page (stale)" in mirror.log()
        # The cache survives a restart: a new mirror with the upstream still down serves it.
        with run_mirror(upstream.index_url, cache, "--mirror-ttl", "0") as mirror:
            assert_offline_service(mirror, name, data)


def assert_offline_service(mirror: Server, name: str, data: bytes) -> None:
    page = httpx.get(f"{mirror.url}/simple/tfake/")
    assert page.status_code == 200
    assert page.headers["x-creamery-stale"] == "1"
    assert page.headers["warning"] == '110 - "Response is Stale"'
    assert name in page.text
    assert httpx.get(f"{mirror.url}/upstream/tfake/{name}").content == data
    not_cached = httpx.get(f"{mirror.url}/upstream/tbig/tbig-1.0-py3-none-any.whl")
    assert not_cached.status_code == 502
    never_seen = httpx.get(f"{mirror.url}/simple/tlib/")
    assert never_seen.status_code == 502
    assert "failed" in never_seen.text


def pip_install_offline(mirror: Server, target: Path, *requirements: str):
    command = [*PIP, "install", "--no-cache-dir", "--target", str(target)]
    command += ["--index-url", f"{mirror.url}/simple/", *requirements]
    env = clean_env(PIP_CONFIG_FILE=os.devnull, PYTHONNOUSERSITE="1")
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def test_a_cache_cleared_while_serving_is_rebuilt(fake_dir: Path, tmp_path: Path) -> None:
    """`mirror-cache clear` on a running mirror: the page it still holds in memory goes back to
    disk with the next file it caches, so a restart with the upstream down still serves both."""
    cache = tmp_path / "cache"
    name = "tfake-1.0-py3-none-any.whl"
    data = (fake_dir / name).read_bytes()
    with run_upstream(fake_dir) as upstream:
        with run_mirror(upstream.index_url, cache) as mirror:
            httpx.get(f"{mirror.url}/simple/tfake/").raise_for_status()
            cleared = creamery("mirror-cache", "clear", "--mirror-cache", str(cache))
            assert cleared.returncode == 0, cleared.stderr
            assert not (cache / "pages" / "tfake.json").exists()
            httpx.get(f"{mirror.url}/simple/tfake/").raise_for_status()  # from memory
            httpx.get(f"{mirror.url}/upstream/tfake/{name}").raise_for_status()
            assert cached(cache, "tfake") == {name}
            assert (cache / "pages" / "tfake.json").exists()
        upstream.process.terminate()
        upstream.process.wait(timeout=10)
        with run_mirror(upstream.index_url, cache, "--mirror-ttl", "0") as mirror:
            assert_offline_service(mirror, name, data)


def test_revalidation_writes_back_a_cleared_page(upstream: Server, tmp_path: Path) -> None:
    """A 304 from the upstream restores a page cleared from disk while the mirror ran."""
    cache = tmp_path / "cache"
    with run_mirror(f"{upstream.url}/simple/", cache, "--mirror-ttl", "0") as mirror:
        httpx.get(f"{mirror.url}/simple/tapp/").raise_for_status()
        stored = (cache / "pages" / "tapp.json").read_bytes()
        creamery("mirror-cache", "clear", "--mirror-cache", str(cache))
        assert not (cache / "pages" / "tapp.json").exists()
        page = httpx.get(f"{mirror.url}/simple/tapp/")
        assert page.status_code == 200 and "x-creamery-stale" not in page.headers
        restored = json.loads((cache / "pages" / "tapp.json").read_bytes())
        assert restored["listing"] == json.loads(stored)["listing"]


def test_cached_files_keep_their_project_servable_offline(fake_dir: Path, tmp_path: Path) -> None:
    """A cache whose page is gone (cleared before this was fixed, or deleted by hand) and no
    upstream: the page is rebuilt from the cached files, and pip installs from it."""
    cache = tmp_path / "cache"
    name = "tfake-1.0-py3-none-any.whl"
    data = (fake_dir / name).read_bytes()
    with run_upstream(fake_dir) as upstream:
        with run_mirror(upstream.index_url, cache) as mirror:
            httpx.get(f"{mirror.url}/upstream/tfake/{name}").raise_for_status()
            httpx.get(f"{mirror.url}/upstream/tfake/{name}.metadata").raise_for_status()
        upstream.process.terminate()
        upstream.process.wait(timeout=10)
    (cache / "pages" / "tfake.json").unlink()
    with run_mirror(upstream.index_url, cache) as mirror:
        page = httpx.get(f"{mirror.url}/simple/tfake/", headers={"Accept": JSON})
        assert page.status_code == 200, page.text
        assert page.headers["x-creamery-stale"] == "1"
        (entry,) = page.json()["files"]
        assert entry["filename"] == name
        assert entry["hashes"] == {"sha256": hashlib.sha256(data).hexdigest()}
        assert entry["requires-python"] == ">=3.8"
        assert entry["core-metadata"] is not False
        assert "page rebuilt from 1 cached files" in mirror.log()
        result = pip_install_offline(mirror, tmp_path / "target", "tfake")
        assert result.returncode == 0, result.stdout + result.stderr
        assert httpx.get(f"{mirror.url}/simple/tbig/").status_code == 502  # nothing cached
    rebuilt = json.loads((cache / "pages" / "tfake.json").read_bytes())
    assert rebuilt["fetched"] == 0  # stale: fetched again once an upstream answers


def test_a_hanging_upstream_times_out(fake: UpstreamProcess, tmp_path: Path) -> None:
    with run_mirror(
        fake.index_url, tmp_path / "cache", "--upstream-timeout", "1", "--mirror-ttl", "0"
    ) as mirror:
        httpx.get(f"{mirror.url}/simple/tfake/").raise_for_status()
        fake.control(delay=5)
        started = time.monotonic()
        stale = httpx.get(f"{mirror.url}/simple/tfake/")
        assert stale.status_code == 200
        assert stale.headers["x-creamery-stale"] == "1"
        never_seen = httpx.get(f"{mirror.url}/simple/tbig/")
        assert never_seen.status_code == 504
        assert "did not answer within 1 s" in never_seen.text
        assert time.monotonic() - started < 4


@pytest.mark.parametrize("fail", [500, -1], ids=["status-500", "dropped-connection"])
def test_a_failing_upstream_gives_502(fake: UpstreamProcess, tmp_path: Path, fail: int) -> None:
    fake.control(fail=fail)
    with run_mirror(fake.index_url, tmp_path / "cache") as mirror:
        response = httpx.get(f"{mirror.url}/simple/tfake/")
    assert response.status_code == 502
    assert "tfake" in response.text


def test_an_html_only_upstream_is_parsed(
    fake: UpstreamProcess, fake_dir: Path, tmp_path: Path
) -> None:
    fake.control(html_only=True)
    with run_mirror(fake.index_url, tmp_path / "cache") as mirror:
        page = httpx.get(f"{mirror.url}/simple/tfake/", headers={"accept": JSON}).json()
        (entry,) = page["files"]
        name = "tfake-1.0-py3-none-any.whl"
        data = (fake_dir / name).read_bytes()
        assert page["meta"]["api-version"] == "1.0"  # no sizes: PEP 700 can't be claimed
        assert entry["hashes"] == {"sha256": hashlib.sha256(data).hexdigest()}
        assert entry["requires-python"] == ">=3.8"
        assert entry["core-metadata"]["sha256"]
        assert "size" not in entry
        assert httpx.get(f"{mirror.url}/upstream/tfake/{name}").content == data


# ---------------------------------------------------------------- dependency confusion


def test_a_local_project_never_receives_upstream_files(
    fake: UpstreamProcess, tmp_path: Path
) -> None:
    local = tmp_path / "local"
    mine = make_wheel(local, "tlib", "0.1").name
    with run_mirror(fake.index_url, tmp_path / "cache", local=local) as mirror:
        page = httpx.get(f"{mirror.url}/simple/tlib/", headers={"accept": JSON}).json()
        assert [f["filename"] for f in page["files"]] == [mine]
        assert "tracks" not in page["meta"]
        upstream_file = httpx.get(f"{mirror.url}/upstream/tlib/tlib-9.0-py3-none-any.whl")
        assert upstream_file.status_code == 404
        assert "hosted here" in upstream_file.text
        # Other projects are still mirrored.
        assert httpx.get(f"{mirror.url}/simple/tfake/").status_code == 200
    assert "/simple/tlib/" not in fake.stats()
    assert not any(path.startswith("/files/tlib") for path in fake.stats())


def test_an_allowed_project_is_merged_with_pep_708_metadata_when_asked(
    fake: UpstreamProcess, tmp_path: Path
) -> None:
    """PEP 708 was rejected: its keys only with --mirror-pep708 (test_project_status.py checks
    that a merged page has none by default)."""
    local = tmp_path / "local"
    mine = make_wheel(local, "tlib", "0.1").name
    theirs = "tlib-9.0-py3-none-any.whl"
    merge = ("--mirror-merge", "TLib", "--mirror-pep708")
    with run_mirror(fake.index_url, tmp_path / "cache", *merge, local=local) as mirror:
        page = httpx.get(f"{mirror.url}/simple/tlib/", headers={"accept": JSON}).json()
        html = httpx.get(f"{mirror.url}/simple/tlib/").text
        download = httpx.get(f"{mirror.url}/upstream/tlib/{theirs}")
    tracked = f"{fake.index_url}tlib/"
    urls = {f["filename"]: f["url"] for f in page["files"]}
    assert urls == {mine: f"../../packages/{mine}", theirs: f"../../upstream/tlib/{theirs}"}
    assert page["meta"]["tracks"] == [tracked]
    assert version_tuple(page["meta"]["api-version"]) >= (1, 2)  # PEP 708
    assert page["alternate-locations"] == [tracked]
    assert f'<meta name="pypi:tracks" content="{tracked}">' in html
    assert f'<meta name="pypi:alternate-locations" content="{tracked}">' in html
    assert f'<meta name="pypi:repository-version" content="{page["meta"]["api-version"]}">' in html
    assert download.status_code == 200


def test_first_upstream_that_knows_a_project_wins(
    fake: UpstreamProcess, upstream: Server, tmp_path: Path
) -> None:
    extra = f"{upstream.url}/simple/"
    with run_mirror(fake.index_url, tmp_path / "cache", "--extra-upstream", extra) as mirror:
        tlib = httpx.get(f"{mirror.url}/simple/tlib/", headers={"accept": JSON}).json()
        tapp = httpx.get(f"{mirror.url}/simple/tapp/", headers={"accept": JSON}).json()
    # The fallback URL has tlib: the extra upstream's tlib files are not mixed in.
    assert [f["filename"] for f in tlib["files"]] == ["tlib-9.0-py3-none-any.whl"]
    # Only the extra upstream has tapp.
    assert [f["filename"] for f in tapp["files"]] == ["tapp-1.0-py3-none-any.whl"]


# ---------------------------------------------------------------- the cache command


def test_cache_command_shows_and_clears(fake: UpstreamProcess, tmp_path: Path) -> None:
    local = tmp_path / "local"
    local.mkdir()
    cache = local / ".creamery" / "mirror"  # the default place: hidden in the first root
    name = "tfake-1.0-py3-none-any.whl"
    with run_server([local], "--mirror", "--fallback-url", fake.index_url) as mirror:
        httpx.get(f"{mirror.url}/upstream/tfake/{name}").raise_for_status()
        assert httpx.get(f"{mirror.url}/packages/").text.count("tfake") == 0
    shown = creamery("mirror-cache", "show", str(local))
    assert shown.returncode == 0, shown.stderr
    assert f"tfake/{name}" in shown.stdout
    assert "1 files" in shown.stdout
    cleared = creamery("mirror-cache", "clear", "--mirror-cache", str(cache))
    assert cleared.returncode == 0, cleared.stderr
    assert "removed 1 files" in cleared.stdout
    assert cached(cache, "tfake") == set()
    assert list((cache / "pages").iterdir()) == []
    assert "0 files" in creamery("mirror-cache", "show", "--mirror-cache", str(cache)).stdout


def test_cache_pages_are_plain_json(mirror: Server, mirror_cache: Path) -> None:
    httpx.get(f"{mirror.url}/simple/tapp/").raise_for_status()
    stored = json.loads((mirror_cache / "pages" / "tapp.json").read_text())
    assert stored["listing"]["project"] == "tapp"
    assert [f["filename"] for f in stored["listing"]["files"]] == ["tapp-1.0-py3-none-any.whl"]


# ---------------------------------------------------------------- reading upstream pages

PAGE = "https://up.example/simple/demo/"
INDEX = "https://up.example/simple/"


def test_html_listing_reads_every_attribute_and_drops_unsafe_names() -> None:
    body = b"""<!DOCTYPE html><html><head>
    <meta name="pypi:repository-version" content="1.0">
    <meta name="pypi:alternate-locations" content="https://other.example/simple/demo/">
    </head><body>
    <a href="../../f/demo-1.0-py3-none-any.whl#sha256=ABC" data-requires-python="&gt;=3.8"
       data-dist-info-metadata="sha256=def" data-yanked>demo-1.0-py3-none-any.whl</a>
    <a href="https://cdn.example/demo-1.0.tar.gz#md5=123" data-yanked="bad">demo-1.0.tar.gz</a>
    <a href="../../f/notes.txt">notes.txt</a>
    <a href="../../f/evil-1.0.tar.gz">../evil-1.0.tar.gz</a>
    </body></html>"""
    listing = parse_html(body, "demo", PAGE, INDEX)
    wheel, sdist = listing.files
    assert wheel.url == "https://up.example/f/demo-1.0-py3-none-any.whl"
    assert (wheel.hashes, wheel.requires_python) == ({"sha256": "abc"}, ">=3.8")
    assert (wheel.core_metadata, wheel.yanked, wheel.size) == ({"sha256": "def"}, "", None)
    assert (sdist.url, sdist.hashes) == ("https://cdn.example/demo-1.0.tar.gz", {"md5": "123"})
    assert (sdist.core_metadata, sdist.yanked) == (None, "bad")
    assert listing.alternate_locations == ("https://other.example/simple/demo/",)


def test_json_listing_reads_pep_691_700_714_and_708() -> None:
    document = {
        "meta": {"api-version": "1.2", "tracks": ["https://pypi.org/simple/demo/"]},
        "name": "demo",
        "files": [
            {
                "filename": "demo-1.0-py3-none-any.whl",
                "url": "/f/demo-1.0-py3-none-any.whl",
                "hashes": {"sha256": "AA"},
                "core-metadata": True,
                "yanked": True,
                "size": 10,
                "upload-time": "2024-01-02T03:04:05Z",
                "provenance": "/integrity/demo/1.0/demo-1.0-py3-none-any.whl/provenance",
            },
            {"filename": "demo-1.0.tar.gz", "url": "demo-1.0.tar.gz", "size": True},
        ],
    }
    listing = parse_json(json.dumps(document).encode(), "demo", PAGE, INDEX)
    wheel, sdist = listing.files
    assert wheel.url == "https://up.example/f/demo-1.0-py3-none-any.whl"
    assert (wheel.hashes, wheel.core_metadata, wheel.yanked) == ({"sha256": "aa"}, {}, "")
    assert (wheel.size, wheel.upload_time) == (10, "2024-01-02T03:04:05Z")
    assert (
        wheel.provenance
        == "https://up.example/integrity/demo/1.0/demo-1.0-py3-none-any.whl/provenance"
    )
    assert (sdist.url, sdist.size, sdist.yanked) == (PAGE + "demo-1.0.tar.gz", None, None)
    assert listing.tracks == ("https://pypi.org/simple/demo/",)


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"files": {}}', b'{"meta": {"api-version": "2.0"}, "files": []}'],
)
def test_json_listing_refuses_what_it_cannot_read(body: bytes) -> None:
    with pytest.raises(ListingError):
        parse_json(body, "demo", PAGE, INDEX)


def test_upstream_credentials_stay_out_of_urls() -> None:
    upstream = Upstream.parse("https://me:s%40cret@idx.example/simple")
    assert upstream.index_url == "https://idx.example/simple/"
    assert upstream.project_url("demo") == "https://idx.example/simple/demo/"
    assert upstream.auth == ("me", "s@cret")
    assert upstream.auth_for("https://idx.example/files/demo-1.0.tar.gz") == ("me", "s@cret")
    assert upstream.auth_for("https://cdn.example/demo-1.0.tar.gz") is None


def test_mirror_metrics_count_hits_misses_and_cache_size(
    upstream: Server, corpus: Corpus, tmp_path: Path
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    name = "tlib-2.0-py3-none-any.whl"
    with run_mirror(upstream.url + "/simple/", tmp_path / "cache", "--metrics") as mirror:
        assert httpx.get(f"{mirror.url}/simple/tlib/").status_code == 200
        for _ in range(3):
            assert httpx.get(f"{mirror.url}/upstream/tlib/{name}").content == corpus.data(name)
        scrape = httpx.get(f"{mirror.url}/metrics").text
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(scrape)
        for sample in family.samples
    }
    events = "creamery_mirror_requests_total"
    assert samples[(events, (("kind", "file"), ("result", "miss")))] == 1
    assert samples[(events, (("kind", "file"), ("result", "hit")))] == 2
    assert samples[(events, (("kind", "page"), ("result", "served")))] >= 1
    assert samples[("creamery_mirror_cache_bytes", ())] == len(corpus.data(name))
