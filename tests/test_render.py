"""Fast in-process tests of rendering: the page cache and the one If-None-Match rule."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.dists import make_wheel

from creamery.catalog.facts import FactsCache
from creamery.catalog.index import Index
from creamery.http.conditional import etag_matches
from creamery.render.page_cache import STALE, STALE_SECONDS, PageCache
from creamery.render.simple_api import render_project, render_root
from creamery.storage.local import LocalStorage


@pytest.fixture
def index(tmp_path: Path) -> Index:
    make_wheel(tmp_path, "alpha", "1.0")
    make_wheel(tmp_path, "beta", "1.0")
    index = Index(LocalStorage((tmp_path,)))
    index.load()
    return index


def _render(index: Index, cache: PageCache, project: str) -> None:
    generation = index.project_generation(project)
    cache.put(
        project,
        generation,
        render_project(index, FactsCache(None, (), index.storage), project, None),
    )


def test_a_change_makes_the_project_and_root_pages_stale_and_no_other(
    index: Index, tmp_path: Path
) -> None:
    cache = PageCache(index)
    for project in ("alpha", "beta"):
        _render(index, cache, project)
    cache.put(None, index.project_generation(None), render_root(index.project_names()))
    assert cache.get("alpha") is not None and cache.get(None) is not None
    added = make_wheel(tmp_path, "alpha", "2.0")
    index.refresh([added.name])
    assert cache.get("alpha") is None
    assert cache.get(None) is None
    assert cache.get("beta") is not None


def test_a_page_rendered_while_its_project_changed_is_not_served(
    index: Index, tmp_path: Path
) -> None:
    cache = PageCache(index)
    generation = index.project_generation("alpha")
    pages = render_project(index, FactsCache(None, (), index.storage), "alpha", None)
    index.refresh([make_wheel(tmp_path, "alpha", "2.0").name])  # while it was rendered
    cache.put("alpha", generation, pages)
    assert cache.get("alpha") is None
    _render(index, cache, "alpha")
    fresh = cache.get("alpha")
    assert fresh is not None and b"alpha-2.0" in next(iter(fresh.values())).body


def test_a_project_never_rendered_or_forgotten_has_no_pages(index: Index) -> None:
    cache = PageCache(index)
    assert cache.get("alpha") is None
    _render(index, cache, "alpha")
    cache.forget("alpha")
    assert cache.get("alpha") is None


def test_a_render_that_found_the_store_down_serves_the_last_pages_marked_stale_for_a_while(
    index: Index, tmp_path: Path
) -> None:
    now = [100.0]
    cache = PageCache(index, clock=lambda: now[0])
    assert cache.fall_back("alpha") is None  # never rendered: nothing to serve (503)
    _render(index, cache, "alpha")
    before = cache.get("alpha")
    assert before is not None
    index.refresh([make_wheel(tmp_path, "alpha", "2.0").name])  # its page must be rendered
    assert cache.get("alpha") is None and cache.held("alpha") is None
    stale = cache.fall_back("alpha")  # ... and that render found the store down
    assert stale is not None and cache.held("alpha") is stale
    for fmt, page in stale.items():
        assert (page.body, page.etag) == (before[fmt].body, before[fmt].etag)
        assert page.headers == [*before[fmt].headers, STALE]
    assert STALE not in next(iter(before.values())).headers  # the kept pages are unchanged
    now[0] += STALE_SECONDS
    assert cache.held("alpha") is None  # time to try the store again
    _render(index, cache, "alpha")  # it answered
    assert cache.get("alpha") is not None and cache.held("alpha") is None
    cache.fall_back("alpha")
    cache.forget("alpha")
    assert cache.held("alpha") is None and cache.fall_back("alpha") is None


@pytest.mark.parametrize(
    ("if_none_match", "matches"),
    [
        (None, False),
        ('"abc"', True),
        ('"other", "abc"', True),
        (' "other" ,"abc" ', True),
        ('W/"abc"', True),  # If-None-Match compares weakly (RFC 9110 13.1.2)
        ("*", True),
        ('"other"', False),
        ('"ab"', False),
        ("abc", False),
        ("", False),
    ],
)
def test_if_none_match(if_none_match: str | None, matches: bool) -> None:
    assert etag_matches(if_none_match, '"abc"') is matches
