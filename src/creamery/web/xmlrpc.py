"""XML-RPC: the part of PyPI's legacy API that `pip search` and xmlrpc.client users call.

pip posts to the exact URL given to `--index`, so the service answers on `/RPC2`, `/pypi`,
`/` (XML bodies) and `/simple/`. Bodies are untrusted: parsed by defusedxml's expat parser
(no DTDs, no entities), size-capped, and any failure is a 400 with a one-line reason.
"""

from __future__ import annotations

import inspect
import re
import threading
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary
from xml.parsers.expat import ExpatError

import anyio
from defusedxml import DefusedXmlException
from defusedxml.xmlrpc import DefusedExpatParser
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from creamery.catalog.facts import FactsCache
from creamery.catalog.index import Index
from creamery.catalog.service import Catalog
from creamery.catalog.versions import is_yanked, latest_release, release_metadata, releases
from creamery.core.names import normalize
from creamery.http import routing
from creamery.http.routing import Action, Route
from creamery.web.guard import principal_of
from creamery.web.pages import Endpoint
from creamery.web.state import AppState

MAX_BODY = 1 << 20
# Standard XML-RPC fault codes (specs.xmlrpc.com/spec/xmlrpc-errors).
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
# Fields PyPI's search accepted that core metadata can answer cheaply.
METADATA_FIELDS = (
    "author",
    "author_email",
    "maintainer",
    "maintainer_email",
    "home_page",
    "license",
    "keywords",
    "platform",
    "download_url",
)
SEARCH_FIELDS = ("name", "version", "summary", *METADATA_FIELDS)
# Characters XML 1.0 can't carry: a summary holding one would break every client's parser.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_SEPARATORS = re.compile(r"[-_.]+")

Visible = Callable[[str], bool]  # may the caller see this project (normalized)?
# The methods whose answers name projects: they are given the caller's `visible`.
_NAMING_METHODS = frozenset({"search", "list_packages", "package_releases"})


def _everything(project: str) -> bool:
    return True


_services: WeakKeyDictionary[Catalog, XmlRpcService] = WeakKeyDictionary()
_services_lock = threading.Lock()


class BadRequest(ValueError):
    """The body is not a usable XML-RPC call; the message is one line for the client."""


# ---------------------------------------------------------------- HTTP


def endpoint(state: AppState) -> Endpoint:
    """POST /RPC2, /pypi (and whatever `routes` adds)."""

    async def call(request: Request) -> Response:
        return await handle(state.catalog, request, _visible(state.catalog, request))

    return call


def routes(state: AppState) -> list[Route]:
    """Where clients post calls: pip to the URL given to --index (`/simple/`), others to
    /RPC2 or /pypi. A call is `list` whatever its content type (POST / is in routes.py)."""
    call = routing.endpoint(endpoint(state))
    paths = ("/RPC2", "/RPC2/", "/pypi", "/pypi/", "/simple", "/simple/")
    return [Route(routing.POST, path, action=Action.LIST, handler=call) for path in paths]


def _visible(catalog: Catalog, request: Request) -> Visible | None:
    """What the caller may see, with a permission file (None: everything, at no cost)."""
    access = catalog.access
    principal = principal_of(request.scope)
    if not access.narrows(principal):
        return None
    return access.visible(principal)


async def handle(catalog: Catalog, request: Request, visible: Visible | None = None) -> Response:
    """Answer one XML-RPC call: a methodResponse (maybe a Fault), or 400/413 for bad bodies.
    *visible*: the projects the caller may see (None: all); the others are not there."""
    body = await _read_body(request)
    if body is None:
        return PlainTextResponse(f"Request body larger than {MAX_BODY} bytes\n", 413)
    try:  # in a thread: a megabyte of XML would hold up every other request
        params, method = await anyio.to_thread.run_sync(parse_call, body)
    except BadRequest as error:
        return PlainTextResponse(f"Bad XML-RPC request: {error}\n", 400)
    service = service_for(catalog)
    result = await anyio.to_thread.run_sync(service.call, method, params, visible)
    return Response(result, media_type="text/xml")


async def _read_body(request: Request) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def parse_call(body: bytes) -> tuple[tuple[object, ...], str]:
    """(params, method name) of a methodCall; what `xmlrpc.client.loads` does, defused."""
    unmarshaller = xmlrpc.client.Unmarshaller()
    parser = DefusedExpatParser(unmarshaller, forbid_dtd=True)
    try:
        parser.feed(body)
        parser.close()
        params = unmarshaller.close()
    except DefusedXmlException as error:
        raise BadRequest(f"forbidden XML construct ({type(error).__name__})") from error
    except ExpatError as error:
        raise BadRequest(f"malformed XML ({error})") from error
    except (xmlrpc.client.Error, ValueError, TypeError, IndexError, KeyError) as error:
        raise BadRequest("not a valid XML-RPC method call") from error
    except LookupError as error:  # an encoding Python does not know (after IndexError, KeyError)
        raise BadRequest(f"unsupported encoding ({error})") from error
    method = unmarshaller.getmethodname()
    if not method:
        raise BadRequest("not an XML-RPC method call (no methodName)")
    return params, method


def service_for(catalog: Catalog) -> XmlRpcService:
    with _services_lock:
        service = _services.get(catalog)
        if service is None:
            service = _services[catalog] = XmlRpcService(catalog.index, catalog.facts)
        return service


# ---------------------------------------------------------------- the methods


@dataclass(frozen=True, slots=True)
class SearchRecord:
    """What search knows of a project: its latest release and searchable texts, lower-cased."""

    name: str  # as its core metadata spells it
    version: str
    summary: str
    texts: dict[str, tuple[str, ...]]


class XmlRpcService:
    def __init__(self, index: Index, facts: FactsCache) -> None:
        self.index = index
        self.facts = facts
        self._records: dict[str, tuple[int, SearchRecord]] = {}
        self._lock = threading.Lock()
        # Results are XML-RPC values (what xmlrpc.client marshals): of many types, nested.
        self.methods: dict[str, Callable[..., Any]] = {
            "search": self.search,
            "list_packages": self.list_packages,
            "package_releases": self.package_releases,
            "system.listMethods": self.list_methods,
        }

    def call(
        self, method: str, params: tuple[object, ...], visible: Visible | None = None
    ) -> bytes:
        """The methodResponse for one call (blocking: run it in a thread); a project
        *visible* refuses answers as a project that does not exist."""
        try:
            result = self._dispatch(method, params, visible or _everything)
            text = xmlrpc.client.dumps((clean(result),), methodresponse=True)
        except xmlrpc.client.Fault as fault:
            text = xmlrpc.client.dumps(fault, methodresponse=True)
        return text.encode("utf-8")

    def _dispatch(self, method: str, params: tuple[object, ...], visible: Visible) -> Any:
        function = self.methods.get(method)
        if function is None:
            raise xmlrpc.client.Fault(METHOD_NOT_FOUND, f"method {method!r} is not supported")
        try:
            inspect.signature(function).bind(*params)
        except TypeError as error:
            raise xmlrpc.client.Fault(INVALID_PARAMS, f"{method}: {error}") from error
        if method in _NAMING_METHODS:
            return function(*params, visible=visible)
        return function(*params)

    def list_methods(self) -> list[str]:
        return sorted(self.methods)

    def list_packages(self, *, visible: Visible = _everything) -> list[str]:
        return [name for name in self.index.project_names() if visible(name)]

    def package_releases(
        self, name: str, show_hidden: bool = False, *, visible: Visible = _everything
    ) -> list[str]:
        """Versions newest first; without show_hidden, yanked releases are left out (PyPI)."""
        _expect(isinstance(name, str), "package_releases: the name must be a string")
        project = normalize(name)
        if not visible(project):
            return []  # what a project nobody uploaded has
        found = releases(self.index, project)
        if not show_hidden:
            found = [r for r in found if not is_yanked(self.index, r)]
        return [r.version for r in reversed(found)]

    def search(
        self, spec: object, operator: str = "and", *, visible: Visible = _everything
    ) -> list[dict[str, object]]:
        """PyPI's search: within a field any term may match, across fields `operator` decides.

        A plain string instead of the struct searches the names, as pypiserver does.
        """
        terms = search_terms(spec)
        _expect(
            isinstance(operator, str) and operator.lower() in ("and", "or"),
            "search: the operator must be 'and' or 'or'",
        )
        combine = all if operator.lower() == "and" else any
        if not terms:
            return []
        hits = []
        for record in self.records(visible):
            if combine(_field_matches(record, field, words) for field, words in terms.items()):
                hits.append(record)
        hits.sort(key=lambda r: r.name.lower())
        return [
            {"name": r.name, "version": r.version, "summary": r.summary, "_pypi_ordering": 0}
            for r in hits
        ]

    def records(self, visible: Visible = _everything) -> list[SearchRecord]:
        """A record per *visible* project, rebuilt only for projects changed since it was
        made."""
        found = []
        for project in self.index.project_names():
            if not visible(project):
                continue
            generation = self.index.project_generation(project)
            known = self._records.get(project)
            if known is None or known[0] != generation:
                record = search_record(self.index, self.facts, project)
                if record is None:
                    continue
                with self._lock:
                    self._records[project] = known = (generation, record)
            found.append(known[1])
        return found


def search_record(index: Index, facts: FactsCache, project: str) -> SearchRecord | None:
    found = releases(index, project)
    if not found:
        return None
    latest = latest_release(index, found)
    meta: dict[str, Any] = dict(release_metadata(facts, latest))
    name = meta.get("name") or latest.files[0].parsed.raw_name
    summary = meta.get("summary") or ""
    texts: dict[str, tuple[str, ...]] = {
        "name": (name.lower(), project),
        "version": tuple(r.version.lower() for r in found),
        "summary": (summary.lower(),),
    }
    for field in METADATA_FIELDS:
        value = meta.get("platforms" if field == "platform" else field)
        if isinstance(value, list):
            value = ", ".join(value)
        texts[field] = (value.lower(),) if value else ()
    return SearchRecord(name, latest.version, summary, texts)


def search_terms(spec: object) -> dict[str, list[str]]:
    """Validate a search spec: field -> lower-cased terms (a string or a list of strings).

    The spec is a struct of field -> terms, or a plain string: pypiserver's form, a name term.
    """
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict):
        raise xmlrpc.client.Fault(
            INVALID_PARAMS, "search: the spec must be a string or a struct of field -> terms"
        )
    terms: dict[str, list[str]] = {}
    for field, value in spec.items():
        _expect(field in SEARCH_FIELDS, f"search: unsupported field {field!r}")
        words = value if isinstance(value, list) else [value]
        _expect(all(isinstance(w, str) for w in words), f"search: {field} terms must be strings")
        if words:
            terms[field] = [w.strip().lower() for w in words]
    return terms


def _field_matches(record: SearchRecord, field: str, words: list[str]) -> bool:
    texts = record.texts[field]
    if field == "name":
        # foo_bar finds foo-bar: compare normalized spellings too.
        words = [*words, *(_SEPARATORS.sub("-", w) for w in words)]
    return any(word in text for word in words for text in texts)


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise xmlrpc.client.Fault(INVALID_PARAMS, message)


def clean(value: Any) -> Any:
    """Drop characters XML 1.0 can't carry from every string of a result."""
    if isinstance(value, str):
        return _NOT_XML.sub("", value)
    if isinstance(value, list):
        return [clean(v) for v in value]
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    return value
