"""Retention for hosted projects: which releases the rules remove, and removing them.

`plan` is pure: from the hosted releases (`hosted_releases` reads them from the index and the
facts cache), the rules (`prune_rules.py`) and the time, it decides every release, so a dry run
lists exactly what the real run removes (both call it; `execute` removes what it planned and
nothing else). A release (all files of one version) goes when a rule says so ("beyond the
newest 5", "pre-release older than 30d"), unless it is protected: the newest version, the
newest final release and the release installers pick (PyPI's latest: the newest not yanked)
stay, and so does every release that a release staying here pins with `==` or `===` in its
`Requires-Dist` (markers ignored: a pin for another platform still protects). `force` lifts
those protections; even then a project keeps one release, and exempt projects are never
touched. Each removal goes through `Catalog.remove` (audited, recorded in the change feed);
one `prune` entry sums the run up. `Schedule` is the server's `--prune-every`.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import Specifier

from creamery.catalog import releases as release_files
from creamery.catalog import versions
from creamery.catalog.access import Actor
from creamery.catalog.facts import FactsCache
from creamery.catalog.index import Index
from creamery.catalog.prune_rules import Rules, RulesError, format_age
from creamery.core.names import normalize, parse_version, version_sort_key
from creamery.core.periodic import repeat
from creamery.storage import read_all
from creamery.storage.state import StateDir

if TYPE_CHECKING:
    from creamery.catalog.service import Catalog

log = logging.getLogger("creamery.prune")

_PINS = ("==", "===")
LAST_RUN_KEY = "prune/last-run"  # in the state: when a server last pruned (a Unix time)
LOCK_FILE = "prune.lock"  # in this host's scratch: one worker prunes at a time


@dataclass(frozen=True)
class Hosted:
    """One hosted release as the planner sees it."""

    project: str  # normalized
    version: str
    files: tuple[str, ...]  # relpaths
    uploaded: float  # Unix time: its newest file's modification time
    requires: tuple[str, ...] = ()  # Requires-Dist of its core metadata
    yanked: bool = False
    # Every spelling of the version its files' names use (`1.0` and `1.0.0` are one release,
    # but `===1.0.0` pins only the file spelled so); empty: *version* alone.
    spellings: tuple[str, ...] = ()

    @property
    def versions(self) -> tuple[str, ...]:
        return self.spellings or (self.version,)

    @property
    def name(self) -> str:
        return f"{self.project} {self.version}"


@dataclass(frozen=True)
class Decision:
    """A release a rule removes: *reasons* say which; *protections* (when any) why it stays."""

    release: Hosted
    reasons: tuple[str, ...]
    protections: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        release = self.release
        return {
            "project": release.project,
            "version": release.version,
            "files": list(release.files),
            "uploaded": _iso(release.uploaded),
            "reasons": list(self.reasons),
            **({"protected_by": list(self.protections)} if self.protections else {}),
        }


@dataclass(frozen=True)
class Plan:
    rules: Rules
    removals: tuple[Decision, ...]  # what a run removes, in its order (pinners first)
    protected: tuple[Decision, ...]  # what the rules would remove, kept for protection
    exempt: tuple[str, ...] = ()  # projects the rules leave alone
    force: bool = False

    @property
    def files(self) -> int:
        return sum(len(d.release.files) for d in self.removals)

    def summary(self) -> str:
        """One line: the counts, for the log and the audit entry."""
        return (
            f"{counted(self.removals, self.files)} to remove,"
            f" {len(self.protected)} kept for protection; rules: {self.rules.defaults.describe()}"
            + (f", {len(self.rules.overrides)} project rules" if self.rules.overrides else "")
            + (", forced" if self.force else "")
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "rules": self.rules.defaults.describe(),
            "project_rules": {
                pattern: self.rules.for_project(pattern).describe()
                for pattern in self.rules.overrides
            },
            "force": self.force,
            "remove": [d.to_json() for d in self.removals],
            "protected": [d.to_json() for d in self.protected],
            "exempt": list(self.exempt),
        }


# ---------------------------------------------------------------------- reading what is hosted


def hosted_releases(index: Index, facts: FactsCache) -> list[Hosted]:
    """Every hosted release with what the planner needs (the core metadata of each, from the
    facts cache: read once per file, then remembered). OSError when a store does not answer."""
    found: list[Hosted] = []
    for project in index.project_names():
        for release in versions.releases(index, project):
            metadata = versions.release_metadata(facts, release)
            found.append(
                Hosted(
                    project=project,
                    version=release.version,
                    files=tuple(sorted(d.relpath for d in release.files)),
                    uploaded=max(d.stored.mtime_ns for d in release.files) / 1e9,
                    requires=tuple(metadata.get("requires_dist", ())),
                    yanked=versions.is_yanked(index, release),
                    spellings=tuple(sorted({d.version for d in release.files})),
                )
            )
    return found


# ---------------------------------------------------------------------- planning


@dataclass(frozen=True)
class _Pin:
    specifier: Specifier
    by: Hosted
    text: str  # the Requires-Dist line

    def holds(self, release: Hosted) -> bool:
        """Whether the pin matches a version of *release*, in any of its files' spellings."""
        return any(self._holds(version) for version in release.versions)

    def _holds(self, version: str) -> bool:
        return _pin_matches(str(self.specifier), version)

    def describe(self) -> str:
        return f"pinned by {self.by.name} (Requires-Dist: {self.text})"


# Remembered: a plan asks the same (pin, version) again and again (every release of a project
# against every pin of it, at each pass of the fixpoint), and `packaging` takes ~6 µs a question.
@functools.lru_cache(maxsize=1 << 16)
def _pin_matches(specifier: str, version: str) -> bool:
    try:
        return Specifier(specifier).contains(version, prereleases=True)
    except ValueError:  # a legacy version `==` can't compare
        return False


def plan(
    hosted: Iterable[Hosted],
    rules: Rules,
    *,
    now: float,
    projects: Iterable[str] = (),
    force: bool = False,
) -> Plan:
    """Decide every release of *projects* (normalized; none: every project) under *rules*.
    The pins of every hosted release count, whichever projects are pruned."""
    by_project: dict[str, list[Hosted]] = {}
    for release in hosted:
        by_project.setdefault(release.project, []).append(release)
    for found in by_project.values():
        found.sort(key=lambda r: version_sort_key(r.version))
    chosen = sorted(set(projects) or by_project)
    exempt = tuple(p for p in chosen if rules.for_project(p).exempt)
    candidates: dict[Hosted, tuple[str, ...]] = {}
    protections: dict[Hosted, list[str]] = {}
    for project in chosen:
        if project in exempt:
            continue
        found = by_project.get(project, [])
        for release, reasons in _by_the_rules(found, rules, project, now).items():
            candidates[release] = reasons
        for release, why in _latest(found).items():
            if release in candidates:
                protections.setdefault(release, []).append(why)
    if force:  # the rules alone decide, but for each project's last release
        protections = _last_of_each(by_project, candidates)
    pins = _pins_holding(candidates, _pins(r for found in by_project.values() for r in found))
    removed = {r for r in candidates if r not in protections}
    if not force:
        _keep_pinned(removed, pins, protections)
    removals = tuple(Decision(r, candidates[r]) for r in _pinners_first(removed, pins))
    protected = tuple(
        Decision(r, candidates[r], tuple(protections[r]))
        for r in _ordered(set(candidates) - removed)
    )
    return Plan(rules, removals, protected, exempt, force)


def _by_the_rules(
    found: list[Hosted], rules: Rules, project: str, now: float
) -> dict[Hosted, tuple[str, ...]]:
    """The releases of one project (oldest version first) a rule removes, with the reasons."""
    rule = rules.for_project(project)
    reasons: dict[Hosted, list[str]] = {}
    if rule.keep is not None:
        for release in found[: max(len(found) - rule.keep, 0)]:
            reasons.setdefault(release, []).append(f"beyond the newest {rule.keep}")
    age = rule.prereleases_older_than
    if age is not None:
        for release in found:
            parsed = parse_version(release.version)
            if parsed is not None and parsed.is_prerelease and release.uploaded < now - age:
                kind = "dev release" if parsed.pre is None else "pre-release"
                reasons.setdefault(release, []).append(f"{kind} older than {format_age(age)}")
    return {r: tuple(why) for r, why in reasons.items()}


def _latest(found: list[Hosted]) -> dict[Hosted, str]:
    """The releases of one project (oldest first) that stay unless forced, and why."""
    if not found:
        return {}
    kept: dict[Hosted, str] = {}
    finals = [r for r in found if not versions.is_prerelease(r.version)]
    if finals:
        kept[finals[-1]] = "the newest final release"
    kept[found[-1]] = "the latest release (the newest version)"
    unyanked = [r for r in found if not r.yanked] or found
    picked = ([r for r in unyanked if not versions.is_prerelease(r.version)] or unyanked)[-1]
    kept.setdefault(picked, "the release installers pick (the newest not yanked)")
    return kept


def _last_of_each(
    by_project: dict[str, list[Hosted]], candidates: dict[Hosted, tuple[str, ...]]
) -> dict[Hosted, list[str]]:
    """Forced: a project whose every release a rule removes keeps its newest one."""
    return {
        found[-1]: ["the project's last release (kept even with --force)"]
        for found in by_project.values()
        if found and all(r in candidates for r in found)
    }


def _pins(hosted: Iterable[Hosted]) -> dict[str, list[_Pin]]:
    """Every `==`/`===` of every hosted release's Requires-Dist, by the pinned project."""
    pins: dict[str, list[_Pin]] = {}
    for release in hosted:
        for text in release.requires:
            try:
                requirement = Requirement(text)
            except InvalidRequirement:
                continue  # not a requirement an installer would follow either
            for specifier in requirement.specifier:
                if specifier.operator in _PINS:
                    pin = _Pin(Specifier(str(specifier)), release, text.strip())
                    pins.setdefault(normalize(requirement.name), []).append(pin)
    return pins


def _pins_holding(
    releases: Iterable[Hosted], pins: dict[str, list[_Pin]]
) -> dict[Hosted, list[_Pin]]:
    """The pins that hold each of *releases*, found once (a project's pins grouped by their
    specifier: one question per release and distinct specifier, not per pin)."""
    grouped: dict[str, dict[str, list[_Pin]]] = {}
    for project, found in pins.items():
        for pin in found:
            grouped.setdefault(project, {}).setdefault(str(pin.specifier), []).append(pin)
    holding: dict[Hosted, list[_Pin]] = {}
    for release in releases:
        for group in grouped.get(release.project, {}).values():
            if group[0].holds(release):
                holding.setdefault(release, []).extend(group)
    return holding


def _keep_pinned(
    removed: set[Hosted],
    pins: dict[Hosted, list[_Pin]],
    protections: dict[Hosted, list[str]],
) -> None:
    """Take out of *removed* every release pinned by one that stays, until none is: a release
    pinned only by releases this run removes goes too (nothing hosted needs it then)."""
    while True:
        pinned = {
            release: why
            for release in removed
            if (why := [p.describe() for p in pins.get(release, ()) if p.by not in removed])
        }
        if not pinned:
            return
        for release, why in pinned.items():
            removed.discard(release)
            protections[release] = why


def _pinners_first(removed: set[Hosted], pins: dict[Hosted, list[_Pin]]) -> list[Hosted]:
    """The removal order: by project and version, but a release another removed release pins
    after that one (a run that stops halfway never leaves a pin without its release)."""
    pinned_by = {
        release: {p.by for p in pins.get(release, ()) if p.by in removed and p.by != release}
        for release in removed
    }
    order: list[Hosted] = []
    left = set(removed)
    while left:
        ready = _ordered(r for r in left if not pinned_by[r] & left)
        ready = ready or _ordered(left)[:1]  # releases pinning each other: any order
        order += ready
        left -= set(ready)
    return order


def _ordered(found: Iterable[Hosted]) -> list[Hosted]:
    return sorted(found, key=lambda r: (r.project, version_sort_key(r.version)))


# ---------------------------------------------------------------------- running it


@dataclass
class Outcome:
    removed: list[Decision] = field(default_factory=list)
    skipped: list[tuple[Decision, str]] = field(default_factory=list)  # and why not removed

    @property
    def files(self) -> int:
        return sum(len(d.release.files) for d in self.removed)


def make_plan(
    catalog: Catalog,
    rules: Rules,
    *,
    now: float | None = None,
    projects: Iterable[str] = (),
    force: bool = False,
) -> Plan:
    """The plan for the catalog's hosted releases now (what a dry run shows)."""
    hosted = hosted_releases(catalog.index, catalog.facts)
    moment = time.time() if now is None else now
    return plan(hosted, rules, now=moment, projects=projects, force=force)


def execute(
    catalog: Catalog, planned: Plan, actor: Actor, outcome: Outcome | None = None
) -> Outcome:
    """Remove what *planned* removes, release by release through `Catalog.remove` (each
    audited as `remove` by *actor*, recorded); a release whose files changed since the plan
    (a file added or gone: another process at work) is left alone, and one whose files were
    all gone when removed (another replica was quicker) is skipped, not counted as removed.
    One `prune` audit entry sums up a run that removed anything. OSError from a removal ends
    the run (raised); what went before it is in *outcome*, when the caller gave one."""
    outcome = Outcome() if outcome is None else outcome
    try:
        for decision in planned.removals:
            release = decision.release
            try:
                now = release_files.matching_files(catalog.index, release.project, release.version)
            except release_files.ReleaseNotFound:
                outcome.skipped.append((decision, "already removed"))
                continue
            if tuple(sorted(d.relpath for d in now)) != release.files:
                outcome.skipped.append((decision, "its files changed since the plan"))
                continue
            reason = "prune: " + "; ".join(decision.reasons)
            try:
                changed = catalog.remove(
                    release.project, release.version, actor=actor, reason=reason
                )
            except release_files.ReleaseNotFound:  # another replica was quicker
                changed = []
            if not changed:  # every file was already gone: another process removed it
                outcome.skipped.append((decision, "already removed"))
                continue
            outcome.removed.append(decision)
    finally:
        if outcome.removed:
            detail = (
                f"removed {counted(outcome.removed, outcome.files)},"
                f" kept {len(planned.protected)} for protection; rules:"
                f" {planned.rules.defaults.describe()}" + (", forced" if planned.force else "")
            )
            catalog.access.audit.try_write(actor.entry("prune", detail=detail))
    return outcome


def counted(decisions: list[Decision] | tuple[Decision, ...], files: int) -> str:
    """`3 releases (4 files) of 2 projects`."""
    projects = len({d.release.project for d in decisions})
    return (
        f"{_plural(len(decisions), 'release')} ({_plural(files, 'file')})"
        f" of {_plural(projects, 'project')}"
    )


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------- --prune-every


SERVER_ACTOR = Actor("server:prune", None, "server")
_MAX_TICK = 60.0  # a long interval is checked this often (a restart does not reset it)
_CLOCK_SET_BACK = 86400.0  # a last run more than this (or the interval) ahead: the clock moved


class Schedule:
    """A server's `--prune-every`: a thread that prunes when the interval since the last run
    (kept in the state, shared by workers and replicas) has passed. On one host, a lock file
    in the scratch directory lets one worker prune at a time and the others skip the round;
    replicas of one bucket share the last-run time but not a lock, so two may prune at the
    same moment: both plan the same removals, and a release the other removed first is
    skipped ("already removed"). The rules file is read again for every run."""

    def __init__(
        self,
        catalog: Catalog,
        interval: float,
        rules: Callable[[], Rules],
        actor: Actor = SERVER_ACTOR,
    ) -> None:
        self.catalog = catalog
        self.interval = interval
        self.rules = rules
        self.actor = actor

    def start(self) -> Callable[[], None]:
        """The thread; the function that stops it."""
        self._remember_start()
        return repeat(min(self.interval, _MAX_TICK), self.run_if_due, name="prune", log=log)

    def run_if_due(self) -> Outcome | None:
        """Prune when no worker or replica did within the interval; the outcome, else None."""
        with host_lock(self.catalog.state) as alone:
            if not alone:
                return None  # another worker of this host is pruning
            last = _last_run(self.catalog.state)
            # A last run far in the future is a clock that was set back: due now, else pruning
            # would stop until then. "Far" is a day at least, so replicas whose clocks differ by
            # more than a short interval do not take turns pruning at every tick.
            ahead = max(self.interval, _CLOCK_SET_BACK)
            if last is not None and -ahead < time.time() - last < self.interval * 0.95:
                return None
            _set_last_run(self.catalog.state, time.time())
            return self.run()

    def run(self) -> Outcome | None:
        try:
            rules = self.rules()
        except RulesError as error:
            log.error("prune skipped: %s", error)
            return None
        self.catalog.catch_up()  # what other processes removed or added is seen first
        planned = make_plan(self.catalog, rules)
        outcome = execute(self.catalog, planned, self.actor)
        log.info(
            "prune: removed %s, %d kept for protection, %d skipped",
            counted(outcome.removed, outcome.files),
            len(planned.protected),
            len(outcome.skipped),
        )
        return outcome

    def _remember_start(self) -> None:
        """The first run comes one interval after the first start, not at every start."""
        try:
            if _last_run(self.catalog.state) is None:
                _set_last_run(self.catalog.state, time.time())
        except OSError as error:
            log.warning("can't read when the last prune ran: %s", error)


@contextlib.contextmanager
def host_lock(state: StateDir) -> Iterator[bool]:
    """This host's prune lock, without waiting: True when taken. A server's rounds and
    `creamery prune`'s real runs take it, so two of them never remove side by side."""
    state.locks.mkdir(parents=True, exist_ok=True)
    path: Path = state.locks / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _last_run(state: StateDir) -> float | None:
    stored = state.store.stat(LAST_RUN_KEY)
    if stored is None:
        return None
    try:
        moment = float(read_all(state.store, stored).decode())
    except (FileNotFoundError, ValueError, UnicodeDecodeError):
        return None
    return moment if math.isfinite(moment) else None  # `inf` would never be due


def _set_last_run(state: StateDir, moment: float) -> None:
    state.store.put(LAST_RUN_KEY, f"{moment:.3f}".encode(), if_absent=False)
