"""Object-storage roots: `s3://BUCKET[/PREFIX]` as the command line, the config file and the
environment name them, and the options every object store of a process shares.

Pure values: nothing here talks to a store (that is `storage/s3.py`, imported only when a root
is an object root, so a local-directory install never loads an S3 client).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

SCHEME = "s3://"
STATE_PREFIX = ".creamery"  # creamery's own state under an object root, hidden from scans
# S3's rules for bucket names (3-63 characters: lowercase letters, digits, dots, hyphens;
# starting and ending with a letter or digit). R2, MinIO, Ceph and Garage accept the same.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


class ObjectRoot(NamedTuple):
    """A package root in a bucket: the keys below *prefix* ("" for the whole bucket)."""

    bucket: str
    prefix: str = ""

    @property
    def url(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}" if self.prefix else f"{SCHEME}{self.bucket}"

    def key(self, relpath: str) -> str:
        """The object key of a relpath under this root."""
        return f"{self.prefix}/{relpath}" if self.prefix else relpath

    def state(self) -> ObjectRoot:
        """Where creamery keeps its own state for this root: `<prefix>/.creamery`."""
        return ObjectRoot(self.bucket, self.key(STATE_PREFIX))

    def below(self, relpath: str) -> ObjectRoot:
        """Another root inside this one (the mirror's cache under the state, say)."""
        return ObjectRoot(self.bucket, self.key(relpath.strip("/")))

    def __str__(self) -> str:
        return self.url


def is_object_url(text: object) -> bool:
    return isinstance(text, str) and text.lower().startswith(SCHEME)


def parse_object_root(text: str) -> ObjectRoot:
    """`s3://bucket`, `s3://bucket/`, `s3://bucket/some/prefix/`; ValueError saying what is
    wrong otherwise (the CLI turns it into a one-line error)."""
    if not is_object_url(text):
        raise ValueError(f"{text!r} is not an s3:// URL")
    rest = text[len(SCHEME) :]
    bucket, _, prefix = rest.partition("/")
    prefix = prefix.strip("/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ValueError(
            f"{text!r}: {bucket!r} is not a valid bucket name"
            " (3-63 lowercase letters, digits, dots or hyphens)"
        )
    segments = prefix.split("/") if prefix else []
    if any(s in ("", ".", "..") or s.startswith(".") for s in segments) or "\\" in prefix:
        raise ValueError(f"{text!r}: the prefix may not have empty, '.', '..' or hidden parts")
    return ObjectRoot(bucket, prefix)


@dataclass(frozen=True)
class S3Options:
    """What every object root of a process shares. None: the standard AWS sources decide
    (`AWS_ENDPOINT_URL`, `AWS_REGION`/`AWS_DEFAULT_REGION`, `AWS_PROFILE` and the shared
    config and credentials files)."""

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    # Downloads: None streams the bytes through creamery; N answers 302 to a URL presigned
    # for N seconds, so bytes go straight from the store to the client.
    redirect_seconds: int | None = None
    timeout: float = 10.0  # seconds for one request to the store (connect and each read)
