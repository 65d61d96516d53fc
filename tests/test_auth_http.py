"""Authentication end to end over HTTP: every htpasswd scheme with real clients (twine, pip, uv),
credentials in index URLs, live reloading of the password file, and throttling (429).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from passlib.hash import apr_md5_crypt, des_crypt, ldap_sha1, sha256_crypt, sha512_crypt
from support.clients import creamery_passwd, describe, pip_download, twine_upload, uv_install
from support.dists import make_sdist, make_wheel
from support.htpasswd import sha1_hash
from support.servers import Server, run_server

HTTP = httpx.Client(timeout=30)  # one client: building one costs ~60 ms
_CLIENTS: dict[int, httpx.Client] = {}


def from_address(n: int) -> httpx.Client:
    """A client connecting from 127.0.0.n. Failed logins are throttled per client address,
    so each test that fails on purpose does it from its own address: failures don't add up
    across the module into a 429 for the tests that follow.
    """
    if n not in _CLIENTS:
        transport = httpx.HTTPTransport(local_address=f"127.0.0.{n}")
        _CLIENTS[n] = httpx.Client(transport=transport, timeout=30)
    return _CLIENTS[n]


# user -> (password, how its line is made); bcrypt is written by `creamery passwd`.
SCHEMES = {
    "bcrypt": None,
    "sha1": sha1_hash,
    "apr1": apr_md5_crypt.hash,
    "sha256": sha256_crypt.using(rounds=5000).hash,
    "sha512": sha512_crypt.using(rounds=5000).hash,
    "crypt": des_crypt.hash,
}
PREFIXES = {
    "bcrypt": "$2y$",
    "sha1": "{SHA}",
    "apr1": "$apr1$",
    "sha256": "$5$",
    "sha512": "$6$",
    "crypt": "",
}
# des_crypt only looks at 8 characters: keep that one short so nothing is silently cut.
PASSWORDS = {scheme: f"pw-{scheme}!" if scheme != "crypt" else "pw-crypt" for scheme in SCHEMES}


def user_of(scheme: str) -> str:
    return f"user-{scheme}"


def with_credentials(server: Server, user: str, password: str) -> str:
    return f"http://{user}:{password}@127.0.0.1:{server.port}"


# ----------------------------------------------------------------------------- the server


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("auth-http")


@pytest.fixture(scope="module")
def htpasswd(base: Path) -> Path:
    path = base / "htpasswd"
    creamery_passwd(path, user_of("bcrypt"), PASSWORDS["bcrypt"])
    lines = [
        f"{user_of(scheme)}:{make(PASSWORDS[scheme])}\n"
        for scheme, make in SCHEMES.items()
        if make is not None
    ]
    with path.open("a") as out:
        out.writelines(lines)
    return path


@pytest.fixture(scope="module")
def artefacts(base: Path) -> dict[str, Path]:
    root = base / "root"
    return {
        "wheel": make_wheel(root, "authlib", "1.0"),
        "sdist": make_sdist(root, "authlib", "1.0"),
    }


@pytest.fixture(scope="module")
def srv(base: Path, htpasswd: Path, artefacts: dict[str, Path]) -> Iterator[Server]:
    """Everything needs credentials: uploads, listings and downloads."""
    with run_server(
        [base / "root"],
        "-P",
        str(htpasswd),
        "-a",
        "update,download,list",
        "--disable-fallback",
    ) as server:
        yield server


def test_htpasswd_has_every_scheme(htpasswd: Path) -> None:
    entries = dict(line.split(":", 1) for line in htpasswd.read_text().splitlines())
    for scheme in SCHEMES:
        assert entries[user_of(scheme)].startswith(PREFIXES[scheme]), (scheme, entries)
    # The hand-made {SHA} line is exactly what passlib's ldap_sha1 (and Apache) produce.
    assert entries[user_of("sha1")] == ldap_sha1.hash(PASSWORDS["sha1"])


def upload(
    server: Server, path: Path, auth: tuple[str, str] | None, client: httpx.Client = HTTP
) -> httpx.Response:
    return client.post(
        server.url + "/",
        data={":action": "file_upload"},
        files={"content": (path.name, path.read_bytes())},
        auth=auth,
    )


def assert_one_line(response: httpx.Response) -> str:
    lines = response.text.strip().splitlines()
    assert len(lines) == 1 and lines[0].isprintable(), response.text
    return lines[0]


# ----------------------------------------------------------------------------- each scheme


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_scheme_end_to_end(srv: Server, scheme: str, tmp_path: Path) -> None:
    user, password = user_of(scheme), PASSWORDS[scheme]
    project = f"scheme-{scheme}"
    wheel = make_wheel(tmp_path / "dist", project, "1.0")

    # twine, the real client, logs in with this scheme's user.
    result = twine_upload(srv.url + "/", tmp_path / "home", wheel, user=user, password=password)
    assert result.returncode == 0, describe(result)
    assert (srv.roots[0] / wheel.name).read_bytes() == wheel.read_bytes()

    page = HTTP.get(f"{srv.url}/simple/{project}/", auth=(user, password))
    assert page.status_code == 200 and wheel.name in page.text
    served = HTTP.get(f"{srv.url}/packages/{wheel.name}", auth=(user, password))
    assert served.content == wheel.read_bytes()

    # The same user with a wrong password, or a near miss, is refused.
    near_misses = [password[:-1], password.upper(), ""]
    if scheme != "crypt":  # DES crypt reads 8 characters: "pw-crypt" + anything matches
        near_misses.append(password + "x")
    failing = from_address(10 + list(SCHEMES).index(scheme))
    for wrong in near_misses:
        response = failing.get(f"{srv.url}/simple/{project}/", auth=(user, wrong))
        assert response.status_code == 403, (wrong, response.status_code)
    other = make_wheel(tmp_path / "dist", project, "2.0")
    refused = upload(srv, other, (user, password.upper()), failing)
    assert refused.status_code == 403
    assert f"wrong password for {user!r}" in assert_one_line(refused)  # not a permission
    assert not (srv.roots[0] / other.name).exists()


def test_every_action_challenges_then_refuses(srv: Server, artefacts: dict[str, Path]) -> None:
    wheel = artefacts["wheel"]
    user, password = user_of("sha256"), PASSWORDS["sha256"]
    paths = ["/simple/", "/simple/authlib/", f"/packages/{wheel.name}", "/packages/"]
    for path in paths:
        anonymous = HTTP.get(srv.url + path)
        assert anonymous.status_code == 401, path
        assert anonymous.headers["www-authenticate"] == 'Basic realm="pypi"'
        assert_one_line(anonymous)
        nobody = from_address(30).get(srv.url + path, auth=("nobody", password))
        assert nobody.status_code == 403, path
        assert assert_one_line(nobody) == "Forbidden: wrong password for 'nobody', or no such user"
        assert HTTP.get(srv.url + path, auth=(user, password)).status_code == 200, path
    # Some things stay open: the health check.
    assert HTTP.get(srv.url + "/health").status_code == 200


# ----------------------------------------------------------------------------- installers


def test_pip_with_credentials_in_the_index_url(
    srv: Server, artefacts: dict[str, Path], tmp_path: Path
) -> None:
    url = with_credentials(srv, user_of("bcrypt"), PASSWORDS["bcrypt"])
    result = pip_download(url, tmp_path / "dl", tmp_path / "home", "authlib")
    assert result.returncode == 0, describe(result)
    (downloaded,) = (tmp_path / "dl").iterdir()
    assert downloaded.read_bytes() == artefacts["wheel"].read_bytes()


def test_pip_without_credentials_gets_401(srv: Server, tmp_path: Path) -> None:
    result = pip_download(srv.url, tmp_path / "dl", tmp_path / "home", "authlib", verbose=True)
    assert result.returncode != 0, describe(result)
    assert "401 Client Error" in result.stdout + result.stderr, describe(result)
    assert not (tmp_path / "dl").exists() or not any((tmp_path / "dl").iterdir())


def test_pip_with_wrong_credentials_fails(srv: Server, tmp_path: Path) -> None:
    url = with_credentials(srv, user_of("bcrypt"), "not-it")
    result = pip_download(url, tmp_path / "dl", tmp_path / "home", "authlib", verbose=True)
    assert result.returncode != 0, describe(result)
    assert "403 Client Error" in result.stdout + result.stderr, describe(result)


def test_uv_with_credentials_in_the_index_url(srv: Server, tmp_path: Path) -> None:
    url = with_credentials(srv, user_of("apr1"), PASSWORDS["apr1"])
    result = uv_install(url, tmp_path / "target", tmp_path / "home", "authlib")
    assert result.returncode == 0, describe(result)
    init = tmp_path / "target" / "authlib" / "__init__.py"
    assert init.read_text() == '__version__ = "1.0"\n'


def test_uv_without_credentials_gets_401(srv: Server, tmp_path: Path) -> None:
    result = uv_install(srv.url, tmp_path / "target", tmp_path / "home", "authlib")
    assert result.returncode != 0, describe(result)
    assert "401" in result.stderr, describe(result)
    assert not (tmp_path / "target" / "authlib").exists()


# ----------------------------------------------------------------------------- reloading


def test_password_file_changes_apply_without_restart(
    srv: Server, htpasswd: Path, tmp_path: Path
) -> None:
    newcomer, password = "newcomer", "fresh-pw-1"
    client = from_address(31)
    wheel = make_wheel(tmp_path, "reloaded", "1.0")
    assert upload(srv, wheel, (newcomer, password), client).status_code == 403

    # Appended while the server runs: usable at once.
    with htpasswd.open("a") as out:
        out.write(f"{newcomer}:{sha512_crypt.using(rounds=5000).hash(password)}\n")
    response = upload(srv, wheel, (newcomer, password), client)
    assert response.status_code == 200, response.text
    assert (srv.roots[0] / wheel.name).read_bytes() == wheel.read_bytes()

    # A new password through `creamery passwd` (an atomic replace): the old one stops working,
    # even though the server remembered it as verified a moment ago.
    creamery_passwd(htpasswd, newcomer, "fresh-pw-2")
    assert client.get(f"{srv.url}/simple/", auth=(newcomer, password)).status_code == 403
    assert client.get(f"{srv.url}/simple/", auth=(newcomer, "fresh-pw-2")).status_code == 200

    # Removed from the file: refused from the next request on.
    lines = htpasswd.read_text().splitlines(keepends=True)
    htpasswd.write_text("".join(line for line in lines if not line.startswith(newcomer + ":")))
    assert client.get(f"{srv.url}/simple/", auth=(newcomer, "fresh-pw-2")).status_code == 403
    # Everyone else is untouched.
    for scheme in SCHEMES:
        auth = (user_of(scheme), PASSWORDS[scheme])
        assert HTTP.get(f"{srv.url}/simple/", auth=auth).status_code == 200, scheme


# ----------------------------------------------------------------------------- throttling


def test_repeated_failures_get_429_per_client(tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_wheel(root, "throttled", "1.0")
    htpasswd = tmp_path / "htpasswd"
    sha256 = sha256_crypt.using(rounds=5000).hash
    htpasswd.write_text(f"admin:{sha256('right')}\nci:{sha256('ci-pw')}\n")
    with run_server([root], "-P", str(htpasswd), "-a", "update,list,download") as server:
        url = f"{server.url}/simple/throttled/"
        # A client that logged in before the attack (e.g. CI behind the same NAT).
        assert HTTP.get(url, auth=("ci", "ci-pw")).status_code == 200

        statuses = [HTTP.get(url, auth=("admin", f"guess{i}")).status_code for i in range(10)]
        assert statuses == [403] * 10
        throttled = HTTP.get(url, auth=("admin", "guess10"))
        assert throttled.status_code == 429
        retry_after = int(throttled.headers["retry-after"])
        assert 1 <= retry_after <= 60
        assert "try again later" in assert_one_line(throttled)

        # The right password from this client waits too, or guessing would simply go on.
        assert HTTP.get(url, auth=("admin", "right")).status_code == 429
        wheel = make_wheel(tmp_path / "dist", "throttled", "2.0")
        refused = upload(server, wheel, ("admin", "right"))
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert not (root / wheel.name).exists()
        # Credentials verified before the attack are remembered and keep working.
        assert HTTP.get(url, auth=("ci", "ci-pw")).status_code == 200
        # Anonymous requests still get the challenge.
        assert HTTP.get(url).status_code == 401

        # Another client address is not affected.
        other = from_address(2)
        assert other.get(url, auth=("admin", "right")).status_code == 200
        assert other.get(url, auth=("admin", "nope")).status_code == 403
