"""The mirror's allow and deny lists (`--mirror-allow FILE`, `--mirror-deny FILE`) and the
name patterns every policy uses.

A list file holds one entry a line: a project name, a glob (`evil-*`) or a name with a PEP 440
specifier (`partly-pkg>=2.0`: only those versions); `#` comments and blank lines are skipped;
names and globs are PEP 503-normalized. A file is reloaded when it changes (one stat a second
at most, in a worker thread); a file that becomes unreadable or invalid keeps the last good
list. An entry judges a file by every version an installer may read in its name (`Entry.
covers`, `installer_versions`), so no spelling slips past a deny. `policy.py` decides with them.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from creamery.core.config import ConfigError
from creamery.core.names import SDIST_SUFFIXES, parse_filename
from creamery.core.operator_files import OperatorFileError, read_with_stat

log = logging.getLogger("creamery.mirror")

MAX_FILE_BYTES = 1 << 20  # a list file larger than this is refused unread
MAX_LINE = 500  # characters of one entry, comments excluded
MAX_GLOBS = 10_000  # each glob is tried on each project name: fewer, wider ones
RELOAD_SECONDS = 1.0  # a list file is looked at (one stat) at most this often

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


def shortened(text: str, limit: int = 60) -> str:
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
            f"{shortened(text)} is not a project name or glob (letters, digits, . _ - * ?)"
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


def pep440_version(version: str) -> Version | None:
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
        raise PolicyError(f"{where}: {shortened(text)} holds a control or invisible character")
    match = _ENTRY.fullmatch(text)
    if match is None:
        raise PolicyError(
            f"{where}: {shortened(text)} is not a project name, a glob such as evil-*,"
            " or a name with a version specifier such as partly-pkg>=2.0"
        )
    name, rest = match.groups()
    specifier = None
    if rest:
        try:
            specifier = SpecifierSet(rest)
        except InvalidSpecifier:
            raise PolicyError(
                f"{where}: {shortened(text)}: {shortened(rest)} is not a PEP 440 version specifier"
                " (such as >=2.0)"
            ) from None
        if not str(specifier):
            raise PolicyError(f"{where}: {shortened(rest)} specifies no version")
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
        try:  # a FIFO put in its place would hold the reload (and its lock) forever: refused
            raw, st = read_with_stat(self.path, "list file", MAX_FILE_BYTES)
        except OperatorFileError as error:
            raise PolicyError(f"{self.path}: {error.problem}") from None
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
