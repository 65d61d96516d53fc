"""READMEs rendered as PyPI renders them (`render/readme.py`): the renderer picked by
Description-Content-Type, reST that fails shown as plain text, and nothing that could run
script or restyle the page surviving sanitizing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from creamery.render.readme import (
    MAX_MARKDOWN_NESTING,
    ReadmeCache,
    parse_content_type,
    render_description,
)

HOSTILE_MARKDOWN = """\
# Title

<script>alert("md")</script>
<img src="x.png" onerror="alert(1)" style="position:fixed;top:0">
<a href="javascript:alert(2)">click</a> [also](javascript:alert(3))
<iframe src="https://evil.example/"></iframe>
<div style="background:red" onclick="alert(4)">styled</div>
"""

HOSTILE_RST = """\
Title
=====

.. raw:: html

   <script>alert("rst")</script><iframe src="https://evil.example/"></iframe>

`click <javascript:alert(1)>`_

.. image:: x.png
   :target: javascript:alert(2)
"""


def assert_harmless(rendered: str) -> None:
    lowered = rendered.lower()
    for needle in ("<script", "onerror", "onclick", "style=", "<iframe", 'href="javascript:'):
        assert needle not in lowered, (needle, rendered)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ("", {})),
        ("", ("", {})),
        (
            "text/markdown; charset=UTF-8; variant=CommonMark",
            ("text/markdown", {"charset": "UTF-8", "variant": "CommonMark"}),
        ),
        ("Text/X-RST", ("text/x-rst", {})),
        ("nonsense", ("nonsense", {})),
    ],
)
def test_content_types_are_parsed(value: str | None, expected: tuple[str, dict[str, str]]) -> None:
    assert parse_content_type(value) == expected


def test_markdown_is_rendered_with_gfm_by_default() -> None:
    rendered = render_description(
        "# Hi\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n~~gone~~\n", "text/markdown"
    )
    assert '<h1 id="user-content-hi">' in rendered
    assert "<table>" in rendered and "<del>gone</del>" in rendered


def test_commonmark_variant_has_no_gfm_tables() -> None:
    rendered = render_description(
        "| a | b |\n|---|---|\n| 1 | 2 |\n", "text/markdown; variant=CommonMark"
    )
    assert "<table>" not in rendered


def test_rst_is_the_default_as_on_pypi() -> None:
    text = "Title\n=====\n\n* one\n* two\n"
    assert render_description(text, None) == render_description(text, "text/x-rst")
    assert "<li><p>one</p></li>" in render_description(text, None)


def test_rst_that_fails_falls_back_to_plain_text() -> None:
    rendered = render_description("broken `rst\n<b>bold</b>", "text/x-rst")
    assert rendered == "broken `rst<br>&lt;b&gt;bold&lt;/b&gt;"


def test_plain_text_keeps_its_whitespace_and_escapes() -> None:
    assert render_description("a  <b>\nc", "text/plain") == "<pre>a  &lt;b&gt;<br>c</pre>"
    assert render_description("a <b>", "application/weird") == "a &lt;b&gt;"


def test_hostile_markdown_is_defused() -> None:
    rendered = render_description(HOSTILE_MARKDOWN, "text/markdown")
    assert_harmless(rendered)
    assert "<h1" in rendered and "styled" in rendered


def test_hostile_rst_is_defused() -> None:
    rendered = render_description(HOSTILE_RST, "text/x-rst")
    assert_harmless(rendered)
    assert "Title" in rendered


@pytest.mark.parametrize("nesting", ["> " * 50_000 + "deep", "<div>" * 50_000 + "deep"])
def test_markdown_nested_past_the_bound_is_plain_text(nesting: str) -> None:
    """Found by an attacker: 50,000 nested quotes or `<div>`s took 12 s to render (the
    sanitizer's parser is quadratic in depth), for every view once evicted from the cache."""
    shown = render_description(nesting, "text/markdown")
    assert "<blockquote>" not in shown and "<div>" not in shown
    assert "deep" in shown
    assert "&lt;div&gt;" in shown or "&gt; &gt;" in shown, "escaped, as plain text"


@pytest.mark.parametrize(
    "hostile",
    ["<a" + "b" * 1_000_000, ("<a" + "b" * 20_000 + " ") * 50, "<" * 1_000_000],
    ids=["one-long-name", "many-long-names", "only-opening"],
)
def test_markdown_with_unclosed_tags_is_checked_in_one_pass(hostile: str) -> None:
    """Was: the nesting check's tag pattern backtracked over a tag name that never closes,
    quadratic in its length: `<a` and a million letters held a worker for hours (20,000
    letters: 3 s). Run apart so that a regression fails here instead of hanging the suite;
    the bound is a hang detector (it takes well under a second now)."""
    code = (
        "import sys; from creamery.render.readme import render_description as r;"
        "print(len(r(sys.stdin.read(), 'text/markdown')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], input=hostile, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 0


@pytest.mark.parametrize(
    "nesting",
    ["<div></br>" * 20_000, "<div/>" * 20_000, "<div></span>" * 20_000],
    ids=["void-end-tags", "self-closing-divs", "stray-end-tags"],
)
def test_markdown_nested_past_the_bound_behind_tags_that_close_nothing_is_plain_text(
    nesting: str,
) -> None:
    """Was: the nesting check took `</br>` (a `<br>` to HTML), a `</span>` with no span open,
    each for the end of the `<div>` before it, and `<div/>` for an element closed at once
    (HTML opens a div): 20,000 divs, nested so, went to the quadratic parser."""
    shown = render_description(nesting + "deep", "text/markdown")
    assert "<div>" not in shown and "deep" in shown


def test_markdown_nested_within_the_bound_renders() -> None:
    depth = MAX_MARKDOWN_NESTING
    quotes = render_description("> " * depth + "quoted", "text/markdown")
    assert quotes.count("<blockquote>") == depth
    divs = "<div>" * depth + "\n\ntext\n\n" + "</div>" * depth + "\n" + "<br>" * 500
    assert render_description(divs, "text/markdown").count("<div>") == depth


@pytest.mark.parametrize(
    "markdown",
    [
        "".join(f"* fixed <https://github.com/o/r/issues/{i}>\n" for i in range(200)),
        "".join(f"* Person {i} <p{i}@example.com>\n" for i in range(200)),
        "<table>\n" + "".join(f"<tr><td>{i}<td>x\n" for i in range(100)) + "</table>\n",
        "<ul>\n" + "".join(f"<li>item {i}\n" for i in range(200)) + "</ul>\n",
    ],
    ids=["autolinks", "emails", "table-without-end-tags", "list-without-end-tags"],
)
def test_markdown_with_many_links_or_unclosed_siblings_is_not_deep(markdown: str) -> None:
    """Was: the nesting check counted an autolink (`<https://...>`) or an address
    (`<a@b.org>`) as an element never closed, and each `<td>` or `<li>` whose end tag HTML
    lets you leave out as one level deeper: a changelog with 129 links, an authors list,
    a table of 43 rows was shown as plain text. Neither nests anything."""
    shown = render_description("# Title\n\n" + markdown, "text/markdown")
    assert "<h1" in shown, shown[:300]  # rendered, not plain text


def test_a_release_renders_once() -> None:
    cache = ReadmeCache(max_entries=2)
    first = cache.render(("a.whl", "1:2:3"), "# A", "text/markdown")
    assert cache.render(("a.whl", "1:2:3"), "# A", "text/markdown") == first
    assert cache.renderings == 1
    cache.render(("b.whl", "1"), "b", None)
    cache.render(("c.whl", "1"), "c", None)  # the oldest goes
    cache.render(("a.whl", "1:2:3"), "# A", "text/markdown")
    assert cache.renderings == 4
