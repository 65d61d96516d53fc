"""`creamery run`'s caching mirror options, its supply-chain policies among them, and their checks.

The flags are one argument group of `run` (docs/mirror.md); the checks run in main.py's
`config_from_args`, once every value is known, and raise ConfigError.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from creamery.catalog.audit import parse_duration
from creamery.cli.argtypes import (
    config_type,
    optional_path,
    parse_size,
    positive_seconds,
    seconds,
)
from creamery.core.config import Config, ConfigError, check_mirror_cache
from creamery.core.names import normalize
from creamery.core.objects import ObjectRoot
from creamery.core.operator_files import read_name_list
from creamery.mirror import policy, policy_lists
from creamery.mirror.policy import FALLBACK_CHOICES, UNKNOWN_CHOICES

_DEFAULTS = Config()


def add_mirror_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("caching mirror (instead of redirecting to --fallback-url)")
    group.add_argument(
        "--mirror",
        action="store_true",
        help="serve projects not hosted here from --fallback-url, caching pages and files",
    )
    group.add_argument(
        "--mirror-ttl",
        metavar="SECONDS",
        type=seconds,
        default=_DEFAULTS.mirror_ttl,
        help="how long a fetched project page stays fresh (default: 600)",
    )
    group.add_argument(
        "--mirror-cache",
        metavar="DIR",
        help="where mirrored files are kept (or s3://BUCKET/PREFIX)",
    )
    group.add_argument(
        "--mirror-max-size",
        metavar="SIZE",
        type=parse_size,
        help="evict least recently used mirrored files beyond this size, such as 20G",
    )
    group.add_argument(
        "--mirror-max-age",
        metavar="SECONDS",
        type=positive_seconds,
        help="evict mirrored files unused for this long (default: kept until --mirror-max-size)",
    )
    group.add_argument(
        "--mirror-merge",
        metavar="NAME",
        action="append",
        default=[],
        help="a local project whose upstream files may be merged in (repeatable; or @FILE)",
    )
    _add_policy_arguments(group)
    group.add_argument(
        "--mirror-pep708",
        action="store_true",
        help="add PEP 708's tracks/alternate-locations to mirrored pages (non-standard: the PEP"
        " was rejected)",
    )
    group.add_argument(
        "--extra-upstream",
        metavar="URL",
        action="append",
        default=[],
        help="another index to mirror, asked after --fallback-url (repeatable)",
    )
    group.add_argument(
        "--upstream-timeout",
        metavar="SECONDS",
        type=seconds,
        default=_DEFAULTS.upstream_timeout,
        help="give up on an upstream after this long and serve stale copies (default: 10)",
    )


def _add_policy_arguments(group: argparse._ArgumentGroup) -> None:
    """The mirror's supply-chain policies (docs/mirror.md, "Policies")."""
    group.add_argument(
        "--mirror-min-age",
        metavar="DURATION",
        type=config_type(parse_min_age),
        help="offer upstream files only once they are this old (PEP 700 upload-time), such as 7d",
    )
    group.add_argument(
        "--mirror-min-age-exempt",
        metavar="PATTERN",
        action="append",
        default=[],
        type=config_type(parse_policy_pattern),
        help="a project name or glob the minimum age does not apply to (repeatable)",
    )
    group.add_argument(
        "--mirror-min-age-unknown",
        choices=UNKNOWN_CHOICES,
        default=_DEFAULTS.mirror_min_age_unknown,
        help="files without an upload time (HTML upstreams): offer them or hide them"
        " (default: offer)",
    )
    group.add_argument(
        "--mirror-min-age-fallback",
        choices=FALLBACK_CHOICES,
        default=_DEFAULTS.mirror_min_age_fallback,
        help="when every file of a project is too new: offer its oldest release, or none"
        " (default: oldest)",
    )
    group.add_argument(
        "--mirror-allow",
        metavar="FILE",
        help="mirror only the upstream projects (and versions) this file lists; reloaded",
    )
    group.add_argument(
        "--mirror-deny",
        metavar="FILE",
        help="do not mirror the upstream projects (or versions) this file lists; reloaded",
    )
    group.add_argument(
        "--mirror-origin",
        metavar="PATTERN=MODE",
        action="append",
        default=[],
        type=config_type(parse_origin_rule),
        help="where a project's files come from: local-only, upstream-only or merged (repeatable)",
    )


def parse_min_age(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def parse_policy_pattern(text: str) -> str:
    try:
        return policy_lists.parse_pattern(text)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def parse_origin_rule(text: str) -> str:
    """`PATTERN=MODE`, checked and normalized."""
    try:
        pattern, mode = policy.parse_origin(text)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    return f"{pattern}={mode}"


# ---------------------------------------------------------------- checks after parsing


def parse_merge_list(items: list[str]) -> tuple[str, ...]:
    """`--mirror-merge NAME` or `--mirror-merge @FILE` (one name per line, # comments)."""
    names: list[str] = []
    for item in items:
        if item.startswith("@"):
            names += read_name_list(Path(item[1:]).expanduser(), "merge list file")
        else:
            names.append(item)
    return tuple(sorted({normalize(n) for n in names if n}))


def mirror_cache(text: str | None) -> Path | ObjectRoot | None:
    return None if text is None else check_mirror_cache(text)


def policy_file(text: str | None) -> Path | None:
    """An allow or deny list that parses: a bad line is a one-line start-up error."""
    path = optional_path(text)
    if path is not None:
        policy_lists.PatternFile(path)  # PolicyError is a ConfigError: "file:line: why"
    return path


POLICY_OPTIONS = ("mirror_min_age", "mirror_allow", "mirror_deny", "mirror_origin", "mirror_pep708")


def check_policies_apply(config: Config) -> None:
    """The mirror's policies without the mirror would be a silent hole: unknown projects are
    redirected to the fallback URL, where no policy applies."""
    given = [d for d in POLICY_OPTIONS if getattr(config, d)]
    if given and not config.mirror and not config.disable_fallback:
        flags = ", ".join("--" + d.replace("_", "-") for d in given)
        verb = "applies" if len(given) == 1 else "apply"
        raise ConfigError(
            f"{flags} {verb} to the caching mirror only: without --mirror, unknown projects are"
            " redirected to the fallback URL, unfiltered (add --mirror, or --disable-fallback)"
        )
