"""Supply-chain policies for the caching mirror: which upstream files are offered.

Three kinds of rule, all about upstream files (files hosted here are never subject to them):

- the cooldown (`--mirror-min-age 7d`): a file whose PEP 700 upload time is more recent than
  that is not offered yet, unless its project is exempt; when it would leave a project with
  nothing, the fallback choice decides (offer its oldest too-new release, or nothing);
- allow and deny lists (`--mirror-allow FILE`, `--mirror-deny FILE`): one project name, glob or
  name with a PEP 440 specifier a line, reloaded when the file changes (`policy_lists.py`);
- origin rules (`--mirror-origin PATTERN=MODE`): local-only, upstream-only or merged.

`Policies.decide` turns one upstream listing into a `Decision`: the listing as offered, what
was hidden and by which rule, and until when that holds (a too-new file becomes visible at a
known moment). It is pure: the mirror calls it where a listing becomes our pages and downloads.
See docs/mirror.md, "Policies".
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from packaging.utils import canonicalize_version
from packaging.version import InvalidVersion, Version

from creamery.core.headers import printable_value
from creamery.core.names import parse_filename
from creamery.mirror.listing import Listing, UpstreamFile
from creamery.mirror.policy_lists import (
    Entry,
    PatternFile,
    Patterns,
    installer_versions,
    normalize_pattern,
    parse_pattern,
    pep440_version,
    shortened,
)

log = logging.getLogger("creamery.mirror")

POLICY_HEADER = b"x-creamery-policy"  # which rule hid files or the project (docs/mirror.md)
MAX_HEADER = 1000  # characters of an X-Creamery-Policy value; more rules are counted, not named
ORIGIN_MODES = ("local-only", "upstream-only", "merged")
UNKNOWN_CHOICES = ("offer", "hide")  # files without an upload time (HTML upstreams)
FALLBACK_CHOICES = ("oldest", "none")  # when the cooldown would hide every file of a project


# ---------------------------------------------------------------- origin rules


def parse_origin(text: str) -> tuple[str, str]:
    """`PATTERN=MODE` -> (normalized pattern, mode); ValueError saying why."""
    pattern, sep, mode = text.partition("=")
    mode = mode.strip().lower()
    if not sep or mode not in ORIGIN_MODES:
        raise ValueError(
            f"{shortened(text)}: expected PATTERN=MODE, MODE one of {', '.join(ORIGIN_MODES)}"
        )
    return parse_pattern(pattern), mode


class OriginRules:
    """Where a project's files come from, by name or glob; the most specific pattern decides.
    `--mirror-merge NAME` is `NAME=merged`; a `--mirror-origin` rule for the same name wins."""

    def __init__(self, rules: Iterable[tuple[str, str]] = (), merged: Iterable[str] = ()) -> None:
        self.modes = {normalize_pattern(name): "merged" for name in merged}
        self.modes.update(rules)
        self._patterns = Patterns(self.modes)

    def __bool__(self) -> bool:
        return bool(self.modes)

    def of(self, project: str) -> tuple[str, str] | None:
        """(mode, pattern) for *project*; None: today's default (hosted: local, else upstream)."""
        pattern = self._patterns.match(project)
        return None if pattern is None else (self.modes[pattern], pattern)


# ---------------------------------------------------------------- the cooldown


def upload_seconds(upload_time: str | None) -> float | None:
    """PEP 700's ISO 8601 upload time as a POSIX time; None when missing or unreadable."""
    if not upload_time:
        return None
    try:
        moment = datetime.fromisoformat(upload_time.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None  # PEP 700 says UTC; a time without a zone is not one we can trust
    return moment.timestamp()


def format_duration(seconds: float) -> str:
    """How an age is named in headers and logs: the largest unit that divides it."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


@dataclass(frozen=True)
class MinAge:
    seconds: float
    exempt: Patterns = field(default_factory=lambda: Patterns(()))
    unknown: str = "offer"  # UNKNOWN_CHOICES
    fallback: str = "oldest"  # FALLBACK_CHOICES

    @property
    def rule(self) -> str:
        return f"mirror-min-age {format_duration(self.seconds)}"


# ---------------------------------------------------------------- decisions


@dataclass(frozen=True, slots=True)
class Hidden:
    """An upstream file not offered, and why."""

    filename: str
    version: str
    rule: str  # "mirror-min-age 7d", "mirror-deny deny.txt:3 partly-pkg>=2.0", ...
    detail: str  # for a person: "uploaded ..., offered from ..."

    @property
    def kind(self) -> str:
        """The rule's name, for metrics: mirror-min-age, mirror-allow, mirror-deny."""
        return self.rule.split(" ", 1)[0]

    def reason(self) -> str:
        return f"{self.rule}: {self.detail}" if self.detail else self.rule


@dataclass(frozen=True)
class Decision:
    """What one listing becomes under the policies in force."""

    listing: Listing | None  # as offered; None: the project is blocked
    hidden: tuple[Hidden, ...] = ()
    blocked: str | None = None  # the rule that blocks the whole project
    valid_until: float = math.inf  # decide again from this time on (a file becomes visible)
    fallback: str | None = None  # a version offered although too new (every one was)
    by_name: dict[str, Hidden] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {h.filename: h for h in self.hidden})

    def refusal(self, filename: str) -> Hidden | None:
        return self.by_name.get(filename)

    def header(self) -> str | None:
        """`X-Creamery-Policy`: each rule that hid something, and how much; None: nothing."""
        if self.blocked is not None:
            return self.blocked
        counts: dict[str, int] = {}
        for item in self.hidden:
            counts[item.rule] = counts.get(item.rule, 0) + 1
        parts = [f"{rule} hid {n} file{'s' if n != 1 else ''}" for rule, n in counts.items()]
        if self.fallback is not None:
            parts.insert(0, f"mirror-min-age-fallback offered {self.fallback}, newer than the age")
        return _bounded(parts)

    def kinds(self) -> list[str]:
        """The rules that decided something here, for metrics (each once)."""
        if self.blocked is not None:
            return [self.blocked.split(" ", 1)[0]]
        kinds = [item.kind for item in self.hidden]
        if self.fallback is not None:
            kinds.append("mirror-min-age")
        return list(dict.fromkeys(kinds))


def _bounded(parts: Sequence[str]) -> str | None:
    """Parts joined, as many as fit in MAX_HEADER (clients refuse huge header lines); the
    rest counted. Every hidden file is still listed, with its rule, on the UI's page."""
    kept: list[str] = []
    size = 0
    for at, part in enumerate(parts):
        tail = f"; and {len(parts) - at} more rules (the project's page lists them)"
        if size + len(part) + 2 + len(tail) > MAX_HEADER and at < len(parts) - 1:
            return "; ".join(kept) + tail
        kept.append(part)
        size += len(part) + 2
    return "; ".join(kept) or None


class Policies:
    """The mirror's rules in force; `decide` and `blocked` read the lists in force, which
    `refresh` (blocking: in a worker thread, when `due`) reloads when their files change."""

    def __init__(
        self,
        min_age: MinAge | None = None,
        allow: PatternFile | None = None,
        deny: PatternFile | None = None,
        origins: OriginRules | None = None,
    ) -> None:
        self.min_age = min_age
        self.allow = allow
        self.deny = deny
        self.origins = origins or OriginRules()

    @property
    def filters(self) -> bool:
        """Do any rules hide upstream files? (If not, deciding is skipped.)"""
        return self.min_age is not None or self.allow is not None or self.deny is not None

    def generation(self) -> tuple[int, int]:
        """Changes when a list file is reloaded: decisions made before are stale."""
        allow = self.allow.generation if self.allow is not None else 0
        deny = self.deny.generation if self.deny is not None else 0
        return (allow, deny)

    def due(self) -> bool:
        """Is it time to look at a list file? (Cheap: no I/O.)"""
        return any(listed.due() for listed in (self.allow, self.deny) if listed is not None)

    def refresh(self) -> None:
        """Look at the list files, reload those that changed (blocking: in a worker thread)."""
        for listed in (self.allow, self.deny):
            if listed is not None:
                listed.refresh()

    def origin(self, project: str) -> tuple[str, str] | None:
        return self.origins.of(project)

    def blocked(self, project: str) -> str | None:
        """The rule keeping the whole project out: a whole-project deny entry, or an allow
        list that names no version of it."""
        if self.deny is not None:
            for entry in self.deny.current().matching(project):
                if entry.specifier is None:
                    return f"mirror-deny {entry.where}"
        if self.allow is not None:
            allowed = self.allow.current()
            if not allowed.matching(project):
                return f"mirror-allow {allowed.source}: {project} is not listed"
        return None

    def file_rule(self, project: str, filename: str) -> Hidden | None:
        """Allow/deny on one file of *project* (the whole project is not blocked)."""
        return self.versions_of(project)(installer_versions(filename, project))

    def unlisted_age(
        self, project: str, filename: str, upload_time: str | None, now: float
    ) -> Hidden | None:
        """The cooldown on a cached file that no listing in hand lists (the upstream forgot
        the release, or no upstream answers): by its last known *upload_time*, None: unknown,
        so `--mirror-min-age-unknown` decides. No fallback: one file, not a project's last."""
        version = installer_versions(filename, project)[0]
        young = self._too_new(project, filename, upload_time, version, now)
        return young[0] if young is not None else None

    def versions_of(self, project: str) -> Callable[[tuple[str, ...]], Hidden | None]:
        """The allow/deny judgement of *project*'s versions: the entries naming it are found
        once (not per file: a listing may hold thousands), each version judged once. A file
        is judged by every version an installer may read in its name (`installer_versions`):
        hidden if a deny entry names any of them, or an allow list does not name them all."""
        denying: tuple[Entry, ...] = ()
        if self.deny is not None:
            denying = tuple(e for e in self.deny.current().matching(project) if e.specifier)
        allowing: tuple[Entry, ...] = ()
        source = ""
        if self.allow is not None:
            allowed = self.allow.current()
            allowing, source = allowed.matching(project), allowed.source
        named = ", ".join(entry.text for entry in allowing[:3])  # said per hidden file: short
        if len(allowing) > 3:
            named += f" and {len(allowing) - 3} more entries"
        judged: dict[tuple[str, ...], Hidden | None] = {}

        def judge(versions: tuple[str, ...]) -> Hidden | None:
            if versions in judged:
                return judged[versions]
            verdict = None
            shown = versions[0]
            read = [pep440_version(v) for v in versions]  # once, not once per entry
            found = next((e for e in denying for v in read if e.covers(v, unreadable=True)), None)
            if found is not None:
                verdict = Hidden("", shown, f"mirror-deny {found.where}", "")
            elif allowing and not all(
                any(e.covers(v, unreadable=False) for e in allowing) for v in read
            ):
                verdict = Hidden("", shown, f"mirror-allow {source}", f"only {named}")
            judged[versions] = verdict
            return verdict

        return judge

    def decide(self, listing: Listing, now: float) -> Decision:
        """The listing as offered at *now*."""
        blocked = self.blocked(listing.project)
        if blocked is not None:
            return Decision(None, blocked=blocked)
        offered: list[UpstreamFile] = []
        hidden: list[Hidden] = []
        too_new: list[tuple[UpstreamFile, Hidden]] = []
        valid_until = math.inf
        judge = self.versions_of(listing.project)
        for item in listing.files:
            versions = installer_versions(item.filename, listing.project)
            version = versions[0]
            rule = judge(versions)
            if rule is not None:
                hidden.append(dataclasses.replace(rule, filename=item.filename))
                continue
            young = self._too_new(listing.project, item.filename, item.upload_time, version, now)
            if young is None:
                offered.append(item)
                continue
            too_new.append((item, young[0]))
            valid_until = min(valid_until, young[1])
        fallback = None
        if too_new and not offered and self.min_age is not None:
            fallback = self._fallback(listing.project, too_new)
        if fallback is not None:
            offered = [item for item, h in too_new if h.version == fallback]
            too_new = [(item, h) for item, h in too_new if h.version != fallback]
        hidden += [h for _, h in too_new]
        if not hidden:
            return Decision(listing, valid_until=valid_until, fallback=fallback)
        chosen = {item.filename for item in offered}
        kept = [item for item in listing.files if item.filename in chosen]
        shown = Decision(
            dataclasses.replace(
                listing,
                files=tuple(kept),
                versions=self._versions(listing, kept, hidden, judge),
            ),
            hidden=tuple(hidden),
            valid_until=valid_until,
            fallback=fallback,
        )
        return shown

    def _too_new(
        self, project: str, filename: str, upload_time: str | None, version: str, now: float
    ) -> tuple[Hidden, float] | None:
        """(why, when it becomes visible) for a file the cooldown hides; None: offered."""
        age = self.min_age
        if age is None or age.exempt.match(project) is not None:
            return None
        uploaded = upload_seconds(upload_time)
        if uploaded is None:
            if age.unknown == "offer":
                return None
            return Hidden(filename, version, age.rule, "upload time unknown"), math.inf
        visible_at = uploaded + age.seconds
        if visible_at <= now:
            return None
        detail = f"uploaded {_iso(uploaded)}, offered from {_iso(visible_at)}"
        return Hidden(filename, version, age.rule, detail), visible_at

    def _fallback(self, project: str, too_new: Sequence[tuple[UpstreamFile, Hidden]]) -> str | None:
        """Every file left is too new: the oldest release (the lowest version installers can
        take: a PEP 440 one before any they can't read, one with a file not yanked before a
        yanked one, which they skip unless it is pinned), or None."""
        assert self.min_age is not None
        if self.min_age.fallback == "none":
            return None
        yanked = {h.version for item, h in too_new if item.yanked is not None}
        yanked -= {h.version for item, h in too_new if item.yanked is None}
        return min({h.version for _, h in too_new}, key=lambda v: (v in yanked, _version_order(v)))

    @staticmethod
    def _versions(
        listing: Listing,
        kept: Sequence[UpstreamFile],
        hidden: Sequence[Hidden],
        judge: Callable[[tuple[str, ...]], Hidden | None],
    ) -> tuple[str, ...]:
        """PEP 700 `versions` without those that lost every file to a rule, nor those an
        allow or deny list excludes (listed upstream without files)."""
        if not listing.versions:
            return ()
        offered = {_canonical(p.version) for f in kept if (p := parse_filename(f.filename))}
        gone = {_canonical(h.version) for h in hidden} - offered
        return tuple(
            v for v in listing.versions if _canonical(v) not in gone and judge((v,)) is None
        )


def _canonical(version: str) -> str:
    try:
        return canonicalize_version(version)
    except InvalidVersion:  # packaging < 22 never raises; later ones may
        return version.lower()


def _version_order(version: str) -> tuple[int, Version | str]:
    try:
        return (0, Version(version))
    except InvalidVersion:
        return (1, version)


def policy_header(said: str) -> tuple[bytes, bytes]:
    """One legal header line, whatever a file path or an upstream's filename holds: printable
    ASCII (anything else escaped, controls included), at most MAX_HEADER characters."""
    text = printable_value(" ".join(said.split()), MAX_HEADER, cut=" ...")
    return POLICY_HEADER, text.encode("ascii")
