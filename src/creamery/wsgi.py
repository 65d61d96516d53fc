"""The WSGI variant of creamery, for gunicorn sync workers, waitress, mod_wsgi and paste.

a2wsgi runs the ASGI app on an event loop thread; `WsgiApp` around it makes the result behave
like pypiserver's WSGI app: the index is loaded when the app is built (WSGI hosts send no
lifespan events), and `start_response` has been called when the app returns, which WSGI
frameworks that mount other apps (paste's urlmap, bottle's mount, ...) rely on.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, cast
from wsgiref.types import StartResponse, WSGIEnvironment

from creamery.core.config import FALSE_WORDS, config_from_app_kwargs
from creamery.http.status_line import REASON_KEY
from creamery.web.app import create_app

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from a2wsgi import ASGIMiddleware
    from a2wsgi.wsgi_typing import Environ as A2wsgiEnviron
    from a2wsgi.wsgi_typing import ExceptionInfo

    from creamery.web.app import Creamery

_LIST_KEYS = {"roots": "\n", "root": "\n", "authenticate": " "}
_INT_KEYS = frozenset({"cache_control", "verbosity"})
_BOOL_KEYS = frozenset({"overwrite", "disable_fallback", "redirect_to_fallback"})

Environ = WSGIEnvironment  # PEP 3333: a dict whose values are of many types


def wsgi_app(**kwargs: Any) -> WsgiApp:
    """`creamery.app(**kwargs)` as a WSGI application, its index loaded on return."""
    return WsgiApp(create_app(config_from_app_kwargs(kwargs)))


def paste_app_factory(global_conf: dict[str, Any], **local_conf: str) -> WsgiApp:
    """PasteDeploy entry point: converts the ini file's strings like pypiserver does."""
    del global_conf  # PasteDeploy passes it; pypiserver ignores it too
    return wsgi_app(**{key: _paste_value(key, value) for key, value in local_conf.items()})


def _paste_value(key: str, value: str) -> str | int | bool | list[str]:
    if key in _LIST_KEYS:
        return [item.strip() for item in value.split(_LIST_KEYS[key]) if item.strip()]
    if key in _INT_KEYS:
        return int(value)
    if key in _BOOL_KEYS:
        return value.strip().lower() not in FALSE_WORDS
    return value


_PLAIN_TEXT = [
    ("Content-Type", "text/plain; charset=utf-8"),
    ("X-Content-Type-Options", "nosniff"),
]


def _decodable_path(environ: Environ) -> bool:
    """PEP 3333 hands the path over as latin-1 text of the raw bytes: are those bytes UTF-8?"""
    try:
        for key in ("SCRIPT_NAME", "PATH_INFO"):
            str(environ.get(key, "")).encode("latin-1").decode("utf-8")
    except UnicodeError:
        return False
    return True


class WsgiApp:
    """creamery's ASGI app as a WSGI application (PEP 3333)."""

    def __init__(self, app: Creamery) -> None:
        self.app = app
        # pypiserver's app is ready when app() returns: scan now, not on the first request
        # (a bucket that does not answer yet: 503s until it does).
        app.start_or_wait()
        self._lock = threading.Lock()
        self._adapter: ASGIMiddleware | None = None
        self._loop = _LoopHolder()
        _forkable.add(self)
        # pypiserver's app holds no thread or descriptor, so its users build one per test (its
        # own suite ~170 in one process): this one's watcher and event loop go when it does.
        release = weakref.finalize(self, _release, app, self._loop)
        release.atexit = False  # at exit the daemon threads just end (no new thread then)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if not _decodable_path(environ):
            # a2wsgi decodes the path as UTF-8 before the app sees it, and raises on other bytes.
            refusal = b"Bad Request: the path is not valid UTF-8\n"
            start_response("400 Bad Request", [*_PLAIN_TEXT, ("Content-Length", str(len(refusal)))])
            return [refusal]
        started: list[tuple[str, list[tuple[str, str]], ExceptionInfo | None]] = []

        def capture(
            status: str, headers: list[tuple[str, str]], exc_info: ExceptionInfo | None = None, /
        ) -> Callable[[bytes], None]:
            started.append((status, headers, exc_info))
            return _no_write

        # a2wsgi types the environ as a TypedDict of PEP 3333's keys; it is the same dict.
        body = iter(self._wsgi_adapter()(cast("A2wsgiEnviron", environ), capture))
        try:
            # a2wsgi calls start_response when it meets the first body message: run it that far.
            first = next(body, b"")
        except BaseException:
            _close(body)
            raise
        if not started:
            _close(body)
            raise RuntimeError("the ASGI app ended without starting a response")
        status, headers, exc_info = started[-1]
        reason = environ.get(REASON_KEY)
        if reason:
            status = f"{status.partition(' ')[0]} {reason}"
        try:
            # a2wsgi's exc_info allows a None traceback, typeshed's not; it is sys.exc_info().
            start_response(status, headers, cast("OptExcInfo | None", exc_info))
        except BaseException:
            _close(body)
            raise
        return _Body(first, body, self)

    def _wsgi_adapter(self) -> ASGIMiddleware:
        adapter = self._adapter
        if adapter is None:
            with self._lock:
                if self._adapter is None:
                    from a2wsgi import ASGIMiddleware

                    # Its event loop thread starts here, in the process that serves.
                    loop = self._loop.start()
                    self._adapter = ASGIMiddleware(self.app, loop=loop)  # type: ignore[arg-type]
                adapter = self._adapter
        return adapter

    def _forked(self) -> None:
        """The parent's event loop thread did not come along into this child: make a new one."""
        self._lock = threading.Lock()
        self._adapter = None
        self._loop.loop = None


class _LoopHolder:
    """The event loop a2wsgi runs the app on, in a thread of its own (which closes it)."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.new_event_loop()
        threading.Thread(
            target=_run_forever, args=(loop,), name="creamery-wsgi", daemon=True
        ).start()
        self.loop = loop
        return loop

    def stop(self) -> None:
        loop, self.loop = self.loop, None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)


def _run_forever(loop: asyncio.AbstractEventLoop) -> None:
    try:
        loop.run_forever()
    finally:
        loop.close()


def _release(app: Creamery, loop: _LoopHolder) -> None:
    """The WsgiApp is gone: stop its loop, watcher and rescans (in a thread: the collector may
    run this in one of the threads being stopped)."""
    loop.stop()
    threading.Thread(target=_stop_app, args=(app,), name="creamery-release", daemon=True).start()


def _stop_app(app: Creamery) -> None:
    app.stop()
    app.facts.close()


class _Body:
    """The rest of the response body after its first chunk; close() reaches a2wsgi's."""

    def __init__(self, first: bytes, rest: Iterator[bytes], app: WsgiApp) -> None:
        self._first: bytes | None = first
        self._rest = rest
        self._app = app  # a body still being sent keeps its app (and event loop) alive

    def __iter__(self) -> Iterator[bytes]:
        if self._first is not None:
            first, self._first = self._first, None
            if first:
                yield first
        yield from self._rest

    def close(self) -> None:
        _close(self._rest)


def _close(body: Iterator[bytes]) -> None:
    close = getattr(body, "close", None)
    if close is not None:
        close()


def _no_write(data: bytes) -> None:
    raise RuntimeError("creamery's WSGI app does not use the write() callable")


_forkable: weakref.WeakSet[WsgiApp] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for app in list(_forkable):
        app._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)
