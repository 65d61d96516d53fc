"""API tokens with the real clients: twine, `uv publish` and poetry upload with `__token__`,
pip and uv read with `https://__token__:TOKEN@host/simple/`, against `creamery run` processes.

Tokens are made as `creamery token create` makes them (the catalog, on the server's state);
the server learns each one through the change feed. In scope: accepted. Out of scope: 403
naming the project. Expired or revoked: 401, like a wrong password, and counted toward the
throttling of failed logins.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.access_state import (
    audit_entries,
    create_token,
    open_catalog,
    revoke_token,
    root_of,
    wait_applied,
)
from support.clients import (
    BIN,
    client_env,
    creamery,
    describe,
    installed,
    pip_download,
    pip_install,
    run_client,
    twine_upload,
    uv_install,
    uv_publish,
)
from support.dists import make_sdist, make_wheel
from support.forms import post_form
from support.servers import Server, run_server
from support.wire import listed

from creamery.catalog.auth import add_user
from creamery.catalog.tokens import TOKEN_USER

USER, PASSWORD = "alice", "alice-Pa55word"
OTHER, OTHER_PASSWORD = "bob", "bob-Pa55word"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("token-clients")


@pytest.fixture(scope="module")
def htpasswd(base: Path) -> Path:
    path = base / "htpasswd"
    add_user(path, USER, PASSWORD, rounds=4)
    add_user(path, OTHER, OTHER_PASSWORD, rounds=4)
    return path


@pytest.fixture(scope="module")
def writes(base: Path, htpasswd: Path) -> Iterator[Server]:
    """pypiserver's usual setup: uploads need credentials, reading is open."""
    root = base / "writes"
    root.mkdir()
    with run_server([root], "-P", str(htpasswd), "-a", "update", "--disable-fallback") as server:
        yield server


@pytest.fixture(scope="module")
def reads(base: Path, htpasswd: Path) -> Iterator[Server]:
    """Everything needs credentials; `tokread` (a wheel and an sdist) is there already."""
    root = base / "reads"
    make_wheel(root, "tokread", "1.0")
    make_sdist(root, "tokread", "1.0")
    args = ("-P", str(htpasswd), "-a", "update,list,download", "--disable-fallback")
    with run_server([root], *args) as server:
        yield server


def verbose_twine(server: Server, home: Path, wheel: Path, secret: str):
    """twine with the token; --verbose prints the server's answer (status and reason)."""
    return twine_upload(
        server.url + "/", home, "--verbose", wheel, user=TOKEN_USER, password=secret
    )


def assert_published(server: Server, path: Path) -> None:
    project = path.name.split("-")[0].replace("_", "-")
    files = listed(server, project)
    assert path.name in files, files
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    assert files[path.name]["hashes"]["sha256"] == expected
    assert (root_of(server) / path.name).read_bytes() == path.read_bytes()


def assert_not_published(server: Server, path: Path) -> None:
    project = path.name.split("-")[0].replace("_", "-")
    assert path.name not in listed(server, project)
    assert not (root_of(server) / path.name).exists()


def assert_no_secret_in_log(server: Server, *secrets: str) -> None:
    log = server.log()
    for secret in secrets:
        assert secret not in log
        # Not even the secret part alone (after `creamery-<id>_`).
        assert secret.partition("_")[2] not in log


# ----------------------------------------------------------------------------- twine


def test_twine_uploads_with_a_token_in_scope(writes: Server, tmp_path: Path) -> None:
    token, secret = create_token(writes, USER, projects=["tok-twine"], description="ci")
    wheel = make_wheel(tmp_path, "tok-twine", "1.0")
    result = twine_upload(
        writes.url + "/", tmp_path / "home", wheel, user=TOKEN_USER, password=secret
    )
    assert result.returncode == 0, describe(result)
    assert_published(writes, wheel)
    # The upload is the token owner's, through that token.
    (entry,) = [e for e in audit_entries(root_of(writes)) if e.filename == wheel.name]
    assert (entry.action, entry.user, entry.token, entry.result) == ("upload", USER, token.id, "ok")
    assert_no_secret_in_log(writes, secret)


def test_twine_with_a_token_out_of_scope_gets_403_naming_the_project(
    writes: Server, tmp_path: Path
) -> None:
    token, secret = create_token(writes, USER, projects=["tok-scoped"])
    wheel = make_wheel(tmp_path, "tok-elsewhere", "1.0")
    result = verbose_twine(writes, tmp_path / "home", wheel, secret)
    assert result.returncode != 0, describe(result)
    output = result.stdout + result.stderr
    assert "403" in output, describe(result)
    # One line that names the project (and the token, never its secret).
    assert f"token {token.id} is not scoped to project 'tok-elsewhere'" in output, describe(result)
    assert_not_published(writes, wheel)
    # Its own project still takes it.
    inside = make_wheel(tmp_path, "tok-scoped", "1.0")
    result = twine_upload(
        writes.url + "/", tmp_path / "home", inside, user=TOKEN_USER, password=secret
    )
    assert result.returncode == 0, describe(result)
    assert_published(writes, inside)


def test_an_expired_token_gets_401(writes: Server, tmp_path: Path) -> None:
    expires = time.time() + 2
    token, secret = create_token(writes, USER, projects=["tok-expiring"], expires=expires)
    auth = (TOKEN_USER, secret)
    # Used while valid (the server then remembers the credentials), when the clock allows.
    before = post_form(writes, [(":action", "submit")], auth=auth)
    if time.time() < expires - 0.2:
        assert before.status_code == 200, before.text
    while time.time() <= expires + 0.1:
        time.sleep(0.1)
    wheel = make_wheel(tmp_path, "tok-expiring", "1.0")
    result = verbose_twine(writes, tmp_path / "home", wheel, secret)
    assert result.returncode != 0, describe(result)
    assert "401" in result.stdout + result.stderr, describe(result)
    assert_not_published(writes, wheel)
    after = post_form(writes, [(":action", "submit")], auth=auth)
    assert after.status_code == 401
    assert after.text.strip() == f"Unauthorized: token {token.id} has expired"
    assert "www-authenticate" in after.headers  # sign in again, as after a wrong password


def test_a_revoked_token_gets_401(writes: Server, tmp_path: Path) -> None:
    token, secret = create_token(writes, USER, projects=["tok-revoked"])
    home = tmp_path / "home"
    first = make_wheel(tmp_path, "tok-revoked", "1.0")
    result = twine_upload(writes.url + "/", home, first, user=TOKEN_USER, password=secret)
    assert result.returncode == 0, describe(result)
    assert_published(writes, first)
    revoke_token(writes, token.id)  # the server had remembered these credentials
    second = make_wheel(tmp_path, "tok-revoked", "2.0")
    result = verbose_twine(writes, home, second, secret)
    assert result.returncode != 0, describe(result)
    assert "401" in result.stdout + result.stderr, describe(result)
    assert_not_published(writes, second)
    response = post_form(writes, [(":action", "submit")], auth=(TOKEN_USER, secret))
    assert (response.status_code, response.text.strip()) == (
        401,
        "Unauthorized: invalid or revoked token",
    )


def test_a_read_token_cannot_upload(writes: Server, tmp_path: Path) -> None:
    token, secret = create_token(writes, USER, actions=["download", "list"])
    wheel = make_wheel(tmp_path, "tok-readonly", "1.0")
    result = verbose_twine(writes, tmp_path / "home", wheel, secret)
    assert result.returncode != 0, describe(result)
    output = result.stdout + result.stderr
    assert "403" in output, describe(result)
    assert f"token {token.id} does not allow upload" in output, describe(result)
    assert_not_published(writes, wheel)


def test_a_password_still_uploads_beside_tokens(writes: Server, tmp_path: Path) -> None:
    """pypiserver's way is untouched: the htpasswd user uploads with their password."""
    wheel = make_wheel(tmp_path, "tok-password", "1.0")
    result = twine_upload(writes.url + "/", tmp_path / "home", wheel, user=USER, password=PASSWORD)
    assert result.returncode == 0, describe(result)
    assert_published(writes, wheel)


def test_a_token_made_with_the_cli(writes: Server, htpasswd: Path, tmp_path: Path) -> None:
    """`creamery token create` on the server's directory, twine with it, `token revoke`."""
    root = root_of(writes)
    made = creamery("token", "create", USER, "--project", "tok-cli", "--json", "-P", htpasswd, root)
    assert made.returncode == 0, describe(made)
    created = json.loads(made.stdout)
    token_id, secret = created["id"], created["token"]
    assert secret.startswith(f"creamery-{token_id}_")
    wait_applied(writes, open_catalog(root).feed.announced())
    home = tmp_path / "home"
    wheel = make_wheel(tmp_path, "tok-cli", "1.0")
    result = twine_upload(writes.url + "/", home, wheel, user=TOKEN_USER, password=secret)
    assert result.returncode == 0, describe(result)
    assert_published(writes, wheel)
    listing = creamery("token", "list", USER, "--json", root)
    assert listing.returncode == 0, describe(listing)
    assert token_id in listing.stdout and secret.partition("_")[2] not in listing.stdout
    revoked = creamery("token", "revoke", token_id, root)
    assert revoked.returncode == 0, describe(revoked)
    wait_applied(writes, open_catalog(root).feed.announced())
    again = make_wheel(tmp_path, "tok-cli", "2.0")
    result = verbose_twine(writes, home, again, secret)
    assert result.returncode != 0 and "401" in result.stdout, describe(result)
    assert_not_published(writes, again)
    audit = creamery("audit", "--json", "--project", "tok-cli", root)
    assert audit.returncode == 0, describe(audit)
    lines = [json.loads(line) for line in audit.stdout.splitlines()]
    assert [(e["action"], e["token"], e["filename"]) for e in lines] == [
        ("token.create", None, None),  # scoped to tok-cli alone: audited under it
        ("upload", token_id, wheel.name),
        ("token.revoke", None, None),
    ]
    assert_no_secret_in_log(writes, secret)


# ----------------------------------------------------------------------------- uv, poetry


def test_uv_publish_with_username_and_password(writes: Server, tmp_path: Path) -> None:
    _token, secret = create_token(writes, USER, projects=["tok-uv"])
    wheel = make_wheel(tmp_path, "tok-uv", "1.0")
    args = ("--username", TOKEN_USER, "--password", secret, str(wheel))
    result = uv_publish(writes.url + "/", tmp_path / "home", *args)
    assert result.returncode == 0, describe(result)
    assert_published(writes, wheel)


def test_uv_publish_with_token_option(writes: Server, tmp_path: Path) -> None:
    """`uv publish --token` sends the user name `__token__`, as for PyPI."""
    token, secret = create_token(writes, USER, projects=["tok-uv-token"])
    wheel = make_wheel(tmp_path, "tok-uv-token", "1.0")
    result = uv_publish(writes.url + "/", tmp_path / "home", "--token", secret, str(wheel))
    assert result.returncode == 0, describe(result)
    assert_published(writes, wheel)
    # Out of its scope, uv shows the server's reason.
    other = make_wheel(tmp_path, "tok-uv-other", "1.0")
    result = uv_publish(writes.url + "/", tmp_path / "home", "--token", secret, str(other))
    assert result.returncode != 0, describe(result)
    assert "403" in result.stderr, describe(result)
    assert f"token {token.id} is not scoped to project 'tok-uv-other'" in result.stderr
    assert_not_published(writes, other)


POETRY = shutil.which("poetry", path=str(BIN)) or shutil.which("poetry")


def poetry(project: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """poetry with its configuration in *home* (no keyring: credentials in its auth.toml)."""
    assert POETRY is not None
    env = {k: v for k, v in client_env(home).items() if not k.startswith("POETRY_")}
    env.update(
        POETRY_CONFIG_DIR=str(home / "poetry-config"),
        POETRY_CACHE_DIR=str(home / "poetry-cache"),
        POETRY_DATA_DIR=str(home / "poetry-data"),
        POETRY_KEYRING_ENABLED="false",
    )
    return run_client([POETRY, "--no-interaction", "--directory", str(project), *args], env)


@pytest.mark.skipif(POETRY is None, reason="poetry is not installed (pip install poetry)")
def test_poetry_publish_with_a_token(writes: Server, tmp_path: Path) -> None:
    _token, secret = create_token(writes, USER, projects=["tok-poetry"])
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "tok-poetry"\nversion = "1.0"\ndescription = "x"\n'
        'authors = [{ name = "A" }]\n\n'
        '[build-system]\nrequires = ["poetry-core>=2"]\n'
        'build-backend = "poetry.core.masonry.api"\n'
    )
    # poetry publishes what is in dist/ (built here by the suite's offline builders).
    wheel = make_wheel(project / "dist", "tok-poetry", "1.0")
    sdist = make_sdist(project / "dist", "tok-poetry", "1.0")
    for args in (
        ("config", "repositories.creamery", writes.url + "/"),
        ("config", "http-basic.creamery", TOKEN_USER, secret),
        ("publish", "--repository", "creamery"),
    ):
        result = poetry(project, home, *args)
        assert result.returncode == 0, describe(result)
    assert_published(writes, wheel)
    assert_published(writes, sdist)
    assert_no_secret_in_log(writes, secret)


# ----------------------------------------------------------------------------- reading


def token_url(server: Server, secret: str) -> str:
    return server.url.replace("http://", f"http://{TOKEN_USER}:{secret}@")


def test_pip_and_uv_read_with_a_read_token(reads: Server, tmp_path: Path) -> None:
    token, secret = create_token(reads, USER, actions=["download", "list"])
    url = token_url(reads, secret)
    dest = tmp_path / "dl"
    result = pip_download(url, dest, tmp_path / "home", "tokread")
    assert result.returncode == 0, describe(result)
    (downloaded,) = dest.iterdir()
    assert downloaded.read_bytes() == (root_of(reads) / downloaded.name).read_bytes()
    target = tmp_path / "pip-target"
    result = pip_install(f"{url}/simple/", target, tmp_path / "home", "tokread")
    assert result.returncode == 0, describe(result)
    assert installed(target) == {"tokread-1.0"}
    target = tmp_path / "uv-target"
    result = uv_install(url, target, tmp_path / "home", "tokread")
    assert result.returncode == 0, describe(result)
    assert installed(target) == {"tokread-1.0"}
    # The token's first use is in the audit log; its secret is nowhere in the server's log.
    uses = [e for e in audit_entries(root_of(reads)) if e.action == "token.first-use"]
    assert [(e.user, e.token) for e in uses if e.token == token.id] == [(USER, token.id)]
    assert_no_secret_in_log(reads, secret)


def test_reading_with_a_revoked_token_fails(reads: Server, tmp_path: Path) -> None:
    token, secret = create_token(reads, USER, actions=["download", "list"])
    url = token_url(reads, secret)
    result = pip_download(url, tmp_path / "first", tmp_path / "home", "tokread")
    assert result.returncode == 0, describe(result)
    revoke_token(reads, token.id)
    dest = tmp_path / "dl"
    result = pip_download(url, dest, tmp_path / "home", "tokread", verbose=True)
    assert result.returncode != 0, describe(result)
    assert "401" in result.stdout + result.stderr, describe(result)
    assert not dest.exists() or not any(dest.iterdir())
    result = uv_install(url, tmp_path / "uv-target", tmp_path / "home", "tokread")
    assert result.returncode != 0, describe(result)
    assert "401" in result.stderr, describe(result)
    assert not installed(tmp_path / "uv-target")


def test_reading_needs_credentials(reads: Server, tmp_path: Path) -> None:
    assert httpx.get(f"{reads.url}/simple/tokread/", timeout=10).status_code == 401
    result = pip_download(reads.url, tmp_path / "dl", tmp_path / "home", "tokread")
    assert result.returncode != 0, describe(result)


@pytest.mark.parametrize(
    ("projects", "actions"),
    [((), ()), (("tok-other",), ("download", "list"))],
    ids=["upload-only", "scoped-elsewhere"],
)
def test_reading_needs_a_token_that_allows_it(
    reads: Server, tmp_path: Path, projects: tuple[str, ...], actions: tuple[str, ...]
) -> None:
    """A token narrows its owner: one without `download`/`list`, or scoped to another
    project, reads nothing of `tokread` where reading needs credentials."""
    _token, secret = create_token(reads, USER, projects=projects, actions=actions)
    auth = (TOKEN_USER, secret)
    with reads.client(auth=auth) as client:
        assert "tokread" not in client.get("/simple/").text
        assert client.get("/simple/tokread/").status_code in (403, 404)
        assert client.get("/packages/tokread-1.0-py3-none-any.whl").status_code in (403, 404)
    result = pip_download(token_url(reads, secret), tmp_path / "dl", tmp_path / "home", "tokread")
    assert result.returncode != 0, describe(result)


# ----------------------------------------------------------------------------- throttling


def garbage_token(n: int) -> str:
    """Shaped like a token (prefix, 12 hex digits of id, 43 characters of secret): no token."""
    return f"creamery-{n:012x}_{'A' * 42}{n % 10}"


def test_bad_tokens_count_toward_throttling(base: Path, htpasswd: Path, tmp_path: Path) -> None:
    root = base / "throttled"
    root.mkdir()
    args = ("-P", str(htpasswd), "-a", "update,list,download", "--disable-fallback")
    with run_server([root], *args) as server:
        _token, good = create_token(server, USER, actions=["download", "list"])
        with server.client() as client:
            for n in range(10):
                response = client.get("/simple/", auth=(TOKEN_USER, garbage_token(n)))
                assert response.status_code == 401, (n, response.text)
            refused = client.get("/simple/", auth=(TOKEN_USER, garbage_token(10)))
            assert refused.status_code == 429, refused.text
            assert int(refused.headers["retry-after"]) >= 1
            # Throttled means throttled: even the good token waits (the client is the key).
            assert client.get("/simple/", auth=(TOKEN_USER, good)).status_code == 429
        # The audit log says the login was throttled (once: a flood must not flood it).
        throttled = [e for e in audit_entries(root) if e.action == "login.throttled"]
        assert [(e.user, e.client, e.result) for e in throttled] == [
            (None, "127.0.0.1", "denied")  # a token names no user
        ]
        assert_no_secret_in_log(server, good, *(garbage_token(n) for n in range(11)))
