"""The `creamery` and `pypi-server` command line, compatible with pypiserver's flags.

Each subcommand is a `Subcommand`: a function adding its arguments and a handler taking the parsed
namespace and returning the exit status. Common flags (`-v`, log flags, `--hash-algo`, `--backend`)
are accepted before and after the subcommand (common_flags.py). This module assembles the parser
and turns `run`'s namespace into a Config; the options themselves are run_options.py's,
mirror_options.py's and update_options.py's, their converters argtypes.py's.
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

from creamery.cli import access, admin, settings
from creamery.cli import prune as retention
from creamery.cli.argtypes import optional_path, readable
from creamery.cli.common_flags import add_common_flags
from creamery.cli.mirror_cache import CACHE_COMMAND as MIRROR_CACHE
from creamery.cli.mirror_options import (
    POLICY_OPTIONS,
    check_policies_apply,
    mirror_cache,
    parse_merge_list,
    parse_origin_rule,
    parse_policy_pattern,
    policy_file,
)
from creamery.cli.run_options import add_run_arguments, permission_file
from creamery.cli.status import STATUS as PROJECT_STATUS
from creamery.cli.update_options import add_update_arguments
from creamery.core.config import (
    DEFAULT_ROOT,
    Config,
    ConfigError,
    check_auth,
    check_root_spec,
    check_state_dir,
    parse_auth_actions,
    parse_base_url,
    parse_hash_algo,
    parse_health_endpoint,
    parse_owners,
    parse_trusted_proxy,
)
from creamery.core.objects import ObjectRoot
from creamery.core.version import __version__

PROG = "creamery"
_T = TypeVar("_T")
_HELP_FLAGS = frozenset({"-h", "--help", "--version"})
_LEGACY_UPDATE_FLAG = re.compile(r"-U[a-zA-Z]*")  # `-U`, or a short cluster such as `-Ux`


class CliError(Exception):
    """A usage error, reported as one line and exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise CliError(message)


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
    Subcommand("run", "serve the package directories", add_run_arguments, _run),
    Subcommand("update", "list or download newer releases", add_update_arguments, _update),
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
    add_common_flags(parser, after_command=False)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in SUBCOMMANDS:
        sub = subparsers.add_parser(command.name, help=command.help, description=command.help)
        add_common_flags(sub, after_command=True)
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
        permissions=checked("permissions", permission_file),
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
