#!/usr/bin/env python3
"""What issue 14's standards and policies cost, in-process (no server, no network).

    PYTHONPATH=src python3 benchmarks/standards.py

- The simple page of a project whose file has PEP 740 provenance (its URL absolute, so the
  cached page gets this server's base put in per base URL) against one without, for one Host
  and for two alternating Hosts; and an upload whose attestation is verified (Sigstore,
  offline) against the same upload without it.
- The mirror's policy decision (`mirror/policy.py`) for a listing of many files against deny
  lists of many globs, and the retention planner (`catalog/prune.py`) over many releases.

CPU time (`time.process_time`), best of several rounds, like `inprocess.py`.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from support.dists import make_wheel  # noqa: E402 (the test suite's real wheel builder)
from support.forms import multipart  # noqa: E402

import creamery  # noqa: E402

FIXTURES = HERE.parent / "tests" / "fixtures" / "attestations"
ATTESTED = "pypi_attestations-0.0.19.tar.gz"
ROUNDS = 5
REQUESTS = 20_000


def scope(path: str, host: bytes = b"x", method: str = "GET") -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", host), (b"accept", b"application/vnd.pypi.simple.v1+json")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
        "scheme": "http",
        "http_version": "1.1",
    }


async def _ignore(message: dict[str, Any]) -> None:
    pass


async def _empty() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def per_request(app: Any, path: str, hosts: tuple[bytes, ...] = (b"x",)) -> float:
    """µs of CPU per GET of *path*, the Host header cycling through *hosts*."""
    scopes = [scope(path, host) for host in hosts]
    for i in range(2_000):  # warm: pages rendered and rebased
        await app(scopes[i % len(scopes)], _empty, _ignore)
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.process_time()
        for i in range(REQUESTS):
            await app(scopes[i % len(scopes)], _empty, _ignore)
        best = min(best, (time.process_time() - started) / REQUESTS)
    return best * 1e6


async def upload(app: Any, filename: str, data: bytes, attestation: str | None) -> int:
    fields = [
        (":action", "file_upload"),
        ("name", "pypi-attestations"),
        ("version", "0.0.19"),
        ("sha256_digest", hashlib.sha256(data).hexdigest()),
    ]
    if attestation is not None:
        fields.append(("attestations", f"[{attestation}]"))
    body, content_type = multipart(fields, [("content", filename, data)])
    request = scope("/", method="POST")
    request["headers"] = [
        (b"host", b"x"),
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    status = 0
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(request, receive, send)
    return status


def new_app(root: Path, work: Path, **options: Any) -> Any:
    return creamery.app(
        roots=[str(root)],
        authenticate=".",
        password_file=".",
        disable_fallback=True,
        overwrite=True,
        cache_dir=str(work / "cache"),
        **options,
    )


async def pages_and_uploads() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        root = work / "packages"
        for n in range(50):
            make_wheel(root, f"proj{n}", "1.0")
        app = new_app(root, work)
        await asyncio.to_thread(app.start)
        data = (FIXTURES / ATTESTED).read_bytes()
        attestation = (FIXTURES / (ATTESTED + ".publish.attestation")).read_text()
        for label, with_attestation in (("without attestations", None), ("verified", attestation)):
            times = []
            for _ in range(5):
                started = time.process_time()
                status = await upload(app, ATTESTED, data, with_attestation)
                times.append(time.process_time() - started)
                assert status == 200, status
            print(f"upload of {ATTESTED}, {label:22} {min(times) * 1e3:8.2f} ms CPU (best of 5)")
        rows = [
            ("/simple/proj1/ (no provenance)", "/simple/proj1/", (b"x",)),
            ("/simple/pypi-attestations/, one Host", "/simple/pypi-attestations/", (b"x",)),
            ("/simple/pypi-attestations/, two Hosts", "/simple/pypi-attestations/", (b"x", b"y")),
        ]
        for label, path, hosts in rows:
            print(f"{label:45} {await per_request(app, path, hosts):8.2f} µs per request")
        app.stop()


def best_of(function: Callable[[], object], rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        function()
        best = min(best, time.process_time() - started)
    return best * 1e3


def policy_decisions() -> None:
    from creamery.mirror.listing import Listing, UpstreamFile
    from creamery.mirror.policy import MinAge, Policies
    from creamery.mirror.policy_lists import PatternFile

    now = datetime.now(UTC)
    for files, globs in ((100, 100), (10_000, 10_000)):
        listing = Listing(
            project="big",
            url="https://upstream.example/simple/big/",
            source="https://upstream.example/simple/",
            files=tuple(
                UpstreamFile(
                    filename=f"big-{i // 2}.{i % 2}-py3-none-any.whl",
                    url=f"https://upstream.example/files/big-{i}.whl",
                    hashes={"sha256": "ab" * 32},
                    requires_python=None,
                    core_metadata=None,
                    yanked=None,
                    size=1000,
                    upload_time=(now - timedelta(days=i % 20)).isoformat(),
                )
                for i in range(files)
            ),
        )
        with tempfile.TemporaryDirectory() as scratch:
            deny = Path(scratch) / "deny.txt"
            lines = [f"evil-{n}-*" for n in range(globs - 1)] + ["big>=4000"]
            deny.write_text("\n".join(lines) + "\n")
            policies = Policies(MinAge(7 * 86400), deny=PatternFile(deny))
            took = best_of(functools.partial(policies.decide, listing, now.timestamp()))
        print(f"policy decision, {files:>6} files x {globs:>6} deny globs + 7d  {took:8.2f} ms")


def prune_plan() -> None:
    from creamery.catalog.prune import Hosted, plan
    from creamery.catalog.prune_rules import Rule, Rules

    now = time.time()
    for projects, versions in ((100, 10), (1_000, 50)):
        hosted = [
            Hosted(
                project=f"p{n}",
                version=f"1.{v}" + ("rc1" if v % 7 == 0 else ""),
                files=(f"p{n}-1.{v}-py3-none-any.whl",),
                uploaded=now - 86400 * (versions - v),
                # every project pins an older release of the one before it
                requires=(f"p{n - 1}==1.3",) if n else (),
            )
            for n in range(projects)
            for v in range(versions)
        ]
        rules = Rules(Rule(keep=5, prereleases_older_than=30 * 86400))
        took = best_of(functools.partial(plan, hosted, rules, now=now))
        print(f"prune plan, {projects:>5} projects x {versions:>3} releases {took:17.2f} ms")


def main() -> None:
    asyncio.run(pages_and_uploads())
    policy_decisions()
    prune_plan()


if __name__ == "__main__":
    main()
