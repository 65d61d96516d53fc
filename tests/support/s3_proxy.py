"""A proxy in front of the test's S3 server that holds back chosen requests: the store failing
between two requests of one operation (the change feed's LIST answers, the GET of the record
it found does not), or one kind of request slow (a replica's start-up), deterministically.

Requests are forwarded as they are (the signature covers the Host header, which is kept): a
creamery process pointed at the proxy (`AWS_ENDPOINT_URL`) talks to the real S3 server.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Callable, Iterator

import httpx

from support.s3 import S3Server
from support.servers import serve_http

Stall = Callable[[str, str], bool]  # (method, path with query) -> hold it back


def never(method: str, path: str) -> bool:
    return False


class StoreProxy(http.server.BaseHTTPRequestHandler):
    """One request from creamery, forwarded; the class (one per `store_proxy`) holds the
    settings: what to hold back, and whether held requests are let go or dropped."""

    protocol_version = "HTTP/1.1"
    upstream = ""
    stalled: Stall = staticmethod(never)
    released = threading.Event()  # held requests go on (or, with `drop`, are cut off)
    held = threading.Event()  # set when a request is held back
    drop = False

    @classmethod
    def hold(cls, stall: Stall, *, drop: bool = False) -> None:
        """From now on hold back the requests *stall* picks (until `let_go`: the client may
        give up first, at its --s3-timeout); *drop*: they never reach the store at all."""
        cls.stalled, cls.drop = staticmethod(stall), drop

    @classmethod
    def let_go(cls) -> None:
        """Forward everything again; requests held until now go on (unless dropped)."""
        cls.stalled = staticmethod(never)
        cls.released.set()

    def _forward(self) -> None:
        proxy = type(self)
        if proxy.stalled(self.command, self.path):
            proxy.held.set()
            if not proxy.released.wait(60) or proxy.drop:
                self.close_connection = True
                return
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = [(k, v) for k, v in self.headers.items() if k.lower() != "connection"]
        response = httpx.request(
            self.command, self.upstream + self.path, headers=headers, content=body, timeout=30
        )
        with contextlib.suppress(OSError):  # a client that gave up on a stalled request
            self.send_response_only(response.status_code)
            for name, value in response.headers.multi_items():
                if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(name, value)
            self.send_header("Content-Length", response.headers.get("content-length", "0"))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.content)

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _forward

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def store_proxy(s3: S3Server) -> Iterator[tuple[type[StoreProxy], str]]:
    """A `StoreProxy` class of its own (`hold`, `let_go`) and its URL, in front of *s3*."""

    class Proxy(StoreProxy):
        upstream = s3.endpoint
        released = threading.Event()
        held = threading.Event()

    try:
        with serve_http(Proxy) as url:
            yield Proxy, url
    finally:
        Proxy.released.set()  # nothing stays held when the test ends
