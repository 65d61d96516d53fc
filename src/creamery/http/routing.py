"""The one route table: every URL creamery answers, the pypiserver action it performs, its handler.

The dispatcher, the guard and the tests read this table and nothing else, so what may be done
and what is done are decided by the same match. A request that matches no route is answered
404 (405 for a known path with another method) without reaching a handler, and a route cannot
be declared without saying which action it performs (`Action.PUBLIC` has to be written out).

Paths are matched exactly: `{name}` is one non-empty segment without "/", a path ending in
`*` is a prefix followed by at least one character. Prefix routes are the hot paths, tried
first at one `startswith` each; then exact paths (a dict lookup); then patterns, compiled to
regular expressions matched with `fullmatch` (never `$`, which also matches before a final
newline). Among routes matching one path, the first whose methods and `when` hold wins.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum

from starlette.requests import Request
from starlette.responses import Response

from creamery.http.asgi_types import Receive, Scope, Send
from creamery.http.errors import ResponseHeaders

Params = dict[str, str]
Handler = Callable[[Scope, Receive, Send, Params], Awaitable[None]]
Condition = Callable[[Scope], bool]
Endpoint = Callable[[Request], Awaitable[Response]]
READ = ("GET", "HEAD")
POST = ("POST",)

_SEGMENT = re.compile(r"\{([a-z_]+)\}")
# C0 and C1 controls, DEL, lone surrogates and U+FFFD (what servers make of bytes that are
# not UTF-8): no valid route, project or file name holds one, and several of them (CR, LF,
# NUL) have other meanings to the layers around us.
_NOT_IN_PATHS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffd]")


class Action(Enum):
    """What a request does, in pypiserver's `-a` terms; PUBLIC needs no credentials ever,
    ACCOUNT always needs them (a user's own tokens, the audit log, a project's owners), what
    ever `-a` says."""

    UPDATE = "update"
    DOWNLOAD = "download"
    LIST = "list"
    ACCOUNT = "account"
    PUBLIC = "public"


@dataclass(frozen=True, slots=True)
class Route:
    """One declaration: methods, path, action, handler; `when` picks among routes that share
    a method and path (POST / is an upload or an XML-RPC call, decided once, here)."""

    methods: tuple[str, ...]
    path: str
    action: Action
    handler: Handler
    when: Condition | None = None
    # A page for people in a browser: a signed-in session (its cookie) counts as credentials
    # for it, and an anonymous visitor it needs credentials from is sent to the sign-in page
    # instead of a Basic challenge. Its POST handlers check the form's CSRF token themselves.
    browser: bool = False
    # The action the guard checks: None for PUBLIC (kept as a plain string for the hot path).
    needs: str | None = field(init=False, repr=False, compare=False)
    # A prefix route (a hot path): its handler looks on disk itself, and only before a 404.
    hot: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.action, Action):
            raise TypeError(f"route {self.path!r}: action must be an Action, not {self.action!r}")
        if not self.methods or not self.path.startswith("/"):
            raise ValueError(f"route {self.path!r}: needs methods and a path starting with /")
        needs = None if self.action is Action.PUBLIC else self.action.value
        object.__setattr__(self, "needs", needs)
        object.__setattr__(self, "hot", self.path.endswith("*"))


@dataclass(slots=True)  # not frozen: one is made per request, and frozen init costs ~0.5 us
class Match:
    route: Route
    params: Params


@dataclass(frozen=True, slots=True)
class WrongMethod:
    """The path is known, the method is not: 405 with these methods in Allow."""

    allowed: tuple[str, ...]


@dataclass(slots=True)
class _Pattern:
    regex: re.Pattern[str]
    routes: list[Route] = field(default_factory=list)


class RouteTable:
    """The routes in declaration order, indexed for matching."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes: tuple[Route, ...] = tuple(routes)
        self._prefixes: list[tuple[str, int, list[Route]]] = []
        self._exact: dict[str, list[Route]] = {}
        self._patterns: dict[str, _Pattern] = {}
        for route in self.routes:
            self._add(route)
        for path in self._exact:
            for prefix, _, _ in self._prefixes:
                if path.startswith(prefix) and len(path) > len(prefix):
                    raise ValueError(f"route {path!r} is hidden by the prefix route {prefix}*")

    def _add(self, route: Route) -> None:
        path = route.path
        if path.endswith("*"):
            prefix = path[:-1]
            for known, _, routes in self._prefixes:
                if known == prefix:
                    routes.append(route)
                    return
            self._prefixes.append((prefix, len(prefix), [route]))
        elif "{" in path:
            pattern = self._patterns.get(path)
            if pattern is None:
                pattern = self._patterns[path] = _Pattern(_compile(path))
            pattern.routes.append(route)
        else:
            self._exact.setdefault(path, []).append(route)

    def match(self, method: str, path: str, scope: Scope) -> Match | WrongMethod | None:
        """The route for this request, WrongMethod for a known path, or None (404)."""
        for prefix, size, routes in self._prefixes:  # the hot paths: no generator, no regex
            if len(path) > size and path.startswith(prefix):
                for route in routes:
                    if method in route.methods and (route.when is None or route.when(scope)):
                        return Match(route, {"rest": path[size:]})
        for candidates, params in self._candidates(path):
            for route in candidates:
                if method in route.methods and (route.when is None or route.when(scope)):
                    return Match(route, params)
        allowed = [
            m for candidates, _ in self._candidates(path) for r in candidates for m in r.methods
        ]
        return WrongMethod(tuple(dict.fromkeys(allowed))) if allowed else None

    def _candidates(self, path: str) -> Iterator[tuple[list[Route], Params]]:
        """The routes whose path matches, in the order they are tried: prefix, exact, pattern."""
        for prefix, size, routes in self._prefixes:
            if len(path) > size and path.startswith(prefix):
                yield routes, {"rest": path[size:]}
        exact = self._exact.get(path)
        if exact is not None:
            yield exact, {}
        for pattern in self._patterns.values():
            matched = pattern.regex.fullmatch(path)
            if matched is not None:
                yield pattern.routes, matched.groupdict()


def endpoint(function: Endpoint) -> Handler:
    """A Starlette-style endpoint (Request in, Response out) as a route handler."""

    async def respond(scope: Scope, receive: Receive, send: Send) -> None:
        response = await function(Request(scope, receive))
        await response(scope, receive, send)

    # Framework responses get the same safe headers and 4xx-for-client-errors as the hot paths.
    guarded = ResponseHeaders(respond)

    async def handler(scope: Scope, receive: Receive, send: Send, params: Params) -> None:
        scope["path_params"] = params
        await guarded(scope, receive, send)

    return handler


def _compile(path: str) -> re.Pattern[str]:
    parts = _SEGMENT.split(path)
    # split alternates literal text and parameter names: even indexes are literal.
    regex = "".join(
        re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)" for i, part in enumerate(parts)
    )
    return re.compile(regex)


def relative_path(scope: Scope) -> str:
    """The path below the mount point: ASGI's `path` includes `root_path` (a2wsgi's SCRIPT_NAME,
    uvicorn's --root-path), but some servers leave it out; both are understood."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        rest = path[len(root) :]
        if not rest:
            return "/"
        if rest[0] == "/":
            return rest
    return path


def bad_path(path: str) -> str | None:
    """Why a path can't be a request for anything here (None when it can)."""
    # ASCII, the usual case, costs two C calls: its unprintable characters are C0 and DEL.
    ascii_bad = path.isascii() and not path.isprintable()
    if ascii_bad or (not path.isascii() and _NOT_IN_PATHS.search(path) is not None):
        return "the path holds a control character or bytes that are not UTF-8"
    return None
