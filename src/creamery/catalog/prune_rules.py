"""Retention rules for `creamery prune` and `--prune-every`: what each hosted project keeps.

A project's rule is how many of its newest releases stay (`keep`, 1 or more), how old a pre- or
dev release may get (`prereleases_older_than`, seconds; None: any age), or `exempt` (never
pruned). The defaults come from the command line, else the rules file's `[defaults]`; the
file's `[projects."<pattern>"]` tables override them per project (docs/retention.md):

    [defaults]
    keep = 5
    prereleases-older-than = "30d"

    [projects."foo"]
    keep = 20

    [projects."internal-*"]
    exempt = true

Patterns are project names or globs (`*`, `?`, `[...]`), matched against normalized names
(PEP 503; `Foo_Bar` and `foo-bar` are one pattern); an exact name wins over globs, then the
first glob in the file's order. Every key is checked: a mistake is one line saying where.
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from creamery.catalog.audit import parse_duration
from creamery.core.config import Config
from creamery.core.names import normalize
from creamery.core.operator_files import OperatorFileError, read_operator_file

_KEYS = ("keep", "prereleases-older-than", "exempt")
_DEFAULT_KEYS = ("keep", "prereleases-older-than")  # exempt is a project's, not everyone's
MAX_RULES_FILE = 1 << 20  # bytes: some twenty thousand project tables
_GLOB = frozenset("*?[")


class RulesError(ValueError):
    """A rule that can't be used; the message is one line for a person."""


class NoRules(RulesError):
    """No rule at all: nothing would ever be pruned."""


@dataclass(frozen=True)
class Rule:
    keep: int | None = None  # the newest releases kept (by version); None: no count limit
    prereleases_older_than: float | None = None  # seconds; None: pre-releases age like others
    exempt: bool = False

    def describe(self) -> str:
        """`keep 5, pre-releases older than 30d`, for the plan's heading and the audit log."""
        if self.exempt:
            return "exempt"
        parts = [] if self.keep is None else [f"keep {self.keep}"]
        if self.prereleases_older_than is not None:
            parts.append(f"pre-releases older than {format_age(self.prereleases_older_than)}")
        return ", ".join(parts) or "keep everything"


@dataclass(frozen=True)
class Rules:
    defaults: Rule = Rule()
    # pattern (normalized) -> the keys its table set, in the file's order
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    def for_project(self, project: str) -> Rule:
        """The rule of *project* (a normalized name): the defaults, overridden."""
        if project in self.overrides:
            return replace(self.defaults, **self.overrides[project])
        for pattern, keys in self.overrides.items():
            if _GLOB & set(pattern) and fnmatch.fnmatchcase(project, pattern):
                return replace(self.defaults, **keys)
        return self.defaults

    @property
    def prunes_anything(self) -> bool:
        rules = [self.defaults, *(self.for_project(p) for p in self.overrides)]
        return any(
            not r.exempt and (r.keep is not None or r.prereleases_older_than is not None)
            for r in rules
        )


def format_age(seconds: float) -> str:
    """`30d`, `12h`, `90s`: the largest unit that divides it."""
    for unit, size in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def check_keep(value: object, where: str = "--keep") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RulesError(f"{where} must be a whole number of releases, 1 or more, not {value!r}")
    return value


def check_age(value: object, where: str = "--prereleases-older-than") -> float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise RulesError(f'{where} must be a duration such as "30d", not {value!r}')
    try:
        return parse_duration(str(value))
    except ValueError as error:
        raise RulesError(f"{where}: {error}") from None


def build_rules(
    *, keep: int | None = None, prereleases_older_than: float | None = None, path: Path | None
) -> Rules:
    """The rules of the command line's values over the file's (*path*, when given). RulesError
    when the file can't be used, or when nothing would ever be pruned."""
    rules = read_rules(path) if path is not None else Rules()
    defaults = rules.defaults
    if keep is not None:
        defaults = replace(defaults, keep=check_keep(keep))
    if prereleases_older_than is not None:
        defaults = replace(defaults, prereleases_older_than=prereleases_older_than)
    rules = replace(rules, defaults=defaults)
    if not rules.prunes_anything:
        raise NoRules(
            "no retention rule: give --keep N or --prereleases-older-than AGE, or a rules file"
            " with them in [defaults] or a project's table"
        )
    return rules


def rules_of_config(config: Config) -> Rules:
    """The server's `--prune-*` rules (the file read now)."""
    return build_rules(
        keep=config.prune_keep,
        prereleases_older_than=config.prune_prereleases_older_than,
        path=config.prune_rules,
    )


def read_rules(path: Path) -> Rules:
    """The rules file at *path*, checked; RulesError names the file and the key."""
    try:  # a FIFO, `/dev/zero` or a runaway file: refused at once, not read without end
        content = read_operator_file(path, "rules file", MAX_RULES_FILE)
    except OperatorFileError as error:
        raise RulesError(str(error)) from None
    try:
        document = tomllib.loads(content.decode())
    except tomllib.TOMLDecodeError as error:
        raise RulesError(f"{path}: invalid TOML: {error}") from None
    except UnicodeDecodeError as error:
        raise RulesError(f"{path}: invalid TOML: not UTF-8 (byte {error.start})") from None
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        raise RulesError(f"{path}: invalid TOML: values nested too deeply") from None
    return parse_rules(document, str(path))


def parse_rules(document: dict[str, Any], label: str) -> Rules:
    unknown = sorted(set(document) - {"defaults", "projects"})
    if unknown:
        raise RulesError(f"{label}: unknown table {unknown[0]!r} (use [defaults], [projects.NAME])")
    defaults = _table(document.get("defaults", {}), f"{label}: [defaults]", _DEFAULT_KEYS)
    if "exempt" in defaults:
        raise RulesError(f"{label}: [defaults]: exempt belongs in a project's table")
    projects = document.get("projects", {})
    if not isinstance(projects, dict):
        raise RulesError(f'{label}: projects must be tables, such as [projects."foo"]')
    overrides: dict[str, dict[str, Any]] = {}
    for pattern, table in projects.items():
        where = f'{label}: [projects."{pattern}"]'
        name = _normalize_pattern(pattern, where)
        if name in overrides:
            raise RulesError(f"{where}: the same project as another table ({name!r})")
        overrides[name] = _table(table, where)
    return Rules(Rule(**defaults), overrides)


def _table(table: object, where: str, keys: tuple[str, ...] = _KEYS) -> dict[str, Any]:
    """A table's keys (of *keys*) as Rule fields, each checked."""
    if not isinstance(table, dict):
        raise RulesError(f"{where} must be a table of {', '.join(keys)}")
    found: dict[str, Any] = {}
    for key, value in table.items():
        name = key.replace("_", "-")
        if name not in _KEYS:
            raise RulesError(f"{where}: unknown key {key!r} (use {', '.join(keys)})")
        if name == "keep":
            found["keep"] = check_keep(value, f"{where}: keep")
        elif name == "prereleases-older-than":
            found["prereleases_older_than"] = check_age(value, f"{where}: {key}")
        elif not isinstance(value, bool):
            raise RulesError(f"{where}: exempt must be true or false, not {value!r}")
        else:
            found["exempt"] = value
    return found


def _normalize_pattern(pattern: str, where: str) -> str:
    """A name or glob, normalized like project names (the glob's own characters kept)."""
    text = pattern.strip()
    if not text or any(c.isspace() or c in "/\\" for c in text):
        raise RulesError(f"{where}: not a project name or glob")
    if not _GLOB & set(text):
        return normalize(text)
    return "".join(p if p in _GLOB or p in "]!" else normalize(p) for p in _split_glob(text))


def _split_glob(text: str) -> list[str]:
    """The glob's name runs apart from its special characters (`foo_*` -> `foo_`, `*`)."""
    parts: list[str] = []
    run = ""
    for char in text:
        if char in "*?[]!":
            if run:
                parts.append(run)
                run = ""
            parts.append(char)
        else:
            run += char
    if run:
        parts.append(run)
    return parts
