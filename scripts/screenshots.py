#!/usr/bin/env python3
"""Screenshots of the web UI for the README: `python scripts/screenshots.py`.

Starts a real `creamery run` on a free 127.0.0.1 port over a temporary directory of demo
packages (real wheels and sdists with Markdown READMEs, several versions, a pre-release, a
yanked release), opens the home, a project and a search page in Debian's Chromium (through
playwright, from the test extra) in light and dark, at desktop (1280x800) and phone (390x844)
sizes, and writes `docs/screenshots/<page>-<scheme>-<device>.png` (12 files).

Needs Chromium (`apt-get install chromium`, or `--chromium PATH`); the package builders come
from the test suite's `tests/support/`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import httpx

if TYPE_CHECKING:
    from playwright.sync_api import FloatRect, ViewportSize

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.dists import make_sdist, yank  # noqa: E402
from support.readmes import readme_wheel  # noqa: E402

PAGES = {"home": "/", "project": "/project/acme-http/", "search": "/search/?q=acme"}
DEVICES: dict[str, ViewportSize] = {
    "desktop": {"width": 1280, "height": 800},
    "phone": {"width": 390, "height": 844},
}
SCHEMES: tuple[Literal["light", "dark"], ...] = ("light", "dark")
MAX_HEIGHT = {"desktop": 1280, "phone": 1600}  # a full page, cut where it stops saying more
DAY = 86400
NOW = time.time()

ACME_HTTP_README = """\
# acme-http

An HTTP client for ACME's internal services: retries with backoff, connection pooling, and
typed responses, on top of `httpx`.

```python
from acme_http import Client

with Client("https://inventory.internal.acme.example") as client:
    items = client.get("/items", params={"limit": 10}).json()
```

## Features

- **Retries** idempotent requests with exponential backoff and jitter
- **Timeouts** per request, per host, or for the whole session
- **Tracing** headers propagated from the current span

| setting | default | meaning |
| --- | --- | --- |
| `retries` | `3` | attempts after the first |
| `timeout` | `10.0` | seconds for the whole request |
| `pool_size` | `20` | connections kept per host |

## Changelog

See the [release notes](https://acme.example/acme-http/changes).
"""

DEMO = [
    # (name, version, summary, days ago, extra README)
    ("acme-http", "1.0.0", "HTTP client for ACME's internal services", 120),
    ("acme-http", "1.1.0", "HTTP client for ACME's internal services", 60),
    ("acme-http", "1.1.1", "HTTP client for ACME's internal services", 45),
    ("acme-http", "1.2.0", "HTTP client for ACME's internal services", 9),
    ("acme-http", "2.0.0b1", "HTTP client for ACME's internal services", 2),
    ("acme-auth", "0.4.2", "Single sign-on tokens for ACME services", 30),
    ("acme-auth", "0.5.0", "Single sign-on tokens for ACME services", 5),
    ("acme-cli", "3.2.0", "The acme command line: deploy, logs, shell", 1),
    ("billing-reports", "2024.11.1", "Monthly billing reports as Parquet and PDF", 14),
    ("data-pipeline", "0.9.0", "Ingest, validate and load event streams", 3),
    ("feature-flags", "1.4.0", "Feature flags read from the config service", 21),
]
YANKED = ("acme-http", "1.1.1", "Breaks TLS verification on Python 3.12; use 1.2.0")


def readme_for(name: str, summary: str) -> str:
    if name == "acme-http":
        return ACME_HTTP_README
    module = name.replace("-", "_")
    return (
        f"# {name}\n\n{summary}.\n\n## Usage\n\n```python\nimport {module}\n```\n\n"
        f"Maintained by the platform team; questions in `#platform`.\n"
    )


def build_demo(root: Path) -> None:
    """The demo index: wheels with READMEs and sdists, upload times spread over months."""
    for name, version, summary, days in DEMO:
        headers = [
            "Author: ACME Platform Team",
            "Author-email: platform@acme.example",
            "License: MIT",
            "Classifier: Programming Language :: Python :: 3",
            "Classifier: License :: OSI Approved :: MIT License",
            "Project-URL: Source, https://git.acme.example/platform/" + name,
        ]
        requires = ["httpx>=0.27", "acme-auth>=0.4"] if name == "acme-http" else []
        wheel = readme_wheel(
            root,
            name,
            version,
            readme_for(name, summary),
            summary=summary,
            requires_python=">=3.10",
            requires_dist=requires,
            extra_headers=headers,
        )
        sdist = make_sdist(root, name, version, summary=summary, requires_python=">=3.10")
        stamp = NOW - days * DAY
        for path in (wheel, sdist):
            os.utime(path, (stamp, stamp))
            if (name, version) == YANKED[:2]:
                yank(path, YANKED[2])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def creamery_server(root: Path, workdir: Path) -> Iterator[str]:
    """`creamery run` over *root* on a free port, until the block ends; yields its URL."""
    port = free_port()
    env = {**os.environ, "XDG_CACHE_HOME": str(workdir / "cache")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    log = open(workdir / "server.log", "wb")  # noqa: SIM115 (closed below)
    command = [sys.executable, "-m", "creamery", "run", "-i", "127.0.0.1", "-p", str(port)]
    process = subprocess.Popen(
        [*command, "--disable-fallback", str(root)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise SystemExit("creamery exited:\n" + (workdir / "server.log").read_text())
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit("creamery did not become ready in 30 s")
            time.sleep(0.1)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def take(url: str, out: Path, chromium: str) -> list[Path]:
    from playwright.sync_api import sync_playwright

    written: list[Path] = []
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=args)
        for device, viewport in DEVICES.items():
            for scheme in SCHEMES:
                phone = device == "phone"
                context = browser.new_context(
                    viewport=viewport,
                    color_scheme=scheme,
                    is_mobile=phone,
                    has_touch=phone,
                    device_scale_factor=1,
                )
                page = context.new_page()
                for name, path in PAGES.items():
                    response = page.goto(url + path, wait_until="networkidle")
                    if response is None or response.status != 200:
                        status = response.status if response else "no answer"
                        raise SystemExit(f"{path} answered {status}: are the pages there?")
                    height: int = page.evaluate("document.documentElement.scrollHeight")
                    clip: FloatRect = {
                        "x": 0,
                        "y": 0,
                        "width": viewport["width"],
                        "height": min(height, MAX_HEIGHT[device]),
                    }
                    target = out / f"{name}-{scheme}-{device}.png"
                    page.screenshot(path=str(target), full_page=True, clip=clip)
                    written.append(target)
                context.close()
        browser.close()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "")
    options = parser.parse_args()
    if not options.chromium:
        raise SystemExit("no Chromium: apt-get install chromium, or give --chromium PATH")
    options.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="creamery-screenshots-") as temp:
        workdir = Path(temp)
        root = workdir / "packages"
        root.mkdir()
        build_demo(root)
        with creamery_server(root, workdir) as url:
            for path in take(url, options.out, options.chromium):
                shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
                print(f"{shown} ({path.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
