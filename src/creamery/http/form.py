"""Streaming multipart/form-data reading for uploads.

The `content` part goes straight to a hidden temp file in the upload root while it is hashed,
so an upload of any size costs constant memory; other parts are small and kept in memory
within a bound. Whatever goes wrong, `ReceivedForm.discard()` leaves no file behind.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from creamery.core.errors import ClientError
from creamery.core.hashing import Hasher, pypi_hashers
from creamery.http.asgi_types import Receive

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

STREAMED_FIELDS = frozenset({"content"})
MAX_FIELD_SIZE = 16 << 20  # a long description (README) fits easily
MAX_FIELDS_TOTAL = 64 << 20
# Fields and files of one form: twine sends one field per classifier and requirement, a few
# hundred at most. Empty parts cost no field bytes but a dict entry each: 1,000,000 of them
# (a 55 MB body) were 170 MB of memory and 12 s of parsing.
MAX_PARTS = 10_000


class FormError(ClientError):
    """The request body can't be accepted; `status` and a one-line `reason` for the client."""


@dataclass
class ReceivedFile:
    filename: str
    path: Path  # hidden temp file in the upload root
    size: int = 0
    hashers: dict[str, Hasher] = field(default_factory=dict)

    def hexdigest(self, name: str) -> str:
        return self.hashers[name].hexdigest()


@dataclass
class ReceivedForm:
    fields: dict[str, list[str]] = field(default_factory=dict)
    small_files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # name -> (fn, data)
    files: dict[str, ReceivedFile] = field(default_factory=dict)

    def value(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[0] if values else None

    def discard(self) -> None:
        for received in self.files.values():
            received.path.unlink(missing_ok=True)


NewTempFile = Callable[[], tuple[int, Path]]


async def read_multipart(
    content_type: str,
    receive: Receive,
    new_temp_file: NewTempFile,
    max_size: int,
) -> ReceivedForm:
    """Read a multipart body from an ASGI *receive*; raises FormError (and cleans up) on failure."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise FormError(400, "multipart/form-data without a boundary")
    reader = _PartReader(new_temp_file)
    received = 0
    lf_start = b"\n--" + boundary + b"\n"
    head = b""  # the body's first bytes, until it is known whether its lines end with LF
    try:
        parser = MultipartParser(boundary, reader.callbacks())  # may refuse the boundary
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise FormError(400, "the client went away before the upload was complete")
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > max_size:
                raise FormError(413, f"upload larger than the limit of {max_size} bytes")
            more = message.get("more_body", False)
            if reader.lf_only is None:
                head += chunk
                if len(head) < len(lf_start) and more:
                    continue
                reader.lf_only = head.startswith(lf_start)
                chunk = head
            if chunk:
                parser.write(chunk.replace(b"\n", b"\r\n") if reader.lf_only else chunk)
            reader.raise_pending()
            if not more:
                break
        parser.finalize()
        reader.raise_pending()
        if not reader.finished:
            raise FormError(400, "the multipart body is truncated")
    except FormParserError as error:
        reader.abort()
        raise FormError(400, f"malformed multipart body: {error}") from error
    except BaseException:
        reader.abort()
        raise
    return reader.form


class _PartReader:
    """Turns python-multipart's callbacks into fields and streamed files."""

    def __init__(self, new_temp_file: NewTempFile) -> None:
        self.new_temp_file = new_temp_file
        self.form = ReceivedForm()
        self.finished = False
        self._error: FormError | None = None
        self._header_name = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._name = ""
        self._filename: str | None = None
        self._buffer = bytearray()
        self._fd: int | None = None
        self._file: ReceivedFile | None = None
        self._fields_total = 0
        self._parts = 0
        # distutils' `setup.py register` (pypiserver 1.x's README advises it) ends the lines of
        # its form with LF alone; such a form is read with CRLF for LF, and may carry no file.
        self.lf_only: bool | None = None

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def raise_pending(self) -> None:
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._file is not None:
            self._file.path.unlink(missing_ok=True)
        self.form.discard()

    def _fail(self, status: int, reason: str) -> None:
        if self._error is None:
            self._error = FormError(status, reason)

    def _part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            self._fail(413, f"the form has more than {MAX_PARTS} fields and files")
        self._headers = {}
        self._buffer = bytearray()
        self._file = None

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_name.strip().lower()] = self._header_value.strip()
        self._header_name = b""
        self._header_value = b""

    def _headers_finished(self) -> None:
        _disposition, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = params.get(b"name", b"").decode("utf-8", "replace")
        raw_filename = params.get(b"filename")
        self._filename = None if raw_filename is None else raw_filename.decode("utf-8", "replace")
        if self._filename is not None and self.lf_only:
            self._fail(400, "a multipart body with a file must end its lines with CRLF")
            return
        if self._filename is not None and self._name in STREAMED_FIELDS:
            if self._name in self.form.files:
                self._fail(400, f"more than one {self._name!r} file in the form")
                return
            self._fd, path = self.new_temp_file()
            self._file = ReceivedFile(self._filename, path, hashers=pypi_hashers())
            self.form.files[self._name] = self._file

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._error is not None:
            return
        chunk = data[start:end]
        if self._file is not None and self._fd is not None:
            _write_all(self._fd, chunk)
            self._file.size += len(chunk)
            for hasher in self._file.hashers.values():
                hasher.update(chunk)
            return
        self._fields_total += len(chunk)
        if len(self._buffer) + len(chunk) > MAX_FIELD_SIZE:
            self._fail(413, f"form field {self._name!r} is too large")
        elif self._fields_total > MAX_FIELDS_TOTAL:
            self._fail(413, "the form's fields are too large")
        else:
            self._buffer += chunk

    def _part_end(self) -> None:
        if self._file is not None and self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._file = None
            return
        if self._filename is not None:
            self.form.small_files[self._name] = (self._filename, bytes(self._buffer))
        else:
            text = self._buffer.decode("utf-8", "replace")
            self.form.fields.setdefault(self._name, []).append(text)

    def _end(self) -> None:
        self.finished = True


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def read_urlencoded(body: bytes) -> ReceivedForm:
    from urllib.parse import parse_qs

    form = ReceivedForm()
    form.fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return form
