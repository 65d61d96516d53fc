"""One upstream download, shared by every client that asks for the file while it runs.

The file is fetched once: chunks are hashed and appended to a local temp file (the spool), and
each client streams from that temp file as it grows (late joiners start from byte 0). The last
byte is held back from every client until the size and hash match what the upstream listed; on
a mismatch the temp file is deleted and each response is aborted mid-body, so the server resets
the connection and no client ends up with a complete, bad file.

Only then is the verified file put in the cache (`if_absent`: of two replicas or workers that
fetched it at once, the first put wins and the other's copy is dropped), so the cache never
holds a torn or unverified file; and only after the put do clients get their last byte, so a
client holding the whole file may count on every replica of the cache having it too (a store
that refuses the put delays nothing: the file is served, not cached, and the log says so).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx

from creamery.core.hashing import Hasher
from creamery.core.headers import NOSNIFF
from creamery.http.asgi_types import Scope, Send
from creamery.http.files import content_type, send_text
from creamery.mirror.cache import MirrorCache
from creamery.mirror.client import Failure, UpstreamClient, describe

log = logging.getLogger("creamery.mirror")


_CHUNK = 1 << 20


class DownloadAborted(Exception):
    """Raised into the server after part of a body was sent, so it resets the connection."""

    already_logged = True  # the mirror logged why; no traceback is owed


@dataclass(frozen=True, slots=True)
class Job:
    project: str
    filename: str  # the name in the cache (a distribution, or one with ".metadata")
    url: str
    source: str  # the upstream index that listed it
    algo: str | None  # hashlib name of the listed digest; None: the upstream gave none
    digest: str | None
    size: int | None  # PEP 700 size from the listing

    @property
    def key(self) -> str:
        return f"{self.project}/{self.filename}"


class Transfer:
    """The state clients follow: bytes written so far, and how it ended."""

    def __init__(self, fd: int, temp: Path) -> None:
        self.fd = fd  # read and written with explicit offsets, shared by every reader
        self.temp = temp
        self.length: int | None = None  # what clients are told (Content-Length)
        self.written = 0
        self.failure: Failure | None = None
        self.published = False  # in the cache (ours, or another process's copy)
        self.started = anyio.Event()  # the upstream answered (or the download failed)
        self.finished = anyio.Event()
        self._progress = anyio.Event()

    def wrote(self, count: int) -> None:
        self.written += count
        self._wake()

    async def changed(self) -> None:
        await self._progress.wait()

    def fail(self, failure: Failure) -> None:
        if self.failure is None:
            self.failure = failure

    def finish(self) -> None:
        self.started.set()
        self.finished.set()
        self._wake()

    def _wake(self) -> None:
        waiting, self._progress = self._progress, anyio.Event()
        waiting.set()


class Downloads:
    def __init__(
        self, cache: MirrorCache, client: UpstreamClient, on_added: Callable[[], None]
    ) -> None:
        self.cache = cache
        self.client = client
        self.on_added = on_added  # a file went into the cache and a limit may be exceeded
        self._active: dict[str, Transfer] = {}

    async def serve(self, scope: Scope, send: Send, job: Job) -> None:
        """Stream *job*'s file to this client, downloading it unless a download is running."""
        transfer = self._active.get(job.key)
        if transfer is not None:
            await _relay(transfer, os.dup(transfer.fd), job, send)
            return
        fd, temp = self.cache.new_temp_file()
        transfer = Transfer(fd, temp)
        self._active[job.key] = transfer
        reader = os.dup(fd)
        async with anyio.create_task_group() as group:
            group.start_soon(self._complete, transfer, job)
            # The download goes on for the cache (and the other clients) if this client leaves.
            error = await _capture(_relay(transfer, reader, job, send))
        if error is not None:
            raise error

    async def _complete(self, transfer: Transfer, job: Job) -> None:
        verified = False
        try:
            try:
                verified = await self._download(transfer, job)
            except Exception as error:
                log.exception("mirror: download of %s failed", job.url)
                transfer.fail(Failure(502, f"{job.url} failed: {describe(error)}"))
            if verified:
                await self._publish(transfer, job)
        finally:
            if not verified:
                transfer.fail(Failure(502, f"download of {job.url} was interrupted"))
            with contextlib.suppress(OSError):
                os.unlink(transfer.temp)  # the put took it, or it is not to be kept
            # No await from here on: a new request sees the transfer (and dups a descriptor
            # that is still open) or the file in the cache.
            del self._active[job.key]
            os.close(transfer.fd)
            transfer.finish()  # clients get the last byte, or are cut short

    async def _publish(self, transfer: Transfer, job: Job) -> None:
        try:
            stored = await anyio.to_thread.run_sync(
                self.cache.publish, transfer.temp, job.project, job.filename
            )
        except OSError as error:
            log.warning("mirror: %s served but not cached: %s", job.key, error)
            return
        transfer.published = True
        if stored is None:
            log.info("mirror: %s was cached meanwhile by another process: kept theirs", job.key)
            return
        log.info("mirror: cached %s (%d bytes)", job.key, transfer.written)
        if self.cache.added(transfer.written):
            self.on_added()

    async def _download(self, transfer: Transfer, job: Job) -> bool:
        """Fetch into the spool; True when the file is complete and matches the listing."""
        hasher = hashlib.new(job.algo or "sha256")
        try:
            async with self.client.stream_file(job.url, job.source) as response:
                if response.status_code != 200:
                    transfer.fail(Failure(502, f"{job.url} answered {response.status_code}"))
                    return False
                transfer.length = _length(response, job.size)
                transfer.started.set()
                async for chunk in response.aiter_raw():
                    hasher.update(chunk)
                    # Small appends land in the page cache: cheaper inline than in a thread.
                    _write_all(transfer.fd, chunk)
                    transfer.wrote(len(chunk))
        except httpx.TimeoutException:
            transfer.fail(Failure(504, f"{job.url} stalled for {self.client.timeout:g} s"))
            return False
        except httpx.HTTPError as error:
            transfer.fail(Failure(502, f"{job.url} failed: {describe(error)}"))
            return False
        problem = _mismatch(job, transfer, hasher)
        if problem is not None:
            log.warning("mirror: %s %s: not kept, clients aborted", job.url, problem)
            transfer.fail(Failure(502, f"{job.url} {problem}"))
            return False
        return True


def _length(response: httpx.Response, listed: int | None) -> int | None:
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    header = response.headers.get("content-length")
    if encoding == "identity" and header is not None and header.isdigit():
        return int(header)
    return listed


def _mismatch(job: Job, transfer: Transfer, hasher: Hasher) -> str | None:
    expected_size = job.size if job.size is not None else transfer.length
    if expected_size is not None and transfer.written != expected_size:
        return f"has {transfer.written} bytes where {expected_size} were expected"
    if job.digest is not None and hasher.hexdigest() != job.digest:
        return f"does not match its listed {job.algo} digest"
    return None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


async def _capture(awaitable: Awaitable[object]) -> Exception | None:
    try:
        await awaitable
    except Exception as error:
        return error
    return None


async def _relay(transfer: Transfer, fd: int, job: Job, send: Send) -> None:
    """Follow the transfer for one client; *fd* is this client's own descriptor of the file."""
    try:
        await transfer.started.wait()
        if transfer.failure is not None:
            await send_text(send, transfer.failure.status, transfer.failure.text)
            return
        await send(
            {"type": "http.response.start", "status": 200, "headers": _headers(job, transfer)}
        )
        sent = 0
        while not transfer.finished.is_set():
            if sent < transfer.written - 1:  # hold back the last byte until verified
                sent += await _send_part(send, fd, sent, transfer.written - 1)
            else:
                await transfer.changed()
        if transfer.failure is not None:
            raise DownloadAborted(f"{job.key}: {transfer.failure.reason}")
        while sent < transfer.written:
            sent += await _send_part(send, fd, sent, transfer.written)
        await send({"type": "http.response.body", "body": b""})
    finally:
        os.close(fd)


async def _send_part(send: Send, fd: int, start: int, end: int) -> int:
    chunk = await anyio.to_thread.run_sync(os.pread, fd, min(_CHUNK, end - start), start)
    if not chunk:
        raise DownloadAborted("the download's temp file shrank")
    await send({"type": "http.response.body", "body": chunk, "more_body": True})
    return len(chunk)


def _headers(job: Job, transfer: Transfer) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"content-type", content_type(job.filename).encode()),
        (b"x-creamery-cache", b"miss"),
        NOSNIFF,
    ]
    if transfer.length is not None:
        headers.append((b"content-length", str(transfer.length).encode()))
    return headers
