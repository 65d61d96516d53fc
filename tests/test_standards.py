"""The served simple API checked against the standards' texts, not against our renderer.

The validators below are written from the specifications (the simple repository API as
PEPs 503, 592, 629, 658, 691, 700 and 714 define it, now kept in the packaging specifications
at packaging.python.org/specifications/simple-repository-api/): each returns the list of
requirements a served document breaks. They are tested on documents that break them (so they
can fail), then run on a real `creamery run` server holding a wheel, an sdist, a yanked file
(with and without a reason), a signed file and a `Requires-Python` needing escaping.

PEP 740 (`provenance`) and PEP 792 (`project-status`) are checked where the key is present
(`provenance_problems`, `project_status_problems`); the tests for their features add the
presence checks.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from support.dists import make_sdist, make_wheel, sign, yank
from support.forms import upload
from support.servers import Server, run_server

JSON_V1 = "application/vnd.pypi.simple.v1+json"
HTML_V1 = "application/vnd.pypi.simple.v1+html"
HTTP = httpx.Client(timeout=30)

# ----------------------------------------------------------------------------- the rules

_API_VERSION = re.compile(r"[0-9]+\.[0-9]+", re.ASCII)  # PEP 629: Major.Minor
# PEP 700: yyyy-mm-ddThh:mm:ss.ffffffZ, the fraction optional and of up to 6 digits, UTC.
_UPLOAD_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z", re.ASCII)
_HEX = re.compile(r"[0-9a-f]+", re.ASCII)
_NORMALIZED = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*", re.ASCII)  # PEP 503's normalized form
_HASH_FRAGMENT = re.compile(r"([a-z0-9_]+)=([0-9a-f]+)", re.ASCII)
# PEP 792's four markers.
PROJECT_STATUSES = ("active", "archived", "quarantined", "deprecated")


def api_version_problems(meta: Any, minimum: tuple[int, int] = (1, 0)) -> list[str]:
    """PEP 629 / 691: `meta` is an object whose `api-version` is a Major.Minor string (major 1,
    the version this client understands), at least *minimum*."""
    if not isinstance(meta, dict):
        return ["meta is not an object"]
    version = meta.get("api-version")
    if not isinstance(version, str) or not _API_VERSION.fullmatch(version):
        return [f"meta.api-version {version!r} is not a Major.Minor string"]
    major, minor = (int(part) for part in version.split("."))
    if major != 1:
        return [f"api-version {version} has a major version this client does not know"]
    if (major, minor) < minimum:
        return [f"api-version {version} is older than {minimum[0]}.{minimum[1]}"]
    return []


def hashes_problems(hashes: Any, where: str) -> list[str]:
    """PEP 691: a dictionary (present even if empty) of lowercase hash names to hex digests."""
    if not isinstance(hashes, dict):
        return [f"{where} is not an object"]
    problems = []
    for name, digest in hashes.items():
        if not isinstance(name, str) or name != name.lower():
            problems.append(f"{where}: hash name {name!r} is not lowercase")
        if not isinstance(digest, str) or not _HEX.fullmatch(digest):
            problems.append(f"{where}: {name} digest {digest!r} is not hex")
    return problems


def provenance_problems(value: Any, where: str) -> list[str]:
    """PEP 740: `provenance`, where present, is null or a fully qualified URL (of a secure
    origin: https, or a loopback host such as this test's)."""
    if value is None:
        return []
    if not isinstance(value, str):
        return [f"{where}.provenance {value!r} is neither a string nor null"]
    return _absolute_url_problems(value, f"{where}.provenance")


def _absolute_url_problems(value: str, where: str) -> list[str]:
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        return [f"{where} {value!r} is not a fully qualified URL"]
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        return [f"{where} {value!r} is not of a secure origin"]
    return []


def project_status_problems(document: dict[str, Any]) -> list[str]:
    """PEP 792: `project-status`, where present, is an object whose `status` (if present) is
    one of the four markers and whose `reason` (if present) is a string; it needs API 1.4."""
    if "project-status" not in document:
        return []
    status = document["project-status"]
    if not isinstance(status, dict):
        return ["project-status is not an object"]
    problems = api_version_problems(document.get("meta"), minimum=(1, 4))
    if "status" in status and status["status"] not in PROJECT_STATUSES:
        problems.append(f"project-status.status {status['status']!r} is not a PEP 792 marker")
    if "reason" in status and not isinstance(status["reason"], str):
        problems.append(f"project-status.reason {status['reason']!r} is not a string")
    return problems


def file_problems(item: Any, versions: set[str] | None) -> list[str]:
    """PEP 691 (+ 592, 658/714, 700, 740) for one entry of a project's `files`."""
    if not isinstance(item, dict):
        return ["a file entry is not an object"]
    where = f"file {item.get('filename')!r}"
    problems = []
    for key in ("filename", "url"):
        if not isinstance(item.get(key), str) or not item[key]:
            problems.append(f"{where}: {key} is missing or not a string")
    if "hashes" not in item:
        problems.append(f"{where}: hashes is missing (it must be present, even if empty)")
    else:
        problems += hashes_problems(item["hashes"], f"{where}.hashes")
    if item.get("requires-python") is not None and not isinstance(item["requires-python"], str):
        problems.append(f"{where}: requires-python is not a string")
    for key in ("core-metadata", "dist-info-metadata"):  # PEP 658, renamed by PEP 714
        if key in item and not isinstance(item[key], bool):
            problems += hashes_problems(item[key], f"{where}.{key}")
    if "gpg-sig" in item and not isinstance(item["gpg-sig"], bool):
        problems.append(f"{where}: gpg-sig is not a boolean")
    if "yanked" in item:  # PEP 592: a boolean, or a non-empty reason
        yanked = item["yanked"]
        if not isinstance(yanked, bool) and not (isinstance(yanked, str) and yanked):
            problems.append(f"{where}: yanked {yanked!r} is neither a boolean nor a reason")
    if versions is not None:  # PEP 700
        size = item.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            problems.append(f"{where}: size {size!r} is not an integer number of bytes")
        if "upload-time" in item and not (
            isinstance(item["upload-time"], str) and _UPLOAD_TIME.fullmatch(item["upload-time"])
        ):
            problems.append(f"{where}: upload-time {item['upload-time']!r} is not PEP 700's form")
    if "provenance" in item:
        problems += provenance_problems(item["provenance"], where)
    return problems


def project_problems(document: Any, project: str) -> list[str]:
    """PEP 691 (+ 629, 700, 792) for a project's JSON page."""
    if not isinstance(document, dict):
        return ["the response is not a JSON object"]
    problems = api_version_problems(document.get("meta"))
    if document.get("name") != project or not _NORMALIZED.fullmatch(str(document.get("name"))):
        problems.append(f"name {document.get('name')!r} is not the normalized name {project!r}")
    files = document.get("files")
    if not isinstance(files, list):
        return [*problems, "files is not a list"]
    versions = None
    meta = document.get("meta")
    if isinstance(meta, dict) and not api_version_problems(meta, minimum=(1, 1)):
        raw = document.get("versions")  # PEP 700: mandatory from 1.1
        if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
            problems.append("versions is missing or not a list of strings")
            raw = []
        if len(set(raw)) != len(raw):
            problems.append("versions has duplicates")
        versions = set(raw)
    for item in files:
        problems += file_problems(item, versions)
    problems += project_status_problems(document)
    return problems


def root_problems(document: Any) -> list[str]:
    """PEP 691's project list: `meta` and `projects`, each project an object with a `name`."""
    if not isinstance(document, dict):
        return ["the response is not a JSON object"]
    problems = api_version_problems(document.get("meta"))
    projects = document.get("projects")
    if not isinstance(projects, list):
        return [*problems, "projects is not a list"]
    for entry in projects:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            problems.append(f"project entry {entry!r} has no name string")
    return problems


class Anchors(HTMLParser):
    """The anchors and `<meta>` tags of an HTML page, attributes unescaped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[tuple[dict[str, str | None], str]] = []
        self.meta: dict[str, str | None] = {}
        self._open: dict[str, str | None] | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._open, self._text = dict(attrs), ""
        elif tag == "meta":
            values = dict(attrs)
            if values.get("name"):
                self.meta[str(values["name"])] = values.get("content")

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open is not None:
            self.anchors.append((self._open, self._text))
            self._open = None


def parse_html(text: str) -> Anchors:
    parser = Anchors()
    parser.feed(text)
    parser.close()
    return parser


def html_page_problems(text: str, page_url: str) -> list[str]:
    """PEP 503 (+ 592, 629, 658/714, 740, 792) for a project's HTML page."""
    problems = []
    if not text.lstrip().lower().startswith("<!doctype html>"):
        problems.append("the page is not an HTML5 document (no <!DOCTYPE html>)")
    page = parse_html(text)
    version = page.meta.get("pypi:repository-version")
    if version is not None and not _API_VERSION.fullmatch(version):
        problems.append(f"pypi:repository-version {version!r} is not Major.Minor")
    for attrs, label in page.anchors:
        href = attrs.get("href") or ""
        path = urlsplit(urljoin(page_url, href)).path
        if path.rsplit("/", 1)[-1] != label:
            problems.append(f"anchor text {label!r} is not the last part of its URL {href!r}")
        fragment = urlsplit(href).fragment
        if fragment and not _HASH_FRAGMENT.fullmatch(fragment):
            problems.append(f"{label}: URL fragment {fragment!r} is not <hashname>=<hex>")
        for key in ("data-core-metadata", "data-dist-info-metadata"):
            value = attrs.get(key, "true")
            if value != "true" and not _HASH_FRAGMENT.fullmatch(value or ""):
                problems.append(f"{label}: {key} {value!r} is neither true nor <hashname>=<hex>")
        if attrs.get("data-gpg-sig", "true") not in ("true", "false"):
            problems.append(f"{label}: data-gpg-sig {attrs['data-gpg-sig']!r} is not true/false")
        if "data-provenance" in attrs:
            provenance = attrs["data-provenance"] or ""
            problems += _absolute_url_problems(provenance, f"{label}: data-provenance")
    status = page.meta.get("pypi:project-status")
    if status is not None and status not in PROJECT_STATUSES:
        problems.append(f"pypi:project-status {status!r} is not a PEP 792 marker")
    return problems


# ----------------------------------------------------------------------------- the rules can fail

GOOD_FILE = {
    "filename": "demo-1.0-py3-none-any.whl",
    "url": "../../packages/demo-1.0-py3-none-any.whl",
    "hashes": {"sha256": "ab" * 32},
    "requires-python": ">=3.8",
    "core-metadata": {"sha256": "cd" * 32},
    "dist-info-metadata": {"sha256": "cd" * 32},
    "gpg-sig": False,
    "yanked": False,
    "size": 1234,
    "upload-time": "2021-03-04T05:06:07.123456Z",
}
GOOD_PROJECT = {"meta": {"api-version": "1.1"}, "name": "demo", "versions": ["1.0"]}


def project_with(**changes: Any) -> dict[str, Any]:
    item = {**GOOD_FILE, **{k.replace("_", "-"): v for k, v in changes.items()}}
    return {**GOOD_PROJECT, "files": [{k: v for k, v in item.items() if v is not ...}]}


def test_a_good_document_passes_the_rules() -> None:
    assert project_problems(project_with(), "demo") == []
    assert project_problems(project_with(upload_time="2021-03-04T05:06:07Z"), "demo") == []
    assert project_problems(project_with(yanked="broken"), "demo") == []
    assert project_problems(project_with(core_metadata=True, provenance=None), "demo") == []


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (project_with(hashes=...), "hashes is missing"),
        (project_with(hashes={"SHA256": "ab"}), "not lowercase"),
        (project_with(hashes={"sha256": "xyz"}), "is not hex"),
        (project_with(size=...), "size None"),
        (project_with(size="12"), "size '12'"),
        (project_with(size=True), "size True"),
        (project_with(upload_time="2021-03-04 05:06:07"), "not PEP 700's form"),
        (project_with(upload_time="2021-03-04T05:06:07+00:00"), "not PEP 700's form"),
        (project_with(upload_time="2021-03-04T05:06:07.1234567Z"), "not PEP 700's form"),
        (project_with(yanked=""), "neither a boolean nor a reason"),
        (project_with(yanked=1), "neither a boolean nor a reason"),
        (project_with(core_metadata="sha256=ab"), "core-metadata is not an object"),
        (project_with(gpg_sig="true"), "gpg-sig is not a boolean"),
        (project_with(provenance="../../p.provenance"), "not a fully qualified URL"),
        (project_with(provenance="http://example.com/p"), "not of a secure origin"),
        (project_with(provenance=7), "neither a string nor null"),
        ({**project_with(), "versions": ["1.0", "1.0"]}, "versions has duplicates"),
        ({**project_with(), "versions": None}, "versions is missing"),
        ({**project_with(), "name": "Demo"}, "not the normalized name"),
        ({**project_with(), "meta": {"api-version": 1.1}}, "not a Major.Minor string"),
        ({**project_with(), "meta": {"api-version": "2.0"}}, "major version"),
        ({**project_with(), "project-status": "archived"}, "project-status is not an object"),
        ({**project_with(), "project-status": {"status": "gone"}}, "not a PEP 792 marker"),
        ({**project_with(), "project-status": {"status": "archived"}}, "older than 1.4"),
        (
            {**project_with(), "meta": {"api-version": "1.4"}, "project-status": {"reason": 1}},
            "reason 1 is not a string",
        ),
        ([], "not a JSON object"),
    ],
)
def test_the_rules_catch_what_the_standards_forbid(document: Any, expected: str) -> None:
    problems = project_problems(document, "demo")
    assert any(expected in problem for problem in problems), problems


def test_the_html_rules_catch_what_the_standards_forbid() -> None:
    page = "https://example.com/simple/demo/"
    good = (
        '<!DOCTYPE html><html><body><a href="../../p/demo-1.0.tar.gz#sha256=ab">demo-1.0.tar.gz</a>'
    )
    assert html_page_problems(good, page) == []
    bad = (
        '<html><head><meta name="pypi:repository-version" content="one">'
        '<meta name="pypi:project-status" content="gone"></head><body>'
        '<a href="../../p/demo-1.0.tar.gz#md5">other.tar.gz</a>'
        '<a href="x/demo-2.0.tar.gz" data-core-metadata="yes" data-gpg-sig="1"'
        ' data-provenance="/relative">demo-2.0.tar.gz</a>'
    )
    problems = " | ".join(html_page_problems(bad, page))
    for expected in (
        "not an HTML5 document",
        "'one' is not Major.Minor",
        "not the last part of its URL",
        "'md5' is not <hashname>=<hex>",
        "data-core-metadata 'yes'",
        "data-gpg-sig '1'",
        "data-provenance '/relative' is not a fully qualified URL",
        "'gone' is not a PEP 792 marker",
    ):
        assert expected in problems, (expected, problems)


def test_the_root_rules_catch_what_the_standards_forbid() -> None:
    assert root_problems({"meta": {"api-version": "1.0"}, "projects": [{"name": "a"}]}) == []
    assert "projects is not a list" in root_problems({"meta": {"api-version": "1.0"}})
    assert root_problems({"meta": {}, "projects": [{"title": "a"}]}) == [
        "meta.api-version None is not a Major.Minor string",
        "project entry {'title': 'a'} has no name string",
    ]


# ----------------------------------------------------------------------------- a real server


CREAMERY = [sys.executable, "-m", "creamery"]
REASON = 'moved to "std-demo" <now>'  # quotes and brackets: escaped in the meta tag


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, Path]]]:
    root = tmp_path_factory.mktemp("standards") / "root"
    files = {
        path.name: path
        for path in (
            make_wheel(root, "std-demo", "1.0", requires_python=">=3.8,<4"),
            make_sdist(root, "std-demo", "1.0", requires_python=">=3.8,<4"),
            make_wheel(root, "std-demo", "0.9"),
            make_wheel(root, "std-demo", "0.8"),
            make_wheel(root, "std-demo", "2.0.post1"),
        )
    }
    yank(files["std_demo-0.9-py3-none-any.whl"], "broken build")
    yank(files["std_demo-0.8-py3-none-any.whl"])
    sign(files["std_demo-2.0.post1-py3-none-any.whl"])
    make_wheel(root, "std-archived", "1.0")
    subprocess.run(
        [*CREAMERY, "status", "std-archived", "archived", "--reason", REASON, str(root)],
        check=True,
        capture_output=True,
    )
    with run_server([root], "-P", ".", "-a", ".", "--disable-fallback") as server:
        yield server, files


def get_json(url: str) -> tuple[httpx.Response, Any]:
    response = HTTP.get(url, headers={"Accept": JSON_V1})
    assert response.status_code == 200, (url, response.status_code, response.text)
    return response, json.loads(response.content)


def test_the_json_project_page_meets_pep_691_700_592_658_714(
    served: tuple[Server, dict[str, Path]],
) -> None:
    server, files = served
    page_url = f"{server.url}/simple/std-demo/"
    response, document = get_json(page_url)
    assert response.headers["content-type"] == JSON_V1
    assert "accept" in response.headers["vary"].lower()
    assert project_problems(document, "std-demo") == []
    assert api_version_problems(document["meta"], minimum=(1, 1)) == []  # PEP 700's fields
    entries = {item["filename"]: item for item in document["files"]}
    assert set(entries) == set(files)
    for filename, item in entries.items():
        data = files[filename].read_bytes()
        assert item["size"] == len(data)  # PEP 700
        assert item["hashes"]["sha256"] == hashlib.sha256(data).hexdigest()
        assert any(item["filename"].startswith(f"std_demo-{v}") for v in document["versions"])
        moment = datetime.strptime(item["upload-time"], "%Y-%m-%dT%H:%M:%S.%fZ")
        assert moment.year >= 2020
        served_file = HTTP.get(urljoin(page_url, item["url"]))
        assert served_file.status_code == 200 and served_file.content == data
    assert set(document["versions"]) == {"0.8", "0.9", "1.0", "2.0.post1"}


def test_core_metadata_is_served_where_announced_with_its_hash(
    served: tuple[Server, dict[str, Path]],
) -> None:
    """PEP 658 / 714: a truthy `core-metadata` means `<url>.metadata` exists, with that hash;
    `dist-info-metadata` is the same value under its old name."""
    server, _files = served
    page_url = f"{server.url}/simple/std-demo/"
    _response, document = get_json(page_url)
    announced = 0
    for item in document["files"]:
        assert item.get("dist-info-metadata") == item.get("core-metadata")
        core = item.get("core-metadata")
        if not core:
            continue
        announced += 1
        metadata = HTTP.get(urljoin(page_url, item["url"]) + ".metadata")
        assert metadata.status_code == 200
        assert isinstance(core, dict)
        for name, digest in core.items():
            assert hashlib.new(name, metadata.content).hexdigest() == digest
    assert announced == 4  # the wheels


def test_yanked_files_are_marked_per_pep_592(served: tuple[Server, dict[str, Path]]) -> None:
    server, _files = served
    page_url = f"{server.url}/simple/std-demo/"
    _response, document = get_json(page_url)
    yanked = {item["filename"]: item.get("yanked", False) for item in document["files"]}
    assert yanked["std_demo-0.9-py3-none-any.whl"] == "broken build"
    assert yanked["std_demo-0.8-py3-none-any.whl"] is True
    assert yanked["std_demo-1.0-py3-none-any.whl"] is False
    anchors = {label: attrs for attrs, label in parse_html(HTTP.get(page_url).text).anchors}
    assert anchors["std_demo-0.9-py3-none-any.whl"]["data-yanked"] == "broken build"
    assert anchors["std_demo-0.8-py3-none-any.whl"]["data-yanked"] in ("", None)
    assert "data-yanked" not in anchors["std_demo-1.0-py3-none-any.whl"]


def test_the_html_project_page_meets_pep_503_and_agrees_with_the_json(
    served: tuple[Server, dict[str, Path]],
) -> None:
    server, _files = served
    page_url = f"{server.url}/simple/std-demo/"
    response = HTTP.get(page_url, headers={"Accept": HTML_V1})
    assert response.status_code == 200 and response.headers["content-type"].startswith(HTML_V1)
    assert html_page_problems(response.text, page_url) == []
    assert 'data-requires-python="&gt;=3.8,&lt;4"' in response.text  # escaped, as PEP 503 says
    page = parse_html(response.text)
    _json_response, document = get_json(page_url)
    assert page.meta["pypi:repository-version"] == document["meta"]["api-version"]  # PEP 629
    by_name = {item["filename"]: item for item in document["files"]}
    assert {label for _attrs, label in page.anchors} == set(by_name)
    for attrs, label in page.anchors:
        item = by_name[label]
        href = attrs["href"] or ""
        name, digest = urlsplit(href).fragment.split("=")
        assert item["hashes"][name] == digest
        assert urljoin(page_url, href.split("#")[0]) == urljoin(page_url, item["url"])
        assert attrs.get("data-requires-python") == item.get("requires-python")
        core = item.get("core-metadata")
        expected = None if not core else "sha256=" + core["sha256"]
        assert attrs.get("data-core-metadata") == expected
        assert attrs.get("data-dist-info-metadata") == expected
        assert ("data-gpg-sig" in attrs) == item["gpg-sig"]
    signed = by_name["std_demo-2.0.post1-py3-none-any.whl"]
    assert signed["gpg-sig"] is True
    signature = HTTP.get(urljoin(page_url, signed["url"]) + ".asc")
    assert signature.status_code == 200 and b"PGP SIGNATURE" in signature.content


@pytest.mark.parametrize(
    ("project", "expected"),
    [
        ("std-demo", {"status": "active"}),
        ("std-archived", {"status": "archived", "reason": REASON}),
    ],
)
def test_every_project_page_carries_its_pep_792_status(
    served: tuple[Server, dict[str, Path]], project: str, expected: dict[str, str]
) -> None:
    """PEP 792 (API 1.4): JSON `project-status` and the HTML meta tags, on every page."""
    server, _files = served
    page_url = f"{server.url}/simple/{project}/"
    _response, document = get_json(page_url)
    assert project_problems(document, project) == []
    assert document["project-status"] == expected
    assert api_version_problems(document["meta"], minimum=(1, 4)) == []
    text = HTTP.get(page_url, headers={"Accept": HTML_V1}).text
    assert html_page_problems(text, page_url) == []
    meta = parse_html(text).meta
    assert meta["pypi:project-status"] == expected["status"]
    assert meta.get("pypi:project-status-reason") == expected.get("reason")


ATTESTED = "pypi_attestations-0.0.19.tar.gz"  # with its attestation, made by pypi-attestations
ATTESTATIONS = Path(__file__).parent / "fixtures" / "attestations"


def test_a_file_with_provenance_meets_pep_740(served: tuple[Server, dict[str, Path]]) -> None:
    """PEP 740: `provenance` / `data-provenance` fully qualified, and the object at that URL."""
    server, _files = served
    data = (ATTESTATIONS / ATTESTED).read_bytes()
    attestation = (ATTESTATIONS / (ATTESTED + ".publish.attestation")).read_text()
    sent = upload(server, ATTESTED, data, ("attestations", f"[{attestation}]"))
    assert sent.status_code == 200, sent.text
    page_url = f"{server.url}/simple/pypi-attestations/"
    _response, document = get_json(page_url)
    assert project_problems(document, "pypi-attestations") == []
    (item,) = document["files"]
    assert item["provenance"].startswith(server.url + "/")
    text = HTTP.get(page_url, headers={"Accept": HTML_V1}).text
    assert html_page_problems(text, page_url) == []
    ((attrs, _label),) = parse_html(text).anchors
    assert attrs["data-provenance"] == item["provenance"]
    provenance = HTTP.get(item["provenance"]).json()
    assert provenance["version"] == 1
    (bundle,) = provenance["attestation_bundles"]
    assert bundle["publisher"]["kind"] == "GitHub"
    assert bundle["attestations"] == [json.loads(attestation)]


def test_the_project_list_meets_pep_503_and_691(served: tuple[Server, dict[str, Path]]) -> None:
    server, _files = served
    _response, document = get_json(f"{server.url}/simple/")
    assert root_problems(document) == []
    # The name is the display name or the normalized one: the specification leaves it open.
    names = {p["name"] for p in document["projects"]} - {"pypi-attestations"}  # uploaded above
    assert names in ({"std-archived", "std-demo"}, {"std_archived", "std_demo"})
    html = HTTP.get(f"{server.url}/simple/")
    assert html.text.lstrip().lower().startswith("<!doctype html>")
    anchors = parse_html(html.text).anchors
    assert len(anchors) == len(document["projects"])
    for attrs, label in anchors:
        assert HTTP.get(urljoin(f"{server.url}/simple/", attrs["href"] or "")).status_code == 200
        assert label


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("application/vnd.pypi.simple.latest+json", JSON_V1),
        ("application/vnd.pypi.simple.latest+html", HTML_V1),
        ("text/html", "text/html"),
        (f"{JSON_V1};q=0.2, {HTML_V1};q=0.9", HTML_V1),
        (f"{JSON_V1}, {HTML_V1};q=0.1", JSON_V1),
        ("*/*", None),  # any: the server's choice, one of the three
    ],
)
def test_content_negotiation_per_pep_691(
    served: tuple[Server, dict[str, Path]], accept: str, expected: str | None
) -> None:
    server, _files = served
    response = HTTP.get(f"{server.url}/simple/std-demo/", headers={"Accept": accept})
    assert response.status_code == 200
    content_type = response.headers["content-type"].split(";")[0]
    assert content_type in ((expected,) if expected else (JSON_V1, HTML_V1, "text/html"))
    assert "accept" in response.headers["vary"].lower()


def test_nothing_acceptable_is_406(served: tuple[Server, dict[str, Path]]) -> None:
    server, _files = served
    response = HTTP.get(
        f"{server.url}/simple/std-demo/", headers={"Accept": "application/vnd.pypi.simple.v2+json"}
    )
    assert response.status_code == 406


@pytest.mark.parametrize("path", ["/simple/STD_demo/", "/simple/std.demo/", "/simple/std-demo"])
def test_non_normalized_and_slashless_urls_redirect_per_pep_503(
    served: tuple[Server, dict[str, Path]], path: str
) -> None:
    server, _files = served
    response = HTTP.get(server.url + path)
    assert response.status_code in (301, 302, 307, 308)
    assert urlsplit(urljoin(server.url + path, response.headers["location"])).path == (
        "/simple/std-demo/"
    )
