"""The one route table: every declared route is guarded by its action, nothing undeclared is
answered, paths the router can't mean are refused before routing, XML-RPC is `list` however it
is posted, the failed-login limit holds under concurrency, and every route works below a
mount prefix (ASGI root_path, WSGI SCRIPT_NAME, --server-base-url, X-Forwarded-Prefix).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from passlib.hash import sha256_crypt
from support.clients import BIN, clean_env, describe
from support.dists import make_wheel
from support.servers import Server, free_port, run_server, started

import creamery
from creamery.catalog.auth import FailureLimiter
from creamery.core.config import RESERVED_PREFIXES, ConfigError, parse_health_endpoint
from creamery.http.routing import (
    READ,
    Action,
    Route,
    RouteTable,
    WrongMethod,
    bad_path,
    relative_path,
)

USER, PASSWORD = "alice", "s3cret"
ALL_ACTIONS = "update,download,list"
WHEEL = "demo-1.0-py3-none-any.whl"
XMLRPC_CALL = (
    b"<?xml version='1.0'?><methodCall><methodName>list_packages</methodName>"
    b"<params></params></methodCall>"
)
# hatch is not a test dependency: found on PATH or named by CREAMERY_TEST_HATCH.
HATCH = os.environ.get("CREAMERY_TEST_HATCH") or shutil.which("hatch")
# What follows each prefix route's prefix in a sample request.
REST = {
    "/packages/": WHEEL,
    "/upstream/": f"demo/{WHEEL}",
}


async def _noop(scope: Any, receive: Any, send: Any, params: Any) -> None:
    return None


# ----------------------------------------------------------------------------- pure logic


def test_a_route_must_say_its_action() -> None:
    with pytest.raises(TypeError):
        Route(READ, "/x", handler=_noop)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Route(READ, "/x", action="list", handler=_noop)  # type: ignore[arg-type]
    Route(READ, "/x", action=Action.PUBLIC, handler=_noop)


def test_matching_is_exact_and_denies_by_default() -> None:
    table = RouteTable(
        [
            Route(READ, "/simple/*", action=Action.LIST, handler=_noop),
            Route(READ, "/{project}/json", action=Action.LIST, handler=_noop),
            Route(("POST",), "/RPC2", action=Action.LIST, handler=_noop),
        ]
    )
    found = table.match("GET", "/demo/json", {})
    assert found is not None and not isinstance(found, WrongMethod)
    assert found.params == {"project": "demo"}
    # `$` would match before a final newline; fullmatch doesn't.
    assert table.match("GET", "/demo/json\n", {}) is None
    assert table.match("GET", "/a/b/json", {}) is None
    assert table.match("GET", "/elsewhere", {}) is None
    assert table.match("GET", "/simple/", {}) is None  # a prefix route needs a rest
    assert table.match("GET", "/RPC2", {}) == WrongMethod(("POST",))


def test_a_prefix_route_cannot_hide_an_exact_one() -> None:
    with pytest.raises(ValueError, match="hidden"):
        RouteTable(
            [
                Route(READ, "/simple/*", action=Action.LIST, handler=_noop),
                Route(READ, "/simple/health", action=Action.PUBLIC, handler=_noop),
            ]
        )


def test_the_health_endpoint_cannot_hide_below_a_prefix_route(base: Path) -> None:
    prefixes = [route.path[:-1] for route in guarded_table(base) if route.path.endswith("*")]
    assert set(prefixes) == set(RESERVED_PREFIXES)
    for prefix in prefixes:
        with pytest.raises(ConfigError, match=r"overlaps with existing routes|must look like"):
            parse_health_endpoint(prefix + "health")


@pytest.mark.parametrize(
    "path", ["/x\n", "/\n", "/a\rb", "/\x00", "/\x7f", "/\x85", "/\ufffd", "/\udcff", "/\t"]
)
def test_bad_paths(path: str) -> None:
    assert bad_path(path) is not None


@pytest.mark.parametrize("path", ["/", "/simple/demo/", "/packages/a b/c-1.0.zip", "/é/json"])
def test_good_paths(path: str) -> None:
    assert bad_path(path) is None


@pytest.mark.parametrize(
    ("path", "root_path", "relative"),
    [
        ("/priv/simple/x/", "/priv", "/simple/x/"),
        ("/priv", "/priv", "/"),
        ("/simple/x/", "/priv", "/simple/x/"),  # a server that leaves root_path out of path
        ("/private/x", "/priv", "/private/x"),  # not at a segment boundary
        ("/x", "", "/x"),
    ],
)
def test_relative_path(path: str, root_path: str, relative: str) -> None:
    assert relative_path({"path": path, "root_path": root_path}) == relative


def test_limiter_reservations_hold_the_limit_across_threads() -> None:
    limiter = FailureLimiter(max_failures=10, window=60)
    barrier = threading.Barrier(60)

    def attempt(_: int) -> bool:
        barrier.wait()
        return not isinstance(limiter.reserve("10.0.0.9"), int)

    with ThreadPoolExecutor(60) as pool:
        admitted = sum(pool.map(attempt, range(60)))
    assert admitted == 10


def test_limiter_release_gives_back_only_its_own_attempt() -> None:
    limiter = FailureLimiter(max_failures=2, window=60)
    failed = limiter.reserve("ip")
    assert not isinstance(failed, int)
    ok = limiter.reserve("ip")
    assert not isinstance(ok, int)
    assert isinstance(limiter.reserve("ip"), int)
    limiter.release(ok)
    assert not isinstance(limiter.reserve("ip"), int)  # the failure still counts: one left


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("route-table")
    make_wheel(base / "root", "demo", "1.0")
    (base / "htpasswd").write_text(f"{USER}:{sha256_crypt.using(rounds=5000).hash(PASSWORD)}\n")
    return base


GUARDED_ARGS = ("--metrics", "--mirror", "--fallback-url", "http://127.0.0.1:9/simple/")


@pytest.fixture(scope="module")
def guarded(base: Path) -> Iterator[Server]:
    with run_server(
        [base / "root"], "-P", str(base / "htpasswd"), "-a", ALL_ACTIONS, *GUARDED_ARGS
    ) as server:
        yield server


def table_of(base: Path, **kwargs: Any) -> tuple[Route, ...]:
    """The routes a server with these options declares (built in-process, not served)."""
    app = creamery.app(roots=[base / "root"], cache_dir=base / "cache", **kwargs)
    routes: tuple[Route, ...] = app.routes.routes
    return routes


def guarded_table(base: Path) -> tuple[Route, ...]:
    return table_of(
        base,
        password_file=base / "htpasswd",
        authenticate=ALL_ACTIONS,
        metrics=True,
        mirror=True,
        fallback_url="http://127.0.0.1:9/simple/",
    )


def sample(route: Route, method: str) -> httpx.Request:
    """A request this route answers: its parameters and prefix filled in, a body for POSTs."""
    path = route.path.replace("{project}", "demo").replace("{version}", "1.0")
    path = path.replace("{id}", "0123456789ab").replace("{user}", USER)
    path = path.replace("{name}", "demo")
    if path.endswith("*"):
        path = path[:-1] + REST.get(path[:-1], "demo/")
    headers: dict[str, str] = {}
    body = b""
    if method == "POST" and route.browser:  # a page's form (without its CSRF token)
        headers["content-type"] = "application/x-www-form-urlencoded"
    elif method == "POST" and route.action is Action.UPDATE:
        headers["content-type"] = "multipart/form-data; boundary=xyz"
        body = b"--xyz--\r\n"
    elif method == "POST" and route.action is Action.ACCOUNT:
        headers["content-type"] = "application/json"
        body = b"{}"
    elif method == "POST":
        headers["content-type"] = "text/xml"
        body = XMLRPC_CALL
    return httpx.Request(method, path, headers=headers, content=body)


def send(
    client: httpx.Client,
    request: httpx.Request,
    auth: tuple[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    all_headers = {**request.headers, **(headers or {})}
    all_headers.pop("host", None)
    all_headers.pop("content-length", None)
    built = client.build_request(
        request.method, request.url.path, headers=all_headers, content=request.content
    )
    return client.send(built, auth=auth)


def every_route_and_method(routes: tuple[Route, ...]) -> list[tuple[Route, str]]:
    return [(route, method) for route in routes for method in route.methods]


def assert_refused_anonymous(route: Route, response: httpx.Response, label: str) -> None:
    """An anonymous request a route needs credentials for: a 401 challenge, or for a page
    (a browser route) a 303 to the sign-in page."""
    if route.browser:
        assert response.status_code == 303, label
        assert "-/signin?next=" in response.headers["location"], label
        return
    assert response.status_code == 401, label
    assert response.headers["www-authenticate"] == 'Basic realm="pypi"', label


def assert_let_through(route: Route, method: str, response: httpx.Response, label: str) -> None:
    """Credentials the guard accepts: never refused by it (a page's form without its CSRF
    token is refused by the page itself, after the guard, with its own words)."""
    if route.browser and method == "POST" and response.status_code == 403:
        assert "the form has expired" in response.text, label
    else:
        assert response.status_code not in (401, 403, 405), label
    assert response.status_code < 500, label


# ----------------------------------------------------------------------------- issue 8 item 3


def test_every_route_is_guarded_by_its_action(guarded: Server, base: Path) -> None:
    """Walk the table: with -a update,download,list an anonymous request is refused (401;
    a browser page's is sent to sign in) unless the route is declared public, and an
    authenticated one is never refused."""
    routes = guarded_table(base)
    assert {route.action for route in routes} == set(Action)
    with guarded.client() as client:
        for route, method in every_route_and_method(routes):
            request = sample(route, method)
            anonymous = send(client, request)
            label = f"{method} {request.url.path} ({route.action.value})"
            if route.action is Action.PUBLIC:
                assert anonymous.status_code not in (401, 403, 405), label
            elif route.browser:  # a page for people: sent to sign in, and back here after
                assert anonymous.status_code == 303, label
                assert "-/signin?next=" in anonymous.headers["location"], label
            else:
                assert_refused_anonymous(route, anonymous, label)
            authenticated = send(client, request, auth=(USER, PASSWORD))
            assert_let_through(route, method, authenticated, label)


def test_account_routes_need_a_password_whatever_a_says(base: Path) -> None:
    """The account routes (a user's tokens, the audit log, owners) live below /-/ (their
    pages below /manage/) and need
    credentials even where -a guards only updates, or only downloads (uploads are open)."""
    routes = [r for r in guarded_table(base) if r.action is Action.ACCOUNT]
    assert routes and all(
        route.path.startswith("/manage/" if route.browser else "/-/") for route in routes
    )
    assert {m for route in routes for m in route.methods} >= {"GET", "POST", "DELETE"}
    for a in ("update", "download"):
        args = ("-P", str(base / "htpasswd"), "-a", a, "--disable-fallback")
        with run_server([base / "root"], *args) as server, server.client() as client:
            for route, method in every_route_and_method(tuple(routes)):
                request = sample(route, method)
                label = f"-a {a}: {method} {request.url.path}"
                anonymous = send(client, request)
                assert_refused_anonymous(route, anonymous, label)
                authenticated = send(client, request, auth=(USER, PASSWORD))
                assert_let_through(route, method, authenticated, label)


@pytest.mark.parametrize(
    "target",
    [
        "/demo/json%0A",
        "/pypi/demo/json%0A",
        "/%0A",
        "/%00",
        "/%0D%0ASet-Cookie:x=y",
        "/simple/demo%0D%0A/",
        "/packages/demo-1.0-py3-none-any.whl%0A",
        "/simple/%FF/",
        "/simple/%C0%AE/",
        "/%7F",
        "/%C2%85",
    ],
)
def test_control_characters_and_bad_bytes_are_refused_before_routing(
    guarded: Server, target: str
) -> None:
    response = guarded.raw(f"GET {target} HTTP/1.1")
    assert response.status == 400, (target, response.status, response.body)
    assert b"control character" in response.body
    assert b"demo" not in response.body


def test_undeclared_routes_are_not_answered(guarded: Server) -> None:
    with guarded.client() as client:
        for method, path in [("GET", "/a/b/c"), ("GET", "/pypi/demo/1.0/x/json"), ("PUT", "/")]:
            response = client.request(method, path, auth=(USER, PASSWORD))
            assert response.status_code in (404, 405), (method, path)
        refused = client.request("DELETE", "/simple/demo/")
        assert refused.status_code == 405
        assert "GET" in refused.headers["allow"]


# ----------------------------------------------------------------------------- issue 8 item 4


POST_PATHS = ["/", "/RPC2", "/RPC2/", "/pypi", "/pypi/", "/simple", "/simple/"]
CONTENT_TYPES = [
    "text/xml",
    "application/xml",
    "text/xml; charset=utf-8",
    "text/plain",
    None,
    "application/json",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
]


@pytest.fixture(scope="module")
def list_protected(base: Path) -> Iterator[Server]:
    with run_server([base / "root"], "-P", str(base / "htpasswd"), "-a", "download,list") as server:
        yield server


def test_xmlrpc_is_list_whatever_its_content_type_or_slash(list_protected: Server) -> None:
    with list_protected.client() as client:
        for path in POST_PATHS:
            for content_type in CONTENT_TYPES:
                headers = {"content-type": content_type} if content_type else {}
                label = f"POST {path} {content_type}"
                response = client.post(path, content=XMLRPC_CALL, headers=headers)
                assert b"demo" not in response.content, label
                assert b"methodResponse" not in response.content, label
                if path == "/" and not (content_type and "xml" in content_type):
                    # Not XML: the upload API (update is open here), which lists nothing.
                    assert response.status_code == 400, label
                else:
                    assert response.status_code == 401, label
                    authed = client.post(
                        path, content=XMLRPC_CALL, headers=headers, auth=(USER, PASSWORD)
                    )
                    assert authed.status_code == 200, label
                    assert b"<string>demo</string>" in authed.content, label


# ----------------------------------------------------------------------------- issue 8 item 5


def test_concurrent_wrong_passwords_are_checked_at_most_the_limit(base: Path) -> None:
    htpasswd = base / "htpasswd-slow"
    # A slow hash widens the window between the limit test and the check, as bcrypt does.
    slow = sha256_crypt.using(rounds=200_000).hash
    htpasswd.write_text(f"{USER}:{slow(PASSWORD)}\nother:{slow('other-pw')}\n")
    with run_server([base / "root"], "-P", str(htpasswd), "-a", "list") as server:
        url = f"{server.url}/simple/demo/"
        transport = httpx.AsyncHTTPTransport(local_address="127.0.0.7")

        async def attack() -> list[int]:
            async with httpx.AsyncClient(transport=transport, timeout=60) as client:
                tries = [client.get(url, auth=(USER, f"guess{i}")) for i in range(60)]
                return [r.status_code for r in await asyncio.gather(*tries)]

        statuses = asyncio.run(attack())
        assert statuses.count(403) <= 10, statuses
        assert statuses.count(403) + statuses.count(429) == 60, statuses
        other = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.8"), timeout=30)
        with other:
            assert other.get(url, auth=("other", "other-pw")).status_code == 200


# ----------------------------------------------------------------------------- issue 8 item 6


def test_metrics_need_list_and_the_welcome_page_hides_the_count(guarded: Server) -> None:
    with guarded.client() as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", auth=(USER, PASSWORD)).status_code == 200
        welcome = client.get("/")
        assert welcome.status_code == 200
        assert "package index." in welcome.text
        assert "serving" not in welcome.text


def test_the_welcome_page_counts_when_list_is_open(base: Path) -> None:
    with run_server([base / "root"], "-P", str(base / "htpasswd"), "-a", "update") as server:
        assert "serving 1 packages" in httpx.get(server.url + "/").text


# ----------------------------------------------------------------------------- issue 9 item 1


def open_table(base: Path) -> tuple[Route, ...]:
    return table_of(base, disable_fallback=True)


def asgi_get(app: Any, request: httpx.Request, root_path: str) -> tuple[int, str | None]:
    """One request straight into the ASGI app, with `path` including `root_path` (the spec)."""
    messages: list[dict[str, Any]] = []
    body = request.content

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def collect(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": "http",
        "path": root_path + request.url.path,
        "raw_path": (root_path + request.url.path).encode(),
        "root_path": root_path,
        "query_string": b"",
        "headers": [(b"host", b"idx"), *request.headers.raw],
        "client": ("127.0.0.1", 1),
        "server": ("idx", 80),
    }
    asyncio.run(app(scope, receive, collect))
    start = messages[0]
    headers = dict(start["headers"])
    location = headers.get(b"location")
    return start["status"], location.decode() if location else None


def key_of(request: httpx.Request) -> str:
    return f"{request.method} {request.url.path} {request.headers.get('content-type', '')}"


def answers(response: httpx.Response) -> tuple[int, str | None]:
    return response.status_code, response.headers.get("location")


@pytest.fixture(scope="module")
def expected(base: Path) -> dict[str, tuple[int, str | None]]:
    """Every route's answer with the app mounted at the root."""
    app = creamery.app(roots=[base / "root"], cache_dir=base / "cache-root", disable_fallback=True)
    result = {}
    for route, method in every_route_and_method(open_table(base)):
        if route.path == "/upstream/*":
            continue
        request = sample(route, method)
        result[key_of(request)] = asgi_get(app, request, "")
    assert result["GET /simple/demo/ "][0] == 200
    assert result[f"GET /packages/{WHEEL} "][0] == 200
    return result


def samples(base: Path) -> list[httpx.Request]:
    return [
        sample(route, method)
        for route, method in every_route_and_method(open_table(base))
        if route.path != "/upstream/*"
    ]


def test_every_route_under_an_asgi_root_path(base: Path, expected: dict) -> None:
    app = creamery.app(roots=[base / "root"], cache_dir=base / "cache-asgi", disable_fallback=True)
    for request in samples(base):
        key = key_of(request)
        assert asgi_get(app, request, "/priv") == expected[key], key


def test_every_route_under_uvicorns_root_path(base: Path, expected: dict, tmp_path: Path) -> None:
    """A real server that puts root_path into path, as the ASGI spec says (uvicorn --root-path,
    for a proxy that strips the prefix)."""
    (tmp_path / "mounted.py").write_text(
        "import creamery\n"
        f"app = creamery.app(roots=[{str(base / 'root')!r}], disable_fallback=True,"
        f" cache_dir={str(tmp_path / 'cache')!r})\n"
    )
    port = free_port()
    command = [BIN / "python3", "-m", "uvicorn", "--app-dir", tmp_path, "mounted:app"]
    command += ["--root-path", "/priv", "--port", port, "--log-level", "warning"]
    with started(command, port, tmp_path) as server, server.client() as client:
        for request in samples(base):
            key = key_of(request)
            assert answers(send(client, request)) == expected[key], key


def test_every_route_under_a_wsgi_script_name(base: Path, expected: dict) -> None:
    app = creamery.wsgi_app(
        roots=[base / "root"], cache_dir=base / "cache-wsgi", disable_fallback=True
    )
    transport = httpx.WSGITransport(app=app, script_name="/priv")
    # httpx puts the request's whole path in PATH_INFO: the part below SCRIPT_NAME, as a host does.
    with httpx.Client(transport=transport, base_url="http://idx") as client:
        for request in samples(base):
            key = key_of(request)
            response = send(client, request)
            assert answers(response) == expected[key], key


def test_every_route_under_a_server_base_url(base: Path, expected: dict) -> None:
    with (
        run_server(
            [base / "root"],
            "--disable-fallback",
            "--server-base-url",
            "/priv",
            ready_paths=["/priv/health"],
        ) as server,
        httpx.Client(base_url=server.url + "/priv", timeout=10) as client,
    ):
        for request in samples(base):
            key = key_of(request)
            response = send(client, request)
            assert answers(response) == expected[key], key


def test_every_route_behind_a_proxy_prefix(base: Path, expected: dict) -> None:
    with run_server([base / "root"], "--disable-fallback") as server, server.client() as client:
        for request in samples(base):
            key = key_of(request)
            response = send(client, request, headers={"x-forwarded-prefix": "/priv"})
            assert answers(response) == expected[key], key
        document = client.get("/pypi/demo/json", headers={"x-forwarded-prefix": "/priv"}).json()
        url = document["urls"][0]["url"]
        assert url == f"{server.url}/priv/packages/{WHEEL}"


# ----------------------------------------------------------------------------- issue 9 item 13


def test_devpi_simple_alias_for_hatch(guarded: Server) -> None:
    """hatch publish reads <upload URL>/+simple/<project>/ to skip files already there."""
    with guarded.client() as client:
        for upload_url in ("/", "/legacy/"):
            page = f"{upload_url}+simple/demo/"
            assert client.get(page).status_code == 401
            response = client.get(
                page, auth=(USER, PASSWORD), headers={"cache-control": "no-cache"}
            )
            assert response.status_code == 200, page
            assert f">{WHEEL}</a>" in response.text


@pytest.mark.skipif(HATCH is None, reason="hatch is not installed (CREAMERY_TEST_HATCH)")
def test_hatch_publish_skips_files_already_there(base: Path, tmp_path: Path) -> None:
    assert HATCH is not None
    root = tmp_path / "root"
    existing = make_wheel(root, "demo", "1.0")
    shutil.copy(existing, tmp_path / existing.name)
    args = ("-P", str(base / "htpasswd"), "-a", ALL_ACTIONS)
    with run_server([root], *args) as server:
        for number, upload_path in enumerate(["/", "/legacy/"], start=1):
            new = make_wheel(tmp_path / "dist", "demo", f"2.{number}")
            command = [HATCH, "publish", "-r", server.url + upload_path, "-u", USER]
            result = subprocess.run(
                [*command, "-a", PASSWORD, "-n", str(tmp_path / existing.name), str(new)],
                capture_output=True,
                text=True,
                env=clean_env(HOME=str(tmp_path)),
                cwd=tmp_path,
                timeout=120,
            )
            output = result.stdout + result.stderr
            assert result.returncode == 0, describe(result)
            assert f"{existing.name} ... already exists" in output, output
            assert f"{new.name} ... success" in output, output
            assert (root / new.name).exists()
