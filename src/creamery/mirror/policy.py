"""Supply-chain policies for the caching mirror: which upstream files are offered.

Three kinds of rule, all about upstream files (files hosted here are never subject to them):

- the cooldown (`--mirror-min-age 7d`): a file whose PEP 700 upload time is more recent than
  that is not offered yet, unless its project is exempt; when it would leave a project with
  nothing, the fallback choice decides (offer its oldest too-new release, or nothing);
- allow and deny lists (`--mirror-allow FILE`, `--mirror-deny FILE`): one project name, glob or
  name with a PEP 440 specifier a line, reloaded when the file changes;
- origin rules (`--mirror-origin PATTERN=MODE`): local-only, upstream-only or merged.

`Policies.decide` turns one upstream listing into a `Decision`: the listing as offered, what
was hidden and by which rule, and until when that holds (a too-new file becomes visible at a
known moment). It is pure: the mirror calls it where a listing becomes our pages and downloads.
See docs/mirror.md, "Policies".
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
import math
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name, canonicalize_version
from packaging.version import InvalidVersion, Version

from creamery.core.config import ConfigError
from creamery.core.names import SDIST_SUFFIXES, parse_filename
from creamery.mirror.listing import Listing, UpstreamFile

log = logging.getLogger("creamery.mirror")

MAX_FILE_BYTES = 1 << 20  # a list file larger than this is refused unread
MAX_LINE = 500  # characters of one entry, comments excluded
MAX_GLOBS = 10_000  # each glob is tried on each project name: fewer, wider ones
RELOAD_SECONDS = 1.0  # a list file is looked at (one stat) at most this often
MAX_HEADER = 1000  # characters of an X-Creamery-Policy value; more rules are counted, not named
ORIGIN_MODES = ("local-only", "upstream-only", "merged")
UNKNOWN_CHOICES = ("offer", "hide")  # files without an upload time (HTML upstreams)
FALLBACK_CHOICES = ("oldest", "none")  # when the cooldown would hide every file of a project

_NAME = r"[A-Za-z0-9*?](?:[A-Za-z0-9._*?-]*[A-Za-z0-9*?])?"
_ENTRY = re.compile(rf"({_NAME})\s*(.*)")
_SEPARATORS = re.compile(r"[-_.]+")


class PolicyError(ConfigError):
    """A list file or rule can't be used; one line naming where (`file:line: why`)."""


def normalize_pattern(text: str) -> str:
    """A name or glob (`*`, `?`) normalized like a PEP 503 name."""
    return _SEPARATORS.sub("-", text).lower()


def _is_glob(pattern: str) -> bool:
    return "*" in pattern or "?" in pattern


def _shown(text: str, limit: int = 60) -> str:
    """A hostile line quoted, short, in a message."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


class Patterns:
    """Names and globs (normalized), matched on normalized project names; the most specific
    match first: exact names, then longer globs before shorter ones."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(dict.fromkeys(patterns))
        self._exact = frozenset(p for p in self.patterns if not _is_glob(p))
        globs = sorted((p for p in self.patterns if _is_glob(p)), key=len, reverse=True)
        self._globs = [(re.compile(fnmatch.translate(p)), p) for p in globs]

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def match(self, project: str) -> str | None:
        """The most specific pattern matching *project*, None if none does."""
        if project in self._exact:
            return project
        return next((p for compiled, p in self._globs if compiled.fullmatch(project)), None)


def parse_pattern(text: str) -> str:
    """A name or glob given as an option; ValueError for anything else."""
    if not re.fullmatch(_NAME, text.strip()):
        raise ValueError(
            f"{_shown(text)} is not a project name or glob (letters, digits, . _ - * ?)"
        )
    return normalize_pattern(text.strip())


# ---------------------------------------------------------------- allow and deny lists


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of an allow or deny list."""

    pattern: str  # normalized name or glob
    specifier: SpecifierSet | None  # None: the whole project
    source: str  # the file
    line: int
    text: str  # as written, without its comment

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line} {self.text}"

    def covers(self, version: Version | None, *, unreadable: bool) -> bool:
        """Does the entry name this version (None: one PEP 440 can't read)? Such a version
        can't be compared: *unreadable* says what a specifier makes of it (a deny list: named,
        fail closed; an allow list: not named)."""
        if self.specifier is None:
            return True
        if version is None:
            return unreadable
        return self.specifier.contains(version, prereleases=True)


def _pep440(version: str) -> Version | None:
    try:
        return Version(version)
    except InvalidVersion:
        return None


def installer_versions(filename: str, project: str) -> tuple[str, ...]:
    """Every version an installer may read in *filename*, listed for *project*: ours, and
    pip's and uv's, which differ for odd names (`evil-2-0.tar.gz` of `evil` is 2.post0 to
    them: the version is what follows the project's name; `evil_2-0.tar.gz` is 2.post0 to uv;
    `evil-2.0_1-...whl` is 2.0.post1 to pip). A rule judges them all, so a file can't slip
    past one by how it is spelled."""
    found: list[str] = []
    parsed = parse_filename(filename)
    if parsed is not None:
        found.append(parsed.version)
    lower = filename.lower()
    if lower.endswith(".whl"):
        parts = filename[:-4].split("-")
        if len(parts) in (5, 6):
            found += [parts[1], parts[1].replace("_", "-")]
    elif (suffix := next((s for s in SDIST_SUFFIXES if lower.endswith(s)), None)) is not None:
        stem = filename[: -len(suffix)]
        for at, char in enumerate(stem):  # pip: after a dash that ends the project's name
            if char == "-" and canonicalize_name(stem[:at]) == project:
                found.append(stem[at + 1 :])
        # uv: after as many characters as the name has, and one more, whatever it is.
        if len(stem) > len(project) + 1 and canonicalize_name(stem[: len(project)]) == project:
            found.append(stem[len(project) + 1 :])
    return tuple(dict.fromkeys(found)) or ("",)


def parse_entry(line: str, source: str, number: int) -> Entry | None:
    """One line; None for a blank or comment line; PolicyError (`file:line: why`) otherwise."""
    text = line.split("#", 1)[0].strip(" \t\r")
    if not text:
        return None
    where = f"{source}:{number}"
    if len(text) > MAX_LINE:
        raise PolicyError(f"{where}: longer than {MAX_LINE} characters")
    if not text.replace("\t", " ").isprintable():  # it would reach a header
        raise PolicyError(f"{where}: {_shown(text)} holds a control or invisible character")
    match = _ENTRY.fullmatch(text)
    if match is None:
        raise PolicyError(
            f"{where}: {_shown(text)} is not a project name, a glob such as evil-*,"
            " or a name with a version specifier such as partly-pkg>=2.0"
        )
    name, rest = match.groups()
    specifier = None
    if rest:
        try:
            specifier = SpecifierSet(rest)
        except InvalidSpecifier:
            raise PolicyError(
                f"{where}: {_shown(text)}: {_shown(rest)} is not a PEP 440 version specifier"
                " (such as >=2.0)"
            ) from None
        if not str(specifier):
            raise PolicyError(f"{where}: {_shown(rest)} specifies no version")
    return Entry(normalize_pattern(name), specifier, source, number, text)


@dataclass(frozen=True)
class PatternList:
    """A parsed allow or deny list."""

    source: str
    entries: tuple[Entry, ...] = ()
    _exact: dict[str, tuple[Entry, ...]] = field(default_factory=dict, repr=False)
    _globs: list[tuple[re.Pattern[str], Entry]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        exact: dict[str, list[Entry]] = {}
        for entry in self.entries:
            if _is_glob(entry.pattern):
                self._globs.append((re.compile(fnmatch.translate(entry.pattern)), entry))
            else:
                exact.setdefault(entry.pattern, []).append(entry)
        self._exact.update({name: tuple(found) for name, found in exact.items()})

    @classmethod
    def parse(cls, text: str, source: str) -> PatternList:
        if len(text) > MAX_FILE_BYTES:
            raise PolicyError(f"{source}: larger than {MAX_FILE_BYTES} bytes")
        entries: list[Entry] = []
        globs = 0
        # Lines as an editor shows them: "\n" or "\r\n" ends one (not the other characters
        # splitlines() splits at, which a line is refused for); a leading BOM is no entry.
        for number, line in enumerate(text.removeprefix("\ufeff").split("\n"), 1):
            entry = parse_entry(line, source, number)
            if entry is None:
                continue
            globs += _is_glob(entry.pattern)
            if globs > MAX_GLOBS:
                raise PolicyError(
                    f"{source}:{number}: more than {MAX_GLOBS} globs: use fewer, wider ones"
                )
            entries.append(entry)
        return cls(source, tuple(entries))

    def matching(self, project: str) -> tuple[Entry, ...]:
        """The entries naming *project*: exact names first, then globs in file order."""
        globbed = tuple(entry for compiled, entry in self._globs if compiled.fullmatch(project))
        return self._exact.get(project, ()) + globbed


class PatternFile:
    """`--mirror-allow` / `--mirror-deny`: reloaded when the file changes. `current` is the
    list in force (no I/O); `refresh`, called in a worker thread when `due` (once a second at
    most), looks at the file (one stat) and reloads it once it has stayed unchanged from one
    look to the next or was last written a second ago or more, so a file caught half-written
    (truncated, then written) is not loaded.
    A file that becomes unreadable or invalid keeps the previous list and logs one error line;
    callers never wait for a reload another caller is doing. The first load raises PolicyError.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._signature: tuple[int, ...] | None = None
        self._changed: tuple[int, ...] | None = None  # seen at the last look, not loaded yet
        self._checked = -RELOAD_SECONDS
        self._problem: str | None = None
        self.generation = 0  # counts the reloads: decisions made before are remade
        self.entries = self.load()

    def load(self) -> PatternList:
        try:
            # Non-blocking: a FIFO put in its place would hold the reload (and its lock) forever.
            with open(os.open(self.path, os.O_RDONLY | os.O_NONBLOCK), "rb") as file:
                st = os.fstat(file.fileno())
                if not stat.S_ISREG(st.st_mode):
                    raise PolicyError(f"{self.path}: not a regular file")
                raw = file.read(MAX_FILE_BYTES + 1)
        except OSError as error:
            raise PolicyError(f"{self.path}: can't be read: {error.strerror or error}") from None
        if len(raw) > MAX_FILE_BYTES:
            raise PolicyError(f"{self.path}: larger than {MAX_FILE_BYTES} bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise PolicyError(f"{self.path}: not UTF-8") from None
        entries = PatternList.parse(text, str(self.path))
        self._signature = _signature(st)
        self._checked = self._clock()
        return entries

    def current(self) -> PatternList:
        return self.entries

    def due(self) -> bool:
        return self._clock() - self._checked >= RELOAD_SECONDS

    def refresh(self) -> None:
        """Look at the file if it is time to; reload it when it changed and has settled."""
        if not self._lock.acquire(blocking=False):
            return  # another thread is looking: the list in force stays meanwhile
        try:
            now = self._clock()
            if now - self._checked >= RELOAD_SECONDS:
                self._checked = now
                self._look()
        finally:
            self._lock.release()

    def _look(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError as error:
            self._keep(f"{self.path}: can't be read: {error.strerror or error}")
            return
        signature = _signature(st)
        if signature == self._signature:
            self._changed = None
            return
        written_just_now = time.time() - st.st_mtime < RELOAD_SECONDS
        if signature != self._changed and written_just_now:
            self._changed = signature  # changed since the last look: maybe still being written
            return
        self._changed = None
        try:
            entries = self.load()
        except PolicyError as error:
            self._signature = signature  # said once, until the file changes again
            self._keep(str(error))
            return
        self.entries = entries
        self.generation += 1
        self._problem = None
        log.warning("%s: reloaded (%d entries)", self.path, len(entries.entries))

    def _keep(self, problem: str) -> None:
        if problem != self._problem:
            log.error("%s; the previous list stays in force", problem)
            self._problem = problem


def _signature(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


# ---------------------------------------------------------------- origin rules


def parse_origin(text: str) -> tuple[str, str]:
    """`PATTERN=MODE` -> (normalized pattern, mode); ValueError saying why."""
    pattern, sep, mode = text.partition("=")
    mode = mode.strip().lower()
    if not sep or mode not in ORIGIN_MODES:
        raise ValueError(
            f"{_shown(text)}: expected PATTERN=MODE, MODE one of {', '.join(ORIGIN_MODES)}"
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
            read = [_pep440(v) for v in versions]  # once, not once per entry
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
            young = self._too_new(listing.project, item, version, now)
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
        self, project: str, item: UpstreamFile, version: str, now: float
    ) -> tuple[Hidden, float] | None:
        """(why, when it becomes visible) for a file the cooldown hides; None: offered."""
        age = self.min_age
        if age is None or age.exempt.match(project) is not None:
            return None
        uploaded = upload_seconds(item.upload_time)
        if uploaded is None:
            if age.unknown == "offer":
                return None
            return Hidden(item.filename, version, age.rule, "upload time unknown"), math.inf
        visible_at = uploaded + age.seconds
        if visible_at <= now:
            return None
        detail = f"uploaded {_iso(uploaded)}, offered from {_iso(visible_at)}"
        return Hidden(item.filename, version, age.rule, detail), visible_at

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
