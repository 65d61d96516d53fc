"""A client's mistakes never become a 500: the error types and the one place that answers them.

`ClientError` carries a 4xx status and a one-line reason; a body that ends before its declared
length (the client went away, or closed its side) is a 400 and one log line, never a traceback.
`ResponseHeaders` wraps the Starlette app so every response it sends carries `nosniff` and no
header can be split by a control character.

A store that does not answer (`StoreUnavailable`: an object store that is down or timed out) is
not a bug either: 503 with `Retry-After` and a one-line reason naming the store.
"""

from __future__ import annotations

import contextlib
import logging

from starlette.requests import ClientDisconnect

from creamery.core.errors import ClientError
from creamery.http.asgi_types import ASGIApp, Message, Receive, Scope, Send
from creamery.http.files import safe_headers, send_text
from creamery.storage import StoreUnavailable

log = logging.getLogger("creamery")

RETRY_AFTER = (b"retry-after", b"5")  # seconds: a store outage is usually short
_MAX_REASON = 300


def is_store_outage(error: BaseException) -> bool:
    return isinstance(error, StoreUnavailable)


def outage_reason(error: BaseException, store: str = "") -> str:
    """One line for a person: what the store said (first 300 characters), naming *store*."""
    said = " ".join(str(error).split())[:_MAX_REASON] or type(error).__name__
    if store and store not in said:
        said = f"{store}: {said}"
    return f"the package store is unavailable ({said}); retry later"


async def answer_outage(
    send: Send,
    error: BaseException,
    *,
    store: str = "",
    started: bool = False,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """503 + Retry-After for a store that did not answer (logged once, without a traceback)."""
    reason = outage_reason(error, store)
    log.warning("503: %s", reason)
    if started:
        return
    with contextlib.suppress(Exception):  # the client may be gone
        await send_text(
            send, 503, f"Service Unavailable: {reason}", [RETRY_AFTER, *(headers or [])]
        )


def is_client_error(error: BaseException) -> bool:
    return isinstance(error, ClientError | ClientDisconnect)


# h11's states of a connection that takes no more events from the app.
_FINISHED_STATES = ("state=MUST_CLOSE", "state=CLOSED", "state=ERROR")


def closed_by_the_server(error: BaseException) -> bool:
    """Did the server's `send` refuse because the server itself had ended the connection?
    uvicorn answers a malformed chunked body with its own 400 while the app is running; its
    h11 then raises LocalProtocolError from the app's `send` (ASGI asks for an OSError): the
    client's mistake, already answered, not the app's failure."""
    kind = type(error)
    return (
        kind.__name__ == "LocalProtocolError"
        and kind.__module__.startswith("h11")
        and any(state in str(error) for state in _FINISHED_STATES)
    )


async def answer_client_error(
    scope: Scope, send: Send, error: BaseException, *, started: bool
) -> None:
    """Answer (or, once the client is gone or the response started, log) a client's error."""
    what = f"{scope.get('method')} {scope.get('path')!r}"
    if isinstance(error, ClientDisconnect):
        # A client that only closed its sending side still reads the answer.
        error = ClientError(400, "the request body ended before its declared length")
    assert isinstance(error, ClientError)
    if started:
        log.info("%s: %s (after the response had started)", what, error.reason)
        return
    log.info("%s: %d %s", what, error.status, error.reason)
    with contextlib.suppress(Exception):  # the client may be gone altogether
        await send_text(send, error.status, error.reason)


class ResponseHeaders:
    """ASGI middleware for the Starlette app: safe headers with nosniff; client errors as 4xx."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": safe_headers(list(message.get("headers", [])))}
            await send(message)

        try:
            await self.app(scope, receive, guarded_send)
        except (ClientError, ClientDisconnect) as error:
            await answer_client_error(scope, guarded_send, error, started=started)
        except StoreUnavailable as error:
            await answer_outage(guarded_send, error, started=started)
