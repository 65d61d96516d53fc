"""Hostile archives and filenames (issue 8 items 2, 10, 11; issue 9 items 5, 6, 16).

Archive bombs, sdists that lie, wheel tags that spoof, the upload policies, files pypiserver
lists, and metadata read as the public index reads it: unit tables for the pure rules, and real
`creamery run` processes for uploads (twine and hand-made multipart requests) and for files
placed in the directory by other means.
"""

from __future__ import annotations

import gzip
import io
import re
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.clients import client_env, describe, run_client
from support.dists import (
    core_metadata,
    inflating_wheel,
    make_sdist,
    make_wheel,
    many_member_sdist,
    many_member_wheel,
)
from support.forms import upload
from support.servers import Server, run_server
from support.wire import JSON_ACCEPT, listed

from creamery.catalog.facts import dedent_header_description
from creamery.core import archives
from creamery.http.form import FormError
from creamery.web.upload import check_filename

HTTP = httpx.Client(timeout=60)


# ----------------------------------------------------------------------------- builders


def tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return gzip.compress(buffer.getvalue())


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def legacy_pkg_info(name: str, version: str, description: str) -> bytes:
    """Metadata 1.1 as distutils wrote it: the description a header, continued by 8 spaces."""
    folded = description.replace("\n", "\n        ")
    return (
        f"Metadata-Version: 1.1\nName: {name}\nVersion: {version}\nSummary: The {name} project\n"
        f"Description: {folded}\nPlatform: UNKNOWN\n"
    ).encode()


def egg(name: str, version: str, summary: str) -> bytes:
    pkg_info = f"Metadata-Version: 1.1\nName: {name}\nVersion: {version}\nSummary: {summary}\n"
    return zip_bytes({"EGG-INFO/PKG-INFO": pkg_info.encode(), f"{name}/__init__.py": b""})


# ----------------------------------------------------------------------------- unit: archives


def test_zip_entry_count_is_read_before_the_central_directory(tmp_path: Path) -> None:
    path = many_member_wheel(tmp_path, "bomb", "1.0", 200_000)
    with path.open("rb") as raw:
        assert archives.zip_entry_count(raw) == 200_001  # zip64: more than 65,535
    assert len(zipfile.ZipFile(path).infolist()) == 200_001  # the builder writes a real zip
    started = time.monotonic()
    with pytest.raises(archives.ArchiveLimitError, match="more than 50,000 archive members"):
        archives.inspect(path, path.name, "wheel", complete=True)
    assert time.monotonic() - started < 0.5


def test_tar_members_are_counted_as_they_stream(tmp_path: Path) -> None:
    path = many_member_sdist(tmp_path, "bomb", "1.0", 300_000)
    assert path.stat().st_size < 2 << 20
    with pytest.raises(archives.ArchiveLimitError, match="archive members"):
        archives.inspect(path, path.name, "sdist", complete=True)
    (tmp_path / "ok").mkdir()
    within = many_member_sdist(tmp_path / "ok", "fine", "1.0", 1_000)
    found = archives.inspect(within, within.name, "sdist", complete=True)
    assert found.member == "fine-1.0/PKG-INFO"


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_tar_reader_reads_the_names_tarfile_writes(fmt: int) -> None:
    names = ["p-1.0/PKG-INFO", f"p-1.0/{'d' * 90}/{'x' * 60}.py", "p-1.0/\u00e9t\u00e9.txt"]
    if fmt != tarfile.USTAR_FORMAT:
        names.append(f"p-1.0/{'long' * 50}.py")  # a GNU long name or a pax path
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as archive:
        for index, name in enumerate(names):
            info = tarfile.TarInfo(name)
            info.size = index * 300
            archive.addfile(info, io.BytesIO(b"x" * info.size))
        folder = tarfile.TarInfo("p-1.0/sub")
        folder.type = tarfile.DIRTYPE
        archive.addfile(folder)
    buffer.seek(0)
    reader = archives.TarReader(buffer)
    seen = []
    while (member := reader.next()) is not None:
        seen.append((member.name, member.size, member.is_file))
    assert seen == [(n, i * 300, True) for i, n in enumerate(names)] + [("p-1.0/sub/", 0, False)]


def test_metadata_size_and_ratio_are_bounded(tmp_path: Path) -> None:
    big = inflating_wheel(tmp_path, "inflated", "1.0", 7_300_000)
    assert big.stat().st_size < 64 << 10
    with pytest.raises(archives.ArchiveLimitError, match="METADATA larger than 2 MiB"):
        archives.inspect(big, big.name, "wheel")
    zeros = tmp_path / "zeros-1.0-py3-none-any.whl"
    zeros.write_bytes(
        zip_bytes(
            {
                "zeros-1.0.dist-info/METADATA": core_metadata("zeros", "1.0").encode(),
                "zeros/blob.bin": b"\0" * (100 << 20),
            }
        )
    )
    with pytest.raises(archives.ArchiveLimitError, match="compression ratio above 50:1"):
        archives.inspect(zeros, zeros.name, "wheel")
    sdist = tmp_path / "zeros-1.0.tar.gz"
    sdist.write_bytes(tar_gz({"zeros-1.0/blob.bin": b"\0" * (100 << 20)}))
    with pytest.raises(archives.ArchiveLimitError, match="compression ratio above 50:1"):
        archives.inspect(sdist, sdist.name, "sdist")


@pytest.mark.parametrize(
    ("filename", "data", "reason"),
    [
        ("rand-1.0.tar.gz", b"\x8b" * 2000, "not a valid tar archive"),
        ("rand-1.0.tar.gz", gzip.compress(b"not a tar" * 100, mtime=0), "not a valid tar archive"),
        ("rand-1.0.zip", b"PK" + b"x" * 2000, "not a valid zip archive"),
        ("rand-1.0-py3-none-any.whl", b"", "not a valid zip archive"),
    ],
)
def test_broken_archives(tmp_path: Path, filename: str, data: bytes, reason: str) -> None:
    path = tmp_path / filename
    path.write_bytes(data)
    with pytest.raises(archives.ArchiveError, match=reason) as raised:
        archives.inspect(path, filename, "wheel" if filename.endswith(".whl") else "sdist")
    assert not isinstance(raised.value, archives.ArchiveLimitError)


def test_metadata_of_each_kind(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "demo", "1.0")
    sdist = make_sdist(tmp_path, "demo", "1.0")
    egg_path = tmp_path / "demo-1.0-py2.7.egg"
    egg_path.write_bytes(egg("demo", "1.0", "An egg"))
    assert archives.inspect(wheel, wheel.name, "wheel").member == "demo-1.0.dist-info/METADATA"
    assert archives.inspect(sdist, sdist.name, "sdist").member == "demo-1.0/PKG-INFO"
    found = archives.inspect(egg_path, egg_path.name, "egg")
    assert found.member == "EGG-INFO/PKG-INFO" and b"Summary: An egg" in (found.metadata or b"")


def test_header_description_loses_its_continuation_indent() -> None:
    raw = legacy_pkg_info("docopt", "0.6.2", "Title\n=====\n\n    code\n       |x")
    parsed = dedent_header_description(
        raw, "Title\n        =====\n        \n            code\n       |x"
    )
    assert parsed == "Title\n=====\n\n    code\nx"
    raw = legacy_pkg_info("a", "1", "\nTitle\n\n    code\n")
    assert dedent_header_description(
        raw, "\r\n        Title\r\n        \r\n            code\r\n"
    ) == ("Title\n\n    code")
    body = b"Metadata-Version: 2.1\nName: a\nVersion: 1\n\nText\n        indented\n"
    assert dedent_header_description(body, "Text\n        indented\n") == "Text\n        indented\n"


# ----------------------------------------------------------------------------- unit: filenames


STRICT_REJECTS = [
    ("demo-2.1-py3-none-any\u202elmth.whl", "control characters"),
    ("demo-2.1-py3-none-any\u2028.whl", "control characters"),
    ("demo-2.1\u200f.tar.gz", "control characters"),
    ("demo-2.1-py3-none-<img src=x onerror=alert(1)>.whl", "invalid wheel tag"),
    ('demo-2.1-py3-none-a" b.whl', "invalid wheel tag"),
    ("demo-2.1-py3-n\u00f6ne-any.whl", "invalid wheel tag"),
    ("demo-2.1-1x$-py3-none-any.whl", "invalid build tag"),
    ("demo-2.1-py2.7-linux-x86_64.egg", "eggs are not accepted"),
    ("gevent-1.0b1.win32-py2.7.msi", r"only wheels and \.tar\.gz or \.zip sdists"),
    ("gevent-1.0b1.win32-py2.6.exe", r"only wheels and \.tar\.gz or \.zip sdists"),
    ("pytz-2012b.tgz", r"only wheels and \.tar\.gz or \.zip sdists"),
    ("pytz-2012b.tar.bz2", r"only wheels and \.tar\.gz or \.zip sdists"),
    ("package-v1-8.1.301.ga0df26f.zip", "invalid version"),
    ("test-1.0-py2-py3-none-any.whl", "invalid distribution filename"),
    ("package.zip", "invalid distribution filename"),
]


@pytest.mark.parametrize(("filename", "reason"), STRICT_REJECTS, ids=lambda v: ascii(v))
def test_strict_policy_rejects(filename: str, reason: str) -> None:
    with pytest.raises(FormError) as raised:
        check_filename(filename, "strict")
    assert raised.value.status == 400
    assert re.search(reason, raised.value.reason), raised.value.reason


PYPISERVER_ACCEPTS = [
    ("package-v1-8.1.301.ga0df26f.zip", "package-v1", "8.1.301.ga0df26f"),
    ("pkg-3!1.0-0.1.tgz", "pkg", "3!1.0-0.1"),
    ("gevent-1.0b1.win32-py2.7.msi", "gevent", "1.0b1"),
    ("gevent-1.0b1.win32-py2.6.exe", "gevent", "1.0b1"),
    ("greenlet-0.3.4-py2.7-linux-x86_64.egg", "greenlet", "0.3.4"),
    ("test-1.0-py2-py3-none-any.whl", "test", "1.0"),
    ("pytz-2012b.tar.bz2", "pytz", "2012b"),
    ("demo-2.1-py3-none-any.whl", "demo", "2.1"),
]


@pytest.mark.parametrize(("filename", "project", "version"), PYPISERVER_ACCEPTS, ids=str)
def test_pypiserver_policy_accepts(filename: str, project: str, version: str) -> None:
    parsed = check_filename(filename, "pypiserver")
    assert (parsed.project, parsed.version) == (project, version)


@pytest.mark.parametrize(
    "filename",
    [
        "demo-2.1-py3-none-<img src=x>.whl",  # pypiserver: only [a-z0-9_.!+-]
        "a b-1.0.zip",
        "demo-2.1-py3-none-any\u202elmth.whl",
        "notes.txt",
        "some_wheel.whl",
    ],
    ids=ascii,
)
def test_pypiserver_policy_rejects(filename: str) -> None:
    with pytest.raises(FormError) as raised:
        check_filename(filename, "pypiserver")
    assert raised.value.status == 400


def test_strict_accepts_the_specs() -> None:
    for filename in (
        "demo-2.1-py3-none-any.whl",
        "demo-2.1-1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "demo-2.1-py2.py3-none-any.whl",
        "demo-2.1.tar.gz",
        "Demo.Legacy-2.1.zip",
    ):
        assert check_filename(filename, "strict").version == "2.1"


# ----------------------------------------------------------------------------- servers


def peak_rss_kib(server: Server) -> int:
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", status).group(1))  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    where = tmp_path_factory.mktemp("bombs")
    return {
        "tar": many_member_sdist(where, "bomb", "1.0", 300_000),
        "zip": many_member_wheel(where, "bomb", "1.0", 200_000),
        "inflated": inflating_wheel(where, "bomb", "1.1", 7_300_000),
    }


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("strict-root")
    with run_server([root], "-P", ".", "-a", ".", "--disable-fallback") as server:
        yield server


@pytest.fixture(scope="module")
def lenient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The pypiserver policy, set through the environment (the settings layer)."""
    root = tmp_path_factory.mktemp("lenient-root")
    env = {"CREAMERY_UPLOAD_POLICY": "pypiserver"}
    with run_server([root], "-P", ".", "-a", ".", "--disable-fallback", env=env) as server:
        yield server


def root_files(server: Server) -> list[str]:
    root = server.roots[0]
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and not p.relative_to(root).as_posix().startswith(".creamery/")
    )


@pytest.mark.parametrize(
    ("bomb", "limit"),
    [
        ("tar", "more than 50,000 archive members"),
        ("zip", r"more than 50,000 archive members \(200,001\)"),
        ("inflated", r"\S+\.dist-info/METADATA larger than 2 MiB"),
    ],
)
@pytest.mark.parametrize("policy", ["strict", "lenient"])
def test_archive_bombs_are_refused_at_upload(
    request: pytest.FixtureRequest, bombs: dict[str, Path], bomb: str, limit: str, policy: str
) -> None:
    server: Server = request.getfixturevalue(policy)
    before = root_files(server)
    peak = peak_rss_kib(server)
    started = time.monotonic()
    response = upload(server, bombs[bomb].name, bombs[bomb].read_bytes())
    elapsed = time.monotonic() - started
    assert response.status_code == 400, response.text
    assert re.search(f"exceeds an archive limit: {limit}", response.text), response.text
    assert len(response.text.strip().splitlines()) == 1
    assert root_files(server) == before  # no trace
    assert elapsed < 10
    if bomb == "zip":  # the 200,000 entries were never parsed: +107 MB before the fix
        assert peak_rss_kib(server) - peak < 30_000


def test_sdists_are_inspected(strict: Server, tmp_path: Path) -> None:
    rejected = {
        "rand-1.0.tar.gz": (b"\x1f\x8b" + bytes(range(256)) * 8, "is not a valid tar archive"),
        "other-1.0.tar.gz": (
            tar_gz({"other-1.0/PKG-INFO": core_metadata("someone-else", "1.0").encode()}),
            "PKG-INFO Name 'someone-else' does not match",
        ),
        "wrongver-1.0.tar.gz": (
            tar_gz({"wrongver-1.0/PKG-INFO": core_metadata("wrongver", "2.0").encode()}),
            "PKG-INFO Version '2.0' does not match",
        ),
        "nometa-1.0.tar.gz": (
            tar_gz({"nometa-1.0/setup.py": b""}),
            "has no PKG-INFO with Name and Version",
        ),
        "zipped-1.0.zip": (
            zip_bytes({"zipped-1.0/PKG-INFO": core_metadata("zipped", "3.0").encode()}),
            "PKG-INFO Version '3.0' does not match",
        ),
    }
    for filename, (data, reason) in rejected.items():
        response = upload(strict, filename, data)
        assert response.status_code == 400, (filename, response.text)
        assert reason in response.text, (filename, response.text)
    assert root_files(strict) == []
    good = make_sdist(tmp_path, "goodsdist", "1.0")
    assert upload(strict, good.name, good.read_bytes()).status_code == 200
    assert set(listed(strict, "goodsdist")) == {good.name}


@pytest.mark.parametrize(
    "filename",
    [
        "demo-2.1-py3-none-any\u202elmth.whl",
        "demo-2.1-py3-none-any\u2028.whl",
        "demo-2.1-py3-none-<img src=x onerror=alert(1)>.whl",
        "demo-2.1-py3-none-a b.whl",
    ],
    ids=ascii,
)
def test_wheel_tags_are_checked_at_upload(strict: Server, tmp_path: Path, filename: str) -> None:
    data = make_wheel(tmp_path, "demo", "2.1").read_bytes()
    response = upload(strict, filename, data)
    assert response.status_code == 400, response.text
    assert "invalid wheel tag" in response.text or "control characters" in response.text
    assert listed(strict, "demo") == {}


def test_twine_upload_of_a_mismatched_sdist_is_refused(strict: Server, tmp_path: Path) -> None:
    """A real client: twine reads PKG-INFO (name `honest`) and sends it; the file says `liar`."""
    sdist = make_sdist(tmp_path, "honest", "1.0", filename_name="liar")
    home = tmp_path / "home"
    command = [sys.executable, "-m", "twine", "upload", "--verbose", "--disable-progress-bar"]
    command += ["--repository-url", strict.url + "/", "-u", "x", "-p", "x", str(sdist)]
    result = run_client(command, client_env(home))
    assert result.returncode != 0, describe(result)
    assert "does not match" in result.stdout + result.stderr, describe(result)
    good = make_sdist(tmp_path, "twined", "1.0")
    result = run_client([*command[:-1], str(good)], client_env(home))
    assert result.returncode == 0, describe(result)
    assert set(listed(strict, "twined")) == {good.name}


def test_pypiserver_policy_uploads(lenient: Server, tmp_path: Path) -> None:
    """What pypiserver 2.x accepts, including names and formats PyPI refuses."""
    wheel = make_wheel(tmp_path, "test", "1.0").read_bytes()
    uploads = {
        "package-v1-8.1.301.ga0df26f.zip": (zip_bytes({"x/setup.py": b""}), "package-v1"),
        "pkg-3!1.0-0.1.tgz": (tar_gz({"pkg/setup.py": b""}), "pkg"),
        "gevent-1.0b1.win32-py2.7.msi": (b"MSI installer bytes", "gevent"),
        "gevent-1.0b1.win32-py2.6.exe": (b"MZ installer bytes", "gevent"),
        "greenlet-0.3.4-py2.7-linux-x86_64.egg": (egg("greenlet", "0.3.4", "eggs"), "greenlet"),
        "test-1.0-py2-py3-none-any.whl": (wheel, "test"),
        "random-1.0.tar.gz": (b"random bytes, as pypiserver takes them", "random"),
    }
    for filename, (data, _project) in uploads.items():
        response = upload(lenient, filename, data)
        assert response.status_code == 200, (filename, response.text)
    for filename, (_data, project) in uploads.items():
        assert filename in listed(lenient, project), (filename, listed(lenient, project))
    versions = HTTP.get(f"{lenient.url}/simple/pkg/", headers=JSON_ACCEPT).json()["versions"]
    assert versions == ["3!1.0-0.1"]
    # Still refused under this policy: unsafe characters, names pypiserver refuses.
    assert upload(lenient, "demo-1.0\u202e.zip", b"x").status_code == 400
    assert upload(lenient, "demo-1.0-py3-none-<b>.whl", wheel).status_code == 400


def test_strict_refuses_what_only_pypiserver_takes(strict: Server) -> None:
    for filename, reason in (
        ("package-v1-8.1.301.ga0df26f.zip", "invalid version"),
        ("gevent-1.0b1.win32-py2.7.msi", "PEP 527"),
        ("greenlet-0.3.4-py2.7-linux-x86_64.egg", "eggs are not accepted"),
    ):
        response = upload(strict, filename, zip_bytes({"x": b""}))
        assert response.status_code == 400 and reason in response.text, response.text
        assert "--upload-policy pypiserver" in response.text or reason == "invalid version"


# ----------------------------------------------------------------------------- placed in the root


@pytest.fixture(scope="module")
def placed(tmp_path_factory: pytest.TempPathFactory, bombs: dict[str, Path]) -> Iterator[Server]:
    """Files copied into the directory by other means: bombs, legacy names, old metadata."""
    root = tmp_path_factory.mktemp("placed-root")
    for path in bombs.values():
        (root / path.name).write_bytes(path.read_bytes())
    make_wheel(root, "bomb", "0.9", summary="the honest one")
    make_wheel(root, "test", "1.0")
    (root / "test-1.0-py3-none-any.whl").rename(root / "test-1.0-py2-py3-none-any.whl")
    (root / "greenlet-0.3.4-py2.7-linux-x86_64.egg").write_bytes(
        egg("greenlet", "0.3.4", "Lightweight in-process concurrent programming")
    )
    description = "``docopt`` creates *beautiful* interfaces\n===\n\n    indented code\n\nEnd"
    (root / "docopt-0.6.2.tar.gz").write_bytes(
        tar_gz({"docopt-0.6.2/PKG-INFO": legacy_pkg_info("docopt", "0.6.2", description)})
    )
    # As MySQL-python 1.2.5's: CRLF lines, the description starting on the next line.
    next_line = legacy_pkg_info("mysql-python", "1.2.5", "\nTitle\n=====\n\nText\n")
    (root / "MySQL-python-1.2.5.zip").write_bytes(
        zip_bytes({"MySQL-python-1.2.5/PKG-INFO": next_line.replace(b"\n", b"\r\n")})
    )
    (root / "package.zip").write_bytes(zip_bytes({"package/setup.py": b""}))
    with run_server([root], "-P", ".", "-a", ".", "--disable-fallback") as server:
        yield server


def test_placed_bombs_are_listed_without_their_metadata(placed: Server) -> None:
    started = time.monotonic()
    response = HTTP.get(f"{placed.url}/simple/bomb/", headers=JSON_ACCEPT)
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert elapsed < 8, f"the first page took {elapsed:.1f} s"
    files = {f["filename"]: f for f in response.json()["files"]}
    assert set(files) == {
        "bomb-1.0.tar.gz",
        "bomb-1.0-py3-none-any.whl",
        "bomb-1.1-py3-none-any.whl",
        "bomb-0.9-py3-none-any.whl",
    }
    for name in ("bomb-1.0.tar.gz", "bomb-1.0-py3-none-any.whl", "bomb-1.1-py3-none-any.whl"):
        assert files[name].get("core-metadata", False) is False, files[name]
        assert files[name]["hashes"]["sha256"]  # the other facts are still there
    assert files["bomb-0.9-py3-none-any.whl"]["core-metadata"]
    assert HTTP.get(f"{placed.url}/simple/bomb/").status_code == 200  # the HTML page too
    missing = HTTP.get(f"{placed.url}/packages/bomb-1.1-py3-none-any.whl.metadata")
    assert missing.status_code == 404
    log = placed.log()
    for name in ("bomb-1.0.tar.gz", "bomb-1.0-py3-none-any.whl", "bomb-1.1-py3-none-any.whl"):
        lines = [line for line in log.splitlines() if name in line and "not reading" in line]
        assert len(lines) == 1, (name, lines)
    assert "more than 50,000 archive members" in log and "larger than 2 MiB" in log


def test_what_pypiserver_lists_is_served_and_removable(placed: Server) -> None:
    assert "test-1.0-py2-py3-none-any.whl" in listed(placed, "test")
    assert "package.zip" in listed(placed, "package")
    assert listed(placed, "package")["package.zip"]["hashes"]["sha256"]
    for path in ("/pypi/package/json", "/pypi/test/json", "/packages/", "/", "/simple/package/"):
        response = HTTP.get(placed.url + path)
        assert response.status_code == 200, (path, response.status_code, response.text[:200])
    assert "package.zip" in HTTP.get(placed.url + "/packages/").text
    assert HTTP.get(placed.url + "/packages/package.zip").content.startswith(b"PK")
    fields = {":action": "remove_pkg", "name": "test", "version": "1.0"}
    response = HTTP.post(placed.url + "/", files={"x": ("", b"")}, data=fields)
    assert response.status_code == 200, response.text
    assert not (placed.roots[0] / "test-1.0-py2-py3-none-any.whl").exists()
    assert listed(placed, "test") == {}


def test_egg_metadata_is_read(placed: Server) -> None:
    info = HTTP.get(f"{placed.url}/pypi/greenlet/json").json()["info"]
    assert info["summary"] == "Lightweight in-process concurrent programming"
    found = xmlrpc_search(placed, "greenlet")
    assert "Lightweight" in found


def xmlrpc_search(server: Server, term: str) -> str:
    body = (
        "<?xml version='1.0'?><methodCall><methodName>search</methodName><params><param><value>"
        "<struct><member><name>name</name><value><array><data><value><string>"
        f"{term}</string></value></data></array></value></member></struct></value></param>"
        "<param><value><string>or</string></value></param></params></methodCall>"
    )
    response = HTTP.post(server.url + "/RPC2", content=body, headers={"Content-Type": "text/xml"})
    assert response.status_code == 200, response.text
    return response.text


def test_metadata_1_descriptions_lose_the_continuation_indent(placed: Server) -> None:
    info = HTTP.get(f"{placed.url}/pypi/docopt/0.6.2/json").json()["info"]
    assert info["description"] == (
        "``docopt`` creates *beautiful* interfaces\n===\n\n    indented code\n\nEnd"
    )
    # PyPI (twine reads PKG-INFO with pkginfo) has no blank first line nor trailing blanks.
    info = HTTP.get(f"{placed.url}/pypi/mysql-python/1.2.5/json").json()["info"]
    assert info["description"] == "Title\n=====\n\nText"
