"""`creamery run`'s options: where and how to serve, who may do what, connections, object storage.

`add_run_arguments` adds them in the order `run --help` shows them; the caching mirror's group is
mirror_options.py's, the `--prune-*` options prune.py's. Each group's checks that need more than
its converter run in main.py's `config_from_args`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from creamery.catalog.permissions import PermissionFile, PermissionFileError
from creamery.cli import prune as retention
from creamery.cli import settings
from creamery.cli.argtypes import (
    config_type,
    non_negative_int,
    optional_path,
    parse_size,
    port_number,
    positive_int,
    positive_seconds,
    readable,
    seconds,
)
from creamery.cli.mirror_options import add_mirror_arguments
from creamery.core.config import (
    ATTESTATION_POLICIES,
    LOCAL_FEED_SECONDS,
    LOCAL_RESCAN_SECONDS,
    OBJECT_FEED_SECONDS,
    OBJECT_RESCAN_SECONDS,
    UPLOAD_POLICIES,
    Config,
    ConfigError,
    parse_endpoint_url,
    parse_redirect_seconds,
)

_DEFAULTS = Config()


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    from creamery.server import SERVER_CHOICES, SERVERS  # start-up cost: only `run` needs it

    parser.add_argument(
        "package_directory",
        metavar="PACKAGES_DIRECTORY",
        nargs="*",
        help="directories or s3://BUCKET[/PREFIX] roots to serve, scanned recursively;"
        " uploads go to the first (default: ~/packages)",
    )
    parser.add_argument(
        "-p",
        "--port",
        type=port_number,
        default=_DEFAULTS.port,
        help="listen on PORT (default: 8080)",
    )
    parser.add_argument(
        "-i",
        "-H",
        "--interface",
        "--host",
        dest="host",
        default=_DEFAULTS.host,
        help="listen on HOST (default: 0.0.0.0, every interface)",
    )
    parser.add_argument(
        "-a",
        "--authenticate",
        metavar="ACTIONS",
        default=",".join(sorted(_DEFAULTS.authenticate)),
        help="comma list of update, download, list to protect; '.' for none (with -P .)",
    )
    parser.add_argument(
        "-P",
        "--passwords",
        dest="password_file",
        metavar="PASSWORD_FILE",
        help="htpasswd file; '.' for no authentication (with -a .)",
    )
    parser.add_argument(
        "--disable-fallback",
        action="store_true",
        help="answer 404 for unknown projects instead of redirecting to the fallback URL",
    )
    parser.add_argument(
        "--fallback-url",
        default=_DEFAULTS.fallback_url,
        help=f"where unknown projects redirect (default: {_DEFAULTS.fallback_url})",
    )
    parser.add_argument(
        "--health-endpoint",
        default=_DEFAULTS.health_endpoint,
        help="path answering 200 for health checks (default: /health)",
    )
    parser.add_argument(
        "--server",
        metavar="SERVER",
        type=str.lower,
        choices=SERVER_CHOICES,
        default=_DEFAULTS.server,
        help=f"HTTP server: {', '.join(SERVERS)} (default: auto, granian, else uvicorn)",
    )
    parser.add_argument(
        "-o", "--overwrite", action="store_true", help="allow uploads to replace existing files"
    )
    parser.add_argument(
        "--welcome", dest="welcome_file", metavar="HTML_FILE", help="template for the start page"
    )
    parser.add_argument(
        "--cache-control",
        metavar="AGE",
        type=non_negative_int,
        help="send Cache-Control: public, max-age=AGE with package files",
    )
    parser.add_argument(
        "--server-base-url",
        metavar="PATH",
        default=_DEFAULTS.server_base_url,
        help="serve under this path prefix, such as /pypi (default: /)",
    )
    parser.add_argument("--log-req-frmt", metavar="FORMAT", default=_DEFAULTS.log_req_frmt)
    parser.add_argument("--log-res-frmt", metavar="FORMAT", default=_DEFAULTS.log_res_frmt)
    parser.add_argument("--log-err-frmt", metavar="FORMAT", default=_DEFAULTS.log_err_frmt)
    parser.add_argument(
        "--workers",
        metavar="N",
        type=positive_int,
        default=_DEFAULTS.workers,
        help="server worker processes (default: 1)",
    )
    parser.add_argument("--cache-dir", metavar="DIR", help="where to cache hashes and metadata")
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        help="creamery's own data: yank state, provenance, upload facts, change feed, "
        "upload scratch (default: .creamery in the first package directory; with an s3:// "
        "root first, the state is in the bucket and this is the local upload scratch)",
    )
    parser.add_argument(
        "--rescan-interval",
        metavar="SECONDS",
        type=seconds,
        default=_DEFAULTS.rescan_interval,
        help=f"seconds between safety rescans of the roots, which find what other tools changed;"
        f" 0 disables (default: {LOCAL_RESCAN_SECONDS:g}, {OBJECT_RESCAN_SECONDS:g} with an"
        f" s3:// root)",
    )
    parser.add_argument(
        "--disable-watch",
        action="store_true",
        help="don't watch the directories for file-system events (rescans and checks only)",
    )
    parser.add_argument(
        "--metrics", action="store_true", help="expose Prometheus metrics at /metrics"
    )
    parser.add_argument(
        "--log-conf",
        metavar="FILE",
        help="logging configuration file (INI for fileConfig, or .json for dictConfig)",
    )
    _add_access_arguments(parser)
    add_mirror_arguments(parser)
    _add_object_storage_arguments(parser)
    parser.add_argument(
        "--max-upload-size",
        metavar="SIZE",
        type=parse_size,
        default=_DEFAULTS.max_upload_size,
        help="largest accepted upload, such as 500M or 2G (default: 1G)",
    )
    _add_connection_arguments(parser)
    retention.add_run_arguments(parser)
    parser.add_argument(
        "--upload-policy",
        type=str.lower,
        choices=UPLOAD_POLICIES,
        default=_DEFAULTS.upload_policy,
        help="which uploads are accepted: strict (PyPI's rules: wheels and .tar.gz/.zip sdists,"
        " PEP 440 versions) or pypiserver (whatever pypiserver 2.x accepts) (default: strict)",
    )
    parser.add_argument(
        "--attestations",
        type=str.lower,
        choices=ATTESTATION_POLICIES,
        default=_DEFAULTS.attestations,
        help="PEP 740 attestations sent with uploads: verify (refuse any that fail; needs"
        " creamery[attestations]), store (keep them unverified) or reject (refuse uploads"
        " that carry them) (default: verify)",
    )
    group = parser.add_argument_group(
        "configuration",
        f"Every option can also come from the environment, named after its long flag "
        f"({settings.ENV_PREFIX}PORT, {settings.ENV_PREFIX}HASH_ALGO, "
        f"{settings.ENV_PREFIX}PACKAGES_DIRECTORY...), or from a TOML file; precedence: flag > "
        f"environment > file > default. See docs/configuration.md.",
    )
    group.add_argument(
        "--config",
        dest="config_file",
        metavar="FILE",
        help=f"read options from this TOML file (or ${settings.CONFIG_FILE_ENV})",
    )
    group.add_argument(
        "--print-config",
        action="store_true",
        help="print the effective options and where each came from, then exit",
    )


def _add_access_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("who may do what (see docs/access.md)")
    group.add_argument(
        "--permissions",
        metavar="FILE",
        help="TOML file of groups and roles on project patterns, reloaded when it changes"
        " (default: pypiserver's rules, every user may do everything -a guards)",
    )
    group.add_argument(
        "--owners",
        metavar="MODE",
        help="first-uploader: the first user to upload a project owns it, others need an"
        " owner's grant (creamery owners add); default: none",
    )
    group.add_argument(
        "--trusted-proxy",
        dest="trusted_proxy",
        metavar="CIDR",
        action="append",
        default=[],
        help="a reverse proxy whose X-Forwarded-For names the client (repeatable); from any"
        " other peer the header is ignored",
    )


def _add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "connections and timeouts (see docs/security.md)",
    )
    group.add_argument(
        "--max-connections",
        metavar="N",
        type=positive_int,
        default=_DEFAULTS.max_connections,
        help=f"open connections served at once, over all workers; more wait in the listen queue "
        f"(default: {_DEFAULTS.max_connections})",
    )
    group.add_argument(
        "--header-timeout",
        metavar="SECONDS",
        type=positive_seconds,
        default=_DEFAULTS.header_timeout,
        help=f"close a connection that has not sent its request headers within this time "
        f"(default: {_DEFAULTS.header_timeout:g})",
    )
    group.add_argument(
        "--body-timeout",
        metavar="SECONDS",
        type=seconds,
        default=_DEFAULTS.body_timeout,
        help=f"answer 408 and close when a request body sends nothing for this long; 0 waits "
        f"forever (default: {_DEFAULTS.body_timeout:g})",
    )
    group.add_argument(
        "--max-client-requests",
        metavar="N",
        type=non_negative_int,
        default=_DEFAULTS.max_client_requests,
        help=f"requests one client address may have in progress per worker; more get 429; 0 "
        f"disables (default: {_DEFAULTS.max_client_requests})",
    )
    group.add_argument(
        "--reuse-port",
        action="store_true",
        help="start even if another process listens on the port, sharing its connections "
        "(SO_REUSEPORT; granian only)",
    )


def _add_object_storage_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "object storage (s3:// roots; credentials, region and endpoint also come from the "
        "standard AWS_* variables and files)"
    )
    group.add_argument(
        "--s3-endpoint-url",
        metavar="URL",
        type=config_type(parse_endpoint_url),
        help="the S3-compatible store to talk to, such as http://minio:9000 (default:"
        " $AWS_ENDPOINT_URL, else AWS S3)",
    )
    group.add_argument(
        "--s3-region", metavar="REGION", help="the bucket's region (default: $AWS_REGION)"
    )
    group.add_argument(
        "--s3-profile",
        metavar="NAME",
        help="the profile of the AWS config and credentials files (default: $AWS_PROFILE)",
    )
    group.add_argument(
        "--s3-redirect",
        metavar="SECONDS",
        nargs="?",
        const="true",
        type=config_type(parse_redirect_seconds),
        help="answer downloads with a 302 to a URL presigned for SECONDS (default 300), so "
        "bytes go from the store to the client, which must reach the store",
    )
    group.add_argument(
        "--s3-timeout",
        metavar="SECONDS",
        type=positive_seconds,
        default=_DEFAULTS.s3_timeout,
        help=f"give up on one request to the store after this long: downloads answer 503 "
        f"(default: {_DEFAULTS.s3_timeout:g})",
    )
    group.add_argument(
        "--feed-interval",
        metavar="SECONDS",
        type=positive_seconds,
        help=f"how often to look for other replicas' writes in the change feed (default: "
        f"{OBJECT_FEED_SECONDS:g} with an s3:// root first, {LOCAL_FEED_SECONDS:g} otherwise)",
    )
    group.add_argument(
        "--snapshot-interval",
        metavar="SECONDS",
        type=seconds,
        default=_DEFAULTS.snapshot_interval,
        help=f"how often a replica writes the index snapshot that lets others start without "
        f"listing the bucket; 0 never (default: {_DEFAULTS.snapshot_interval:g})",
    )


# ---------------------------------------------------------------- checks after parsing


def permission_file(text: str | None) -> Path | None:
    """A --permissions file that parses: a bad one is a one-line start-up error (exit 2),
    not a server that refuses everything."""
    path = readable(optional_path(text), "permission file")
    if path is not None:
        try:
            PermissionFile(path)
        except PermissionFileError as error:
            raise ConfigError(str(error)) from None
    return path
