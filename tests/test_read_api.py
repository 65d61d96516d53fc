"""HTTP conformance of the read side against a real server process.

PEP 503 / 629 / 691 / 700 / 592 / 658 / 714, file serving, pypiserver's and PyPI's JSON APIs,
XML-RPC search, proxies and prefixes, and an index that follows the file system without restart.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Iterator
from email.utils import format_datetime, parsedate_to_datetime
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote, urldefrag, urljoin, urlsplit

import httpx
import pytest
from support.corpus import FIXED_MTIME_FILE, FIXED_MTIME_ISO, SECRET, Corpus
from support.dists import make_wheel
from support.servers import Server, run_server

import creamery

JSON_V1 = "application/vnd.pypi.simple.v1+json"
HTML_V1 = "application/vnd.pypi.simple.v1+html"
JSON_LATEST = "application/vnd.pypi.simple.latest+json"
HTML_LATEST = "application/vnd.pypi.simple.latest+html"
PIP_ACCEPT = f"{JSON_V1}, {HTML_V1}; q=0.1, text/html; q=0.01"
PROJECTS = {"tlib", "tapp", "foo-bar-baz", "tpyreq", "tsigned", "tother"}
PEP700_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")
FALLBACK = "https://pypi.org/simple/"


# ------------------------------------------------------------------------------- helpers


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.anchors: list[dict[str, str | None]] = []
        self.metas: list[dict[str, str | None]] = []
        self._open: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._open = {**dict(attrs), "#text": ""}
            self.anchors.append(self._open)
        elif tag == "meta":
            self.metas.append(dict(attrs))

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._open["#text"] = (self._open["#text"] or "") + data

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._open = None


def parse_html(text: str) -> _Anchors:
    parser = _Anchors()
    parser.feed(text)
    parser.close()
    return parser


def anchors(response: httpx.Response) -> dict[str, dict[str, str | None]]:
    """The page's links keyed by their text (the filename or project name)."""
    found = parse_html(response.text).anchors
    by_text = {str(a["#text"]).strip(): a for a in found}
    assert len(by_text) == len(found), f"duplicate link texts on {response.url}"
    return by_text


def media_type(response: httpx.Response) -> str:
    return response.headers.get("content-type", "").split(";")[0].strip().lower()


def resolve(response: httpx.Response, href: str) -> str:
    return urljoin(str(response.url), href)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_relative(location: str) -> bool:
    parts = urlsplit(location)
    return not parts.scheme and not parts.netloc and not location.startswith("/")


def get_json(http: httpx.Client, path: str) -> tuple[httpx.Response, dict]:
    response = http.get(path, headers={"Accept": JSON_V1})
    assert response.status_code == 200, (path, response.status_code, response.text[:300])
    assert media_type(response) == JSON_V1
    return response, response.json()


def get_html(http: httpx.Client, path: str) -> httpx.Response:
    response = http.get(path, headers={"Accept": "text/html"})
    assert response.status_code == 200, (path, response.status_code, response.text[:300])
    assert media_type(response) == "text/html"
    return response


def packages_url(server: Server, corpus: Corpus, filename: str) -> str:
    return f"{server.url}/packages/{quote(corpus.relpath(filename))}"


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


# ------------------------------------------------------------------ PEP 503 / 629: HTML index


def test_root_index_lists_normalized_projects(server: Server, http: httpx.Client) -> None:
    response = get_html(http, "/simple/")
    links = anchors(response)
    assert set(links) == PROJECTS  # normalized names; dot-file projects stay hidden
    for name, anchor in links.items():
        assert resolve(response, str(anchor["href"])) == f"{server.url}/simple/{name}/"


@pytest.mark.parametrize("path", ["/simple/", "/simple/tlib/"])
def test_html_repository_version_meta(http: httpx.Client, path: str) -> None:
    """PEP 629: <meta name="pypi:repository-version" content="1.x">."""
    metas = parse_html(get_html(http, path).text).metas
    versions = [m.get("content") for m in metas if m.get("name") == "pypi:repository-version"]
    assert len(versions) == 1, metas
    assert re.fullmatch(r"1\.\d+", str(versions[0]))


def test_project_page_links_hashes_match_downloaded_bytes(
    server: Server, corpus: Corpus, http: httpx.Client
) -> None:
    response = get_html(http, "/simple/tlib/")
    links = anchors(response)
    assert set(links) == corpus.project_files("tlib")
    for filename, anchor in links.items():
        href = str(anchor["href"])
        assert is_relative(href), href
        url, fragment = urldefrag(resolve(response, href))
        assert url == packages_url(server, corpus, filename)
        assert fragment == f"sha256={corpus.sha256(filename)}"
        download = http.get(url)
        assert download.status_code == 200
        assert download.content == corpus.data(filename)
        assert fragment == f"sha256={sha256(download.content)}"


def test_project_page_collects_files_from_subdirs_and_roots(
    server: Server, corpus: Corpus, http: httpx.Client
) -> None:
    for project, filename in [
        ("tapp", "tapp-1.0-py3-none-any.whl"),  # root1/sub/
        ("tother", "tother-1.0-py3-none-any.whl"),  # root2
        ("tlib", "tlib-0.9.tar.gz"),  # root2, project shared with root1
    ]:
        response = get_html(http, f"/simple/{project}/")
        href = str(anchors(response)[filename]["href"])
        url, _ = urldefrag(resolve(response, href))
        assert url == packages_url(server, corpus, filename)
        assert http.get(url).content == corpus.data(filename)


def test_non_normalized_spellings_share_one_project(corpus: Corpus, http: httpx.Client) -> None:
    links = anchors(get_html(http, "/simple/foo-bar-baz/"))
    assert set(links) == {"foo_bar_baz-0.2-py3-none-any.whl", "Foo.Bar_baz-0.1.tar.gz"}


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("/simple/Foo.Bar_baz/", "/simple/foo-bar-baz/"),
        ("/simple/foo_bar_baz/", "/simple/foo-bar-baz/"),
        ("/simple/TLIB/", "/simple/tlib/"),
        ("/simple/tlib", "/simple/tlib/"),
        ("/simple", "/simple/"),
        ("/packages", "/packages/"),
    ],
)
def test_redirects_are_permanent_and_relative(
    server: Server, http: httpx.Client, path: str, target: str
) -> None:
    response = http.get(path)
    assert response.status_code == 301, (path, response.status_code)
    location = response.headers["location"]
    assert is_relative(location), f"Location {location!r} is not relative"
    assert resolve(response, location) == server.url + target


def test_slashless_non_normalized_name_ends_on_normalized_page(
    server: Server, http: httpx.Client
) -> None:
    response = http.get("/simple/Foo.Bar_baz", follow_redirects=True)
    assert response.status_code == 200
    assert str(response.url) == f"{server.url}/simple/foo-bar-baz/"
    assert all(r.status_code == 301 for r in response.history)
    assert len(response.history) <= 2


def test_hidden_files_are_never_listed(corpus: Corpus, http: httpx.Client) -> None:
    for path in ("/simple/", "/packages/"):
        text = http.get(path).text
        for filename in corpus.hidden:
            assert filename not in text
        assert "hiddendir" not in text
        assert "thidden" not in text
    assert http.get("/simple/thidden2/").status_code == 303  # unknown: fallback redirect


# ---------------------------------------------------------------- PEP 691: content negotiation


NEGOTIATION = [
    (JSON_V1, JSON_V1),
    (HTML_V1, HTML_V1),
    ("text/html", "text/html"),
    (JSON_LATEST, JSON_V1),  # `latest` answers with the real version
    (HTML_LATEST, HTML_V1),
    (PIP_ACCEPT, JSON_V1),
    (f"{JSON_V1};q=0.5, text/html;q=0.9", "text/html"),
    (f"{JSON_V1};q=0.9, text/html;q=0.5", JSON_V1),
    (f"text/html;q=0.2, {HTML_V1};q=0.8", HTML_V1),
    (f"{JSON_V1};q=0, text/html", "text/html"),  # q=0 means "not acceptable"
    (f"application/xml, {JSON_V1};q=0.1", JSON_V1),
    ("*/*", "text/html"),
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "text/html"),
    (None, "text/html"),
]


@pytest.mark.parametrize("path", ["/simple/", "/simple/tlib/"])
@pytest.mark.parametrize(("accept", "expected"), NEGOTIATION)
def test_content_negotiation(
    http: httpx.Client, path: str, accept: str | None, expected: str
) -> None:
    headers = {"Accept": accept} if accept is not None else {}
    request = http.build_request("GET", path, headers=headers)
    if accept is None:
        del request.headers["Accept"]
    response = http.send(request)
    assert response.status_code == 200
    assert media_type(response) == expected
    assert "accept" in response.headers.get("vary", "").lower()
    if expected == JSON_V1:
        assert response.json()["meta"]["api-version"].startswith("1.")
    else:
        assert "<a " in response.text


@pytest.mark.parametrize("path", ["/simple/", "/simple/tlib/"])
@pytest.mark.parametrize("accept", ["application/xml", "application/json", "image/png"])
def test_unsupported_accept_is_406(http: httpx.Client, path: str, accept: str) -> None:
    response = http.get(path, headers={"Accept": accept})
    assert response.status_code == 406


@pytest.mark.parametrize("path", ["/simple/", "/simple/tlib/"])
def test_format_query_parameter_overrides_accept(http: httpx.Client, path: str) -> None:
    response = http.get(path, params={"format": JSON_V1}, headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert media_type(response) == JSON_V1
    response = http.get(path, params={"format": HTML_V1}, headers={"Accept": JSON_V1})
    assert response.status_code == 200
    assert media_type(response) == HTML_V1


def test_json_index(http: httpx.Client) -> None:
    _, body = get_json(http, "/simple/")
    assert re.fullmatch(r"1\.\d+", body["meta"]["api-version"])
    assert {p["name"] for p in body["projects"]} == PROJECTS


def test_json_api_version_covers_pep700(http: httpx.Client) -> None:
    _, body = get_json(http, "/simple/tlib/")
    major, minor = map(int, body["meta"]["api-version"].split("."))
    assert (major, minor) >= (1, 1)  # PEP 700's fields are API version 1.1


def test_json_project_page_files(server: Server, corpus: Corpus, http: httpx.Client) -> None:
    response, body = get_json(http, "/simple/tlib/")
    assert body["name"] == "tlib"
    files = {f["filename"]: f for f in body["files"]}
    assert set(files) == corpus.project_files("tlib")
    for filename, entry in files.items():
        url = resolve(response, entry["url"])
        assert urldefrag(url)[0] == packages_url(server, corpus, filename)
        assert entry["hashes"]["sha256"] == corpus.sha256(filename)
        download = http.get(urldefrag(url)[0])
        assert download.content == corpus.data(filename)
        # PEP 700
        assert entry["size"] == len(corpus.data(filename)) == corpus.files[filename].stat().st_size
        assert PEP700_TIME.match(entry["upload-time"]), entry["upload-time"]


def test_json_name_is_normalized(http: httpx.Client) -> None:
    _, body = get_json(http, "/simple/foo-bar-baz/")
    assert body["name"] == "foo-bar-baz"


def test_json_versions_pep700(http: httpx.Client) -> None:
    _, body = get_json(http, "/simple/tlib/")
    assert sorted(body["versions"]) == ["0.5", "0.9", "1.0", "2.0", "3.0"]
    assert len(body["versions"]) == len(set(body["versions"]))
    _, body = get_json(http, "/simple/foo-bar-baz/")
    assert sorted(body["versions"]) == ["0.1", "0.2"]


def test_upload_time_is_the_file_mtime(http: httpx.Client) -> None:
    _, body = get_json(http, "/simple/tlib/")
    (entry,) = [f for f in body["files"] if f["filename"] == FIXED_MTIME_FILE]
    assert entry["upload-time"].startswith(FIXED_MTIME_ISO)
    assert entry["upload-time"].endswith("Z")


# --------------------------------------------------- requires-python, gpg-sig, yanked (HTML/JSON)


def test_html_requires_python_is_escaped(http: httpx.Client) -> None:
    response = get_html(http, "/simple/tpyreq/")
    raw = re.findall(r'data-requires-python="([^"]*)"', response.text)
    assert sorted(raw) == ["&gt;=3.8,&lt;4", "&gt;=4"]
    links = anchors(response)
    assert links["tpyreq-1.0-py3-none-any.whl"]["data-requires-python"] == ">=3.8,<4"
    assert links["tpyreq-2.0-py3-none-any.whl"]["data-requires-python"] == ">=4"
    for anchor in anchors(get_html(http, "/simple/tlib/")).values():
        assert "data-requires-python" not in anchor  # no Requires-Python: no attribute


def test_json_requires_python(http: httpx.Client) -> None:
    _, body = get_json(http, "/simple/tpyreq/")
    files = {f["filename"]: f for f in body["files"]}
    assert files["tpyreq-1.0-py3-none-any.whl"]["requires-python"] == ">=3.8,<4"
    assert files["tpyreq-2.0-py3-none-any.whl"]["requires-python"] == ">=4"


def test_gpg_sig(server: Server, corpus: Corpus, http: httpx.Client) -> None:
    signed = "tsigned-1.0-py3-none-any.whl"
    response = get_html(http, "/simple/tsigned/")
    anchor = anchors(response)[signed]
    assert anchor["data-gpg-sig"] == "true"
    for other in anchors(get_html(http, "/simple/tlib/")).values():
        assert other.get("data-gpg-sig", "false") == "false"
    signature = http.get(urldefrag(resolve(response, str(anchor["href"])))[0] + ".asc")
    assert signature.status_code == 200
    assert signature.content == Path(f"{corpus.files[signed]}.asc").read_bytes()
    _, body = get_json(http, "/simple/tsigned/")
    (entry,) = [f for f in body["files"] if f["filename"] == signed]
    assert entry["gpg-sig"] is True
    _, body = get_json(http, "/simple/tlib/")
    assert all(f.get("gpg-sig", False) is False for f in body["files"])


def test_html_yanked(http: httpx.Client) -> None:
    links = anchors(get_html(http, "/simple/tlib/"))
    assert links["tlib-3.0-py3-none-any.whl"]["data-yanked"] == "broken build"
    assert "data-yanked" in links["tlib-0.5-py3-none-any.whl"]
    assert links["tlib-0.5-py3-none-any.whl"]["data-yanked"] in ("", None)
    for filename, anchor in links.items():
        if filename not in ("tlib-3.0-py3-none-any.whl", "tlib-0.5-py3-none-any.whl"):
            assert "data-yanked" not in anchor, filename


def test_json_yanked(http: httpx.Client) -> None:
    _, body = get_json(http, "/simple/tlib/")
    files = {f["filename"]: f for f in body["files"]}
    assert files["tlib-3.0-py3-none-any.whl"]["yanked"] == "broken build"
    assert files["tlib-0.5-py3-none-any.whl"]["yanked"] is True
    for filename, entry in files.items():
        if filename not in ("tlib-3.0-py3-none-any.whl", "tlib-0.5-py3-none-any.whl"):
            assert entry.get("yanked", False) is False, filename


# ------------------------------------------------------------------------ PEP 658 / PEP 714


def _wheels(corpus: Corpus, project: str) -> list[str]:
    return sorted(f for f in corpus.project_files(project) if f.endswith(".whl"))


@pytest.mark.parametrize("project", ["tlib", "tapp", "foo-bar-baz"])
def test_html_core_metadata(corpus: Corpus, http: httpx.Client, project: str) -> None:
    response = get_html(http, f"/simple/{project}/")
    links = anchors(response)
    for filename in _wheels(corpus, project):
        metadata = corpus.metadata(filename)
        expected = f"sha256={sha256(metadata)}"
        anchor = links[filename]
        assert anchor.get("data-core-metadata") == expected, filename
        assert anchor.get("data-dist-info-metadata") == expected, filename
        served = http.get(urldefrag(resolve(response, str(anchor["href"])))[0] + ".metadata")
        assert served.status_code == 200
        assert served.content == metadata


@pytest.mark.parametrize("project", ["tlib", "tapp", "foo-bar-baz"])
def test_json_core_metadata(corpus: Corpus, http: httpx.Client, project: str) -> None:
    response, body = get_json(http, f"/simple/{project}/")
    files = {f["filename"]: f for f in body["files"]}
    for filename in _wheels(corpus, project):
        metadata = corpus.metadata(filename)
        entry = files[filename]
        assert entry.get("core-metadata") == {"sha256": sha256(metadata)}, filename
        assert entry.get("dist-info-metadata") == {"sha256": sha256(metadata)}, filename
        served = http.get(urldefrag(resolve(response, entry["url"]))[0] + ".metadata")
        assert served.status_code == 200
        assert served.content == metadata


def test_metadata_of_missing_file_is_404(http: httpx.Client) -> None:
    assert http.get("/packages/tlib-9.9-py3-none-any.whl.metadata").status_code == 404


# ------------------------------------------------------------------------- unknown projects


def test_unknown_project_redirects_to_fallback(http: httpx.Client) -> None:
    response = http.get("/simple/tnonexistent/")
    assert response.status_code == 303
    assert response.headers["location"] == FALLBACK + "tnonexistent/"


def test_unknown_project_redirect_is_302_for_http10(server: Server) -> None:
    """HTTP/1.0 has no 303: pypiserver (bottle's redirect()) answers 302 there."""
    response = server.raw("GET /simple/tnonexistent/ HTTP/1.0")
    assert response.status == 302
    assert response.headers["location"] == FALLBACK + "tnonexistent/"


@pytest.mark.parametrize("path", ["/tlib", "/tlib/"])
def test_project_root_redirect_is_302_for_http10(server: Server, path: str) -> None:
    response = server.raw(f"GET {path} HTTP/1.0")
    assert response.status == 302
    location = urljoin(f"{server.url}{path}", response.headers["location"])
    assert location == f"{server.url}/simple/tlib/"


# ------------------------------------------------------------------------- /packages/


def test_packages_listing(server: Server, corpus: Corpus, http: httpx.Client) -> None:
    response = http.get("/packages/")
    assert response.status_code == 200
    assert media_type(response) == "text/html"
    listed = {
        urldefrag(resolve(response, str(a["href"])))[0] for a in parse_html(response.text).anchors
    }
    expected = {packages_url(server, corpus, f) for f in corpus.files}
    assert expected <= listed, expected - listed
    hidden = {f"{server.url}/packages/{quote(corpus.relpath(f))}" for f in corpus.hidden}
    assert not (hidden & listed)


def test_packages_listing_links_carry_sha256(
    server: Server, corpus: Corpus, http: httpx.Client
) -> None:
    """pypiserver's listing links are `<relpath>#sha256=<digest>` (pip --find-links checks it)."""
    response = http.get("/packages/")
    fragments = {}
    for anchor in parse_html(response.text).anchors:
        url, fragment = urldefrag(resolve(response, str(anchor["href"])))
        fragments[url] = fragment
    for filename in corpus.files:
        expected = "" if filename.endswith(".asc") else f"sha256={corpus.sha256(filename)}"
        assert fragments[packages_url(server, corpus, filename)] == expected, filename


def test_packages_listing_marks_yanked_files(server: Server, http: httpx.Client) -> None:
    """PEP 592's `data-yanked`, as on the simple pages: find-links clients skip them too."""
    links = anchors(http.get("/packages/"))
    yanked = {text: link["data-yanked"] for text, link in links.items() if "data-yanked" in link}
    assert yanked == {"tlib-0.5-py3-none-any.whl": "", "tlib-3.0-py3-none-any.whl": "broken build"}


def test_download_every_file(server: Server, corpus: Corpus, http: httpx.Client) -> None:
    for filename in corpus.files:
        response = http.get(packages_url(server, corpus, filename))
        assert response.status_code == 200, filename
        assert response.content == corpus.data(filename)
        assert int(response.headers["content-length"]) == len(corpus.data(filename))


def test_head_matches_get(server: Server, corpus: Corpus, http: httpx.Client) -> None:
    url = packages_url(server, corpus, "tapp-1.0-py3-none-any.whl")
    get = http.get(url)
    head = http.head(url)
    assert head.status_code == 200
    assert head.content == b""
    for name in ("content-length", "content-type", "etag", "last-modified", "accept-ranges"):
        assert head.headers.get(name) == get.headers.get(name), name
    assert int(head.headers["content-length"]) == len(get.content)


def test_range_requests(server: Server, corpus: Corpus, http: httpx.Client) -> None:
    filename = "tlib-2.0-py3-none-any.whl"
    data, url = corpus.data(filename), packages_url(server, corpus, filename)
    size = len(data)
    assert http.get(url).headers.get("accept-ranges") == "bytes"

    first = http.get(url, headers={"Range": "bytes=0-9"})
    assert first.status_code == 206
    assert first.content == data[:10]
    assert first.headers["content-range"] == f"bytes 0-9/{size}"
    assert first.headers["content-length"] == "10"

    middle = http.get(url, headers={"Range": "bytes=100-199"})
    assert middle.status_code == 206
    assert middle.content == data[100:200]
    assert middle.headers["content-range"] == f"bytes 100-199/{size}"

    suffix = http.get(url, headers={"Range": "bytes=-10"})
    assert suffix.status_code == 206
    assert suffix.content == data[-10:]
    assert suffix.headers["content-range"] == f"bytes {size - 10}-{size - 1}/{size}"

    open_ended = http.get(url, headers={"Range": f"bytes={size - 5}-"})
    assert open_ended.status_code == 206
    assert open_ended.content == data[-5:]

    beyond = http.get(url, headers={"Range": f"bytes={size + 10}-{size + 20}"})
    assert beyond.status_code == 416
    assert beyond.headers.get("content-range", f"bytes */{size}") == f"bytes */{size}"


def test_conditional_downloads(server: Server, corpus: Corpus, http: httpx.Client) -> None:
    url = packages_url(server, corpus, "tlib-1.0-py3-none-any.whl")
    response = http.get(url)
    etag, last_modified = response.headers.get("etag"), response.headers.get("last-modified")
    assert etag, "no ETag on a download"
    assert last_modified, "no Last-Modified on a download"

    cached = http.get(url, headers={"If-None-Match": etag})
    assert cached.status_code == 304
    assert cached.content == b""
    assert http.get(url, headers={"If-None-Match": '"something-else"'}).status_code == 200

    cached = http.get(url, headers={"If-Modified-Since": last_modified})
    assert cached.status_code == 304
    assert cached.content == b""
    older = format_datetime(parsedate_to_datetime(last_modified).replace(year=2001), usegmt=True)
    assert http.get(url, headers={"If-Modified-Since": older}).status_code == 200


def test_last_modified_is_the_file_mtime(
    server: Server, corpus: Corpus, http: httpx.Client
) -> None:
    response = http.get(packages_url(server, corpus, FIXED_MTIME_FILE))
    assert response.headers["last-modified"] == "Thu, 04 Mar 2021 05:06:07 GMT"


def test_unknown_download_is_404(http: httpx.Client) -> None:
    assert http.get("/packages/tlib-9.9-py3-none-any.whl").status_code == 404
    assert http.get("/packages/sub/").status_code == 404


def _traversal_paths(corpus: Corpus) -> list[str]:
    secret = str(corpus.secret)
    hidden = [f"/packages/{quote(corpus.relpath(f))}" for f in corpus.hidden]
    return [
        *hidden,
        *[f"{path}.metadata" for path in hidden],
        "/packages/.hiddendir/",
        "/packages/../secret.txt",
        "/packages/sub/../../secret.txt",
        "/packages/%2e%2e/secret.txt",
        "/packages/%2E%2E/secret.txt",
        "/packages/..%2fsecret.txt",
        "/packages/%2e%2e%2fsecret.txt",
        "/packages/sub/%2e%2e/%2e%2e/secret.txt",
        "/packages/..\\secret.txt",
        f"/packages/{secret}",
        f"/packages//{secret.lstrip('/')}",
        f"/packages/{quote(secret, safe='')}",
        f"/packages/{'%2e%2e/' * 8}etc/passwd",
        "/packages/../../../../../../etc/passwd",
    ]


def test_dot_files_and_traversal_are_404(server: Server, corpus: Corpus) -> None:
    failures = []
    for path in _traversal_paths(corpus):
        for method in ("GET", "HEAD"):
            response = server.raw(f"{method} {path} HTTP/1.1")
            if (
                response.status != 404
                or SECRET.encode() in response.body
                or (b"root:" in response.body)
            ):
                failures.append((method, path, response.status))
    assert not failures, failures


# -------------------------------------------------------------------- ETags on simple pages


@pytest.mark.parametrize("path", ["/simple/", "/simple/tlib/"])
def test_simple_pages_have_strong_etags(http: httpx.Client, path: str) -> None:
    etags = {}
    for accept in (JSON_V1, "text/html"):
        response = http.get(path, headers={"Accept": accept})
        etag = response.headers.get("etag")
        assert etag and not etag.startswith("W/"), etag
        assert re.fullmatch(r'"[^"]*"', etag), etag
        etags[accept] = etag
        again = http.get(path, headers={"Accept": accept, "If-None-Match": etag})
        assert again.status_code == 304
        assert again.content == b""
        assert again.headers.get("etag") == etag
        other = http.get(path, headers={"Accept": accept, "If-None-Match": '"nope"'})
        assert other.status_code == 200
    assert etags[JSON_V1] != etags["text/html"]  # two representations, two strong ETags


@pytest.mark.parametrize("path", ["/simple/", "/simple/tlib/"])
def test_simple_pages_compare_if_none_match_weakly(http: httpx.Client, path: str) -> None:
    """RFC 9110: If-None-Match uses weak comparison, and "*" matches a page that exists; the
    same rule as for files."""
    etag = http.get(path).headers["etag"]
    for sent in (f"W/{etag}", f'"other", {etag}', "*"):
        again = http.get(path, headers={"If-None-Match": sent})
        assert again.status_code == 304, sent
        assert again.headers["etag"] == etag


@pytest.mark.parametrize("path", ["/simple/", "/simple/tlib/"])
@pytest.mark.parametrize("accept", [JSON_V1, "text/html"])
def test_head_on_simple_pages(http: httpx.Client, path: str, accept: str) -> None:
    get = http.get(path, headers={"Accept": accept})
    head = http.head(path, headers={"Accept": accept})
    assert head.status_code == 200
    assert head.content == b""
    for name in ("content-type", "etag", "vary"):
        assert head.headers.get(name) == get.headers.get(name), name
    if "content-length" in head.headers:
        assert int(head.headers["content-length"]) == len(get.content)


# ------------------------------------------------------------------- pypiserver's /<p>/json


def test_legacy_json_shape(server: Server, corpus: Corpus, http: httpx.Client) -> None:
    response = http.get("/tpyreq/json")
    assert response.status_code == 200
    assert media_type(response) == "application/json"
    body = response.json()
    assert body["info"]["version"] == "2.0"
    assert set(body["releases"]) == {"1.0", "2.0"}
    for version, entries in body["releases"].items():
        (entry,) = entries
        filename = f"tpyreq-{version}-py3-none-any.whl"
        assert entry["url"] == packages_url(server, corpus, filename)
        assert http.get(entry["url"]).content == corpus.data(filename)


def test_legacy_json_lists_every_file(server: Server, corpus: Corpus, http: httpx.Client) -> None:
    body = http.get("/tlib/json").json()
    urls = {e["url"] for entries in body["releases"].values() for e in entries}
    assert urls == {packages_url(server, corpus, f) for f in corpus.project_files("tlib")}


def test_legacy_json_redirects_and_404(server: Server, http: httpx.Client) -> None:
    response = http.get("/Foo.Bar_baz/json")
    assert response.status_code == 301
    assert resolve(response, response.headers["location"]) == f"{server.url}/foo-bar-baz/json"
    assert http.get("/tnonexistent/json").status_code == 404


# ----------------------------------------------------------------------- PyPI's JSON API


def _check_release_entry(server: Server, corpus: Corpus, http: httpx.Client, entry: dict) -> None:
    filename = entry["filename"]
    assert filename in corpus.files
    assert entry["url"] == packages_url(server, corpus, filename)
    assert entry["digests"]["sha256"] == corpus.sha256(filename)
    assert entry["size"] == len(corpus.data(filename))
    assert PEP700_TIME.match(entry["upload_time_iso_8601"]), entry["upload_time_iso_8601"]
    # The corpus yanks by hand (`x.whl.yanked` beside the file); the server moved it into its
    # state directory at start.
    state = corpus.roots[0] / ".creamery" / "files" / corpus.relpath(filename) / "yanked"
    yank_file = state if state.exists() else Path(f"{corpus.files[filename]}.yanked")
    if yank_file.exists():
        assert entry["yanked"] is True
        assert (entry["yanked_reason"] or "") == yank_file.read_text()
    else:
        assert entry["yanked"] is False
        assert entry["yanked_reason"] is None
    assert "requires_python" in entry
    assert http.get(entry["url"]).content == corpus.data(filename)


def test_pypi_json_project(server: Server, corpus: Corpus, http: httpx.Client) -> None:
    response = http.get("/pypi/tapp/json")
    assert response.status_code == 200
    assert media_type(response) == "application/json"
    body = response.json()
    info = body["info"]
    assert info["name"] == "tapp"
    assert info["version"] == "1.0"
    assert info["summary"] == "Test app"
    assert info["requires_dist"] == ["tlib>=1.0"]
    assert info["requires_python"] in (None, "")
    assert set(body["releases"]) == {"1.0"}
    assert [e["filename"] for e in body["urls"]] == ["tapp-1.0-py3-none-any.whl"]
    for entry in [*body["urls"], *body["releases"]["1.0"]]:
        _check_release_entry(server, corpus, http, entry)


def test_pypi_json_releases_and_yanks(server: Server, corpus: Corpus, http: httpx.Client) -> None:
    body = http.get("/pypi/tlib/json").json()
    assert set(body["releases"]) == {"0.5", "0.9", "1.0", "2.0", "3.0"}
    filenames = {e["filename"] for entries in body["releases"].values() for e in entries}
    assert filenames == corpus.project_files("tlib")
    for version, entries in body["releases"].items():
        for entry in entries:
            assert entry["filename"].startswith(f"tlib-{version}")
            _check_release_entry(server, corpus, http, entry)
    yanked = {e["filename"]: e for e in body["releases"]["3.0"]}
    assert yanked["tlib-3.0-py3-none-any.whl"]["yanked_reason"] == "broken build"


def test_pypi_json_latest_version_skips_yanked(http: httpx.Client) -> None:
    """Like PyPI: info (and urls) describe the newest release that is not yanked."""
    body = http.get("/pypi/tlib/json").json()
    assert body["info"]["version"] == "2.0"
    assert {e["filename"] for e in body["urls"]} == {"tlib-2.0-py3-none-any.whl", "tlib-2.0.tar.gz"}


def test_pypi_json_requires_python(http: httpx.Client) -> None:
    body = http.get("/pypi/tpyreq/json").json()
    assert body["info"]["version"] == "2.0"
    assert body["info"]["requires_python"] == ">=4"
    assert body["info"]["summary"] == "Needs py4"
    entries = {e["filename"]: e for v in body["releases"].values() for e in v}
    assert entries["tpyreq-1.0-py3-none-any.whl"]["requires_python"] == ">=3.8,<4"
    assert entries["tpyreq-2.0-py3-none-any.whl"]["requires_python"] == ">=4"


def test_pypi_version_json(server: Server, corpus: Corpus, http: httpx.Client) -> None:
    response = http.get("/pypi/tpyreq/1.0/json")
    assert response.status_code == 200
    body = response.json()
    assert body["info"]["version"] == "1.0"
    assert body["info"]["requires_python"] == ">=3.8,<4"
    assert body["info"]["summary"] == "Needs py3"
    assert [e["filename"] for e in body["urls"]] == ["tpyreq-1.0-py3-none-any.whl"]
    for entry in body["urls"]:
        _check_release_entry(server, corpus, http, entry)
    assert http.get("/pypi/tpyreq/9.9/json").status_code == 404
    assert http.get("/pypi/tnonexistent/json").status_code == 404
    assert http.get("/pypi/tnonexistent/1.0/json").status_code == 404


def test_pypi_json_display_name(http: httpx.Client) -> None:
    body = http.get("/pypi/foo-bar-baz/json", follow_redirects=True).json()
    assert body["info"]["name"] == "Foo.Bar_baz"  # as METADATA spells it
    assert body["info"]["version"] == "0.2"
    response = http.get("/pypi/Foo.Bar_baz/json", follow_redirects=True)
    assert response.status_code == 200
    assert response.json()["info"]["version"] == "0.2"


@pytest.mark.parametrize("path", ["/tlib", "/tlib/"])
def test_project_root_redirects_to_simple_page(
    server: Server, http: httpx.Client, path: str
) -> None:
    response = http.get(path)
    assert response.status_code in (301, 302, 303, 307, 308)
    assert resolve(response, response.headers["location"]) == f"{server.url}/simple/tlib/"


# ------------------------------------------------------------------------- XML-RPC search


@pytest.mark.parametrize("endpoint", ["/RPC2", "/pypi", "/"])
def test_xmlrpc_search_by_name(server: Server, endpoint: str) -> None:
    proxy = xmlrpc.client.ServerProxy(server.url + endpoint)
    results = proxy.search({"name": "tli"})
    assert [r["name"] for r in results] == ["tlib"]  # one entry per project
    (entry,) = results
    assert entry["version"] in {"0.5", "0.9", "1.0", "2.0", "3.0"}
    assert entry["summary"] == "Test library"


def test_xmlrpc_search_with_a_plain_string(server: Server, http: httpx.Client) -> None:
    """pypiserver answers `search('tli')` and its test suite's bare `<string>` body."""
    proxy = xmlrpc.client.ServerProxy(server.url + "/RPC2")
    assert [r["name"] for r in proxy.search("tli")] == ["tlib"]
    bare = b"<xml><methodName>search</methodName><string>tli</string></xml>"
    response = http.post("/RPC2", content=bare, headers={"Content-Type": "text/xml"})
    assert response.status_code == 200
    assert [r["name"] for r in xmlrpc.client.loads(response.content)[0][0]] == ["tlib"]


def test_xmlrpc_search_by_summary(server: Server) -> None:
    proxy = xmlrpc.client.ServerProxy(server.url + "/RPC2")
    results = proxy.search({"summary": "zebra"})
    assert [(r["name"], r["version"], r["summary"]) for r in results] == [
        ("tother", "1.0", "A zebra among packages")
    ]


def test_xmlrpc_search_without_match(server: Server) -> None:
    proxy = xmlrpc.client.ServerProxy(server.url + "/RPC2")
    assert proxy.search({"name": "no-such-thing-anywhere"}) == []


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<methodCall><methodName>search</methodName><params><param><value><struct>
<member><name>name</name><value><string>&lol9;</string></value></member>
</struct></value></param></params></methodCall>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<methodCall><methodName>search</methodName><params><param><value><struct>
<member><name>name</name><value><string>&xxe;</string></value></member>
</struct></value></param></params></methodCall>"""


@pytest.mark.parametrize(
    "body",
    [BILLION_LAUGHS, EXTERNAL_ENTITY, b"<methodCall><methodName>search", b"not xml at all"],
    ids=["billion-laughs", "external-entity", "truncated", "garbage"],
)
@pytest.mark.parametrize("endpoint", ["/RPC2", "/pypi", "/"])
def test_xmlrpc_rejects_bad_xml(http: httpx.Client, endpoint: str, body: bytes) -> None:
    started = time.monotonic()
    response = http.post(endpoint, content=body, headers={"Content-Type": "text/xml"})
    assert response.status_code == 400
    assert b"root:" not in response.content
    assert time.monotonic() - started < 5


# ---------------------------------------------------------------- reverse proxies, prefixes


FORWARDED = {
    "X-Forwarded-Host": "pkgs.example.org",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Prefix": "/mirror",
}


@pytest.mark.parametrize("path", ["/pypi/tlib/json", "/pypi/tlib/2.0/json", "/tlib/json"])
def test_forwarded_headers_shape_absolute_urls(
    corpus: Corpus, http: httpx.Client, path: str
) -> None:
    body = http.get(path, headers=FORWARDED).json()
    urls = [e["url"] for entries in body.get("releases", {}).values() for e in entries]
    urls += [e["url"] for e in body.get("urls", [])]
    assert urls
    for url in urls:
        assert url.startswith("https://pkgs.example.org/mirror/packages/"), url
        relpath = url.removeprefix("https://pkgs.example.org/mirror/packages/")
        assert corpus.files[relpath.rsplit("/", 1)[-1]]


def test_forwarded_host_and_proto_without_prefix(http: httpx.Client) -> None:
    headers = {"X-Forwarded-Host": "pkgs.example.org", "X-Forwarded-Proto": "https"}
    body = http.get("/pypi/tapp/json", headers=headers).json()
    assert (
        body["urls"][0]["url"] == "https://pkgs.example.org/packages/sub/tapp-1.0-py3-none-any.whl"
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-Proto": "javascript:alert(document.domain)//"},
        {"X-Forwarded-Host": 'evil"><script>alert(1)</script>'},
        {"X-Forwarded-Host": "a b c", "X-Forwarded-Proto": "data:text/html,"},
    ],
    ids=["proto", "host-markup", "host-space"],
)
def test_forwarded_values_that_are_no_scheme_or_host_are_ignored(
    server: Server, http: httpx.Client, headers: dict[str, str]
) -> None:
    """A proxy that passes a client's X-Forwarded-* through must not let it choose the links
    of the welcome page (a `javascript:` href) or the JSON API's URLs for a shared cache."""
    own = f"http://127.0.0.1:{server.port}/"
    welcome = http.get("/", headers=headers).text
    assert f'href="{own}simple/"' in welcome and "javascript" not in welcome
    assert "<script>alert" not in welcome and "a b c" not in welcome
    body = http.get("/pypi/tapp/json", headers=headers).json()
    assert body["urls"][0]["url"].startswith(own + "packages/")


def test_simple_links_stay_relative_behind_a_proxy(http: httpx.Client) -> None:
    response = http.get("/simple/tlib/", headers={**FORWARDED, "Accept": "text/html"})
    for anchor in anchors(response).values():
        assert is_relative(str(anchor["href"]))


@pytest.fixture(scope="module")
def prefixed(corpus: Corpus) -> Iterator[Server]:
    with run_server(
        corpus.roots, "--server-base-url", "/prefix", ready_paths=("/prefix/health", "/health")
    ) as srv:
        yield srv


def test_prefix_serves_everything_under_it(prefixed: Server, corpus: Corpus) -> None:
    with prefixed.client() as http:
        assert http.get("/prefix/health").status_code == 200
        index = get_html(http, "/prefix/simple/")
        assert set(anchors(index)) == PROJECTS
        for name, anchor in anchors(index).items():
            assert resolve(index, str(anchor["href"])) == f"{prefixed.url}/prefix/simple/{name}/"
        page = get_html(http, "/prefix/simple/tlib/")
        for filename, anchor in anchors(page).items():
            url, _ = urldefrag(resolve(page, str(anchor["href"])))
            assert url == f"{prefixed.url}/prefix/packages/{corpus.relpath(filename)}"
            assert http.get(url).content == corpus.data(filename)
        response, body = get_json(http, "/prefix/simple/tlib/")
        for entry in body["files"]:
            url = urldefrag(resolve(response, entry["url"]))[0]
            assert url.startswith(f"{prefixed.url}/prefix/packages/")
        redirect = http.get("/prefix/simple/Foo.Bar_baz/")
        assert redirect.status_code == 301
        assert resolve(redirect, redirect.headers["location"]) == (
            f"{prefixed.url}/prefix/simple/foo-bar-baz/"
        )
        pypi = http.get("/prefix/pypi/tapp/json").json()
        assert pypi["urls"][0]["url"] == (
            f"{prefixed.url}/prefix/packages/sub/tapp-1.0-py3-none-any.whl"
        )
        assert http.get("/prefix/").status_code == 200
        proxy = xmlrpc.client.ServerProxy(prefixed.url + "/prefix/RPC2")
        assert [r["name"] for r in proxy.search({"name": "tapp"})] == ["tapp"]


# ---------------------------------------------------- welcome page, health, flags on a 2nd server


WELCOME = (
    "<html><body>\n"
    "<p id=url>{{URL}}</p><p id=version>{{VERSION}}</p><p id=n>{{NUMPKGS}}</p>\n"
    "<p id=packages>{{PACKAGES}}</p><p id=simple>{{SIMPLE}}</p>\n"
    "</body></html>\n"
)


@pytest.fixture(scope="module")
def configured(corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    welcome = tmp_path_factory.mktemp("welcome") / "welcome.html"
    welcome.write_text(WELCOME)
    with run_server(
        corpus.roots,
        "--disable-fallback",
        "--cache-control",
        "3600",
        "--health-endpoint",
        "/ping",
        "--welcome",
        str(welcome),
        ready_paths=("/ping",),
    ) as srv:
        yield srv


def test_default_welcome_page(http: httpx.Client) -> None:
    response = http.get("/")
    assert response.status_code == 200
    assert media_type(response) == "text/html"
    assert response.text.strip()


def test_health(http: httpx.Client) -> None:
    response = http.get("/health")
    assert response.status_code == 200


def test_custom_health_endpoint(configured: Server) -> None:
    assert httpx.get(configured.url + "/ping").status_code == 200


def test_welcome_template_variables(configured: Server, corpus: Corpus) -> None:
    response = httpx.get(configured.url + "/")
    assert response.status_code == 200
    values = dict(re.findall(r"<p id=(\w+)>([^<]*)</p>", response.text))
    assert values["url"] == configured.url + "/"
    assert values["version"] == creamery.__version__
    signatures = sum(1 for p in corpus.files.values() if Path(f"{p}.asc").exists())
    # pypiserver counts every listed file, signatures included.
    assert int(values["n"]) in (len(corpus.files), len(corpus.files) + signatures)
    assert urljoin(values["url"], values["packages"]) == configured.url + "/packages/"
    assert urljoin(values["url"], values["simple"]) == configured.url + "/simple/"


def test_welcome_template_behind_a_proxy(configured: Server) -> None:
    response = httpx.get(configured.url + "/", headers=FORWARDED)
    values = dict(re.findall(r"<p id=(\w+)>([^<]*)</p>", response.text))
    assert values["url"] == "https://pkgs.example.org/mirror/"
    assert urljoin(values["url"], values["packages"]) == "https://pkgs.example.org/mirror/packages/"
    assert urljoin(values["url"], values["simple"]) == "https://pkgs.example.org/mirror/simple/"


def test_disable_fallback_gives_404(configured: Server) -> None:
    response = httpx.get(configured.url + "/simple/tnonexistent/")
    assert response.status_code == 404
    assert httpx.get(configured.url + "/simple/tlib/").status_code == 200


def test_cache_control_on_downloads(configured: Server, corpus: Corpus) -> None:
    filename = "tlib-1.0.tar.gz"
    response = httpx.get(f"{configured.url}/packages/{corpus.relpath(filename)}")
    assert response.status_code == 200
    assert response.headers.get("cache-control") == "public, max-age=3600"
    head = httpx.head(f"{configured.url}/packages/{corpus.relpath(filename)}")
    assert head.headers.get("cache-control") == "public, max-age=3600"


def test_no_cache_control_by_default(server: Server, corpus: Corpus, http: httpx.Client) -> None:
    response = http.get(packages_url(server, corpus, "tlib-1.0.tar.gz"))
    assert "max-age" not in response.headers.get("cache-control", "")


# ------------------------------------------------------ the index follows the file system


APPEAR_TIMEOUT = 5.0
CONFIRMATIONS = 8  # fresh connections in a row, so that every worker is asked


def _fresh_get(url: str, **kwargs) -> httpx.Response:
    """A request on its own connection (another worker may answer it)."""
    return httpx.get(url, timeout=5.0, **kwargs)


def _listing(live: Server, project: str) -> dict[str, str]:
    """filename -> absolute download URL (with fragment) on /simple/<project>/, {} if unknown."""
    response = _fresh_get(f"{live.url}/simple/{project}/", headers={"Accept": "text/html"})
    if response.status_code != 200:
        return {}
    return {name: resolve(response, str(a["href"])) for name, a in anchors(response).items()}


def _wait_until(check, what: str) -> float:
    """Poll *check* until it holds CONFIRMATIONS times in a row; return the seconds it took."""
    started = time.monotonic()
    streak = 0
    while time.monotonic() - started < APPEAR_TIMEOUT + 5:
        if check():
            streak += 1
            if streak >= CONFIRMATIONS:
                elapsed = time.monotonic() - started
                assert elapsed < APPEAR_TIMEOUT + 2, f"{what} took {elapsed:.1f} s"
                return elapsed
        else:
            streak = 0
            time.sleep(0.05)
    pytest.fail(f"{what}: not seen within {APPEAR_TIMEOUT} s")


@pytest.fixture(scope="module", params=[1, 2], ids=["workers1", "workers2"])
def live(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp(f"live-{request.param}")
    make_wheel(root, "tlivedel", "1.0")
    make_wheel(root, "tlivedel", "2.0")
    make_wheel(root, "tlivemv", "1.0")
    make_wheel(root, "tliveread", "1.0")
    make_wheel(root, "tlivechg", "1.0", summary="first build")
    make_wheel(root, "tliveside", "1.0")
    with run_server([root], "--workers", str(request.param)) as srv:
        _wait_until(
            lambda: _fresh_get(f"{srv.url}/simple/tliveread/").status_code == 200,
            "every worker ready",
        )
        yield srv


@pytest.fixture(scope="module")
def staging(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("staging")


def _appears_with_hash(live: Server, project: str, path: Path, relpath: str) -> bool:
    url = _listing(live, project).get(path.name)
    if url is None:
        return False
    base, fragment = urldefrag(url)
    digest = sha256(path.read_bytes())
    return base == f"{live.url}/packages/{relpath}" and fragment == f"sha256={digest}"


def test_new_file_appears(live: Server, staging: Path, request: pytest.FixtureRequest) -> None:
    wheel = make_wheel(staging / f"add{live.port}", "tliveadd", "1.0")
    target = live.roots[0] / wheel.name
    shutil.copy(wheel, target)
    seconds = _wait_until(
        lambda: _appears_with_hash(live, "tliveadd", target, wheel.name), "new wheel"
    )
    request.node.user_properties.append(("seconds_until_listed", round(seconds, 3)))
    assert _fresh_get(f"{live.url}/packages/{wheel.name}").content == wheel.read_bytes()
    index = _fresh_get(f"{live.url}/simple/", headers={"Accept": "text/html"})
    assert "tliveadd" in anchors(index)


def test_new_file_in_new_subdirectory_appears(
    live: Server, staging: Path, request: pytest.FixtureRequest
) -> None:
    wheel = make_wheel(staging / f"sub{live.port}", "tlivesub", "1.0")
    folder = live.roots[0] / "newsub" / "deeper"
    folder.mkdir(parents=True)
    target = folder / wheel.name
    shutil.copy(wheel, target)
    relpath = f"newsub/deeper/{wheel.name}"
    seconds = _wait_until(
        lambda: _appears_with_hash(live, "tlivesub", target, relpath), "wheel in new subdirectory"
    )
    request.node.user_properties.append(("seconds_until_listed", round(seconds, 3)))
    assert _fresh_get(f"{live.url}/packages/{relpath}").content == wheel.read_bytes()


def test_deleted_file_disappears(live: Server) -> None:
    root = live.roots[0]
    assert set(_listing(live, "tlivedel")) == {
        "tlivedel-1.0-py3-none-any.whl",
        "tlivedel-2.0-py3-none-any.whl",
    }
    (root / "tlivedel-2.0-py3-none-any.whl").unlink()
    _wait_until(
        lambda: set(_listing(live, "tlivedel")) == {"tlivedel-1.0-py3-none-any.whl"},
        "deletion",
    )
    response = _fresh_get(f"{live.url}/packages/tlivedel-2.0-py3-none-any.whl")
    assert response.status_code == 404
    body = _fresh_get(f"{live.url}/pypi/tlivedel/json").json()
    assert set(body["releases"]) == {"1.0"}
    (root / "tlivedel-1.0-py3-none-any.whl").unlink()
    _wait_until(
        lambda: _fresh_get(f"{live.url}/simple/tlivedel/").status_code == 303,
        "last file of a project deleted",
    )


def test_moved_file_follows(live: Server) -> None:
    root = live.roots[0]
    name = "tlivemv-1.0-py3-none-any.whl"
    data = (root / name).read_bytes()
    (root / "moved").mkdir()
    os.rename(root / name, root / "moved" / name)
    _wait_until(
        lambda: (
            urldefrag(_listing(live, "tlivemv").get(name, ""))[0]
            == f"{live.url}/packages/moved/{name}"
        ),
        "move into a subdirectory",
    )
    assert _fresh_get(f"{live.url}/packages/moved/{name}").content == data
    assert _fresh_get(f"{live.url}/packages/{name}").status_code == 404
    renamed = "tlivemv-1.1-py3-none-any.whl"  # a rename changes the version
    os.rename(root / "moved" / name, root / "moved" / renamed)
    _wait_until(lambda: set(_listing(live, "tlivemv")) == {renamed}, "rename")


def test_replaced_file_is_rehashed(live: Server, staging: Path) -> None:
    """rsync-style replace (dot-temp file, then rename over): new hash and new METADATA."""
    root = live.roots[0]
    name = "tlivechg-1.0-py3-none-any.whl"
    assert _appears_with_hash(live, "tlivechg", root / name, name)
    rebuilt = make_wheel(staging / f"chg{live.port}", "tlivechg", "1.0", summary="second build")
    temp = root / f".{name}.Xy12Ab"
    shutil.copy(rebuilt, temp)
    os.replace(temp, root / name)
    _wait_until(lambda: _appears_with_hash(live, "tlivechg", root / name, name), "replaced file")
    url = urldefrag(_listing(live, "tlivechg")[name])[0]
    assert _fresh_get(url).content == rebuilt.read_bytes()
    assert b"Summary: second build" in _fresh_get(url + ".metadata").content
    body = _fresh_get(f"{live.url}/pypi/tlivechg/json").json()
    assert body["info"]["summary"] == "second build"


def test_sidecars_update_live(live: Server) -> None:
    """Yanking (a `.yanked` file put beside it by hand) and signing (`.asc`) show without a
    restart; the `.yanked` file is moved into the state directory, and `creamery unyank` undoes
    it (through the change journal)."""
    root = live.roots[0]
    name = "tliveside-1.0-py3-none-any.whl"
    page = f"{live.url}/simple/tliveside/"

    def attrs() -> dict[str, str | None]:
        response = _fresh_get(page, headers={"Accept": "text/html"})
        return anchors(response).get(name, {}) if response.status_code == 200 else {}

    assert "data-yanked" not in attrs()
    (root / f"{name}.yanked").write_text("bad release")
    _wait_until(lambda: attrs().get("data-yanked") == "bad release", "yank")
    _wait_until(lambda: not (root / f"{name}.yanked").exists(), "move into the state directory")
    assert (root / ".creamery" / "files" / name / "yanked").read_text() == "bad release"
    unyank = [sys.executable, "-m", "creamery", "unyank", "tliveside", "1.0", str(root)]
    assert subprocess.run(unyank, capture_output=True, timeout=60).returncode == 0
    _wait_until(lambda: "data-yanked" not in attrs() and "href" in attrs(), "un-yank")
    (root / f"{name}.asc").write_text("-----BEGIN PGP SIGNATURE-----\n")
    _wait_until(lambda: attrs().get("data-gpg-sig") == "true", "signature")


def test_reads_do_not_invalidate_index(live: Server) -> None:
    """Downloads, metadata and API reads must not look like changes (e.g. inotify opens)."""
    page = f"{live.url}/simple/tliveread/"

    def etags() -> dict[str, str]:
        return {
            accept: _fresh_get(page, headers={"Accept": accept}).headers["etag"]
            for accept in (JSON_V1, "text/html")
        }

    before = etags()
    for _ in range(CONFIRMATIONS):  # every worker agrees before anything is read
        assert etags() == before
    urls = _listing(live, "tliveread")
    assert urls
    for _ in range(3):
        for url in urls.values():
            base = urldefrag(url)[0]
            assert _fresh_get(base).status_code == 200
            assert _fresh_get(base, headers={"Range": "bytes=0-3"}).status_code == 206
            _fresh_get(base + ".metadata")
        _fresh_get(f"{live.url}/pypi/tliveread/json")
        _fresh_get(f"{live.url}/tliveread/json")
        _fresh_get(f"{live.url}/packages/")
    time.sleep(1.5)  # longer than any sensible debounce of file-system events
    for _ in range(CONFIRMATIONS):
        assert etags() == before
        response = _fresh_get(page, headers={"Accept": JSON_V1, "If-None-Match": before[JSON_V1]})
        assert response.status_code == 304
