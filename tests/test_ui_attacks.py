"""Attacks on the web UI from the outside, against `creamery run` processes (httpx and raw
sockets): what each one found, as a regression test. Hostile input must get a 4xx (never a
500), a session cookie another site tossed in must not sign the visitor in as someone else.
"""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.dists import make_wheel, write_wheel
from support.servers import Server, run_server

from creamery.catalog.auth import add_user
from creamery.catalog.sessions import COOKIE
from creamery.core.names import parse_version, version_sort_key

USER, PASSWORD = "alice", "alice-Pa55word"
OTHER, OTHER_PASSWORD = "mallory", "mallory-Pa55word"
HUGE = "9" * 5000  # past int()'s 4,300 digits: `packaging` raises ValueError, not InvalidVersion
XSS = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>"
HOSTILE = f"""\
Metadata-Version: 2.1
Name: hostile
Version: 1.0
Summary: {XSS}
Author: {XSS}
Maintainer: {XSS}
License: {XSS}
Keywords: {XSS},<b>k</b>
Home-page: javascript:alert(3)
Download-URL: data:text/html,<script>alert(4)</script>
Project-URL: Homepage, javascript:alert(5)
Project-URL: {XSS}, https://ok.example/"><svg onload=alert(8)>
Project-URL: Mixed, JaVaScRiPt:alert(9)
Classifier: {XSS}
Requires-Dist: demo ; python_version > "3<script>alert(11)</script>"
Requires-Dist: other[x] ; extra == '"><img src=x onerror=alert(12)>'
Requires-Python: >=3<script>
Description-Content-Type: text/x-rst

Title
=====

.. raw:: html

   <script>alert(30)</script>

.. include:: /etc/passwd

`x <javascript:alert(31)>`_
"""


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("ui-attacks")
    for user, password in ((USER, PASSWORD), (OTHER, OTHER_PASSWORD)):
        add_user(base / "htpasswd", user, password, rounds=4)
    make_wheel(base / "root", "demo", "1.0", summary="demo for the attack tests")
    write_wheel(str(base / "root"), "hostile", "1.0", HOSTILE, {"hostile/__init__.py": ""})
    return base


@pytest.fixture(scope="module")
def server(base: Path) -> Iterator[Server]:
    args = ("-P", str(base / "htpasswd"), "-a", "update,list,download", "--disable-fallback")
    with run_server([base / "root"], *args) as running:
        yield running


@contextlib.contextmanager
def sign_in(server: Server, user: str, password: str) -> Iterator[httpx.Client]:
    with server.client() as client:
        answer = client.post(
            "/-/signin",
            data={"username": user, "password": password, "next": "/"},
            headers={"origin": server.url},
        )
        assert answer.status_code == 303, answer.text
        yield client


def test_a_version_too_long_for_int_is_no_version() -> None:
    assert parse_version(HUGE) is None
    assert parse_version("1." + HUGE) is None
    assert version_sort_key(HUGE)[0] == 0  # sorted with the legacy versions, no exception


@pytest.mark.parametrize(
    "path",
    [
        f"/manage/project/demo/delete?version={HUGE}",
        f"/manage/project/demo/delete?version=1.{HUGE}&filename=demo-1.0.tar.gz",
        f"/project/demo/{HUGE}/",
        f"/docs/demo/{HUGE}/",
    ],
    ids=["delete-confirmation", "delete-a-file", "version-page", "docs"],
)
def test_a_huge_version_number_is_a_client_error(server: Server, path: str) -> None:
    """Found by fuzzing the manage pages: a 5,000-digit version was a 500."""
    with sign_in(server, USER, PASSWORD) as client:
        for method in ("GET", "HEAD"):
            answer = client.request(method, path)
            assert 400 <= answer.status_code < 500, (method, answer.status_code, answer.text)
    assert "Traceback" not in server.log()


def test_a_tossed_session_of_another_user_signs_nobody_in(server: Server) -> None:
    """Cookie tossing: another site (a sibling host) sets its own session for a longer path,
    so the browser sends it first. With two users' sessions nobody is signed in; several
    sessions of one user (an old one left on another path) still count."""
    with sign_in(server, USER, PASSWORD) as mine, sign_in(server, OTHER, OTHER_PASSWORD) as theirs:
        own, tossed = mine.cookies[COOKIE], theirs.cookies[COOKIE]
        with sign_in(server, USER, PASSWORD) as again:
            older = again.cookies[COOKIE]
    for header in (f"{COOKIE}={tossed}; {COOKIE}={own}", f"{COOKIE}={own}; {COOKIE}={tossed}"):
        answer = httpx.get(f"{server.url}/manage/account/tokens/", headers={"cookie": header})
        assert answer.status_code == 303 and "-/signin?next=" in answer.headers["location"]
        home = httpx.get(f"{server.url}/-/signout", headers={"cookie": header})
        assert OTHER not in home.text and USER not in home.text
    for header in (f"{COOKIE}={own}; {COOKIE}={older}", f"{COOKIE}=junk; {COOKIE}={own}"):
        answer = httpx.get(f"{server.url}/manage/account/tokens/", headers={"cookie": header})
        assert answer.status_code == 200 and USER in answer.text


def exchange(sock: socket.socket, request: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send *request* on a kept-alive connection; read one answer (by its Content-Length)."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the middle of an answer"
        body += chunk
    return status, headers, body


@pytest.mark.parametrize("size", [1_000, 200_000])
def test_a_refused_form_body_is_read_or_the_connection_closed(server: Server, size: int) -> None:
    """Found by fuzzing the manage forms with multipart bodies: the refusal ("expected a
    form") came before the body was read and the server then dropped the kept-alive
    connection without saying so; a client's next request on it failed, and a browser may
    see a reset instead of the page. Now a form-sized body is read first (the connection
    stays good) and a longer one is answered with `Connection: close`."""
    with sign_in(server, USER, PASSWORD) as client:
        cookie = f"{COOKIE}={client.cookies[COOKIE]}"
    body = (
        b'--b\r\nContent-Disposition: form-data; name="reason"; filename="x"\r\n\r\n'
        + b"x" * size
        + b"\r\n--b--\r\n"
    )
    host = server.url.partition("://")[2]
    post = (
        f"POST /manage/project/demo/yank HTTP/1.1\r\nHost: {host}\r\nOrigin: {server.url}\r\n"
        f"Cookie: {cookie}\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    for origin in (server.url, "https://evil.example"):  # refused for its type, its origin
        request = post.replace(server.url.encode(), origin.encode(), 1)
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            status, headers, _ = exchange(sock, request)
            assert status.split()[1] in ("400", "403"), status
            if size > 64 << 10:
                assert headers.get("connection") == "close"
                continue
            assert headers.get("connection") != "close"
            again, _, page = exchange(sock, f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            assert again.split()[1] == "200" and b"creamery" in page


@pytest.mark.parametrize(
    "path", ["/docs/demo/1.0/", "/manage/account/tokens/nope/revoke", "/"], ids=str.strip
)
def test_any_answer_before_the_body_is_read_says_connection_close(
    server: Server, path: str
) -> None:
    """The same on every route: an upload refused for its credentials, a POST to no page, a
    POST the index refuses, all answered with most of the body unread."""
    host = server.url.partition("://")[2]
    body = b"PK" + b"\0" * 500_000
    post = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/zip\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        status, headers, _ = exchange(sock, post + body)
        assert status.split()[1][0] in "34" and headers.get("connection") == "close"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:  # no body
        sign_out = f"POST /-/signout HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n"
        status, headers, _ = exchange(sock, sign_out.encode())
        assert headers.get("connection") != "close", (status, headers)
        again, _, _ = exchange(sock, f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        assert again.split()[1] == "200"


PAGES = [
    "/",
    "/project/demo/",
    "/project/demo/1.0/",
    "/search/",
    "/search/opensearch.xml",
    "/docs/",
    "/docs/demo/",
    "/docs/demo/1.0/a/b.html",
    "/-/signin",
    "/-/signout",
    "/manage/project/demo/",
    "/manage/project/demo/delete",
    "/manage/project/demo/yank",
    "/manage/account/tokens/",
]
MUTATIONS = [
    "",
    "%2f..%2f..%2fetc%2fpasswd",
    "/../../../etc/passwd",
    "/" + "a" * 5000,
    "%ff%fe/\xff",
    "/%c0%ae%c0%ae/",
    "/\uff0f".encode().decode("latin-1"),
    "%zz%",
    "?q=%ff&q=%00&q=" + "x" * 10000,
    "?version=%ff&filename=%00&next=//evil.example",
    "?version=1.0&filename=../../etc/passwd&page=-1&page=99999999999999999999",
    f"?version={HUGE}",
]


def test_hostile_paths_and_queries_are_never_a_server_error(server: Server) -> None:
    """A small, fixed sample of the fuzzing that found the defects above: every UI route,
    hostile paths and query strings, GET and a POST of a binary form, signed in or not."""
    with sign_in(server, USER, PASSWORD) as client:
        cookie = f"Cookie: {COOKIE}={client.cookies[COOKIE]}"
    form = ["Content-Type: application/x-www-form-urlencoded", f"Origin: {server.url}"]
    body = b"csrf_token=%ff%00&version=%zz&confirm=\xff\xfe&reason=" + b"x" * 70_000
    failures = []
    for page in PAGES:
        for mutation in MUTATIONS:
            for method, headers, data in (("GET", [], b""), ("POST", form, body)):
                for visitor in ([], [cookie]):
                    line = f"{method} {page}{mutation} HTTP/1.1"
                    answer = server.raw(line, [*visitor, *headers], data)
                    if answer.status >= 500:
                        failures.append((line[:80], bool(visitor), answer.status))
    assert not failures, failures
    assert "Traceback" not in server.log()


def test_hostile_metadata_yank_reasons_and_token_descriptions_are_inert(server: Server) -> None:
    """Every field of core metadata, a yank reason and a token description holding HTML:
    nothing reaches a page unescaped, no javascript:/data: link, no file is read."""
    with sign_in(server, USER, PASSWORD) as client:
        manage = client.get("/manage/project/hostile/")
        token = re.search(r'name="csrf_token" value="([^"]*)"', manage.text)
        assert token is not None, manage.text
        form = {"csrf_token": token[1], "version": "1.0", "reason": XSS}
        assert client.post("/manage/project/hostile/yank", data=form).status_code == 303
        created = client.post(
            "/manage/account/tokens/",
            data={"csrf_token": token[1], "description": XSS, "actions": "upload"},
        )
        assert created.status_code == 200 and 'id="new-token"' in created.text
        pages = [
            client.get(path).text
            for path in (
                "/project/hostile/",
                "/project/hostile/1.0/",
                "/manage/project/hostile/",
                "/manage/account/tokens/",
                "/search/?q=" + XSS,
                "/",
            )
        ]
    for text in pages:
        ours = text.lower().replace('<script src="', "")  # only our own script file
        for needle in ("<script", "<img src=x", "<svg", "root:x:0:0"):
            assert needle not in ours, needle
        assert not re.search(r"(href|src|action)=\"\s*(javascript|data|vbscript):", ours)
    assert "&lt;script&gt;alert(1)" in pages[0] and "&lt;script&gt;alert(1)" in pages[3]
