"""The `creamery` and `pypi-server` command line, compatible with pypiserver's flags.

Each subcommand is a `Subcommand`: a function adding its arguments and a handler taking the parsed
namespace and returning the exit status. Common flags (`-v`, log flags, `--hash-algo`, `--backend`)
are accepted before and after the subcommand.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from creamery.catalog.permissions import PermissionFile, PermissionFileError
from creamery.cli import access, admin, settings
from creamery.cli import prune as retention
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
from creamery.cli.mirror_cache import CACHE_COMMAND as MIRROR_CACHE
from creamery.cli.mirror_options import (
    POLICY_OPTIONS,
    add_mirror_arguments,
    check_policies_apply,
    mirror_cache,
    parse_merge_list,
    parse_origin_rule,
    parse_policy_pattern,
    policy_file,
)
from creamery.cli.status import STATUS as PROJECT_STATUS
from creamery.core.config import (
    ATTESTATION_POLICIES,
    DEFAULT_FALLBACK_URL,
    DEFAULT_ROOT,
    LOCAL_FEED_SECONDS,
    LOCAL_RESCAN_SECONDS,
    OBJECT_FEED_SECONDS,
    OBJECT_RESCAN_SECONDS,
    UPLOAD_POLICIES,
    Config,
    ConfigError,
    check_auth,
    check_root_spec,
    check_state_dir,
    parse_auth_actions,
    parse_base_url,
    parse_endpoint_url,
    parse_hash_algo,
    parse_health_endpoint,
    parse_owners,
    parse_redirect_seconds,
    parse_trusted_proxy,
)
from creamery.core.objects import ObjectRoot
from creamery.core.version import __version__

PROG = "creamery"
_DEFAULTS = Config()
_T = TypeVar("_T")
_HELP_FLAGS = frozenset({"-h", "--help", "--version"})
_LEGACY_UPDATE_FLAG = re.compile(r"-U[a-zA-Z]*")  # `-U`, or a short cluster such as `-Ux`


class CliError(Exception):
    """A usage error, reported as one line and exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise CliError(message)


# ---------------------------------------------------------------- flags


def _add_common_flags(parser: argparse.ArgumentParser, *, after_command: bool) -> None:
    """Flags valid on both sides of the subcommand.

    After the subcommand they default to SUPPRESS, so they never overwrite a value given before it
    (pypiserver's bug); `-v` counts separately there and the two counts are added.
    """

    def default(value: object) -> object:
        return argparse.SUPPRESS if after_command else value

    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        dest="verbosity_after" if after_command else "verbosity",
        default=default(0),
        help="log INFO; repeat for DEBUG (-vv) and everything (-vvv)",
    )
    parser.add_argument(
        "--log-file", metavar="FILE", default=default(None), help="also log to FILE"
    )
    parser.add_argument(
        "--log-stream",
        type=str.lower,
        choices=("stdout", "stderr", "none"),
        default=default(_DEFAULTS.log_stream),
        help=f"where to log (default: {_DEFAULTS.log_stream})",
    )
    parser.add_argument(
        "--log-frmt",
        metavar="FORMAT",
        default=default(_DEFAULTS.log_frmt),
        help="logging format string for every handler",
    )
    parser.add_argument(
        "--hash-algo",
        metavar="ALGO",
        default=default(_DEFAULTS.hash_algo),
        help="hashlib algorithm for link fragments; 0/no/off/false disables (default: sha256)",
    )
    parser.add_argument(
        "--backend",
        type=str.lower,
        choices=("auto", "simple-dir", "cached-dir"),
        default=default(_DEFAULTS.backend),
        help="accepted for pypiserver compatibility; creamery has one storage backend",
    )


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
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


def _add_update_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "package_directory",
        metavar="PACKAGES_DIRECTORY",
        nargs="*",
        help="directories or s3:// roots whose projects to check, scanned recursively (default:"
        " ~/packages)",
    )
    parser.add_argument(
        "-x",
        "--execute",
        action="store_true",
        help="download the newer wheels and sdists (sha256-verified) instead of only printing "
        "pip commands",
    )
    parser.add_argument(
        "-d",
        "--download-directory",
        metavar="DIR",
        help="where new files go (default: the directory of the project's latest file)",
    )
    parser.add_argument(
        "-u",
        "--allow-unstable",
        action="store_true",
        help="also consider pre-releases (alpha, beta, rc, dev)",
    )
    parser.add_argument(
        "--blacklist-file",
        "--ignorelist-file",
        dest="ignorelist_file",
        metavar="FILE",
        help="projects to skip: one name per line, # comments, any spelling of the name",
    )
    parser.add_argument(
        "--index-url",
        metavar="URL",
        default=DEFAULT_FALLBACK_URL,
        help=f"simple index to compare with; must speak PEP 691 JSON (default: "
        f"{DEFAULT_FALLBACK_URL})",
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=seconds,
        default=30.0,
        help="give up on a request after this long; 0 waits forever (default: 30)",
    )
    parser.add_argument(
        "--concurrency",
        metavar="N",
        type=positive_int,
        default=8,
        help="requests in flight at once (default: 8)",
    )
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        help=f"the server's --state-dir, where -x spools and records downloads (default:"
        f" ${admin.STATE_DIR_ENV}, else .creamery in the first package directory)",
    )
    admin.add_s3_arguments(parser)


# ---------------------------------------------------------------- subcommands


def _run(args: argparse.Namespace) -> int:
    # Start-up cost: the other commands never load the server, the app or logging.config.
    from creamery.http.logs import setup_logging
    from creamery.server import serve

    config = config_from_args(args)
    if args.print_config:
        roots = {"package_directory": [str(root) for root in config.roots]}
        print(settings.render(run_options(), args, args.sources, roots), end="")
        return 0
    setup_logging(config)
    serve(config)
    return 0


def _update(args: argparse.Namespace) -> int:
    try:
        from creamery.cli.update import run_update  # start-up cost: httpx and rich
    except ModuleNotFoundError as error:
        if error.name != "creamery.cli.update":
            raise
        raise CliError("creamery update is not available yet") from error
    status: int | None = run_update(args)
    return status or 0


@dataclass(frozen=True)
class Subcommand:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[argparse.Namespace], int]


SUBCOMMANDS = (
    Subcommand("run", "serve the package directories", _add_run_arguments, _run),
    Subcommand("update", "list or download newer releases", _add_update_arguments, _update),
    Subcommand("passwd", "add or update a user in an htpasswd file", *admin.PASSWD),
    Subcommand("yank", "yank a release or file (PEP 592)", *admin.YANK),
    Subcommand("unyank", "un-yank a release or file", *admin.UNYANK),
    Subcommand("remove", "remove a release (or a whole project)", *admin.REMOVE),
    Subcommand("docs", "remove hosted documentation", *admin.DOCS),
    Subcommand("status", "show or set a project's status (PEP 792)", *PROJECT_STATUS),
    Subcommand("prune", "remove old releases by retention rules", *retention.PRUNE),
    Subcommand("token", "create, list or revoke API tokens", *access.TOKEN),
    Subcommand("owners", "grant or take away roles on a project (ownership)", *access.OWNERS),
    Subcommand("audit", "read the audit log", *access.AUDIT),
    Subcommand("mirror-cache", "show or clear the caching mirror's cache", *MIRROR_CACHE),
)


# ---------------------------------------------------------------- parsing


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="A fast, self-hosted Python package index.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    _add_common_flags(parser, after_command=False)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in SUBCOMMANDS:
        sub = subparsers.add_parser(command.name, help=command.help, description=command.help)
        _add_common_flags(sub, after_command=True)
        command.add_arguments(sub)
        sub.set_defaults(handler=command.handler)
    return parser


def parse_args(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> argparse.Namespace:
    """Parse, accepting pypiserver's legacy form (no subcommand, `-U` for update).

    For `run`, what no flag gives comes from *environ* (default: `os.environ`) or the --config
    file (settings.py), and `args.sources` says where each option's value came from.
    """
    argv = list(argv)
    names = {command.name for command in SUBCOMMANDS}
    legacy = not names.intersection(argv) and not _HELP_FLAGS.intersection(argv)
    if legacy:
        argv = _legacy_argv(argv)
    args = _parse(make_parser(), argv)
    args.verbosity += vars(args).pop("verbosity_after", 0)
    if args.command == "run":
        # Parsed again without defaults, the namespace holds only what the flags gave.
        given = _parse(_without_defaults(make_parser()), argv)
        explicit = {dest for dest, value in vars(given).items() if value != []}
        if "verbosity_after" in explicit:
            explicit.add("verbosity")
        environ = os.environ if environ is None else environ
        args.sources = settings.apply(run_options(), args, explicit, environ)
    if legacy:  # like pypiserver, only once the arguments are known to be good
        print(
            f"{PROG}: warning: running without a command is deprecated,"
            f" use '{PROG} {args.command} ...'",
            file=sys.stderr,
        )
    return args


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    args, extra = parser.parse_known_args(argv)
    if extra:
        # Directories after options (`yank P V --reason R DIR`): argparse takes positionals
        # in one go, so collect the stragglers here.
        if any(e.startswith("-") for e in extra) or not hasattr(args, "package_directory"):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.package_directory = [*(getattr(args, "package_directory", None) or []), *extra]
    return args


def _without_defaults(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    for action in parser._actions:
        action.default = argparse.SUPPRESS
        if isinstance(action, argparse._SubParsersAction):
            for sub in action._name_parser_map.values():
                _without_defaults(sub)
    return parser


def run_options() -> list[settings.Option]:
    """The `run` options that the environment and a --config file may set."""
    parser = make_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return settings.options_of(action._name_parser_map["run"])
    raise AssertionError("no run command")


def _legacy_argv(argv: list[str]) -> list[str]:
    """pypiserver 1.x: `pypi-server [-U] [OPTIONS] [DIR...]` becomes `run`/`update ...`."""
    rest: list[str] = []
    command = "run"
    for token in argv:
        if _LEGACY_UPDATE_FLAG.fullmatch(token):
            command = "update"
            token = "-" + token[2:]
            if token == "-":
                continue
        rest.append(token)
    return [command, *rest]


def config_from_args(args: argparse.Namespace) -> Config:
    """The `run` namespace as a checked Config; ConfigError names the first bad value.

    A value from the environment or a --config file is named with its source.
    """
    sources: dict[str, settings.Source] = getattr(args, "sources", {})

    def checked(dest: str, convert: Callable[[Any], _T]) -> _T:
        with settings.blame(sources, dest):
            return convert(getattr(args, dest))

    def directories(given: Sequence[str | Path] | None) -> tuple[Path | ObjectRoot, ...]:
        return tuple(check_root_spec(directory) for directory in given or (DEFAULT_ROOT,))

    config = Config(
        host=args.host,
        port=args.port,
        authenticate=checked("authenticate", parse_auth_actions),
        password_file=optional_path(args.password_file),
        disable_fallback=args.disable_fallback,
        fallback_url=args.fallback_url,
        health_endpoint=checked("health_endpoint", parse_health_endpoint),
        server=args.server,
        overwrite=args.overwrite,
        hash_algo=checked("hash_algo", parse_hash_algo),
        cache_control=args.cache_control,
        server_base_url=checked("server_base_url", parse_base_url),
        backend=args.backend,
        verbosity=args.verbosity,
        log_file=optional_path(args.log_file),
        log_stream=args.log_stream,
        log_frmt=args.log_frmt,
        log_req_frmt=args.log_req_frmt,
        log_res_frmt=args.log_res_frmt,
        log_err_frmt=args.log_err_frmt,
        workers=args.workers,
        cache_dir=optional_path(args.cache_dir),
        state_dir=optional_path(args.state_dir),
        rescan_interval=args.rescan_interval,
        s3_endpoint_url=args.s3_endpoint_url,
        s3_region=args.s3_region or None,
        s3_profile=args.s3_profile or None,
        s3_redirect=args.s3_redirect,
        s3_timeout=args.s3_timeout,
        feed_interval=args.feed_interval,
        snapshot_interval=args.snapshot_interval,
        watch=not args.disable_watch,
        max_upload_size=args.max_upload_size,
        upload_policy=args.upload_policy,
        attestations=args.attestations,
        metrics=args.metrics,
        log_conf=checked("log_conf", lambda v: readable(optional_path(v), "logging configuration")),
        mirror=args.mirror,
        mirror_ttl=args.mirror_ttl,
        mirror_cache=checked("mirror_cache", mirror_cache),
        mirror_max_size=args.mirror_max_size,
        mirror_max_age=args.mirror_max_age,
        mirror_merge=checked("mirror_merge", parse_merge_list),
        mirror_min_age=args.mirror_min_age,
        mirror_min_age_exempt=checked(
            "mirror_min_age_exempt", lambda v: tuple(parse_policy_pattern(p) for p in v)
        ),
        mirror_min_age_unknown=args.mirror_min_age_unknown,
        mirror_min_age_fallback=args.mirror_min_age_fallback,
        mirror_allow=checked("mirror_allow", policy_file),
        mirror_deny=checked("mirror_deny", policy_file),
        mirror_origin=checked("mirror_origin", lambda v: tuple(parse_origin_rule(r) for r in v)),
        mirror_pep708=args.mirror_pep708,
        extra_upstreams=tuple(args.extra_upstream),
        upstream_timeout=args.upstream_timeout,
        max_connections=args.max_connections,
        header_timeout=args.header_timeout,
        body_timeout=args.body_timeout,
        max_client_requests=args.max_client_requests,
        reuse_port=args.reuse_port,
        owners=checked("owners", parse_owners),
        trusted_proxies=tuple(
            checked("trusted_proxy", lambda v: [parse_trusted_proxy(c) for c in v])
        ),
        permissions=checked("permissions", _permission_file),
        prune_every=args.prune_every,
        prune_keep=args.prune_keep,
        prune_prereleases_older_than=args.prune_prereleases_older_than,
        prune_rules=optional_path(args.prune_rules),
        # File-system checks last: a mistyped flag is reported before a missing directory.
        roots=checked("package_directory", directories),
        welcome_file=checked("welcome_file", lambda v: readable(optional_path(v), "welcome file")),
    )
    if config.state_dir is not None:
        with settings.blame(sources, "state_dir"):
            config = config.with_updates(state_dir=check_state_dir(config.state_dir, config.roots))
    with settings.blame(sources, "prune_every", "prune_rules"):
        config = retention.check_run_rules(config)
    with settings.blame(sources, "authenticate", "password_file"):
        config = check_auth(config)
    with settings.blame(sources, "password_file"):
        readable(config.password_file, "password file")
    if config.mirror:
        from creamery.mirror.client import Upstream  # start-up cost: httpx, with --mirror only

        with settings.blame(sources, "fallback_url", "extra_upstream"):
            for url in (config.fallback_url, *config.extra_upstreams):
                Upstream.parse(url)
    with settings.blame(sources, *POLICY_OPTIONS):
        check_policies_apply(config)
    return config


def _permission_file(text: str | None) -> Path | None:
    """A --permissions file that parses: a bad one is a one-line start-up error (exit 2),
    not a server that refuses everything."""
    path = readable(optional_path(text), "permission file")
    if path is not None:
        try:
            PermissionFile(path)
        except PermissionFileError as error:
            raise ConfigError(str(error)) from None
    return path


def build_run_config(argv: Sequence[str]) -> Config:
    """The Config that `creamery ARGV` would serve, without serving it."""
    args = parse_args(argv)
    if args.command != "run":
        raise CliError(f"not a run command: {args.command}")
    return config_from_args(args)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        status: int = args.handler(args)
    except (CliError, ConfigError) as error:
        print(f"{PROG}: error: {' '.join(str(error).splitlines())}", file=sys.stderr)
        return 2
    except SystemExit as done:  # --help, --version, or a server exiting on its own
        return _exit_status(done)
    except KeyboardInterrupt:
        return 130
    return status


def _exit_status(done: SystemExit) -> int:
    if done.code is None or isinstance(done.code, int):
        return done.code or 0
    print(done.code, file=sys.stderr)
    return 1
