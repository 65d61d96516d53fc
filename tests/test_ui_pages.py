"""The home page and the project pages, from a real server (`creamery run`) read with httpx:
what they show (counts, recent releases, READMEs in Markdown, reST and plain text, metadata,
files), that they agree with the simple API, that hidden projects are absent, that redirects,
ETags and a proxy prefix work.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest
from support.dists import make_wheel, sign, write_wheel
from support.htpasswd import write_sha1_htpasswd
from support.polling import wait_for
from support.servers import Server, run_server
from support.upstream import run_upstream

USER, PASSWORD = "ui-user", "ui-s3cret"
AUTH = (USER, PASSWORD)
JSON = "application/vnd.pypi.simple.v1+json"

MARKDOWN = """\
# Demo heading

Some **bold** text and a [link](https://example.org/).

```python
print("hello")
```
"""
RST = """\
reST title
==========

* first item
* second item

A ``literal`` here.
"""
PLAIN = "Plain  text\n<b>not bold</b>\n"
HOSTILE = """\
# Evil

<script>alert("readme")</script>
<img src="x.png" onerror="alert(1)" style="position:fixed">
<a href="javascript:alert(2)">click me</a>
<iframe src="https://evil.example/"></iframe>
"""


def metadata(
    name: str,
    version: str,
    description: str = "",
    content_type: str | None = None,
    extra: tuple[str, ...] = (),
) -> str:
    lines = [
        "Metadata-Version: 2.4",
        f"Name: {name}",
        f"Version: {version}",
        f"Summary: {name} summary line",
        *extra,
    ]
    if content_type is not None:
        lines.append(f"Description-Content-Type: {content_type}")
    return "\n".join(lines) + "\n\n" + description


DEMO_EXTRA = (
    "Author: Jane Doe",
    "Author-email: Jane Doe <jane@example.org>",
    "Maintainer-email: Max <max@example.org>",
    "License-Expression: MIT OR Apache-2.0",
    "Requires-Python: >=3.9",
    "Project-URL: Source, https://example.org/src",
    "Project-URL: Sneaky, javascript:alert(1)",
    "Classifier: Programming Language :: Python :: 3",
    "Classifier: Topic :: Software Development",
    "Requires-Dist: helper-lib>=1.0",
    'Requires-Dist: requests[socks,security]>=2; extra == "net"',
    'Requires-Dist: tomli; python_version < "3.11"',
    "Requires-Dist: secret-thing",
)


def wheel(root: Path, name: str, version: str, text: str, tag: str = "py3-none-any") -> Path:
    filename = write_wheel(str(root), name, version, text, {"m/__init__.py": ""}, tag)
    return root / filename


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("ui")
    root = base / "root"
    root.mkdir()
    files = [
        wheel(root, "Demo.Pkg", "1.0", metadata("Demo.Pkg", "1.0", MARKDOWN, "text/markdown")),
        wheel(
            root,
            "Demo.Pkg",
            "2.0",
            metadata("Demo.Pkg", "2.0", MARKDOWN, "text/markdown; variant=GFM", DEMO_EXTRA),
        ),
        wheel(
            root,
            "Demo.Pkg",
            "2.0",
            metadata("Demo.Pkg", "2.0", MARKDOWN, "text/markdown", DEMO_EXTRA),
            tag="cp311-cp311-manylinux_2_17_x86_64",
        ),
        wheel(root, "Demo.Pkg", "3.0b1", metadata("Demo.Pkg", "3.0b1", MARKDOWN, "text/markdown")),
        wheel(root, "rst-proj", "1.0", metadata("rst-proj", "1.0", RST, "text/x-rst")),
        wheel(root, "plain-proj", "1.0", metadata("plain-proj", "1.0", PLAIN, "text/plain")),
        wheel(root, "evil-readme", "1.0", metadata("evil-readme", "1.0", HOSTILE, "text/markdown")),
        make_wheel(root, "helper-lib", "1.0", summary="Helps demo"),
        make_wheel(root, "secret-thing", "1.0", summary="hidden"),
    ]
    sign(files[1])
    (root / (files[1].name + ".provenance")).write_bytes(
        b'{"version": 1, "attestation_bundles": []}'
    )
    # Upload times: in this order, one minute apart (the recent list sorts by them).
    for n, path in enumerate(files):
        moment = 1_700_000_000 + 60 * n
        os.utime(path, (moment, moment))
    # Documentation uploaded for helper-lib 1.0, where the docs shelf keeps it.
    shelf = root / ".creamery" / "docs" / "helper-lib"
    shelf.mkdir(parents=True)
    with zipfile.ZipFile(shelf / "1.0.zip", "w") as docs:
        docs.writestr("index.html", "<h1>helper-lib docs</h1>")
    write_sha1_htpasswd(base / "htpasswd", USER, PASSWORD)
    # secret-* is readable by one user only: hidden from everyone else.
    (base / "perms.toml").write_text(
        '[[rules]]\nuser = "anonymous"\nrole = "reader"\nprojects = ["*"]\n\n'
        '[[rules]]\nuser = "nobody-at-all"\nrole = "reader"\nprojects = ["secret-*"]\n'
    )
    return base


@pytest.fixture(scope="module")
def server(base: Path) -> Iterator[Server]:
    args = ("-P", str(base / "htpasswd"), "-a", "update", "--disable-fallback")
    with run_server([base / "root"], *args) as srv:
        yield srv


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def page(http: httpx.Client, path: str, **kwargs: object) -> str:
    response = http.get(path, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 200, (path, response.status_code, response.text)
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    return response.text


def section(text: str, start: str, end: str) -> str:
    found = re.search(re.escape(start) + "(.*?)" + re.escape(end), text, re.DOTALL)
    assert found, start
    return found.group(1)


# ---------------------------------------------------------------- home


def test_home_counts_recent_releases_and_the_index_url(server: Server, http: httpx.Client) -> None:
    text = page(http, "/")
    assert "<title>Welcome to creamery!</title>" in text
    assert "This is a PyPI compatible package index serving 9 packages." in text
    assert re.search(r"<strong>6</strong> projects", text)
    assert re.search(r"<strong>9</strong> files", text)
    index_url = f"{server.url}/simple/"
    assert f'data-copy="{index_url}"' in text
    assert f"pip install --index-url {index_url} PACKAGE" in text
    assert f"uv pip install --index-url {index_url} PACKAGE" in text
    assert f"twine upload --repository-url {server.url}/ dist/*" in text
    assert f'action="{server.url}/search/"' in text and 'name="q" type="search"' in text
    for link in ("simple/", "packages/", "docs/"):
        assert f'href="{server.url}/{link}"' in text
    recent = re.findall(
        r'<li class="recent-release" data-project="([^"]+)" data-version="([^"]+)"', text
    )
    # Newest first; Demo.Pkg 2.0's files count once.
    assert recent[:4] == [
        ("secret-thing", "1.0"),
        ("helper-lib", "1.0"),
        ("evil-readme", "1.0"),
        ("plain-proj", "1.0"),
    ]
    assert ("demo-pkg", "2.0") in recent and len(recent) == len(set(recent)) == 8
    assert "Helps demo" in text  # the summary
    assert f'href="{server.url}/project/helper-lib/1.0/"' in text
    assert "This instance is running version" in text


@pytest.mark.parametrize("path", ["/", "/project/demo-pkg/", "/project/demo-pkg/1.0/"])
def test_etag_and_head(http: httpx.Client, path: str) -> None:
    first = http.get(path)
    etag = first.headers["etag"]
    again = http.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    head = http.head(path)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(first.content))
    assert "default-src 'self'" in first.headers["content-security-policy"]
    assert "<style" not in first.text and " style=" not in first.text  # CSP: no inline style


# ---------------------------------------------------------------- project pages


def test_markdown_project_page(server: Server, http: httpx.Client) -> None:
    text = page(http, "/project/demo-pkg/")
    # The latest final release, not the pre-release.
    assert re.search(r"<h1>.*Demo\.Pkg.*2\.0.*</h1>", text)
    readme = section(text, '<article class="readme" id="description">', "</article>")
    assert '<h1 id="user-content-demo-heading">' in readme
    assert "<strong>bold</strong>" in readme and '<pre lang="python">' in readme
    install = section(text, '<div class="command install-command" id="install">', "</div>")
    assert f"pip install --index-url {server.url}/simple/ Demo.Pkg==2.0" in install
    assert "Demo.Pkg summary line" in text
    assert '<a href="mailto:jane@example.org">Jane Doe</a>' in text
    assert '<a href="mailto:max@example.org">Max</a>' in text
    assert "MIT OR Apache-2.0" in text and "Python &gt;=3.9" in text
    assert 'href="https://example.org/src"' in text and "javascript:" not in text
    assert "Topic" in text and "Software Development" in text
    deps = section(text, '<ul class="dependencies" id="dependencies">', "</ul>")
    assert f'<a href="{server.url}/project/helper-lib/">helper-lib</a>' in deps
    assert "[security,socks]" in deps and "extra == &#34;net&#34;" in deps
    assert "python_version &lt; &#34;3.11&#34;" in deps
    assert "/project/requests/" not in deps  # not hosted here
    assert f'<a href="{server.url}/project/secret-thing/">secret-thing</a>' in deps
    files = section(text, '<table class="files-table" id="files">', "</table>")
    assert 'data-filename="demo_pkg-2.0-py3-none-any.whl"' in files
    assert 'data-filename="demo_pkg-2.0-cp311-cp311-manylinux_2_17_x86_64.whl"' in files
    assert "manylinux_2_17_x86_64" in files and "cp311" in files
    wheel_file = Path(server.roots[0]) / "demo_pkg-2.0-py3-none-any.whl"  # type: ignore[arg-type]
    import hashlib

    digest = hashlib.sha256(wheel_file.read_bytes()).hexdigest()
    assert f'data-copy="{digest}"' in files
    assert f'href="{server.url}/packages/demo_pkg-2.0-py3-none-any.whl.asc"' in files
    integrity = "/integrity/demo-pkg/2.0/demo_pkg-2.0-py3-none-any.whl/provenance"
    assert f'href="{server.url}{integrity}"' in files  # PEP 740: PyPI's Integrity API route
    assert http.get(integrity).status_code == 200
    for link in ("asc", "provenance", "metadata"):
        assert http.get(f"/packages/demo_pkg-2.0-py3-none-any.whl.{link}").status_code == 200
    assert "Documentation" not in text and "Manage project" not in text


def test_version_page_and_prerelease_badge(http: httpx.Client) -> None:
    text = page(http, "/project/demo-pkg/3.0b1/")
    assert re.search(r"<h1>.*3\.0b1.*</h1>", text)
    history = section(text, '<section id="history"', "</section>")
    assert re.findall(r'<li class="release[^"]*" data-version="([^"]+)"', history) == [
        "3.0b1",
        "2.0",
        "1.0",
    ]
    pre = section(history, 'data-version="3.0b1">', "</li>")
    assert '<span class="badge pre">pre-release</span>' in pre
    assert "not the latest release" in text
    # The older release's own metadata: no dependencies.
    assert 'id="dependencies"' not in page(http, "/project/demo-pkg/1.0/")


def test_rst_and_plain_readmes(http: httpx.Client) -> None:
    rst = section(page(http, "/project/rst-proj/"), 'id="description">', "</article>")
    assert "<li><p>first item</p></li>" in rst and "literal</span> here" in rst
    plain = section(page(http, "/project/plain-proj/"), 'id="description">', "</article>")
    assert "<pre>Plain  text<br>&lt;b&gt;not bold&lt;/b&gt;<br></pre>" in plain


def test_a_malicious_readme_is_defused(http: httpx.Client) -> None:
    text = page(http, "/project/evil-readme/")
    readme = section(text, 'id="description">', "</article>").lower()
    assert "<h1" in readme
    for needle in ("<script", "onerror", "style=", "<iframe", 'href="javascript:'):
        assert needle not in readme, needle
    assert "<script" not in text.replace('<script src="', "")  # only our own script file


def test_redirects(http: httpx.Client) -> None:
    cases = {
        "/project/Demo.Pkg/": "../demo-pkg/",
        "/project/Demo_Pkg/2.0/": "../../demo-pkg/2.0/",
        "/project/demo-pkg": "demo-pkg/",
        "/project/demo-pkg/2.0": "2.0/",
        "/project/Demo.Pkg/2.0": "../demo-pkg/2.0/",
    }
    for path, location in cases.items():
        response = http.get(path)
        assert response.status_code == 301, path
        assert response.headers["location"] == location, path
        assert http.get(urljoin(path, location)).status_code == 200, path


def test_unknown_project_and_version_share_one_404(http: httpx.Client) -> None:
    assert http.get("/project/no-such-thing/").status_code == 404
    unknown = http.get("/project/no-such-thing/9.9/")
    version = http.get("/project/demo-pkg/9.9/")
    assert unknown.status_code == version.status_code == 404
    assert "Not Found" in unknown.text
    assert unknown.text.replace("no-such-thing", "X") == version.text.replace("demo-pkg", "X")


def test_versions_and_files_match_the_simple_api(http: httpx.Client) -> None:
    for project in ("demo-pkg", "rst-proj", "helper-lib"):
        simple = http.get(f"/simple/{project}/", headers={"Accept": JSON}).json()
        text = page(http, f"/project/{project}/")
        history = section(text, '<section id="history"', "</section>")
        shown = re.findall(r'data-version="([^"]+)"', history)
        assert sorted(shown) == sorted(simple["versions"]), project
        listed = set()
        for version in shown:
            version_page = page(http, f"/project/{project}/{version}/")
            listed |= set(re.findall(r'<tr data-filename="([^"]+)"', version_page))
        assert listed == {f["filename"] for f in simple["files"]}, project


def test_yanked_release_shows_the_badge_and_reason(server: Server, http: httpx.Client) -> None:
    reason = "broken <build> & more"
    response = http.post(
        "/-/yank", json={"project": "rst-proj", "version": "1.0", "reason": reason}, auth=AUTH
    )
    assert response.status_code == 200, response.text
    text = page(http, "/project/rst-proj/1.0/")
    release = section(text, 'data-version="1.0">', "</li>")
    assert '<span class="badge yanked">yanked</span>' in release
    assert f'<p class="yank-reason">{html.escape(reason, quote=False)}</p>' in release
    assert html.escape(reason, quote=False) in section(text, "yank-notice", "</p>")
    simple = http.get("/simple/rst-proj/", headers={"Accept": JSON}).json()
    assert simple["files"][0]["yanked"] == reason


def test_manage_link_is_per_visitor_and_the_docs_link(server: Server, http: httpx.Client) -> None:
    anonymous = http.get("/project/helper-lib/")
    signed_in = http.get("/project/helper-lib/", auth=AUTH)
    wrong = http.get("/project/helper-lib/", auth=(USER, "not-the-password"))
    assert wrong.status_code == 200 and wrong.text == anonymous.text  # an open page, as to anyone
    assert "Manage project" not in anonymous.text
    assert f'href="{server.url}/manage/project/helper-lib/">Manage project</a>' in signed_in.text
    assert anonymous.headers["etag"] != signed_in.headers["etag"]
    assert f'<a class="button" href="{server.url}/docs/helper-lib/">Documentation</a>' in (
        anonymous.text
    )
    assert (
        http.get(
            "/project/helper-lib/", headers={"If-None-Match": signed_in.headers["etag"]}
        ).status_code
        == 200
    )


def test_links_under_a_proxy_prefix(http: httpx.Client) -> None:
    headers = {"X-Forwarded-Host": "proxy.example", "X-Forwarded-Prefix": "/pypi"}
    prefix = "http://proxy.example/pypi/"
    for path in ("/", "/project/demo-pkg/", "/project/demo-pkg/1.0/", "/project/nothing-here/"):
        response = http.get(path, headers=headers)
        assert response.status_code in (200, 404)
        links = re.findall(r'(?:href|src|action)="([^"]+)"', response.text)
        assert links, path
        for link in links:
            if link.startswith(("#", "mailto:", "https://example.org", "https://pypi.org")):
                continue
            assert link.startswith(prefix), (path, link)
        if "/project/" in path and response.status_code == 200:
            assert f"--index-url {prefix}simple/" in response.text


def test_a_dependency_uploaded_later_is_linked(base: Path, tmp_path: Path) -> None:
    """The page of a release that did not change still follows its dependencies' arrival."""
    root = tmp_path / "root"
    shutil.copytree(base / "root", root, ignore=shutil.ignore_patterns(".creamery"))
    with run_server([root]) as srv, srv.client() as client:
        before = page(client, "/project/demo-pkg/2.0/")
        assert "/project/tomli/" not in before
        make_wheel(root, "tomli", "2.0")

        def linked() -> bool:
            return f'<a href="{srv.url}/project/tomli/">tomli</a>' in page(
                client, "/project/demo-pkg/2.0/"
            )

        assert wait_for(linked, timeout=10)


def test_every_link_works_under_a_server_base_url(base: Path) -> None:
    """Under --server-base-url every link of the home and project pages (and what they link
    to, one level down) answers, and none leaves the prefix."""
    args = ("--disable-fallback", "--server-base-url", "/priv")
    with run_server([base / "root"], *args, ready_paths=["/priv/health"]) as srv:
        prefix = srv.url + "/priv/"
        with httpx.Client(timeout=10) as client:
            seen: set[str] = set()
            for start in ("", "project/demo-pkg/", "project/demo-pkg/2.0/", "project/rst-proj/"):
                text = page(client, prefix + start)
                for link in re.findall(r'(?:href|src)="([^"#]+)[^"]*"', text):
                    link = html.unescape(link)
                    if link.startswith(("mailto:", "https://")) or link in seen:
                        continue
                    seen.add(link)
                    assert link.startswith(prefix), (start, link)
                    if link.endswith(("/search/", "/docs/", "opensearch.xml")):
                        continue  # other pages' routes (not part of this branch)
                    answered = client.get(link, follow_redirects=True)
                    assert answered.status_code == 200, (start, link, answered.status_code)
            assert prefix + "project/helper-lib/" in seen


# ---------------------------------------------------------------- who sees what


def test_list_guarded_home_and_project_pages(base: Path) -> None:
    args = ("-P", str(base / "htpasswd"), "-a", "list,update", "--disable-fallback")
    with run_server([base / "root"], *args) as srv, srv.client() as client:
        home = client.get("/")
        assert home.status_code == 200
        assert "This is a PyPI compatible package index." in home.text
        assert "serving" not in home.text and "recent-release" not in home.text
        signed_in = client.get("/", auth=AUTH)
        assert "serving 9 packages" in signed_in.text and "recent-release" in signed_in.text
        redirect = client.get("/project/demo-pkg/")
        assert redirect.status_code == 303
        target = urljoin(srv.url + "/project/demo-pkg/", redirect.headers["location"])
        assert target == srv.url + "/-/signin?next=/project/demo-pkg/"
        assert client.get("/project/demo-pkg/", auth=AUTH).status_code == 200


def test_a_hidden_project_is_absent(base: Path) -> None:
    perms = ("--permissions", str(base / "perms.toml"))
    args = ("-P", str(base / "htpasswd"), *perms, "--disable-fallback")
    with run_server([base / "root"], *args) as srv, srv.client() as client:
        hidden = client.get("/project/secret-thing/")
        unknown = client.get("/project/secret-other/")
        assert hidden.status_code == unknown.status_code == 404
        assert hidden.text.replace("secret-thing", "X") == unknown.text.replace("secret-other", "X")
        assert client.get("/project/secret-thing/1.0/").status_code == 404
        home = client.get("/").text
        assert "secret" not in home
        # A dependency on it is named (the metadata says so) but not linked.
        deps = section(page(client, "/project/demo-pkg/"), 'id="dependencies">', "</ul>")
        assert "secret-thing" in deps and "/project/secret-thing/" not in deps
        assert "serving 8 packages" in home and "<strong>5</strong> projects" in home


# ---------------------------------------------------------------- the mirror


def test_a_mirrored_project_shows_the_upstream_listing(base: Path, tmp_path: Path) -> None:
    upstream_dir = tmp_path / "upstream"
    make_wheel(upstream_dir, "far-away", "1.0")
    make_wheel(upstream_dir, "far-away", "2.0rc1")
    make_wheel(upstream_dir, "helper-lib", "9.0")  # hosted here too: ours alone is shown
    local = base / "root"
    with run_upstream(upstream_dir) as upstream:
        args = ("--mirror", "--fallback-url", upstream.index_url)
        args += ("--mirror-cache", str(tmp_path / "cache"))
        with run_server([local], *args) as srv, srv.client() as client:
            text = page(client, "/project/far-away/")
            assert '<span class="badge mirror">mirror</span>' in text
            assert f'served from <a href="{upstream.index_url}far-away/">' in text
            history = section(text, '<section id="history"', "</section>")
            assert re.findall(r'data-version="([^"]+)"', history) == ["2.0rc1", "1.0"]
            assert 'data-filename="far_away-1.0-py3-none-any.whl"' in text
            assert f'href="{srv.url}/upstream/far-away/far_away-1.0-py3-none-any.whl"' in text
            simple = client.get("/simple/far-away/", headers={"Accept": JSON}).json()
            digest = simple["files"][0]["hashes"]["sha256"]
            assert f'data-copy="{digest}"' in page(client, "/project/far-away/1.0/")
            assert client.get("/project/far-away/7.0/").status_code == 404
            assert client.get("/project/nowhere-at-all/").status_code == 404
            ours = page(client, "/project/helper-lib/")
            assert "badge mirror" not in ours and "9.0" not in ours
