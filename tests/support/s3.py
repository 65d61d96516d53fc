"""A real S3-compatible server for the tests: moto's server mode on 127.0.0.1, and boto3 as the
independent client that checks what lands in a bucket.

moto speaks the S3 HTTP protocol (signatures, ranged GETs, `If-None-Match: *` conditional
writes, multipart uploads), so creamery talks to it exactly as to AWS S3 or MinIO; it runs with
its conditional writes made atomic, as S3 makes them (`moto_server.py`). The server
can be stopped and started again on the same port (with its data kept) to play a store outage.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.servers import free_port

ACCESS_KEY = "creamery-test"
SECRET_KEY = "creamery-test-secret"
REGION = "us-east-1"
START_TIMEOUT = 30.0
MOTO_SERVER = Path(__file__).with_name("moto_server.py")  # moto, its conditional writes atomic


@dataclass
class S3Server:
    """A moto server process; `stop()` and `start()` play an outage (the data survives only
    while the process lives, so an outage keeps the process and pauses it: SIGSTOP/SIGCONT)."""

    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    paused: bool = False
    buckets: list[str] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, **extra: str) -> dict[str, str]:
        """The standard AWS variables that point a creamery process (or any SDK) here."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            **extra,
        }

    def launch(self) -> None:
        log = open(self.workdir / f"moto-{self.port}.log", "ab")  # noqa: SIM115 (kept open by the child)
        self.process = subprocess.Popen(
            [sys.executable, str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"moto server exited with {self.process.returncode}", pytrace=False)
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(self.endpoint + "/moto-api/", timeout=1.0)
                return
            time.sleep(0.1)
        pytest.fail("moto server did not start", pytrace=False)

    def stop(self) -> None:
        """The store goes away: its process stops answering (connections hang, then time out)."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGSTOP)
        self.paused = True

    def start(self) -> None:
        """The store comes back, with everything it held."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGCONT)
        self.paused = False

    def shutdown(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            if self.paused:
                os.killpg(self.process.pid, signal.SIGCONT)
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    # ------------------------------------------------------------------ the independent client

    def client(self) -> Any:
        """A boto3 S3 client: checks what creamery wrote, and plays other tools (`aws s3 cp`)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
            config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=10),
        )

    def new_bucket(self, prefix: str = "creamery") -> str:
        """A fresh, empty bucket with a unique name."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        self.buckets.append(name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key in *bucket* under *prefix*, sorted (creamery's own state included)."""
        paginator = self.client().get_paginator("list_objects_v2")
        found: list[str] = []
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            found += [item["Key"] for item in page.get("Contents", [])]
        return sorted(found)

    def get(self, bucket: str, key: str) -> bytes:
        body: bytes = self.client().get_object(Bucket=bucket, Key=key)["Body"].read()
        return body

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self.client().put_object(Bucket=bucket, Key=key, Body=data)

    def delete(self, bucket: str, key: str) -> None:
        self.client().delete_object(Bucket=bucket, Key=key)


@contextlib.contextmanager
def s3_server() -> Iterator[S3Server]:
    """A moto server on a free port of 127.0.0.1 until the block ends."""
    workdir = Path(tempfile.mkdtemp(prefix="creamery-moto-"))
    server = S3Server(free_port(), workdir)
    try:
        server.launch()
        yield server
    finally:
        server.shutdown()
