"""Connections a client can hold, and for how long: real servers attacked with raw sockets.

Held connections come from other loopback addresses (127.0.0.2, ...: all of 127/8 is this
host on Linux), so the per-address cap is tested apart from the server-wide limits, and the
normal client (127.0.0.1) is another address, as it would be.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.clients import clean_env
from support.servers import Server, free_port, run_server, started

from creamery.catalog.auth import add_user
from creamery.http.limits import BodyTimeout, Limits, RateLimitedLog, TimedBody

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="127.0.0.x sources: Linux")

PROMPT = 5.0  # seconds: "promptly", generously (this is not a benchmark)
XML_HEAD = (
    b"POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: 100000\r\n\r\n"
    b"<?xml version='1.0'?><methodCall><methodName>search</methodName>"
)
USER, PASSWORD = "alice", "upl0ad-s3cret"
BOUNDARY = "limits-boundary-5e1"
CREAMERY_RUN = (sys.executable, "-m", "creamery", "run", "-i", "127.0.0.1")


@pytest.fixture(autouse=True)
def enough_descriptors() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096 <= hard or (soft < 4096 and hard == resource.RLIM_INFINITY):
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, hard))


@contextlib.contextmanager
def held(port: int, kind: str, count: int, source: str) -> Iterator[list[socket.socket]]:
    """*count* connections from *source*: `idle` (send nothing), `loris` (half a header),
    or `post` (an XML-RPC request announcing 100,000 bytes, sending 70, then silence).
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sockets.append(sock)
            sock.bind((source, 0))
            sock.settimeout(5)
            sock.connect(("127.0.0.1", port))
            if kind == "post":
                sock.sendall(XML_HEAD)
            elif kind == "loris":
                sock.sendall(b"GET /simple/ HTTP/1.1\r\nHost: x\r\nX-a: ")
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def answered(sock: socket.socket) -> bytes | None:
    """What the server sent so far (b"" when it closed), None while it is silent."""
    sock.setblocking(False)
    try:
        return sock.recv(65536)
    except BlockingIOError:
        return None
    except OSError:
        return b""
    finally:
        sock.settimeout(5)


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def timed_get(server: Server, path: str) -> tuple[int, float]:
    started = time.monotonic()
    response = httpx.get(server.url + path, timeout=PROMPT + 5)
    return response.status_code, time.monotonic() - started


def wait_for_log(server: Server, text: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while text not in server.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    return server.log()


# ----------------------------------------------------------------------------- held connections


@pytest.mark.parametrize("workers", [1, 2])
def test_normal_requests_answer_while_hundreds_of_connections_are_held(
    tmp_path: Path, workers: int
) -> None:
    """300 stalled bodies (50 from each of 6 addresses, under the per-address cap), 200 idle
    connections and 50 header trickles: /simple/ and /health still answer at once.
    Before: granian served 128 connections at once, idle ones included, and nothing timed out.
    """
    timeouts = ("--header-timeout", "20", "--body-timeout", "20")  # outlast the checks
    with (
        run_server([tmp_path], "--workers", str(workers), *timeouts) as server,
        contextlib.ExitStack() as stack,
    ):
        holders = [
            *(
                stack.enter_context(held(server.port, "post", 50, f"127.0.0.{n}"))
                for n in (2, 3, 4, 5, 6, 7)
            ),
            stack.enter_context(held(server.port, "idle", 200, "127.0.0.8")),
            stack.enter_context(held(server.port, "loris", 50, "127.0.0.9")),
        ]
        time.sleep(0.5)  # the stalled requests reach the app
        for path in ("/simple/", "/health", "/simple/"):
            status, seconds = timed_get(server, path)
            assert status == 200 and seconds < PROMPT, (path, status, seconds)
        # The attack was still on: none of them had been answered or closed.
        still_held = sum(answered(s) is None for group in holders for s in group)
        assert still_held == 550


@pytest.mark.parametrize(
    ("server_name", "workers"), [("granian", 1), ("granian", 2), ("uvicorn", 1)]
)
def test_stalled_body_is_answered_408_and_closed(
    tmp_path: Path, server_name: str, workers: int
) -> None:
    args = ("--body-timeout", "1.5", "--server", server_name, "--workers", str(workers))
    with run_server([tmp_path], *args) as server:
        with held(server.port, "post", 1, "127.0.0.2") as (sock,):
            started = time.monotonic()
            response = read_until_closed(sock, timeout=10)
            seconds = time.monotonic() - started
        assert response.startswith(b"HTTP/1.1 408"), response
        assert b"the request body sent nothing for 1.5 s" in response
        assert 1.0 < seconds < 6, seconds
        log = wait_for_log(server, "--body-timeout")
        assert "127.0.0.2 sent no body bytes for 1.5 s on POST /RPC2 (--body-timeout)" in log
        assert "Traceback" not in log
        assert timed_get(server, "/health")[0] == 200


def spooled(root: Path) -> list[str]:
    """Upload temp files: in the state directory's scratch area, or (before it) in the root."""
    scratch = root / ".creamery" / "tmp"
    inside = [p.name for p in scratch.rglob("*") if p.is_file()] if scratch.exists() else []
    return inside + [p.name for p in root.iterdir() if p.name.startswith(".creamery-")]


def test_stalled_authenticated_upload_is_closed_and_leaves_nothing(tmp_path: Path) -> None:
    """Before: an authenticated upload whose body stalled was held forever."""
    root = tmp_path / "root"
    root.mkdir()
    passwords = tmp_path / "htpasswd"
    add_user(passwords, USER, PASSWORD, rounds=4)
    args = ("-P", str(passwords), "-a", "update", "--body-timeout", "1.5")
    with run_server([root], *args) as server:
        head = (
            f"--{BOUNDARY}\r\n"
            'Content-Disposition: form-data; name=":action"\r\n\r\nfile_upload\r\n'
            f"--{BOUNDARY}\r\n"
            'Content-Disposition: form-data; name="content"; filename="stall-1.0.tar.gz"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode() + bytes(300_000)
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        request = (
            f"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {token}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {len(head) + 700_000}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(request + head)
            time.sleep(0.5)
            assert spooled(root), "the upload is being received into a temp file"
            response = read_until_closed(sock, timeout=10)
        assert response.startswith(b"HTTP/1.1 408"), response
        assert sorted(p.name for p in root.rglob("*") if ".creamery" not in p.parts) == []
        assert spooled(root) == []
        assert "stall" not in httpx.get(server.url + "/simple/").text
        assert "(--body-timeout)" in wait_for_log(server, "--body-timeout")


def test_silent_and_trickling_connections_are_closed(tmp_path: Path) -> None:
    """granian, HTTP/1 only, times out headers from the connection's start: it closes both."""
    with (
        run_server([tmp_path], "--header-timeout", "1") as server,
        held(server.port, "idle", 20, "127.0.0.2") as idle,
        held(server.port, "loris", 20, "127.0.0.3") as loris,
    ):
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            if all(answered(s) is not None for s in idle + loris):
                break
            time.sleep(0.2)
        assert [answered(s) is not None for s in idle] == [True] * 20
        assert [answered(s) is not None for s in loris] == [True] * 20


def test_silent_connections_are_closed_by_the_reaper_under_another_server(
    tmp_path: Path,
) -> None:
    """uvicorn has no header timeout: connections that never send a byte are closed by
    creamery's reaper after --header-timeout."""
    with run_server([tmp_path], "--header-timeout", "1", "--server", "uvicorn") as server:
        with held(server.port, "idle", 20, "127.0.0.2") as idle:
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                if all(answered(s) is not None for s in idle):
                    break
                time.sleep(0.2)
            assert [answered(s) is not None for s in idle] == [True] * 20
        log = wait_for_log(server, "sent nothing for 1 s")
        assert "limit: closed 20 connections that sent nothing for 1 s (--header-timeout)" in log
        assert "127.0.0.2 (20)" in log


def test_one_address_is_capped_and_others_are_served(tmp_path: Path) -> None:
    with run_server([tmp_path], "--max-client-requests", "10", "--body-timeout", "8") as server:
        with held(server.port, "post", 10, "127.0.0.2") as stalled:
            time.sleep(0.3)
            assert [answered(s) for s in stalled] == [None] * 10  # within the cap: held
            with held(server.port, "post", 3, "127.0.0.2") as excess:
                replies = [read_until_closed(s, timeout=5) for s in excess]
            for reply in replies:
                assert reply.startswith(b"HTTP/1.1 429"), reply
                assert b"this address already has 10 requests in progress" in reply
            # Another address is served; the health endpoint is never refused.
            assert timed_get(server, "/simple/")[0] == 200
            probe = socket.socket()
            probe.bind(("127.0.0.2", 0))
            probe.connect(("127.0.0.1", server.port))
            with probe:
                probe.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert read_until_closed(probe, timeout=5).startswith(b"HTTP/1.1 200")
        log = wait_for_log(server, "--max-client-requests")
        assert "limit: 127.0.0.2 already has 10 requests in progress" in log
        assert log.count("--max-client-requests") == 1  # rate-limited: one line for three


def test_open_file_limit_is_raised_to_the_hard_limit(tmp_path: Path) -> None:
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard <= 512:
        pytest.skip(f"hard limit {hard}: nothing to raise")
    port = free_port()
    run = " ".join([*CREAMERY_RUN, "-p", str(port), str(tmp_path)])
    with started(["bash", "-c", f"ulimit -Sn 512 && exec {run}"], port, tmp_path) as server:
        limits = Path(f"/proc/{server.process.pid}/limits").read_text()
    line = next(x for x in limits.splitlines() if x.startswith("Max open files"))
    assert line.split()[3:5] == [str(hard), str(hard)], line


# ----------------------------------------------------------------------------- busy port


def test_a_busy_port_is_refused(tmp_path: Path) -> None:
    with run_server([tmp_path]) as first:
        second = subprocess.run(
            [*CREAMERY_RUN, "-p", str(first.port), str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=30,
            env=clean_env(XDG_CACHE_HOME=str(tmp_path / "cache")),
        )
        assert second.returncode == 2, second
        lines = second.stderr.splitlines()
        assert lines == [
            f"creamery: error: can't listen on 127.0.0.1:{first.port}: Address already in use "
            "(another server has this port; --reuse-port shares it)"
        ], second.stderr
        for _ in range(20):  # every connection still reaches the first server
            assert httpx.get(first.url + "/health").status_code == 200
        assert first.process.poll() is None


def test_reuse_port_shares_a_busy_port_on_purpose(tmp_path: Path) -> None:
    with run_server([tmp_path]) as first:
        command = [*CREAMERY_RUN, "-p", str(first.port), "--reuse-port", str(tmp_path)]
        with started(command, first.port, tmp_path) as second:
            assert second.process.poll() is None
            assert "Address already in use" not in second.log()
        assert first.process.poll() is None


@pytest.mark.parametrize("server_name", ["uvicorn", "wsgiref"])
def test_a_busy_port_is_refused_under_other_servers(tmp_path: Path, server_name: str) -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        result = subprocess.run(
            [*CREAMERY_RUN, "--server", server_name, "-p", str(port), str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=30,
            env=clean_env(XDG_CACHE_HOME=str(tmp_path / "cache")),
        )
    assert result.returncode == 2, result
    assert "Address already in use" in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr


# ----------------------------------------------------------------------------- units


def test_client_cap_counts_in_and_out() -> None:
    limits = Limits(max_client_requests=2, body_timeout=30, exempt="/health")
    assert limits.admit("a", "/x") and limits.admit("a", "/x")
    assert not limits.admit("a", "/x")
    assert limits.admit("b", "/x")  # another address
    assert limits.admit("a", "/health")  # exempt, and counted
    for _ in range(3):
        limits.release("a")
    limits.release("b")
    assert limits.in_progress == {}  # nothing left behind for addresses that went away
    unlimited = Limits(max_client_requests=0, body_timeout=30, exempt="/health")
    assert all(unlimited.admit("a", "/x") for _ in range(1000))


def test_rate_limited_log_counts_what_it_did_not_say(caplog: pytest.LogCaptureFixture) -> None:
    report = RateLimitedLog(interval=0.2)
    with caplog.at_level("WARNING", logger="creamery.limits"):
        for _ in range(5):
            report.warning("k", "limit: %s", "x")
        report.warning("other", "limit: %s", "y")
        time.sleep(0.25)
        report.warning("k", "limit: %s", "z")
    assert caplog.messages == ["limit: x", "limit: y", "limit: z (4 more since the last report)"]


def test_timed_body_times_out_only_while_the_body_is_incomplete() -> None:
    async def scenario() -> None:
        chunks = [{"type": "http.request", "body": b"a", "more_body": True}]
        sent: list[dict] = []

        async def receive() -> dict:
            if chunks:
                return chunks.pop(0)
            await asyncio.sleep(3600)
            raise AssertionError

        async def send(message: dict) -> None:
            sent.append(message)

        body = TimedBody(receive, send, 0.05)
        assert (await body.receive())["body"] == b"a"
        with pytest.raises(BodyTimeout):
            await body.receive()
        await body.send({"type": "http.response.start", "status": 500, "headers": []})
        await body.finish()
        assert [m.get("status") for m in sent if m["type"] == "http.response.start"] == [408]

        # A complete body: later waits (for a disconnect) are the response's business.
        done = TimedBody(_one({"type": "http.request", "body": b"x"}), send, 0.05)
        await done.receive()
        waiting = asyncio.ensure_future(done.receive())
        await asyncio.sleep(0.15)
        assert not waiting.done()
        waiting.cancel()

    asyncio.run(scenario())


def _one(first: dict):
    messages = [first]

    async def receive() -> dict:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)
        raise AssertionError

    return receive
