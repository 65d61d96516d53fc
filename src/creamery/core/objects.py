"""Object-storage roots: `s3://BUCKET[/PREFIX]` as the command line, the config file and the
environment name them, and the options every object store of a process shares.

Pure values: nothing here talks to a store (that is `storage/s3.py`, imported only when a root
is an object root, so a local-directory install never loads an S3 client).
"""

from __future__ import annotations

import configparser
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class S3Settings:
    """Where and as whom to reach the store, once every source has had its say. None: nobody
    said (the client's own defaults then apply: AWS's endpoint for the region, us-east-1,
    and the credential chain of the platform: instance metadata, web identity, ECS)."""

    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)  # never in a log line
    session_token: str | None = field(default=None, repr=False)
    profile: str | None = None

    @property
    def path_style(self) -> bool:
        """A custom endpoint (MinIO, Ceph, Garage, moto) is addressed `endpoint/bucket/key`;
        AWS itself by virtual host (`bucket.s3.region.amazonaws.com`)."""
        return self.endpoint_url is not None

    @property
    def allow_http(self) -> bool:
        return (self.endpoint_url or "").lower().startswith("http://")


def resolve_s3_settings(options: S3Options, environ: Mapping[str, str]) -> S3Settings:
    """The settings the AWS tools would use, in their order: creamery's own options first,
    then the standard variables, then the profile's sections of the shared files
    (`~/.aws/credentials`, `~/.aws/config`, or AWS_SHARED_CREDENTIALS_FILE / AWS_CONFIG_FILE).

    An explicit profile (the option) wins over keys in the environment, as `aws --profile`
    does; AWS_PROFILE does not (the variables' keys win over it, as in the AWS SDKs). Reads
    only the files (no network): a pure function of *options*, *environ* and those files.
    """
    profile = options.profile or environ.get("AWS_PROFILE") or None
    name = profile or "default"
    home = environ.get("HOME") or os.path.expanduser("~")
    credentials = _section(
        environ.get("AWS_SHARED_CREDENTIALS_FILE") or os.path.join(home, ".aws", "credentials"),
        name,
    )
    config = _section(
        environ.get("AWS_CONFIG_FILE") or os.path.join(home, ".aws", "config"),
        name if name == "default" else f"profile {name}",
    )
    # `s3 =` is a nested block of the config file: `[profile x]\ns3 =\n  endpoint_url = ...`
    nested = _nested(config.get("s3", ""))
    endpoint = (
        options.endpoint_url
        or environ.get("AWS_ENDPOINT_URL_S3")
        or environ.get("AWS_ENDPOINT_URL")
        or nested.get("endpoint_url")
        or config.get("endpoint_url")
    )
    region = (
        options.region
        or environ.get("AWS_REGION")
        or environ.get("AWS_DEFAULT_REGION")
        or config.get("region")
    )
    files = {**config, **credentials}  # keys may sit in either file; credentials wins
    from_files = (files.get("aws_access_key_id"), files.get("aws_secret_access_key"))
    from_env = (environ.get("AWS_ACCESS_KEY_ID"), environ.get("AWS_SECRET_ACCESS_KEY"))
    token: str | None
    if options.profile and all(from_files):
        (key, secret), token = from_files, files.get("aws_session_token")
    elif all(from_env):
        (key, secret), token = from_env, environ.get("AWS_SESSION_TOKEN")
    elif all(from_files):
        (key, secret), token = from_files, files.get("aws_session_token")
    else:
        key = secret = token = None
    return S3Settings(
        endpoint_url=(endpoint or None) and endpoint.rstrip("/"),
        region=region or None,
        access_key_id=key or None,
        secret_access_key=secret or None,
        session_token=token or None,
        profile=profile,
    )


def _section(path: str, name: str) -> dict[str, str]:
    """One section of an INI file of the AWS tools, or {} (no file, no section, unreadable)."""
    parser = configparser.ConfigParser(interpolation=None, default_section="\0none")
    try:
        parser.read(path, encoding="utf-8")
    except (OSError, configparser.Error, UnicodeDecodeError):
        return {}
    if not parser.has_section(name):
        return {}
    return {key.lower(): value.strip() for key, value in parser.items(name)}


def _nested(block: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in block.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            found[key.strip().lower()] = value.strip()
    return found
