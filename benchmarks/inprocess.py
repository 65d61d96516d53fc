#!/usr/bin/env python3
"""CPU time per request through the ASGI app itself, no server and no network.

    PYTHONPATH=src python3 benchmarks/inprocess.py

wrk figures on this 2-core VM move by 20% from run to run; this measures only what creamery's
own code costs on the hot paths (best of 5 x 20,000 requests, `time.process_time`), so two
trees can be compared by running it with each on PYTHONPATH.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.dists import make_wheel  # the test suite's real wheel builder

import creamery

PROJECTS = 50
ROUNDS = 5
REQUESTS = 20_000


def scope(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"x"), (b"accept", b"application/vnd.pypi.simple.v1+json")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
        "scheme": "http",
        "http_version": "1.1",
    }


async def measure(app: Any, path: str) -> float:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    for _ in range(2_000):  # warm: pages rendered, files in the small-file cache
        await app(scope(path), receive, send)
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.process_time()
        for _ in range(REQUESTS):
            await app(scope(path), receive, send)
        best = min(best, (time.process_time() - started) / REQUESTS)
    return best * 1e6


async def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        root = Path(work) / "packages"
        for n in range(PROJECTS):
            make_wheel(root, f"proj{n}", "1.0")
        app = creamery.app(
            roots=[str(root)],
            authenticate=".",
            password_file=".",
            disable_fallback=True,
            cache_dir=str(Path(work) / "cache"),
        )
        await asyncio.to_thread(app.start)
        for path in ("/simple/", "/simple/proj1/", "/packages/proj1-1.0-py3-none-any.whl"):
            print(f"{path:45} {await measure(app, path):6.2f} µs per request")
        app.stop()


if __name__ == "__main__":
    asyncio.run(main())
