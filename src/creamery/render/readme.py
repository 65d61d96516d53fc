"""A project's description (its README, from core metadata) rendered as PyPI renders it.

PyPI (warehouse `utils/readme.py`) picks the renderer by `Description-Content-Type`:
reStructuredText when there is none, `text/x-rst`, `text/markdown` (its `variant` parameter:
GFM or CommonMark) or `text/plain`; any other type is plain text; reST that does not render
falls back to plain text. readme_renderer sanitizes what it produces (nh3): no script, no event
handler, no `style`, no `javascript:` link, no iframe survives. The page's Content-Security-Policy
is the second line of defence, not the first.

Rendering costs milliseconds to seconds (docutils), so a rendering is kept per release: the key
names the file version the description was read from, so a replaced file renders again.
"""

from __future__ import annotations

import functools
import html
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Hashable
from email.message import Message
from types import ModuleType

log = logging.getLogger("creamery.readme")

PLAIN = "text/plain"
RST = "text/x-rst"
MARKDOWN = "text/markdown"
_VARIANTS = {"gfm": "GFM", "commonmark": "CommonMark"}

# Markdown nested deeper than this is shown as plain text. The sanitizer's HTML parser takes
# quadratic time in nesting depth: 50,000 nested quotes (`>` * 50000) or `<div>`s took 12 s
# of a worker per rendering; no README nests past a handful.
MAX_MARKDOWN_NESTING = 128
_QUOTE_MARKERS = re.compile(r"^[ \t>]*", re.MULTILINE)  # a line's leading quote markers
# An HTML tag: its name ends at a space, `/` or `>` (`<https://x>` and `<a@b.org>` are
# links). The name is possessive: backtracking into it (a `<a` and a million letters, never
# closed) retried every shorter name against the rest of the text, quadratic in its length.
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*+)(?=[\s/>])[^<>]*>")
# Elements HTML closes when a sibling starts (their end tags may be left out): no nesting.
_IMPLIED_END = frozenset(
    [
        "li",
        "p",
        "td",
        "th",
        "tr",
        "dt",
        "dd",
        "option",
        "optgroup",
        "thead",
        "tbody",
        "tfoot",
        "colgroup",
        "rt",
        "rp",
    ]
)
_VOID = frozenset(
    [
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "source",
        "track",
        "wbr",
    ]
)


def parse_content_type(value: str | None) -> tuple[str, dict[str, str]]:
    """(media type in lower case, parameters) of a Description-Content-Type; "" when none."""
    if not value or not value.strip():
        return "", {}
    message = Message()
    message["content-type"] = value
    media_type = message.get_content_type() if "/" in value else value.strip().lower()
    params = {k.lower(): v for k, v in message.get_params(failobj=[])[1:] if isinstance(v, str)}
    return media_type, params


@functools.cache
def _readme_renderer() -> tuple[ModuleType, ModuleType, ModuleType] | None:
    """readme_renderer's rst, markdown and txt modules; None where it (or nh3, its compiled
    sanitizer: the standalone creamery.pyz has no compiled module) can't be imported."""
    try:
        import readme_renderer.markdown
        import readme_renderer.rst
        import readme_renderer.txt
    except ImportError as error:
        log.warning("READMEs are shown as plain text: can't import %s", error.name)
        return None
    return readme_renderer.rst, readme_renderer.markdown, readme_renderer.txt


def render_description(text: str, content_type: str | None) -> str:
    """The description as sanitized HTML, exactly as PyPI would show it (escaped plain text
    where readme_renderer is not installed: never HTML that nothing sanitized)."""
    renderers = _readme_renderer()
    if renderers is None:
        return f"<pre>{html.escape(text)}</pre>"
    rst, markdown, txt = renderers
    media_type, params = parse_content_type(content_type)
    rendered: str | None
    if media_type in ("", RST):
        rendered = _rst_or_none(rst, text)
    elif media_type == MARKDOWN:
        variant = _VARIANTS.get(params.get("variant", "gfm").lower(), "GFM")
        rendered = None if _too_deep(text) else markdown.render(text, variant=variant)
    else:
        rendered = txt.render(text)
        if media_type == PLAIN:
            rendered = f"<pre>{rendered}</pre>"  # warehouse keeps plain text's whitespace
    if rendered is None:  # reST with errors, markdown too deep: shown as plain text
        rendered = txt.render(text) or ""
    return str(rendered)


def _too_deep(markdown: str) -> bool:
    """Does *markdown* nest quotes or HTML elements past MAX_MARKDOWN_NESTING (one pass)?"""
    quotes = max((m.group().count(">") for m in _QUOTE_MARKERS.finditer(markdown)), default=0)
    depth = deepest = 0
    open_by_name: dict[str, int] = {}
    for closing, name in _TAG.findall(markdown):
        name = name.lower()
        if name in _VOID or name in _IMPLIED_END:
            continue  # `</br>` is a `<br>` to HTML: it closes nothing
        if not closing:  # `<div/>` opens a div too: `/>` closes only void elements
            open_by_name[name] = open_by_name.get(name, 0) + 1
            depth += 1
            deepest = max(deepest, depth)
        elif open_by_name.get(name):  # an end tag with no such element open is ignored
            open_by_name[name] -= 1
            depth -= 1
    too_deep = max(quotes, deepest) > MAX_MARKDOWN_NESTING
    if too_deep:
        log.info(
            "a markdown description nests deeper than %d: shown as plain text", MAX_MARKDOWN_NESTING
        )
    return too_deep


def _rst_or_none(rst: ModuleType, text: str) -> str | None:
    """readme_renderer's reST rendering; None (plain text then) where docutils fails on it:
    readme_renderer catches docutils' own errors, not the RecursionError of lists or quotes
    nested a few hundred deep, nor the KeyError of substitutions nested thirty deep."""
    try:
        rendered: str | None = rst.render(text)
    except Exception as error:  # whatever else the description makes docutils raise
        log.info("a reST description could not be rendered (%r): shown as plain text", error)
        return None
    return rendered


class ReadmeCache:
    """Renderings by the identity of what they were rendered from (a bounded LRU, shared by
    the worker threads that render pages)."""

    def __init__(self, max_entries: int = 512, max_bytes: int = 32 << 20) -> None:
        self._entries: OrderedDict[Hashable, str] = OrderedDict()
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0
        self._lock = threading.Lock()
        self.renderings = 0  # how many times a description was rendered (for tests)

    def render(self, key: Hashable, text: str, content_type: str | None) -> str:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                return found
        rendered = render_description(text, content_type)
        with self._lock:
            self.renderings += 1
            if key not in self._entries and len(rendered) <= self._max_bytes:
                self._entries[key] = rendered
                self._bytes += len(rendered)
                while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
                    _, evicted = self._entries.popitem(last=False)
                    self._bytes -= len(evicted)
        return rendered
