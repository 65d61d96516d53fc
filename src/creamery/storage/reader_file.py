"""A stored file as a seekable binary file object, for `zipfile` and `tarfile`.

`Reader` reads ranges (`read(offset, length)`); the standard library's archive readers want a
file object that seeks. `ReaderFile` is that file object: every read is one ranged read of
the version opened, so a wheel's METADATA comes from an object store with a few requests
(the zip's end record, its central directory, one member) instead of the whole file; a tar
read as a stream costs one request per buffer.

A failure of the store while an archive reader reads is kept (`failure`): archive readers
turn every OSError into "not a valid archive", and a store that did not answer must not be
taken for a broken file (nor remembered as one).
"""

from __future__ import annotations

import io
import os

from creamery.storage import Reader

ZIP_BUFFER = 64 << 10  # a zip is read in a few small pieces, mostly near its end
STREAM_BUFFER = 1 << 20  # a tar is read from start to end: fewer, larger requests


class ReaderFile(io.RawIOBase):
    """The bytes of an open `Reader` as a read-only, seekable raw file (not closing it)."""

    def __init__(self, reader: Reader) -> None:
        super().__init__()
        self._reader = reader
        self._size = reader.size
        self._position = 0
        self.failure: OSError | None = None  # the store's error, when a read failed

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET:
            position = offset
        elif whence == os.SEEK_CUR:
            position = self._position + offset
        elif whence == os.SEEK_END:
            position = self._size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if position < 0:
            raise ValueError(f"negative seek position {position}")
        self._position = position
        return position

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        length = min(len(buffer), self._size - self._position)
        if length <= 0:
            return 0
        try:
            data = self._reader.read(self._position, length)
        except OSError as error:
            self.failure = error
            raise
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)


def open_reader_file(reader: Reader, buffer_size: int = ZIP_BUFFER) -> io.BufferedReader:
    """*reader* as a buffered binary file (`close()` it; the reader stays open)."""
    return io.BufferedReader(ReaderFile(reader), buffer_size)
