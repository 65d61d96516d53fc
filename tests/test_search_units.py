"""Search's index in process, over a real Index of a temporary directory: ranking, the query's
normalization, summaries read by `fill_summaries` (the background thread's work), uploads and
removals seen through the index's generations, permission filtering, hostile queries."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.dists import make_sdist, make_wheel, yank

from creamery.catalog import search as search_module
from creamery.catalog.search import (
    MAX_QUERY,
    QueryTooLong,
    SearchIndex,
    clean_query,
    name_query,
)
from creamery.catalog.service import Catalog
from creamery.core.config import Config


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    make_wheel(root, "requests", "2.0", summary="HTTP for Humans")
    make_wheel(root, "requests-toolbelt", "1.0", summary="A toolbelt of useful classes")
    make_wheel(root, "req", "0.1", summary="Short name")
    make_wheel(root, "grequests", "0.7", summary="Asynchronous requests")
    make_wheel(root, "Foo_Bar", "1.0", summary="Widgets and GADGETS")
    make_wheel(root, "zzz", "1.0", summary="sleepy requests helper")
    return root


@pytest.fixture
def catalog(root: Path, tmp_path: Path) -> Catalog:
    catalog = Catalog(Config(roots=(root,), cache_dir=tmp_path / "cache"))
    catalog.index.load()
    return catalog


@pytest.fixture(params=["find", "regex"])
def search(
    catalog: Catalog, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> SearchIndex:
    """Few matches are sorted out in Python, many counted by regular expressions: both ways
    must give the same answers (`_FEW` 0: always the regular expressions)."""
    if request.param == "regex":
        monkeypatch.setattr(search_module, "_FEW", 0)
    search = catalog.search
    search.sync()
    search.fill_summaries()
    return search


def projects(search: SearchIndex, query: str, **kwargs: object) -> list[str]:
    return [hit.project for hit in search.search(clean_query(query), **kwargs).hits]


def test_exact_then_prefix_then_substring_then_summary(search: SearchIndex) -> None:
    assert projects(search, "requests") == [
        "requests",  # exact
        "requests-toolbelt",  # prefix
        "grequests",  # substring
        "zzz",  # summary only
    ]


def test_within_a_group_shorter_names_first_then_alphabetical(
    search: SearchIndex, catalog: Catalog
) -> None:
    root = catalog.config.roots[0]
    added = [make_wheel(root, name, "1.0").name for name in ("reqb", "reqa")]
    catalog.index.refresh(added)
    assert projects(search, "req") == [
        "req",
        "reqa",
        "reqb",
        "requests",
        "requests-toolbelt",
        "grequests",
        "zzz",  # "sleepy requests helper"
    ]


def test_the_query_is_normalized_like_names(search: SearchIndex) -> None:
    assert name_query("Foo_Bar") == "foo-bar"
    assert name_query("  foo . bar ") == "foo-bar"
    assert projects(search, "Foo_Bar")[0] == "foo-bar"
    assert projects(search, "FOO.bar")[0] == "foo-bar"


def test_summaries_match_every_word_case_insensitively(search: SearchIndex) -> None:
    assert projects(search, "gadgets widgets") == ["foo-bar"]
    assert projects(search, "widgets nothing") == []


def test_a_hit_says_name_version_summary_and_upload_time(search: SearchIndex) -> None:
    (hit,) = search.search("foo-bar").hits
    assert (hit.project, hit.name, hit.version) == ("foo-bar", "Foo_Bar", "1.0")
    assert hit.summary == "Widgets and GADGETS"
    assert hit.uploaded_ns > 0


def test_names_match_before_summaries_are_read(catalog: Catalog, root: Path) -> None:
    search = catalog.search
    assert projects(search, "toolbelt") == ["requests-toolbelt"]
    results = search.search("useful")
    assert results.total == 0 and not results.complete
    assert search.fill_summaries() == 6
    assert search.complete
    assert projects(search, "useful") == ["requests-toolbelt"]


def test_an_upload_appears_and_only_it_is_read(search: SearchIndex, catalog: Catalog) -> None:
    root = catalog.config.roots[0]
    path = make_wheel(root, "brand-new", "1.0", summary="Freshly baked")
    epoch = search.epoch
    catalog.index.refresh([path.name])
    assert projects(search, "brand") == ["brand-new"]
    assert search.fill_summaries() == 1  # the others' summaries are kept
    assert search.epoch > epoch
    assert projects(search, "freshly") == ["brand-new"]


def test_a_new_release_replaces_the_latest_version_and_summary(
    search: SearchIndex, catalog: Catalog
) -> None:
    root = catalog.config.roots[0]
    path = make_wheel(root, "req", "0.2", summary="Now with more")
    catalog.index.refresh([path.name])
    (hit,) = search.search("req", limit=1).hits
    assert (hit.version, hit.summary) == ("0.2", "Short name")  # until the new one is read
    search.fill_summaries()
    (hit,) = search.search("req", limit=1).hits
    assert (hit.version, hit.summary) == ("0.2", "Now with more")


def test_the_latest_release_is_pypis_choice(tmp_path: Path) -> None:
    root = tmp_path / "r"
    make_wheel(root, "pick", "1.0", summary="one")
    make_sdist(root, "pick", "1.0", summary="one")
    make_wheel(root, "pick", "2.0rc1", summary="pre")
    yank(make_wheel(root, "pick", "1.5", summary="yanked"))
    catalog = Catalog(Config(roots=(root,), cache_dir=tmp_path / "cache"))
    catalog.load()  # the .yanked sidecar goes into the state directory
    catalog.search.sync()
    catalog.search.fill_summaries()
    (hit,) = catalog.search.search("pick").hits
    assert (hit.version, hit.summary) == ("1.0", "one")


def test_a_removed_project_disappears(search: SearchIndex, catalog: Catalog) -> None:
    root = catalog.config.roots[0]
    (root / "grequests-0.7-py3-none-any.whl").unlink()
    catalog.index.refresh(["grequests-0.7-py3-none-any.whl"])
    assert "grequests" not in projects(search, "requests")
    assert projects(search, "asynchronous") == []


def test_invisible_projects_are_neither_shown_nor_counted(search: SearchIndex) -> None:
    results = search.search("requests", visible=lambda p: p != "grequests")
    assert [h.project for h in results.hits] == ["requests", "requests-toolbelt", "zzz"]
    assert results.total == 3


def test_each_view_keeps_its_own_visible_projects(search: SearchIndex) -> None:
    hide_g = search.search("requests", visible=lambda p: p != "grequests", view="a")
    hide_r = search.search("requests", visible=lambda p: p != "requests", view="b")
    assert [h.project for h in hide_g.hits] == ["requests", "requests-toolbelt", "zzz"]
    assert [h.project for h in hide_r.hits] == ["requests-toolbelt", "grequests", "zzz"]
    again = search.search("requests", visible=lambda p: p != "grequests", view="a")
    assert again == hide_g


def test_limit_keeps_the_best_and_counts_all(search: SearchIndex) -> None:
    results = search.search("requests", limit=2)
    assert [h.project for h in results.hits] == ["requests", "requests-toolbelt"]
    assert results.total == 4


def test_hostile_queries(search: SearchIndex) -> None:
    assert clean_query("  req\x00\x1b[31m\n ") == "req [31m"
    assert projects(search, "\x00\x01") == []
    assert projects(search, "<script>alert(1)</script>") == []
    assert projects(search, "---") == []
    for pattern in ("(", "[a-", ".*", "\\", "req.*", "(?=x)", "+", "ts\\t"):
        assert projects(search, pattern) == [], pattern
    assert projects(search, "http+for") == []
    assert clean_query("a" * MAX_QUERY) == "a" * MAX_QUERY
    with pytest.raises(QueryTooLong):
        clean_query("a" * (MAX_QUERY + 1))


def test_the_background_thread_reads_summaries(catalog: Catalog) -> None:
    from support.polling import wait_for

    stop = catalog.search.start(interval=0.05)
    try:
        assert wait_for(lambda: catalog.search.complete and catalog.search.generation >= 0)
        assert projects(catalog.search, "humans") == ["requests"]
    finally:
        stop()
    assert not catalog.search.running


def test_a_fork_while_summaries_are_read_leaves_the_child_free(tmp_path: Path) -> None:
    """gunicorn --preload forks right after the app started the summary thread: a child must
    not inherit an index or facts-cache lock that thread held (its first request would wait
    for ever). Forked again and again while the thread reads, each child refreshes the index,
    reads facts and searches within a few seconds."""
    import os
    import signal

    root = tmp_path / "many"
    for number in range(300):
        make_wheel(root, f"proj{number:03d}", "1.0", summary=f"project number {number}")
    catalog = Catalog(Config(roots=(root,), state_dir=tmp_path / "state"))
    catalog.load_index()
    stop = catalog.search.start(interval=0.01)
    try:
        for _ in range(25):
            pid = os.fork()
            if pid == 0:  # the child: a hang ends it by SIGALRM, a failure by its exit code
                signal.alarm(10)
                try:
                    catalog.index.refresh(["proj001-1.0-py3-none-any.whl"])
                    dist = catalog.index.distributions("proj001")[0]
                    catalog.facts.metadata(dist.stored, "wheel")
                    catalog.search.sync()
                    os._exit(0 if projects(catalog.search, "proj001") == ["proj001"] else 3)
                except BaseException:
                    os._exit(4)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
    finally:
        stop()
