"""`creamery prune`: retention for hosted projects, run by hand over a root (a directory or
`s3://`), through the catalog like `creamery remove` (so a running server sees the removals at
once). The plan is printed first (a table, or `--json`); `--dry-run` stops there, and the real
run removes exactly what it listed. docs/retention.md is the user's guide.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from creamery.cli import admin
from creamery.core.config import Config, ConfigError

if TYPE_CHECKING:
    from creamery.catalog.prune import Decision, Outcome, Plan
    from creamery.catalog.prune_rules import Rules


def add_rule_arguments(parser: argparse._ActionsContainer, prefix: str = "") -> None:
    """The rule options (`--keep`...), also on `creamery run` as `--prune-keep`..."""
    parser.add_argument(
        f"--{prefix}keep",
        metavar="N",
        type=_keep,
        help="keep the newest N releases (by version) of each project, N 1 or more",
    )
    parser.add_argument(
        f"--{prefix}prereleases-older-than",
        metavar="AGE",
        type=_age,
        help="remove pre-releases and dev releases uploaded longer ago than AGE, such as 30d",
    )
    parser.add_argument(
        f"--{prefix}rules",
        metavar="FILE",
        help="TOML file of defaults and per-project rules (docs/retention.md)",
    )


def add_prune_arguments(parser: argparse.ArgumentParser) -> None:
    add_rule_arguments(parser)
    parser.add_argument(
        "--project",
        dest="projects",
        metavar="PROJECT",
        action="append",
        default=[],
        help="prune only this project (repeatable; every project's pins still count)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print what would be removed, remove nothing"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="also remove the latest releases and releases pinned with == by another hosted"
        " release (a project still keeps one release; exempt projects stay exempt)",
    )
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    admin.add_location_arguments(parser)


def _keep(text: str) -> int:
    from creamery.catalog.prune_rules import RulesError, check_keep

    try:
        return check_keep(int(text))
    except (ValueError, RulesError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number, 1 or more") from None


def _age(text: str) -> float:
    from creamery.catalog.audit import parse_duration

    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def rules_of(args: argparse.Namespace) -> Rules:
    """The rules the options give; ConfigError (one line) for a bad rules file or none."""
    from pathlib import Path

    from creamery.catalog.prune_rules import RulesError, build_rules

    try:
        return build_rules(
            keep=args.keep,
            prereleases_older_than=args.prereleases_older_than,
            path=None if args.rules is None else Path(args.rules).expanduser(),
        )
    except RulesError as error:
        raise ConfigError(str(error)) from None


def prune(args: argparse.Namespace) -> int:
    from creamery.catalog.access import Actor
    from creamery.catalog.prune import Outcome, execute, host_lock, make_plan
    from creamery.core.names import normalize

    rules = rules_of(args)  # before the catalog: a bad rule says so without a scan
    args.version = None  # open_catalog's `remove PROJECT DIR` guess does not apply
    catalog = admin.open_catalog(args)
    planned: Plan | None = None
    outcome: Outcome | None = None
    try:
        projects = sorted({normalize(p) for p in args.projects})
        unknown = [p for p in projects if not catalog.index.distributions(p)]
        if unknown:
            raise ConfigError(f"no project {unknown[0]!r} is hosted here")
        if args.dry_run:
            planned = make_plan(catalog, rules, projects=projects, force=args.force)
        else:
            with host_lock(catalog.state) as alone:
                if not alone:
                    raise ConfigError(
                        "another prune is running on this host (a server's --prune-every round"
                        " or creamery prune): try again when it is done"
                    )
                catalog.catch_up()  # what that other run removed is seen first
                planned = make_plan(catalog, rules, projects=projects, force=args.force)
                outcome = Outcome()  # filled as it goes: an OSError halfway leaves it told
                execute(catalog, planned, Actor.local(), outcome)
    except OSError as error:
        if planned is not None and outcome is not None:  # stopped halfway: say what went
            _print(args, planned, outcome)
        raise ConfigError(_stopped(error, outcome)) from error
    finally:
        catalog.close()
    _print(args, planned, outcome)
    return 0


def _stopped(error: OSError, outcome: Outcome | None) -> str:
    """`can't prune: Is a directory: 'foo-2.0.whl' (stopped after removing 1 release ...)`."""
    reason = error.strerror or str(error)
    if error.filename:
        reason += f": {str(error.filename)!r}"
    if outcome is not None:
        from creamery.catalog.prune import counted

        reason += f" (stopped after removing {counted(outcome.removed, outcome.files)})"
    return f"can't prune: {reason}"


def _print(args: argparse.Namespace, planned: Plan, outcome: Outcome | None) -> None:
    if args.json:
        print(json.dumps(_json(planned, outcome, dry_run=args.dry_run), indent=2))
    else:
        print(_table(planned, outcome, dry_run=args.dry_run), end="")


def _json(planned: Plan, outcome: Outcome | None, *, dry_run: bool) -> dict[str, object]:
    found: dict[str, object] = {"dry_run": dry_run, **planned.to_json()}
    if outcome is not None:
        found["removed"] = [d.to_json() for d in outcome.removed]
        found["skipped"] = [{**d.to_json(), "why": why} for d, why in outcome.skipped]
    return found


def _table(planned: Plan, outcome: Outcome | None, *, dry_run: bool) -> str:
    from creamery.catalog.prune import counted

    lines = [f"rules: {planned.rules.defaults.describe()}" + (" (forced)" if planned.force else "")]
    if planned.exempt:
        lines.append(f"exempt: {', '.join(planned.exempt)}")
    if not planned.removals and not planned.protected:
        lines.append("nothing to prune: every release is within the rules")
        return "\n".join(lines) + "\n"
    rows = [_row("remove", d, "; ".join(d.reasons)) for d in planned.removals]
    rows += [
        _row("keep", d, f"{'; '.join(d.reasons)}, but {'; '.join(d.protections)}")
        for d in planned.protected
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines += [
        "  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[4]])
        for row in rows
    ]
    if dry_run:
        lines.append(f"dry run, nothing removed: {planned.summary()}")
    elif outcome is not None:
        lines += [f"skipped {d.release.name}: {why}" for d, why in outcome.skipped]
        if planned.removals:
            lines.append(
                f"removed {counted(outcome.removed, outcome.files)},"
                f" kept {len(planned.protected)} for protection"
            )
        else:
            lines.append("nothing to remove: every release the rules name is protected")
    return "\n".join(lines) + "\n"


def _row(action: str, decision: Decision, why: str) -> tuple[str, str, str, str, str]:
    release = decision.release
    count = len(release.files)
    uploaded = decision.to_json()["uploaded"][:10]
    files = f"{count} file{'s' if count != 1 else ''}"
    return (action, release.name, files, uploaded, why)


MIN_PRUNE_EVERY = 1.0  # seconds: below it the server's timer would spin on the prune lock


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """`creamery run --prune-every DURATION` and its rules."""
    group = parser.add_argument_group("retention (see docs/retention.md)")
    group.add_argument(
        "--prune-every",
        metavar="DURATION",
        type=_age,
        help="prune hosted projects this often (1d, 12h, 30s) by the --prune-* rules",
    )
    add_rule_arguments(group, prefix="prune-")


def check_run_rules(config: Config) -> Config:
    """With --prune-every, the rules must be usable at start (exit 2 with one line)."""
    from creamery.catalog.prune_rules import NoRules, RulesError, format_age, rules_of_config

    if config.prune_every is not None:
        if config.prune_every < MIN_PRUNE_EVERY:
            raise ConfigError(
                f"--prune-every must be at least {MIN_PRUNE_EVERY:g}s (each round plans over every"
                f" hosted release), not {format_age(config.prune_every)}"
            )
        try:
            rules_of_config(config)
        except NoRules:
            raise ConfigError(
                "--prune-every needs a rule: --prune-keep N, --prune-prereleases-older-than AGE"
                " or --prune-rules FILE"
            ) from None
        except RulesError as error:
            raise ConfigError(f"--prune-every: {error}") from None
    else:
        given = [
            option
            for option, value in (
                ("--prune-keep", config.prune_keep),
                ("--prune-prereleases-older-than", config.prune_prereleases_older_than),
                ("--prune-rules", config.prune_rules),
            )
            if value is not None
        ]
        if given:  # a rule that never runs would look like retention that is on
            raise ConfigError(
                f"{given[0]} applies to --prune-every only: add --prune-every DURATION (such as"
                " 1d), or run creamery prune"
            )
    return config


PRUNE = (add_prune_arguments, prune)
