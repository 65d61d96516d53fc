"""Bounded reading of distribution archives: open a zip or tar safely, find its core metadata.

Archives are untrusted input, whether uploaded or copied into a package directory, so what is
read from them is bounded before anything large is built in memory:

- a zip's entry count is read from its end-of-central-directory record before `zipfile` parses
  the directory (which costs ~500 bytes of memory per entry);
- a tar is read as a stream, one member header at a time (`TarReader`), keeping nothing, and
  stops at the member limit or when the bytes it decompressed pass the budget;
- the METADATA / PKG-INFO member is read up to its size limit, never further.

The limits are PyPI-like: far above any ordinary distribution (hundreds to a few thousand
files, metadata of a few KiB up to a few hundred with a long README), far below what hurts
the server. docs/security.md lists them.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import os
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

MAX_MEMBERS = 50_000  # entries in a zip's central directory, members of a tar
MAX_METADATA_SIZE = 2 << 20  # bytes of METADATA / PKG-INFO
# Decompressed bytes per compressed byte (source code compresses 3-10:1), checked only above a floor
# so that small, very compressible archives (a wheel of empty modules) are never refused.
MAX_RATIO = 50
RATIO_FLOOR = 64 << 20
MAX_UNCOMPRESSED = 4 << 30  # declared (zip) or decompressed (tar) bytes in all

ZIP_SUFFIXES = (".whl", ".zip", ".egg")
# Tar endings and the decompressor each needs ("" for none).
_TAR_SUFFIXES = {
    ".tar.gz": "gz",
    ".tgz": "gz",
    ".tar.bz2": "bz2",
    ".tbz2": "bz2",
    ".tar.xz": "xz",
    ".txz": "xz",
    ".tar": "",
}
_ZIP_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2})
_WHEEL_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})  # the wheel spec's
_EOCD = b"PK\x05\x06"
_EOCD_SIZE = 22
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_EOCD = b"PK\x06\x06"


class ArchiveError(ValueError):
    """The file is not a readable archive of its kind; the message says why, in one line."""


class ArchiveLimitError(ArchiveError):
    """The archive exceeds one of the limits; the message names the limit."""


@dataclass(frozen=True, slots=True)
class Inspection:
    """What was learnt from an archive."""

    metadata: bytes | None  # METADATA / PKG-INFO, None when the archive has none
    member: str | None  # its name inside the archive


def archive_format(filename: str) -> str | None:
    """ "zip", "tar" or None (not an archive we open: .exe, .msi, ...)."""
    lower = filename.lower()
    if lower.endswith(ZIP_SUFFIXES):
        return "zip"
    if lower.endswith(tuple(_TAR_SUFFIXES)):
        return "tar"
    return None


def metadata_member_matcher(kind: str) -> Callable[[str], bool]:
    """Which member holds the core metadata: a wheel's, an sdist's or an egg's."""
    if kind == "wheel":
        return lambda n: n.count("/") == 1 and n.endswith(".dist-info/METADATA")
    if kind == "egg":
        return lambda n: n == "EGG-INFO/PKG-INFO"
    return lambda n: n.count("/") == 1 and n.endswith("/PKG-INFO")


def inspect(
    source: Path | BinaryIO, filename: str, kind: str, *, complete: bool = False
) -> Inspection:
    """Open *source* (named *filename*) within the limits and read its core metadata.

    *source* is a path, or a seekable binary file (a stored file read by ranges: see
    `storage/reader_file.py`), read from where it is and left open.

    With *complete*, every member is checked against the limits (uploads); otherwise reading
    stops at the metadata (files already in a directory). Raises ArchiveLimitError when a limit
    is exceeded and ArchiveError when the file is not a valid archive; returns an empty
    Inspection for formats that are not opened.
    """
    fmt = archive_format(filename)
    wanted = metadata_member_matcher(kind)
    try:
        if fmt == "zip":
            return _inspect_zip(source, wanted, wheel=kind == "wheel")
        if fmt == "tar":
            return _inspect_tar(source, filename, wanted, complete=complete)
    except ArchiveError:
        raise
    except (OSError, EOFError, zipfile.BadZipFile, lzma.LZMAError, zlib.error) as error:
        raise ArchiveError(f"not a valid {fmt} archive ({_reason(error)})") from error
    except (ValueError, struct.error, NotImplementedError, RuntimeError) as error:
        raise ArchiveError(f"not a valid {fmt} archive ({_reason(error)})") from error
    return Inspection(None, None)


@contextlib.contextmanager
def _opened(source: Path | BinaryIO) -> Iterator[BinaryIO]:
    """A path opened (and closed after), or the caller's file as it is (left open)."""
    if isinstance(source, Path):
        with source.open("rb") as raw:
            yield raw
    else:
        yield source


def _reason(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:200]


# ---------------------------------------------------------------- zip


def zip_entry_count(raw: BinaryIO) -> int:
    """The entry count of the zip's end-of-central-directory record (zip64 included)."""
    raw.seek(0, os.SEEK_END)
    size = raw.tell()
    tail_size = min(size, _EOCD_SIZE + 0xFFFF)  # the record, then a comment of up to 64 KiB
    raw.seek(size - tail_size)
    tail = raw.read(tail_size)
    at = tail.rfind(_EOCD)
    if at < 0 or len(tail) - at < _EOCD_SIZE:
        raise ArchiveError("not a valid zip archive (no end of central directory)")
    (count,) = struct.unpack_from("<H", tail, at + 10)
    if count != 0xFFFF:
        return int(count)
    # zip64: the locator sits right before the record and points at the zip64 record.
    locator_at = size - tail_size + at - 20
    if locator_at < 0:
        return int(count)  # exactly 65,535 entries, without zip64
    raw.seek(locator_at)
    locator = raw.read(20)
    if locator[:4] != _ZIP64_LOCATOR:
        return int(count)
    (record_at,) = struct.unpack_from("<Q", locator, 8)
    raw.seek(record_at)
    record = raw.read(56)
    if record[:4] != _ZIP64_EOCD or len(record) < 56:
        raise ArchiveError("not a valid zip archive (zip64 record missing)")
    (count64,) = struct.unpack_from("<Q", record, 32)
    return int(count64)


def _inspect_zip(
    source: Path | BinaryIO, wanted: Callable[[str], bool], *, wheel: bool
) -> Inspection:
    with _opened(source) as raw:
        count = zip_entry_count(raw)
        if count > MAX_MEMBERS:
            raise ArchiveLimitError(f"more than {MAX_MEMBERS:,} archive members ({count:,})")
        size = raw.seek(0, os.SEEK_END)
        raw.seek(0)
        with zipfile.ZipFile(raw) as archive:
            infos = archive.infolist()
            if len(infos) > MAX_MEMBERS:  # the record lied
                raise ArchiveLimitError(f"more than {MAX_MEMBERS:,} archive members")
            _check_zip_members(infos, size, wheel=wheel)
            found = next((info for info in infos if wanted(info.filename)), None)
            if found is None:
                return Inspection(None, None)
            return Inspection(_read_zip_member(archive, found), found.filename)


def _check_zip_members(infos: list[zipfile.ZipInfo], size: int, *, wheel: bool) -> None:
    methods = _WHEEL_METHODS if wheel else _ZIP_METHODS
    declared = 0
    for info in infos:
        if info.compress_type not in methods:
            raise ArchiveError(f"unsupported compression method {info.compress_type}")
        declared += info.file_size
    if declared > MAX_UNCOMPRESSED:
        raise ArchiveLimitError(f"more than {_size(MAX_UNCOMPRESSED)} uncompressed")
    if declared > RATIO_FLOOR and declared > MAX_RATIO * max(size, 1):
        raise ArchiveLimitError(f"compression ratio above {MAX_RATIO}:1")


def _read_zip_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    if info.file_size > MAX_METADATA_SIZE:
        raise ArchiveLimitError(f"{info.filename} larger than {_size(MAX_METADATA_SIZE)}")
    with archive.open(info) as member:
        data = member.read(MAX_METADATA_SIZE + 1)
    if len(data) > MAX_METADATA_SIZE:
        raise ArchiveLimitError(f"{info.filename} larger than {_size(MAX_METADATA_SIZE)}")
    return data


# ---------------------------------------------------------------- tar


class _Budget(io.RawIOBase):
    """The decompressed stream, counting what is read and refusing to go past a budget."""

    def __init__(self, stream: BinaryIO, budget: int) -> None:
        self._stream = stream
        self._budget = budget
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._stream.read(len(buffer))
        self.read_bytes += len(data)
        if self.read_bytes > self._budget:
            if self._budget < MAX_UNCOMPRESSED:
                raise ArchiveLimitError(f"compression ratio above {MAX_RATIO}:1")
            raise ArchiveLimitError(f"more than {_size(MAX_UNCOMPRESSED)} uncompressed")
        buffer[: len(data)] = data
        return len(data)


def _decompressed(raw: BinaryIO, compression: str) -> BinaryIO:
    if compression == "gz":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if compression == "bz2":
        return bz2.BZ2File(raw, mode="rb")  # type: ignore[return-value]
    if compression == "xz":
        return lzma.LZMAFile(raw, mode="rb")  # type: ignore[return-value]
    return raw


def tar_budget(compressed: int) -> int:
    """Decompressed bytes a tar of *compressed* bytes may yield."""
    return min(MAX_UNCOMPRESSED, max(RATIO_FLOOR, MAX_RATIO * compressed))


def _inspect_tar(
    source: Path | BinaryIO, filename: str, wanted: Callable[[str], bool], *, complete: bool
) -> Inspection:
    compression = next(c for s, c in _TAR_SUFFIXES.items() if filename.lower().endswith(s))
    with _opened(source) as raw, contextlib.ExitStack() as closing:
        decompressed = _decompressed(raw, compression)
        if decompressed is not raw:  # the raw file is closed by whoever opened it
            closing.enter_context(decompressed)
        compressed = raw.seek(0, os.SEEK_END)
        raw.seek(0)
        reader = TarReader(
            io.BufferedReader(_Budget(decompressed, tar_budget(compressed)), 1 << 16)
        )
        found: Inspection | None = None
        count = 0
        while (member := reader.next()) is not None:
            count += 1
            if count > MAX_MEMBERS:
                raise ArchiveLimitError(f"more than {MAX_MEMBERS:,} archive members")
            if found is None and wanted(member.name):
                found = Inspection(_read_tar_member(reader, member), member.name)
                if not complete:
                    return found
        if count == 0:
            raise ArchiveError("not a valid tar archive (no members)")
    return found or Inspection(None, None)


def _read_tar_member(reader: TarReader, member: TarMember) -> bytes | None:
    if not member.is_file:
        return None
    if member.size > MAX_METADATA_SIZE:
        raise ArchiveLimitError(f"{member.name} larger than {_size(MAX_METADATA_SIZE)}")
    return reader.read(member.size)


@dataclass(frozen=True, slots=True)
class TarMember:
    name: str
    size: int
    is_file: bool


_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
_FILE_TYPES = frozenset({b"0", b"\0", b"7"})
_MAX_EXTENDED_HEADER = 1 << 20  # a GNU long name or a pax header; real ones are tiny


class TarReader:
    """A forward-only reader of tar member headers (ustar, GNU long names, pax).

    `tarfile` costs about 40 µs a member and keeps every member in a list; this reads only the
    name, type and size of each (a few µs), keeps nothing, and skips the data as it goes.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._unread = 0  # data bytes (with padding) of the current member not read yet

    def next(self) -> TarMember | None:
        self._skip(self._unread)
        long_name: str | None = None
        while True:
            header = self._stream.read(_BLOCK)
            if not header or header == _ZERO_BLOCK:
                return None
            if len(header) < _BLOCK:
                raise ArchiveError("not a valid tar archive (truncated header)")
            _check_checksum(header)
            size = _number(header[124:136])
            kind = header[156:157]
            padded = size + (-size % _BLOCK)
            if kind in (b"L", b"x", b"g"):  # a header for the next member, or a global one
                if size > _MAX_EXTENDED_HEADER:
                    raise ArchiveError("not a valid tar archive (oversized extended header)")
                data = self._exactly(padded)[:size]
                if kind == b"L":
                    long_name = _text(data.split(b"\0", 1)[0])
                elif kind == b"x":
                    long_name = _pax_path(data) or long_name
                continue
            name = long_name or _header_name(header)
            self._unread = padded
            return TarMember(name, size, kind in _FILE_TYPES)

    def read(self, size: int) -> bytes:
        """The current member's data (call once, right after `next`)."""
        data = self._exactly(size)
        self._unread -= size
        return data

    def _exactly(self, size: int) -> bytes:
        data = self._stream.read(size)
        if len(data) < size:
            raise ArchiveError("not a valid tar archive (truncated member)")
        return data

    def _skip(self, size: int) -> None:
        while size > 0:
            chunk = self._stream.read(min(size, 1 << 20))
            if not chunk:
                raise ArchiveError("not a valid tar archive (truncated member)")
            size -= len(chunk)
        self._unread = 0


def _check_checksum(header: bytes) -> None:
    stored = _number(header[148:156])
    unsigned = sum(header) - sum(header[148:156]) + 256  # the field counts as 8 spaces
    if stored != unsigned:
        signed = unsigned - 256 * sum(1 for b in header if b > 127)  # old tars: signed bytes
        if stored != signed:
            raise ArchiveError("not a valid tar archive (bad header checksum)")


def _number(field: bytes) -> int:
    if field[:1] and field[0] & 0x80:  # GNU base-256
        return int.from_bytes(field[1:], "big")
    digits = field.split(b"\0", 1)[0].strip()
    try:
        return int(digits or b"0", 8)
    except ValueError:
        raise ArchiveError("not a valid tar archive (bad number in a header)") from None


def _header_name(header: bytes) -> str:
    name = header[:100].split(b"\0", 1)[0]
    if header[257:262] == b"ustar":
        prefix = header[345:500].split(b"\0", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    return _text(name)


def _pax_path(data: bytes) -> str | None:
    """The `path` record of a pax extended header ("<length> path=<value>\\n" records)."""
    at = 0
    while at < len(data):
        length_text, space, _rest = data[at : at + 20].partition(b" ")
        if not space or not length_text.isdigit() or int(length_text) <= 0:
            return None
        record = data[at : at + int(length_text)]
        key, _, value = record[len(length_text) + 1 :].partition(b"=")
        if key == b"path":
            return _text(value.rstrip(b"\n"))
        at += int(length_text)
    return None


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):g} {unit}"
    return f"{n} bytes"
