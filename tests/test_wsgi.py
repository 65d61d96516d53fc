"""`creamery.wsgi_app(...)` under real WSGI servers: ready when built, and composable.

pypiserver's users mount its app in other WSGI apps (paste's urlmap, as its README shows, or
bottle's mount); those call the mounted app and expect `start_response` to have been called when
it returns. Every test here serves over a real socket: wsgiref in a thread, or a gunicorn
process, driven by httpx, pip and twine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.clients import BIN, clean_env, describe, installed, pip_install, twine_upload
from support.dists import make_sdist, make_wheel
from support.servers import free_port, serve_wsgi

import creamery


@pytest.fixture(scope="module")
def stable(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stable")
    make_wheel(root, "tstable", "1.0", summary="Stable one")
    make_sdist(root, "tstable", "1.0", summary="Stable one")
    return root


@pytest.fixture(scope="module")
def unstable(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("unstable")
    make_wheel(root, "tunstable", "2.0b1", summary="Unstable one")
    return root


def app_kwargs(root: Path, cache: Path, **extra: object) -> dict[str, object]:
    return {
        "roots": [str(root)],
        "authenticate": ".",
        "password_file": ".",
        "disable_fallback": True,
        "cache_dir": str(cache),
        **extra,
    }


# ---------------------------------------------------------------- ready when built


def test_first_request_is_answered_like_any_other(stable: Path, tmp_path: Path) -> None:
    """WSGI hosts send no lifespan events: the index is loaded when wsgi_app() returns."""
    app = creamery.wsgi_app(**app_kwargs(stable, tmp_path / "cache"))
    with serve_wsgi(app) as url:
        health = httpx.get(url + "/health", timeout=10)
        assert (health.status_code, health.text) == (200, "Ok")
    fresh = creamery.wsgi_app(**app_kwargs(stable, tmp_path / "cache2"))
    with serve_wsgi(fresh) as url:
        page = httpx.get(url + "/simple/tstable/", timeout=10)
        assert page.status_code == 200
        assert "tstable-1.0-py3-none-any.whl" in page.text


def first_answer(url: str, deadline: float) -> httpx.Response:
    """The first response from a server still starting: connection refusals are retried."""
    while True:
        try:
            return httpx.get(url, timeout=60)
        except httpx.ConnectError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.mark.parametrize("preload", [False, True], ids=["per-worker", "preload"])
def test_gunicorn_sync_workers_answer_their_first_request(tmp_path: Path, preload: bool) -> None:
    """gunicorn's sync workers; --preload builds the app, loading the index, before forking:
    each worker then needs its own event loop thread and file watcher."""
    gunicorn = BIN / "gunicorn"
    if not gunicorn.exists():
        pytest.skip("gunicorn is not installed")
    root = tmp_path / "packages"
    make_wheel(root, "tstable", "1.0")
    port = free_port()
    spec = f"creamery:wsgi_app(roots=[{str(root)!r}], authenticate='.', password_file='.')"
    command = [str(gunicorn), "-w", "2", "-b", f"127.0.0.1:{port}", *(["--preload"] * preload)]
    env = clean_env(XDG_CACHE_HOME=str(tmp_path / "cache"))
    log = tmp_path / "gunicorn.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [*command, spec], stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        first = first_answer(base + "/health", time.monotonic() + 30)
        assert (first.status_code, first.text) == (200, "Ok"), log.read_text()
        make_wheel(tmp_path / "new", "tcopied", "1.0").rename(root / "tcopied-1.0-py3-none-any.whl")
        seen = 0
        deadline = time.monotonic() + 15
        while seen < 6:  # new connections, so both workers answer: none hangs, both watch
            page = httpx.get(base + "/simple/tcopied/", headers={"connection": "close"}, timeout=10)
            if page.status_code == 200:
                seen += 1
            else:
                seen = 0
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)


# ---------------------------------------------------------------- composition

PASTE_INI = """\
[composite:main]
use = egg:Paste#urlmap
/unstable/ = unstable
/ = stable

[app:stable]
use = egg:creamery#main
root = {stable}
authenticate = .
password_file = .
disable_fallback = true
cache_dir = {cache}/stable

[app:unstable]
use = egg:creamery#main
root = {stable}
    {unstable}
authenticate = .
password_file = .
disable_fallback = true
cache_dir = {cache}/unstable
"""


@pytest.fixture(scope="module")
def paste_site(stable: Path, unstable: Path, tmp_path_factory: pytest.TempPathFactory):
    """pypiserver's README example: stable packages at /, stable + unstable at /unstable/."""
    loadapp = pytest.importorskip("paste.deploy").loadapp
    base = tmp_path_factory.mktemp("paste")
    ini = base / "paste.ini"
    ini.write_text(PASTE_INI.format(stable=stable, unstable=unstable, cache=base / "cache"))
    with serve_wsgi(loadapp(f"config:{ini}")) as url:
        yield url


def test_paste_urlmap_at_the_root(paste_site: str, tmp_path: Path) -> None:
    with httpx.Client(base_url=paste_site, timeout=10) as http:
        assert http.get("/health").text == "Ok"
        assert "tstable" in http.get("/simple/").text
        assert "tunstable" not in http.get("/simple/").text
        listing = http.get("/packages/")
        assert listing.status_code == 200
        assert "tstable-1.0.tar.gz" in listing.text
        assert http.get("/simple/tstable/").status_code == 200
        wheel = http.get("/packages/tstable-1.0-py3-none-any.whl")
        assert wheel.status_code == 200 and wheel.content[:2] == b"PK"
    target = tmp_path / "target"
    result = pip_install(paste_site + "/simple/", target, tmp_path / "home", "tstable")
    assert result.returncode == 0, describe(result)
    assert installed(target) == {"tstable-1.0"}


def test_paste_urlmap_under_a_prefix(paste_site: str) -> None:
    """What works under SCRIPT_NAME on this branch: the pages Starlette routes."""
    with httpx.Client(base_url=paste_site + "/unstable", timeout=10) as http:
        assert http.get("/health").text == "Ok"
        listing = http.get("/packages/")
        assert listing.status_code == 200
        assert "tunstable-2.0b1-py3-none-any.whl" in listing.text
        assert "tstable-1.0.tar.gz" in listing.text
        welcome = http.get("/")
        assert welcome.status_code == 200
        assert f"{paste_site}/unstable/simple/" in welcome.text


def test_paste_urlmap_under_a_prefix_serves_the_simple_api(paste_site: str, tmp_path: Path) -> None:
    with httpx.Client(base_url=paste_site + "/unstable", timeout=10) as http:
        assert "tunstable" in http.get("/simple/").text
        assert http.get("/simple/tunstable/").status_code == 200
        wheel = http.get("/packages/tunstable-2.0b1-py3-none-any.whl")
        assert wheel.status_code == 200
    target = tmp_path / "target"
    index = paste_site + "/unstable/simple/"
    result = pip_install(index, target, tmp_path / "home", "--pre", "tunstable", "tstable")
    assert result.returncode == 0, describe(result)
    assert installed(target) == {"tunstable-2.0b1", "tstable-1.0"}


def test_twine_uploads_through_paste_urlmap(
    stable: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The request body reaches the mounted app; the upload is listed at once."""
    from paste.urlmap import URLMap

    root = tmp_path_factory.mktemp("uploads")
    mapping = URLMap()
    mapping["/"] = creamery.wsgi_app(**app_kwargs(root, tmp_path / "cache"))
    wheel = make_wheel(tmp_path / "dist", "tuploaded", "1.0")
    with serve_wsgi(mapping) as url:
        result = twine_upload(url + "/", tmp_path / "home", wheel)
        assert result.returncode == 0, describe(result)
        assert wheel.name in httpx.get(url + "/simple/tuploaded/", timeout=10).text
    assert (root / wheel.name).read_bytes() == wheel.read_bytes()


@pytest.fixture(scope="module")
def bottle_site(stable: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A bottle app of its own with creamery mounted at /priv/ (this was a 500 before)."""
    bottle = pytest.importorskip("bottle")
    cache = tmp_path_factory.mktemp("bottle-cache")
    outer = bottle.Bottle()
    outer.route("/", callback=lambda: "the outer app")
    outer.mount("/priv/", creamery.wsgi_app(**app_kwargs(stable, cache)))
    with serve_wsgi(outer) as url:
        yield url


def test_bottle_mount(bottle_site: str) -> None:
    with httpx.Client(base_url=bottle_site, timeout=10) as http:
        assert http.get("/").text == "the outer app"
        assert http.get("/priv/health").text == "Ok"
        listing = http.get("/priv/packages/")
        assert listing.status_code == 200, listing.text
        assert "tstable-1.0-py3-none-any.whl" in listing.text
        assert listing.headers["content-type"].startswith("text/html")
        head = http.head("/priv/packages/")
        assert head.status_code == 200 and head.content == b""
        missing = http.get("/priv/no/such/page")
        assert missing.status_code == 404


def test_bottle_mount_serves_the_simple_api(bottle_site: str, tmp_path: Path) -> None:
    with httpx.Client(base_url=bottle_site, timeout=10) as http:
        assert http.get("/priv/simple/tstable/").status_code == 200
        assert http.get("/priv/packages/tstable-1.0.tar.gz").status_code == 200
    target = tmp_path / "target"
    result = pip_install(bottle_site + "/priv/simple/", target, tmp_path / "home", "tstable")
    assert result.returncode == 0, describe(result)
    assert installed(target) == {"tstable-1.0"}


# ---------------------------------------------------------------- the adapter itself


def test_start_response_is_called_before_the_app_returns(stable: Path, tmp_path: Path) -> None:
    """What every composing framework relies on (PEP 3333 allows later, they don't)."""
    app = creamery.wsgi_app(**app_kwargs(stable, tmp_path / "cache"))
    calls: list[tuple[str, list[tuple[str, str]]]] = []
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/simple/tstable/",
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": None,
    }
    body = app(environ, lambda status, headers, exc_info=None: calls.append((status, headers)))
    assert [status for status, _ in calls] == ["200 OK"]
    try:
        assert b"tstable-1.0-py3-none-any.whl" in b"".join(body)
    finally:
        body.close()  # type: ignore[attr-defined]


def test_the_asgi_app_still_loads_at_lifespan_startup(stable: Path, tmp_path: Path) -> None:
    """creamery.app() stays lazy: ASGI servers with worker processes start it in each worker."""
    import asyncio

    app = creamery.app(**app_kwargs(stable, tmp_path / "cache"))
    assert not app.ready
    sent: list[dict[str, object]] = []
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> dict[str, object]:
        return next(messages)

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    asyncio.run(app({"type": "lifespan"}, receive, send))
    assert [m["type"] for m in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert app.ready and "tstable" in app.index.projects


def test_a_path_that_is_not_utf8_is_a_400_under_wsgi(stable: Path, tmp_path: Path) -> None:
    """a2wsgi decodes PATH_INFO as UTF-8 before creamery sees it: `%FF` was its 500."""
    app = creamery.wsgi_app(**app_kwargs(stable, tmp_path / "cache"))
    with serve_wsgi(app) as url, httpx.Client(base_url=url, timeout=10) as http:
        for path in ("/simple/%FF/", "/packages/%C0%AE", "/%FE"):
            response = http.get(path)
            assert response.status_code == 400, (path, response.text)
            assert response.text.strip() == "Bad Request: the path is not valid UTF-8"
            assert response.headers["x-content-type-options"] == "nosniff"
        assert http.get("/simple/tstable/").status_code == 200
