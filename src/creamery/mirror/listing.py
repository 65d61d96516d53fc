"""What an upstream index lists for a project, parsed from PEP 691 JSON or PEP 503 HTML.

Upstream pages are untrusted input: every field is type-checked, file URLs are resolved against
the page, and a file whose name could escape the cache directory is dropped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from html.parser import HTMLParser
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

from creamery.catalog.status import MAX_REASON, STATUSES
from creamery.core.names import METADATA, parse_filename

log = logging.getLogger("creamery.mirror")

JSON_TYPES = ("application/vnd.pypi.simple.v1+json", "application/vnd.pypi.simple.latest+json")
HTML_TYPES = ("text/html", "application/vnd.pypi.simple.v1+html")


class ListingError(ValueError):
    """The upstream answered with a page we can't use; the message says why."""


@dataclass(frozen=True, slots=True)
class UpstreamFile:
    filename: str
    url: str  # absolute, at the upstream
    hashes: dict[str, str]  # PEP 503 fragment / PEP 691 "hashes", lower-case hex
    requires_python: str | None  # PEP 503 data-requires-python
    core_metadata: dict[str, str] | None  # PEP 658/714 hashes of <url>.metadata; None: none
    yanked: str | None  # PEP 592: None = not yanked, "" = yanked without a reason
    size: int | None  # PEP 700; None when the upstream does not say (HTML)
    upload_time: str | None  # PEP 700
    provenance: str | None = None  # PEP 740: absolute URL of the provenance object


@dataclass(frozen=True, slots=True)
class Listing:
    """One upstream's page for one project."""

    project: str  # PEP 503-normalized
    url: str  # the project's page at the upstream, without credentials (PEP 708 tracks)
    source: str  # the index URL of the upstream it came from
    files: tuple[UpstreamFile, ...]
    tracks: tuple[str, ...] = ()  # PEP 708, as the upstream declares them
    alternate_locations: tuple[str, ...] = ()  # PEP 708
    etag: str | None = None  # for conditional revalidation
    versions: tuple[str, ...] = ()  # PEP 700 `versions`, some without files; () from HTML
    status: str | None = None  # PEP 792 `project-status`, as the upstream declares it
    status_reason: str | None = None  # PEP 792
    by_name: dict[str, UpstreamFile] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {f.filename: f for f in self.files})

    def file(self, filename: str) -> UpstreamFile | None:
        return self.by_name.get(filename)


def is_safe_filename(filename: str) -> bool:
    """A distribution filename that is also a safe single path component."""
    if not filename or len(filename) > 255 or filename.startswith("."):
        return False
    if any(c in filename for c in "/\\\0") or filename.endswith(METADATA):
        return False
    return parse_filename(filename) is not None


# ---------------------------------------------------------------- PEP 691 JSON


def parse_json(body: bytes, project: str, page_url: str, source: str) -> Listing:
    try:
        document = json.loads(body)
    except ValueError as error:
        raise ListingError(f"invalid JSON: {error}") from error
    if not isinstance(document, dict) or not isinstance(document.get("files"), list):
        raise ListingError("a PEP 691 page needs a list of files")
    meta = document.get("meta")
    _check_api_version(meta.get("api-version") if isinstance(meta, dict) else None)
    files = [_json_file(item, page_url) for item in document["files"]]
    tracks = meta.get("tracks") if isinstance(meta, dict) else None
    marker = document.get("project-status")
    status, reason = (
        _status(marker.get("status"), marker.get("reason"))
        if isinstance(marker, dict)
        else (None, None)
    )
    return Listing(
        project,
        public_url(page_url),
        source,
        _unique(f for f in files if f is not None),
        tracks=_urls(tracks),
        alternate_locations=_urls(document.get("alternate-locations")),
        versions=_versions(document.get("versions")),
        status=status,
        status_reason=reason,
    )


def _json_file(item: object, page_url: str) -> UpstreamFile | None:
    if not isinstance(item, dict):
        raise ListingError("a file entry is not an object")
    filename, url = item.get("filename"), item.get("url")
    if not isinstance(filename, str) or not isinstance(url, str):
        raise ListingError("a file entry lacks its filename or url")
    if not is_safe_filename(filename):
        log.debug("ignoring upstream file %r: not a distribution filename", filename)
        return None
    hashes = item.get("hashes")
    core = item.get("core-metadata", item.get("dist-info-metadata", False))
    yanked = item.get("yanked", False)
    size = item.get("size")
    upload_time = item.get("upload-time")
    requires_python = item.get("requires-python") or None
    provenance = item.get("provenance")
    return UpstreamFile(
        filename=filename,
        url=urljoin(page_url, urldefrag(url).url),
        hashes=_hashes(hashes if isinstance(hashes, dict) else {}),
        requires_python=requires_python if isinstance(requires_python, str) else None,
        core_metadata=_hashes(core) if isinstance(core, dict) else ({} if core is True else None),
        yanked=yanked if isinstance(yanked, str) else ("" if yanked is True else None),
        size=size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
        upload_time=upload_time if isinstance(upload_time, str) else None,
        provenance=urljoin(page_url, provenance) if isinstance(provenance, str) else None,
    )


# ---------------------------------------------------------------- PEP 503 HTML


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[tuple[dict[str, str | None], str]] = []
        self.metas: list[tuple[str, str]] = []
        self.base: str | None = None
        self._open: tuple[dict[str, str | None], list[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "a" and attributes.get("href"):
            self._open = (attributes, [])
        elif tag == "meta" and attributes.get("name"):
            self.metas.append((attributes["name"] or "", attributes.get("content") or ""))
        elif tag == "base" and attributes.get("href") and self.base is None:
            self.base = attributes["href"]

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._open[1].append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open is not None:
            self.anchors.append((self._open[0], "".join(self._open[1]).strip()))
            self._open = None


def parse_html(body: bytes, project: str, page_url: str, source: str) -> Listing:
    parser = _PageParser()
    parser.feed(body.decode("utf-8", errors="replace"))
    parser.close()
    metas: dict[str, list[str]] = {}
    for name, content in parser.metas:
        metas.setdefault(name.lower(), []).append(content)
    _check_api_version(next(iter(metas.get("pypi:repository-version", [])), None))
    base = urljoin(page_url, parser.base) if parser.base else page_url
    files = (_html_file(attributes, text, base) for attributes, text in parser.anchors)
    status, reason = _status(
        next(iter(metas.get("pypi:project-status", [])), None),
        next(iter(metas.get("pypi:project-status-reason", [])), None),
    )
    return Listing(
        project,
        public_url(page_url),
        source,
        _unique(f for f in files if f is not None),
        tracks=_urls(metas.get("pypi:tracks")),
        alternate_locations=_urls(metas.get("pypi:alternate-locations")),
        status=status,
        status_reason=reason,
    )


def _html_file(attributes: dict[str, str | None], text: str, base: str) -> UpstreamFile | None:
    url, fragment = urldefrag(urljoin(base, attributes.get("href") or ""))
    filename = text or unquote(urlsplit(url).path.rpartition("/")[2])
    if not is_safe_filename(filename):
        log.debug("ignoring upstream link %r: not a distribution filename", filename)
        return None
    algo, _, digest = fragment.partition("=")
    core = attributes.get("data-core-metadata", attributes.get("data-dist-info-metadata"))
    return UpstreamFile(
        filename=filename,
        url=url,
        hashes=_hashes({algo: digest}) if digest else {},
        requires_python=attributes.get("data-requires-python") or None,
        core_metadata=None if core is None else _metadata_hashes(core),
        yanked=None if "data-yanked" not in attributes else attributes["data-yanked"] or "",
        size=None,
        upload_time=None,
        provenance=_resolved(base, attributes.get("data-provenance")),
    )


def _resolved(base: str, url: str | None) -> str | None:
    return urljoin(base, url) if url else None


def _metadata_hashes(value: str) -> dict[str, str] | None:
    """PEP 714's attribute value: "true" or "<algo>=<hex>"."""
    if value.strip().lower() == "true":
        return {}
    algo, sep, digest = value.partition("=")
    return _hashes({algo: digest}) if sep else None


# ---------------------------------------------------------------- shared checks


def _check_api_version(version: object) -> None:
    """PEP 629: a major version we don't know means a page we can't read."""
    if version is None:
        return
    major = str(version).partition(".")[0].strip()
    if major != "1":
        raise ListingError(f"unsupported repository API version {version!r}")


def _status(raw: object, reason: object) -> tuple[str | None, str | None]:
    """PEP 792's status and reason as an upstream gives them: a status this index knows (an
    unknown one is left out: the project counts as active), a reason made one printable line
    of at most `MAX_REASON` characters."""
    if not isinstance(raw, str) or raw.strip().lower() not in STATUSES:
        return None, None
    status = raw.strip().lower()
    if not isinstance(reason, str):
        return status, None
    # Only the start can be shown: a page's megabytes of reason are not walked.
    start = reason[: MAX_REASON * 4]
    text = " ".join("".join(c if c.isprintable() else " " for c in start).split())
    return status, text[:MAX_REASON] or None


def _hashes(raw: dict[object, object]) -> dict[str, str]:
    return {
        str(algo).strip().lower(): digest.strip().lower()
        for algo, digest in raw.items()
        if isinstance(digest, str) and digest.strip() and str(algo).strip()
    }


def _versions(raw: object) -> tuple[str, ...]:
    """PEP 700's list of version strings; anything else in it is dropped."""
    if not isinstance(raw, list):
        return ()
    return tuple(dict.fromkeys(v for v in raw if isinstance(v, str) and v and len(v) <= 200))


def _urls(raw: object) -> tuple[str, ...]:
    if not isinstance(raw, list):
        return ()
    return tuple(u for u in raw if isinstance(u, str) and u.startswith(("https://", "http://")))


def _unique(files: Iterable[UpstreamFile]) -> tuple[UpstreamFile, ...]:
    """First entry wins when an upstream lists a filename twice."""
    seen: dict[str, UpstreamFile] = {}
    for item in files:
        seen.setdefault(item.filename, item)
    return tuple(seen.values())


def public_url(url: str) -> str:
    """The URL without user:password@, so credentials never reach a page or a log."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


# ---------------------------------------------------------------- persistence


def listing_to_json(listing: Listing, fetched: float) -> bytes:
    data: dict[str, object] = {f.name: getattr(listing, f.name) for f in fields(listing) if f.init}
    data["files"] = [asdict(item) for item in listing.files]
    return json.dumps({"format": 1, "fetched": fetched, "listing": data}).encode()


def listing_from_json(body: bytes) -> tuple[Listing, float]:
    """Raises ListingError (or ValueError) for a file that is not ours or is damaged."""
    document = json.loads(body)
    if not isinstance(document, dict) or document.get("format") != 1:
        raise ListingError("not a creamery mirror page")
    data = dict(document["listing"])
    files = tuple(UpstreamFile(**item) for item in data.pop("files"))
    data["tracks"] = tuple(data.get("tracks", ()))
    data["alternate_locations"] = tuple(data.get("alternate_locations", ()))
    data["versions"] = tuple(data.get("versions", ()))
    data["status"], data["status_reason"] = _status(data.get("status"), data.get("status_reason"))
    return Listing(files=files, **data), float(document["fetched"])
