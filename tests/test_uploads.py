"""The write path end to end: real `creamery run` processes, real twine and uv in subprocesses,
hand-made multipart requests for every validation rule, concurrency, aborted uploads,
overwrites under load, read-your-writes across workers, and removal (HTTP and CLI).

Every rejected or aborted upload must leave the upload root exactly as it was: no file, no
sidecar, and no hidden `.creamery-*.part` temp file.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
import os
import random
import re
import socket
import threading
import zipfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from support import forms
from support.attested import GITHUB_SDIST, attestations_field, copy_fixture
from support.clients import (
    creamery,
    describe,
    twine,
    twine_upload,
    uv_publish,
)
from support.dists import make_sdist, make_wheel, sign
from support.forms import BOUNDARY, multipart
from support.polling import wait_for
from support.servers import Server, run_server
from support.wire import JSON_ACCEPT, listed

from creamery.catalog.auth import add_user

USER, PASSWORD = "alice", "upl0ad-s3cret"
AUTH = (USER, PASSWORD)
MAX_UPLOAD = 1 << 20  # the module server runs with --max-upload-size 1M
# One client for the whole module: building one costs ~60 ms (its TLS context), which adds up.
HTTP = httpx.Client(timeout=30)
# Writes on the module's servers need credentials: these send them unless given `auth=None`.
post_form = functools.partial(forms.post_form, auth=AUTH)
upload = functools.partial(forms.upload, auth=AUTH)


# ----------------------------------------------------------------------------- servers


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("uploads")


@pytest.fixture(scope="module")
def htpasswd(base: Path) -> Path:
    path = base / "htpasswd"
    add_user(path, USER, PASSWORD, rounds=4)
    return path


@pytest.fixture(scope="module")
def srv(base: Path, htpasswd: Path) -> Iterator[Server]:
    """Uploads need credentials (-a update); listing and downloads are open."""
    root = base / "root"
    root.mkdir()
    with run_server(
        [root],
        "-P",
        str(htpasswd),
        "-a",
        "update",
        "--max-upload-size",
        "1M",
        "--disable-fallback",
    ) as server:
        yield server


@pytest.fixture(scope="module")
def overwrite_srv(base: Path) -> Iterator[Server]:
    root = base / "overwrite-root"
    root.mkdir()
    with run_server([root], "-o", "-P", ".", "-a", ".", "--disable-fallback") as server:
        yield server


@pytest.fixture(scope="module")
def workers_srv(base: Path) -> Iterator[Server]:
    """Two worker processes; the access log names the process that answered each request."""
    root = base / "workers-root"
    root.mkdir()
    with run_server(
        [root],
        "--workers",
        "2",
        "-P",
        ".",
        "-a",
        ".",
        "--disable-fallback",
        "-v",
        "--log-frmt",
        "%(process)d|%(name)s|%(message)s",
    ) as server:
        yield server


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    path = tmp_path / "dist"
    path.mkdir()
    return path


# ----------------------------------------------------------------------------- helpers


JSON_SIMPLE = "application/vnd.pypi.simple.v1+json"


def root_of(server: Server) -> Path:
    return server.roots[0]


def root_state(root: Path) -> dict[str, str]:
    """Every file under the root, hidden ones included, with its sha256."""
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.relative_to(root).as_posix().startswith(".creamery/")
    }


def temp_files(root: Path) -> list[str]:
    """Temp files: spooled uploads in the state directory's scratch area, hidden temp files."""
    spooled = (root / ".creamery" / "tmp").rglob("*.part")
    return sorted(p.name for p in [*root.rglob(".creamery-*"), *spooled])


def assert_one_line(response: httpx.Response, *fragments: str) -> str:
    """A plain-text error a person can read: one printable line naming the problem.

    Each fragment is a regular expression searched in that line.
    """
    assert response.headers["content-type"].startswith("text/plain"), response.headers
    text = response.text
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got {text!r}"
    line = lines[0]
    assert 10 <= len(line) <= 300, line
    assert line.isprintable(), line
    for fragment in fragments:
        assert re.search(fragment, line), f"{fragment!r} not in {line!r}"
    return line


def simple_json(server: Server, project: str, **kwargs) -> dict:
    response = HTTP.get(f"{server.url}/simple/{project}/", headers=JSON_ACCEPT, **kwargs)
    assert response.status_code == 200, (project, response.status_code, response.text)
    return response.json()


def random_bytes(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def big_wheel(directory: Path, name: str, version: str, size: int, seed: int = 0) -> Path:
    """A valid wheel made large (and incompressible) by a data file of random bytes."""
    files = {
        f"{name}/__init__.py": f'__version__ = "{version}"\n',
        f"{name}/blob.bin": random_bytes(seed, size),
    }
    return make_wheel(directory, name, version, files=files)


def assert_published(server: Server, files: Sequence[Path], project: str) -> None:
    """Listed with the right sha256, served byte for byte, stored byte for byte."""
    on_page = listed(server, project)
    for path in files:
        data = path.read_bytes()
        assert path.name in on_page, (path.name, sorted(on_page))
        assert on_page[path.name]["hashes"]["sha256"] == hashlib.sha256(data).hexdigest()
        assert (root_of(server) / path.name).read_bytes() == data
        served = HTTP.get(f"{server.url}/packages/{path.name}", timeout=10)
        assert served.status_code == 200
        assert served.content == data


@pytest.fixture(scope="module")
def valid_sdist(base: Path) -> bytes:
    return make_sdist(base / "valid", "vproj", "1.0").read_bytes()


@pytest.fixture(scope="module")
def valid_wheel(base: Path) -> bytes:
    return make_wheel(base / "valid", "vproj", "1.0").read_bytes()


# ----------------------------------------------------------------------------- twine


def test_twine_upload_lands_and_is_listed_when_twine_returns(
    srv: Server, dist: Path, tmp_path: Path
) -> None:
    files = [make_wheel(dist, "tw-ok", "1.0"), make_sdist(dist, "tw-ok", "1.0")]
    result = twine_upload(
        srv.url + "/", tmp_path / "home", *map(str, files), user=USER, password=PASSWORD
    )
    assert result.returncode == 0, describe(result)
    # No waiting: the index has the files before the upload's response.
    assert_published(srv, files, "tw-ok")
    html = HTTP.get(f"{srv.url}/simple/tw-ok/").text
    assert all(p.name in html for p in files)
    # twine sends md5, sha256 and blake2_256 digests: they matched, or the upload had failed.


def test_twine_upload_without_credentials_fails(srv: Server, dist: Path, tmp_path: Path) -> None:
    wheel = make_wheel(dist, "tw-nocreds", "1.0")
    before = root_state(root_of(srv))
    # twine never sends an upload without credentials: non-interactive, it gives up first.
    result = twine(tmp_path / "home", "--repository-url", srv.url + "/", str(wheel))
    assert result.returncode != 0, describe(result)
    assert "credential" in (result.stdout + result.stderr).lower(), describe(result)
    # Clients that do try get the 401 challenge that makes twine/pip/uv ask for credentials.
    response = upload(srv, wheel.name, wheel.read_bytes(), auth=None)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Basic realm="pypi"'
    assert_one_line(response)
    assert root_state(root_of(srv)) == before
    assert listed(srv, "tw-nocreds") == {}


def test_twine_upload_with_wrong_credentials_fails_with_403(
    srv: Server, dist: Path, tmp_path: Path
) -> None:
    wheel = make_wheel(dist, "tw-wrong", "1.0")
    before = root_state(root_of(srv))
    for user, password in ((USER, "not-the-password"), ("mallory", PASSWORD)):
        result = twine_upload(
            srv.url + "/", tmp_path / "home", str(wheel), user=user, password=password
        )
        assert result.returncode != 0, describe(result)
        assert "403" in result.stdout + result.stderr, describe(result)
    assert root_state(root_of(srv)) == before
    assert listed(srv, "tw-wrong") == {}


def test_twine_reupload_fails_and_keeps_the_original(
    srv: Server, dist: Path, tmp_path: Path
) -> None:
    original = make_wheel(dist / "a", "tw-again", "1.0", summary="the original")
    impostor = make_wheel(dist / "b", "tw-again", "1.0", summary="an impostor")
    assert original.name == impostor.name and original.read_bytes() != impostor.read_bytes()
    home = tmp_path / "home"
    first = twine_upload(srv.url + "/", home, str(original), user=USER, password=PASSWORD)
    assert first.returncode == 0, describe(first)
    for path in (original, impostor):
        again = twine_upload(srv.url + "/", home, str(path), user=USER, password=PASSWORD)
        assert again.returncode != 0, describe(again)
        # twine's User-Agent gets PyPI's 400 "File already exists" rather than 409.
        assert "400" in again.stdout + again.stderr, describe(again)
    assert_published(srv, [original], "tw-again")
    assert temp_files(root_of(srv)) == []


@pytest.mark.parametrize(
    ("kind", "respelled"),
    [
        ("sdist", "Sp_Elled-1.0.tar.gz"),
        ("sdist", "sp-elled-1.0.0.tar.gz"),
        ("wheel", "SP_ELLED-1.0-py3-none-any.whl"),
        ("wheel", "sp_elled-01.0-PY3-none-any.whl"),
    ],
    ids=["sdist-case", "sdist-version", "wheel-case", "wheel-version-tags"],
)
def test_a_respelled_filename_is_the_same_file(
    srv: Server, overwrite_srv: Server, tmp_path: Path, kind: str, respelled: str
) -> None:
    """pip takes `Sp_Elled-1.0.tar.gz` and `sp-elled-1.0.0.tar.gz` for `sp_elled-1.0.tar.gz`: a
    second spelling would let an upload replace a release's file without --overwrite (both
    listed, the installer picks one). Without -o it is refused; with -o it replaces the file."""
    make = make_wheel if kind == "wheel" else make_sdist
    original = make(tmp_path / "a", "sp_elled", "1.0", summary="the original")
    impostor = make(tmp_path / "b", "sp_elled", "1.0", summary="an impostor").read_bytes()
    version = respelled.removesuffix(".tar.gz").split("-")[-1 if kind == "sdist" else 1]
    for server in (srv, overwrite_srv):
        auth = AUTH if server is srv else None
        assert upload(server, original.name, original.read_bytes(), auth=auth).status_code == 200
        response = upload(server, respelled, impostor, ("version", version), auth=auth)
        expected = {original.name} if server is srv else {respelled}
        if server is srv:
            assert response.status_code == 409, response.text
            assert_one_line(response, "File already exists")
        else:
            assert response.status_code == 200, response.text
        assert set(listed(server, "sp-elled")) == expected
        assert {p.name for p in root_of(server).glob("*")} >= expected
        assert not {p.name for p in root_of(server).glob("*")} & (
            {original.name, respelled} - expected
        )
        assert temp_files(root_of(server)) == []
        removed = post_form(
            server, [(":action", "remove_pkg"), ("name", "sp-elled"), ("version", "1.0")], auth=auth
        )
        assert removed.status_code == 200, removed.text


def test_twine_skip_existing(srv: Server, dist: Path, tmp_path: Path) -> None:
    """twine 7 refuses `--skip-existing` for any index but PyPI before sending anything, so
    the re-run can't succeed there; what the server controls is its answer, and that answer is
    checked against twine's own `skip_upload` with a real upload through twine's Repository.
    """
    from twine.commands.upload import skip_upload
    from twine.package import PackageFile
    from twine.repository import Repository

    files = [make_wheel(dist, "tw-skip", "1.0"), make_sdist(dist, "tw-skip", "1.0")]
    home = tmp_path / "home"
    first = twine_upload(srv.url + "/", home, *map(str, files), user=USER, password=PASSWORD)
    assert first.returncode == 0, describe(first)
    before = root_state(root_of(srv))

    rerun = twine_upload(
        srv.url + "/", home, "--skip-existing", *map(str, files), user=USER, password=PASSWORD
    )
    output = rerun.stdout + rerun.stderr
    if rerun.returncode != 0:
        assert "does not have support" in output and "--skip-existing" in output, describe(rerun)
    else:  # a twine that allows it for other indexes: it must have skipped both files
        assert output.count("Skipping") == 2, describe(rerun)

    repository = Repository(srv.url + "/", USER, PASSWORD, disable_progress_bar=True)
    try:
        for path in files:
            package = PackageFile.from_filename(str(path), comment=None)
            response = repository.upload(package)
            assert response.status_code == 400, response.text
            assert "File already exists" in response.text
            assert skip_upload(response, True, package), response.text
            assert not skip_upload(response, False, package)
    finally:
        repository.close()
    assert root_state(root_of(srv)) == before


def test_twine_uploads_a_signature_named_on_the_command_line(
    srv: Server, dist: Path, tmp_path: Path
) -> None:
    """twine 7 attaches `X.asc` only when it is one of the files given (it never looks beside
    the file on its own); `--sign` would need gpg and a key, so a pre-made signature is used.
    """
    wheel = make_wheel(dist, "tw-signed", "1.0")
    signature = sign(wheel)
    home = tmp_path / "home"
    result = twine_upload(
        srv.url + "/", home, str(wheel), str(signature), user=USER, password=PASSWORD
    )
    assert result.returncode == 0, describe(result)

    html = HTTP.get(f"{srv.url}/simple/tw-signed/").text
    (anchor,) = re.findall(r"<a [^>]*>tw_signed-1\.0-py3-none-any\.whl</a>", html)
    assert 'data-gpg-sig="true"' in anchor
    assert listed(srv, "tw-signed")[wheel.name]["gpg-sig"] is True
    served = HTTP.get(f"{srv.url}/packages/{wheel.name}.asc")
    assert served.status_code == 200
    assert served.content == signature.read_bytes()
    assert (root_of(srv) / signature.name).read_bytes() == signature.read_bytes()

    # Same layout, but only the wheel named: twine 7 uploads it unsigned.
    unsigned = make_wheel(dist, "tw-signed", "2.0")
    sign(unsigned)
    result = twine_upload(srv.url + "/", home, str(unsigned), user=USER, password=PASSWORD)
    assert result.returncode == 0, describe(result)
    assert listed(srv, "tw-signed")[unsigned.name]["gpg-sig"] is False
    assert HTTP.get(f"{srv.url}/packages/{unsigned.name}.asc").status_code == 404


def test_signature_field_by_hand(srv: Server, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "hand-signed", "1.0")
    signature = sign(wheel).read_bytes()
    response = upload(
        srv,
        wheel.name,
        wheel.read_bytes(),
        extra_files=[("gpg_signature", wheel.name + ".asc", signature)],
    )
    assert response.status_code == 200, response.text
    assert listed(srv, "hand-signed")[wheel.name]["gpg-sig"] is True
    assert HTTP.get(f"{srv.url}/packages/{wheel.name}.asc").content == signature


def test_signature_as_two_fields_as_pdm_sends_it(srv: Server, tmp_path: Path) -> None:
    """`pdm publish` sends the signature as two text fields, its name then its text."""
    wheel = make_wheel(tmp_path, "field-signed", "1.0")
    signature = sign(wheel).read_bytes()
    response = upload(
        srv,
        wheel.name,
        wheel.read_bytes(),
        ("gpg_signature", wheel.name + ".asc"),
        ("gpg_signature", signature.decode("ascii")),
    )
    assert response.status_code == 200, response.text
    assert listed(srv, "field-signed")[wheel.name]["gpg-sig"] is True
    assert HTTP.get(f"{srv.url}/packages/{wheel.name}.asc").content == signature


@pytest.mark.parametrize(
    ("project", "fields", "reason"),
    [
        (
            "field-unrelated",
            [("gpg_signature", "other-1.0.tar.gz.asc"), ("gpg_signature", "-----BEGIN PGP")],
            "unrelated signature 'other-1.0.tar.gz.asc' for package 'field_unrelated-1.0-py3",
        ),
        (
            "field-alone",
            [("gpg_signature", "-----BEGIN PGP SIGNATURE-----")],
            "gpg_signature: send a file, or two fields (its name, then its armoured text)",
        ),
        (
            "field-binary",
            [
                ("gpg_signature", "field_binary-1.0-py3-none-any.whl.asc"),
                ("gpg_signature", "\udc89PGP"),  # the byte 0x89 on the wire: not UTF-8
            ],
            "gpg_signature sent as a field must be ASCII-armoured (gpg --armor)",
        ),
    ],
    ids=["unrelated-name", "one-field", "binary"],
)
def test_signature_fields_of_another_shape_are_refused(
    srv: Server, tmp_path: Path, project: str, fields: list[tuple[str, str]], reason: str
) -> None:
    wheel = make_wheel(tmp_path, project, "1.0")
    response = upload(srv, wheel.name, wheel.read_bytes(), *fields)
    assert response.status_code == 400, response.text
    assert reason in response.text
    assert listed(srv, project) == {}
    assert HTTP.get(f"{srv.url}/packages/{wheel.name}").status_code == 404


def test_twine_with_pypirc(srv: Server, dist: Path, tmp_path: Path) -> None:
    files = [make_wheel(dist, "tw-pypirc", "1.0"), make_sdist(dist, "tw-pypirc", "1.0")]
    pypirc = tmp_path / "custom-pypirc"
    pypirc.write_text(
        "[distutils]\n"
        "index-servers =\n    creamery\n\n"
        "[creamery]\n"
        f"repository = {srv.url}/\n"
        f"username = {USER}\n"
        f"password = {PASSWORD}\n"
    )
    result = twine(
        tmp_path / "home",
        "--repository",
        "creamery",
        "--config-file",
        str(pypirc),
        *map(str, files),
    )
    assert result.returncode == 0, describe(result)
    assert_published(srv, files, "tw-pypirc")


# ----------------------------------------------------------------------------- uv publish


def test_uv_publish_and_rerun(srv: Server, dist: Path, tmp_path: Path) -> None:
    files = [make_wheel(dist, "uv-pub", "1.0"), make_sdist(dist, "uv-pub", "1.0")]
    home = tmp_path / "home"
    creds = ("-u", USER, "-p", PASSWORD)
    result = uv_publish(srv.url + "/", home, *creds, *map(str, files))
    assert result.returncode == 0, describe(result)
    assert_published(srv, files, "uv-pub")
    before = root_state(root_of(srv))

    # uv treats the 409 of a plain re-run as an error (exit 2), quoting the server's line.
    again = uv_publish(srv.url + "/", home, *creds, *map(str, files))
    assert again.returncode != 0, describe(again)
    said = " ".join(again.stderr.split())  # uv wraps its lines
    assert "409" in said and "File already exists" in said, describe(again)
    assert root_state(root_of(srv)) == before

    # With --check-url uv looks the files up in the index (by sha256) and skips them.
    check = ("--check-url", f"{srv.url}/simple/")
    skipped = uv_publish(srv.url + "/", home, *creds, *check, *map(str, files))
    assert skipped.returncode == 0, describe(skipped)
    assert (skipped.stdout + skipped.stderr).count("already exists") == 2, describe(skipped)
    assert root_state(root_of(srv)) == before

    # Different bytes under a published name: refused, the original stays.
    other = make_wheel(tmp_path / "other", "uv-pub", "1.0", summary="different bytes")
    refused = uv_publish(srv.url + "/", home, *creds, *check, str(other))
    assert refused.returncode != 0, describe(refused)
    assert root_state(root_of(srv)) == before
    assert_published(srv, files, "uv-pub")


def test_uv_publish_credentials(srv: Server, dist: Path, tmp_path: Path) -> None:
    wheel = make_wheel(dist, "uv-creds", "1.0")
    home = tmp_path / "home"
    before = root_state(root_of(srv))
    missing = uv_publish(srv.url + "/", home, "--trusted-publishing", "never", str(wheel))
    assert missing.returncode != 0, describe(missing)
    assert "Missing credentials" in missing.stderr, describe(missing)
    wrong = uv_publish(srv.url + "/", home, "-u", USER, "-p", "wrong", str(wheel))
    assert wrong.returncode != 0, describe(wrong)
    assert "403" in wrong.stderr, describe(wrong)
    assert root_state(root_of(srv)) == before
    ok = uv_publish(srv.url + "/", home, "-u", USER, "-p", PASSWORD, str(wheel))
    assert ok.returncode == 0, describe(ok)
    assert_published(srv, [wheel], "uv-creds")


# ----------------------------------------------------------------------------- validation


def _zip_without_metadata() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("vproj/__init__.py", "")
    return buffer.getvalue()


BAD_NAME = "invalid (project name|distribution filename)"
BAD_FILENAMES = [
    ("parent-traversal", "../evil-1.0.tar.gz", "bare file name"),
    ("deeper-traversal", "a/../../evil-1.0.tar.gz", "bare file name"),
    ("subdirectory", "sub/evil-1.0.tar.gz", "bare file name"),
    ("absolute", "/tmp/evil-1.0.tar.gz", "bare file name"),
    ("backslash", "..\\evil-1.0.tar.gz", "bare file name"),
    ("dot-dot", "..", "bare file name"),
    ("hidden", ".evil-1.0.tar.gz", "bare file name"),
    ("nul", "evil-1.0.tar.gz\x00.txt", "control characters"),
    ("escape", "evil\x1b[31m-1.0.tar.gz", "control characters"),
    ("tab", "evil\t-1.0.tar.gz", "control characters"),
    ("empty", "", "no filename"),
    ("not-a-distribution", "notes.txt", "invalid distribution filename"),
    ("no-version", "evil.tar.gz", "invalid distribution filename"),
    ("bad-wheel-name", "ev!l-1.0-py3-none-any.whl", "invalid distribution filename"),
    ("invalid-version", "evil-notaversion.tar.gz", "invalid version"),
    ("invalid-version-dots", "evil-1..0.tar.gz", "invalid version"),
    ("invalid-project-name", "evil!-1.0.tar.gz", BAD_NAME),
    ("non-ascii-project-name", "\u00e9vil-1.0.tar.gz", BAD_NAME),
    ("trailing-separator-name", "evil_-1.0.tar.gz", BAD_NAME),
    # Sidecar names: uploading one would yank, sign or rewrite another file's metadata.
    ("yanked-sidecar", "vproj-1.0.tar.gz.yanked", "invalid distribution filename"),
    ("metadata-sidecar", "vproj-1.0-py3-none-any.whl.metadata", "invalid distribution filename"),
    ("signature-as-content", "vproj-1.0-py3-none-any.whl.asc", "invalid distribution filename"),
    ("provenance-sidecar", "vproj-1.0.tar.gz.provenance", "invalid distribution filename"),
    ("temp-file-name", ".creamery-abc.part", "bare file name"),
]


@pytest.mark.parametrize(
    ("filename", "fragment"),
    [case[1:] for case in BAD_FILENAMES],
    ids=[case[0] for case in BAD_FILENAMES],
)
def test_bad_filename(srv: Server, valid_sdist: bytes, filename: str, fragment: str) -> None:
    before = root_state(root_of(srv))
    response = upload(srv, filename, valid_sdist)
    assert response.status_code == 400, response.text
    assert_one_line(response, fragment)
    assert root_state(root_of(srv)) == before
    assert temp_files(root_of(srv)) == []
    assert not (root_of(srv).parent / "evil-1.0.tar.gz").exists()
    assert not Path("/tmp/evil-1.0.tar.gz").exists()


def _bad_form_cases(sdist: bytes, wheel: bytes, other_name: bytes, other_version: bytes):
    s, w = "vproj-1.0.tar.gz", "vproj-1.0-py3-none-any.whl"
    md5, sha, blake = (
        hashlib.md5(sdist).hexdigest(),
        hashlib.sha256(sdist).hexdigest(),
        hashlib.blake2b(sdist, digest_size=32).hexdigest(),
    )
    return {
        "form-name-mismatch": (s, sdist, [("name", "other")], "does not match"),
        "form-name-invalid": (s, sdist, [("name", "vproj!!")], "invalid project name"),
        "form-version-mismatch": (s, sdist, [("version", "2.0")], "does not match"),
        "wheel-metadata-name": (w, other_name, [], "METADATA Name"),
        "wheel-metadata-version": (w, other_version, [], "METADATA Version"),
        "wheel-not-a-zip": (w, b"this is not a zip archive", [], "not a valid zip archive"),
        "wheel-without-metadata": (w, _zip_without_metadata(), [], "no .dist-info/METADATA"),
        "zip-sdist-not-a-zip": ("vproj-1.0.zip", sdist, [], "not a valid zip archive"),
        "wrong-sha256": (s, sdist, [("sha256_digest", "0" * 64)], "sha256_digest"),
        "wrong-md5": (s, sdist, [("md5_digest", "0" * 32)], "md5_digest"),
        "wrong-blake2": (s, sdist, [("blake2_256_digest", "0" * 64)], "blake2_256_digest"),
        "wrong-distutils-blake2": (s, sdist, [("blake2_256_digest", "0" * 128)], "blake2_256_"),
        "one-wrong-digest-of-three": (
            s,
            sdist,
            [("md5_digest", md5), ("sha256_digest", sha), ("blake2_256_digest", blake[::-1])],
            "blake2_256_digest",
        ),
        "digest-of-other-content": (w, wheel, [("sha256_digest", sha)], "sha256_digest"),
        "attestations-not-json": (s, sdist, [("attestations", "[{not json")], "not valid JSON"),
        "attestations-not-a-list": (s, sdist, [("attestations", '{"a": 1}')], "JSON list"),
    }


FORM_CASE_IDS = list(_bad_form_cases(b"", b"", b"", b""))


@pytest.mark.parametrize("case", FORM_CASE_IDS)
def test_bad_form(srv: Server, base: Path, valid_sdist: bytes, valid_wheel: bytes, case) -> None:
    other_name = make_wheel(base / "other-name", "not-vproj", "1.0").read_bytes()
    other_version = make_wheel(base / "other-version", "vproj", "2.0").read_bytes()
    cases = _bad_form_cases(valid_sdist, valid_wheel, other_name, other_version)
    filename, data, fields, fragment = cases[case]
    before = root_state(root_of(srv))
    response = upload(srv, filename, data, *fields)
    assert response.status_code == 400, response.text
    assert_one_line(response, fragment)
    assert root_state(root_of(srv)) == before
    assert temp_files(root_of(srv)) == []
    assert listed(srv, "vproj") == {}


def test_form_fields_are_compared_normalized(srv: Server, tmp_path: Path) -> None:
    sdist = make_sdist(tmp_path, "foo-bar", "1.0", filename_name="foo-bar")
    assert sdist.name == "foo-bar-1.0.tar.gz"
    data = sdist.read_bytes()
    digests = [
        ("md5_digest", hashlib.md5(data).hexdigest()),
        ("sha256_digest", hashlib.sha256(data).hexdigest().upper()),
        ("blake2_256_digest", hashlib.blake2b(data, digest_size=32).hexdigest()),
    ]
    response = upload(srv, sdist.name, data, ("name", "Foo_Bar"), ("version", "1.0.0"), *digests)
    assert response.status_code == 200, response.text
    assert listed(srv, "foo-bar")[sdist.name]["hashes"]["sha256"] == digests[1][1].lower()

    wheel = make_wheel(tmp_path, "Foo.Bar", "1.0")
    response = upload(srv, wheel.name, wheel.read_bytes(), ("name", "FOO.bar"))
    assert response.status_code == 200, response.text
    assert set(listed(srv, "foo-bar")) == {sdist.name, wheel.name}


def distutils_upload_body(fields: Sequence[tuple[str, object]]) -> tuple[bytes, str]:
    """The body `setup.py sdist upload` sends, encoded as distutils' upload command does.

    A CRLF before the first boundary, the file before the digests, absent metadata as "None",
    and (a distutils bug) BLAKE2b-512 under `blake2_256_digest`.
    """
    boundary = "--------------GHSKFJDLGDS7543FJKLFHRE75642756743254"
    separator = b"\r\n--" + boundary.encode()
    body = io.BytesIO()
    for name, value in fields:
        title = f'\r\nContent-Disposition: form-data; name="{name}"'
        if isinstance(value, tuple):
            title += f'; filename="{value[0]}"'
            data = value[1]
        else:
            data = str(value).encode()
        body.write(separator + title.encode() + b"\r\n\r\n" + data)
    body.write(separator + b"--\r\n")
    return body.getvalue(), f"multipart/form-data; boundary={boundary}"


def test_setup_py_upload_is_accepted(srv: Server, tmp_path: Path) -> None:
    sdist = make_sdist(tmp_path, "setuppy-upload", "1.0", filename_name="setuppy-upload")
    data = sdist.read_bytes()
    body, content_type = distutils_upload_body(
        [
            (":action", "file_upload"),
            ("protocol_version", "1"),
            ("name", "setuppy-upload"),
            ("version", "1.0"),
            ("content", (sdist.name, data)),
            ("filetype", "sdist"),
            ("pyversion", ""),
            ("metadata_version", "1.0"),
            ("summary", None),
            ("comment", ""),
            ("md5_digest", hashlib.md5(data).hexdigest()),
            ("sha256_digest", hashlib.sha256(data).hexdigest()),
            ("blake2_256_digest", hashlib.blake2b(data).hexdigest()),  # 512 bits, as distutils
        ]
    )
    headers = {"Content-Type": content_type, "User-Agent": "Python-urllib/3.11"}
    with srv.client(auth=AUTH) as client:
        response = client.post("/", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert sdist.name in listed(srv, "setuppy-upload")


def distutils_register_body(fields: Sequence[tuple[str, str]]) -> tuple[bytes, str]:
    """The body `setup.py register` sends (distutils' post_to_server): lines end with LF only."""
    boundary = "--------------GHSKFJDLGDS7543FJKLFHRE75642756743254"
    body = io.StringIO()
    for name, value in fields:
        body.write(f'\n--{boundary}\nContent-Disposition: form-data; name="{name}"\n\n{value}')
    body.write(f"\n--{boundary}--\n")
    return body.getvalue().encode(), f"multipart/form-data; boundary={boundary}; charset=utf-8"


def test_setup_py_register_is_answered(srv: Server) -> None:
    """pypiserver 1.x's README: `python setup.py sdist register -r local upload -r local`."""
    fields = [(":action", "submit"), ("metadata_version", "1.0"), ("name", "registered")]
    fields += [("version", "1.0"), ("summary", "d"), ("description", "L\n\nmore")]
    body, content_type = distutils_register_body(fields)
    headers = {"Content-Type": content_type, "User-Agent": "Python-urllib/3.11"}
    with srv.client(auth=AUTH) as client:
        for size in (len(body), 5):  # one chunk, or the start cut into small ones
            chunks = [body[i : i + size] for i in range(0, len(body), size)]
            response = client.post("/", content=iter(chunks), headers=headers)
            assert response.status_code == 200, response.text
    assert listed(srv, "registered") == {}  # registering stores nothing, as in pypiserver


def test_a_file_in_a_form_with_lf_lines_is_refused(srv: Server, valid_sdist: bytes) -> None:
    boundary = "b0undary"
    body = (
        (
            f'\n--{boundary}\nContent-Disposition: form-data; name=":action"\n\nfile_upload'
            f'\n--{boundary}\nContent-Disposition: form-data; name="content"; '
            f'filename="vproj-1.0.tar.gz"\n\n'
        ).encode()
        + valid_sdist
        + f"\n--{boundary}--\n".encode()
    )
    before = root_state(root_of(srv))
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    with srv.client(auth=AUTH) as client:
        response = client.post("/", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert_one_line(response, "must end its lines with CRLF")
    assert root_state(root_of(srv)) == before
    assert temp_files(root_of(srv)) == []


def test_attestations_are_kept_beside_the_upload(srv: Server, tmp_path: Path) -> None:
    sdist = copy_fixture(GITHUB_SDIST, tmp_path)  # a real attestation, verified at upload
    sent = attestations_field(sdist.name)
    response = upload(srv, sdist.name, sdist.read_bytes(), sent)
    assert response.status_code == 200, response.text
    state = root_of(srv) / ".creamery" / "files" / sdist.name / "provenance"
    provenance = json.loads(state.read_text())
    assert not (root_of(srv) / (sdist.name + ".provenance")).exists()  # state, not beside it
    bundles = provenance["attestation_bundles"]
    assert bundles[0]["attestations"] == json.loads(sent[1])
    assert set(listed(srv, "pypi-attestations")) == {sdist.name}  # a sidecar, not a dist
    # PEP 740: announced on the simple pages and served from the announced URL
    page = HTTP.get(f"{srv.url}/simple/pypi-attestations/", headers={"Accept": JSON_SIMPLE})
    assert page.json()["meta"]["api-version"] == "1.4"
    url = page.json()["files"][0]["provenance"]
    served = HTTP.get(url)
    assert served.status_code == 200
    assert served.json() == provenance
    html = HTTP.get(f"{srv.url}/simple/pypi-attestations/").text
    assert f'data-provenance="{url}"' in html


def test_wheel_metadata_is_stored_beside_the_upload(srv: Server, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "with-meta", "1.0", requires_python=">=3.8")
    assert upload(srv, wheel.name, wheel.read_bytes()).status_code == 200
    entry = listed(srv, "with-meta")[wheel.name]
    served = HTTP.get(f"{srv.url}/packages/{wheel.name}.metadata")
    assert served.status_code == 200
    assert entry["core-metadata"] == {"sha256": hashlib.sha256(served.content).hexdigest()}
    assert b"Name: with-meta" in served.content
    assert entry["requires-python"] == ">=3.8"


def test_facts_computed_at_upload_serve_every_process(srv: Server, tmp_path: Path) -> None:
    files = [
        make_wheel(tmp_path, "upfacts", "1.0", requires_python=">=3.9"),
        make_sdist(tmp_path, "upfacts", "1.0", summary="from the sdist"),
    ]
    for dist in files:
        assert upload(srv, dist.name, dist.read_bytes()).status_code == 200
    root = root_of(srv)
    for dist in files:
        facts = json.loads((root / ".creamery/files" / dist.name / "facts").read_bytes())
        assert facts["digests"]["sha256"] == hashlib.sha256(dist.read_bytes()).hexdigest()
        # Overwritten in place, size, mtime and inode kept: a process that read the file to
        # hash it or to find its metadata would now answer something else.
        published = root / dist.name
        st = published.stat()
        published.write_bytes(b"\0" * st.st_size)
        os.utime(published, ns=(st.st_atime_ns, st.st_mtime_ns))
    # Another server on the same directories, with an empty facts cache of its own.
    with run_server([root], "-a", ".", "-P", ".", "--disable-fallback") as other:
        entries = listed(other, "upfacts")
        pypi = HTTP.get(f"{other.url}/pypi/upfacts/json").json()
        digests = {f["filename"]: f["digests"] for f in pypi["urls"]}
        metadata = HTTP.get(f"{other.url}/packages/{files[0].name}.metadata")
    for dist in files:
        data = dist.read_bytes()
        assert entries[dist.name]["hashes"] == {"sha256": hashlib.sha256(data).hexdigest()}
        assert digests[dist.name] == {
            "sha256": hashlib.sha256(data).hexdigest(),
            "md5": hashlib.md5(data).hexdigest(),
            "blake2b_256": hashlib.blake2b(data, digest_size=32).hexdigest(),
        }
    assert entries[files[0].name]["requires-python"] == ">=3.9"
    assert b"Name: upfacts" in metadata.content
    assert entries[files[0].name]["core-metadata"] == {
        "sha256": hashlib.sha256(metadata.content).hexdigest()
    }
    assert pypi["info"]["requires_python"] == ">=3.9"


REQUEST_CASES = {
    "missing-content": ([(":action", "file_upload"), ("name", "vproj")], "none", "'content'"),
    "content-not-a-file": ([(":action", "file_upload"), ("content", "abc")], "none", "'content'"),
    "missing-action": ([("name", "vproj")], "sdist", "Missing ':action' field!"),
    "unsupported-action": ([(":action", "frobnicate")], "sdist", "Unsupported ':action'"),
    "unrelated-signature": (
        [(":action", "file_upload")],
        "signed",
        "unrelated signature",
    ),
    "two-contents": ([(":action", "file_upload")], "twice", "more than one"),
}


@pytest.mark.parametrize("case", list(REQUEST_CASES))
def test_bad_request(srv: Server, valid_sdist: bytes, case: str) -> None:
    fields, kind, fragment = REQUEST_CASES[case]
    name = "vproj-1.0.tar.gz"
    files = {
        "sdist": [("content", name, valid_sdist)],
        "signed": [("content", name, valid_sdist), ("gpg_signature", "other.asc", b"sig")],
        "twice": [("content", name, valid_sdist), ("content", name, valid_sdist)],
    }.get(kind, [])
    before = root_state(root_of(srv))
    response = post_form(srv, fields, files)
    assert response.status_code == 400, response.text
    line = assert_one_line(response, fragment)
    if case == "unsupported-action":
        assert line.endswith("frobnicate")
    assert root_state(root_of(srv)) == before
    assert temp_files(root_of(srv)) == []


def test_bodies_that_are_not_upload_forms(srv: Server, valid_sdist: bytes) -> None:
    before = root_state(root_of(srv))
    cases = [
        ("application/x-www-form-urlencoded", b":action=file_upload&name=vproj", "'content'"),
        ("application/json", b'{":action": "file_upload"}', "multipart/form-data"),
        ("multipart/form-data", multipart([(":action", "file_upload")])[0], "boundary"),
    ]
    for content_type, body, fragment in cases:
        response = HTTP.post(
            srv.url + "/", content=body, headers={"Content-Type": content_type}, auth=AUTH
        )
        assert response.status_code == 400, (content_type, response.text)
        assert_one_line(response, fragment)
    # A body cut short: the closing boundary never comes.
    body, content_type = multipart(
        [(":action", "file_upload")], [("content", "vproj-1.0.tar.gz", valid_sdist)]
    )
    truncated = body[: len(body) - 200]
    response = HTTP.post(
        srv.url + "/", content=truncated, headers={"Content-Type": content_type}, auth=AUTH
    )
    assert response.status_code == 400, response.text
    assert_one_line(response)
    assert root_state(root_of(srv)) == before
    assert temp_files(root_of(srv)) == []


def test_over_max_upload_size(srv: Server, tmp_path: Path) -> None:
    wheel = big_wheel(tmp_path, "toobig", "1.0", MAX_UPLOAD + 4096)
    data = wheel.read_bytes()
    before = root_state(root_of(srv))

    declared = upload(srv, wheel.name, data)  # Content-Length says it all up front
    assert declared.status_code == 413, declared.text
    assert_one_line(declared, "larger than the limit")

    body, content_type = multipart([(":action", "file_upload")], [("content", wheel.name, data)])

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is found while reading
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    streamed = HTTP.post(
        srv.url + "/",
        content=chunks(),
        headers={"Content-Type": content_type},
        auth=AUTH,
        timeout=30,
    )
    assert streamed.status_code == 413, streamed.text
    assert_one_line(streamed, "larger than the limit")
    assert wait_for(lambda: temp_files(root_of(srv)) == [], timeout=2)
    assert root_state(root_of(srv)) == before
    assert listed(srv, "toobig") == {}

    # Just under the limit (multipart framing included) is accepted.
    fits = big_wheel(tmp_path / "fits", "fits", "1.0", MAX_UPLOAD - 64 * 1024)
    response = upload(srv, fits.name, fits.read_bytes())
    assert response.status_code == 200, response.text
    assert (root_of(srv) / fits.name).read_bytes() == fits.read_bytes()


def test_other_actions(srv: Server, tmp_path: Path) -> None:
    before = root_state(root_of(srv))
    for action in ("submit", "verify"):
        response = post_form(srv, [(":action", action), ("name", "vproj"), ("version", "1.0")])
        assert response.status_code == 200, (action, response.text)
    docs = io.BytesIO()
    with zipfile.ZipFile(docs, "w") as archive:
        archive.writestr("index.html", "<html>docs</html>")
    response = post_form(
        srv,
        [(":action", "doc_upload"), ("name", "vproj"), ("version", "1.0")],
        [("content", "docs.zip", docs.getvalue())],
    )
    assert response.status_code == 200, response.text
    # Kept in the state directory, not beside the packages (tests/test_docs_hosting.py).
    assert (root_of(srv) / ".creamery" / "docs" / "vproj" / "1.0.zip").is_file()
    response = post_form(
        srv,
        [(":action", "doc_upload"), ("name", "vproj"), ("version", "1.0")],
        [("content", "docs.zip", b"nope")],
    )
    assert response.status_code == 400
    assert_one_line(response, "zip")
    assert root_state(root_of(srv)) == before
    assert temp_files(root_of(srv)) == []
    # Writes need credentials whatever the action.
    response = post_form(srv, [(":action", "submit")], auth=None)
    assert response.status_code == 401


def test_legacy_path_uploads(srv: Server, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "via-legacy", "1.0")
    response = upload(srv, wheel.name, wheel.read_bytes(), path="/legacy/")
    assert response.status_code == 200, response.text
    assert_published(srv, [wheel], "via-legacy")


def test_duplicate_status_depends_on_the_client(srv: Server, tmp_path: Path) -> None:
    sdist = make_sdist(tmp_path, "dup-status", "1.0")
    data = sdist.read_bytes()
    assert upload(srv, sdist.name, data).status_code == 200
    conflict = upload(srv, sdist.name, data)
    assert conflict.status_code == 409
    assert_one_line(conflict, "File already exists", sdist.name)
    as_twine = upload(srv, sdist.name, data, headers={"User-Agent": "twine/7.0.0 CPython/3.11"})
    assert as_twine.status_code == 400
    assert_one_line(as_twine, "File already exists")
    assert (root_of(srv) / sdist.name).read_bytes() == data


def test_existing_file_anywhere_under_the_root_counts(srv: Server, tmp_path: Path) -> None:
    """Like pypiserver: the same filename in a subdirectory is a duplicate too."""
    sdist = make_sdist(tmp_path, "dup-deep", "1.0")
    placed = root_of(srv) / "deep" / "er" / sdist.name
    placed.parent.mkdir(parents=True)
    placed.write_bytes(sdist.read_bytes())
    assert wait_for(lambda: sdist.name in listed(srv, "dup-deep"))
    other = make_sdist(tmp_path / "other", "dup-deep", "1.0", summary="other bytes")
    response = upload(srv, sdist.name, other.read_bytes())
    assert response.status_code == 409, response.text
    assert not (root_of(srv) / sdist.name).exists()
    assert placed.read_bytes() == sdist.read_bytes()


def test_uploaded_files_get_the_usual_permissions(srv: Server, tmp_path: Path) -> None:
    """Like pypiserver (and Apache's htpasswd), new files are 0666 less the umask, so another
    user (a web server serving /packages, a backup job) can read them; not mkstemp's 0600.
    """
    umask = os.umask(0)
    os.umask(umask)  # the server process inherited this test process's umask
    wheel = make_wheel(tmp_path, "perms", "1.0")
    signature = sign(wheel).read_bytes()
    response = upload(
        srv,
        wheel.name,
        wheel.read_bytes(),
        extra_files=[("gpg_signature", wheel.name + ".asc", signature)],
    )
    assert response.status_code == 200, response.text
    for name in (wheel.name, wheel.name + ".asc"):
        mode = (root_of(srv) / name).stat().st_mode & 0o777
        assert mode == 0o666 & ~umask, f"{name}: {oct(mode)}"


# ----------------------------------------------------------------------------- concurrency


def test_concurrent_uploads_of_different_files(srv: Server, tmp_path: Path) -> None:
    wheels = [big_wheel(tmp_path, "conc", f"1.{i}", 200_000 + 997 * i, seed=i) for i in range(20)]
    barrier = threading.Barrier(len(wheels))

    def send(path: Path) -> int:
        data = path.read_bytes()
        barrier.wait(timeout=30)
        return upload(srv, path.name, data).status_code

    with ThreadPoolExecutor(len(wheels)) as pool:
        statuses = list(pool.map(send, wheels))
    assert statuses == [200] * len(wheels)
    assert_published(srv, wheels, "conc")
    assert set(listed(srv, "conc")) == {w.name for w in wheels}
    assert temp_files(root_of(srv)) == []


def test_concurrent_uploads_of_the_same_file(srv: Server, tmp_path: Path) -> None:
    variants = [big_wheel(tmp_path / str(i), "same", "1.0", 300_000, seed=i) for i in range(10)]
    assert len({v.name for v in variants}) == 1
    barrier = threading.Barrier(len(variants))

    def send(path: Path) -> tuple[int, bytes, str]:
        data = path.read_bytes()
        barrier.wait(timeout=30)
        response = upload(srv, path.name, data)
        return response.status_code, data, response.text

    with ThreadPoolExecutor(len(variants)) as pool:
        results = list(pool.map(send, variants))
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [200] + [409] * 9, results
    (winner,) = [data for status, data, _ in results if status == 200]
    for status, _, text in results:
        if status == 409:
            assert "File already exists" in text
    stored = root_of(srv) / variants[0].name
    assert stored.read_bytes() == winner
    on_page = listed(srv, "same")
    assert on_page[stored.name]["hashes"]["sha256"] == hashlib.sha256(winner).hexdigest()
    assert HTTP.get(f"{srv.url}/packages/{stored.name}").content == winner
    assert temp_files(root_of(srv)) == []


def test_upload_killed_mid_body_leaves_nothing(srv: Server) -> None:
    filename = "killed-1.0.tar.gz"
    before = root_state(root_of(srv))
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name=":action"\r\n\r\nfile_upload\r\n'
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="content"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    total = len(head) + 800_000
    token = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    request = (
        "POST / HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{srv.port}\r\n"
        f"Authorization: {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {total}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(request + head + random_bytes(7, 400_000))
        # The part is being received into a spool file: the test watches the right place.
        assert wait_for(lambda: temp_files(root_of(srv)) != [], timeout=5)
    assert wait_for(lambda: temp_files(root_of(srv)) == [], timeout=5), temp_files(root_of(srv))
    assert root_state(root_of(srv)) == before
    assert listed(srv, "killed") == {}
    # The server is fine afterwards.
    assert HTTP.get(f"{srv.url}/health").status_code == 200


# ----------------------------------------------------------------------------- overwrite


@pytest.mark.parametrize("size", [20_000, 3_000_000], ids=["in-memory", "streamed"])
def test_overwrite_never_serves_a_torn_file(
    overwrite_srv: Server, tmp_path: Path, size: int
) -> None:
    """`-o`: re-uploads replace the file atomically while downloads run; each download is
    one version or the other, whole; after each upload the new version is what is served.
    """
    name = f"ovr{size}"
    versions = [
        make_wheel(
            tmp_path / str(i),
            name,
            "1.0",
            summary=f"version {i}",
            files={f"{name}/__init__.py": "", f"{name}/blob.bin": random_bytes(100 + i, size)},
        ).read_bytes()
        for i in range(2)
    ]
    filename = f"{name}-1.0-py3-none-any.whl"
    url = f"{overwrite_srv.url}/packages/{filename}"
    assert upload(overwrite_srv, filename, versions[0], auth=None).status_code == 200

    stop = threading.Event()
    problems: list[str] = []
    downloads = [0]

    def download_loop() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                response = client.get(url)
                downloads[0] += 1
                if response.status_code != 200:
                    problems.append(f"status {response.status_code}")
                elif response.content not in versions:
                    problems.append(f"torn body of {len(response.content)} bytes")

    threads = [threading.Thread(target=download_loop) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for i in range(1, 25):
            data = versions[i % 2]
            response = upload(overwrite_srv, filename, data, auth=None)
            assert response.status_code == 200, response.text
            # Read your writes: the bytes, the listed hash and the metadata are the new ones.
            assert HTTP.get(url).content == data
            entry = listed(overwrite_srv, name)[filename]
            assert entry["hashes"]["sha256"] == hashlib.sha256(data).hexdigest()
            metadata = HTTP.get(url + ".metadata").content
            assert f"Summary: version {i % 2}".encode() in metadata
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert problems == []
    assert downloads[0] > 24
    assert temp_files(root_of(overwrite_srv)) == []


def test_overwrite_drops_a_stale_signature(overwrite_srv: Server, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "ovr-sig", "1.0")
    signature = sign(wheel).read_bytes()
    response = upload(
        overwrite_srv,
        wheel.name,
        wheel.read_bytes(),
        auth=None,
        extra_files=[("gpg_signature", wheel.name + ".asc", signature)],
    )
    assert response.status_code == 200
    assert listed(overwrite_srv, "ovr-sig")[wheel.name]["gpg-sig"] is True
    # Replaced without a signature: the old one no longer describes the file.
    assert upload(overwrite_srv, wheel.name, wheel.read_bytes(), auth=None).status_code == 200
    assert listed(overwrite_srv, "ovr-sig")[wheel.name]["gpg-sig"] is False
    assert not (root_of(overwrite_srv) / (wheel.name + ".asc")).exists()


# ----------------------------------------------------------------------------- workers


CLOSE = {"Connection": "close"}


def test_read_your_writes_across_workers(workers_srv: Server, tmp_path: Path) -> None:
    missing: list[str] = []
    for i in range(12):
        wheel = make_wheel(tmp_path, f"ryw{i}", "1.0")
        response = HTTP.post(
            f"{workers_srv.url}/",
            data={":action": "file_upload"},
            files={"content": (wheel.name, wheel.read_bytes())},
            headers=CLOSE,
        )
        assert response.status_code == 200, response.text
        # Fresh connections, so the kernel hands them to either worker.
        for _ in range(8):
            page = HTTP.get(f"{workers_srv.url}/simple/ryw{i}/", headers=CLOSE)
            if page.status_code != 200 or wheel.name not in page.text:
                missing.append(f"ryw{i}: {page.status_code}")
            served = HTTP.get(f"{workers_srv.url}/packages/{wheel.name}", headers=CLOSE)
            if served.content != wheel.read_bytes():
                missing.append(f"ryw{i} file: {served.status_code}")
    assert missing == []

    # Which process answered what, from the access log (`%(process)d|...`).
    readers: dict[str, set[str]] = {}
    writers: set[str] = set()
    for line in workers_srv.log().splitlines():
        match = re.match(r'(\d+)\|creamery\.access\|.*"(GET|POST) (\S+) ', line)
        if match is None:
            continue
        pid, method, path = match.groups()
        if method == "POST":
            writers.add(pid)
        elif path.startswith("/simple/ryw"):
            readers.setdefault(path, set()).add(pid)
    assert len(readers) == 12 and writers, workers_srv.log()[-3000:]
    # A project read by both workers was read by one that did not receive its upload.
    assert any(len(pids) == 2 for pids in readers.values()), readers


# ----------------------------------------------------------------------------- removal


def test_remove_pkg_over_http(srv: Server, tmp_path: Path) -> None:
    files = [
        make_wheel(tmp_path, "Rm.Me", "1.0"),
        make_sdist(tmp_path, "Rm.Me", "1.0", filename_name="Rm_Me"),
        make_wheel(tmp_path, "Rm.Me", "2.0"),
    ]
    signature = sign(files[0]).read_bytes()
    for i, path in enumerate(files):
        extra = [("gpg_signature", path.name + ".asc", signature)] if i == 0 else []
        response = upload(srv, path.name, path.read_bytes(), extra_files=extra)
        assert response.status_code == 200, response.text
    assert len(listed(srv, "rm-me")) == 3
    yanked = HTTP.post(
        f"{srv.url}/-/yank", json={"project": "rm-me", "version": "1.0", "reason": "x"}, auth=AUTH
    )
    assert yanked.status_code == 200, yanked.text

    def remove(name: str, version: str, auth=AUTH) -> httpx.Response:
        return post_form(
            srv, [(":action", "remove_pkg"), ("name", name), ("version", version)], auth=auth
        )

    assert remove("rm-me", "1.0", auth=None).status_code == 401
    assert remove("rm-me", "1.0", auth=(USER, "wrong")).status_code == 403
    response = remove("RM_me", "1.0.0")  # any spelling of the name, PEP 440 equal version
    assert response.status_code == 200, response.text
    assert set(listed(srv, "rm-me")) == {files[2].name}
    gone = [
        files[0].name,
        files[0].name + ".asc",
        files[0].name + ".metadata",
        files[0].name + ".yanked",
        files[1].name,
        files[1].name + ".yanked",
    ]
    for name in gone:
        assert not (root_of(srv) / name).exists(), name
        assert HTTP.get(f"{srv.url}/packages/{name}").status_code == 404

    missing = remove("rm-me", "1.0")
    assert missing.status_code == 404
    assert_one_line(missing, "not found")
    unknown = remove("no-such-project", "1.0")
    assert unknown.status_code == 404
    no_version = post_form(srv, [(":action", "remove_pkg"), ("name", "rm-me")])
    assert no_version.status_code == 400
    assert_one_line(no_version, "version")

    assert remove("rm.me", "2.0").status_code == 200
    assert HTTP.get(f"{srv.url}/simple/rm-me/").status_code == 404
    assert "rm-me" not in HTTP.get(f"{srv.url}/simple/").text
    assert temp_files(root_of(srv)) == []


def test_remove_cli(srv: Server, tmp_path: Path) -> None:
    root = root_of(srv)
    files = [
        make_wheel(tmp_path, "cli-rm", "1.0"),
        make_sdist(tmp_path, "cli-rm", "1.0"),
        make_wheel(tmp_path, "cli-rm", "2.0"),
    ]
    for path in files:
        assert upload(srv, path.name, path.read_bytes()).status_code == 200
    result = creamery("remove", "CLI_Rm", "1.0", str(root))
    assert result.returncode == 0, describe(result)
    assert files[0].name in result.stdout and files[1].name in result.stdout
    assert not (root / files[0].name).exists() and not (root / files[1].name).exists()
    assert not (root / (files[0].name + ".metadata")).exists()
    # The running server learns of it through file-system events.
    assert wait_for(lambda: set(listed(srv, "cli-rm")) == {files[2].name}), listed(srv, "cli-rm")

    result = creamery("remove", "cli-rm", "1.0", str(root))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "not found" in result.stderr

    result = creamery("remove", "cli.rm", str(root))  # no version: the whole project
    assert result.returncode == 0, describe(result)
    assert not (root / files[2].name).exists()
    assert wait_for(lambda: listed(srv, "cli-rm") == {})
