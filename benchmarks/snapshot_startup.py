"""Start-up of the index from a snapshot vs a full listing (catalog/snapshot.py).

    PYTHONPATH=src python3 benchmarks/snapshot_startup.py                 # a local directory
    PYTHONPATH=src:tests python3 benchmarks/snapshot_startup.py --s3      # moto's S3 server too

40,000 files by default (5,000 projects, 4 versions, a wheel and an sdist each: the corpus of
benchmarks/run.py, with tiny contents: start-up reads no file). For each backend: the full
listing (`Index.load`), writing a snapshot (`snapshot.write`: its size), and loading the index
from it (`snapshot.load_latest`: one listing of `snapshots/`, one GET, gunzip, JSON, the index
built from names, a few `stat`s to check it describes the store). Best of *runs*, wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from creamery.catalog import snapshot
from creamery.catalog.index import Index
from creamery.storage import Storage
from creamery.storage.local import LocalStorage


def corpus(files: int) -> list[str]:
    names: list[str] = []
    project = 0
    while len(names) < files:
        for version in range(4):
            names.append(f"project{project}-{version}.0-py3-none-any.whl")
            names.append(f"project{project}-{version}.0.tar.gz")
        project += 1
    return names[:files]


def best(runs: int, action: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(label: str, packages: Storage, state: Storage, runs: int) -> dict[str, object]:
    def full() -> None:
        Index(packages).load()

    listing = best(runs, full)
    index = Index(packages)
    index.load()
    files = len(index.files)
    serial = [0]

    def write() -> None:
        serial[0] += 1
        assert snapshot.write(state, index, serial[0])

    writing = best(runs, write)
    size = snapshot.listed(state)[0].stored.size

    def load() -> None:
        assert snapshot.load_latest(state, Index(packages)) == serial[0]

    loading = best(runs, load)
    row = {
        "backend": label,
        "files": files,
        "full listing s": round(listing, 3),
        "snapshot load s": round(loading, 3),
        "speed-up": round(listing / loading, 1),
        "snapshot write s": round(writing, 3),
        "snapshot KiB": size // 1024,
    }
    print(row, flush=True)
    return row


@contextlib.contextmanager
def local(names: list[str]) -> Iterator[tuple[Storage, Storage]]:
    with tempfile.TemporaryDirectory(prefix="creamery-snapshot-bench-") as top:
        packages = Path(top) / "packages"
        (packages / ".creamery").mkdir(parents=True)
        for name in names:
            (packages / name).write_bytes(b"x")
        yield LocalStorage((packages,)), LocalStorage((packages / ".creamery",))


@contextlib.contextmanager
def s3(names: list[str]) -> Iterator[tuple[Storage, Storage]]:
    from support.s3 import REGION, s3_server

    from creamery.core.objects import ObjectRoot, S3Options
    from creamery.storage.s3 import S3Storage

    with s3_server() as server:
        os.environ.update(server.env())
        bucket = server.new_bucket("bench")
        client = server.client()
        root = ObjectRoot(bucket, "index")
        with ThreadPoolExecutor(16) as pool:
            list(
                pool.map(
                    lambda n: client.put_object(Bucket=bucket, Key=root.key(n), Body=b"x"), names
                )
            )
        options = S3Options(endpoint_url=server.endpoint, region=REGION)
        yield S3Storage(root, options), S3Storage(root.state(), options)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=40_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--s3", action="store_true", help="also on moto's S3 server")
    parser.add_argument("--only-s3", action="store_true")
    args = parser.parse_args()
    names = corpus(args.files)
    rows = []
    if not args.only_s3:
        with local(names) as (packages, state):
            rows.append(measure("local directory", packages, state, args.runs))
    if args.s3 or args.only_s3:
        with s3(names) as (packages, state):
            rows.append(measure("S3 (moto server)", packages, state, args.runs))
    keys = list(rows[0])
    print("\n| " + " | ".join(keys) + " |\n|" + " --- |" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in keys) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
