"""Conditional requests (RFC 9110): If-None-Match against a strong ETag, answered with 304.

The one place that decides it, for rendered pages (`send_page`), Starlette bodies
(`web.pages.body_response`) and distribution files (`files.send_file`). It imports no other
HTTP helper, so all of them can use it.
"""

from __future__ import annotations

from creamery.core.headers import NOSNIFF
from creamery.http.asgi_types import Scope, Send
from creamery.render.simple_api import Page

Headers = list[tuple[bytes, bytes]]


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an If-None-Match value names *etag* (weak comparison, as RFC 9110 asks; "*"
    matches any current representation)."""
    if if_none_match is None:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return etag in tags or "*" in tags


async def send_page(scope: Scope, send: Send, page: Page, extra: Headers | None = None) -> None:
    """A rendered page with its strong ETag, or 304 when the client has it; no body for HEAD.
    *extra* headers go on both answers."""
    if etag_matches(_if_none_match(scope), page.etag):
        # The 200's Vary, which a cache takes from the 304 for its stored copy: a rebased
        # page's names Host and X-Forwarded-*, and must go on doing so.
        vary = next((v for k, v in page.headers if k == b"vary"), b"Accept")
        headers = [(b"etag", page.etag.encode()), (b"vary", vary), NOSNIFF, *(extra or ())]
        await send({"type": "http.response.start", "status": 304, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return
    headers = page.headers + extra if extra else page.headers  # no copy on the hot path
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    body = b"" if scope["method"] == "HEAD" else page.body
    await send({"type": "http.response.body", "body": body})


def _if_none_match(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"if-none-match":
            return str(value.decode("latin-1"))
    return None
