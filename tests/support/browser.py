"""Real-browser fixtures (a pytest plugin, loaded by `tests/conftest.py`): Debian's Chromium
driven by Playwright, for the web UI's tests.

- `browser` (module): one headless Chromium for a module's tests. Browser downloads are not possible
  here, so it is always the system's (`chromium` on `PATH`, or `$CREAMERY_CHROMIUM`). A test
  that needs it is skipped, with the reason, only when Chromium or Playwright cannot be found
  or launched (`.ci/run` installs both).
- `pages` (per test): opens pages, each in a fresh context (no cookies shared):
  `pages.new()` is light and desktop-sized (1280x800), `pages.new(color_scheme="dark")`,
  `pages.new(phone=True)` a 390x844 phone (a mobile viewport, touch).
- `page` (per test): `pages.new()`.

Every page records console errors and uncaught exceptions; a test that left any fails (after
its body passed), because a Content-Security-Policy violation shows up there: an inline script,
style or handler that the pages' policy blocked. A test that expects an error (a 404 page logs
"Failed to load resource") says so with `pages.allow(pattern)`.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Playwright

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
ColorScheme = Literal["light", "dark"]
TIMEOUT_MS = 10_000  # one action or navigation; pages answer in milliseconds
NOT_FOUND_LOG = r"status of 404"  # what Chromium logs for a document answered 404


def chromium_path() -> str | None:
    """Debian's Chromium (or `$CREAMERY_CHROMIUM`), or None when there is none."""
    configured = os.environ.get("CREAMERY_CHROMIUM")
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class Pages:
    """Opens pages in fresh contexts of the session's browser and keeps what went wrong."""

    browser: Browser
    problems: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)
    contexts: list[BrowserContext] = field(default_factory=list)

    def new(self, *, color_scheme: ColorScheme = "light", phone: bool = False) -> Page:
        """A page in a context of its own: light or dark, desktop (1280x800) or phone (390x844)."""
        options: dict[str, Any] = {"color_scheme": color_scheme, "viewport": DESKTOP}
        if phone:
            options.update(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=1)
        context = self.browser.new_context(**options)
        context.set_default_timeout(TIMEOUT_MS)
        context.set_default_navigation_timeout(TIMEOUT_MS)
        self.contexts.append(context)
        page = context.new_page()
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"uncaught: {error}"))
        page.on("crash", lambda _page: self.problems.append("the page crashed"))
        return page

    def allow(self, pattern: str) -> None:
        """Console errors matching *pattern* (a regular expression) are expected."""
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [p for p in self.problems if not any(a.search(p) for a in self.allowed)]

    def close(self) -> None:
        for context in self.contexts:
            context.close()
        self.contexts.clear()

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            where = message.location.get("url") or (message.page.url if message.page else "?")
            self.problems.append(f"console error at {where}: {message.text}")


# Module scope, not session: while Playwright's sync API is started, its event loop counts as
# running in this thread, so a later test's `asyncio.run` in the same worker would fail.
@pytest.fixture(scope="module")
def playwright_instance() -> Iterator[Playwright]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip(
            "Playwright is not installed (it is in the test extra: pip install -e '.[test]')"
        )
    manager = sync_playwright()
    instance = manager.start()
    try:
        yield instance
    finally:
        manager.__exit__(None, None, None)


@pytest.fixture(scope="module")
def browser(playwright_instance: Playwright) -> Iterator[Browser]:
    """One headless Chromium for a module's tests: Debian's, never a downloaded one."""
    from playwright.sync_api import Error as PlaywrightError

    path = chromium_path()
    if path is None:
        pytest.skip(
            "no Chromium found (the web UI's browser tests use Debian's: apt-get install chromium)"
        )
    # As root, Chromium refuses to start with its sandbox.
    args = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    try:
        launched = playwright_instance.chromium.launch(
            executable_path=path, headless=True, args=args
        )
    except PlaywrightError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        pytest.skip(f"Chromium at {path} could not be launched: {first}")
    try:
        yield launched
    finally:
        launched.close()


@pytest.fixture
def pages(browser: Browser) -> Iterator[Pages]:
    opened = Pages(browser)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def page(pages: Pages) -> Page:
    return pages.new()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A test whose pages logged an error fails, once its own assertions passed."""
    result = yield
    opened = getattr(item, "funcargs", {}).get("pages")
    if isinstance(opened, Pages):
        problems = opened.unexpected()
        if problems:
            pytest.fail("the pages logged errors:\n" + "\n".join(problems), pytrace=False)
    return result


# ----------------------------------------------------------------------------- page helpers


def sign_in(page: Page, user: str, password: str) -> None:
    """Fill in and send the sign-in form the page shows (`/-/signin`), waiting for where it
    leads."""
    form = page.locator("form:has(input[name=password])")
    form.locator("input[name=username]").fill(user)
    form.locator("input[name=password]").fill(password)
    with page.expect_navigation():
        form.locator("button[type=submit], input[type=submit], button:not([type])").first.click()


def sign_in_at(page: Page, base_url: str, user: str, password: str, next: str = "/") -> None:
    """Sign in through *base_url*'s sign-in page, which leads to *next* (below the index root)."""
    page.goto(f"{base_url}/-/signin?next={quote(next, safe='/')}")
    sign_in(page, user, password)


def no_horizontal_scroll(page: Page) -> tuple[int, int]:
    """(scrollWidth, clientWidth) of the document: equal or less means no horizontal scroll."""
    sizes: list[int] = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    return sizes[0], sizes[1]


def background_of(page: Page) -> str:
    """The page's visible background colour: the body's, or the root's where the body has none."""
    colour: str = page.evaluate(
        """() => {
            const clear = (c) => c === "transparent" || c === "rgba(0, 0, 0, 0)";
            const body = getComputedStyle(document.body).backgroundColor;
            return clear(body) ? getComputedStyle(document.documentElement).backgroundColor : body;
        }"""
    )
    return colour


def luminance(colour: str) -> float:
    """Relative luminance (0 black .. 1 white) of a computed `rgb()`/`rgba()` colour."""
    match = re.match(r"rgba?\(([\d.]+),\s*([\d.]+),\s*([\d.]+)", colour)
    assert match, f"not an rgb() colour: {colour!r}"

    def channel(value: str) -> float:
        c = float(value) / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in match.groups())
    return 0.2126 * r + 0.7152 * g + 0.0722 * b
