"""Hosted documentation pages: `/docs/` (the projects with documentation), `/docs/<project>/`
(the latest version's), `/docs/<project>/<version>/<path>` (a member of its zip), and the
plain upload, `POST /docs/<project>/<version>/` (`writes.docs_api`).

Members are read from the stored zip, never extracted: a local state directory's zip is
opened where it lies, a bucket's object is read into a bounded LRU of zip bytes, both keyed by
the object's stored version (so a replaced upload is never served stale, and its ETag
changes). Uploaded HTML and script are hostile: every member goes out with a CSP `sandbox`
without `allow-same-origin`, so its scripts run in an opaque origin and can read none of the
UI's pages, cookies or CSRF tokens; with nosniff, and no cookie set. A
hidden project answers exactly as one that does not exist; a quarantined one's (PEP 792) is not
served, nor listed.
"""

from __future__ import annotations

import hashlib
import io
import mimetypes
import threading
import unicodedata
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from creamery.catalog.docs import INDEX_HTML, DocsShelf, canonical_version, member_name, served_root
from creamery.core.names import normalize
from creamery.http.conditional import etag_matches
from creamery.http.routing import POST, READ, Action, Route, endpoint
from creamery.storage import Storage, StoredFile, read_all
from creamery.web import writes
from creamery.web.guard import principal_of
from creamery.web.pages import BoundedCache, base_url, relative_redirect
from creamery.web.state import AppState
from creamery.web.ui.layout import render, respond
from creamery.web.ui.session import message

MEMBER_HEADERS = {
    # No allow-same-origin: the documentation's scripts run in an opaque origin.
    "content-security-policy": (
        "sandbox allow-scripts allow-popups allow-popups-to-escape-sandbox allow-forms"
    ),
    "x-content-type-options": "nosniff",
    # No Cross-Origin-Resource-Policy: a sandboxed page's own stylesheets and scripts are
    # requests from its opaque origin, which `same-origin` would block.
    "referrer-policy": "same-origin",
    "cache-control": "no-cache",  # an upload may replace a version: revalidate (ETag)
    "vary": "Cookie, Authorization",
}
TEXT_TYPES = ("application/javascript", "application/json", "application/xml", "image/svg+xml")
IN_MEMORY = 8 << 20  # larger members are streamed
MAX_CACHED_BYTES = 256 << 20  # zips read from a bucket
MAX_OPEN = 32  # zips opened from the state directory


@dataclass
class Archive:
    """One stored zip, opened: its members by served name, the directory served from."""

    zip: zipfile.ZipFile
    members: dict[str, zipfile.ZipInfo]
    directories: frozenset[str]
    root: str
    size: int  # bytes held in memory (0: a file opened where it lies)

    # zipfile reads members of one ZipFile from several threads at once (each open member
    # seeks the shared file under zipfile's own lock).
    def read(self, info: zipfile.ZipInfo) -> bytes:
        with self.zip.open(info) as member:
            return member.read()

    def stream(self, info: zipfile.ZipInfo) -> Iterator[bytes]:
        with self.zip.open(info) as member:
            while chunk := member.read(1 << 20):
                yield chunk


def open_archive(store: Storage, stored: StoredFile) -> Archive:
    path = store.local_path(stored)
    if path is not None:
        archive = zipfile.ZipFile(path)
        size = 0
    else:
        data = read_all(store, stored)
        archive = zipfile.ZipFile(io.BytesIO(data))
        size = len(data)
    members: dict[str, zipfile.ZipInfo] = {}
    directories: set[str] = set()
    for info in archive.infolist():
        name = member_name(info)
        parts = name.removesuffix("/").split("/")
        directories.update("/".join(parts[:i]) for i in range(1, len(parts)))
        if info.is_dir():
            directories.add(name.removesuffix("/"))
        else:
            members[name] = info
    root = served_root(members)
    return Archive(archive, members, frozenset(directories), root, size)


class Archives:
    """The opened zips, keyed by their stored version: an LRU bounded by count and bytes."""

    def __init__(self, store: Storage) -> None:
        self.store = store
        self._open: OrderedDict[str, Archive] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, stored: StoredFile) -> Archive:
        key = version_key(stored)
        with self._lock:
            found = self._open.get(key)
            if found is not None:
                self._open.move_to_end(key)
                return found
        archive = open_archive(self.store, stored)  # outside the lock: it may read a bucket
        if archive.size > MAX_CACHED_BYTES:
            return archive
        with self._lock:
            if key not in self._open:
                self._open[key] = archive
                self._bytes += archive.size
            while len(self._open) > MAX_OPEN or self._bytes > MAX_CACHED_BYTES:
                _, evicted = self._open.popitem(last=False)  # closed when its last reader ends
                self._bytes -= evicted.size
        return archive


def content_type(name: str) -> str:
    guessed, encoding = mimetypes.guess_type(name, strict=False)
    if guessed is None or encoding is not None:
        return "application/octet-stream"
    if guessed.startswith("text/") or guessed in TEXT_TYPES:
        return f"{guessed}; charset=utf-8"
    return guessed


def version_key(stored: StoredFile) -> str:
    """One stored zip's identity: a local file's version is its inode, which a later
    replacement may be given again, so its mtime and size count too."""
    return f"{stored.key}\0{stored.version}\0{stored.mtime_ns}\0{stored.size}"


def member_etag(stored: StoredFile, name: str) -> str:
    digest = hashlib.sha256(f"{version_key(stored)}\0{name}".encode()).hexdigest()
    return f'"{digest[:32]}"'


def routes(state: AppState) -> list[Route]:
    catalog = state.catalog
    shelf: DocsShelf = catalog.docs
    archives = Archives(shelf.store)
    access = catalog.access
    cache = BoundedCache(max_entries=32)

    def not_found(request: Request) -> Response:
        body = render("docs_missing.html", base=base_url(request))
        return respond(request, state, body, status_code=404)

    async def listing(request: Request) -> Response:
        principal = principal_of(request.scope)
        base = base_url(request)
        narrowed = access.filters_reads() or access.narrows(principal)
        view = access.view(principal) if narrowed else None
        quarantined = catalog.statuses.quarantined
        key = (shelf.generation, base, view, quarantined)
        body = cache.get(key)
        if body is None:
            visible = access.visible(principal) if narrowed else None
            projects = [
                (p, shelf.latest(p), len(shelf.versions(p)))
                for p in shelf.projects()
                if (visible is None or visible(p)) and p not in quarantined
            ]
            body = render("docs_index.html", base=base, projects=projects)
            cache.put(key, body)
        return respond(request, state, body)

    async def to_slash(request: Request) -> Response:
        return relative_redirect("docs/", 301)

    async def browse(request: Request) -> Response:
        rest: str = request.path_params["rest"]
        parts = rest.split("/", 2)
        project = parts[0]
        principal = principal_of(request.scope)
        name = normalize(project)
        if not shelf.versions(name) or not access.visible(principal)(name):
            return not_found(request)
        reason = catalog.statuses.served_nothing(name)  # PEP 792: nothing of it is served
        if reason is not None:
            return message(request, state, 404, f"Not Found: {reason}")
        if name != project:
            up = "../" * rest.count("/")
            target = "/".join([name, *parts[1:]]) + ("/" if len(parts) == 1 else "")
            return relative_redirect(up + target, 301)
        if len(parts) == 1:
            return relative_redirect(project + "/", 301)
        if not parts[1]:
            latest = shelf.latest(name)
            return relative_redirect(f"{latest}/", 302)  # a newer upload moves it
        version = canonical_version(parts[1])
        if version is None:
            return not_found(request)
        if version != parts[1]:
            up = "../" * (rest.count("/") - 1)
            target = "/".join([version, *parts[2:]]) + ("/" if len(parts) == 2 else "")
            return relative_redirect(up + target, 301)
        if len(parts) == 2:
            return relative_redirect(version + "/", 301)
        stored = shelf.stored(name, version)
        if stored is None:
            return not_found(request)
        archive = await anyio.to_thread.run_sync(archives.get, stored)
        return await member(request, archive, stored, unicodedata.normalize("NFC", parts[2]))

    async def member(request: Request, archive: Archive, stored: StoredFile, path: str) -> Response:
        wanted = archive.root + path
        if not path or path.endswith("/"):
            wanted += INDEX_HTML
        info = archive.members.get(wanted)
        if info is None:
            if (archive.root + path) in archive.directories:  # a directory, without its slash
                return relative_redirect(path.rpartition("/")[2] + "/", 301)
            return not_found(request)
        etag = member_etag(stored, wanted)
        headers = {**MEMBER_HEADERS, "etag": etag}
        media_type = content_type(wanted)
        if etag_matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        if request.method == "HEAD":
            headers["content-length"] = str(info.file_size)
            return Response(b"", 200, headers, media_type)
        if info.file_size > IN_MEMORY:
            return StreamingResponse(archive.stream(info), 200, headers, media_type)
        data = await anyio.to_thread.run_sync(archive.read, info)
        return Response(data, 200, headers, media_type)

    async def upload(request: Request) -> Response:
        rest: str = request.path_params["rest"]
        parts = rest.split("/")
        if len(parts) != 3 or not parts[0] or not parts[1] or parts[2]:
            return Response(
                "POST the documentation zip to /docs/<project>/<version>/\n",
                status_code=404,
                media_type="text/plain",
            )
        return await writes.docs_api(state, request, parts[0], parts[1])

    return [
        Route(READ, "/docs", action=Action.LIST, handler=endpoint(to_slash), browser=True),
        Route(READ, "/docs/", action=Action.LIST, handler=endpoint(listing), browser=True),
        # A prefix, tried after the hot paths (declared after them): pages and uploads.
        Route(READ, "/docs/*", action=Action.LIST, handler=endpoint(browse), browser=True),
        Route(POST, "/docs/*", action=Action.UPDATE, handler=endpoint(upload)),
    ]
