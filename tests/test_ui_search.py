"""The search page `/search/?q=` on a real server, read with httpx: ranking, the query's
normalization, summaries, uploads and removals seen at once, hidden projects absent, `-a list`
sending an anonymous visitor to sign in, hostile queries, the JSON for instant search and the
OpenSearch description."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.dists import make_wheel
from support.forms import post_form, upload
from support.htpasswd import write_sha1_htpasswd
from support.polling import wait_for
from support.servers import Server, run_server

OPEN = ("-P", ".", "-a", ".", "--disable-fallback")  # anyone uploads and removes
PERMISSIONS = """\
[groups]
staff = ["alice"]

[[rules]]
user = "anonymous"
role = "reader"
projects = ["*"]

[[rules]]
group = "staff"
role = "reader"
projects = ["secret-*"]
"""
ALICE = ("alice", "alice-pw")


def build_root(root: Path) -> Path:
    make_wheel(root, "requests", "2.0", summary="HTTP for Humans")
    make_wheel(root, "requests", "1.0", summary="Old HTTP")
    make_wheel(root, "requests-toolbelt", "1.0", summary="A toolbelt of useful classes")
    make_wheel(root, "grequests", "0.7", summary="Asynchronous requests")
    make_wheel(root, "Foo_Bar", "1.0", summary="Widgets and GADGETS")
    make_wheel(root, "zzz", "1.0", summary="sleepy requests helper")
    return root


def projects(page: str) -> list[str]:
    """The results' projects, in order (`<li class="result" data-project="P">`)."""
    return re.findall(r'<li class="result" data-project="([^"]+)"', page)


def search_json(http: httpx.Client, query: str, **kwargs: object) -> dict[str, object]:
    response = http.get("/search/", params={"q": query, "format": "json"}, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    found: dict[str, object] = response.json()
    return found


def summaries_read(http: httpx.Client) -> bool:
    return bool(search_json(http, "x")["complete"])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = build_root(tmp_path_factory.mktemp("search") / "packages")
    with run_server([root], *OPEN) as server, server.client() as http:
        assert wait_for(lambda: summaries_read(http), timeout=15)
        yield server


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def test_exact_name_then_prefix_then_substring_then_summary(http: httpx.Client) -> None:
    response = http.get("/search/", params={"q": "requests"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert projects(response.text) == ["requests", "requests-toolbelt", "grequests", "zzz"]
    assert '<ol id="results"' in response.text
    assert "4 projects matching" in response.text


def test_a_result_shows_name_link_latest_version_summary_and_date(
    http: httpx.Client, server: Server
) -> None:
    page = http.get("/search/", params={"q": "requests"}).text
    item = page.split('data-project="requests"', 1)[1].split("</li>", 1)[0]
    assert f'href="{server.url}/project/requests/"' in item
    assert ">2.0<" in item  # the latest release, not 1.0
    assert "HTTP for Humans" in item
    assert re.search(r'<time class="result-date" datetime="\d{4}-\d\d-\d\dT[^"]+">\d{4}-', item)


def test_the_page_has_a_labelled_search_box_and_the_opensearch_link(http: httpx.Client) -> None:
    page = http.get("/search/", params={"q": "requests"}).text
    assert re.search(r'<label[^>]* for="search-q">Search projects</label>', page)
    assert re.search(r'<input id="search-q" name="q" type="search" value="requests"', page)
    assert 'aria-live="polite"' in page
    assert 'rel="search" type="application/opensearchdescription+xml"' in page


def test_names_are_normalized_like_pep_503(http: httpx.Client) -> None:
    for query in ("Foo_Bar", "foo.bar", "FOO-BAR", "foo bar"):
        found = projects(http.get("/search/", params={"q": query}).text)
        assert found[:1] == ["foo-bar"], query
    page = http.get("/search/", params={"q": "foo-bar"}).text
    assert ">Foo_Bar</a>" in page  # shown as its metadata spells it


def test_summaries_match_case_insensitively(http: httpx.Client) -> None:
    assert projects(http.get("/search/", params={"q": "gadgets"}).text) == ["foo-bar"]
    assert projects(http.get("/search/", params={"q": "useful CLASSES"}).text) == [
        "requests-toolbelt"
    ]


def test_empty_and_unmatched_queries_say_so(http: httpx.Client) -> None:
    for params in ({}, {"q": ""}, {"q": "   "}):
        page = http.get("/search/", params=params).text
        assert (
            '<p class="empty" id="search-status">Type a project name or a word of its summary'
            in (page)
        )
        assert 'id="results"' not in page
    page = http.get("/search/", params={"q": "nothing-like-it"}).text
    assert '<p class="empty" id="search-status">No projects match “nothing-like-it”.</p>' in page


def test_search_without_slash_redirects_with_the_query(http: httpx.Client) -> None:
    response = http.get("/search", params={"q": "Foo_Bar"})
    assert response.status_code == 301
    assert response.headers["location"] == "search/?q=Foo_Bar"


def test_json_for_instant_search(http: httpx.Client, server: Server) -> None:
    response = http.get(
        "/search/", params={"q": "requests"}, headers={"accept": "application/json"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert "Accept" in response.headers["vary"]
    document = response.json()
    assert document["total"] == 4 and document["complete"] is True
    first = document["results"][0]
    assert first["project"] == "requests" and first["version"] == "2.0"
    assert first["summary"] == "HTTP for Humans"
    assert first["url"] == f"{server.url}/project/requests/"
    assert first["uploaded"].endswith("Z") and first["date"] == first["uploaded"][:10]
    # A browser asks for HTML first: it gets the page.
    browser = http.get("/search/", params={"q": "requests"}, headers={"accept": "text/html,*/*"})
    assert browser.headers["content-type"].startswith("text/html")
    assert search_json(http, "requests") == document


def test_hostile_queries(http: httpx.Client) -> None:
    script = '<script>alert("x")</script>'
    page = http.get("/search/", params={"q": script}).text
    assert script not in page
    assert html.escape(script, quote=False) in page or "&lt;script&gt;" in page
    assert "No projects match" in page
    attribute = http.get("/search/", params={"q": '"><img src=x onerror=alert(1)>'}).text
    assert "<img src=x" not in attribute
    controls = http.get("/search/", params={"q": "requests\x00\x1b\x7f"})
    assert controls.status_code == 200
    assert projects(controls.text)[0] == "requests"
    too_long = http.get("/search/", params={"q": "a" * 201})
    assert too_long.status_code == 400
    assert "limited to 200 characters" in too_long.text
    assert "a" * 201 not in too_long.text
    as_json = http.get("/search/", params={"q": "a" * 5000, "format": "json"})
    assert as_json.status_code == 400
    assert as_json.json() == {"message": "Bad Request: the query is longer than 200 characters"}
    raw_bytes = http.get("/search/?q=%ff%fe%00")  # not UTF-8
    assert raw_bytes.status_code == 200
    assert http.get("/search/", params={"q": "a" * 200}).status_code == 200


def test_an_upload_appears_and_a_removal_disappears(http: httpx.Client, server: Server) -> None:
    wheel = make_wheel(server.log_path.parent / "new", "fresh-bread", "1.0", summary="Baked today")
    assert upload(server, wheel.name, wheel.read_bytes()).status_code == 200
    assert projects(http.get("/search/", params={"q": "fresh"}).text) == ["fresh-bread"]
    assert wait_for(lambda: search_json(http, "baked")["total"] == 1, timeout=10)
    fields = [(":action", "remove_pkg"), ("name", "fresh-bread"), ("version", "1.0")]
    assert post_form(server, fields).status_code == 200
    assert projects(http.get("/search/", params={"q": "fresh"}).text) == []
    assert search_json(http, "baked")["total"] == 0


def test_the_opensearch_description(http: httpx.Client, server: Server) -> None:
    response = http.get("/search/opensearch.xml")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/opensearchdescription+xml")
    assert f'template="{server.url}/search/?q={{searchTerms}}"' in response.text


# ---------------------------------------------------------------- who may see what


@pytest.fixture(scope="module")
def guarded_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    base = tmp_path_factory.mktemp("guarded")
    root = base / "packages"
    make_wheel(root, "public-app", "1.0", summary="secret sauce inside")
    make_wheel(root, "secret-thing", "1.0", summary="Hidden from most")
    htpasswd = write_sha1_htpasswd(base / "htpasswd", *ALICE)
    permissions = base / "perms.toml"
    permissions.write_text(PERMISSIONS)
    return root, htpasswd, permissions


def test_a_hidden_project_never_appears(guarded_root: tuple[Path, Path, Path]) -> None:
    root, htpasswd, permissions = guarded_root
    args = ("-P", str(htpasswd), "--permissions", str(permissions), "--disable-fallback")
    with run_server([root], *args) as server, server.client() as http:
        assert wait_for(lambda: summaries_read(http), timeout=15)
        for query in ("secret", "secret-thing", "hidden", "thing"):
            page = http.get("/search/", params={"q": query}).text
            assert "secret-thing" not in projects(page), query
            assert "Hidden from most" not in page, query
            found = search_json(http, query)["results"]
            assert "secret-thing" not in [r["project"] for r in found], query  # type: ignore[attr-defined]
        # The public project whose summary says "secret" is found, and counted alone.
        assert search_json(http, "secret")["total"] == 1
        # Exactly like a query that matches nothing.
        hidden = http.get("/search/", params={"q": "secret-thing"}).text
        unknown = http.get("/search/", params={"q": "secret-other"}).text
        assert hidden.replace("secret-thing", "X") == unknown.replace("secret-other", "X")
        # Its reader sees it (the cache keeps one rendering per view, not per visitor).
        staff = search_json(http, "secret", auth=ALICE)
        assert [r["project"] for r in staff["results"]] == ["secret-thing", "public-app"]  # type: ignore[index]
        assert search_json(http, "secret")["total"] == 1


def test_list_protected_sends_an_anonymous_visitor_to_sign_in(
    guarded_root: tuple[Path, Path, Path],
) -> None:
    root, htpasswd, _permissions = guarded_root
    args = ("-P", str(htpasswd), "-a", "list,download,update", "--disable-fallback")
    with run_server([root], *args) as server, server.client() as http:
        response = http.get("/search/", params={"q": "public"})
        assert response.status_code == 303
        assert response.headers["location"] == "../-/signin?next=/search/%3Fq%3Dpublic"
        signed = http.get("/search/", params={"q": "public"}, auth=ALICE)
        assert signed.status_code == 200
        assert projects(signed.text) == ["public-app"]
