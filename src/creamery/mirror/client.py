"""Asking upstream indexes for project pages and files, over one pooled httpx client.

httpx honours HTTP(S)_PROXY, NO_PROXY and SSL_CERT_FILE (trust_env). Credentials in an upstream
URL (`https://user:pass@host/simple/`) are sent as Basic auth to that host only, and are never
part of a stored URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from urllib.parse import unquote, urlsplit, urlunsplit

import anyio
import httpx

from creamery.core.config import ConfigError
from creamery.core.version import __version__
from creamery.mirror.listing import (
    HTML_TYPES,
    JSON_TYPES,
    Listing,
    ListingError,
    parse_html,
    parse_json,
)

# PEP 691 JSON preferred: it alone carries sizes and upload times (PEP 700).
ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2,"
    " text/html;q=0.1"
)
MAX_PAGE_BYTES = 64 << 20  # the largest project pages on PyPI are a few megabytes


@dataclass(frozen=True, slots=True)
class Failure:
    """Why an upstream could not answer: 502 (bad gateway) or 504 (gateway timeout)."""

    status: int
    reason: str

    @property
    def text(self) -> str:
        phrase = "Gateway Timeout" if self.status == 504 else "Bad Gateway"
        return f"{phrase} ({self.reason})"


class Answer(enum.Enum):
    NOT_FOUND = "not found"
    NOT_MODIFIED = "not modified"


@dataclass(frozen=True, slots=True)
class Upstream:
    index_url: str  # ends with "/", without credentials
    auth: tuple[str, str] | None

    @classmethod
    def parse(cls, url: str) -> Upstream:
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"upstream URL {url!r} must be an http:// or https:// URL")
        auth = None
        if parts.username is not None:
            auth = (unquote(parts.username), unquote(parts.password or ""))
        path = parts.path if parts.path.endswith("/") else parts.path + "/"
        netloc = parts.netloc.rpartition("@")[2]
        return cls(urlunsplit((parts.scheme, netloc, path, "", "")), auth)

    def project_url(self, project: str) -> str:
        return f"{self.index_url}{project}/"

    def auth_for(self, url: str) -> tuple[str, str] | None:
        """Our credentials, for URLs on the upstream's own host only."""
        mine, theirs = urlsplit(self.index_url), urlsplit(url)
        same = (mine.scheme, mine.netloc) == (theirs.scheme, theirs.netloc)
        return self.auth if same else None


class UpstreamClient:
    def __init__(self, urls: Sequence[str], timeout: float) -> None:
        self.upstreams = tuple(Upstream.parse(url) for url in urls)
        self.timeout = timeout
        self._http: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def http(self) -> httpx.AsyncClient:
        """The pooled client of the running event loop (a pool can't cross loops)."""
        loop = asyncio.get_running_loop()
        if self._http is None or self._loop is not loop:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout),
                follow_redirects=True,
                headers={"user-agent": f"creamery/{__version__} (mirror)"},
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            )
            self._loop = loop
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # ------------------------------------------------------------------ project pages

    async def fetch_listing(
        self, project: str, previous: Listing | None
    ) -> Listing | Failure | Answer:
        """The first upstream that knows the project wins (fallback URL first).

        An upstream that fails stops the search: what it would have said is unknown, and asking
        the next one could hand the name to a different owner.
        """
        for upstream in self.upstreams:
            etag = None
            if previous is not None and previous.source == upstream.index_url:
                etag = previous.etag
            answer = await self._ask(upstream, project, etag)
            if answer is not Answer.NOT_FOUND:
                return answer
        return Answer.NOT_FOUND

    async def _ask(
        self, upstream: Upstream, project: str, etag: str | None
    ) -> Listing | Failure | Answer:
        url = upstream.project_url(project)
        headers = {"accept": ACCEPT}
        if etag:
            headers["if-none-match"] = etag
        try:
            with anyio.fail_after(self.timeout):
                async with self.http().stream(
                    "GET", url, headers=headers, auth=upstream.auth
                ) as response:
                    if response.status_code in (404, 410):
                        return Answer.NOT_FOUND
                    if response.status_code == 304:
                        return Answer.NOT_MODIFIED
                    if response.status_code != 200:
                        return Failure(502, f"{url} answered {response.status_code}")
                    body = await read_capped(response, MAX_PAGE_BYTES)
            return _parse(response, body, project, upstream)
        except (TimeoutError, httpx.TimeoutException):
            return Failure(504, f"{url} did not answer within {self.timeout:g} s")
        except httpx.HTTPError as error:
            return Failure(502, f"{url} failed: {describe(error)}")
        except ListingError as error:
            return Failure(502, f"{url} sent an unusable page: {error}")

    # ------------------------------------------------------------------ files

    @contextlib.asynccontextmanager
    async def stream_file(self, url: str, source: str) -> AsyncIterator[httpx.Response]:
        """GET a file as stored upstream (no content decoding: its hash must match)."""
        upstream = next((u for u in self.upstreams if u.index_url == source), None)
        auth = upstream.auth_for(url) if upstream is not None else None
        headers = {"accept-encoding": "identity"}
        async with self.http().stream("GET", url, headers=headers, auth=auth) as response:
            yield response


def _parse(response: httpx.Response, body: bytes, project: str, upstream: Upstream) -> Listing:
    media = response.headers.get("content-type", "").partition(";")[0].strip().lower()
    page_url = str(response.url)
    if media in JSON_TYPES or media == "application/json":
        listing = parse_json(body, project, page_url, upstream.index_url)
    elif media in HTML_TYPES or not media:
        listing = parse_html(body, project, page_url, upstream.index_url)
    else:
        raise ListingError(f"unexpected content type {media!r}")
    # Our own URL for the project: stable across redirects and free of credentials.
    return replace(listing, url=upstream.project_url(project), etag=response.headers.get("etag"))


async def read_capped(response: httpx.Response, limit: int) -> bytes:
    body = await read_at_most(response, limit)
    if body is None:
        raise ListingError(f"page larger than {limit >> 20} MiB")
    return body


async def read_at_most(response: httpx.Response, limit: int) -> bytes | None:
    """The body, read as it comes; None once it is longer than *limit* bytes (the rest is not
    read: an upstream can't make us hold more)."""
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.aiter_bytes():
        total += len(chunk)
        if total > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def describe(error: BaseException) -> str:
    return str(error) or type(error).__name__
