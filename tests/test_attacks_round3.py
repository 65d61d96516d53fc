"""Attacks from the outside, third round, against `creamery run` processes (httpx and raw
sockets): what each one found, as a regression test. A client's mistake gets a 4xx with its
reason, never a 500; what it sent is never half kept.
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import socket
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.dists import make_wheel
from support.forms import multipart, upload
from support.servers import Server, run_server

from creamery.catalog.auth import add_user
from creamery.http.form import MAX_PARTS

USER, PASSWORD = "alice", "alice-Pa55word"
AUTH = (USER, PASSWORD)
LONE_SURROGATE = '"\\ud800"'  # valid JSON syntax, but half a UTF-16 pair: no character


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("attacks-round3")
    add_user(base / "htpasswd", USER, PASSWORD, rounds=4)
    make_wheel(base / "root", "demo", "1.0")
    return base


@pytest.fixture(scope="module")
def server(base: Path) -> Iterator[Server]:
    args = ("-P", str(base / "htpasswd"), "-a", "update,download", "--disable-fallback")
    with run_server([base / "root"], *args) as running:
        yield running


def wait_for_log(server: Server, text: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while text not in server.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    return server.log()


def post_json(server: Server, path: str, text: str) -> httpx.Response:
    headers = {"content-type": "application/json"}
    return httpx.post(server.url + path, content=text.encode(), headers=headers, auth=AUTH)


def test_a_lone_surrogate_in_a_token_description_is_refused_and_no_token_kept(
    server: Server,
) -> None:
    """Found by fuzzing: the token was created, then its answer could not be encoded (500),
    and from then on the user's token list was a 500 too."""
    answer = post_json(server, "/-/tokens", f'{{"description": {LONE_SURROGATE}}}')
    assert answer.status_code == 400, answer.text
    assert "surrogate" in answer.json()["message"]
    listed = httpx.get(f"{server.url}/-/tokens", auth=AUTH)
    assert listed.status_code == 200, listed.text
    assert listed.json()["tokens"] == []
    assert "Traceback" not in server.log()


@pytest.mark.parametrize(
    "body",
    [
        f'{{"status": "quarantined", "reason": {LONE_SURROGATE}}}',
        f'{{"status": {LONE_SURROGATE}}}',
        f"{{{LONE_SURROGATE}: 1}}",
    ],
    ids=["reason", "status", "field-name"],
)
def test_a_lone_surrogate_in_a_status_change_is_a_400(server: Server, body: str) -> None:
    answer = post_json(server, "/-/projects/demo/status", body)
    assert answer.status_code == 400, answer.text
    json.dumps(answer.json(), ensure_ascii=False).encode()  # the answer holds none either
    shown = httpx.get(f"{server.url}/-/projects/demo/status", auth=AUTH)
    assert shown.json()["project-status"] == {"status": "active"}


def docs_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.html", "<h1>docs</h1>")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "path",
    ["/docs/" + "a" * 300 + "/1.0/", "/docs/demo/" + "1." * 150 + "0/"],
    ids=["project", "version"],
)
def test_documentation_under_a_name_too_long_for_the_disk_is_a_400(
    server: Server, path: str
) -> None:
    """Found by fuzzing: a valid 300-character project name (or version) made a file name
    longer than NAME_MAX, and the client's mistake was a 507."""
    zipped = {"content-type": "application/zip"}
    answer = httpx.post(server.url + path, content=docs_zip(), headers=zipped, auth=AUTH)
    assert answer.status_code == 400, answer.text
    assert answer.text.startswith("name too long:")
    assert "ERROR" not in server.log()
    docs = Path(server.roots[0]) / ".creamery" / "docs"
    assert not docs.exists() or not any(docs.rglob("*.zip"))


@pytest.mark.parametrize(
    "description",
    ["\u202egpj.exe", "one\u2028two", "csi\u009b31m", "del\u007f"],
    ids=["bidi-override", "line-separator", "c1-control", "delete"],
)
def test_a_token_description_is_printable_like_a_status_reason(
    server: Server, description: str
) -> None:
    """Found by fuzzing: only C0 controls were refused, so a bidi override (which spoofs
    what the token list shows) or a line separator made a token's description."""
    answer = post_json(server, "/-/tokens", json.dumps({"description": description}))
    assert answer.status_code == 400, answer.text
    assert "printable" in answer.json()["message"]
    assert httpx.get(f"{server.url}/-/tokens", auth=AUTH).json()["tokens"] == []


def test_a_form_of_too_many_fields_is_refused(server: Server, tmp_path: Path) -> None:
    """Found by fuzzing: empty fields cost no field bytes, so a form of a million of them
    (55 MB, far within the upload limit) was read whole: 170 MB of memory, 12 s of parsing."""
    wheel = make_wheel(tmp_path, "fields", "1.0")
    many = [(f"f{number}", "") for number in range(MAX_PARTS)]
    body, content_type = multipart(
        [(":action", "file_upload"), *many], [("content", wheel.name, wheel.read_bytes())]
    )
    headers = {"content-type": content_type}
    answer = httpx.post(server.url + "/", content=body, headers=headers, auth=AUTH)
    assert answer.status_code == 413, answer.text
    assert answer.text.strip() == f"the form has more than {MAX_PARTS} fields and files"
    assert httpx.get(f"{server.url}/simple/fields/").status_code == 404
    scratch = Path(server.roots[0]) / ".creamery" / "tmp"
    assert not [path for path in scratch.rglob("*") if path.is_file()]


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def test_cleartext_http2_is_not_spoken(server: Server) -> None:
    """Found by fuzzing: granian took HTTP/2 with prior knowledge, where none of the HTTP/1
    limits hold: a connection that sent its preface and nothing more was never closed (25 of
    them stopped a server of --max-connections 20), with 16 MiB of headers per stream."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(H2_PREFACE + H2_EMPTY_SETTINGS)
        first = sock.recv(65536)
    assert first == b"" or first.startswith(b"HTTP/1.1 4"), first[:40]
    assert httpx.get(f"{server.url}/health").status_code == 200


NESTED_LIST = "".join("  " * depth + "* x\n\n" for depth in range(500))
NESTED_QUOTE = "".join("    " * depth + "x\n\n" for depth in range(500))
SUBSTITUTIONS = "".join(f".. |s{n}| replace:: |s{n + 1}| |s{n + 1}|\n" for n in range(30))
SUBSTITUTIONS += "\n|s0|\n"


@pytest.mark.parametrize(
    ("name", "description"),
    [("rst-list", NESTED_LIST), ("rst-quote", NESTED_QUOTE), ("rst-subst", SUBSTITUTIONS)],
    ids=["list", "quote", "substitution"],  # short: the id goes into the server's environment
)
def test_a_readme_docutils_fails_on_is_shown_as_plain_text(
    server: Server, tmp_path: Path, name: str, description: str
) -> None:
    """Found by fuzzing: docutils raised RecursionError (lists or quotes nested 500 deep) and
    KeyError (substitutions nested 30 deep), which readme_renderer lets through: the
    project page of such a release was a 500 for every visitor."""
    metadata = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
        f"Description-Content-Type: text/x-rst\n\n{description}"
    )
    wheel = make_wheel(tmp_path, name, "1.0", metadata_text=metadata)
    sent = upload(server, wheel.name, wheel.read_bytes(), auth=AUTH)
    assert sent.status_code == 200, sent.text
    for path in (f"/project/{name}/", f"/project/{name}/1.0/"):
        page = httpx.get(server.url + path)
        assert page.status_code == 200, page.text[:200]
        assert "x<br>" in page.text or "|s0|" in page.text  # as plain text
    assert "Traceback" not in server.log()


@pytest.mark.parametrize("plus", ["+", "%2B"])
def test_format_in_the_query_takes_its_plus_as_typed(server: Server, plus: str) -> None:
    """Found by fuzzing: `?format=application/vnd.pypi.simple.v1+json`, as curl or a browser
    sends it, was a 406: the query string's `+` is a space, and no type matched."""
    query = f"?format=application/vnd.pypi.simple.v1{plus}json"
    answer = httpx.get(f"{server.url}/simple/demo/{query}")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/vnd.pypi.simple.v1+json")


def test_a_malformed_chunk_under_uvicorn_is_its_400_and_no_error(tmp_path: Path) -> None:
    """Found by fuzzing: uvicorn answers a bad chunk size with its own 400 while the app
    runs; the app's answer then made h11 raise, logged as an ERROR with its traceback: one
    small anonymous request each, on any POST route."""
    with run_server([tmp_path], "--server", "uvicorn", "-v") as running:
        for path in ("/", "/-/tokens", "/nowhere"):
            with socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:
                sock.sendall(
                    f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                    "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "zz\r\n".encode()
                )
                assert sock.recv(65536).startswith(b"HTTP/1.1 400 ")
        marker = "/health?after-the-bad-chunks"
        assert httpx.get(running.url + marker).status_code == 200
        log = wait_for_log(running, marker)
        # (uvicorn itself still says, in one line, that the app completed no response)
        assert "Traceback" not in log and "creamery.error" not in log
        assert "the server had answered and closed the connection" in log


def test_racing_token_requests_never_pass_the_per_user_limit(tmp_path: Path) -> None:
    """Found by racing: 30 concurrent `POST /-/tokens` at 95 of the 100 tokens a user may hold
    left 102; each request counted the same tokens before any had created its own."""
    add_user(tmp_path / "htpasswd", USER, PASSWORD, rounds=4)
    (tmp_path / "root").mkdir()
    args = ("-P", str(tmp_path / "htpasswd"), "-a", "update", "--disable-fallback")
    with run_server([tmp_path / "root"], *args) as running, running.client() as http:
        for _ in range(95):
            assert http.post("/-/tokens", json={}, auth=AUTH).status_code == 201
        with concurrent.futures.ThreadPoolExecutor(30) as pool:
            answers = list(
                pool.map(
                    lambda _: httpx.post(running.url + "/-/tokens", json={}, auth=AUTH, timeout=30),
                    range(30),
                )
            )
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [201] * 5 + [409] * 25, statuses
        refused = next(answer for answer in answers if answer.status_code == 409)
        assert refused.json()["message"] == f"{USER!r} has 100 tokens: revoke some first"
        assert len(http.get("/-/tokens", auth=AUTH).json()["tokens"]) == 100
