"""`creamery update` (pypiserver's `-U`) against a real upstream: a `creamery run` process.

The upstream hosts newer releases of some projects; each test builds a package directory with
older ones and runs `python -m creamery update ...` in a subprocess. Failures that a creamery
upstream can't produce (bad hashes, HTML-only pages, slow answers) come from a small stdlib HTTP
server, and proxies from a small forwarding proxy, both real sockets.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import http.server
import json
import os
import pty
import select
import shlex
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from packaging.version import Version
from support.clients import clean_env, creamery, describe
from support.dists import make_sdist, make_wheel, yank
from support.servers import Server, free_port, serve_http

from creamery.cli.update import _bypassed, newest_release, read_ignorelist

JSON_PAGE = {"Accept": "application/vnd.pypi.simple.v1+json"}
PROXY_VARIABLES = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}


# ---------------------------------------------------------------- the upstream and local trees


@pytest.fixture(scope="module")
def upstream_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("upstream")
    make_wheel(root, "tlib", "1.0")
    make_wheel(root, "tlib", "1.5")
    make_wheel(root, "tlib", "2.0")
    make_sdist(root, "tlib", "2.0")
    yank(make_wheel(root, "tlib", "2.1"), "broken")  # newest stable, but yanked
    make_wheel(root, "tlib", "3.0b1")  # a pre-release above everything
    make_wheel(root / "deep", "tapp", "1.1")
    make_wheel(root, "Foo.Bar_baz", "0.3")
    make_wheel(root, "tpre", "1.1.dev1")  # only pre-releases are newer
    make_wheel(root, "tpre", "2.0rc1")
    make_wheel(root, "tcurrent", "1.0")
    return root


@pytest.fixture(scope="module")
def upstream(upstream_root: Path, run_server: Callable[..., contextlib.AbstractContextManager]):
    with run_server([upstream_root], "-a", ".", "-P", ".", "--disable-fallback") as server:
        yield server


@pytest.fixture
def index_url(upstream: Server) -> str:
    return upstream.url + "/simple/"


@pytest.fixture
def local(tmp_path: Path) -> Path:
    """Older releases: tapp in a subdirectory, a non-normalized name, one current project."""
    root = tmp_path / "packages"
    make_wheel(root, "tlib", "1.0")
    make_sdist(root, "tlib", "0.9")
    make_wheel(root / "sub", "tapp", "1.0")
    make_sdist(root, "Foo.Bar_baz", "0.2", filename_name="Foo.Bar_baz")
    make_wheel(root, "tpre", "1.0")
    make_wheel(root, "tcurrent", "1.0")
    return root


def update_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in clean_env().items() if k.lower() not in PROXY_VARIABLES}
    env.update(extra)
    return env


def update(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return creamery("update", *args, env=env or update_env())


def plan(index_url: str, *updates: tuple[str, str, str, Path]) -> list[str]:
    """The expected stdout of a dry run: (name, from, to, directory) per project."""
    lines = []
    for name, old, new, directory in updates:
        lines.append(f"# update {name} from {old} to {new}")
        pip = ["pip", "-q", "download", "--no-deps", "-i", index_url, "-d", str(directory)]
        lines.append(shlex.join([*pip, f"{name}=={new}"]))
    return lines


def default_plan(index_url: str, local: Path) -> list[str]:
    return plan(
        index_url,
        ("Foo.Bar_baz", "0.2", "0.3", local),
        ("tapp", "1.0", "1.1", local / "sub"),
        ("tlib", "1.0", "2.0", local),
    )


def tree(root: Path) -> dict[str, bytes]:
    """Every file below *root*, hidden ones included, by relative path."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in root.rglob("*")
        if path.is_file()
    }


# ---------------------------------------------------------------- listing updates


def test_prints_update_lines_and_pip_commands(local: Path, index_url: str) -> None:
    before = tree(local)
    result = update("--index-url", index_url, local)
    assert result.returncode == 0, result.stderr
    # Stable, not yanked, PEP 440 order; the current project and pre-releases are not listed.
    assert result.stdout.splitlines() == default_plan(index_url, local)
    assert "checking 5 projects" in result.stderr
    assert "3 of 5 projects have a newer release" in result.stderr
    assert tree(local) == before


def test_output_is_a_shell_script(local: Path, index_url: str) -> None:
    result = update("--index-url", index_url, local)
    commands = [shlex.split(line) for line in result.stdout.splitlines() if line[:1] != "#"]
    assert [command[-1] for command in commands] == ["Foo.Bar_baz==0.3", "tapp==1.1", "tlib==2.0"]
    assert all(command[:4] == ["pip", "-q", "download", "--no-deps"] for command in commands)


def test_allow_unstable_considers_pre_releases(local: Path, index_url: str) -> None:
    result = update("-u", "--index-url", index_url, local)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "# update tlib from 1.0 to 3.0b1" in lines
    assert "# update tpre from 1.0 to 2.0rc1" in lines
    assert "# update tapp from 1.0 to 1.1" in lines


def test_without_allow_unstable_pre_releases_are_ignored(local: Path, index_url: str) -> None:
    result = update("--index-url", index_url, local)
    assert "tpre" not in result.stdout
    assert "3.0b1" not in result.stdout


def test_ignorelist_matches_any_spelling(local: Path, index_url: str, tmp_path: Path) -> None:
    ignorelist = tmp_path / "ignore.txt"
    ignorelist.write_text("# projects we pin\nFOO-bar.BAZ   # odd spelling\n\n  TLib\n")
    for flag in ("--ignorelist-file", "--blacklist-file"):
        result = update(flag, ignorelist, "--index-url", index_url, local)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == plan(index_url, ("tapp", "1.0", "1.1", local / "sub"))
        assert "checking 3 projects" in result.stderr


def test_several_directories(local: Path, index_url: str, tmp_path: Path) -> None:
    other = tmp_path / "other"
    make_wheel(other, "tcurrent", "0.5")
    result = update("--index-url", index_url, local, other)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == default_plan(index_url, local)


def test_download_directory_goes_into_the_pip_command(
    local: Path, index_url: str, tmp_path: Path
) -> None:
    incoming = tmp_path / "incoming"
    result = update("-d", incoming, "--index-url", index_url, local)
    assert f"-d {incoming} tapp==1.1" in result.stdout
    assert not incoming.exists()  # only -x creates it


# ---------------------------------------------------------------- downloading (-x)


def upstream_bytes(upstream_root: Path, filename: str) -> bytes:
    (path,) = upstream_root.rglob(filename)
    return path.read_bytes()


def test_execute_downloads_verified_files_beside_the_old_ones(
    local: Path, index_url: str, upstream_root: Path
) -> None:
    before = tree(local)
    result = update("-x", "--index-url", index_url, local)
    assert result.returncode == 0, result.stderr
    state = {k for k in tree(local) if k.startswith(".creamery/")}
    new = {k: v for k, v in tree(local).items() if k not in before and k not in state}
    assert set(new) == {
        "foo_bar_baz-0.3-py3-none-any.whl",
        "sub/tapp-1.1-py3-none-any.whl",
        "tlib-2.0-py3-none-any.whl",
        "tlib-2.0.tar.gz",
    }
    umask = os.umask(0o022)
    os.umask(umask)
    for relpath, data in new.items():
        assert data == upstream_bytes(upstream_root, relpath.rpartition("/")[2])
        # As pip would leave it (not a temp file's 0600): a server run by another user reads it.
        assert stat.S_IMODE((local / relpath).stat().st_mode) == 0o666 & ~umask
    saved = sorted(line for line in result.stdout.splitlines() if line.startswith("# saved: "))
    assert saved == sorted(f"# saved: {local / relpath}" for relpath in new)
    # Spooled in the state directory's scratch area (nothing left there), published with the
    # digests computed while it arrived.
    assert not [k for k in state if k.startswith(".creamery/tmp/") and not k.endswith("/")]
    for relpath, data in new.items():
        facts = json.loads((local / ".creamery/files" / relpath / "facts").read_bytes())
        assert facts["digests"]["sha256"] == hashlib.sha256(data).hexdigest()
        assert facts["digests"]["md5"] == hashlib.md5(data).hexdigest()
    # The plan is printed as without -x, before the downloads.
    assert result.stdout.splitlines()[:6] == default_plan(index_url, local)

    again = update("-x", "--index-url", index_url, local)
    assert again.returncode == 0, again.stderr
    assert again.stdout == ""
    assert "0 of 5 projects have a newer release" in again.stderr


def test_execute_is_seen_by_a_running_server_at_once(
    local: Path, index_url: str, upstream_root: Path, run_server: Callable[..., Any]
) -> None:
    # No file-system events and no rescans: only the catalog's change log can tell the server.
    with run_server([local], "--disable-watch", "--rescan-interval", "0") as srv:
        page = httpx.get(f"{srv.url}/simple/tlib/", headers=JSON_PAGE).json()
        assert "tlib-2.0.tar.gz" not in {f["filename"] for f in page["files"]}

        result = update("-x", "--index-url", index_url, local)
        assert result.returncode == 0, result.stderr

        page = httpx.get(f"{srv.url}/simple/tlib/", headers=JSON_PAGE).json()
        hashes = {f["filename"]: f["hashes"]["sha256"] for f in page["files"]}
        for filename in ("tlib-2.0.tar.gz", "tlib-2.0-py3-none-any.whl"):
            expected = hashlib.sha256(upstream_bytes(upstream_root, filename)).hexdigest()
            assert hashes[filename] == expected
        tapp = httpx.get(f"{srv.url}/simple/tapp/", headers=JSON_PAGE).json()
        assert "tapp-1.1-py3-none-any.whl" in {f["filename"] for f in tapp["files"]}


def test_execute_into_download_directory(
    local: Path, index_url: str, upstream_root: Path, tmp_path: Path
) -> None:
    before = tree(local)
    incoming = tmp_path / "incoming" / "new"
    result = update("-x", "-u", "-d", incoming, "--index-url", index_url, local)
    assert result.returncode == 0, result.stderr
    assert tree(local) == before
    assert sorted(tree(incoming)) == [
        "foo_bar_baz-0.3-py3-none-any.whl",
        "tapp-1.1-py3-none-any.whl",
        "tlib-3.0b1-py3-none-any.whl",
        "tpre-2.0rc1-py3-none-any.whl",
    ]
    for filename, data in tree(incoming).items():
        assert data == upstream_bytes(upstream_root, filename)


def test_execute_keeps_files_already_present(
    local: Path, index_url: str, upstream_root: Path, tmp_path: Path
) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    (incoming / "tlib-2.0-py3-none-any.whl").write_bytes(b"mine")
    result = update("-x", "-d", incoming, "--index-url", index_url, local)
    assert result.returncode == 0, result.stderr
    assert f"# already present: {incoming / 'tlib-2.0-py3-none-any.whl'}" in result.stdout
    assert f"# saved: {incoming / 'tlib-2.0.tar.gz'}" in result.stdout
    assert (incoming / "tlib-2.0-py3-none-any.whl").read_bytes() == b"mine"
    assert (incoming / "tlib-2.0.tar.gz").read_bytes() == upstream_bytes(
        upstream_root, "tlib-2.0.tar.gz"
    )


# ---------------------------------------------------------------- failures


def test_project_not_on_the_index_is_reported_and_not_a_failure(
    local: Path, index_url: str, tmp_path: Path
) -> None:
    """Most projects of a private index are on no public one: that alone must not fail the run."""
    make_wheel(local, "tmissing", "1.0")
    incoming = tmp_path / "incoming"
    result = update("-x", "-d", incoming, "--index-url", index_url, local)
    assert result.returncode == 0, describe(result)
    note = (
        f"creamery update: tmissing: not on the index ({index_url}tmissing/ answered 404), skipped"
    )
    assert note in result.stderr.splitlines()
    assert "Traceback" not in result.stderr
    assert result.stdout.splitlines()[:6] == plan(
        index_url,
        ("Foo.Bar_baz", "0.2", "0.3", incoming),
        ("tapp", "1.0", "1.1", incoming),
        ("tlib", "1.0", "2.0", incoming),
    )
    assert len(tree(incoming)) == 4
    assert "3 of 6 projects have a newer release, 1 not on the index" in result.stderr
    assert "failed" not in result.stderr


def test_only_private_projects_exit_zero(tmp_path: Path, index_url: str) -> None:
    root = tmp_path / "private"
    make_wheel(root, "tprivate-one", "1.0")
    make_sdist(root, "tprivate-two", "2.0")
    result = update("--index-url", index_url, root)
    assert result.returncode == 0, describe(result)
    assert result.stdout == ""
    assert "0 of 2 projects have a newer release, 2 not on the index" in result.stderr


def test_a_real_failure_beside_a_missing_project_still_fails(local: Path, tmp_path: Path) -> None:
    """404 for the page is a skip; 404 for a file the page lists, or a 500, is a failure."""
    wheel = make_wheel(tmp_path / "files", "tlib", "2.0")
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    StaticIndex.routes = {
        "/simple/tlib/": project_page(
            "tlib",
            [{"filename": wheel.name, "url": "/gone/" + wheel.name, "hashes": {"sha256": sha}}],
        ),
        "/simple/tapp/": (500, "text/plain", b"boom", 0.0),
        "/simple/tpre/": project_page("tpre", []),
        "/simple/tcurrent/": project_page("tcurrent", []),
    }  # foo-bar-baz: 404, not on the index
    with serve_http(StaticIndex) as base:
        url = base + "/simple/"
        result = update("-x", "-d", tmp_path / "incoming", "--index-url", url, local)
    assert result.returncode == 1, describe(result)
    assert f"Foo.Bar_baz: not on the index ({url}foo-bar-baz/ answered 404), skipped" in (
        result.stderr
    )
    assert f"tapp: {url}tapp/ answered 500 Internal Server Error" in result.stderr
    assert f"tlib: {base}/gone/{wheel.name} answered 404 Not Found" in result.stderr
    assert "1 of 5 projects have a newer release, 1 not on the index, 2 failed" in result.stderr


class StaticIndex(http.server.BaseHTTPRequestHandler):
    """Answers from `routes`: path -> (status, content type, body, delay in seconds)."""

    routes: dict[str, tuple[int, str, bytes, float]] = {}

    def do_GET(self) -> None:
        status, content_type, body, delay = self.routes.get(
            self.path, (404, "text/plain", b"no", 0.0)
        )
        time.sleep(delay)
        with contextlib.suppress(OSError):  # the client may have given up
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def project_page(name: str, files: list[dict[str, object]]) -> tuple[int, str, bytes, float]:
    document = {"meta": {"api-version": "1.1"}, "name": name, "files": files}
    return 200, "application/vnd.pypi.simple.v1+json", json.dumps(document).encode(), 0.0


def test_bad_upstreams_are_reported(local: Path, tmp_path: Path) -> None:
    """A wrong sha256, an HTML-only page and a timeout each fail one project, nothing else."""
    wheel = make_wheel(tmp_path / "files", "tlib", "2.0")
    good = make_wheel(tmp_path / "files", "tapp", "1.1")
    sha = hashlib.sha256(good.read_bytes()).hexdigest()
    StaticIndex.routes = {
        "/simple/tlib/": project_page(
            "tlib",
            [
                {"filename": wheel.name, "url": "/f/" + wheel.name, "hashes": {"sha256": "0" * 64}},
                # A file name that tries to leave the directory is not a candidate.
                {"filename": "../tlib-9.0-py3-none-any.whl", "url": "/f/x", "hashes": {}},
            ],
        ),
        "/f/" + wheel.name: (200, "application/octet-stream", wheel.read_bytes(), 0.0),
        "/simple/tapp/": project_page(
            "tapp",
            [{"filename": good.name, "url": "../../f/" + good.name, "hashes": {"sha256": sha}}],
        ),
        "/f/" + good.name: (200, "application/octet-stream", good.read_bytes(), 0.0),
        "/simple/foo-bar-baz/": (200, "text/html", b"<html></html>", 0.0),
        "/simple/tpre/": project_page("tpre", []),
        "/simple/tcurrent/": (*project_page("tcurrent", [])[:3], 5.0),
    }
    incoming = tmp_path / "incoming"
    with serve_http(StaticIndex) as base:
        url = base + "/simple/"
        started = time.monotonic()
        result = update("-x", "-d", incoming, "--timeout", "0.5", "--index-url", url, local)
        assert time.monotonic() - started < 4.5
    assert result.returncode == 1
    errors = result.stderr
    assert f"tlib: {wheel.name}: sha256 mismatch (index: {'0' * 64}" in errors
    assert f"Foo.Bar_baz: {url}foo-bar-baz/ answered text/html, not PEP 691 JSON" in errors
    assert f"tcurrent: can't fetch {url}tcurrent/: timed out after 0.5 s" in errors
    assert "tlib==2.0" in result.stdout  # not 9.0
    assert sorted(tree(incoming)) == [good.name]  # nothing of the bad file, no temp file
    assert "4 failed" not in errors and "3 failed" in errors


# ---------------------------------------------------------------- proxies


class ForwardingProxy(http.server.BaseHTTPRequestHandler):
    """A plain HTTP forward proxy that notes the absolute URLs it was asked for."""

    seen: list[str] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        target = urlsplit(self.path)
        connection = http.client.HTTPConnection(target.hostname or "", target.port, timeout=10)
        skip = {"host", "connection", "proxy-connection", "keep-alive"}
        headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
        connection.request(
            "GET", target.path + (f"?{target.query}" if target.query else ""), None, headers
        )
        response = connection.getresponse()
        body = response.read()
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in {"content-length", "transfer-encoding", "connection"}:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        connection.close()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_http_proxy_is_used(local: Path, index_url: str, tmp_path: Path) -> None:
    ForwardingProxy.seen = []
    incoming = tmp_path / "incoming"
    with serve_http(ForwardingProxy) as proxy:
        env = update_env(HTTP_PROXY=proxy)
        result = update("-x", "-d", incoming, "--index-url", index_url, local, env=env)
    assert result.returncode == 0, result.stderr
    assert f"{index_url}tlib/" in ForwardingProxy.seen
    assert any(seen.endswith("/tlib-2.0.tar.gz") for seen in ForwardingProxy.seen)
    assert len(tree(incoming)) == 4


def test_unreachable_proxy_is_named_in_the_error(local: Path, index_url: str) -> None:
    proxy = f"http://127.0.0.1:{free_port()}"
    result = update("--index-url", index_url, local, env=update_env(http_proxy=proxy))
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"creamery update: tlib: can't fetch {index_url}tlib/ through proxy {proxy}: " in (
        result.stderr
    )
    assert "5 failed" in result.stderr


def test_no_proxy_bypasses_the_proxy(local: Path, index_url: str) -> None:
    proxy = f"http://127.0.0.1:{free_port()}"
    env = update_env(HTTP_PROXY=proxy, NO_PROXY="localhost,127.0.0.1")
    result = update("--index-url", index_url, local, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == default_plan(index_url, local)


# ---------------------------------------------------------------- command line


@pytest.mark.parametrize("flags", [["-U"], ["-Ux"]], ids=["dry-run", "execute"])
def test_legacy_pypi_server_dash_u(
    local: Path, index_url: str, upstream_root: Path, flags: list[str]
) -> None:
    pypi_server = Path(sys.executable).with_name("pypi-server")
    result = subprocess.run(
        [pypi_server, *flags, local, "--index-url", index_url],
        capture_output=True,
        text=True,
        timeout=120,
        env=update_env(),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:6] == default_plan(index_url, local)
    assert "deprecated" in result.stderr
    downloaded = (local / "sub" / "tapp-1.1-py3-none-any.whl").exists()
    assert downloaded is ("-Ux" in flags)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/nonexistent/packages"], "package directory '/nonexistent/packages' does not exist"),
        (["--ignorelist-file", "/nonexistent/ignore.txt", "."], "ignore list '/nonexistent"),
        (["--index-url", "pypi.org/simple", "."], "index URL 'pypi.org/simple' is not an http"),
        (["--timeout", "soon", "."], "'soon' is not a number of seconds"),
        (["--concurrency", "0", "."], "0 is not 1 or more"),
    ],
)
def test_bad_options_are_one_line_errors(args: list[str], message: str) -> None:
    result = update(*args)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("creamery: error: ") and message in line, line


def test_empty_directory(tmp_path: Path) -> None:
    result = update("--index-url", "http://127.0.0.1:9/simple/", tmp_path)
    assert result.returncode == 0
    assert result.stdout == ""
    assert "no projects to check" in result.stderr


def test_progress_bar_on_a_terminal(local: Path, index_url: str) -> None:
    """On a terminal a rich bar replaces the plain progress lines; the results stay the same."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "creamery", "update", "-x", "--index-url", index_url, local],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env=update_env(TERM="xterm-256color", COLUMNS="100"),
    )
    os.close(follower)
    output = read_until_closed(leader)
    assert process.wait(timeout=60) == 0, output
    text = output.decode(errors="replace")
    assert "# update tlib from 1.0 to 2.0" in text
    assert f"# saved: {local / 'tlib-2.0.tar.gz'}" in text
    assert "\x1b[" in text  # the bar draws with control sequences
    assert "creamery update: checking" not in text  # ...instead of the plain line
    assert (local / "sub" / "tapp-1.1-py3-none-any.whl").exists()


def read_until_closed(fd: int, timeout: float = 60.0) -> bytes:
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # EIO: the other side closed
                    break
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


# ---------------------------------------------------------------- the rules, directly


@pytest.mark.parametrize(
    ("current", "allow_unstable", "expected"),
    [
        ("1.0", False, "2.0.post1"),
        ("1.0", True, "3.0a1"),
        ("2.0.post1", False, None),
        ("3.0a1", True, None),
        ("3.0.dev0", True, "3.0a1"),
        ("legacy-version", False, "2.0.post1"),  # not PEP 440: below every release
    ],
)
def test_newest_release(current: str, allow_unstable: bool, expected: str | None) -> None:
    candidates = [Version(v) for v in ("0.5", "1.0", "2.0", "2.0.post1", "3.0a1", "2.5.dev3")]
    found = newest_release(current, candidates, allow_unstable=allow_unstable)
    assert found == (None if expected is None else Version(expected))


def test_read_ignorelist(tmp_path: Path) -> None:
    path = tmp_path / "ignore"
    path.write_text("Django  # pinned\n#comment\n\nzope.Interface\nruamel_yaml\n")
    assert read_ignorelist(str(path)) == {"django", "zope-interface", "ruamel-yaml"}


@pytest.mark.parametrize(
    ("host", "no_proxy", "bypassed"),
    [
        ("127.0.0.1", "localhost,127.0.0.1", True),
        ("pypi.org", "*", True),
        ("files.pythonhosted.org", ".pythonhosted.org", True),
        ("pythonhosted.org", "pythonhosted.org", True),
        ("evilpythonhosted.org", "pythonhosted.org", False),
        ("pypi.org", "", False),
    ],
)
def test_no_proxy_rules(host: str, no_proxy: str, bypassed: bool) -> None:
    assert _bypassed(host, no_proxy) is bypassed
