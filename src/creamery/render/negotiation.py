"""PEP 691 content negotiation for the simple API: Accept header (with q-values) or ?format=."""

from __future__ import annotations

from enum import Enum


class Format(Enum):
    JSON = "application/vnd.pypi.simple.v1+json"
    HTML = "application/vnd.pypi.simple.v1+html"
    TEXT_HTML = "text/html"

    @property
    def content_type(self) -> str:
        return "text/html; charset=utf-8" if self is Format.TEXT_HTML else self.value


_MEDIA_TYPES: dict[str, Format] = {
    "application/vnd.pypi.simple.v1+json": Format.JSON,
    "application/vnd.pypi.simple.latest+json": Format.JSON,
    "application/vnd.pypi.simple.v1+html": Format.HTML,
    "application/vnd.pypi.simple.latest+html": Format.HTML,
    "text/html": Format.TEXT_HTML,
    # Wildcards get the default, plain HTML, which every client understands.
    "text/*": Format.TEXT_HTML,
    "*/*": Format.TEXT_HTML,
    "application/*": Format.JSON,
}
_cache: dict[str, Format | None] = {}
_CACHE_LIMIT = 512


def negotiate(accept: str | None) -> Format | None:
    """The format to answer with, or None when nothing acceptable is offered (406).

    Clients send the same few headers over and over, so results are memoized by header.
    """
    if not accept:
        return Format.TEXT_HTML
    try:
        return _cache[accept]
    except KeyError:
        pass
    chosen = _choose(accept)
    if len(_cache) < _CACHE_LIMIT:
        _cache[accept] = chosen
    return chosen


def format_from_query(value: str) -> Format | None:
    """`?format=<media type>` (as PyPI accepts it); None when the type is not offered.

    A `+` typed as is (`...v1+json`) arrives as a space, as a query string encodes one; no
    media type holds a space, so it is read as the `+` it was."""
    chosen = _MEDIA_TYPES.get(value.strip().lower().replace(" ", "+"))
    return chosen if "*" not in value else None


def _choose(accept: str) -> Format | None:
    candidates: list[tuple[float, int, Format]] = []
    for position, item in enumerate(accept.split(",")):
        media, _, params = item.partition(";")
        media = media.strip().lower()
        q = _quality(params)
        chosen = _MEDIA_TYPES.get(media)
        if chosen is not None and q > 0:
            # Specific types beat wildcards of the same quality.
            specificity = 0 if "*" in media else 1
            candidates.append((q, specificity * 1000 - position, chosen))
    if not candidates:
        return None
    return max(candidates, key=lambda c: (c[0], c[1]))[2]


def _quality(params: str) -> float:
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                return min(max(float(value), 0.0), 1.0)
            except ValueError:
                return 0.0
    return 1.0
