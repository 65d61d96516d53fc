"""obstore or boto3 as creamery's S3 client: the same calls against one moto server.

    PYTHONPATH=src:tests python3 benchmarks/s3_client.py [--rounds 3] [--scale 1.0]

Per operation: the wall time per call (median over the calls of a round, then the median of
the rounds) and the client's own CPU time per call (process CPU, all threads, so obstore's
Rust runtime counts too; moto runs in another process). moto is a Python server, so wall
times are mostly moto's; the CPU column is what each client costs creamery. Rounds alternate
the order of the clients, because this VM's CPU speed drifts from second to second.
Import time: a fresh interpreter importing the client and making one S3 client, minus a bare
interpreter's start (median of 5).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.s3 import ACCESS_KEY, REGION, SECRET_KEY, S3Server, s3_server

MB = 1 << 20


def obstore_client(server: S3Server, bucket: str) -> Any:
    from obstore.store import S3Store

    return S3Store(
        bucket,
        endpoint=server.endpoint,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        region=REGION,
        virtual_hosted_style_request=False,
        client_options={"allow_http": True, "timeout": "10s", "connect_timeout": "5s"},
    )


def boto3_client(server: S3Server) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
        config=Config(s3={"addressing_style": "path"}, connect_timeout=5, read_timeout=10),
    )


def operations(server: S3Server, bucket: str) -> dict[str, dict[str, Callable[[int], object]]]:
    import obstore

    ob = obstore_client(server, bucket)
    bo = boto3_client(server)
    counter = iter(range(10**9))

    def ob_list(_: int) -> int:
        return sum(len(page) for page in obstore.list(ob, prefix="many", chunk_size=1000))

    def bo_list(_: int) -> int:
        pages = bo.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="many/")
        return sum(len(page.get("Contents", [])) for page in pages)

    def ob_create(_: int) -> object:
        return obstore.put(ob, f"new/ob-{next(counter)}", b"x" * 1024, mode="create")

    def bo_create(_: int) -> object:
        key = f"new/bo-{next(counter)}"
        return bo.put_object(Bucket=bucket, Key=key, Body=b"x" * 1024, IfNoneMatch="*")

    def ob_sign(_: int) -> str:
        return obstore.sign(ob, "GET", "small", timedelta(seconds=60))

    def bo_sign(_: int) -> str:
        url: str = bo.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": "small"}, ExpiresIn=60
        )
        return url

    return {
        "HEAD": {
            "obstore": lambda _: obstore.head(ob, "small"),
            "boto3": lambda _: bo.head_object(Bucket=bucket, Key="small"),
        },
        "GET 1 KB": {
            "obstore": lambda _: bytes(obstore.get(ob, "small").bytes()),
            "boto3": lambda _: bo.get_object(Bucket=bucket, Key="small")["Body"].read(),
        },
        "ranged GET 1 MB": {
            "obstore": lambda n: bytes(
                obstore.get(ob, "big", options={"range": (n % 3 * MB, (n % 3 + 1) * MB)}).bytes()
            ),
            "boto3": lambda n: bo.get_object(
                Bucket=bucket, Key="big", Range=f"bytes={n % 3 * MB}-{(n % 3 + 1) * MB - 1}"
            )["Body"].read(),
        },
        "PUT 1 KB (If-None-Match: *)": {"obstore": ob_create, "boto3": bo_create},
        "LIST 1,000 keys": {"obstore": ob_list, "boto3": bo_list},
        "presign GET": {"obstore": ob_sign, "boto3": bo_sign},
    }


CALLS = {
    "HEAD": 200,
    "GET 1 KB": 200,
    "ranged GET 1 MB": 60,
    "PUT 1 KB (If-None-Match: *)": 100,
    "LIST 1,000 keys": 8,
    "presign GET": 2000,
}


def measure(call: Callable[[int], object], count: int) -> tuple[float, float]:
    """(median wall seconds per call, CPU seconds per call)"""
    call(0)  # warm: a connection in the pool
    walls = []
    cpu = time.process_time()
    for n in range(count):
        started = time.perf_counter()
        call(n)
        walls.append(time.perf_counter() - started)
    return statistics.median(walls), (time.process_time() - cpu) / count


def import_time(code: str) -> float:
    def once(source: str) -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", source], check=True)
        return time.perf_counter() - started

    bare = statistics.median(once("pass") for _ in range(5))
    return statistics.median(once(code) for _ in range(5)) - bare


IMPORTS = {
    "obstore": "import obstore\nfrom obstore.store import S3Store\n"
    "S3Store('b', endpoint='http://127.0.0.1:1', region='us-east-1', access_key_id='a',"
    " secret_access_key='b', client_options={'allow_http': True})",
    "boto3": "import boto3\nboto3.client('s3', endpoint_url='http://127.0.0.1:1',"
    " region_name='us-east-1', aws_access_key_id='a', aws_secret_access_key='b')",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the call counts")
    args = parser.parse_args()
    clients = ("obstore", "boto3")
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with s3_server() as server:
        bucket = server.new_bucket("bench")
        boto = server.client()
        boto.put_object(Bucket=bucket, Key="small", Body=b"s" * 1024)
        boto.put_object(Bucket=bucket, Key="big", Body=b"b" * (4 * MB))
        for n in range(1000):
            boto.put_object(Bucket=bucket, Key=f"many/{n:04d}", Body=b"")
        table = operations(server, bucket)
        for round_ in range(args.rounds):
            order = clients if round_ % 2 == 0 else clients[::-1]
            for operation, by_client in table.items():
                for client in order:
                    count = max(int(CALLS[operation] * args.scale), 2)
                    results.setdefault((operation, client), []).append(
                        measure(by_client[client], count)
                    )
    imports = {client: import_time(code) for client, code in IMPORTS.items()}

    print(f"obstore vs boto3 against moto ({args.rounds} rounds, median)\n")
    print("| operation | obstore wall | boto3 wall | obstore CPU | boto3 CPU |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for operation in table:
        row = [operation]
        walls = [statistics.median(w for w, _ in results[operation, c]) for c in clients]
        cpus = [statistics.median(u for _, u in results[operation, c]) for c in clients]
        row += [_ms(w) for w in walls] + [_ms(u) for u in cpus]
        print("| " + " | ".join(row) + " |")
    print(f"| import + one client | {_ms(imports['obstore'])} | {_ms(imports['boto3'])} | | |")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms" if seconds >= 0.001 else f"{seconds * 1e6:.0f} µs"


if __name__ == "__main__":
    main()
