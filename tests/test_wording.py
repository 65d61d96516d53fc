"""What publishing clients show of a refused upload: the status line and the body's one line.

twine prints the status line's reason phrase (its body only with --verbose). ASGI has no reason
phrase, so under granian or uvicorn the status line is the standard one and the reason is in the
body; under a WSGI host creamery writes the reason into the status line as well. Real `creamery
run` processes, real twine and uv.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from support.clients import client_env, describe, run_client, twine_upload, uv_publish
from support.dists import make_wheel
from support.servers import run_server

from creamery.catalog.auth import add_user
from creamery.http.status_line import reason_phrase

WIDE = "300"  # twine's rich output wraps at 80 columns: keep messages on one line
OPEN = ("-a", ".", "-P", ".", "--disable-fallback")


@pytest.mark.parametrize("server_name", ["granian", "wsgiref"])
def test_twine_shows_why_a_duplicate_upload_failed(
    server_name: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("packages")
    wheel = make_wheel(tmp_path / "dist", "tdup", "1.0")
    reason = f"File already exists: {wheel.name!r} (use --overwrite to replace)"
    with run_server([root], *OPEN, "--server", server_name) as server:
        first = twine_upload(server.url + "/", tmp_path / "home", str(wheel), COLUMNS=WIDE)
        assert first.returncode == 0, describe(first)
        again = twine_upload(server.url + "/", tmp_path / "home", str(wheel), COLUMNS=WIDE)
        verbose = twine_upload(
            server.url + "/", tmp_path / "home", "--verbose", str(wheel), COLUMNS=WIDE
        )
    assert again.returncode != 0 and verbose.returncode != 0
    output = again.stdout + again.stderr
    assert "400 Bad Request" in output, describe(again)
    if server_name == "wsgiref":  # the status line is ours: twine prints the reason
        assert reason in output, describe(again)
    else:  # ASGI: the standard phrase; the reason is in the body, shown with --verbose
        assert reason not in output, describe(again)
    assert reason in verbose.stdout + verbose.stderr, describe(verbose)


@pytest.mark.parametrize("server_name", ["granian", "uvicorn", "wsgiref"])
def test_status_line_and_body_of_a_refused_upload(
    server_name: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("packages")
    with run_server([root], *OPEN, "--server", server_name) as server:
        response = server.raw(
            "POST / HTTP/1.1",
            ["Content-Type: application/x-www-form-urlencoded"],
            b":action=nothing%0d%0aInjected:%20yes",
        )
    assert response.status == 400
    assert response.body.decode().startswith("Unsupported ':action' field: nothing")
    assert "injected" not in response.headers  # the reason never splits the response
    if server_name == "wsgiref":
        assert response.reason == "Unsupported ':action' field: nothing??Injected: yes"
    else:
        assert response.reason == "Bad Request"


def test_uv_publish_check_url_skips_files_already_there(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """What the README advises instead of twine's --skip-existing (PyPI-only in twine 7)."""
    root = tmp_path_factory.mktemp("packages")
    wheel = make_wheel(tmp_path / "dist", "tcheck", "1.0")
    home = tmp_path / "home"
    with run_server([root], *OPEN) as server:
        check = ("--check-url", server.url + "/simple/", "-u", "any", "-p", "any")
        first = uv_publish(server.url + "/", home, *check, str(wheel))
        assert first.returncode == 0, describe(first)
        again = uv_publish(server.url + "/", home, *check, str(wheel))
        assert again.returncode == 0, describe(again)
        assert "already exists" in (again.stdout + again.stderr).lower(), describe(again)
        plain = uv_publish(server.url + "/", home, "-u", "any", "-p", "any", str(wheel))
    assert plain.returncode != 0
    said = " ".join(plain.stderr.split())  # uv wraps its lines
    assert "409 Conflict" in said and "File already exists" in said, describe(plain)


def test_uv_publish_check_url_with_a_guarded_index(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """With `-a update,download,list` the README's --check-url carries the credentials: uv
    sends -u/-p only with the upload, so a bare check URL gets 401 and uv uploads anyway."""
    root = tmp_path_factory.mktemp("packages")
    htpasswd = tmp_path / "htpasswd"
    add_user(htpasswd, "alice", "secret-pw", rounds=4)
    wheel = make_wheel(tmp_path / "dist", "tguarded", "1.0")
    home = tmp_path / "home"
    guarded = ("-P", str(htpasswd), "-a", "update,download,list", "--disable-fallback")
    with run_server([root], *guarded, ready_paths=("/health",)) as server:
        creds = ("-u", "alice", "-p", "secret-pw")
        first = uv_publish(server.url + "/", home, *creds, str(wheel))
        assert first.returncode == 0, describe(first)
        bare = ("--check-url", server.url + "/simple/")
        unchecked = uv_publish(server.url + "/", home, *creds, *bare, str(wheel))
        with_url = server.url.replace("http://", "http://alice:secret-pw@") + "/simple/"
        checked = uv_publish(server.url + "/", home, *creds, "--check-url", with_url, str(wheel))
    assert unchecked.returncode != 0 and "409 Conflict" in unchecked.stderr, describe(unchecked)
    assert checked.returncode == 0, describe(checked)
    assert "already exists" in (checked.stdout + checked.stderr).lower(), describe(checked)


def test_twine_refuses_skip_existing_for_other_indexes(tmp_path: Path) -> None:
    """Why the README no longer advises `twine upload --skip-existing` (checked, not assumed)."""
    wheel = make_wheel(tmp_path / "dist", "tskip", "1.0")
    command = [
        *(sys.executable, "-m", "twine", "upload", "--non-interactive", "--skip-existing"),
        *("--repository-url", "http://127.0.0.1:9/", "-u", "a", "-p", "b", str(wheel)),
    ]
    import twine
    from packaging.version import Version

    if Version(twine.__version__) < Version("6.2"):
        pytest.skip(f"twine {twine.__version__} still allows --skip-existing elsewhere")
    result = run_client(command, client_env(tmp_path / "home"))
    assert result.returncode != 0
    assert "--skip-existing" in result.stdout + result.stderr, describe(result)


@pytest.mark.parametrize(
    ("reason", "phrase"),
    [
        ("File already exists: 'x.whl'", "File already exists: 'x.whl'"),
        ("bad\r\nSet-Cookie: a=b", "bad??Set-Cookie: a=b"),
        ("café ünïcode", "caf? ?n?code"),
        ("x" * 500, "x" * 200),
    ],
)
def test_reason_phrase_is_one_printable_latin_line(reason: str, phrase: str) -> None:
    environ: dict[str, object] = {}
    reason_phrase({"wsgi_environ": environ}, reason)
    assert environ["creamery.reason_phrase"] == phrase
    scope: dict[str, object] = {}  # under an ASGI server: nothing to do
    reason_phrase(scope, reason)
    assert scope == {}
