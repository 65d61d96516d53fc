"""PyPI's upload checks under the strict policy (`catalog/upload_checks.py`).

The rules one by one (valid, invalid and hostile input), then real uploads: twine and uv to a
strict server that refuses a plain-linux wheel, a bad description content type and a version
mismatch with one line and stores nothing, accepts a legacy-named sdist with a warning the
uploader can see, and a `--upload-policy pypiserver` server that takes them all.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.clients import describe, twine_upload, uv_publish
from support.dists import core_metadata, make_sdist, make_wheel
from support.forms import upload
from support.servers import Server, run_server
from support.wire import listed

from creamery.catalog import upload_checks
from creamery.catalog.upload_checks import (
    content_type_problem,
    metadata_checks,
    metadata_version_check,
    pep625_filename,
    sdist_name_warning,
    valid_platform_tag,
    version_problem,
    wheel_tags_problem,
)
from creamery.web.upload import Outcome as upload_outcome
from creamery.web.writes import MAX_WARNING_HEADER, _outcome_response

WARNING = "X-Creamery-Warning"

# ----------------------------------------------------------------------------- platform tags


@pytest.mark.parametrize(
    "tag",
    [
        "any",
        "win32",
        "win_amd64",
        "win_arm64",
        "win_ia64",
        "manylinux1_x86_64",
        "manylinux2010_i686",
        "manylinux2014_aarch64",
        "manylinux_2_17_x86_64",
        "manylinux_2_28_ppc64",
        "manylinux_2_39_riscv64",
        "musllinux_1_2_aarch64",
        "macosx_10_9_x86_64",
        "macosx_10_15_universal2",
        "macosx_11_0_arm64",
        "macosx_14_0_universal2",
        "macosx_26_0_arm64",
        "ios_13_0_arm64_iphoneos",
        "ios_12_0_x86_64_iphonesimulator",
        "android_21_arm64_v8a",
        "android_24_x86_64",
        "pyemscripten_2024_0_wasm32",
        "linux_armv7l",  # piwheels' Raspberry Pi wheels, which PyPI takes
    ],
)
def test_platform_tags_pypi_accepts(tag: str) -> None:
    assert valid_platform_tag(tag)


@pytest.mark.parametrize(
    "tag",
    [
        "linux_x86_64",
        "linux_aarch64",
        "manylinux_2_17_sparc",
        "musllinux_1_2_ppc64",  # ppc64 (big-endian) is manylinux-only
        "manylinux2014_riscv64",
        "macosx_11_1_arm64",  # from macOS 11 on, PyPI takes <major>_0 only
        "macosx_16_0_arm64",
        "macosx_10_9_arm65",
        "ios_13_0_arm64",
        "android_21_mips",
        "emscripten_3_1_58_wasm32",
        "freebsd_13_x86_64",
        "ANY",
        "win_amd64 ",
        "manylinux_2_17_x86_64\n",
        "manylinux_\u0662_17_x86_64",  # a non-ASCII digit
        "",
        "x" * 100_000,
    ],
)
def test_platform_tags_pypi_refuses(tag: str) -> None:
    assert not valid_platform_tag(tag)


def test_plain_linux_wheel_is_refused_saying_why() -> None:
    problem = wheel_tags_problem("demo-1.0-cp311-cp311-linux_x86_64.whl")
    assert problem is not None
    assert "plain linux" in problem and "not portable" in problem
    assert "auditwheel" in problem and "manylinux" in problem


def test_every_tag_of_a_compressed_set_is_checked() -> None:
    good = "demo-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    assert wheel_tags_problem(good) is None
    bad = "demo-1.0-cp311-cp311-manylinux_2_17_x86_64.linux_x86_64.whl"
    assert "plain linux" in (wheel_tags_problem(bad) or "")
    odd = "demo-1.0-py3-none-any.solaris_2_11_sparc.whl"
    assert "does not accept: 'solaris_2_11_sparc'" in (wheel_tags_problem(odd) or "")


@pytest.mark.parametrize(
    "filename",
    [
        "demo-1.0-py3-none-any.whl",
        "demo-1.0-py2.py3-none-any.whl",
        "demo-1.0-1-cp313-cp313t-win_amd64.whl",
        "demo-1.0-pp310-pypy310_pp73-manylinux_2_17_x86_64.whl",
        "demo-1.0-cp39-abi3-macosx_11_0_arm64.whl",
        "demo-1.0-graalpy311-graalpy242_311_native-manylinux_2_28_aarch64.whl",
    ],
)
def test_python_and_abi_tags_of_real_wheels_pass(filename: str) -> None:
    assert wheel_tags_problem(filename) is None


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("demo-1.0-3-none-any.whl", "invalid Python tag '3'"),
        ("demo-1.0-py-none-any.whl", "invalid Python tag 'py'"),
        ("demo-1.0-py3-3abi-any.whl", "invalid ABI tag '3abi'"),
        ("demo-1.0-py3..py2-none-any.whl", "empty Python tag"),
        ("demo-1.0-" + ".".join(["py3"] * 65) + "-none-any.whl", "65 Python tags"),
        ("demo-1.0-py3-none-" + ".".join(["any"] * 1000) + ".whl", "1000 platform tags"),
    ],
)
def test_malformed_python_and_abi_tags_are_refused(filename: str, expected: str) -> None:
    assert expected in (wheel_tags_problem(filename) or "")


# ----------------------------------------------------------------------------- core metadata


@pytest.mark.parametrize("value", upload_checks.METADATA_VERSIONS)
def test_every_legal_metadata_version_passes(value: str) -> None:
    assert metadata_version_check(value, "METADATA") == (None, None)


def test_a_newer_minor_metadata_version_is_accepted_with_a_warning() -> None:
    refusal, warning = metadata_version_check("2.9", "METADATA")
    assert refusal is None
    assert warning is not None and "2.9 is newer than 2.6" in warning


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "no Metadata-Version"),
        ("", "no Metadata-Version"),
        ("3.0", "newer major version"),
        ("2.0", "is not one of"),  # PEP 426's, withdrawn: never a legal value
        ("1.3", "is not one of"),
        ("two", "is not one of"),
        ("2.1.0", "is not one of"),
        ("9" * 10_000 + ".1", "is not one of"),
    ],
)
def test_unknown_metadata_versions_are_refused(value: str | None, expected: str) -> None:
    refusal, warning = metadata_version_check(value, "METADATA")
    assert refusal is not None and expected in refusal
    assert len(refusal) < 1200 and warning is None


@pytest.mark.parametrize("value", ["1.0", "2!1.0.post1.dev3+local.7", "1.0rc1", "v1.0"])
def test_pep440_versions_pass(value: str) -> None:
    assert version_problem(value, "PKG-INFO") is None


@pytest.mark.parametrize("value", ["1.0-beta-final", "latest", "1" * 5000, "1.0\x00"])
def test_versions_packaging_cannot_read_are_refused(value: str) -> None:
    problem = version_problem(value, "PKG-INFO")
    assert problem is not None and "is not a valid version" in problem and len(problem) < 1200


@pytest.mark.parametrize(
    "value",
    [
        "text/plain",
        "text/x-rst",
        "text/markdown",
        "TEXT/Markdown",
        "text/plain; charset=UTF-8",
        "text/x-rst; charset=utf-8",
        "text/markdown; charset=UTF-8; variant=GFM",
        "text/markdown; variant=CommonMark",
        'text/markdown; variant="GFM"',
        "text/plain; format=flowed",  # other parameters are left alone
    ],
)
def test_valid_description_content_types(value: str) -> None:
    assert content_type_problem(value, "Description-Content-Type") is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("text/html", "not a valid description content type"),
        ("markdown", "not a valid description content type"),
        ("", "not a valid description content type"),
        ("text/plain; charset=latin-1", "only charset allowed is UTF-8"),
        ("text/x-rst; charset=UTF-16", "only charset allowed is UTF-8"),
        ("text/markdown; variant=Markdown", "variant must be GFM or CommonMark"),
        ("text/markdown; variant=gfm", "variant must be GFM or CommonMark"),
        ("text/plain; charset", "malformed parameter"),
        ("text/html" + "x" * 100_000, "not a valid description content type"),
    ],
)
def test_invalid_description_content_types(value: str, expected: str) -> None:
    problem = content_type_problem(value, "Description-Content-Type")
    assert problem is not None and expected in problem
    assert len(problem) < 1200 and "\n" not in problem


def test_metadata_checks_read_the_fields_from_bytes() -> None:
    good = core_metadata("demo", "1.0", extra_headers=["Description-Content-Type: text/markdown"])
    assert metadata_checks(good.encode(), "METADATA") == (None, [])
    bad = core_metadata("demo", "1.0", extra_headers=["Description-Content-Type: text/html"])
    refusal, _ = metadata_checks(bad.encode(), "METADATA")
    assert refusal is not None and "METADATA Description-Content-Type 'text/html'" in refusal
    newer = core_metadata("demo", "1.0", metadata_version="2.7")
    assert metadata_checks(newer.encode(), "METADATA")[1] != []


@pytest.mark.parametrize(
    "field", ["Metadata-Version", "Name", "Version", "Description-Content-Type"]
)
def test_a_single_use_field_given_twice_is_refused(field: str) -> None:
    """`email` reads the first of two fields, `dict(msg.items())` the last: a second
    Description-Content-Type would pass the check unseen, a second Version tell installers
    another version than the one checked against the filename."""
    values = {
        "Metadata-Version": "2.1",
        "Name": "demo",
        "Version": "1.0",
        "Description-Content-Type": "text/plain",
    }
    lines = [f"{key}: {value}" for key, value in values.items()]
    second = {"Name": "other", "Version": "2.0", "Description-Content-Type": "text/bogus"}
    lines.append(f"{field}: {second.get(field, '2.2')}")
    refusal, _ = metadata_checks("\n".join(lines).encode(), "METADATA")
    assert refusal == f"METADATA has 2 {field} fields (one is allowed)"


def test_metadata_is_read_as_utf8_so_a_reason_shows_what_the_file_says() -> None:
    raw = "Metadata-Version: \u0662.\u0661\nName: demo\nVersion: 1.0\n".encode()
    refusal, _ = metadata_checks(raw, "METADATA")
    assert refusal is not None and "'\u0662.\u0661'" in refusal


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xff\xfe\x00garbage",
        b"Metadata-Version: \xff\xfe\n",
        b"Metadata-Version: 2.1\nDescription-Content-Type: text/\xe9\n",
        b"Metadata-Version: 2.1\n" + b"X-Long: " + b"a" * 1_000_000 + b"\n",
    ],
)
def test_hostile_metadata_bytes_give_a_reason_or_pass_never_an_exception(raw: bytes) -> None:
    refusal, warnings = metadata_checks(raw, "METADATA")
    assert refusal is None or (len(refusal) < 1200 and "\n" not in refusal)
    assert all(len(w) < 1200 for w in warnings)


# ----------------------------------------------------------------------------- sdist names


@pytest.mark.parametrize(
    ("name", "version", "expected"),
    [
        ("foo", "1.0", "foo-1.0.tar.gz"),
        ("Foo.Bar-baz", "1.0", "foo_bar_baz-1.0.tar.gz"),
        ("foo", "1.0.0-RC1", "foo-1.0.0rc1.tar.gz"),
        ("foo", "legacy version", "foo-legacy version.tar.gz"),
    ],
)
def test_pep625_filename(name: str, version: str, expected: str) -> None:
    assert pep625_filename(name, version) == expected


def test_sdist_names_warn_but_normalized_ones_do_not() -> None:
    assert sdist_name_warning("foo_bar-1.0.tar.gz", "foo-bar", "1.0") is None
    legacy = sdist_name_warning("Foo.Bar-1.0.tar.gz", "foo-bar", "1.0")
    assert legacy is not None and "should be 'foo_bar-1.0.tar.gz'" in legacy
    unnormalized_version = sdist_name_warning("foo_bar-1.0.0-RC1.tar.gz", "foo-bar", "1.0.0-RC1")
    assert unnormalized_version is not None and "foo_bar-1.0.0rc1.tar.gz" in unnormalized_version
    zipped = sdist_name_warning("foo_bar-1.0.zip", "foo-bar", "1.0")
    assert zipped is not None and ".zip sdist" in zipped


# ----------------------------------------------------------------------------- real uploads


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("upload-checks")


@pytest.fixture(scope="module")
def strict(base: Path) -> Iterator[Server]:
    """The default policy (strict); no authentication."""
    root = base / "strict-root"
    root.mkdir()
    with run_server([root], "-P", ".", "-a", ".", "--disable-fallback") as server:
        yield server


@pytest.fixture(scope="module")
def lenient(base: Path) -> Iterator[Server]:
    root = base / "lenient-root"
    root.mkdir()
    with run_server(
        [root], "-P", ".", "-a", ".", "--disable-fallback", "--upload-policy", "pypiserver"
    ) as server:
        yield server


def stored(server: Server) -> dict[str, str]:
    """The upload root's files (creamery's state directory aside), with their sha256."""
    root = Path(server.roots[0])
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.relative_to(root).as_posix().startswith(".creamery/")
    }


def twine_verbose(server: Server, home: Path, path: Path) -> tuple[int, str]:
    """twine upload --verbose (which prints the response body, where the reason is), its
    output in lines long enough not to be wrapped."""
    result = twine_upload(server.url + "/", home, "--verbose", str(path), COLUMNS="400")
    return result.returncode, result.stdout + result.stderr


def bad_wheels(directory: Path) -> dict[str, tuple[Path, str]]:
    """Wheels PyPI refuses, each with a fragment of the reason."""
    return {
        "plain linux": (
            make_wheel(directory, "chk-linux", "1.0", tag="cp311-cp311-linux_x86_64"),
            "built for plain linux (linux_x86_64), which is not portable",
        ),
        "version mismatch": (
            make_wheel(
                directory, "chk-mismatch", "1.0", metadata_text=core_metadata("chk-mismatch", "1.1")
            ),
            "version '1.1' does not match the file",  # twine sends the METADATA's as the form's
        ),
        "metadata version": (
            make_wheel(
                directory,
                "chk-mdv",
                "1.0",
                metadata_text=core_metadata("chk-mdv", "1.0", metadata_version="3.0"),
            ),
            "Metadata-Version 3.0 has a newer major version",
        ),
    }


def test_twine_upload_of_a_plain_linux_wheel_fails_with_the_reason(
    strict: Server, base: Path, tmp_path: Path
) -> None:
    wheel, reason = bad_wheels(tmp_path)["plain linux"]
    before = stored(strict)
    code, output = twine_verbose(strict, tmp_path / "home", wheel)
    assert code == 1, output
    assert "400" in output and reason in output, output
    assert "auditwheel" in output, output
    assert stored(strict) == before
    assert listed(strict, "chk-linux") == {}


def test_twine_upload_with_a_version_mismatch_fails_with_the_reason(
    strict: Server, tmp_path: Path
) -> None:
    wheel, reason = bad_wheels(tmp_path)["version mismatch"]
    before = stored(strict)
    code, output = twine_verbose(strict, tmp_path / "home", wheel)
    assert code == 1 and reason in output, output
    assert stored(strict) == before


def test_an_invalid_metadata_version_in_the_file_is_refused(strict: Server, tmp_path: Path) -> None:
    wheel, reason = bad_wheels(tmp_path)["metadata version"]
    before = stored(strict)
    response = upload(strict, wheel.name, wheel.read_bytes())
    assert response.status_code == 400 and reason in response.text, response.text
    assert len(response.text.strip().splitlines()) == 1
    assert stored(strict) == before


def test_a_bad_description_content_type_is_refused(strict: Server, tmp_path: Path) -> None:
    """twine 7 refuses it before sending (it reads the metadata with `packaging`); uv sends
    it, and so does a hand-made form: the server says why, and stores nothing."""
    metadata = core_metadata(
        "chk-ctype", "1.0", extra_headers=["Description-Content-Type: text/html"]
    )
    wheel = make_wheel(tmp_path, "chk-ctype", "1.0", metadata_text=metadata)
    before = stored(strict)
    result = twine_upload(strict.url + "/", tmp_path / "home", str(wheel))
    assert result.returncode == 1 and "text/html" in result.stdout + result.stderr, describe(result)
    published = uv_publish(strict.url + "/", tmp_path / "home", "-u", "a", "-p", "b", str(wheel))
    output = " ".join((published.stdout + published.stderr).split())  # uv wraps long lines
    assert published.returncode != 0, describe(published)
    assert "'text/html' is not a valid description content type" in output, output
    response = upload(strict, wheel.name, wheel.read_bytes())
    assert response.status_code == 400
    assert "METADATA Description-Content-Type 'text/html'" in response.text
    assert stored(strict) == before


def test_a_bad_description_content_type_form_field_is_refused(
    strict: Server, tmp_path: Path
) -> None:
    wheel = make_wheel(tmp_path, "chk-ctype-field", "1.0")
    before = stored(strict)
    field = ("description_content_type", "text/markdown; variant=Obscure")
    response = upload(strict, wheel.name, wheel.read_bytes(), field)
    assert response.status_code == 400
    assert response.text.startswith("description_content_type 'text/markdown; variant=Obscure'")
    assert "variant must be GFM or CommonMark" in response.text
    assert stored(strict) == before
    ok = upload(strict, wheel.name, wheel.read_bytes(), ("description_content_type", "text/plain"))
    assert ok.status_code == 200, ok.text


def test_a_second_description_content_type_in_the_file_is_refused(
    strict: Server, tmp_path: Path
) -> None:
    """Only the first was checked: a bad second one went through (and PyPI refuses both)."""
    headers = ["Description-Content-Type: text/plain", "Description-Content-Type: text/html"]
    metadata = core_metadata("chk-twice", "1.0", extra_headers=headers)
    wheel = make_wheel(tmp_path, "chk-twice", "1.0", metadata_text=metadata)
    before = stored(strict)
    response = upload(strict, wheel.name, wheel.read_bytes())
    assert response.status_code == 400, response.text
    assert response.text == (
        ".dist-info/METADATA has 2 Description-Content-Type fields (one is allowed)\n"
    )
    assert stored(strict) == before
    assert "chk-twice" not in strict.client().get("/simple/").text


def test_a_legacy_named_sdist_is_accepted_with_a_warning(strict: Server, tmp_path: Path) -> None:
    sdist = make_sdist(tmp_path, "Chk.Legacy", "1.0", filename_name="Chk.Legacy")
    code, output = twine_verbose(strict, tmp_path / "home", sdist)
    assert code == 0, output
    expected = "should be 'chk_legacy-1.0.tar.gz'"
    assert expected in output, output  # twine --verbose prints the body
    assert "Chk.Legacy-1.0.tar.gz" in listed(strict, "chk-legacy")
    assert "upload of Chk.Legacy-1.0.tar.gz: warning: 'Chk.Legacy-1.0.tar.gz' is not a PEP 625" in (
        strict.log()
    )


def test_the_warning_is_a_response_header_and_normalized_names_get_none(
    strict: Server, tmp_path: Path
) -> None:
    legacy = make_sdist(tmp_path, "chk-header", "1.0", filename_name="Chk-Header")
    response = upload(strict, legacy.name, legacy.read_bytes())
    assert response.status_code == 200, response.text
    assert "should be 'chk_header-1.0.tar.gz'" in response.headers[WARNING]
    assert response.text.startswith("OK: Chk-Header-1.0.tar.gz uploaded\nwarning: ")
    normalized = make_sdist(tmp_path, "chk-header", "2.0")
    response = upload(strict, normalized.name, normalized.read_bytes())
    assert response.status_code == 200 and WARNING not in response.headers
    assert response.text == "OK: chk_header-2.0.tar.gz uploaded\n"


def zip_sdist(directory: Path, stem: str, name: str, version: str) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{stem}/PKG-INFO", core_metadata(name, version))
        archive.writestr(f"{stem}/setup.py", "")
    path = directory / f"{stem}.zip"
    path.write_bytes(buffer.getvalue())
    return path


def test_a_zip_sdist_is_still_accepted_with_a_warning(strict: Server, tmp_path: Path) -> None:
    sdist = zip_sdist(tmp_path, "chk_zip-1.0", "chk-zip", "1.0")
    response = upload(strict, sdist.name, sdist.read_bytes())
    assert response.status_code == 200, response.text
    assert ".zip sdist" in response.headers[WARNING]
    assert "chk_zip-1.0.zip" in listed(strict, "chk-zip")


def test_the_pypiserver_policy_accepts_what_strict_refuses(lenient: Server, tmp_path: Path) -> None:
    wheels = bad_wheels(tmp_path)
    for wheel, _reason in (wheels["plain linux"], wheels["version mismatch"]):
        code, output = twine_verbose(lenient, tmp_path / "home", wheel)
        assert code == 0, output
    newer = wheels["metadata version"][0]  # twine refuses to send it: a form does
    assert upload(lenient, newer.name, newer.read_bytes()).status_code == 200
    metadata = core_metadata("chk-ctype", "1.0", extra_headers=["Description-Content-Type: x/y"])
    wheel = make_wheel(tmp_path / "ct", "chk-ctype", "1.0", metadata_text=metadata)
    response = upload(lenient, wheel.name, wheel.read_bytes(), ("description_content_type", "x/y"))
    assert response.status_code == 200, response.text
    legacy = make_sdist(tmp_path, "Chk.Legacy", "1.0", filename_name="Chk.Legacy")
    response = upload(lenient, legacy.name, legacy.read_bytes())
    assert response.status_code == 200 and WARNING not in response.headers
    names = set(stored(lenient))
    assert {
        "chk_linux-1.0-cp311-cp311-linux_x86_64.whl",
        "chk_mismatch-1.0-py3-none-any.whl",
        "chk_mdv-1.0-py3-none-any.whl",
        "chk_ctype-1.0-py3-none-any.whl",
        "Chk.Legacy-1.0.tar.gz",
    } <= names


def test_a_valid_manylinux_wheel_with_markdown_is_accepted(strict: Server, tmp_path: Path) -> None:
    metadata = core_metadata(
        "chk-good", "1.0", extra_headers=["Description-Content-Type: text/markdown; variant=GFM"]
    )
    wheel = make_wheel(
        tmp_path,
        "chk-good",
        "1.0",
        tag="cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64",
        metadata_text=metadata,
    )
    code, output = twine_verbose(strict, tmp_path / "home", wheel)
    assert code == 0, output
    assert wheel.name in listed(strict, "chk-good")
    assert httpx.get(f"{strict.url}/packages/{wheel.name}").content == wheel.read_bytes()


def test_a_metadata_version_packaging_cannot_read_is_refused(
    strict: Server, tmp_path: Path
) -> None:
    metadata = core_metadata("chk-badver", "1.0").replace("Version: 1.0", "Version: one-point-oh")
    wheel = make_wheel(tmp_path, "chk-badver", "1.0", metadata_text=metadata)
    before = stored(strict)
    response = upload(strict, wheel.name, wheel.read_bytes())
    assert response.status_code == 400
    assert response.text == (
        ".dist-info/METADATA Version 'one-point-oh' is not a valid version (see PEP 440)\n"
    )
    assert stored(strict) == before


@pytest.mark.parametrize(
    "warning",
    [
        "'a\r\nX-Injected: 1.tar.gz' is not a PEP 625 sdist filename",
        "caf\u00e9 \u202e\x00\x7f\ttab",
        "x" * 100_000,
    ],
)
def test_a_warning_header_is_printable_ascii_and_bounded(warning: str) -> None:
    """The checks' warnings are ASCII today (strict filenames are); the header must stay legal
    whatever a later warning quotes from an upload: no CR/LF (a header of its own), no
    controls, no UTF-8, a bounded length."""
    response = _outcome_response(upload_outcome(200, "OK", warnings=(warning,)))
    values = [v for k, v in response.raw_headers if k.decode().lower() == WARNING.lower()]
    assert len(values) == 1
    assert all(0x20 <= byte <= 0x7E for byte in values[0]), values[0]
    assert len(values[0]) <= MAX_WARNING_HEADER
    assert response.body.decode().endswith(warning + "\n")
