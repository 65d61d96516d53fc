"""`--trusted-proxy CIDR`: behind a reverse proxy, throttling and the audit log use the client
address from `X-Forwarded-For`, and only when the peer is a trusted proxy. Real `creamery run`
processes; the tests send the header themselves, from 127.0.0.1, as a proxy on this host does.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from support import forms
from support.access_state import audit_entries
from support.dists import make_wheel
from support.polling import wait_for
from support.servers import Server, run_server

from creamery.catalog.audit import Entry
from creamery.catalog.auth import add_user

USER, PASSWORD = "alice", "alice-Pa55word"
WRONG = ("alice", "not-her-password")
CLIENT, NEIGHBOUR = "203.0.113.7", "203.0.113.8"
MAX_FAILURES = 10  # failed logins per client address within a minute, then 429


@pytest.fixture(scope="module")
def htpasswd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("proxy") / "htpasswd"
    add_user(path, USER, PASSWORD, rounds=4)
    return path


Start = Callable[..., Server]


@pytest.fixture
def start(htpasswd: Path, tmp_path: Path) -> Iterator[Start]:
    """Start servers on fresh roots with these extra options (one per test: the limiter of
    failed logins is per process)."""
    with contextlib.ExitStack() as stack:
        numbers = itertools.count()

        def started(*args: str) -> Server:
            root = tmp_path / f"root{next(numbers)}"
            root.mkdir()
            options = ("-P", str(htpasswd), "-a", "update", "--disable-fallback", *args)
            return stack.enter_context(run_server([root], *options))

        yield started


def login(
    server: Server, forwarded_for: str | None, auth: tuple[str, str] = WRONG
) -> httpx.Response:
    """A write that changes nothing (`:action=submit`): it needs a login, nothing more."""
    headers = {} if forwarded_for is None else {"X-Forwarded-For": forwarded_for}
    return forms.post_form(server, [(":action", "submit")], auth=auth, headers=headers)


def fail_until_throttled(server: Server, forwarded_for: str | None) -> httpx.Response:
    for n in range(MAX_FAILURES):
        response = login(server, forwarded_for)
        assert response.status_code == 403, (n, response.text)
    throttled = login(server, forwarded_for)
    assert throttled.status_code == 429, throttled.text
    assert int(throttled.headers["retry-after"]) >= 1
    return throttled


def root_of(server: Server) -> Path:
    root = server.roots[0]
    assert isinstance(root, Path)
    return root


def entries(server: Server, action: str) -> list[Entry]:
    return [e for e in audit_entries(root_of(server)) if e.action == action]


def upload_from(server: Server, forwarded_for: str, tmp_path: Path, name: str) -> Path:
    wheel = make_wheel(tmp_path, name, "1.0")
    response = forms.upload(
        server,
        wheel.name,
        wheel.read_bytes(),
        (":action", "file_upload"),
        ("name", name),
        ("version", "1.0"),
        auth=(USER, PASSWORD),
        headers={"X-Forwarded-For": forwarded_for},
    )
    assert response.status_code == 200, response.text
    return wheel


def test_a_trusted_proxy_names_the_client(start: Start, tmp_path: Path) -> None:
    server = start("--trusted-proxy", "127.0.0.1/32")
    fail_until_throttled(server, CLIENT)
    # Throttled is that client, not the proxy: its neighbour and the proxy itself log in.
    assert login(server, NEIGHBOUR).status_code == 403
    assert login(server, None).status_code == 403
    assert login(server, CLIENT, (USER, PASSWORD)).status_code == 429  # even the password
    assert login(server, NEIGHBOUR, (USER, PASSWORD)).status_code == 200
    # Each proxy appends the address it received the request from: the first hop (from the
    # right) that is not a trusted proxy is the client; what the client wrote left of it is
    # not believed.
    assert login(server, f"198.51.100.99, {CLIENT}").status_code == 429
    assert login(server, f"{CLIENT}, {NEIGHBOUR}").status_code == 403
    # The audit log names the forwarded client.
    throttled = entries(server, "login.throttled")
    assert [(e.client, e.user, e.result) for e in throttled] == [(CLIENT, USER, "denied")]
    # (Not from the throttled client: it is refused even with remembered credentials.)
    wheel = upload_from(server, NEIGHBOUR, tmp_path, "proxied")
    (upload,) = entries(server, "upload")
    assert (upload.filename, upload.user, upload.client) == (wheel.name, USER, NEIGHBOUR)


def test_a_trusted_proxy_chain(start: Start, tmp_path: Path) -> None:
    """Two proxies of the trusted network: the hop before them is the client."""
    server = start("--trusted-proxy", "127.0.0.0/8", "--trusted-proxy", "10.0.0.0/8")
    wheel = upload_from(server, f"192.0.2.1, {CLIENT}, 10.1.2.3", tmp_path, "chained")
    (upload,) = entries(server, "upload")
    assert (upload.filename, upload.client) == (wheel.name, CLIENT)


@pytest.mark.parametrize(
    "options", [(), ("--trusted-proxy", "10.0.0.0/8")], ids=["no-proxy", "another-network"]
)
def test_the_header_is_ignored_from_an_untrusted_peer(
    start: Start, tmp_path: Path, options: tuple[str, ...]
) -> None:
    server = start(*options)
    fail_until_throttled(server, CLIENT)
    # The key is the peer: whatever address the header claims, it is throttled.
    assert login(server, NEIGHBOUR).status_code == 429
    assert login(server, None, (USER, PASSWORD)).status_code == 429
    throttled = entries(server, "login.throttled")
    assert [(e.client, e.user, e.result) for e in throttled] == [("127.0.0.1", USER, "denied")]


@pytest.mark.parametrize(
    "options", [(), ("--trusted-proxy", "10.0.0.0/8")], ids=["no-proxy", "another-network"]
)
def test_the_audit_log_shows_the_peer_of_an_untrusted_request(
    start: Start, tmp_path: Path, options: tuple[str, ...]
) -> None:
    server = start(*options)
    wheel = upload_from(server, CLIENT, tmp_path, "unproxied")
    (upload,) = entries(server, "upload")
    assert (upload.filename, upload.client) == (wheel.name, "127.0.0.1")
    assert all(CLIENT not in e.to_json() for e in audit_entries(root_of(server)))


def test_a_throttled_client_learns_nothing_from_remembered_credentials(start: Start) -> None:
    server = start("--trusted-proxy", "127.0.0.1/32")
    # alice's own client logs in (its credentials are remembered for a while)...
    assert login(server, NEIGHBOUR, (USER, PASSWORD)).status_code == 200
    # ... while another client guesses until it is throttled.
    fail_until_throttled(server, CLIENT)
    # Throttled, its guesses must all get the same answer, the right one included.
    assert login(server, CLIENT, ("alice", "another-guess")).status_code == 429
    assert login(server, CLIENT, (USER, PASSWORD)).status_code == 429


def test_the_access_log_names_the_forwarded_client(start: Start) -> None:
    """With -v every request is logged: from a trusted proxy, under the client it forwards
    for; from anyone else, under the peer, whatever the header says."""
    trusting = start("-v", "--trusted-proxy", "127.0.0.1/32")
    headers = {"X-Forwarded-For": CLIENT}
    assert httpx.get(trusting.url + "/simple/", headers=headers, timeout=10).status_code == 200
    assert wait_for(lambda: '"GET /simple/ HTTP/1.1"' in trusting.log())
    line = next(t for t in trusting.log().splitlines() if '"GET /simple/ HTTP/1.1"' in t)
    assert CLIENT in line and "127.0.0.1" not in line.split('"')[0]

    other = start("-v")
    assert httpx.get(other.url + "/simple/", headers=headers, timeout=10).status_code == 200
    assert wait_for(lambda: '"GET /simple/ HTTP/1.1"' in other.log())
    line = next(t for t in other.log().splitlines() if '"GET /simple/ HTTP/1.1"' in t)
    assert "127.0.0.1" in line and CLIENT not in line
