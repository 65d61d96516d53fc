"""Builders for real, installable test distributions (wheels and sdists) and their sidecars.

Everything is built from the standard library so the suite works offline. The sdists carry a
tiny in-tree PEP 517 backend (`_offline_backend.py`, no build requirements), so pip and uv can
build them even with build isolation and no network.
"""

from __future__ import annotations

import gzip
import inspect
import io
import re
import tarfile
import textwrap
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path

# Fixed timestamps inside archives keep every build byte-for-byte reproducible.
ZIP_DATE = (2020, 1, 1, 0, 0, 0)
TAR_MTIME = 1577836800  # 2020-01-01T00:00:00Z

BACKEND_MODULE = "_offline_backend"


def escape_name(name: str) -> str:
    """The name as wheel and PEP 625 sdist filenames spell it: normalized, `-` → `_`."""
    return re.sub(r"[-_.]+", "_", name).lower()


def module_name(name: str) -> str:
    """The import name of a test project's package."""
    return escape_name(name)


def core_metadata(
    name: str,
    version: str,
    *,
    summary: str = "",
    requires_dist: Iterable[str] = (),
    requires_python: str | None = None,
    description: str = "",
    metadata_version: str = "2.1",
    extra_headers: Iterable[str] = (),
) -> str:
    """Core metadata (METADATA / PKG-INFO) text, Metadata-Version 2.1 unless told, with
    *extra_headers* (`Key: value` lines) after the summary."""
    lines = [
        f"Metadata-Version: {metadata_version}",
        f"Name: {name}",
        f"Version: {version}",
        f"Summary: {summary or f'The {name} test project'}",
        *extra_headers,
    ]
    if requires_python is not None:
        lines.append(f"Requires-Python: {requires_python}")
    lines += [f"Requires-Dist: {req}" for req in requires_dist]
    text = "\n".join(lines) + "\n"
    if description:
        text += "\n" + description + "\n"
    return text


def write_wheel(
    directory: str,
    name: str,
    version: str,
    metadata_text: str,
    files: dict[str, str | bytes],
    tag: str = "py3-none-any",
    build_tag: str | None = None,
) -> str:
    """Write a wheel into *directory* and return its filename.

    Self-contained (stdlib imports inside) because its source is also the core of the
    in-tree build backend shipped inside the test sdists.
    """
    import base64
    import hashlib
    import os
    import re
    import zipfile

    escaped = re.sub(r"[-_.]+", "_", name).lower()
    dist_info = f"{escaped}-{version}.dist-info"
    parts = [escaped, version] + ([build_tag] if build_tag else []) + [tag]
    filename = "-".join(parts) + ".whl"
    wheel_text = (
        "Wheel-Version: 1.0\n"
        "Generator: creamery-tests\n"
        f"Root-Is-Purelib: {'true' if tag.endswith('-none-any') else 'false'}\n"
        f"Tag: {tag}\n"
    )
    if build_tag:
        wheel_text += f"Build: {build_tag}\n"
    entries = [(path, content) for path, content in sorted(files.items())]
    entries.append((f"{dist_info}/METADATA", metadata_text))
    entries.append((f"{dist_info}/WHEEL", wheel_text))
    record_lines = []
    path = os.path.join(directory, filename)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for arcname, content in entries:
            data = content.encode("utf-8") if isinstance(content, str) else content
            info = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record_lines.append(f"{arcname},sha256={digest.decode('ascii')},{len(data)}")
        record_lines.append(f"{dist_info}/RECORD,,")
        info = zipfile.ZipInfo(f"{dist_info}/RECORD", date_time=(2020, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        archive.writestr(info, "\n".join(record_lines) + "\n")
    return filename


_BACKEND_HOOKS = """

def _read_pkg_info():
    import email.parser

    with open("PKG-INFO", encoding="utf-8") as handle:
        text = handle.read()
    message = email.parser.Parser().parsestr(text)
    return text, message["Name"], message["Version"]


def _package_files():
    import os

    files = {}
    for top in sorted(os.listdir(".")):
        if not os.path.isfile(os.path.join(top, "__init__.py")):
            continue
        for folder, _dirs, names in os.walk(top):
            for filename in sorted(names):
                if filename.endswith(".pyc"):
                    continue
                path = os.path.join(folder, filename)
                with open(path, "rb") as handle:
                    files[path.replace(os.sep, "/")] = handle.read()
    return files


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    text, name, version = _read_pkg_info()
    return write_wheel(wheel_directory, name, version, text, _package_files())


def build_sdist(sdist_directory, config_settings=None):
    import os
    import re
    import tarfile

    _text, name, version = _read_pkg_info()
    stem = re.sub(r"[-_.]+", "_", name).lower() + "-" + version
    path = os.path.join(sdist_directory, stem + ".tar.gz")
    with tarfile.open(path, "w:gz") as archive:
        for entry in sorted(os.listdir(".")):
            archive.add(entry, arcname=stem + "/" + entry)
    return stem + ".tar.gz"
"""


def backend_source() -> str:
    """Source of the offline PEP 517 backend placed at the root of every test sdist."""
    header = '"""A stdlib-only PEP 517 backend for creamery\'s test sdists."""\n\n'
    return header + textwrap.dedent(inspect.getsource(write_wheel)) + _BACKEND_HOOKS


def _default_files(name: str, version: str) -> dict[str, str | bytes]:
    return {f"{module_name(name)}/__init__.py": f'__version__ = "{version}"\n'}


def make_wheel(
    directory: Path | str,
    name: str,
    version: str,
    *,
    requires_dist: Iterable[str] = (),
    requires_python: str | None = None,
    summary: str = "",
    tag: str = "py3-none-any",
    build_tag: str | None = None,
    files: Mapping[str, str | bytes] | None = None,
    metadata_text: str | None = None,
) -> Path:
    """Write a valid wheel (METADATA, WHEEL, RECORD with sha256) and return its path.

    *files* maps archive paths to contents; by default the wheel holds
    `<module>/__init__.py` defining `__version__`. *metadata_text* replaces the METADATA
    (for metadata that disagrees with the filename, or is otherwise odd).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    metadata = metadata_text or core_metadata(
        name, version, summary=summary, requires_dist=requires_dist, requires_python=requires_python
    )
    contents = dict(files) if files is not None else _default_files(name, version)
    filename = write_wheel(str(directory), name, version, metadata, contents, tag, build_tag)
    return directory / filename


def make_sdist(
    directory: Path | str,
    name: str,
    version: str,
    *,
    requires_dist: Iterable[str] = (),
    requires_python: str | None = None,
    summary: str = "",
    files: Mapping[str, str | bytes] | None = None,
    filename_name: str | None = None,
    metadata_text: str | None = None,
) -> Path:
    """Write a buildable sdist (PKG-INFO, pyproject.toml, offline backend) and return its path.

    The filename follows PEP 625 (`<escaped name>-<version>.tar.gz`) unless *filename_name*
    gives the name to use instead, for legacy spellings such as `Foo.Bar_baz-0.1.tar.gz`.
    *metadata_text* replaces the PKG-INFO.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{filename_name or escape_name(name)}-{version}"
    pyproject = textwrap.dedent(
        f"""\
        [build-system]
        requires = []
        build-backend = "{BACKEND_MODULE}"
        backend-path = ["."]
        """
    )
    members: dict[str, str | bytes] = {
        "PKG-INFO": metadata_text
        or core_metadata(
            name,
            version,
            summary=summary,
            requires_dist=requires_dist,
            requires_python=requires_python,
        ),
        "pyproject.toml": pyproject,
        f"{BACKEND_MODULE}.py": backend_source(),
    }
    members.update(files if files is not None else _default_files(name, version))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        dirs = sorted({str(Path(m).parent) for m in members if "/" in m})
        for folder in ["", *dirs]:
            info = tarfile.TarInfo(f"{stem}/{folder}".rstrip("/"))
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            info.mtime = TAR_MTIME
            archive.addfile(info)
        for member, content in sorted(members.items()):
            data = content.encode("utf-8") if isinstance(content, str) else content
            info = tarfile.TarInfo(f"{stem}/{member}")
            info.size = len(data)
            info.mode = 0o644
            info.mtime = TAR_MTIME
            archive.addfile(info, io.BytesIO(data))
    path = directory / f"{stem}.tar.gz"
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(buffer.getvalue())
    return path


def wheel_metadata(path: Path | str) -> bytes:
    """The exact bytes of a wheel's `.dist-info/METADATA` (what PEP 658 serves)."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        (name,) = [
            n for n in archive.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")
        ]
        return archive.read(name)


def yank(path: Path | str, reason: str = "") -> Path:
    """Mark a distribution yanked (PEP 592) through its `.yanked` sidecar."""
    sidecar = Path(f"{path}.yanked")
    sidecar.write_text(reason, encoding="utf-8")
    return sidecar


def sign(path: Path | str) -> Path:
    """Place an ASCII-armoured detached signature (`.asc`) beside a distribution."""
    sidecar = Path(f"{path}.asc")
    sidecar.write_text(
        "-----BEGIN PGP SIGNATURE-----\n\n"
        f"iQEzBAABCAAdFiEE{Path(path).name.encode().hex()[:40]}\n"
        "=AAAA\n-----END PGP SIGNATURE-----\n",
        encoding="ascii",
    )
    return sidecar


# ---------------------------------------------------------------- hostile archives (issue 8)


def many_member_wheel(directory: Path | str, name: str, version: str, members: int) -> Path:
    """A wheel with *members* empty entries besides its METADATA (a zip64 archive above 65,535).

    Written record by record rather than through `zipfile` (~30 µs an entry): 200,000 entries
    take well under a second.
    """
    import struct

    escaped = escape_name(name)
    path = Path(directory) / f"{escaped}-{version}-py3-none-any.whl"
    metadata = core_metadata(name, version).encode()
    entries = [(f"{escaped}/m{i}.py".encode(), b"") for i in range(members)]
    entries.append((f"{escaped}-{version}.dist-info/METADATA".encode(), metadata))
    local, central = bytearray(), bytearray()
    for arcname, data in entries:
        crc = zlib.crc32(data)
        offset = len(local)
        local += struct.pack(
            "<4s5H3L2H",
            b"PK\x03\x04",
            20,
            0,
            0,
            0,
            0x21,
            crc,
            len(data),
            len(data),
            len(arcname),
            0,
        )
        local += arcname + data
        central += struct.pack(
            "<4s6H3L5H2L",
            b"PK\x01\x02",
            20,
            20,
            0,
            0,
            0,
            0x21,
            crc,
            len(data),
            len(data),
            len(arcname),
            0,
            0,
            0,
            0,
            0o644 << 16,
            offset,
        )
        central += arcname
    count, cd_offset, cd_size = len(entries), len(local), len(central)
    tail = bytearray()
    if count > 0xFFFF:
        zip64_at = cd_offset + cd_size
        tail += struct.pack(
            "<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, cd_size, cd_offset
        )
        tail += struct.pack("<4sLQL", b"PK\x06\x07", 0, zip64_at, 1)
    small = min(count, 0xFFFF)
    tail += struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, small, small, cd_size, cd_offset, 0)
    path.write_bytes(bytes(local + central + tail))
    return path


def many_member_sdist(directory: Path | str, name: str, version: str, members: int) -> Path:
    """A .tar.gz sdist of *members* empty files (one name, repeated) and then its PKG-INFO.

    300,000 members compress to about a megabyte.
    """
    stem = f"{escape_name(name)}-{version}"
    path = Path(directory) / f"{stem}.tar.gz"
    empty = tarfile.TarInfo(f"{stem}/empty.py")
    empty.mtime = TAR_MTIME
    header = empty.tobuf(format=tarfile.USTAR_FORMAT)
    pkg_info = core_metadata(name, version).encode()
    info = tarfile.TarInfo(f"{stem}/PKG-INFO")
    info.size, info.mtime = len(pkg_info), TAR_MTIME
    padding = b"\0" * (-len(pkg_info) % 512)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        for start in range(0, members, 10_000):
            gz.write(header * min(10_000, members - start))
        gz.write(info.tobuf(format=tarfile.USTAR_FORMAT) + pkg_info + padding + b"\0" * 1024)
    return path


def inflating_wheel(directory: Path | str, name: str, version: str, metadata_size: int) -> Path:
    """A small wheel whose METADATA inflates to *metadata_size* bytes (a long, empty README)."""
    metadata = core_metadata(name, version) + "\n" + " " * metadata_size
    return Path(directory) / write_wheel(str(directory), name, version, metadata, {})
