"""What operators see of each request: one access-log line and Prometheus metrics.

Only requests are wrapped when someone is looking (INFO logging or `--metrics`), so a quiet
server's hot paths pay nothing. The Authorization header and passwords never reach a log.
"""

from __future__ import annotations

import logging
import os
import re
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from creamery.core.config import DEFAULT_LOG_REQ_FRMT, DEFAULT_LOG_RES_FRMT, Config
from creamery.core.names import METADATA
from creamery.http.asgi_types import Message, Receive, Scope, Send
from creamery.http.routing import relative_path

if TYPE_CHECKING:
    from prometheus_client import Metric

access_log = logging.getLogger("creamery.access")
error_log = logging.getLogger("creamery.error")

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def route_of(method: str, path: str) -> str:
    """A small, fixed set of route names for metric labels (never raw paths)."""
    if path.startswith("/simple/"):
        return "simple_index" if path == "/simple/" else "simple_project"
    if path.startswith("/packages/"):
        if path == "/packages/":
            return "listing"
        return "metadata" if path.endswith(METADATA) else "files"
    if path.startswith("/upstream/"):
        return "mirror_files"
    if method == "POST":
        return "upload" if path in ("/", "/legacy/", "/legacy") else "post_other"
    if path.startswith("/pypi/") or path.endswith("/json"):
        return "json_api"
    if path in ("/", "/metrics"):
        return "welcome" if path == "/" else "metrics"
    return "other"


class Observer:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = Metrics() if config.metrics else None
        self.custom_format = (config.log_req_frmt, config.log_res_frmt) != (
            DEFAULT_LOG_REQ_FRMT,
            DEFAULT_LOG_RES_FRMT,
        )

    def active(self) -> bool:
        return self.metrics is not None or access_log.isEnabledFor(logging.INFO)

    async def observe(self, handle: Handler, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        response = {"status": 0, "bytes": 0}

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                response["status"] = message["status"]
            elif message["type"] == "http.response.body":
                response["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await handle(scope, receive, counting_send)
        except BaseException:
            response["status"] = response["status"] or 500
            raise
        finally:
            duration = time.perf_counter() - started
            self._record(scope, response["status"], response["bytes"], duration)

    def _record(self, scope: Scope, status: int, sent: int, duration: float) -> None:
        method, path = scope["method"], relative_path(scope)
        if self.metrics is not None:
            self.metrics.request(route_of(method, path), method, status, sent, duration)
            if status in (401, 403, 429):
                self.metrics.auth_failures.labels(str(status)).inc()
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(one_line(self._line(scope, status, sent, duration)))

    def _line(self, scope: Scope, status: int, sent: int, duration: float) -> str:
        address = client_address(scope)
        user = scope.get("creamery.user") or "-"
        query = scope.get("query_string", b"").decode("latin-1")
        target = scope["path"] + ("?" + query if query else "")
        if self.custom_format:
            values = request_values(scope, target, user)
            values.update(status=status, bytes=sent, duration=duration)
            return f"{_safe_format(self.config.log_req_frmt, values)} " + _safe_format(
                self.config.log_res_frmt, values
            )
        return (
            f'{address} {user} "{scope["method"]} {target} HTTP/{scope.get("http_version")}"'
            f" {status} {sent} {duration * 1000:.1f}ms"
        )


CLIENT_KEY = "creamery.client"  # where the app puts a forwarded client's address


def client_address(scope: Scope) -> str:
    """The client's address: the one a trusted proxy forwarded for (`--trusted-proxy`, set
    by the app as `creamery.client`), else the peer's."""
    forwarded = scope.get(CLIENT_KEY)
    if isinstance(forwarded, str):
        return forwarded
    client = scope.get("client")
    return str(client[0]) if client else "-"


def one_line(text: str) -> str:
    """Control characters a client put in its path or headers, escaped: no forged log lines."""
    if _CONTROL.search(text) is None:
        return text
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def request_values(scope: Scope, target: str, user: str) -> dict[str, object]:
    """pypiserver's `--log-req-frmt` keys (a WSGI environ and bottle.request), minus secrets."""
    values: dict[str, object] = {
        "bottle.request": f"<LocalRequest: {scope['method']} {target}>",
        "REQUEST_METHOD": scope["method"],
        "PATH_INFO": scope["path"],
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "REMOTE_ADDR": client_address(scope),
        "REMOTE_USER": user,
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version')}",
    }
    for name, value in scope.get("headers", []):
        key = name.decode("latin-1").upper().replace("-", "_")
        if key not in ("AUTHORIZATION", "COOKIE", "PROXY_AUTHORIZATION"):
            values["HTTP_" + key] = value.decode("latin-1")
    return values


def _safe_format(template: str, values: Mapping[str, object]) -> str:
    try:
        return template % values
    except (KeyError, ValueError, TypeError) as error:
        return f"<bad log format {template!r}: {error}>"


def log_error(config: Config, scope: Scope, error: BaseException) -> None:
    """pypiserver's `--log-err-frmt` with body, exception and traceback."""
    values = {
        "body": one_line(f"{scope.get('method')} {scope.get('path')}"),
        "exception": repr(error),
        "traceback": "".join(traceback.format_exception(error)),
    }
    error_log.error(_safe_format(config.log_err_frmt, values), extra={"multiline": True})


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})


class Metrics:
    """Prometheus metrics; with several workers they are shared through files (multiprocess)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess = MULTIPROC_ENV in os.environ
        # In multiprocess mode values go to files, and the registry is built at scrape time.
        kwargs: dict[str, Any] = {"registry": None if self.multiprocess else self.registry}
        self.requests = Counter(
            "creamery_requests", "HTTP requests", ["route", "method", "status"], **kwargs
        )
        self.latency = Histogram(
            "creamery_request_duration_seconds",
            "Time to answer a request",
            ["route"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            **kwargs,
        )
        self.bytes_sent = Counter("creamery_sent_bytes", "Response body bytes", ["route"], **kwargs)
        self.uploads = Counter("creamery_uploads", "Accepted uploads", ["outcome"], **kwargs)
        self.auth_failures = Counter(
            "creamery_auth_failures", "Requests refused for credentials", ["status"], **kwargs
        )
        gauge_kwargs = {**kwargs, "multiprocess_mode": "livemax"} if self.multiprocess else kwargs
        self.mirror_events = Counter(
            "creamery_mirror_requests", "Mirror cache lookups", ["kind", "result"], **kwargs
        )
        self.mirror_policy = Counter(
            "creamery_mirror_policy_decisions",
            "Mirror responses where a policy hid files or a project",
            ["rule", "kind"],
            **kwargs,
        )
        self.mirror_bytes = Gauge(
            "creamery_mirror_cache_bytes", "Bytes of mirrored files kept", **gauge_kwargs
        )

    def request(self, route: str, method: str, status: int, sent: int, duration: float) -> None:
        # The method is the client's word: each new one would be a series kept forever.
        method = method if method in _METHODS else "other"
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(duration)
        self.bytes_sent.labels(route).inc(sent)

    def exposition(self, projects: int, files: int) -> tuple[bytes, str]:
        """The scrape's answer, with the index's size as the scraper may see it (*projects*,
        *files*: counted for its principal, so hidden projects don't add to them). Those two
        are made per scrape, not kept: a gauge shared by workers would show the largest
        count any principal saw."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        size = CollectorRegistry(auto_describe=True)
        size.register(_IndexSize(projects, files))  # values, not gauges: nothing stored
        registry = self.registry
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry) + generate_latest(size), CONTENT_TYPE_LATEST


class _IndexSize:
    """The index's size as one scrape's principal sees it (a custom collector)."""

    def __init__(self, projects: int, files: int) -> None:
        self.values = (
            ("creamery_projects", "Projects in the index", projects),
            ("creamery_files", "Distribution files in the index", files),
        )

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        for name, documentation, value in self.values:
            yield GaugeMetricFamily(name, documentation, value=value)


def prepare_multiprocess_metrics(config: Config) -> None:
    """Before worker processes start: a fresh directory where they share their metrics."""
    if not config.metrics or config.workers < 2 or MULTIPROC_ENV in os.environ:
        return
    import shutil
    import tempfile

    directory = tempfile.mkdtemp(prefix="creamery-metrics-")
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    os.environ[MULTIPROC_ENV] = directory
