"""The web UI in a real browser (Debian's Chromium driven by Playwright) against real
`creamery run` processes: what a person does with the pages, checked against what pip's side
of the index (the simple API, fetched with httpx) says.

Three servers per module, each over its own package directory:
- `index`: `-P` (anyone signed in may manage, as with plain htpasswd), READMEs in Markdown,
  reStructuredText and hostile ones, a project of several versions, and one project per
  writing test (yank, delete, docs, token) so that the tests do not depend on their order;
- `private`: `-a update,list`, where every page needs a signed-in visitor;
- `hidden`: a permission file hiding `secret-*` from everyone but the staff group.

Every page a test opens fails the test if it logged an error (a Content-Security-Policy
violation, an uncaught exception): see `support/browser.py`.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from packaging.utils import parse_sdist_filename, parse_wheel_filename
from packaging.version import Version
from support.browser import (
    NOT_FOUND_LOG,
    Pages,
    background_of,
    luminance,
    no_horizontal_scroll,
    sign_in,
    sign_in_at,
)
from support.clients import describe, twine_upload
from support.dists import make_sdist, make_wheel, yank
from support.forms import post_form
from support.htpasswd import sha1_hash, write_sha1_htpasswd
from support.readmes import (
    MALICIOUS_MARKDOWN,
    MALICIOUS_RST,
    MARKDOWN_README,
    PWNED_GLOBALS,
    RST,
    RST_README,
    readme_wheel,
)
from support.servers import Server, run_server

if TYPE_CHECKING:
    from playwright.sync_api import Page

# Without playwright (the test extra) the module is skipped, not an import error.
expect = pytest.importorskip(
    "playwright.sync_api", reason="the browser tests need playwright"
).expect

JSON = "application/vnd.pypi.simple.v1+json"
TITLE = "h1:not(.readme h1)"  # the page's heading, not a README's
USER, PASSWORD = "alice", "alice-pw"  # staff on the hidden index
OTHER, OTHER_PASSWORD = "bob", "bob-pw"
LONG_NAME = "a-project-with-a-rather-long-name-for-small-screens"
LONG_README = (
    "# A long-named project\n\n"
    "```\n" + "very_long_line = " + "'x' * 1 + " * 30 + "0\n```\n\n"
    "| " + " | ".join(f"column {i}" for i in range(12)) + " |\n"
    "| " + " | ".join("---" for _ in range(12)) + " |\n"
    "| " + " | ".join(f"value-{i}-without-spaces" for i in range(12)) + " |\n\n"
    "A_single_word_that_is_much_longer_than_a_phone_screen_is_wide_"
    "and_has_no_place_to_break_at_all_whatsoever\n"
)
YANK_REASON = "CVE-2026-0001: do not use"
MULTI_YANK_REASON = "broken build"
DOCS_COLOUR = "rgb(1, 2, 3)"  # what the documentation's own stylesheet makes its title


@dataclass
class Index:
    server: Server
    root: Path

    @property
    def url(self) -> str:
        return self.server.url


def simple_json(url: str, project: str, auth: tuple[str, str] | None = None) -> dict[str, Any]:
    """PEP 691 JSON of /simple/<project>/ as pip and uv read it."""
    response = httpx.get(
        f"{url}/simple/{project}/", headers={"Accept": JSON}, auth=auth, timeout=10
    )
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def version_of(filename: str) -> Version:
    if filename.endswith(".whl"):
        return parse_wheel_filename(filename)[1]
    return parse_sdist_filename(filename)[1]


def files_by_version(data: dict[str, Any]) -> dict[Version, dict[str, dict[str, Any]]]:
    grouped: dict[Version, dict[str, dict[str, Any]]] = {}
    for file in data["files"]:
        grouped.setdefault(version_of(file["filename"]), {})[file["filename"]] = file
    return grouped


def docs_zip(title: str) -> bytes:
    """A documentation build: two pages; an inline script that reports what `document.cookie`
    shows it (or that reading it was refused); a stylesheet and a script of its own under
    `_static/`, as Sphinx writes them."""
    cookie_probe = (
        "<script>"
        'var out = document.getElementById("cookie-probe");'
        'try { out.textContent = "cookie:" + document.cookie; }'
        'catch (e) { out.textContent = "refused:" + e.name; }'
        "</script>"
    )
    index = (
        f"<!DOCTYPE html><html><head><title>{title}</title>"
        '<link rel="stylesheet" href="_static/docs.css"></head><body>'
        f'<h1 id="docs-title">{title}</h1>'
        '<p><a id="next" href="guide.html">Guide</a></p>'
        f'<p id="cookie-probe">not run</p>{cookie_probe}'
        '<p id="asset-probe">not loaded</p><script src="_static/app.js"></script>'
        "</body></html>"
    )
    guide = '<!DOCTYPE html><html><body><h1 id="guide-title">The guide</h1></body></html>'
    app = 'document.getElementById("asset-probe").textContent = "loaded";\n'
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.html", index)
        archive.writestr("guide.html", guide)
        archive.writestr("_static/app.js", app)
        archive.writestr("_static/docs.css", f"#docs-title {{ color: {DOCS_COLOUR}; }}\n")
    return buffer.getvalue()


def upload_docs(server: Server, project: str, version: str, auth: tuple[str, str]) -> None:
    """The legacy API's `doc_upload`, as `setup.py upload_docs` sent it."""
    response = post_form(
        server,
        [(":action", "doc_upload"), ("name", project), ("version", version)],
        [("content", f"{project}-{version}-docs.zip", docs_zip(f"{project} documentation"))],
        auth=auth,
    )
    assert response.status_code == 200, f"{response.status_code} {response.text}"


# ----------------------------------------------------------------------------- servers


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Index]:
    base = tmp_path_factory.mktemp("ui-index")
    root = base / "packages"
    readme_wheel(root, "markdown-demo", "1.0", MARKDOWN_README, summary="Parse things quickly")
    readme_wheel(root, "rst-demo", "0.3", RST_README, RST, summary="Run things in reST")
    readme_wheel(root, "evil-demo", "6.6.6", MALICIOUS_MARKDOWN, summary="A hostile README")
    readme_wheel(root, "evil-rst", "1.0", MALICIOUS_RST, RST, summary="A hostile reST README")
    readme_wheel(root, LONG_NAME, "10.20.30", LONG_README, summary="A name longer than a phone")
    yank(make_wheel(root, "multi-demo", "0.9", summary="Many versions"), MULTI_YANK_REASON)
    for version in ("1.0", "1.1"):
        make_wheel(root, "multi-demo", version, summary="Many versions")
        make_sdist(root, "multi-demo", version, summary="Many versions")
    make_wheel(
        root, "multi-demo", "1.1", summary="Many versions", tag="cp311-cp311-manylinux_2_17_x86_64"
    )
    make_wheel(root, "multi-demo", "2.0rc1", summary="Many versions")
    for project in ("yank-demo", "delete-demo"):
        for version in ("1.0", "2.0"):
            make_wheel(root, project, version, summary=f"{project} for the manage pages")
            make_sdist(root, project, version, summary=f"{project} for the manage pages")
    readme_wheel(root, "docs-demo", "1.0", "# docs-demo\n\nIt has documentation.\n")
    htpasswd = write_sha1_htpasswd(
        base / "htpasswd", USER, PASSWORD, f"{OTHER}:{sha1_hash(OTHER_PASSWORD)}\n"
    )
    with run_server([root], "-P", str(htpasswd), "--disable-fallback") as server:
        upload_docs(server, "docs-demo", "1.0", (USER, PASSWORD))
        yield Index(server, root)


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Index]:
    base = tmp_path_factory.mktemp("ui-private")
    root = base / "packages"
    readme_wheel(root, "private-demo", "1.0", "# private-demo\n\nFor signed-in eyes.\n")
    htpasswd = write_sha1_htpasswd(base / "htpasswd", USER, PASSWORD)
    args = ("-P", str(htpasswd), "-a", "update,list", "--disable-fallback")
    with run_server([root], *args) as server:
        yield Index(server, root)


HIDDEN, UNKNOWN = "secret-demo", "secret-dumo"  # a hidden project, an unknown one as long
PERMISSIONS = """\
[groups]
staff = ["alice"]

[[rules]]
user = "anonymous"
role = "reader"
projects = ["*"]

[[rules]]
group = "staff"
role = "maintainer"
projects = ["secret-*"]

[[rules]]
group = "staff"
role = "maintainer"
projects = ["*"]
"""


@pytest.fixture(scope="module")
def hidden(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Index]:
    base = tmp_path_factory.mktemp("ui-hidden")
    root = base / "packages"
    readme_wheel(root, "public-demo", "1.0", "# public-demo\n\nFor everyone.\n", summary="Open")
    readme_wheel(root, HIDDEN, "1.0", "# secret-demo\n\nFor staff only.\n", summary="Closed")
    htpasswd = write_sha1_htpasswd(base / "htpasswd", USER, PASSWORD)
    permissions = base / "permissions.toml"
    permissions.write_text(PERMISSIONS)
    args = ("-P", str(htpasswd), "--permissions", str(permissions), "--disable-fallback")
    with run_server([root], *args) as server:
        for project in ("public-demo", HIDDEN):
            upload_docs(server, project, "1.0", (USER, PASSWORD))
        yield Index(server, root)


# ----------------------------------------------------------------------------- reading


def test_search_then_open_a_project(index: Index, page: Page) -> None:
    """From the home page: "/" focuses the search box, Enter searches, the exact name comes
    first, and its result leads to the project page."""
    page.goto(index.url + "/")
    page.keyboard.press("/")
    focused = page.evaluate("document.activeElement && document.activeElement.name")
    assert focused == "q", "'/' does not focus the search box"
    page.keyboard.type("markdown-demo")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert re.search(r"/search/\?q=markdown-demo$", page.url), page.url
    results = page.locator("#results li.result")
    expect(results.first).to_have_attribute("data-project", "markdown-demo")
    expect(results.first).to_contain_text("Parse things quickly")  # the summary
    with page.expect_navigation():
        results.first.locator("a").first.click()
    assert page.url == index.url + "/project/markdown-demo/"
    expect(page.locator(TITLE)).to_contain_text("markdown-demo")

    # On the search page the results follow what is typed; arrow keys reach them, Enter opens.
    page.go_back()
    box = page.locator("form[role=search] input[name=q][type=search]").last
    expect(box).to_have_accessible_name("Search projects")
    box.fill("")
    box.press_sequentially("rst-de")
    # The address follows (for sharing), once the last query's results are drawn.
    expect(page).to_have_url(re.compile(r"/search/\?q=rst-de$"))
    expect(page.locator("#results li.result").first).to_have_attribute("data-project", "rst-demo")
    box.press("ArrowDown")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == index.url + "/project/rst-demo/"

    # A query that matches nothing says so.
    page.goto(index.url + "/search/?q=nothing-is-called-this")
    expect(page.locator("p.empty")).to_be_visible()
    assert page.locator("#results li.result").count() == 0


def test_markdown_and_rst_readmes_are_rendered(index: Index, page: Page) -> None:
    page.goto(index.url + "/project/markdown-demo/")
    readme = page.locator("article.readme#description")
    expect(readme.locator("h1, h2").filter(has_text="Markdown demo")).to_have_count(1)
    expect(readme.locator("h2").filter(has_text="Installation")).to_have_count(1)
    expect(readme.locator("strong")).to_have_text("fast")
    expect(readme.locator("em")).to_have_text("friendly")
    expect(readme.locator('a[href="https://example.com/parse"]')).to_have_text("parsing things")
    expect(readme.locator("pre")).to_contain_text('markdown_demo.parse("a, b, c")')
    expect(readme.locator("table")).to_contain_text("strict")
    expect(readme.locator("li")).to_have_text(["first point", "second point"])
    text = readme.inner_text()
    assert "**" not in text and "```" not in text, text

    page.goto(index.url + "/project/rst-demo/")
    readme = page.locator("article.readme#description")
    expect(readme.locator("h1, h2").filter(has_text="RST demo")).to_have_count(1)
    expect(readme.locator("h2, h3").filter(has_text="Usage")).to_have_count(1)
    expect(readme.locator("strong")).to_have_text("bold")
    expect(readme.locator('a[href="https://example.com/rst"]')).to_have_text("link")
    expect(readme.locator("pre")).to_contain_text("rst_demo.run()")
    expect(readme.locator("li")).to_have_text(["one item", "another item"])
    text = readme.inner_text()
    assert "`_" not in text and "====" not in text, text


@pytest.mark.parametrize("project", ["evil-demo", "evil-rst"])
def test_a_hostile_readme_neither_runs_nor_survives(index: Index, page: Page, project: str) -> None:
    """Its `<script>`, `onerror=` and `javascript:` links are gone from the page (the
    sanitizer), so nothing ran and the Content-Security-Policy had nothing to block (a blocked
    attempt is a console error, which fails the test too)."""
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(index.url + f"/project/{project}/")
    page.wait_for_load_state("load")
    readme = page.locator("article.readme#description")
    expect(readme).to_contain_text("Harmless text first.")
    expect(readme).to_contain_text("Harmless text last.")
    for link in readme.locator("a").all():
        if link.is_visible():
            link.click(no_wait_after=True)
    page.wait_for_timeout(200)  # a handler that survived would have run by now
    assert page.url == index.url + f"/project/{project}/"
    ran = page.evaluate(f"{list(PWNED_GLOBALS)}.filter((name) => window[name] !== undefined)")
    assert ran == [], f"the README's payload ran: {ran}"
    assert dialogs == []
    found = page.evaluate(
        """(root) => {
            const readme = document.querySelector(root);
            const bad = [];
            for (const el of readme.querySelectorAll("script, style, iframe, object, embed")) {
                bad.push("<" + el.tagName.toLowerCase() + ">");
            }
            for (const el of document.querySelectorAll("*")) {
                for (const { name, value } of el.attributes) {
                    if (name.startsWith("on") || /^\\s*javascript:/i.test(value)) {
                        bad.push(name + "=" + value);
                    }
                }
            }
            return bad;
        }""",
        "article.readme#description",
    )
    assert found == [], f"the README left these in the page: {found}"
    expect(page.locator("body")).to_be_visible()  # its <style> did not hide the page


def test_versions_and_files_match_the_simple_api(index: Index, page: Page) -> None:
    data = simple_json(index.url, "multi-demo")
    by_version = files_by_version(data)
    page.goto(index.url + "/project/multi-demo/")
    history = page.locator("#history li.release")
    shown = [Version(v) for v in history.evaluate_all("(els) => els.map((e) => e.dataset.version)")]
    assert shown == sorted(by_version, reverse=True), "release history: newest first"
    assert {str(v) for v in shown} == set(data["versions"])
    release = page.locator("#history li.release[data-version='2.0rc1']")
    expect(release.locator(".badge.pre")).to_have_text("pre-release")
    yanked = page.locator("#history li.release[data-version='0.9']")
    expect(yanked.locator(".badge.yanked")).to_have_text("yanked")
    expect(yanked.locator(".yank-reason")).to_contain_text(MULTI_YANK_REASON)
    assert {f["yanked"] for f in by_version[Version("0.9")].values()} == {MULTI_YANK_REASON}
    # The project's page is its latest stable release's (not the pre-release, not a yanked one).
    expect(page.locator(TITLE)).to_contain_text("1.1")
    expect(page.get_by_role("link", name="Manage project")).to_have_count(0)  # anonymous

    for version, files in by_version.items():
        page.goto(index.url + f"/project/multi-demo/{version}/")
        expect(page.locator(TITLE)).to_contain_text(str(version))
        rows = page.locator("table#files tr[data-filename]")
        names = rows.evaluate_all("(els) => els.map((e) => e.dataset.filename)")
        assert sorted(names) == sorted(files), f"files of {version}"
        for filename, file in files.items():
            row = page.locator(f"table#files tr[data-filename='{filename}']")
            expect(row.locator(f"[data-copy='{file['hashes']['sha256']}']")).to_have_count(1)
        expect(page.locator("#install")).to_contain_text("multi-demo")


# ----------------------------------------------------------------------------- managing


def test_yank_with_a_reason_shows_the_badge_and_the_simple_api_reports_it(
    index: Index, page: Page
) -> None:
    sign_in_at(page, index.url, USER, PASSWORD, next="/project/yank-demo/")
    assert page.url == index.url + "/project/yank-demo/"
    with page.expect_navigation():  # offered to a signed-in visitor who may yank
        page.get_by_role("link", name="Manage project").click()
    assert page.url == index.url + "/manage/project/yank-demo/"
    form = page.locator("form:has(input[name=reason])").filter(
        has=page.locator("input[name=version][value='1.0']")
    )
    form.locator("input[name=reason]").fill(YANK_REASON)
    with page.expect_navigation():
        form.locator("button[type=submit], button:not([type]), input[type=submit]").first.click()

    page.goto(index.url + "/project/yank-demo/")
    release = page.locator("#history li.release[data-version='1.0']")
    expect(release.locator(".badge.yanked")).to_have_text("yanked")
    expect(release.locator(".yank-reason")).to_contain_text(YANK_REASON)
    expect(page.locator("#history li.release[data-version='2.0'] .badge.yanked")).to_have_count(0)

    by_version = files_by_version(simple_json(index.url, "yank-demo"))
    assert {f["yanked"] for f in by_version[Version("1.0")].values()} == {YANK_REASON}
    assert {f.get("yanked", False) for f in by_version[Version("2.0")].values()} == {False}


def test_delete_a_release_after_confirming_it(index: Index, pages: Pages) -> None:
    page = pages.new()
    sign_in_at(page, index.url, USER, PASSWORD, next="/manage/project/delete-demo/")
    start = page.locator("[data-version='1.0']").get_by_role(
        "link", name=re.compile("delete", re.I)
    )
    if start.count() == 0:
        start = page.locator("[data-version='1.0']").get_by_role(
            "button", name=re.compile("delete", re.I)
        )
    with page.expect_navigation():
        start.first.click()
    assert "/manage/project/delete-demo/delete?version=1.0" in page.url, page.url
    form = page.locator("form:has(input[name=confirm])")
    submit = form.locator("button[type=submit], button:not([type]), input[type=submit]").first

    # A wrong confirmation deletes nothing.
    pages.allow(r"status of 4\d\d")  # the form's answer to a mistake is a 4xx page
    form.locator("input[name=confirm]").fill("delete-dem")
    with page.expect_navigation():
        submit.click()
    assert "1.0" in simple_json(index.url, "delete-demo")["versions"]

    page.goto(index.url + "/manage/project/delete-demo/delete?version=1.0")
    form = page.locator("form:has(input[name=confirm])")
    form.locator("input[name=confirm]").fill("delete-demo")
    with page.expect_navigation():
        form.locator("button[type=submit], button:not([type]), input[type=submit]").first.click()

    data = simple_json(index.url, "delete-demo")
    assert data["versions"] == ["2.0"]
    assert {version_of(f["filename"]) for f in data["files"]} == {Version("2.0")}
    page.goto(index.url + "/project/delete-demo/")
    expect(page.locator("#history li.release")).to_have_count(1)
    expect(page.locator("#history li.release[data-version='2.0']")).to_have_count(1)


def test_a_token_created_in_the_page_uploads_with_twine(
    index: Index, page: Page, tmp_path: Path
) -> None:
    page.goto(index.url + "/manage/account/tokens/")
    assert "/-/signin" in page.url, "the tokens page needs a signed-in visitor"
    sign_in(page, USER, PASSWORD)
    assert page.url == index.url + "/manage/account/tokens/"
    form = page.locator("form:has(input[name=description])")
    form.locator("input[name=description]").fill("CI for token-demo")
    projects = form.locator("input[name=projects], textarea[name=projects]")
    if projects.count():
        projects.first.fill("token-demo")
    with page.expect_navigation():
        form.locator("button[type=submit], button:not([type]), input[type=submit]").first.click()
    secret = page.locator("code#new-token").inner_text().strip()
    assert secret.startswith("creamery_") or len(secret) > 20, secret
    expect(page.locator("body")).to_contain_text("CI for token-demo")  # listed

    wheel = make_wheel(tmp_path / "dist", "token-demo", "0.1", summary="Uploaded with a token")
    result = twine_upload(
        index.url + "/", tmp_path / "home", wheel, user="__token__", password=secret
    )
    assert result.returncode == 0, describe(result)
    assert simple_json(index.url, "token-demo")["versions"] == ["0.1"]
    page.goto(index.url + "/project/token-demo/")
    expect(page.locator(f"table#files tr[data-filename='{wheel.name}']")).to_have_count(1)
    assert secret not in page.content()


# ----------------------------------------------------------------------------- documentation


def test_docs_uploaded_with_the_legacy_action_are_browsed_and_sandboxed(
    index: Index, pages: Pages
) -> None:
    """The index's own cookie is readable by the index's pages, but not by the
    documentation's scripts: documentation is someone's HTML, served sandboxed."""
    page = pages.new()
    page.context.add_cookies(
        [{"name": "index_probe", "value": "visible-to-the-index", "url": index.url + "/"}]
    )
    page.goto(index.url + "/project/docs-demo/")
    assert "visible-to-the-index" in page.evaluate("document.cookie")  # the probe is real
    with page.expect_navigation():
        page.get_by_role("link", name="Documentation").first.click()
    assert page.url.startswith(index.url + "/docs/docs-demo/"), page.url
    docs = _frame_with(page, "#docs-title")
    expect(docs.locator("#docs-title")).to_have_text("docs-demo documentation")
    probe = docs.locator("#cookie-probe")
    expect(probe).not_to_have_text("not run")  # the documentation's own script runs...
    assert probe.inner_text() in ("refused:SecurityError", "cookie:")  # ...and sees no cookie
    docs.locator("#next").click()
    guide = _frame_with(page, "#guide-title")
    expect(guide.locator("#guide-title")).to_have_text("The guide")


def test_docs_load_their_own_assets(index: Index, page: Page) -> None:
    """Documentation looks as it was built: its stylesheets, scripts (and images) load."""
    page.goto(index.url + "/docs/docs-demo/1.0/")
    docs = _frame_with(page, "#docs-title")
    expect(docs.locator("#docs-title")).to_have_css("color", DOCS_COLOUR, timeout=2000)
    expect(docs.locator("#asset-probe")).to_have_text("loaded", timeout=2000)


def _frame_with(page: Page, selector: str) -> Any:
    """The page itself, or the frame (a sandboxed iframe) that holds *selector*."""
    page.wait_for_load_state("load")
    for _ in range(50):
        for frame in page.frames:
            if frame.locator(selector).count():
                return frame
        page.wait_for_timeout(100)
    raise AssertionError(f"no frame of {page.url} holds {selector}")


# ----------------------------------------------------------------------------- access


def test_a_protected_list_sends_the_visitor_to_sign_in_and_back(private: Index, page: Page) -> None:
    page.goto(private.url + "/project/private-demo/")
    assert page.url == private.url + "/-/signin?next=/project/private-demo/", page.url
    expect(page.locator("input[name=username]")).to_be_visible()
    expect(page.locator("input[name=password][type=password]")).to_be_visible()
    assert "For signed-in eyes" not in page.content()
    sign_in(page, USER, PASSWORD)
    assert page.url == private.url + "/project/private-demo/"
    expect(page.locator(TITLE)).to_contain_text("private-demo")
    expect(page.locator("article.readme")).to_contain_text("For signed-in eyes.")

    # Search needs it too, and the way back keeps the query.
    page.context.clear_cookies()
    page.goto(private.url + "/search/?q=private")
    assert "/-/signin?next=" in page.url, page.url
    sign_in(page, USER, PASSWORD)
    assert page.url == private.url + "/search/?q=private"
    expect(page.locator("li.result[data-project='private-demo']")).to_have_count(1)


def test_a_hidden_project_is_absent_everywhere(hidden: Index, pages: Pages) -> None:
    pages.allow(NOT_FOUND_LOG)
    page = pages.new()
    spellings = (HIDDEN, HIDDEN.replace("-", "_"))

    def absent(path: str) -> None:
        page.goto(hidden.url + path)
        content = page.content().lower()
        if path.startswith("/search/"):  # the query is echoed back: look at the results only
            content = page.locator("#search-results, #results").first.inner_html().lower()
            content = content.replace(f"“{HIDDEN}”", "")
        assert not any(s in content for s in spellings), f"{path} shows {HIDDEN}"
        links = page.locator("a[href]").evaluate_all(
            "(links) => links.map((a) => a.getAttribute('href'))"
        )
        leaks = [link for link in links if "signin?" not in link and HIDDEN in link.lower()]
        assert leaks == [], f"{path} links to {HIDDEN}"

    absent("/")
    absent("/search/?q=secret")
    absent(f"/search/?q={HIDDEN}")
    expect(page.locator("p.empty")).to_be_visible()
    absent("/search/?q=demo")
    expect(page.locator("li.result[data-project='public-demo']")).to_have_count(1)
    absent("/docs/")
    for path in ("/project/{}/", "/project/{}/1.0/", "/docs/{}/", "/docs/{}/1.0/index.html"):
        seen = page.goto(hidden.url + path.format(HIDDEN))
        assert seen is not None and seen.status == 404, (
            f"{path.format(HIDDEN)}: {seen and seen.status}"
        )
        # Exactly what an unknown project of a name as long gets (status and body).
        hidden_answer = httpx.get(hidden.url + path.format(HIDDEN), timeout=10)
        unknown_answer = httpx.get(hidden.url + path.format(UNKNOWN), timeout=10)
        assert hidden_answer.status_code == unknown_answer.status_code
        assert hidden_answer.text.replace(HIDDEN, UNKNOWN) == unknown_answer.text

    # Staff see it: the project, its docs and its search result exist.
    staff = pages.new()
    sign_in_at(staff, hidden.url, USER, PASSWORD, next=f"/project/{HIDDEN}/")
    expect(staff.locator(TITLE)).to_contain_text(HIDDEN)
    staff.goto(hidden.url + "/search/?q=secret")
    expect(staff.locator(f"li.result[data-project='{HIDDEN}']")).to_have_count(1)
    answer = staff.goto(hidden.url + f"/docs/{HIDDEN}/")
    assert answer is not None and answer.status == 200


# ----------------------------------------------------------------------------- layout


@pytest.mark.parametrize(
    "path", ["/", f"/project/{LONG_NAME}/", "/search/?q=demo"], ids=["home", "project", "search"]
)
def test_phone_width_has_no_horizontal_scroll(
    index: Index, pages: Pages, path: str, tmp_path: Path
) -> None:
    page = pages.new(phone=True)
    page.goto(index.url + path)
    page.wait_for_load_state("load")
    scroll_width, client_width = no_horizontal_scroll(page)
    assert client_width == 390
    assert scroll_width <= client_width, f"{path} scrolls sideways: {scroll_width}px in 390px"
    shot = tmp_path / "phone.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[16:20] == (390).to_bytes(4, "big")  # PNG width


@pytest.mark.parametrize(
    "path", ["/", "/project/markdown-demo/", "/search/?q=demo"], ids=["home", "project", "search"]
)
def test_dark_mode_changes_the_background(index: Index, pages: Pages, path: str) -> None:
    light, dark = pages.new(), pages.new(color_scheme="dark")
    light.goto(index.url + path)
    dark.goto(index.url + path)
    light_bg, dark_bg = background_of(light), background_of(dark)
    assert light_bg != dark_bg
    assert luminance(light_bg) > 0.6, light_bg
    assert luminance(dark_bg) < 0.2, dark_bg
