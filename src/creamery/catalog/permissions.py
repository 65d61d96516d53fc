"""Who may do what to which project: the `--permissions` file (TOML), parsed and reloaded.

    [groups]
    staff = ["alice", "bob"]

    [[rules]]
    user = "anonymous"          # unauthenticated requests; "*" is every signed-in user
    role = "reader"
    projects = ["*"]

    [[rules]]
    group = "staff"
    role = "maintainer"
    projects = ["acme-*", "tool"]

Patterns are matched against normalized names. For a project, the most specific pattern that
matches it decides for everyone: an exact name, then the longest glob, then `*`. The rules
naming that pattern give roles; a principal none of them names gets nothing there (so a rule
for `secret-*` that names only `staff` hides those projects from everyone else). Roles include
the lower ones. Pure logic: no HTTP, no storage.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

from creamery.core.config import ConfigError
from creamery.core.names import normalize
from creamery.core.operator_files import OperatorFileError, read_with_stat

log = logging.getLogger("creamery.permissions")

ANONYMOUS = "anonymous"  # the principal of requests without credentials
EVERY_USER = "*"  # in a rule's `user`: every authenticated user
_RELOAD_SECONDS = 1.0  # the file is looked at (one stat) at most this often
_MAX_RULES = 100_000
_MAX_KEPT = 200_000  # decisions kept per policy (a dict; cleared when full)
# A file of a few thousand rules is tens of kilobytes; parsing 10 MB of TOML would hold a
# request's thread (the reload runs in the first request after a change) for seconds.
MAX_BYTES = 1 << 20


class Role(IntEnum):
    NONE = 0
    READER = 1
    UPLOADER = 2
    MAINTAINER = 3
    OWNER = 4

    @classmethod
    def named(cls, name: object) -> Role:
        if isinstance(name, str) and name.strip().upper() in ROLE_NAMES:
            return cls[name.strip().upper()]
        raise ValueError(f"unknown role {name!r}: choose from {', '.join(ROLE_NAMES_LOWER)}")

    @property
    def label(self) -> str:
        return self.name.lower()


ROLE_NAMES = ("READER", "UPLOADER", "MAINTAINER", "OWNER")
ROLE_NAMES_LOWER = tuple(n.lower() for n in ROLE_NAMES)

# The least role each operation needs.
OPERATION_ROLES: dict[str, Role] = {
    "list": Role.READER,
    "download": Role.READER,
    "upload": Role.UPLOADER,
    "overwrite": Role.MAINTAINER,
    "yank": Role.MAINTAINER,
    "remove": Role.MAINTAINER,
    "manage": Role.OWNER,
}


class PermissionFileError(ConfigError):
    """The permission file can't be used; the message is one line naming the file and why
    (a ConfigError: at start, the command line says it in one line and exits 2)."""


@dataclass(frozen=True, slots=True)
class Rule:
    users: frozenset[str]  # user names, ANONYMOUS, EVERY_USER
    groups: frozenset[str]
    role: Role
    patterns: tuple[str, ...]  # normalized


def _specificity(pattern: str) -> tuple[int, int]:
    """Higher is more specific: an exact name, then the longest glob, `*` last."""
    if not any(c in pattern for c in "*?["):
        return (2, len(pattern))
    if pattern == "*":
        return (0, 0)
    return (1, len(pattern))


@dataclass
class Policy:
    """A parsed permission file."""

    groups: dict[str, frozenset[str]] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    # Per pattern: the rules naming it, most specific patterns first (built in __post_init__).
    _by_pattern: list[tuple[re.Pattern[str] | None, tuple[int, ...]]] = field(
        default_factory=list, repr=False
    )
    _exact: dict[str, tuple[int, ...]] = field(default_factory=dict, repr=False)
    _deciding: dict[str, tuple[int, ...]] = field(default_factory=dict, repr=False)
    # A policy never changes (a reload makes a new one): what it decides is kept.
    _roles: dict[tuple[str | None, str], Role] = field(default_factory=dict, repr=False)
    _views: dict[str | None, frozenset[int]] = field(default_factory=dict, repr=False)
    _allowed: dict[tuple[str | None, str, str], bool] = field(default_factory=dict, repr=False)
    # Does any rule give the anonymous principal something? If not, every read needs
    # credentials (clients are challenged, as with `-a list,download`).
    anonymous_named: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        per_pattern: dict[str, list[int]] = {}
        for number, rule in enumerate(self.rules):
            for pattern in rule.patterns:
                per_pattern.setdefault(pattern, []).append(number)
        ordered = sorted(per_pattern, key=_specificity, reverse=True)
        self._exact = {p: tuple(per_pattern[p]) for p in ordered if _specificity(p)[0] == 2}
        # Compiled once: `fnmatch` recompiles a pattern its cache (32,768) no longer holds, so
        # a file of many globs would recompile them all for each new project name.
        self._by_pattern = [
            (None if p == "*" else re.compile(fnmatch.translate(p)), tuple(per_pattern[p]))
            for p in ordered
            if _specificity(p)[0] < 2
        ]
        self.anonymous_named = any(ANONYMOUS in rule.users for rule in self.rules)

    @classmethod
    def parse(cls, text: str, source: str = "the permission file") -> Policy:
        """Raises PermissionFileError with one line naming *source* and the problem."""
        if len(text) > MAX_BYTES:
            raise PermissionFileError(f"{source}: larger than {MAX_BYTES} bytes")
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise PermissionFileError(f"{source}: not valid TOML: {error}") from None
        except RecursionError:  # tomllib recurses per nested array or inline table
            raise PermissionFileError(f"{source}: not valid TOML: nested too deeply") from None
        try:
            return cls._from_data(data)
        except (ValueError, TypeError) as error:
            raise PermissionFileError(f"{source}: {error}") from None

    @classmethod
    def _from_data(cls, data: dict[str, object]) -> Policy:
        unknown = sorted(set(data) - {"groups", "rules"})
        if unknown:
            raise ValueError(f"unknown table {unknown[0]!r} (expected [groups] and [[rules]])")
        groups = _parse_groups(data.get("groups", {}))
        raw_rules = data.get("rules", [])
        if not isinstance(raw_rules, list):
            raise ValueError("'rules' must be an array of tables ([[rules]])")
        if len(raw_rules) > _MAX_RULES:
            raise ValueError(f"more than {_MAX_RULES} rules")
        rules = tuple(_parse_rule(number, r, groups) for number, r in enumerate(raw_rules, 1))
        return cls(groups, rules)

    # ------------------------------------------------------------------ decisions

    def deciding_rules(self, project: str) -> tuple[int, ...]:
        """The numbers of the rules that decide for *project* (normalized): those of the most
        specific pattern matching it; () when no pattern matches (nobody may do anything)."""
        found = self._exact.get(project)
        if found is not None:
            return found
        cached = self._deciding.get(project)
        if cached is not None:
            return cached
        result: tuple[int, ...] = ()
        for pattern, numbers in self._by_pattern:
            if pattern is None or pattern.match(project):
                result = numbers
                break
        if len(self._deciding) >= _MAX_KEPT:
            self._deciding.clear()
        self._deciding[project] = result
        return result

    def applies(self, rule: Rule, user: str | None) -> bool:
        """Does *rule* name *user* (None: anonymous)?"""
        if user is None:
            return ANONYMOUS in rule.users
        if user in rule.users or EVERY_USER in rule.users:
            return True
        return any(user in self.groups.get(g, ()) for g in rule.groups)

    def role(self, user: str | None, project: str) -> Role:
        """*user*'s role on *project* (normalized); None is the anonymous principal."""
        key = (user, project)
        found = self._roles.get(key)
        if found is None:
            found = self._decide(user, project)
            if len(self._roles) >= _MAX_KEPT:
                self._roles.clear()
            self._roles[key] = found
        return found

    def allows(self, user: str | None, operation: str, project: str) -> bool:
        """May *user* (None: anonymous) do *operation* to *project*? Kept, like roles."""
        key = (user, operation, project)
        found = self._allowed.get(key)
        if found is None:
            found = self.role(user, project) >= OPERATION_ROLES[operation]
            if len(self._allowed) >= _MAX_KEPT:
                self._allowed.clear()
            self._allowed[key] = found
        return found

    def _decide(self, user: str | None, project: str) -> Role:
        best = Role.NONE
        for number in self.deciding_rules(project):
            rule = self.rules[number]
            if rule.role > best and self.applies(rule, user):
                best = rule.role
        return best

    def view_key(self, user: str | None) -> frozenset[int]:
        """The rules that name *user*: two principals with the same key have the same role on
        every project (so a page filtered for one is right for the other)."""
        found = self._views.get(user)
        if found is None:
            found = frozenset(n for n, rule in enumerate(self.rules) if self.applies(rule, user))
            if len(self._views) >= _MAX_KEPT:
                self._views.clear()
            self._views[user] = found
        return found


def _parse_groups(raw: object) -> dict[str, frozenset[str]]:
    if not isinstance(raw, dict):
        raise ValueError("[groups] must be a table of name = [users]")
    groups: dict[str, frozenset[str]] = {}
    for name, members in raw.items():
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise ValueError(f"group {name!r} must be a list of user names")
        groups[name] = frozenset(m.strip() for m in members if m.strip())
    return groups


def _names(raw: object, what: str, number: int) -> frozenset[str]:
    if raw is None:
        return frozenset()
    values = [raw] if isinstance(raw, str) else raw
    if not isinstance(values, list) or not all(isinstance(v, str) and v.strip() for v in values):
        raise ValueError(f"rule {number}: {what!r} must be a name or a list of names")
    return frozenset(v.strip() for v in values)


def _parse_rule(number: int, raw: object, groups: dict[str, frozenset[str]]) -> Rule:
    if not isinstance(raw, dict):
        raise ValueError(f"rule {number} must be a table")
    unknown = sorted(set(raw) - {"user", "users", "group", "groups", "role", "projects"})
    if unknown:
        raise ValueError(f"rule {number}: unknown key {unknown[0]!r}")
    users = _names(raw.get("user"), "user", number) | _names(raw.get("users"), "users", number)
    named_groups = _names(raw.get("group"), "group", number) | _names(
        raw.get("groups"), "groups", number
    )
    if not users and not named_groups:
        raise ValueError(f"rule {number}: needs a 'user' or a 'group'")
    missing = sorted(named_groups - set(groups))
    if missing:
        raise ValueError(f"rule {number}: group {missing[0]!r} is not defined in [groups]")
    if "role" not in raw:
        raise ValueError(f"rule {number}: needs a 'role'")
    try:
        role = Role.named(raw["role"])
    except ValueError as error:
        raise ValueError(f"rule {number}: {error}") from None
    projects = raw.get("projects")
    if isinstance(projects, str):
        projects = [projects]
    if not isinstance(projects, list) or not projects:
        raise ValueError(f"rule {number}: 'projects' must be a non-empty list of patterns")
    patterns = tuple(_pattern(p, number) for p in projects)
    return Rule(users, named_groups, role, patterns)


def _pattern(raw: object, number: int) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError(f"rule {number}: a project pattern must be a non-empty string")
    text = raw.strip()
    if text == "*":
        return text
    return _normalize_glob(text)


def _normalize_glob(text: str) -> str:
    """A glob normalized like names (PEP 503) outside its `[...]` classes; inside a class
    only lowercased, with `_` and `.` standing for `-` placed last, where it is no range
    (normalizing `[a_z]` as text would make it the range `[a-z]`)."""
    out: list[str] = []
    run = ""
    i = 0
    while i < len(text):
        char = text[i]
        if char == "[":
            end = i + 1
            if end < len(text) and text[end] == "!":
                end += 1
            if end < len(text) and text[end] == "]":
                end += 1  # a `]` first in a class is one of its characters (as fnmatch reads it)
            end = text.find("]", end)
            if end < 0:  # no closing `]`: fnmatch reads a literal `[`
                run += char
                i += 1
                continue
            body = text[i + 1 : end].lower()
            negated = body.startswith("!")
            body = body.removeprefix("!")
            if "_" in body or "." in body:
                body = body.replace("_", "").replace(".", "") + "-"
            out.extend((normalize(run) if run else "", "[!" if negated else "[", body, "]"))
            run = ""
            i = end + 1
        elif char in "*?":
            out.extend((normalize(run) if run else "", char))
            run = ""
            i += 1
        else:
            run += char
            i += 1
    out.append(normalize(run) if run else "")
    return "".join(out)


# ---------------------------------------------------------------------- the file


class PermissionFile:
    """The `--permissions` file, reloaded when it changes (looked at once a second at most).

    A file that becomes unreadable or invalid keeps the last good policy in force and logs one
    line; `load` at start raises PermissionFileError instead.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        on_reload: Callable[[Policy | None, str | None], None] = lambda policy, problem: None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """*on_reload* hears every reload: the new policy, or None and the problem."""
        self.path = Path(path)
        self.on_reload = on_reload
        self._clock = clock
        self._lock = threading.Lock()
        self._signature: tuple[int, ...] | None = None
        self._checked = -_RELOAD_SECONDS
        self._problem: str | None = None
        self.generation = 0  # counts the reloads: part of the key of pages rendered per view
        self.policy = self.load()

    def load(self) -> Policy:
        """Read and parse the file now; PermissionFileError (one line) when it can't be used."""
        try:
            raw, st = read_with_stat(self.path, "permission file", MAX_BYTES)
            text = raw.decode("utf-8")
        except OperatorFileError as error:  # a FIFO, a device, too big: never a hang
            raise PermissionFileError(f"{self.path}: {error.problem}") from None
        except UnicodeDecodeError:
            raise PermissionFileError(f"{self.path}: not UTF-8") from None
        policy = Policy.parse(text, str(self.path))
        self._signature = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        self._checked = self._clock()
        return policy

    def current(self) -> Policy:
        """The policy in force, reloaded first when the file changed (one stat a second)."""
        now = self._clock()
        if now - self._checked >= _RELOAD_SECONDS:
            self._reload_if_changed(now)
        return self.policy

    def _reload_if_changed(self, now: float) -> None:
        with self._lock:
            if now - self._checked < _RELOAD_SECONDS:
                return
            self._checked = now
            try:
                st = os.stat(self.path)
            except OSError as error:
                self._keep(f"can't be read: {error.strerror or error}")
                return
            signature = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            if signature == self._signature:
                return
            try:
                policy = self.load()
            except PermissionFileError as error:
                self._signature = signature  # said once, until the file changes again
                self._keep(str(error).removeprefix(f"{self.path}: "))
                return
            self.policy = policy
            self.generation += 1
            self._problem = None
            log.warning("%s: reloaded (%d rules)", self.path, len(policy.rules))
            self.on_reload(policy, None)

    def _keep(self, problem: str) -> None:
        if problem != self._problem:
            log.error("%s: %s; the previous permissions stay in force", self.path, problem)
            self._problem = problem
            self.on_reload(None, problem)
