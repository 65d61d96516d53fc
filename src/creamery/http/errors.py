"""A client's mistakes never become a 500: the error types and the one place that answers them.

`ClientError` carries a 4xx status and a one-line reason; a body that ends before its declared
length (the client went away, or closed its side) is a 400 and one log line, never a traceback.
`ResponseHeaders` wraps the Starlette app so every response it sends carries `nosniff` and no
header can be split by a control character.
"""

from __future__ import annotations

import contextlib
import logging

from starlette.requests import ClientDisconnect

from creamery.core.errors import ClientError
from creamery.http.asgi_types import ASGIApp, Message, Receive, Scope, Send
from creamery.http.files import safe_headers, send_text

log = logging.getLogger("creamery")


def is_client_error(error: BaseException) -> bool:
    return isinstance(error, ClientError | ClientDisconnect)


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
