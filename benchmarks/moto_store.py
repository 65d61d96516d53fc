#!/usr/bin/env python3
"""An S3-compatible store for the object-storage benchmark: moto's server, preloaded.

    python benchmarks/moto_store.py --port 9000 --bucket bench --prefix idx --dir PACKAGES

Loading 40,000 objects through the S3 API of moto takes minutes (one HTTP request, one
signature check and one temporary file each); written straight into moto's in-process backend
before the server starts listening, they take a few seconds. What creamery then sees is the
same: objects with their ETags and sizes, listed and fetched through the S3 HTTP protocol, with
`If-None-Match: *` honoured on puts. The data lives as long as the process.

As a module: `MotoStore` starts this script as a child process and gives the AWS variables
and a boto3 client for it (boto3 only here: the clients under test speak HTTP themselves).
"""

from __future__ import annotations

import argparse
import http.client
import os
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ACCESS_KEY = "creamery-bench"
SECRET_KEY = "creamery-bench-secret"
REGION = "us-east-1"


def preload(bucket: str, prefix: str, directory: Path, skip: set[str]) -> int:
    """Create *bucket* in moto's backend and put every file of *directory* under *prefix*."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    backend.create_bucket(bucket, REGION)
    count = 0
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        if not entry.is_file() or entry.name in skip or entry.name.startswith("."):
            continue
        key = f"{prefix}/{entry.name}" if prefix else entry.name
        with open(entry.path, "rb") as fh:
            backend.put_object(bucket, key, fh.read())
        count += 1
    return count


def install_indexed_listing() -> None:
    """ListObjectsV2 from a sorted index of the key names, as a real store answers it.

    moto's own listing scans, filters and sorts every key of the bucket for every page (and
    walks the sorted list to the continuation token): 0.5-2 s per page of 1,000 at 40,000 keys,
    and as much for each one-second poll of a small prefix (the change feed). No real store
    behaves so (AWS, MinIO and Ceph answer a page from an index), and its CPU would be taken
    from the servers under test. Only the listing is replaced; puts, gets, conditional writes
    and deletes are moto's. `--plain-listing` keeps moto's.
    """
    import bisect
    import hashlib

    from moto.s3 import models, responses, utils

    store = utils._VersionedKeyStore

    def bump(method):
        def wrapper(self, *args, **kwargs):
            self.__dict__["_generation"] = self.__dict__.get("_generation", 0) + 1
            return method(self, *args, **kwargs)

        return wrapper

    for name in ("__setitem__", "pop", "setlist"):
        setattr(store, name, bump(getattr(store, name)))

    def names(keys) -> list[str]:
        state = keys.__dict__
        generation = state.get("_generation", 0)
        if state.get("_sorted_at") != generation:
            state["_sorted"] = sorted(dict.keys(keys))
            state["_sorted_at"] = generation
        return state["_sorted"]

    def list_objects_v2(self, bucket, prefix, delimiter, continuation_token, start_after, max_keys):
        if isinstance(bucket, models.FakeTableStorageBucket):
            raise models.MethodNotAllowed()
        prefix = prefix or ""
        ordered = names(bucket.keys)
        after = self._pagination_tokens.get(continuation_token) if continuation_token else None
        after = after or start_after
        i = bisect.bisect_left(ordered, prefix)
        if after:
            i = max(i, bisect.bisect_right(ordered, after))
        out: list = []
        truncated = False
        while i < len(ordered) and ordered[i].startswith(prefix):
            if len(out) >= max_keys:
                truncated = True
                break
            name = ordered[i]
            rest = name[len(prefix) :]
            if delimiter and delimiter in rest:
                folder = prefix + rest.split(delimiter, 1)[0] + delimiter
                if folder != after:
                    out.append(folder)
                i = bisect.bisect_left(ordered, folder + "\U0010ffff")
                continue
            key = bucket.keys.get(name)
            if key is not None and not isinstance(key, models.FakeDeleteMarker):
                out.append(key)
            i += 1
        token = None
        if truncated and out:
            last = out[-1] if isinstance(out[-1], str) else out[-1].name
            token = hashlib.md5(last.encode()).hexdigest()
            self._pagination_tokens[token] = last
        return out, truncated, token

    models.S3Backend.list_objects_v2 = list_objects_v2
    responses.S3Response.list_objects_v2 = list_response


def list_response(self):
    """ListObjectsV2's XML written directly: moto's generic serializer takes ~1 s per page of
    1,000 keys. Same elements as moto's answer (and AWS's), in the same order."""
    from xml.sax.saxutils import escape

    from moto import settings

    bucket = self.backend.get_bucket(self.bucket_name)
    query = self.querystring
    token = query.get("continuation-token", [None])[0]
    prefix = self._get_querystring(self.request, self.uri).get("prefix", [None])[0]
    if isinstance(prefix, bytes):
        prefix = prefix.decode("utf-8")
    delimiter = query.get("delimiter", [None])[0]
    max_keys = int(query.get("max-keys", [settings.get_s3_default_max_keys()])[0])
    start_after = query.get("start-after", [None])[0]
    encoding = query.get("encoding-type", [None])[0]
    found, truncated, next_token = self.backend.list_objects_v2(
        bucket=bucket,
        prefix=prefix,
        delimiter=delimiter,
        continuation_token=token,
        start_after=start_after,
        max_keys=max_keys,
    )
    keys, folders = self._split_truncated_keys(found)
    if encoding == "url":
        prefix = urllib.parse.quote(prefix) if prefix else ""
        folders = [urllib.parse.quote(folder) for folder in folders]
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">',
        f"<Name>{escape(bucket.name)}</Name><Prefix>{escape(prefix or '')}</Prefix>",
        f"<MaxKeys>{max_keys}</MaxKeys><KeyCount>{len(keys) + len(folders)}</KeyCount>",
        f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>",
    ]
    for key in keys:
        out.append(
            f"<Contents><Key>{escape(key.safe_name(encoding))}</Key>"
            f"<LastModified>{key.last_modified_ISO8601}</LastModified>"
            f"<ETag>{escape(key.etag)}</ETag><Size>{key.size}</Size>"
            f"<StorageClass>{escape(key.storage_class)}</StorageClass></Contents>"
        )
    if delimiter:
        out.append(f"<Delimiter>{escape(delimiter)}</Delimiter>")
        out += [f"<CommonPrefixes><Prefix>{escape(f)}</Prefix></CommonPrefixes>" for f in folders]
    if encoding:
        out.append(f"<EncodingType>{escape(encoding)}</EncodingType>")
    if next_token:
        out.append(f"<NextContinuationToken>{next_token}</NextContinuationToken>")
    if not token and start_after:
        out.append(f"<StartAfter>{escape(start_after)}</StartAfter>")
    out.append("</ListBucketResult>")
    return 200, {"Content-Type": "application/xml"}, "".join(out)


def serve(port: int) -> None:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        while True:
            time.sleep(3600)
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--bucket", required=True)
    p.add_argument("--prefix", default="")
    p.add_argument("--dir", type=Path, help="files to put into the bucket before serving")
    p.add_argument("--skip", action="append", default=[], help="a file name to leave out")
    p.add_argument("--plain-listing", action="store_true", help="moto's own (slow) listing")
    args = p.parse_args(argv)
    if not args.plain_listing:
        install_indexed_listing()
    # moto picks its backend by partition; the "aws" one serves region us-east-1.
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    t0 = time.monotonic()
    count = (
        preload(args.bucket, args.prefix.strip("/"), args.dir, set(args.skip)) if args.dir else 0
    )
    print(f"preloaded {count} objects in {time.monotonic() - t0:.1f} s", flush=True)
    serve(args.port)
    return 0


# ---------------------------------------------------------------- the parent's side


@dataclass
class MotoStore:
    """A running moto_store.py child; `env()` points creamery (or any SDK) at it."""

    port: int
    bucket: str
    prefix: str
    proc: subprocess.Popen

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
            config=Config(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=60),
        )

    def keys(self, below: str) -> list[str]:
        """Every key under `<prefix>/<below>`."""
        start = f"{self.prefix}/{below}" if self.prefix else below
        pages = self.client().get_paginator("list_objects_v2")
        found: list[str] = []
        for page in pages.paginate(Bucket=self.bucket, Prefix=start):
            found += [item["Key"] for item in page.get("Contents", [])]
        return found

    def delete(self, keys: list[str]) -> None:
        client = self.client()
        for i in range(0, len(keys), 1000):
            chunk = [{"Key": k} for k in keys[i : i + 1000]]
            client.delete_objects(Bucket=self.bucket, Delete={"Objects": chunk, "Quiet": True})


def start_store(
    spawn, port: int, bucket: str, prefix: str, directory: Path, skip: list[str], log: Path
) -> MotoStore:
    """Start moto_store.py through *spawn* (procs.spawn) and wait until it answers."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--port", str(port)]
    cmd += ["--bucket", bucket, "--prefix", prefix, "--dir", str(directory)]
    for name in skip:
        cmd += ["--skip", name]
    proc = spawn(cmd, log=log)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto store exited with {proc.returncode}; see {log}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/moto-api/")
            conn.getresponse().read()
            conn.close()
            return MotoStore(port, bucket, prefix, proc)
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("moto store did not start within 600 s")


if __name__ == "__main__":
    raise SystemExit(main())
