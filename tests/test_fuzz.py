"""A seeded fuzz of hostile requests against real `creamery run` processes: never a 5xx.

Each case mutates a request a client could send: its path, query string and headers, and the
bodies of uploads (multipart, with and without credentials), XML-RPC calls and yanks. Cases go
out through raw sockets (bytes no client library would write, bodies cut off mid-way) and httpx.
The test fails on any 5xx answer, on a server that stops answering, and on a traceback in the
server's log: a client's mistake is a 4xx and at most one log line.

More cases, another seed (to hunt locally; the suite runs a few hundred):
    CREAMERY_FUZZ_CASES=3000 CREAMERY_FUZZ_SEED=7 python3 -m pytest -q tests/test_fuzz.py
"""

from __future__ import annotations

import base64
import json
import os
import random
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from support.dists import make_sdist, make_wheel
from support.forms import encode_parts, field_part, file_part
from support.servers import Server, run_server

from creamery.catalog.auth import add_user

CASES = int(os.environ.get("CREAMERY_FUZZ_CASES", "300"))
SEED = int(os.environ.get("CREAMERY_FUZZ_SEED", "20261201"))
USER, PASSWORD = "fuzzer", "fuzz-s3cret"
TIMEOUT = 10.0
BOUNDARY = "fuzz-boundary-0c1d"

# ----------------------------------------------------------------------------- vocabulary

NASTY = [
    "%00",
    "%0D%0A",
    "%0A",
    "%0D",
    "%09",
    "%7F",
    "%E2%80%AE",
    "%E2%80%A8",
    "%FF",
    "%C0%AF",
    "%C3",
    "%25",
    "%",
    "%zz",
    "..",
    "%2e%2e",
    "%2F",
    "%5C",
    "//",
    "./",
    ";",
    "*",
    "~",
    "%3Cscript%3E",
    "%22%27",
    "A" * 300,
    "%u202e",
    "{x}",
    "é",
    "\u202e",
    "\U0001f600",
    "\udcff",
    "json",
    "1.0",
    "-",
    "_",
    ".",
    "+",
]
NASTY_TEXT = [
    "",
    " ",
    "é",
    "\u202e",
    "\x00",
    "\r\n",
    "\n",
    "\t",
    "\ufeff",
    "\U0001f600",
    "A" * 5000,
    "[" * 3000,
    "{" * 3000,
    '"',
    "'",
    "<>&",
    "../../etc/passwd",
    "%00",
    "0" * 64,
    "z" * 64,
    "-1",
    "1e999",
    "null",
    "true",
    "[]",
    "{}",
    "1.0",
    "tlib",
    "Tlib",
]
PROJECTS = ["tfuzz", "TFuzz", "t.fuzz", "t_fuzz", "nonexistent", "a", "-", "tfuzz-"]
VERSIONS = ["1.0", "1.0.0", "2.0", "1!2.0", "1.0.post1", "1.0+local", "junk", "01.0"]
ROUTES = [
    "/",
    "/simple/",
    "/simple",
    "/simple/{p}/",
    "/simple/{p}",
    "/packages/",
    "/packages",
    "/packages/{f}",
    "/packages/{f}.metadata",
    "/packages/{f}.asc",
    "/packages/sub/{f}",
    "/pypi/{p}/json",
    "/pypi/{p}/{v}/json",
    "/pypi/{p}/",
    "/{p}/json",
    "/{p}",
    "/{p}/",
    "/RPC2",
    "/pypi",
    "/health",
    "/metrics",
    "/-/yank",
    "/-/unyank",
    "/legacy/",
    "/favicon.ico",
    "/upstream/{p}/{f}",
]
METHODS = ["GET", "GET", "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE"]
ACCEPTS = [
    "application/vnd.pypi.simple.v1+json",
    "application/vnd.pypi.simple.v1+html;q=0.2, text/html",
    "*/*;q=abc",
    "*/*;q=1e999",
    "text/html;q=-1",
    "application/vnd.pypi.simple.v9+json",
    ";;;,,,",
    "application/vnd.pypi.simple.latest+json; q=0",
    "\xff\xfe",
]
DATES = [
    "Mon, 99 Foo 99999 99:99:99 GMT",
    "Thu, 01 Jan 1970 00:00:00 GMT",
    "Fri, 31 Dec 9999 23:59:59 GMT",
    "0",
    "-1",
    "Sun, 06 Nov 1994 08:49:37 GMT",
    "yesterday",
]
RANGES = [
    "bytes=0-0",
    "bytes=-0",
    "bytes=-1",
    "bytes=9999999999999999999999-",
    "bytes=a-b",
    "bytes=0-0,1-1",
    "bytes=--1",
    "bytes=5-1",
    "bytes=",
    "items=0-1",
    "bytes=0-99999999999999999999999999",
]
CONTENT_TYPES = [
    "text/xml",
    "application/json",
    "application/x-www-form-urlencoded",
    f"multipart/form-data; boundary={BOUNDARY}",
    "multipart/form-data",
    "multipart/form-data; boundary=",
    'multipart/form-data; boundary="' + "b" * 300 + '"',
    "multipart/form-data; boundary=\xff\xfe",
    "text/plain",
    "application/octet-stream",
    "",
    "xml; charset=x-bogus",
]


def pick(rng: random.Random, items: list[str]) -> str:
    return items[rng.randrange(len(items))]


# ----------------------------------------------------------------------------- a request


@dataclass
class Case:
    """One request; `cut` sends only part of the body and closes (a client going away)."""

    name: str
    method: str
    target: bytes  # the request target exactly as sent
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    raw: bool = True
    cut: bool = False
    version: bytes = b"HTTP/1.1"
    chunked: bool = False  # the body in chunked transfer coding (raw only)

    def describe(self) -> str:
        how = " ".join(
            (self.version.decode(), "raw" if self.raw else "httpx")
            + ("cut",) * self.cut
            + ("chunked",) * self.chunked
        )
        head = f"{self.name}, {how}: {self.method} {self.target[:300]!r}"
        headers = [(name, value[:100]) for name, value in self.headers]
        return f"{head} headers={headers!r} body[:300]={self.body[:300]!r}"


def encode_path(text: str) -> bytes:
    """Non-ASCII characters as the UTF-8 a sloppy client sends raw (undecodable ones as bytes)."""
    return text.encode("utf-8", "surrogateescape")


def mutate_text(rng: random.Random, text: str) -> str:
    """Insert, replace or append a nasty token somewhere in *text*."""
    token = pick(rng, NASTY)
    where = rng.randrange(len(text) + 1)
    choice = rng.random()
    if choice < 0.4:
        return text[:where] + token + text[where:]
    if choice < 0.7:
        return text[:where] + token + text[where + rng.randrange(1, 4) :]
    return text + token


def fuzz_path(rng: random.Random, files: list[str]) -> str:
    route = pick(rng, ROUTES)
    path = route.format(p=pick(rng, PROJECTS), v=pick(rng, VERSIONS), f=pick(rng, files))
    for _ in range(rng.choice((0, 1, 1, 2, 3))):
        path = mutate_text(rng, path)
    return path if path.startswith("/") or rng.random() < 0.1 else "/" + path


def fuzz_query(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return ""
    pairs = []
    for _ in range(rng.randrange(1, 4)):
        key = pick(rng, ["format", "format", "q", "", "x%00", "%FF"])
        value = pick(rng, ["json", "html", "text/html", *NASTY])
        pairs.append(f"{key}={value}" if rng.random() < 0.9 else key)
    return "?" + "&".join(pairs)


def basic(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode("utf-8", "surrogateescape"))


def fuzz_authorization(rng: random.Random, good: bytes) -> bytes | None:
    roll = rng.random()
    if roll < 0.35:
        return None
    if roll < 0.6:
        return good
    options = [
        basic(USER, "wrong"),
        basic("", ""),
        basic("\u202e", "é"),
        b"Basic " + base64.b64encode(b"\xff\xfe:\x00"),
        b"Basic " + base64.b64encode(b"no-colon"),
        b"Basic !!!not-base64!!!",
        b"Basic",
        b"Basic " + b"A" * 5000,
        b"Bearer abc",
        b"basic " + base64.b64encode(b"fuzzer:fuzz-s3cret"),
        b"\xff\xfe",
    ]
    return options[rng.randrange(len(options))]


def fuzz_headers(rng: random.Random) -> list[tuple[bytes, bytes]]:
    headers: list[tuple[bytes, bytes]] = []
    options: list[tuple[str, Callable[[], str]]] = [
        ("accept", lambda: pick(rng, ACCEPTS)),
        ("if-none-match", lambda: pick(rng, ['"x"', "*", "W/", '"', ",,,", "\xff"])),
        ("if-modified-since", lambda: pick(rng, DATES)),
        ("range", lambda: pick(rng, RANGES)),
        ("if-range", lambda: pick(rng, ['"x"', *DATES])),
        ("x-forwarded-host", lambda: pick(rng, ["evil.example", "a/b/c", "\xff", "", ",", "a b"])),
        ("x-forwarded-proto", lambda: pick(rng, ["https", "javascript", "\xff", ""])),
        ("x-forwarded-prefix", lambda: pick(rng, ["/p", "//", "/é", "/%0d%0a", "\xff", ".."])),
        ("user-agent", lambda: pick(rng, ["twine/6.0", "\xff", "A" * 2000])),
        ("cookie", lambda: "a=b"),
        ("accept-encoding", lambda: pick(rng, ["gzip", "br", "*;q=0", "\xff"])),
    ]
    for name, value in options:
        if rng.random() < 0.15:
            headers.append((name.encode(), value().encode("latin-1", "replace")))
    return headers


# ----------------------------------------------------------------------------- bodies


def flip_bytes(rng: random.Random, data: bytes, count: int) -> bytes:
    if not data:
        return data
    out = bytearray(data)
    for _ in range(count):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def fuzz_upload_body(rng: random.Random, dists: dict[str, bytes]) -> tuple[bytes, str]:
    filename = pick(rng, list(dists))
    data = dists[filename]
    project, version = "tfuzz", filename.split("-")[1].removesuffix(".tar.gz")
    fields = {
        ":action": "file_upload",
        "name": project,
        "version": version,
        "sha256_digest": "",
        "md5_digest": "",
        "attestations": "",
        "protocol_version": "1",
    }
    for key in list(fields):
        if rng.random() < 0.2:
            fields[key] = pick(rng, NASTY_TEXT)
        elif rng.random() < 0.05:
            del fields[key]
    if rng.random() < 0.1:
        fields[":action"] = pick(rng, ["remove_pkg", "doc_upload", "submit", "verify", "x"])
    if rng.random() < 0.1:
        fields["attestations"] = json.dumps([{"a": [[[[{"b": 1}]]]]}] * rng.randrange(1, 5))
    if rng.random() < 0.2:
        filename = mutate_text(rng, filename)
    if rng.random() < 0.2:
        data = flip_bytes(rng, data, rng.randrange(1, 20))
    parts = [field_part(k, v) for k, v in fields.items()]
    if rng.random() < 0.9:
        parts.append(file_part("content", filename, data))
    if rng.random() < 0.1:
        parts.append(file_part("gpg_signature", filename + ".asc", b"-----BEGIN PGP"))
    if rng.random() < 0.1:
        parts.append(file_part("content", filename, data))
    if rng.random() < 0.1:
        parts.append((b"Content-Disposition: form-data", b"no name"))
    if rng.random() < 0.05:
        parts.append((b"\xff\xfe: \x00", b"junk header"))
    rng.shuffle(parts)
    boundary = BOUNDARY
    if rng.random() < 0.1:
        boundary = pick(rng, ["b" * 300, "", "é", "x y", '"q"', "-" * 70])
    body = encode_parts(parts, boundary)
    if rng.random() < 0.15:
        body = flip_bytes(rng, body, rng.randrange(1, 10))
    if rng.random() < 0.1:
        body = body[: rng.randrange(len(body))]
    content_type = f"multipart/form-data; boundary={boundary}"
    if rng.random() < 0.1:
        content_type = pick(rng, CONTENT_TYPES)
    return body, content_type


XMLRPC_CALLS = [
    ("list_packages", ""),
    ("system.listMethods", ""),
    ("search", "<param><value><struct><member><name>name</name><value>t</value></member>"),
    ("search", "<param><value><struct><member><name>summary</name><value><array><data>"),
    ("package_releases", "<param><value><string>tfuzz</string></value></param>"),
    ("package_releases", "<param><value><int>99999999999999999999999</int></value></param>"),
    ("package_releases", "<param><value><double>nan</double></value></param>"),
    ("search", "<param><value><base64>!!!</base64></value></param>"),
    ("search", "<param><value><dateTime.iso8601>x</dateTime.iso8601></value></param>"),
    ("nope", "<param><value><boolean>7</boolean></value></param>"),
]


def fuzz_xmlrpc_body(rng: random.Random) -> tuple[bytes, str]:
    method, params = XMLRPC_CALLS[rng.randrange(len(XMLRPC_CALLS))]
    encoding = pick(rng, ["utf-8", "utf-8", "x-bogus", "utf-16", "latin-1", "ascii", "utf-7"])
    text = (
        f"<?xml version='1.0' encoding='{encoding}'?>"
        f"<methodCall><methodName>{method}</methodName><params>{params}</params></methodCall>"
    )
    if rng.random() < 0.1:
        text = text.replace("<params>", "<params>" + "<value><array><data>" * 2000)
    if rng.random() < 0.2:
        text = mutate_text(rng, text)
    body = text.encode("utf-8", "surrogateescape")
    if rng.random() < 0.2:
        body = flip_bytes(rng, body, rng.randrange(1, 10))
    if rng.random() < 0.1:
        body = body[: rng.randrange(len(body))]
    if rng.random() < 0.05:
        body = (
            b'<!DOCTYPE x [<!ENTITY a "b">]><methodCall><methodName>&a;</methodName></methodCall>'
        )
    content_type = pick(rng, ["text/xml", "text/xml", "application/xml", "text/plain", ""])
    return body, content_type


def fuzz_yank_body(rng: random.Random) -> tuple[bytes, str]:
    data: dict[str, object] = {"project": "tfuzz", "version": "1.0"}
    if rng.random() < 0.5:
        data["reason"] = pick(rng, NASTY_TEXT)
    if rng.random() < 0.3:
        data["filename"] = pick(rng, ["tfuzz-1.0-py3-none-any.whl", *NASTY_TEXT])
    for key in list(data):
        roll = rng.random()
        if roll < 0.15:
            data[key] = pick(rng, NASTY_TEXT)
        elif roll < 0.25:
            data[key] = rng.choice([None, 1, 1.5, [], {}, ["x"], {"a": 1}, True, 10**400])
        elif roll < 0.3:
            del data[key]
    if rng.random() < 0.1:
        return b"[" * rng.choice((100, 1000, 100_000)), "application/json"
    if rng.random() < 0.5:
        body = json.dumps(data, default=str).encode()
        content_type = "application/json"
    else:
        pairs = [f"{k}={v}" for k, v in data.items()]
        body = "&".join(pairs).encode("utf-8", "surrogateescape")
        content_type = "application/x-www-form-urlencoded"
    if rng.random() < 0.15:
        body = flip_bytes(rng, body, rng.randrange(1, 5))
    if rng.random() < 0.1:
        content_type = pick(rng, CONTENT_TYPES)
    return body, content_type


# ----------------------------------------------------------------------------- cases


def make_case(rng: random.Random, number: int, files: list[str], dists: dict[str, bytes]) -> Case:
    kind = rng.choices(["read", "upload", "xmlrpc", "yank", "junk"], [5, 3, 2, 2, 1])[0]
    headers = fuzz_headers(rng)
    body = b""
    if kind == "read":
        method = pick(rng, METHODS)
        target = fuzz_path(rng, files) + fuzz_query(rng)
    elif kind == "upload":
        method = "POST"
        target = pick(rng, ["/", "/", "/legacy/", "/legacy", "/?x=1"])
        body, content_type = fuzz_upload_body(rng, dists)
        headers.append((b"content-type", content_type.encode("latin-1", "replace")))
    elif kind == "xmlrpc":
        method = "POST"
        target = pick(rng, ["/RPC2", "/RPC2/", "/pypi", "/", "/simple/", "/simple"])
        body, content_type = fuzz_xmlrpc_body(rng)
        headers.append((b"content-type", content_type.encode()))
    elif kind == "yank":
        method = "POST"
        target = pick(rng, ["/-/yank", "/-/unyank", "/-/yank/", "/-/yank?x"])
        body, content_type = fuzz_yank_body(rng)
        headers.append((b"content-type", content_type.encode("latin-1", "replace")))
    else:
        method = pick(rng, METHODS)
        target = fuzz_path(rng, files)
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 2000)))
        headers.append((b"content-type", pick(rng, CONTENT_TYPES).encode("latin-1", "replace")))
    raw = rng.random() < 0.6 or not _httpx_safe(target)
    cut = bool(body) and raw and rng.random() < 0.08
    case = Case(f"case {number} ({kind})", method, encode_path(target), headers, body, raw, cut)
    if raw and rng.random() < 0.1:
        case.version = b"HTTP/1.0"
    elif raw and body and not cut and rng.random() < 0.1:
        case.chunked = True
    if rng.random() < 0.05 and headers:
        headers.append(headers[rng.randrange(len(headers))])  # a repeated header
    return case


def _httpx_safe(target: str) -> bool:
    """What httpx can send as it is (it refuses a relative URL starting with //)."""
    return (
        target.isascii()
        and target.isprintable()
        and " " not in target
        and target.startswith("/")
        and not target.startswith("//")
    )


def cases(seed: int, count: int, files: list[str], dists: dict[str, bytes]) -> Iterator[Case]:
    rng = random.Random(seed)
    for number in range(count):
        yield make_case(rng, number, files, dists)


# ----------------------------------------------------------------------------- sending


def send_raw(server: Server, case: Case, authorization: bytes | None) -> int | None:
    """The status, or None when the server closed without answering (allowed for a cut body)."""
    headers = [(b"host", f"127.0.0.1:{server.port}".encode()), (b"connection", b"close")]
    headers += case.headers
    if authorization is not None:
        headers.append((b"authorization", authorization))
    body = case.body
    if case.chunked:
        headers.append((b"transfer-encoding", b"chunked"))
        body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in _pieces(body)) + b"0\r\n\r\n"
    elif case.body or case.method in ("POST", "PUT", "PATCH"):
        declared = len(case.body) * (2 if case.cut else 1)
        headers.append((b"content-length", str(declared).encode()))
    head = case.method.encode() + b" " + case.target + b" " + case.version + b"\r\n"
    head += b"".join(name + b": " + value + b"\r\n" for name, value in headers) + b"\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        try:
            sock.sendall(head + body)
            if case.cut:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server answered early and closed (EPIPE, ECONNRESET, ENOTCONN): read it
        response = bytearray()
        try:
            while b"\r\n" not in response:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                response += chunk
        except TimeoutError:
            pytest.fail(f"no answer within {TIMEOUT} s to {case.describe()}")
        except OSError:
            pass  # reset after an early answer: what arrived counts
    if not response:
        return None
    status_line = bytes(response).split(b"\r\n", 1)[0].split(b" ")
    return int(status_line[1])


def _pieces(data: bytes, size: int = 700) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def send_httpx(client: httpx.Client, case: Case, authorization: bytes | None) -> int | None:
    """The status, or None when the server closed the connection without an answer, twice
    (once is the keep-alive race: the server may close a kept connection as it is reused)."""
    headers = [(k, v) for k, v in case.headers]
    if authorization is not None:
        headers.append((b"authorization", authorization))
    for _attempt in range(2):
        try:
            response = client.request(
                case.method, case.target.decode(), headers=headers, content=case.body or None
            )
        except httpx.TimeoutException:
            pytest.fail(f"no answer within {TIMEOUT} s to {case.describe()}")
        except httpx.RemoteProtocolError:
            continue
        return response.status_code
    return None


# ----------------------------------------------------------------------------- servers


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    build = tmp_path_factory.mktemp("fuzz-dists")
    made = [
        make_wheel(build, "tfuzz", "1.0", summary="fuzzed"),
        make_wheel(build, "tfuzz", "2.0", requires_python=">=3"),
        make_sdist(build, "tfuzz", "1.0"),
    ]
    return {path.name: path.read_bytes() for path in made}


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("fuzz")
    open_root, auth_root = base / "open", base / "auth"
    for root in (open_root, auth_root):
        make_wheel(root, "tfuzz", "0.5", summary="already there")
        make_sdist(root / "sub", "tfuzz", "0.9")
    htpasswd = base / "htpasswd"
    add_user(htpasswd, USER, PASSWORD, rounds=4)
    return open_root, auth_root


def served_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.*") if p.is_file())


def fuzz(server: Server, seed: int, count: int, dists: dict[str, bytes], good: bytes) -> None:
    files = [f.rpartition("/")[2] for f in served_files(server.roots[0])] + ["x.whl"]
    rng = random.Random(seed ^ 0x5EED)
    failures: list[str] = []
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
        for number, case in enumerate(cases(seed, count, files, dists)):
            authorization = fuzz_authorization(rng, good)
            if case.raw:
                status = send_raw(server, case, authorization)
            else:
                status = send_httpx(client, case, authorization)
            if status is None and not case.cut:
                failures.append(f"no response to {case.describe()}")
            elif status is not None and status >= 500:
                failures.append(f"{status} for {case.describe()}")
            if number % 50 == 49:
                assert_alive(server, failures)
    assert_alive(server, failures)
    log = server.log()
    errors = "\n".join(tracebacks(log)[:3])
    assert not failures, (
        f"{len(failures)} failures (seed {seed}):\n"
        + "\n".join(failures[:20])
        + (f"\n--- server log ---\n{errors}")
    )
    assert "Traceback" not in log, f"tracebacks in the server log (seed {seed}):\n{errors}"


def tracebacks(log: str) -> list[str]:
    """Each traceback of the log with the line before it (the request that caused it)."""
    lines = log.splitlines()
    found = []
    for number, line in enumerate(lines):
        if line.startswith("Traceback"):
            end = number + 1
            while end < len(lines) and lines[end].startswith((" ", "\t")):
                end += 1
            found.append("\n".join(lines[max(number - 1, 0) : end + 1]))
    return found


def assert_alive(server: Server, failures: list[str]) -> None:
    started = time.monotonic()
    response = httpx.get(server.url + "/health", timeout=TIMEOUT)
    elapsed = time.monotonic() - started
    assert response.status_code == 200, f"/health answered {response.status_code}"
    assert elapsed < 5, f"/health took {elapsed:.1f} s after: {failures[-1:] or 'the cases'}"


def test_fuzz_anonymous_writes(roots: tuple[Path, Path], dists: dict[str, bytes]) -> None:
    """`-P . -a .`: every request reaches the code behind the guard, uploads and yanks too."""
    with run_server([roots[0]], "-P", ".", "-a", ".", "--disable-fallback", "-v") as server:
        fuzz(server, SEED, CASES, dists, b"")


def test_fuzz_with_credentials(roots: tuple[Path, Path], dists: dict[str, bytes]) -> None:
    """`-P htpasswd -a update`: requests with good, bad, odd and no credentials."""
    htpasswd = roots[0].parent / "htpasswd"
    with run_server([roots[1]], "-P", str(htpasswd), "-a", "update", "-v") as server:
        fuzz(server, SEED + 1, CASES, dists, basic(USER, PASSWORD))
