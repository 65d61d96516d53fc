"""Attacks on the web UI from the outside, against `creamery run` processes (httpx and raw
sockets): what each one found, as a regression test. Hostile input must get a 4xx (never a
500), a session cookie another site tossed in must not sign the visitor in as someone else.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.dists import make_wheel
from support.servers import Server, run_server

from creamery.catalog.auth import add_user
from creamery.catalog.sessions import COOKIE
from creamery.core.names import parse_version, version_sort_key

USER, PASSWORD = "alice", "alice-Pa55word"
OTHER, OTHER_PASSWORD = "mallory", "mallory-Pa55word"
HUGE = "9" * 5000  # past int()'s 4,300 digits: `packaging` raises ValueError, not InvalidVersion


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("ui-attacks")
    for user, password in ((USER, PASSWORD), (OTHER, OTHER_PASSWORD)):
        add_user(base / "htpasswd", user, password, rounds=4)
    make_wheel(base / "root", "demo", "1.0", summary="demo for the attack tests")
    return base


@pytest.fixture(scope="module")
def server(base: Path) -> Iterator[Server]:
    args = ("-P", str(base / "htpasswd"), "-a", "update,list,download", "--disable-fallback")
    with run_server([base / "root"], *args) as running:
        yield running


@contextlib.contextmanager
def sign_in(server: Server, user: str, password: str) -> Iterator[httpx.Client]:
    with server.client() as client:
        answer = client.post(
            "/-/signin",
            data={"username": user, "password": password, "next": "/"},
            headers={"origin": server.url},
        )
        assert answer.status_code == 303, answer.text
        yield client


def test_a_version_too_long_for_int_is_no_version() -> None:
    assert parse_version(HUGE) is None
    assert parse_version("1." + HUGE) is None
    assert version_sort_key(HUGE)[0] == 0  # sorted with the legacy versions, no exception


@pytest.mark.parametrize(
    "path",
    [
        f"/manage/project/demo/delete?version={HUGE}",
        f"/manage/project/demo/delete?version=1.{HUGE}&filename=demo-1.0.tar.gz",
        f"/project/demo/{HUGE}/",
        f"/docs/demo/{HUGE}/",
    ],
    ids=["delete-confirmation", "delete-a-file", "version-page", "docs"],
)
def test_a_huge_version_number_is_a_client_error(server: Server, path: str) -> None:
    """Found by fuzzing the manage pages: a 5,000-digit version was a 500."""
    with sign_in(server, USER, PASSWORD) as client:
        for method in ("GET", "HEAD"):
            answer = client.request(method, path)
            assert 400 <= answer.status_code < 500, (method, answer.status_code, answer.text)
    assert "Traceback" not in server.log()


def test_a_tossed_session_of_another_user_signs_nobody_in(server: Server) -> None:
    """Cookie tossing: another site (a sibling host) sets its own session for a longer path,
    so the browser sends it first. With two users' sessions nobody is signed in; several
    sessions of one user (an old one left on another path) still count."""
    with sign_in(server, USER, PASSWORD) as mine, sign_in(server, OTHER, OTHER_PASSWORD) as theirs:
        own, tossed = mine.cookies[COOKIE], theirs.cookies[COOKIE]
        with sign_in(server, USER, PASSWORD) as again:
            older = again.cookies[COOKIE]
    for header in (f"{COOKIE}={tossed}; {COOKIE}={own}", f"{COOKIE}={own}; {COOKIE}={tossed}"):
        answer = httpx.get(f"{server.url}/manage/account/tokens/", headers={"cookie": header})
        assert answer.status_code == 303 and "-/signin?next=" in answer.headers["location"]
        home = httpx.get(f"{server.url}/-/signout", headers={"cookie": header})
        assert OTHER not in home.text and USER not in home.text
    for header in (f"{COOKIE}={own}; {COOKIE}={older}", f"{COOKIE}=junk; {COOKIE}={own}"):
        answer = httpx.get(f"{server.url}/manage/account/tokens/", headers={"cookie": header})
        assert answer.status_code == 200 and USER in answer.text
