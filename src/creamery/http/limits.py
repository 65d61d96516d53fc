"""What one client may hold: requests in progress per address, and how long a body may stall.

These limits live in the app, so they hold under every server (granian, uvicorn, gunicorn,
WSGI hosts). The server's own limits (connections at once, header timeout) are passed to it by
`server.py`, and connections that never send a byte are closed by `reaper.py`.
docs/security.md lists them all.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable

import anyio

from creamery.http.asgi_types import Message, Receive, Send

log = logging.getLogger("creamery.limits")


REPORT_INTERVAL = 10.0  # seconds between two log lines about one kind of trigger
NO_BODY = frozenset({"GET", "HEAD", "OPTIONS"})  # methods whose body no route reads


class RateLimitedLog:
    """One log line per kind per REPORT_INTERVAL, counting the triggers it did not report."""

    def __init__(self, interval: float = REPORT_INTERVAL) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        self._last[kind] = now
        more = self._suppressed.pop(kind, 0)
        suffix = f" ({more} more since the last report)" if more else ""
        log.warning(message + suffix, *args)


class BodyTimeout(Exception):
    """The client sent no body bytes for --body-timeout seconds.

    Not a TimeoutError: that is an OSError, which the upload code reports as a disk failure.
    """


class TimedBody:
    """Wraps one request's receive and send: a body that stalls ends the request with 408.

    The timeout covers each wait for the next body chunk, until the body is complete; after
    that, receive is left alone (a response may wait on it for the client's disconnect).
    Once the body timed out, whatever the app still sends is dropped, and `finish` answers.
    """

    __slots__ = ("_receive", "_send", "complete", "started", "timed_out", "timeout")

    def __init__(self, receive: Receive, send: Send, timeout: float, *, body: bool = True) -> None:
        self._receive = receive
        self._send = send
        self.timeout = timeout
        self.complete = not body  # a request without a body has it all from the start
        self.timed_out = False
        self.started = False

    async def receive(self) -> Message:
        if self.complete:
            return await self._receive()
        if self.timed_out:
            raise BodyTimeout(f"no body bytes for {self.timeout:g} s")
        with anyio.move_on_after(self.timeout) as scope:
            message = await self._receive()
        if scope.cancelled_caught:
            self.timed_out = True
            raise BodyTimeout(f"no body bytes for {self.timeout:g} s")
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.complete = True
        return message

    async def send(self, message: Message) -> None:
        if self.timed_out:
            return
        if message["type"] == "http.response.start":
            self.started = True
            if not self.complete:  # answered before the body was read (a refusal): the server
                message = _closing(message)  # drops the connection after it, so say so
        await self._send(message)

    async def finish(self) -> None:
        """After a timeout: tell the client, unless its response had already begun."""
        if self.started:
            return
        seconds = f"{self.timeout:g}"
        await _send_refusal(
            self._send, 408, f"Request Timeout: the request body sent nothing for {seconds} s"
        )


def has_body(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether a request's headers announce a body (a Content-Length above 0, or chunks)."""
    for name, value in headers:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


def _closing(start: Message) -> Message:
    """*start* (an `http.response.start`) with `connection: close` among its headers."""
    headers = list(start.get("headers", ()))
    if any(name.lower() == b"connection" for name, _ in headers):
        return start
    return {**start, "headers": [*headers, (b"connection", b"close")]}


class Limits:
    """Per worker process: requests in progress per client address, and body timeouts."""

    def __init__(self, max_client_requests: int, body_timeout: float, exempt: str) -> None:
        self.max_client_requests = max_client_requests
        self.body_timeout = body_timeout
        self.exempt = exempt  # the health endpoint: a load balancer's probe is never refused
        self.cap = max_client_requests or sys.maxsize
        self.in_progress: dict[str, int] = {}
        self.report = RateLimitedLog()

    def admit(self, client: str, path: str) -> bool:
        """Count the request in, or False when its address already has the most allowed.

        (web.Creamery.__call__ does the same inline, for speed.)
        """
        count = self.in_progress.get(client, 0)
        if count >= self.cap and path != self.exempt:
            return False
        self.in_progress[client] = count + 1
        return True

    def release(self, client: str) -> None:
        count = self.in_progress.pop(client, 1) - 1
        if count > 0:
            self.in_progress[client] = count

    async def refuse(self, send: Send, client: str) -> None:
        limit = self.max_client_requests
        self.report.warning(
            "client-requests",
            "limit: %s already has %d requests in progress (--max-client-requests); answered 429",
            client or "-",
            limit,
        )
        reason = f"Too Many Requests: this address already has {limit} requests in progress"
        await _send_refusal(send, 429, reason, [(b"retry-after", b"1")])

    def report_body_timeout(self, client: str, method: str, path: str) -> None:
        self.report.warning(
            "body-timeout",
            "limit: %s sent no body bytes for %g s on %s %s (--body-timeout); answered 408",
            client or "-",
            self.body_timeout,
            method,
            path[:200].encode("unicode_escape").decode("ascii"),
        )


async def _send_refusal(
    send: Send, status: int, reason: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = (reason + "\n").encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"x-content-type-options", b"nosniff"),
                # The unread body must not be taken for the next request.
                (b"connection", b"close"),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
