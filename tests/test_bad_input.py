"""Bad input is a 4xx with a one-line reason, never a 500, and the server keeps serving.

One test per class of 500 that hostile requests found (issue 8, item 13): multipart the parser
refuses, digests that are not hex, JSON nested without end, XML in an unknown encoding, paths
whose characters can't go into a Location header, and clients that go away mid-body. Plus
`X-Content-Type-Options: nosniff` on every response (item 14). Real `creamery run` processes,
raw sockets where a client library would not send such bytes.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.dists import make_sdist, make_wheel
from support.forms import BOUNDARY, multipart, upload
from support.servers import Server, run_server
from support.wire import RawResponse

from creamery.catalog.auth import add_user
from creamery.core.errors import ClientError
from creamery.core.untrusted import load_json, nesting_depth
from creamery.http.files import location, safe_headers

USER, PASSWORD = "alice", "bad-input-s3cret"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bad-input")


@pytest.fixture(scope="module")
def open_srv(base: Path) -> Iterator[Server]:
    """Writes open to anyone (`-P . -a .`), so bodies reach the code that parses them."""
    root = base / "open"
    make_wheel(root, "tbad", "1.0", summary="a <b>bold</b> summary")
    make_sdist(root, "tbad", "1.0")
    with run_server([root], "-P", ".", "-a", ".", "--disable-fallback", "-v") as server:
        yield server


@pytest.fixture(scope="module")
def auth_srv(base: Path) -> Iterator[Server]:
    """`-P htpasswd -a update`: XML-RPC and reads are anonymous, writes need credentials."""
    root = base / "auth"
    make_wheel(root, "tbad", "1.0")
    htpasswd = base / "htpasswd"
    add_user(htpasswd, USER, PASSWORD, rounds=4)
    with run_server([root], "-P", str(htpasswd), "-a", "update", "-v") as server:
        yield server


def assert_client_error(response: httpx.Response | RawResponse, fragment: str = "") -> None:
    """A 4xx whose body is one line a person can read (JSON bodies carry it in `message`)."""
    status = response.status_code if isinstance(response, httpx.Response) else response.status
    text = response.text if isinstance(response, httpx.Response) else response.body.decode()
    assert 400 <= status < 500, (status, text)
    if text.startswith("{"):
        text = json.loads(text)["message"]
    assert text.strip() and "\n" not in text.strip(), text
    assert fragment in text, text


def assert_serving(server: Server) -> None:
    assert httpx.get(server.url + "/simple/tbad/", timeout=10).status_code == 200
    assert "Traceback" not in server.log(), server.log()[-3000:]


def tbad_wheel(tmp_path: Path) -> bytes:
    return make_wheel(tmp_path, "tbad", "9.0").read_bytes()


# ----------------------------------------------------------------------------- uploads


def test_a_boundary_the_parser_refuses_is_a_400(open_srv: Server) -> None:
    boundary = "b" * 300
    body = f'--{boundary}\r\nContent-Disposition: form-data; name=":action"\r\n\r\nx\r\n'
    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    response = httpx.post(open_srv.url + "/", content=body.encode(), headers=headers)
    assert_client_error(response, "Boundary length 300")
    assert_serving(open_srv)


@pytest.mark.parametrize("digest", ["é", "\u202e" * 64, "not hex", "0" * 63 + "g"])
def test_a_digest_that_is_not_hex_is_a_400(open_srv: Server, tmp_path: Path, digest: str) -> None:
    response = upload(
        open_srv, "tbad-9.0-py3-none-any.whl", tbad_wheel(tmp_path), ("sha256_digest", digest)
    )
    assert_client_error(response, "sha256_digest is not a hexadecimal digest")
    assert_serving(open_srv)


@pytest.mark.parametrize(
    "nested", ["[" * 100_000, "[" * 65 + "]" * 65, '{"a":' * 100 + "1" + "}" * 100]
)
def test_attestations_nested_without_end_are_a_400(
    open_srv: Server, tmp_path: Path, nested: str
) -> None:
    response = upload(
        open_srv, "tbad-9.0-py3-none-any.whl", tbad_wheel(tmp_path), ("attestations", nested)
    )
    assert_client_error(response, "attestations nests deeper than 64 levels")
    assert_serving(open_srv)


def test_a_corrupt_wheel_is_a_400(open_srv: Server, tmp_path: Path) -> None:
    """Valid zip structure, broken deflate data in METADATA: zlib.error was a 500."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("tbad-9.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: tbad\n" * 50)
    data = bytearray(buffer.getvalue())
    start = data.index(b"METADATA") + len("METADATA")  # the member's compressed bytes follow
    data[start + 5 : start + 40] = bytes(range(35))
    response = upload(open_srv, "tbad-9.0-py3-none-any.whl", bytes(data))
    assert_client_error(response, "not a valid zip archive")
    assert_serving(open_srv)


# ----------------------------------------------------------------------------- yank, XML-RPC


def test_a_yank_reason_longer_than_a_sentence_is_a_400(open_srv: Server) -> None:
    """The reason is repeated in every page of the project: a megabyte of it was accepted."""
    body = {"project": "tbad", "version": "1.0", "reason": "x" * 1001}
    response = httpx.post(open_srv.url + "/-/yank", json=body)
    assert response.status_code == 400, response.text
    assert "longer than 1000 characters" in response.json()["message"]
    assert "data-yanked" not in httpx.get(open_srv.url + "/simple/tbad/").text
    assert_serving(open_srv)


def test_yank_json_nested_without_end_is_a_400(open_srv: Server) -> None:
    for body in ("[" * 100_000, '{"project":' * 1000):
        response = httpx.post(
            open_srv.url + "/-/yank", content=body, headers={"content-type": "application/json"}
        )
        assert_client_error(response, "nests deeper than 64 levels")
    assert_serving(open_srv)


def test_xmlrpc_in_an_unknown_encoding_is_a_400_anonymously(auth_srv: Server) -> None:
    body = (
        "<?xml version='1.0' encoding='x-bogus'?>"
        "<methodCall><methodName>list_packages</methodName></methodCall>"
    )
    response = httpx.post(
        auth_srv.url + "/RPC2", content=body, headers={"content-type": "text/xml"}
    )
    assert_client_error(response, "unsupported encoding")
    assert_serving(auth_srv)


# ----------------------------------------------------------------------------- paths and headers


def header_lines(server: Server, target: str) -> tuple[int, list[bytes]]:
    """The status and raw header lines of `GET target`, as the server wrote them."""
    request = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request.encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head = data.partition(b"\r\n\r\n")[0].split(b"\r\n")
    return int(head[0].split(b" ")[1]), head[1:]


@pytest.mark.parametrize(
    "target",
    [
        "/%E2%80%AE",
        "/%00",
        "/%0D%0ASet-Cookie:x=y",
        "/simple/X%0D%0A/",
        "/simple/X%0D%0ASet-Cookie:x=y",
        "/pypi/X%0D%0A/json",
        "/X%0D%0ASet-Cookie:x=y/json",
        "/pypi/X%0D%0A/1.0%0D%0A/json",
        "/simple/%E2%80%AE",
        "/simple/tbad?format=%FF%0D%0A",
    ],
)
def test_paths_never_reach_a_header_raw(auth_srv: Server, target: str) -> None:
    """Redirects percent-encode their target: no 500, no injected header, only printable ASCII."""
    status, lines = header_lines(auth_srv, target)
    assert status < 500, (status, lines)
    names = [line.partition(b":")[0].lower() for line in lines]
    assert b"set-cookie" not in names, lines
    for line in lines:
        assert all(32 <= byte < 127 for byte in line), line
    for line in lines:
        if line.lower().startswith(b"location:"):
            assert b"%" in line or target.isascii(), line
    assert_serving(auth_srv)


def test_redirects_keep_their_meaning(auth_srv: Server) -> None:
    """The encoded Location still leads to the normalized page (and keeps ?format=)."""
    with httpx.Client(base_url=auth_srv.url, follow_redirects=True, timeout=10) as client:
        response = client.get("/simple/TBad?format=application/vnd.pypi.simple.v1%2Bjson")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/vnd.pypi.simple.v1+json"
    status, lines = header_lines(auth_srv, "/simple/%E2%80%AE")
    assert status == 301 and b"location: %E2%80%AE/" in lines, lines


# ----------------------------------------------------------------------------- disconnects


def send_part_and_close(
    server: Server, path: str, content_type: str, sent: bytes, auth: bool
) -> None:
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(sent) + 100_000}\r\n"
        + (f"Authorization: Basic {token}\r\n" if auth else "")
        + "\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head.encode() + sent)
        time.sleep(0.2)  # the server is reading the body now


@pytest.mark.parametrize(
    ("path", "content_type", "sent"),
    [
        ("/-/yank", "application/json", b'{"project": "tbad", '),
        ("/-/unyank", "application/x-www-form-urlencoded", b"project=tbad&"),
        ("/RPC2", "text/xml", b"<?xml version='1.0'?><methodCall>"),
        ("/", f"multipart/form-data; boundary={BOUNDARY}", f"--{BOUNDARY}\r\n".encode()),
    ],
    ids=["yank-json", "unyank-form", "xmlrpc", "upload"],
)
def test_a_client_that_goes_away_mid_body_is_one_log_line(
    auth_srv: Server, path: str, content_type: str, sent: bytes
) -> None:
    before = len(auth_srv.log().splitlines())
    send_part_and_close(auth_srv, path, content_type, sent, auth=True)
    deadline = time.monotonic() + 5
    new: list[str] = []
    while time.monotonic() < deadline and not any(
        "went away" in line or "ended before" in line for line in new
    ):
        time.sleep(0.05)
        new = auth_srv.log().splitlines()[before:]
    assert any("went away" in line or "ended before" in line for line in new), new
    assert "Traceback" not in "\n".join(new), "\n".join(new)
    assert [line for line in new if "creamery.error" in line] == [], new
    assert_serving(auth_srv)


def test_a_client_that_closes_its_side_mid_body_gets_a_400(auth_srv: Server) -> None:
    """It may still read: the answer says the body was cut short, not 500."""
    body = b'{"project": "tbad"'
    request = (
        b"POST /-/yank HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Authorization: Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()) + b"\r\n"
        b"Content-Length: 1000\r\n\r\n" + body
    )
    with socket.create_connection(("127.0.0.1", auth_srv.port), timeout=10) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert b"ended before its declared length" in answer, answer
    assert_serving(auth_srv)


# ----------------------------------------------------------------------------- nosniff


def test_every_response_says_nosniff(auth_srv: Server, open_srv: Server) -> None:
    """Hot paths, Starlette routes, redirects, errors, 304s, ranges, denials and write errors."""
    wheel = "tbad-1.0-py3-none-any.whl"
    seen: list[tuple[str, int]] = []
    with httpx.Client(base_url=auth_srv.url, timeout=10) as client:
        etag = client.get("/simple/tbad/").headers["etag"]
        file_etag = client.get(f"/packages/{wheel}").headers["etag"]
        requests = [
            ("GET", "/", {}),
            ("HEAD", "/", {}),
            ("GET", "/health", {}),
            ("GET", "/simple/", {}),
            ("GET", "/simple/tbad/", {}),
            ("GET", "/simple/tbad/", {"accept": "application/vnd.pypi.simple.v1+json"}),
            ("GET", "/simple/tbad/", {"if-none-match": etag}),
            ("GET", "/simple/tbad/", {"accept": "image/png"}),
            ("GET", "/simple/TBad/", {}),
            ("GET", "/simple/nonexistent/", {}),
            ("GET", "/simple", {}),
            ("GET", "/packages/", {}),
            ("GET", f"/packages/{wheel}", {}),
            ("GET", f"/packages/{wheel}", {"if-none-match": file_etag}),
            ("GET", f"/packages/{wheel}", {"range": "bytes=0-9"}),
            ("GET", f"/packages/{wheel}", {"range": "bytes=999999-"}),
            ("GET", f"/packages/{wheel}.metadata", {}),
            ("GET", "/packages/nonexistent.whl", {}),
            ("GET", "/pypi/tbad/json", {}),
            ("GET", "/pypi/tbad/1.0/json", {}),
            ("GET", "/pypi/TBad/json", {}),
            ("GET", "/pypi/nonexistent/json", {}),
            ("GET", "/tbad/json", {}),
            ("GET", "/tbad", {}),
            ("GET", "/favicon.ico", {}),
            ("GET", "/metrics", {}),
            ("PUT", "/", {}),
            ("POST", "/", {}),  # update needs credentials: 401
            (
                "POST",
                "/-/yank",
                {"authorization": "Basic " + base64.b64encode(b"alice:no").decode()},
            ),
            ("POST", "/RPC2", {"content-type": "text/xml"}),
        ]
        for method, path, headers in requests:
            response = client.request(method, path, headers=headers)
            seen.append((f"{method} {path}", response.status_code))
            assert response.headers.get("x-content-type-options") == "nosniff", (method, path)
    with httpx.Client(base_url=open_srv.url, timeout=10) as client:
        removal, _ = multipart([(":action", "remove_pkg"), ("name", "<script>"), ("version", "1")])
        responses = [
            client.post(
                "/",
                content=removal,
                headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"},
            ),
            client.post("/-/yank", json={"project": "nonexistent", "version": "1"}),
            client.post("/RPC2", content=b"<methodCall>", headers={"content-type": "text/xml"}),
        ]
        for response in responses:
            seen.append((str(response.request.url), response.status_code))
            assert response.headers.get("x-content-type-options") == "nosniff", response.request
        assert responses[0].status_code == 404 and "<script>" in responses[0].text
    statuses = {status for _, status in seen}
    assert {200, 301, 304, 303, 206, 401, 403, 404, 405, 406, 416} <= statuses, seen


# ----------------------------------------------------------------------------- units


def test_location_is_printable_ascii_and_keeps_what_is_quoted() -> None:
    assert location("simple/\u202e/") == b"simple/%E2%80%AE/"
    assert location("simple/\r\nSet-Cookie:x=y/") == b"simple/%0D%0ASet-Cookie:x=y/"
    assert location("x\x00 y") == b"x%00%20y"
    assert location("../foo/?format=json&x=%20") == b"../foo/?format=json&x=%20"
    assert location("https://pypi.org/simple/a b/") == b"https://pypi.org/simple/a%20b/"
    assert location("x\udcff") == b"x%FF"  # a byte of the request that was not UTF-8
    assert location("x\ud800").isascii()


def test_safe_headers_never_split_and_add_nosniff() -> None:
    cleaned = safe_headers([(b"location", b"a\r\nSet-Cookie: x"), (b"x-a", b"\x00\tb")])
    assert cleaned == [
        (b"location", b"a  Set-Cookie: x"),
        (b"x-a", b" \tb"),
        (b"x-content-type-options", b"nosniff"),
    ]
    once = safe_headers([(b"x-content-type-options", b"nosniff")])
    assert once == [(b"x-content-type-options", b"nosniff")]


def test_load_json_bounds() -> None:
    assert load_json('{"a": [[1]]}', "x") == {"a": [[1]]}
    assert nesting_depth({"a": [[1]]}, 64) == 3
    assert nesting_depth("scalar", 64) == 0
    for text, status, fragment in [
        ("[" * 100_000, 400, "deeper than 64"),
        ("[" * 65 + "]" * 65, 400, "deeper than 64"),
        ("{bad", 400, "not valid JSON"),
        (b"\xff\xfe\x00", 400, "not valid JSON"),
        ("1" * (2 << 20), 413, "larger than"),
    ]:
        with pytest.raises(ClientError) as raised:
            load_json(text, "the body")
        assert raised.value.status == status
        assert fragment in raised.value.reason
    assert load_json("[" * 64 + "]" * 64, "x") is not None


def test_a_filename_too_long_for_its_sidecars_is_a_400(open_srv: Server, tmp_path: Path) -> None:
    """The file system's 255-byte limit is the client's problem (was a 507 after publishing)."""
    name = "tbad-9.0-py3-none-" + "a" * 230 + ".whl"
    response = upload(open_srv, name, tbad_wheel(tmp_path))
    assert_client_error(response, "filename too long")
    assert name not in httpx.get(open_srv.url + "/simple/tbad/").text
    assert_serving(open_srv)


def test_control_characters_in_a_path_cannot_forge_log_lines(auth_srv: Server) -> None:
    header_lines(auth_srv, "/x%0D%0A2026-01-01|creamery|WARNING|forged%00line")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "forged" not in auth_srv.log():
        time.sleep(0.05)
    lines = [line for line in auth_srv.log().splitlines() if "forged" in line]
    assert lines and all("creamery.access" in line for line in lines), lines
    assert "\\r\\n2026-01-01|creamery|WARNING|forged\\x00line" in lines[0], lines


@pytest.mark.parametrize(
    "form",
    [
        {":action": "file_\nupload\n2026-01-01|creamery|WARNING|forged-action"},
        {
            ":action": "remove_pkg",
            "name": "x\r\n2026-01-01|creamery|WARNING|forged-name",
            "version": "1",
        },
    ],
    ids=["action", "name"],
)
def test_control_characters_in_form_fields_cannot_forge_log_lines(
    open_srv: Server, form: dict[str, str]
) -> None:
    """A field the server quotes in its log (the unknown action, the release not found) is
    escaped like a path: every log line is a line the server wrote."""
    marker = next(value for value in form.values() if "forged" in value).rpartition("|")[2]
    response = httpx.post(open_srv.url + "/", data=form)
    assert response.status_code in (400, 404), response.text
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and marker not in open_srv.log():
        time.sleep(0.05)
    lines = [line for line in open_srv.log().splitlines() if marker in line]
    assert len(lines) == 1 and "creamery.writes" in lines[0], lines
    assert "\\n2026-01-01|creamery|WARNING|" + marker in lines[0], lines
