"""Fast in-process tests of the welcome page, /packages/, the JSON APIs and XML-RPC."""

from __future__ import annotations

import hashlib
import time
import warnings
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request
from support.dists import make_sdist, make_wheel, sign, yank

# Starlette 1.x warns at import that it wants httpx2 for its test client; httpx works.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2", category=UserWarning)
    from starlette.testclient import TestClient

import creamery
from creamery.catalog.facts import FactsCache
from creamery.catalog.index import Index
from creamery.core.config import ConfigError
from creamery.storage.local import LocalStorage
from creamery.web import json_api, pages
from creamery.web import xmlrpc as rpc_service
from creamery.web.app import Creamery


def make_app(root: Path, tmp_path: Path, **kwargs: object) -> Creamery:
    app: Creamery = creamery.app(
        roots=[root],
        authenticate=".",
        password_file=".",
        disable_fallback=True,
        cache_dir=tmp_path / "cache",
        **kwargs,
    )
    return app


def serve(app: Any) -> TestClient:
    return TestClient(app, base_url="http://testserver")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("root")
    make_wheel(root, "Foo_Bar", "1.0", summary="The foo project", requires_python=">=3.8")
    make_sdist(root, "Foo_Bar", "1.0", summary="The foo project")
    make_wheel(root, "Foo_Bar", "1.9", summary="The foo project")
    make_wheel(root, "Foo_Bar", "1.10", summary="The foo project")
    make_wheel(root, "Foo_Bar", "2.0b1", summary="Beta")
    yank(make_wheel(root, "Foo_Bar", "3.0", summary="Broken"), "bad build")
    make_wheel(root / "sub", "baz", "0.1", summary="Helper\x01 for quux")
    sign(make_sdist(root / "sub", "baz", "0.2", summary="Helper for quux"))
    return root


@pytest.fixture
def client(root: Path, tmp_path: Path) -> Iterator[TestClient]:
    app = make_app(root, tmp_path)
    with serve(app) as test_client:
        yield test_client


# ---------------------------------------------------------------- base_url


def request_with(headers: dict[str, str], root_path: str = "") -> Request:
    scope = {
        "type": "http",
        "method": "GET",
        "path": root_path + "/",
        "root_path": root_path,
        "scheme": "http",
        "server": ("10.0.0.1", 8080),
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    return Request(scope)


@pytest.mark.parametrize(
    ("headers", "root_path", "expected"),
    [
        ({"Host": "idx:8080"}, "", "http://idx:8080/"),
        ({}, "", "http://10.0.0.1:8080/"),
        ({"Host": "idx"}, "/pypi", "http://idx/pypi/"),
        (
            {"Host": "idx", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "a.org, b"},
            "",
            "https://a.org/",
        ),
        ({"Host": "idx", "X-Forwarded-Prefix": "/mirror/"}, "", "http://idx/mirror/"),
        ({"Host": "idx", "X-Forwarded-Prefix": "/mirror"}, "/pypi", "http://idx/mirror/pypi/"),
        ({"Host": "idx", "X-Forwarded-Prefix": "/pypi"}, "/pypi", "http://idx/pypi/"),
        ({"X-Forwarded-Host": "forward.ed/priv/"}, "", "http://forward.ed/priv/"),
        ({"Host": "[::1]:8080", "X-Forwarded-Proto": "HTTPS"}, "", "https://[::1]:8080/"),
        # Not a scheme, not a host: ignored, never copied into a URL (or the welcome's links).
        ({"Host": "idx", "X-Forwarded-Proto": "javascript:alert(1)//"}, "", "http://idx/"),
        ({"Host": "idx", "X-Forwarded-Host": 'a"><script>'}, "", "http://idx/"),
        ({"Host": "idx", "X-Forwarded-Host": "a b c"}, "", "http://idx/"),
        ({"Host": "a b", "X-Forwarded-Host": "x:port"}, "", "http://10.0.0.1:8080/"),
    ],
)
def test_base_url(headers: dict[str, str], root_path: str, expected: str) -> None:
    assert pages.base_url(request_with(headers, root_path)) == expected


# ---------------------------------------------------------------- welcome and /packages/


def test_bottle_templates_translate() -> None:
    assert pages.bottle_to_jinja("{{!URL}} {{ ! SIMPLE }} {{URL}}") == (
        "{{ (URL)|safe }} {{ (SIMPLE)|safe }} {{URL}}"
    )


def test_custom_welcome_escapes_unless_asked(root: Path, tmp_path: Path) -> None:
    app = make_app(root, tmp_path, welcome_msg="<p>{{URL}}|{{!URL}}|{{NUMPKGS}}|{{SIMPLE}}</p>")
    with serve(app) as test_client:
        response = test_client.get("/", headers={"X-Forwarded-Prefix": "/a'b"})
        refused = test_client.get("/", headers={"X-Forwarded-Host": "a<b"}).text
    assert (
        response.text
        == "<p>http://testserver/a%27b/|http://testserver/a%27b/|8|http://testserver/a%27b/simple/</p>"
    )
    assert refused == "<p>http://testserver/|http://testserver/|8|http://testserver/simple/</p>"


def test_welcome_file_and_bad_templates(root: Path, tmp_path: Path) -> None:
    page = tmp_path / "welcome.html"
    page.write_text("v={{VERSION}} p={{PACKAGES}}")
    config = make_app(root, tmp_path).config.with_updates(welcome_file=page)
    with serve(Creamery(config)) as test_client:
        assert (
            test_client.get("/").text == f"v={creamery.__version__} p=http://testserver/packages/"
        )
    with pytest.raises(ConfigError, match="not a valid template"):
        make_app(root, tmp_path, welcome_msg="{% if %}")
    with pytest.raises(ConfigError, match=r"welcome file '.*' can't be read"):
        Creamery(config.with_updates(welcome_file=tmp_path / "missing.html"))


def test_default_welcome_and_head(client: TestClient) -> None:
    response = client.get("/")
    assert "Welcome to creamery!" in response.text
    assert "pip install --index-url http://testserver/simple/ PACKAGE" in response.text
    assert "serving 8 packages" in response.text
    head = client.head("/")
    assert head.content == b""
    assert head.headers["content-length"] == str(len(response.content))


def listing_hrefs(response: Any) -> list[str]:
    return [line.split('"')[1] for line in response.text.splitlines() if "<a href" in line]


@pytest.mark.parametrize("endpoint", ["/simple", "/simple/", "/packages/", "/", "/RPC2"])
def test_health_endpoint_on_a_route_is_pypiservers_runtime_error(
    root: Path, tmp_path: Path, endpoint: str
) -> None:
    """pypiserver's app() raises RuntimeError("... overlaps with existing routes")."""
    with pytest.raises(RuntimeError, match="overlaps with existing routes") as raised:
        make_app(root, tmp_path, health_endpoint=endpoint)
    assert isinstance(raised.value, ConfigError)
    assert isinstance(raised.value, ValueError)  # what creamery's callers caught before


def test_packages_listing_order(client: TestClient) -> None:
    response = client.get("/packages/")
    hrefs = [href.partition("#")[0] for href in listing_hrefs(response)]
    assert hrefs == [
        "foo_bar-1.0-py3-none-any.whl",
        "foo_bar-1.0.tar.gz",
        "foo_bar-1.9-py3-none-any.whl",
        "foo_bar-1.10-py3-none-any.whl",
        "foo_bar-2.0b1-py3-none-any.whl",
        "foo_bar-3.0-py3-none-any.whl",
        "sub/baz-0.1-py3-none-any.whl",
        "sub/baz-0.2.tar.gz",
        "sub/baz-0.2.tar.gz.asc",
    ]
    again = client.get("/packages/", headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304


def test_packages_listing_links_carry_the_digest(client: TestClient, root: Path) -> None:
    """Like pypiserver's: `<relpath>#sha256=<digest>`; signatures have no fragment."""
    for href in listing_hrefs(client.get("/packages/")):
        relpath, _, fragment = href.partition("#")
        if relpath.endswith(".asc"):
            assert fragment == ""
            continue
        digest = hashlib.sha256((root / relpath).read_bytes()).hexdigest()
        assert fragment == f"sha256={digest}", relpath


@pytest.mark.parametrize(("hash_algo", "prefix"), [("md5", "#md5="), ("off", "")])
def test_packages_listing_follows_hash_algo(
    root: Path, tmp_path: Path, hash_algo: str, prefix: str
) -> None:
    with serve(make_app(root, tmp_path, hash_algo=hash_algo)) as test_client:
        hrefs = listing_hrefs(test_client.get("/packages/"))
    wheel = next(h for h in hrefs if h.startswith("foo_bar-1.0-py3-none-any.whl"))
    if not prefix:
        assert "#" not in wheel
        return
    digest = hashlib.md5((root / "foo_bar-1.0-py3-none-any.whl").read_bytes()).hexdigest()
    assert wheel.partition("#")[2] == f"md5={digest}"


def test_packages_listing_hashes_big_directories_in_the_background(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beyond the inline budget the listing answers at once and gains its digests later."""
    monkeypatch.setattr(pages, "INLINE_HASH_BYTES", 0)
    storage = LocalStorage((root,))
    index = Index(storage)
    index.load()
    digests = pages.ListingDigests(FactsCache(None, (), storage), "sha256")  # nothing hashed yet
    dists = index.all_distributions()
    assert digests.fragments(dists) == {}
    deadline = time.monotonic() + 10
    while digests.epoch == 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    fragments = digests.fragments(dists)
    assert fragments == {
        d.relpath: "#sha256=" + hashlib.sha256((root / d.relpath).read_bytes()).hexdigest()
        for d in dists
    }
    assert digests.epoch == 1  # nothing left to hash: no second background pass


def test_listing_digests_are_read_once_per_file_version(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A re-render after a change asks neither the disk nor SQLite for files it has seen."""
    app = make_app(root, tmp_path)
    app.start()
    digests = pages.ListingDigests(app.facts, "sha256")
    pages.render_listing(app.index, digests)
    asked: list[str] = []
    known = app.facts.known_digests
    monkeypatch.setattr(app.facts, "known_digests", lambda s: asked.append(s.key) or known(s))
    pages.render_listing(app.index, digests)
    assert asked == []


# ---------------------------------------------------------------- JSON


def test_legacy_json(client: TestClient) -> None:
    body = client.get("/foo-bar/json").json()
    assert body["info"]["version"] == "3.0"  # pypiserver: newest, whatever its state
    assert body["releases"]["1.0"][1]["url"] == "http://testserver/packages/foo_bar-1.0.tar.gz"
    redirect = client.get("/Foo_Bar/json", follow_redirects=False)
    assert (redirect.status_code, redirect.headers["location"]) == (301, "../foo-bar/json")


def test_pypi_json(client: TestClient) -> None:
    body = client.get("/pypi/foo-bar/json").json()
    info = body["info"]
    assert (info["name"], info["version"], info["yanked"]) == ("Foo_Bar", "1.10", False)
    assert list(body["releases"]) == ["1.0", "1.9", "1.10", "2.0b1", "3.0"]
    wheel, sdist = body["releases"]["1.0"]
    assert (wheel["packagetype"], wheel["python_version"]) == ("bdist_wheel", "py3")
    assert (sdist["packagetype"], sdist["python_version"]) == ("sdist", "source")
    assert wheel["requires_python"] == ">=3.8"
    assert set(wheel["digests"]) == {"sha256", "md5", "blake2b_256"}
    assert wheel["md5_digest"] == wheel["digests"]["md5"]
    assert body["releases"]["3.0"][0]["yanked_reason"] == "bad build"
    assert body["vulnerabilities"] == []


def test_pypi_version_json(client: TestClient) -> None:
    body = client.get("/pypi/foo-bar/3.0/json").json()
    assert "releases" not in body
    assert (body["info"]["yanked"], body["info"]["yanked_reason"]) == (True, "bad build")
    same = client.get("/pypi/foo-bar/1.0.0/json").json()  # PEP 440: 1.0.0 == 1.0
    assert [u["filename"] for u in same["urls"]] == [
        "foo_bar-1.0-py3-none-any.whl",
        "foo_bar-1.0.tar.gz",
    ]
    redirect = client.get("/pypi/Foo.Bar/1.0/json", follow_redirects=False)
    assert redirect.headers["location"] == "../../foo-bar/1.0/json"
    missing = client.get("/pypi/foo-bar/9.9/json")
    assert (missing.status_code, missing.json()) == (404, {"message": "Not Found"})
    assert client.get("/pypi/nope/json").status_code == 404


def test_json_head_has_no_body(client: TestClient) -> None:
    head = client.head("/pypi/baz/json")
    assert head.status_code == 200
    assert head.content == b""
    assert int(head.headers["content-length"]) == len(client.get("/pypi/baz/json").content)


def test_json_follows_changes(root: Path, tmp_path: Path) -> None:
    own = tmp_path / "own"
    make_wheel(own, "solo", "1.0")
    app = make_app(own, tmp_path)
    with serve(app) as test_client:
        assert test_client.get("/pypi/solo/json").json()["info"]["version"] == "1.0"
        added = make_wheel(own, "solo", "2.0")
        app.index.refresh([added.name])
        assert test_client.get("/pypi/solo/json").json()["info"]["version"] == "2.0"


def test_digests_follow_file_changes(tmp_path: Path) -> None:
    storage = LocalStorage((tmp_path,))
    digests = json_api.FileDigests(storage)
    first = digests.get(storage.put("f.bin", b"one", if_absent=True))
    second = digests.get(storage.put("f.bin", b"two", if_absent=False))  # same size and tick
    assert first["sha256"] == hashlib.sha256(b"one").hexdigest()
    assert second["sha256"] == hashlib.sha256(b"two").hexdigest()
    assert second["md5"] == hashlib.md5(b"two").hexdigest()


# ---------------------------------------------------------------- XML-RPC


def rpc(client: TestClient, path: str, method: str, *params: Any) -> Any:
    body = xmlrpc.client.dumps(params, method)
    response = client.post(path, content=body, headers={"Content-Type": "text/xml"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    return xmlrpc.client.loads(response.content)[0][0]


@pytest.mark.parametrize("path", ["/RPC2", "/pypi", "/", "/simple/", "/simple"])
def test_search_like_pip(client: TestClient, path: str) -> None:
    hits = rpc(client, path, "search", {"name": ["quux"], "summary": ["quux"]}, "or")
    assert hits == [
        {"name": "baz", "version": "0.2", "summary": "Helper for quux", "_pypi_ordering": 0}
    ]


@pytest.mark.parametrize(
    ("spec", "operator", "names"),
    [
        ({"name": "FOO"}, "and", ["Foo_Bar"]),
        ({"name": "foo.bar"}, "and", ["Foo_Bar"]),  # normalized spelling
        ({"name": "foo", "summary": "quux"}, "and", []),
        ({"name": "foo", "summary": "quux"}, "or", ["baz", "Foo_Bar"]),
        ({"name": ["nothing", "baz"]}, "and", ["baz"]),
        ({"version": "2.0b"}, "and", ["Foo_Bar"]),
        ({}, "and", []),
    ],
)
def test_search_semantics(
    client: TestClient, spec: dict[str, object], operator: str, names: list[str]
) -> None:
    hits = rpc(client, "/RPC2", "search", spec, operator)
    assert [h["name"] for h in hits] == names


@pytest.mark.parametrize("term", ["FOO", "foo.bar", "baz", "nothing"])
def test_search_with_a_plain_string_searches_names(client: TestClient, term: str) -> None:
    """pypiserver's form: `search('foo')`, the spec a string, not a struct."""
    assert rpc(client, "/RPC2", "search", term) == rpc(client, "/RPC2", "search", {"name": term})


def test_search_reports_latest_final_release(client: TestClient) -> None:
    (hit,) = rpc(client, "/RPC2", "search", {"name": "foo"})
    assert (hit["version"], hit["summary"]) == ("1.10", "The foo project")


def test_other_methods(client: TestClient) -> None:
    assert rpc(client, "/RPC2", "list_packages") == ["baz", "foo-bar"]
    assert rpc(client, "/RPC2", "package_releases", "Foo_Bar") == ["2.0b1", "1.10", "1.9", "1.0"]
    assert rpc(client, "/RPC2", "package_releases", "foo-bar", True)[0] == "3.0"
    assert rpc(client, "/RPC2", "package_releases", "nope") == []


@pytest.mark.parametrize(
    ("method", "params", "code"),
    [
        ("nosuch", (), -32601),
        ("search", (3,), -32602),
        ("search", (["x"],), -32602),
        ("search", ({"bogus": "x"},), -32602),
        ("search", ({"name": "x"}, "xor"), -32602),
        ("search", ({"name": 3},), -32602),
        ("package_releases", (), -32602),
    ],
)
def test_faults(client: TestClient, method: str, params: tuple[object, ...], code: int) -> None:
    with pytest.raises(xmlrpc.client.Fault) as fault:
        rpc(client, "/RPC2", method, *params)
    assert fault.value.faultCode == code


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'<!DOCTYPE x [<!ENTITY a "b">]><methodCall/>', "forbidden XML construct"),
        (b"<methodCall><methodName>search", "malformed XML"),
        (b"<methodCall><params/></methodCall>", "no methodName"),
        (b"<methodResponse><params><param><value>1</value></param></params></methodResponse>", ""),
        (b"<methodCall><methodName>x</methodName><params><param><value><int>z</int>", ""),
    ],
)
def test_bad_bodies(client: TestClient, body: bytes, reason: str) -> None:
    response = client.post("/RPC2", content=body, headers={"Content-Type": "text/xml"})
    assert response.status_code == 400
    assert response.text.startswith("Bad XML-RPC request: ")
    assert reason in response.text
    assert response.text.count("\n") == 1


def test_oversized_body(client: TestClient) -> None:
    response = client.post("/RPC2", content=b" " * (rpc_service.MAX_BODY + 1))
    assert response.status_code == 413


def test_results_are_valid_xml() -> None:
    assert rpc_service.clean({"s": ["a\x01b\x0c\ud800c\n"]}) == {"s": ["abc\n"]}


def test_xmlrpc_routes_only_take_post_and_are_list(root: Path, tmp_path: Path) -> None:
    app = make_app(root, tmp_path)
    for route in rpc_service.routes(app):
        assert route.methods == ("POST",)
        assert route.action.value == "list"
