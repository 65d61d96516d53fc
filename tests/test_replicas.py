"""Replicas end to end: several `creamery run s3://BUCKET/PREFIX` processes on one bucket (moto's
server mode), real clients (twine, uv, pip), and boto3 as the independent look into the bucket
and as the "other tool" that changes it behind creamery's back.

What issue 11 promises of replicas: a write on one is seen by the others within 2 s at the
default settings, and at once by the client that wrote (a 404 catches up first); of racing
uploads of one filename exactly one wins, and its bytes are what everyone serves; files put or
deleted by other tools appear or vanish within the rescan interval; yanks and removals travel
the same way; a store outage costs 503s, never a 500 nor an acknowledged upload; a replica
killed mid-upload leaves nothing behind; a new replica starts from the index snapshot and says
it is ready only when it serves everything.

Where a failure must fall between two requests of one operation (the feed listed, its record
not read; the file put, its record not), `support.s3_proxy` holds those requests back.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from support import forms
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
from support.dists import make_sdist, make_wheel, wheel_metadata
from support.forms import BOUNDARY
from support.polling import wait_for
from support.s3 import S3Server
from support.s3_proxy import store_proxy
from support.servers import Server, free_port, run_server, spawn
from support.wire import listed

pytest.importorskip("obstore", reason="object roots need the s3 extra")

OPEN = ("-a", ".", "-P", ".", "--disable-fallback")  # no authentication, no redirects to PyPI
# The promise is 2 s at the default settings; the bound a test waits for is generous (a busy
# 2-core machine), so only a replica that does not propagate at all fails.
PROPAGATION = 2.0
GENEROUS = 4 * PROPAGATION
EVENTUAL = 30.0  # an outage's end, a process's start
FAST = ("--feed-interval", "0.2")  # where the test is not about the default interval
HTTP = httpx.Client(timeout=30)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def replicas(s3: S3Server, root: str, *args: str, count: int = 2) -> Iterator[list[Server]]:
    """*count* `creamery run` processes on one object root, each with its own cache."""
    with contextlib.ExitStack() as stack:
        yield [
            stack.enter_context(run_server([root], *OPEN, *args, env=s3.env()))
            for _ in range(count)
        ]


@contextlib.contextmanager
def killable_replica(
    s3: S3Server, root: str, workdir: Path, *args: str, endpoint: str = ""
) -> Iterator[Server]:
    """A replica the test may kill or watch start (run_server fails a test whose server dies,
    and waits for it to be ready): started, not waited for; its process group killed at the end.
    """
    workdir.mkdir(parents=True)
    port = free_port()
    command = [sys.executable, "-m", "creamery", "run", "-i", "127.0.0.1", "-p", str(port)]
    command += [*OPEN, *args, root]
    log_path = workdir / "server.log"
    env = clean_env(XDG_CACHE_HOME=str(workdir / "cache"), **s3.env())
    if endpoint:  # through a StoreProxy
        env["AWS_ENDPOINT_URL"] = endpoint
    process = spawn(command, workdir, env, log_path)
    server = Server(f"http://127.0.0.1:{port}", port, (root,), process, log_path, tuple(args))
    try:
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def health(server: Server) -> int:
    """/health's status; 0 when nothing answers (not listening yet, or gone)."""
    try:
        return HTTP.get(server.url + "/health", timeout=30).status_code
    except httpx.HTTPError:
        return 0


def served(server: Server, filename: str) -> httpx.Response:
    return HTTP.get(f"{server.url}/packages/{filename}")


def hashes(server: Server, project: str) -> dict[str, str]:
    """filename -> sha256 of what the replica lists for *project*."""
    return {name: entry["hashes"]["sha256"] for name, entry in listed(server, project).items()}


def yanked(server: Server, project: str, filename: str) -> object:
    return listed(server, project)[filename].get("yanked")


def seen_everywhere(servers: Sequence[Server], project: str, expected: dict[str, bytes]) -> bool:
    """Every replica lists exactly *expected* (filename -> bytes) for *project*, hashes right."""
    want = {name: sha256(data) for name, data in expected.items()}
    return all(hashes(server, project) == want for server in servers)


def assert_served_everywhere(
    servers: Sequence[Server], files: dict[str, bytes], project: str = ""
) -> None:
    """Each replica serves each file, byte for byte: at /packages/<filename>, or at the URL its
    listing of *project* gives (a file in a subdirectory of the root is under its path)."""
    for server in servers:
        page = httpx.URL(f"{server.url}/simple/{project}/")
        urls = (
            {n: page.join(e["url"]) for n, e in listed(server, project).items()} if project else {}
        )
        for name, data in files.items():
            response = HTTP.get(urls[name]) if name in urls else served(server, name)
            assert response.status_code == 200, (server.url, name, response.text)
            assert sha256(response.content) == sha256(data), (server.url, name)


def distributions(s3: S3Server, bucket: str, prefix: str) -> list[str]:
    """The keys under *prefix* that are not creamery's own state."""
    return [k for k in s3.keys(bucket, prefix) if not k.startswith(f"{prefix}.creamery/")]


def timed_wait(condition: Callable[[], object], what: str, timeout: float = GENEROUS) -> float:
    """Wait for *condition*; the seconds it took, or the test fails naming *what*."""
    start = time.monotonic()
    assert wait_for(condition, timeout=timeout, interval=0.05), f"{what} not seen in {timeout} s"
    return time.monotonic() - start


# ----------------------------------------------------------------------------- clients


def test_publish_to_one_replica_install_from_the_other(
    s3: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    """twine and `uv publish` to A, pip and uv install from B, at the default settings."""
    dists, home = tmp_path / "dists", tmp_path / "home"
    lib = make_wheel(dists, "replib", "1.0")
    sdist = make_sdist(dists, "replib", "1.0")
    app = make_wheel(dists, "repapp", "1.0", requires_dist=["replib"])
    lib2 = make_wheel(dists, "replib", "2.0")
    app2 = make_wheel(dists, "repapp", "2.0", requires_dist=["replib>=2"])
    with replicas(s3, f"s3://{s3_bucket}/pkgs") as (a, b):
        result = twine_upload(a.url + "/", home, lib, sdist, app)
        assert result.returncode == 0, describe(result)
        # Read-your-writes: a project B never saw, at once: its page (a miss catches up with
        # the change feed before answering 404), and the files' URLs (twine sends wheels first).
        assert set(listed(b, "repapp")) == {app.name}
        for path in (sdist, app, lib):
            response = served(b, path.name)
            assert (response.status_code, response.content) == (200, path.read_bytes())
        want = {p.name: sha256(p.read_bytes()) for p in (lib, sdist)}
        assert [hashes(s, "replib") for s in (a, b)] == [want, want], (a.log(), b.log())

        # Propagation by the feed alone: B knows the project, so its page is a hit, answered
        # from memory; the new release reaches it by B's poll of the feed (1 s by default).
        result = uv_publish(a.url + "/", home, "--username", "u", "--password", "p", str(lib2))
        assert result.returncode == 0, describe(result)
        took = timed_wait(lambda: lib2.name in listed(b, "replib"), "uv publish's file on B")
        print(f"propagation A -> B: {took:.2f} s")
        response = served(b, lib2.name)
        assert (response.status_code, response.content) == (200, lib2.read_bytes())

        # uv publish, then the new file's URL on B at once: 200, not 404.
        result = uv_publish(a.url + "/", home, "--username", "u", "--password", "p", str(app2))
        assert result.returncode == 0, describe(result)
        response = served(b, app2.name)
        assert (response.status_code, response.content) == (200, app2.read_bytes())

        target = tmp_path / "pip-target"
        result = pip_install(f"{b.url}/simple/", target, home, "repapp==1.0", "replib==1.0")
        assert result.returncode == 0, describe(result)
        assert installed(target) == {"repapp-1.0", "replib-1.0"}
        timed_wait(lambda: app2.name in listed(b, "repapp"), "repapp 2.0 on B's page")
        target = tmp_path / "uv-target"
        result = uv_install(b.url, target, home, "repapp")
        assert result.returncode == 0, describe(result)
        assert installed(target) == {"repapp-2.0", "replib-2.0"}
        for server in (a, b):
            assert "Traceback" not in server.log(), server.log()


# ----------------------------------------------------------------------------- races


def test_twenty_uploads_of_one_filename_across_two_replicas_one_wins(
    s3: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    paths = [make_wheel(tmp_path / str(i), "reprace", "1.0", summary=f"v{i}") for i in range(20)]
    variants = [path.read_bytes() for path in paths]
    assert len(set(variants)) == 20
    filename = "reprace-1.0-py3-none-any.whl"
    with replicas(s3, f"s3://{s3_bucket}/race", *FAST) as servers:
        barrier = threading.Barrier(len(variants))

        def send(i: int) -> tuple[int, str]:
            barrier.wait(timeout=30)
            response = forms.upload(servers[i % 2], filename, variants[i])
            return response.status_code, response.text

        with ThreadPoolExecutor(len(variants)) as pool:
            results = list(pool.map(send, range(len(variants))))
        statuses = sorted(status for status, _ in results)
        assert statuses == [200] + [409] * 19, results
        for status, text in results:
            if status == 409:
                assert "File already exists" in text, text
        (won,) = [i for i, (status, _) in enumerate(results) if status == 200]
        winner = variants[won]

        assert distributions(s3, s3_bucket, "race/") == [f"race/{filename}"]
        assert sha256(s3.get(s3_bucket, f"race/{filename}")) == sha256(winner)
        timed_wait(lambda: seen_everywhere(servers, "reprace", {filename: winner}), "the winner")
        assert_served_everywhere(servers, {filename: winner})
        for server in servers:
            # The metadata is the winner's on both replicas: no loser's facts stuck anywhere.
            response = HTTP.get(f"{server.url}/packages/{filename}.metadata")
            assert (response.status_code, response.content) == (200, wheel_metadata(paths[won]))
            assert "Traceback" not in server.log(), server.log()


def test_two_spellings_of_one_file_across_two_replicas_one_wins(
    s3: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    """Was: `sp-1.0-py3-none-any.whl` and `SP-1.0.0-py3-none-any.whl` (one file to pip: the
    same name and version) uploaded at once to two replicas both got 200, as two keys: each
    replica's check of its index came before the other's feed record, and the store's
    put-if-absent is on the exact key. Now one wins, the other is withdrawn and answered 409,
    and once the winner is removed the other spelling takes the name."""
    spellings = ["sp-{v}-py3-none-any.whl", "SP-{v}.0-py3-none-any.whl"] * 2
    expected: dict[str, bytes] = {}
    with replicas(s3, f"s3://{s3_bucket}/spell", *FAST) as servers:
        for version in ("1.0", "2.0"):
            sent = []
            for i, spelling in enumerate(spellings):
                wheel = make_wheel(tmp_path / f"{version}-{i}", "sp", version, summary=f"v{i}")
                sent.append((spelling.format(v=version), wheel.read_bytes()))
            barrier = threading.Barrier(len(sent))

            def send(
                i: int, sent: list[tuple[str, bytes]] = sent, barrier: threading.Barrier = barrier
            ) -> int:
                barrier.wait(timeout=30)
                return forms.upload(servers[i % 2], *sent[i]).status_code

            with ThreadPoolExecutor(len(sent)) as pool:
                statuses = list(pool.map(send, range(len(sent))))
            assert sorted(statuses) == [200, 409, 409, 409], statuses
            name, data = sent[statuses.index(200)]
            stored = [k for k in distributions(s3, s3_bucket, "spell/") if f"-{version}" in k]
            assert stored == [f"spell/{name}"], stored
            assert sha256(s3.get(s3_bucket, f"spell/{name}")) == sha256(data)
            expected[name] = data
            timed_wait(lambda: seen_everywhere(servers, "sp", expected), "the winner")
            for server in servers:
                on_page = [n for n in hashes(server, "sp") if f"-{version}" in n]
                assert on_page == [name], (server.url, on_page)
        # The claim of a removed file is no one's: the other spelling may have the name now.
        removed = HTTP.post(
            servers[0].url + "/", data={":action": "remove_pkg", "name": "sp", "version": "1.0"}
        )
        assert removed.is_success, removed.text
        claims = s3.keys(s3_bucket, "spell/.creamery/claims/")
        assert [key.rpartition("/")[2] for key in claims] == ["sp-2-py3-none-any.whl"], claims
        other = next(s.format(v="1.0") for s in spellings if s.format(v="1.0") != name)
        again = make_wheel(tmp_path / "again", "sp", "1.0")
        timed_wait(lambda: not any("-1.0" in n for n in hashes(servers[1], "sp")), "removal")
        assert forms.upload(servers[1], other, again.read_bytes()).status_code == 200
        for server in servers:
            assert "Traceback" not in server.log(), server.log()


def test_the_loser_of_a_claim_is_withdrawn_when_the_store_did_not_answer_after_its_put(
    s3: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    """Was: the loser of a claim (another replica's spelling of the file holds the name) is
    withdrawn only if the store still has the very version it put; when the HEAD after its
    put went unanswered, that version carried a guessed mtime, never the store's, so the
    loser was answered 409 and its file stayed: two spellings of one file served. Now the
    version put is compared by what identifies its bytes (size, ETag)."""
    root = f"s3://{s3_bucket}/lose"
    winner, loser = "lo-1.0-py3-none-any.whl", "LO-1.0.0-py3-none-any.whl"
    wheel = make_wheel(tmp_path, "lo", "1.0")
    put_seen: list[str] = []

    def after_the_put(method: str, path: str) -> bool:
        if not path.endswith(f"/lose/{loser}"):
            return False
        if method == "PUT":
            put_seen.append(path)
            return False
        first_head_after_it = method == "HEAD" and len(put_seen) == 1
        if first_head_after_it:
            put_seen.append(path)  # only that one: the withdrawal's own HEAD goes through
        return first_head_after_it

    args = ("--s3-timeout", "2", *FAST)
    with (
        store_proxy(s3) as (proxy, endpoint),
        run_server([root], *OPEN, *args, env=s3.env(AWS_ENDPOINT_URL=endpoint)) as a,
    ):
        # The winner, as another replica left it (this one has not heard of it yet).
        s3.put(s3_bucket, f"lose/{winner}", wheel.read_bytes())
        s3.put(s3_bucket, "lose/.creamery/claims/lo-1-py3-none-any.whl", winner.encode())
        proxy.hold(after_the_put, drop=True)
        answer = forms.upload(a, loser, wheel.read_bytes())
        proxy.let_go()
        assert proxy.held.is_set()
        assert answer.status_code == 409, answer.text
        assert distributions(s3, s3_bucket, "lose/") == [f"lose/{winner}"]
        assert "Traceback" not in a.log(), a.log()


def test_an_overwrite_whose_old_spelling_cannot_be_deleted_is_still_answered_and_announced(
    s3: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    """Was: with --overwrite, `OV-1.0.0-...` put over `ov-1.0-...` (one file to pip) is
    committed, then the old spelling is deleted; when the store dropped that removal the
    committed upload was answered 503 ("retry later") and never recorded, so the other
    replica did not learn of it. Now it is 200 and announced; the old spelling is left."""
    root = f"s3://{s3_bucket}/ovw"
    old = make_wheel(tmp_path / "old", "ovspell", "1.0")
    new = make_wheel(tmp_path / "new", "ovspell", "1.0", summary="the new one")
    spelled = "OVSPELL-1.0.0-py3-none-any.whl"
    args = ("--overwrite", "--s3-timeout", "2", *FAST)
    with (
        store_proxy(s3) as (proxy, endpoint),
        run_server([root], *OPEN, *args, env=s3.env(AWS_ENDPOINT_URL=endpoint)) as a,
        run_server([root], *OPEN, *args, env=s3.env()) as b,
    ):
        assert forms.upload(a, old.name, old.read_bytes()).status_code == 200
        timed_wait(lambda: old.name in hashes(b, "ovspell"), "the first upload on B")
        old_key = f"/ovw/{old.name}"
        # Its delete is a bulk POST: the HEAD that comes before it (after the commit point).
        proxy.hold(lambda m, p: m == "HEAD" and p.endswith(old_key), drop=True)
        answer = forms.upload(a, spelled, new.read_bytes())
        proxy.let_go()
        assert proxy.held.is_set()
        assert answer.status_code == 200, answer.text
        assert sha256(s3.get(s3_bucket, f"ovw/{spelled}")) == sha256(new.read_bytes())
        timed_wait(lambda: spelled in hashes(b, "ovspell"), "the overwrite on B")
        assert hashes(b, "ovspell")[spelled] == sha256(new.read_bytes())
        assert "Traceback" not in a.log(), a.log()


def test_an_overwrite_whose_old_spelling_went_but_not_its_state_takes_it_off_every_page(
    s3: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    """Was: with --overwrite, `OV-1.0.0-...` put over `ov-1.0-...`; the old spelling's file
    was deleted, then the store dropped a request for its state: the upload was answered
    200, but the old spelling, gone, was never recorded, so both replicas kept listing it
    (a 404 to pip, a second candidate for one release) until a rescan. Now what the
    overwrite found of other spellings is looked at again by every process either way."""
    root = f"s3://{s3_bucket}/ovhalf"
    old = make_wheel(tmp_path / "old", "ovhalf", "1.0")
    new = make_wheel(tmp_path / "new", "ovhalf", "1.0", summary="the new one")
    spelled = "OVHALF-1.0.0-py3-none-any.whl"
    args = ("--overwrite", "--s3-timeout", "2", *FAST)
    with (
        store_proxy(s3) as (proxy, endpoint),
        run_server([root], *OPEN, *args, env=s3.env(AWS_ENDPOINT_URL=endpoint)) as a,
        run_server([root], *OPEN, *args, env=s3.env()) as b,
    ):
        assert forms.upload(a, old.name, old.read_bytes()).status_code == 200
        timed_wait(lambda: old.name in hashes(b, "ovhalf"), "the first upload on B")
        facts = f"/.creamery/files/{old.name}/facts"
        proxy.hold(lambda m, p: m == "HEAD" and p.endswith(facts), drop=True)
        answer = forms.upload(a, spelled, new.read_bytes())
        proxy.let_go()
        assert proxy.held.is_set()
        assert answer.status_code == 200, answer.text
        assert distributions(s3, s3_bucket, "ovhalf/") == [f"ovhalf/{spelled}"]
        for server in (a, b):
            timed_wait(
                lambda s=server: set(hashes(s, "ovhalf")) == {spelled}, f"one file on {server.url}"
            )
            assert old.name not in HTTP.get(server.url + "/packages/").text
        assert "Traceback" not in a.log(), a.log()


def test_a_removal_failing_after_the_file_went_takes_it_off_every_page(
    s3: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    """Was: a removal whose file was deleted but whose state the store then did not take
    answered 503 and recorded nothing: both replicas kept listing the file (a 404 to pip)
    until a rescan, and a retry, finding the file gone, changed no file and recorded nothing
    either. Now what the removal found is looked at again by every process either way."""
    root = f"s3://{s3_bucket}/half"
    wheel = make_wheel(tmp_path, "rmhalf", "1.0")
    args = ("--s3-timeout", "2", *FAST)
    with (
        store_proxy(s3) as (proxy, endpoint),
        run_server([root], *OPEN, *args, env=s3.env(AWS_ENDPOINT_URL=endpoint)) as a,
        run_server([root], *OPEN, *args, env=s3.env()) as b,
    ):
        assert forms.upload(a, wheel.name, wheel.read_bytes()).status_code == 200
        timed_wait(lambda: wheel.name in hashes(b, "rmhalf"), "the upload on B")
        facts = f"/.creamery/files/{wheel.name}/facts"
        proxy.hold(lambda m, p: m == "HEAD" and p.endswith(facts), drop=True)
        removal = {":action": "remove_pkg", "name": "rmhalf", "version": "1.0"}
        answer = HTTP.post(a.url + "/", data=removal)
        proxy.let_go()
        assert proxy.held.is_set()
        assert answer.status_code == 503, answer.text
        assert distributions(s3, s3_bucket, "half/") == []  # the file went before the failure
        for server in (a, b):
            timed_wait(lambda s=server: hashes(s, "rmhalf") == {}, f"no file on {server.url}")
            assert wheel.name not in HTTP.get(server.url + "/packages/").text
        assert "Traceback" not in a.log(), a.log()


def test_an_overwrite_on_one_replica_replaces_what_the_other_serves(
    s3: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    """`--overwrite` on both: B has the old bytes in memory (a small file, downloaded); A's
    re-upload replaces them on B too: bytes, hash, metadata, never a mix."""
    versions = [
        make_wheel(tmp_path / str(i), "repover", "1.0", summary=f"version {i}") for i in range(3)
    ]
    filename = versions[0].name
    with replicas(s3, f"s3://{s3_bucket}/over", "--overwrite", *FAST) as (a, b):
        for i, version in enumerate(versions):
            writer = (a, b)[i % 2]  # A, then B, then A
            response = forms.upload(writer, filename, version.read_bytes())
            assert response.status_code == 200, response.text
            data = version.read_bytes()
            assert sha256(s3.get(s3_bucket, f"over/{filename}")) == sha256(data)
            timed_wait(lambda d=data: seen_everywhere([a, b], "repover", {filename: d}), "it")
            assert_served_everywhere([a, b], {filename: data})
            for server in (a, b):
                response = HTTP.get(f"{server.url}/packages/{filename}.metadata")
                assert (response.status_code, response.content) == (200, wheel_metadata(version))
        assert distributions(s3, s3_bucket, "over/") == [f"over/{filename}"]


# ----------------------------------------------------------------------------- other tools


@pytest.mark.slow
def test_objects_put_and_deleted_by_other_tools_reach_both_replicas(
    s3: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    wheel = make_wheel(tmp_path, "repoob", "1.0")
    other = make_wheel(tmp_path, "repoob", "2.0")
    data = wheel.read_bytes()
    with replicas(s3, f"s3://{s3_bucket}/oob", "--rescan-interval", "1") as servers:
        for server in servers:
            assert listed(server, "repoob") == {}
        s3.put(s3_bucket, f"oob/{wheel.name}", data)  # `aws s3 cp`, rclone...
        s3.put(s3_bucket, f"oob/sub/{other.name}", other.read_bytes())  # in a "directory" too
        expected = {wheel.name: data, other.name: other.read_bytes()}
        timed_wait(lambda: seen_everywhere(servers, "repoob", expected), "the put objects")
        assert_served_everywhere(servers, expected, "repoob")
        for server in servers:  # PEP 658 metadata, read from the object
            response = HTTP.get(f"{server.url}/packages/{wheel.name}.metadata")
            assert (response.status_code, response.content) == (200, wheel_metadata(wheel))

        # Replaced in place (`aws s3 cp` over it): the new bytes, hashes and metadata, never the
        # old ones' facts (they are bound to the object's version).
        replaced = make_wheel(tmp_path / "new", "repoob", "1.0", summary="replaced in place")
        s3.put(s3_bucket, f"oob/{wheel.name}", replaced.read_bytes())
        expected = {wheel.name: replaced.read_bytes(), other.name: other.read_bytes()}
        timed_wait(lambda: seen_everywhere(servers, "repoob", expected), "the replaced object")
        assert_served_everywhere(servers, expected, "repoob")
        for server in servers:
            response = HTTP.get(f"{server.url}/packages/{wheel.name}.metadata")
            assert (response.status_code, response.content) == (200, wheel_metadata(replaced))

        s3.delete(s3_bucket, f"oob/{wheel.name}")
        expected = {other.name: other.read_bytes()}
        timed_wait(lambda: seen_everywhere(servers, "repoob", expected), "the deletion")
        for server in servers:
            assert served(server, wheel.name).status_code == 404
        s3.delete(s3_bucket, f"oob/sub/{other.name}")
        timed_wait(lambda: all(listed(s, "repoob") == {} for s in servers), "the project gone")
        for server in servers:
            assert served(server, f"sub/{other.name}").status_code == 404
            assert "Traceback" not in server.log(), server.log()


# ----------------------------------------------------------------------------- admin


def test_yank_and_remove_by_cli_and_http_reach_the_other_replica(
    s3: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    """At the default feed interval: the CLI on the bucket, and HTTP on A, seen by B."""
    wheels = [make_wheel(tmp_path, "repyank", f"{v}.0") for v in (1, 2, 3, 4)]
    root = f"s3://{s3_bucket}/adm"
    env = clean_env(**s3.env())
    with replicas(s3, root) as (a, b):
        result = twine_upload(a.url + "/", tmp_path / "home", *wheels)
        assert result.returncode == 0, describe(result)
        one, two, three, four = (w.name for w in wheels)
        timed_wait(lambda: set(listed(b, "repyank")) == {one, two, three, four}, "the uploads")

        result = creamery("yank", "repyank", "1.0", "--reason", "cli reason", root, env=env)
        assert result.returncode == 0, describe(result)
        for server in (a, b):
            timed_wait(lambda s=server: yanked(s, "repyank", one) == "cli reason", "CLI yank")

        response = HTTP.post(
            f"{a.url}/-/yank", json={"project": "repyank", "version": "2.0", "reason": "via http"}
        )
        assert response.status_code == 200, response.text
        timed_wait(lambda: yanked(b, "repyank", two) == "via http", "HTTP yank on B")
        page = HTTP.get(f"{b.url}/simple/repyank/").text
        assert 'data-yanked="via http"' in page

        result = creamery("unyank", "repyank", "1.0", root, env=env)
        assert result.returncode == 0, describe(result)
        timed_wait(lambda: yanked(b, "repyank", one) is False, "CLI un-yank on B")
        response = HTTP.post(f"{a.url}/-/unyank", json={"project": "repyank", "version": "2.0"})
        assert response.status_code == 200, response.text
        timed_wait(lambda: yanked(b, "repyank", two) is False, "HTTP un-yank on B")

        result = creamery("remove", "repyank", "3.0", root, env=env)
        assert result.returncode == 0, describe(result)
        assert f"adm/{three}" not in s3.keys(s3_bucket)
        timed_wait(lambda: three not in listed(b, "repyank"), "CLI removal on B")
        timed_wait(lambda: three not in listed(a, "repyank"), "CLI removal on A")

        response = forms.post_form(
            a, [(":action", "remove_pkg"), ("name", "repyank"), ("version", "4.0")]
        )
        assert response.status_code == 200, response.text
        assert f"adm/{four}" not in s3.keys(s3_bucket)
        timed_wait(lambda: set(listed(b, "repyank")) == {one, two}, "HTTP removal on B")
        for server in (a, b):
            for name in (three, four):
                assert served(server, name).status_code == 404
            assert "Traceback" not in server.log(), server.log()


# ----------------------------------------------------------------------------- outage


@pytest.mark.slow
def test_store_outage_mid_run_no_500_no_lost_upload_recovery(
    s3: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    """Uploads and downloads in a loop on both replicas while the store stops and comes back."""
    big = make_wheel(tmp_path, "repdown", "0.1", files={"blob.bin": os.urandom(600 * 1024)})
    args = ("--s3-timeout", "2", *FAST)
    with replicas(s3, f"s3://{s3_bucket}/down", *args) as servers:
        assert forms.upload(servers[0], big.name, big.read_bytes()).status_code == 200
        # A project nobody writes to during the run: its page and small file are in memory on
        # both replicas before the outage, and must be served throughout it.
        stable = make_wheel(tmp_path, "repstable", "1.0")
        assert forms.upload(servers[1], stable.name, stable.read_bytes()).status_code == 200
        in_memory = ("/simple/repstable/", f"/packages/{stable.name}")
        for server in servers:
            timed_wait(lambda s=server: stable.name in listed(s, "repstable"), "repstable")
            assert served(server, stable.name).content == stable.read_bytes()
            assert HTTP.get(f"{server.url}/simple/repstable/").status_code == 200
        stop = threading.Event()
        lock = threading.Lock()
        accepted: dict[str, bytes] = {}  # acknowledged uploads
        refused: dict[str, bytes] = {}  # uploads answered 503 (the put may have landed)
        statuses: Counter[tuple[str, int]] = Counter()
        problems: list[str] = []
        page_outages: list[str] = []

        def note(kind: str, response: httpx.Response, who: str = "") -> None:
            with lock:
                statuses[kind, response.status_code] += 1
                if response.status_code >= 500 and response.status_code != 503:
                    problems.append(f"{kind}: {response.status_code} {response.text[:200]}")
                if response.status_code == 503 and "retry-after" not in response.headers:
                    problems.append(f"{kind}: 503 without Retry-After")
                if response.status_code == 503 and kind.startswith("/simple/"):
                    page_outages.append(f"{who}: {response.text.strip()}")

        def uploads(index: int) -> None:
            server, n = servers[index], 0
            while not stop.is_set():
                n += 1
                wheel = make_wheel(tmp_path / f"u{index}", "repdown", f"{index + 1}.{n}")
                data = wheel.read_bytes()
                try:
                    response = forms.upload(server, wheel.name, data)
                except httpx.HTTPError as error:
                    problems.append(f"upload {wheel.name}: {error!r}")
                    continue
                note("upload", response)
                if response.status_code == 200:
                    accepted[wheel.name] = data
                elif response.status_code == 503:
                    refused[wheel.name] = data
                else:
                    problems.append(f"upload {wheel.name}: {response.status_code} {response.text}")

        def downloads(index: int) -> None:
            server = servers[index]
            with server.client(timeout=30) as client:
                while not stop.is_set():
                    for path in (
                        "/simple/repdown/",
                        f"/packages/{big.name}",
                        "/health",
                        *in_memory,
                    ):
                        try:
                            note(path, client.get(path), "AB"[index])
                        except httpx.HTTPError as error:
                            problems.append(f"GET {path}: {error!r}")

        threads = [
            threading.Thread(target=f, args=(i,)) for f in (uploads, downloads) for i in (0, 1)
        ]
        for thread in threads:
            thread.start()
        try:
            assert wait_for(lambda: len(accepted) >= 4, timeout=EVENTUAL), problems
            s3.stop()
            try:
                assert wait_for(lambda: statuses["/health", 503] >= 2, timeout=EVENTUAL)
                assert wait_for(lambda: all(health(s) == 503 for s in servers), timeout=EVENTUAL)
                assert wait_for(lambda: statuses["upload", 503] >= 2, timeout=EVENTUAL), statuses
            finally:
                s3.start()
            before = set(accepted)
            # Recovery, with no restart: both healthy, and uploads succeed on both again.
            assert wait_for(lambda: all(health(s) == 200 for s in servers), timeout=EVENTUAL)

            def recovered() -> bool:
                new = set(accepted) - before
                return all(any(n.startswith(f"repdown-{i}.") for n in new) for i in (1, 2))

            assert wait_for(recovered, timeout=EVENTUAL), statuses
        finally:
            stop.set()
            if s3.paused:
                s3.start()
            for thread in threads:
                thread.join(60)
        print(f"outage: {dict(statuses)}; {len(accepted)} uploads acknowledged")
        print("page 503s:", page_outages, "accepted:", sorted(accepted), "503:", sorted(refused))
        assert problems == [], problems
        assert statuses["/simple/repdown/", 200] > 0
        for path in in_memory:  # what is in memory is served throughout the outage
            assert statuses[path, 200] > 0, statuses
            assert not [key for key in statuses if key[0] == path and key[1] != 200], statuses
        assert statuses[f"/packages/{big.name}", 503] > 0, statuses  # the outage was seen

        # No acknowledged upload lost: in the bucket, listed and served by both replicas.
        for name, data in accepted.items():
            assert sha256(s3.get(s3_bucket, f"down/{name}")) == sha256(data), name
        # A refused upload whose put the paused store still carried out is whole (or absent).
        keys = set(s3.keys(s3_bucket, "down/"))
        for name, data in refused.items():
            if f"down/{name}" in keys:
                assert sha256(s3.get(s3_bucket, f"down/{name}")) == sha256(data), name

        def all_listed() -> bool:
            return all(set(accepted) <= set(hashes(s, "repdown")) for s in servers)

        timed_wait(all_listed, "every acknowledged upload on both replicas", EVENTUAL)
        for server in servers:
            on_page = hashes(server, "repdown")
            for name, data in accepted.items():
                assert on_page[name] == sha256(data), (server.url, name)
        assert_served_everywhere(servers, {**accepted, big.name: big.read_bytes()})
        for server in servers:
            assert "Traceback" not in server.log(), server.log()


# ------------------------------------------------------------------ a store failing mid-way


def feed_record_read(method: str, path: str) -> bool:
    """A GET of one change-feed record (not the listing: that is a GET of the bucket)."""
    return method == "GET" and "/.creamery/changes/" in path.split("?")[0]


def test_a_store_failing_after_the_feed_listing_leaves_pages_served_from_memory(
    s3: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    """B's poll lists a new record of A's, then the store stops answering before B reads it:
    B knows it is behind and cannot catch up. Its pages are in memory: they are still served
    (the issue: "reads keep serving what is in memory"), not answered 503 one by one."""
    root = f"s3://{s3_bucket}/behind"
    first = make_wheel(tmp_path, "repbehind", "1.0")
    second = make_wheel(tmp_path, "repbehind", "2.0")
    with (
        store_proxy(s3) as (proxy, endpoint),
        run_server([root], *OPEN, *FAST, env=s3.env()) as a,
        run_server(
            [root], *OPEN, *FAST, "--s3-timeout", "1", env=s3.env(AWS_ENDPOINT_URL=endpoint)
        ) as b,
    ):
        assert forms.upload(a, first.name, first.read_bytes()).status_code == 200
        timed_wait(lambda: first.name in listed(b, "repbehind"), "the first upload on B")
        assert served(b, first.name).status_code == 200  # small: now in B's memory too
        proxy.hold(feed_record_read)
        assert forms.upload(a, second.name, second.read_bytes()).status_code == 200
        assert wait_for(lambda: "can't read the change feed" in b.log(), timeout=EVENTUAL)
        page = HTTP.get(f"{b.url}/simple/repbehind/")
        assert page.status_code == 200, page.text
        assert first.name in page.text
        response = served(b, first.name)
        assert (response.status_code, response.content) == (200, first.read_bytes())
        proxy.let_go()
        timed_wait(lambda: second.name in listed(b, "repbehind"), "the second upload on B")


def facts_read(method: str, path: str) -> bool:
    """A read of one file's stored facts (`.creamery/files/<file>/facts`: hashes, metadata)."""
    key = path.split("?")[0]
    return method in ("GET", "HEAD") and "/.creamery/files/" in key and key.endswith("/facts")


def test_a_page_stays_served_when_a_new_files_facts_cannot_be_read(
    s3: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    """B applies A's record of a new release (its yank state read), then cannot read that
    file's facts (the store went away): B's page of the project, served a moment ago from
    memory, is still served (as it was, marked stale) rather than 503 for as long as the
    outage lasts; once the store answers, the page is rendered again, with the new file."""
    root = f"s3://{s3_bucket}/facts"
    first = make_wheel(tmp_path, "repfacts", "1.0")
    second = make_wheel(tmp_path, "repfacts", "2.0")
    with (
        store_proxy(s3) as (proxy, endpoint),
        run_server([root], *OPEN, *FAST, env=s3.env()) as a,
        run_server(
            [root], *OPEN, *FAST, "--s3-timeout", "1", env=s3.env(AWS_ENDPOINT_URL=endpoint)
        ) as b,
    ):
        assert forms.upload(a, first.name, first.read_bytes()).status_code == 200
        timed_wait(lambda: first.name in listed(b, "repfacts"), "the first upload on B")
        proxy.hold(facts_read)
        serial = int(forms.upload(a, second.name, second.read_bytes()).headers["x-creamery-serial"])

        def applied() -> bool:
            return int(HTTP.get(f"{b.url}/health").headers["x-creamery-serial"]) >= serial

        timed_wait(applied, "A's record applied by B")
        page = HTTP.get(f"{b.url}/simple/repfacts/")
        again = HTTP.get(f"{b.url}/simple/repfacts/")  # held: no second wait for the store
        proxy.let_go()
        for answer in (page, again):
            assert answer.status_code == 200, answer.text
            assert first.name in answer.text
            assert answer.headers["x-creamery-stale"] == "store unavailable"
        timed_wait(lambda: second.name in listed(b, "repfacts"), "the page rendered again")
        fresh = HTTP.get(f"{b.url}/simple/repfacts/")
        assert "x-creamery-stale" not in fresh.headers
        assert fresh.headers["etag"] != page.headers["etag"]


def test_a_write_committed_then_not_caught_up_is_not_answered_503(
    s3: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    """B's upload is put and recorded; the catch-up that follows (reading A's record, which B
    had not applied) finds the store gone. The upload is published: in the bucket, in the
    feed. Its answer must say so (200), not 503 "retry later" (a retry would get 409)."""
    root = f"s3://{s3_bucket}/commit"
    first = make_wheel(tmp_path, "repcommit", "1.0")
    second = make_wheel(tmp_path, "repcommit", "2.0")
    idle = ("--feed-interval", "600")  # B applies A's record only when it reads the feed
    with (
        store_proxy(s3) as (proxy, endpoint),
        run_server([root], *OPEN, *FAST, env=s3.env()) as a,
        run_server(
            [root], *OPEN, *idle, "--s3-timeout", "1", env=s3.env(AWS_ENDPOINT_URL=endpoint)
        ) as b,
    ):
        assert forms.upload(a, first.name, first.read_bytes()).status_code == 200
        proxy.hold(feed_record_read)
        response = forms.upload(b, second.name, second.read_bytes())
        in_bucket = f"commit/{second.name}" in s3.keys(s3_bucket)
        proxy.let_go()
        assert in_bucket
        assert response.status_code == 200, response.text
        timed_wait(lambda: second.name in listed(a, "repcommit"), "B's upload on A")


# ----------------------------------------------------------------------------- kill -9


def spool_files(server: Server) -> list[Path]:
    """Files in the replica's local scratch (where an upload is spooled before the put)."""
    scratch = server.log_path.parent / "cache" / "creamery" / "scratch"
    return [p for p in scratch.rglob("*") if p.is_file() and p.stat().st_size > 100_000]


@pytest.mark.slow
def test_a_replica_killed_mid_upload_leaves_nothing_and_the_other_serves(
    s3: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    root = f"s3://{s3_bucket}/kill"
    first = make_wheel(tmp_path, "repkill", "1.0")
    later = make_wheel(tmp_path, "repkill", "3.0")
    with (
        killable_replica(s3, root, tmp_path / "a", *FAST) as a,
        run_server([root], *OPEN, *FAST, env=s3.env()) as b,
    ):
        assert wait_for(lambda: health(a) == 200, timeout=EVENTUAL), a.log()
        assert forms.upload(a, first.name, first.read_bytes()).status_code == 200
        timed_wait(lambda: first.name in listed(b, "repkill"), "the first upload on B")
        before = s3.keys(s3_bucket)

        filename = "repkill-2.0-py3-none-any.whl"
        head = (
            f"--{BOUNDARY}\r\n"
            'Content-Disposition: form-data; name=":action"\r\n\r\nfile_upload\r\n'
            f"--{BOUNDARY}\r\n"
            f'Content-Disposition: form-data; name="content"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        size = 8 * 1024 * 1024
        request = (
            "POST / HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{a.port}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {len(head) + size}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", a.port), timeout=10) as sock:
            sock.sendall(request + head)
            sent = 0
            # Slowly, until the replica is spooling the file: then it is mid-upload.
            while not spool_files(a) and sent < size // 2:
                sock.sendall(os.urandom(64 * 1024))
                sent += 64 * 1024
            assert spool_files(a), "the upload never reached the replica's spool"
            os.killpg(a.process.pid, signal.SIGKILL)
            a.process.wait(10)

        # Nothing in the bucket: no object, no state, no feed record, no multipart upload.
        assert s3.keys(s3_bucket) == before
        pending = s3.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])
        assert pending == []

        # B did not notice: healthy, serving, accepting uploads.
        assert health(b) == 200
        assert_served_everywhere([b], {first.name: first.read_bytes()})
        assert forms.upload(b, later.name, later.read_bytes()).status_code == 200
        assert set(listed(b, "repkill")) == {first.name, later.name}
        assert_served_everywhere([b], {later.name: later.read_bytes()})
        assert served(b, filename).status_code == 404
        assert "Traceback" not in b.log(), b.log()


def feed_record_write(method: str, path: str) -> bool:
    """The PUT of a change-feed record: the announcement, the last step of a write."""
    return method == "PUT" and "/.creamery/changes/" in path.split("?")[0]


@pytest.mark.slow
def test_a_replica_killed_after_the_commit_point_leaves_a_whole_file_found_by_rescans(
    s3: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    """A is killed after its put-if-absent of the file (the commit point), while it sends the
    feed record that announces it: the record never lands. The file is whole in the bucket,
    and B, which was never told, finds it at its rescan, with the right hashes; it is taken."""
    root = f"s3://{s3_bucket}/commit9"
    wheel = make_wheel(tmp_path, "repcommit9", "1.0")
    other = make_wheel(tmp_path / "other", "repcommit9", "1.0", summary="other bytes")
    with (
        store_proxy(s3) as (proxy, endpoint),
        killable_replica(s3, root, tmp_path / "a", *FAST, endpoint=endpoint) as a,
        run_server([root], *OPEN, *FAST, "--rescan-interval", "1", env=s3.env()) as b,
    ):
        assert wait_for(lambda: health(a) == 200, timeout=EVENTUAL), a.log()
        proxy.hold(feed_record_write, drop=True)
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(forms.upload, a, wheel.name, wheel.read_bytes())
            assert proxy.held.wait(EVENTUAL), a.log()
            os.killpg(a.process.pid, signal.SIGKILL)
            a.process.wait(10)
            with pytest.raises(httpx.HTTPError):
                pending.result()
        assert sha256(s3.get(s3_bucket, f"commit9/{wheel.name}")) == sha256(wheel.read_bytes())
        # Nothing but the file, its own state and its audit entry (written before the commit
        # point): no record, no stray spool or part.
        for key in s3.keys(s3_bucket):
            assert key == f"commit9/{wheel.name}" or key.startswith(
                (
                    f"commit9/.creamery/files/{wheel.name}/",
                    "commit9/.creamery/claims/",  # which spelling of the file won its name
                    "commit9/.creamery/snapshots/",
                    "commit9/.creamery/access/session-key",  # made at start in a bucket
                    "commit9/.creamery/audit/",
                )
            ), key

        expected = {wheel.name: wheel.read_bytes()}
        timed_wait(lambda: seen_everywhere([b], "repcommit9", expected), "the file on B", EVENTUAL)
        assert_served_everywhere([b], expected)
        response = HTTP.get(f"{b.url}/packages/{wheel.name}.metadata")
        assert (response.status_code, response.content) == (200, wheel_metadata(wheel))
        again = forms.upload(b, other.name, other.read_bytes())
        assert again.status_code == 409, again.text
        assert "Traceback" not in b.log(), b.log()


# ----------------------------------------------------------------------------- start-up


def snapshot_read(method: str, path: str) -> bool:
    """The GET of an index snapshot (its listing is a GET of the bucket, not stalled)."""
    return method == "GET" and "/.creamery/snapshots/" in path.split("?")[0]


@pytest.mark.slow
def test_a_new_replica_starts_from_the_snapshot_and_is_ready_when_it_serves(
    s3: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    """After writes (and a snapshot), replica C starts: it answers /health 503 while its index
    loads (the snapshot's read is held back, so that is observed), 200 once it serves
    everything (the snapshot, and the feed's records after it), and nothing else before."""
    root = f"s3://{s3_bucket}/snap"
    early = [make_wheel(tmp_path, f"repsnap{i}", "1.0") for i in range(5)]
    late = make_wheel(tmp_path, "repsnap0", "2.0")
    with replicas(s3, root, *FAST, "--snapshot-interval", "1", count=1) as (a,):
        result = twine_upload(a.url + "/", tmp_path / "home", *early)
        assert result.returncode == 0, describe(result)
        response = HTTP.post(
            f"{a.url}/-/yank", json={"project": "repsnap1", "version": "1.0", "reason": "old"}
        )
        assert response.status_code == 200, response.text

        def snapshots() -> list[str]:
            return s3.keys(s3_bucket, "snap/.creamery/snapshots/")

        assert wait_for(snapshots, timeout=EVENTUAL), s3.keys(s3_bucket)
        # A write after the snapshot: the new replica finds it in the feed.
        assert forms.upload(a, late.name, late.read_bytes()).status_code == 200
        expected = {w.name: w.read_bytes() for w in [*early, late]}

        with (
            store_proxy(s3) as (proxy, endpoint),
            killable_replica(s3, root, tmp_path / "c", "-v", *FAST, endpoint=endpoint) as c,
        ):
            proxy.hold(snapshot_read)
            seen: list[int] = []

            def answered(status: int) -> bool:
                seen.append(health(c))
                return seen[-1] == status

            assert wait_for(lambda: answered(503), timeout=EVENTUAL), (seen[-5:], c.log())
            not_ready = HTTP.get(f"{c.url}/health")
            assert (not_ready.status_code, not_ready.text.strip()) == (
                503,
                "Not ready: the index is loading",
            )
            proxy.let_go()
            assert wait_for(lambda: answered(200), timeout=EVENTUAL, interval=0.01), c.log()
            # Ready means serving everything, at once: no poll to wait for.
            for wheel in [*early, late]:
                project = wheel.name.split("-")[0]
                assert wheel.name in listed(c, project), (wheel.name, c.log())
            assert yanked(c, "repsnap1", early[1].name) == "old"
            assert_served_everywhere([c], expected)
            assert set(seen) <= {0, 503, 200}, seen
            assert seen.index(200) > seen.index(503)
            assert "index restored from snapshot" in c.log(), c.log()
            assert "Traceback" not in c.log(), c.log()
