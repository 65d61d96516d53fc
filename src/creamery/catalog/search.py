"""Search over the catalog's projects: by name (normalized) and by the latest release's summary.

An in-memory index kept current with `catalog.index`, which the change feed updates on every
server, replicas included: each project carries the index generation it last changed at, so a
query (and the background thread) brings up to date only the projects whose generation moved,
and forgets those that are gone. That costs no file read: names match as soon as the index
knows a file. Summaries come from core metadata (`FactsCache.metadata`, which may read the
file), so only the background thread fetches them; `epoch` grows as they arrive, for caches
of rendered results.

Ranking: the exact normalized name, then names that start with the query, then names that
contain it, then summaries that hold every word of it (case-insensitive); within a group,
shorter names first, then alphabetical.
"""

from __future__ import annotations

import bisect
import logging
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Hashable
from typing import NamedTuple

from packaging.metadata import RawMetadata

from creamery.catalog.facts import FactsCache
from creamery.catalog.index import Distribution, Index
from creamery.catalog.versions import Release, latest_release, release_metadata, releases

log = logging.getLogger("creamery.search")

MAX_QUERY = 200  # characters; longer queries are refused (`QueryTooLong`)
_SEPARATORS = re.compile(r"[-_.\s]+")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]+")
_VIEWS = 16  # views whose visible projects are kept
_BATCH_SECONDS = 0.25  # summaries are published (the epoch grows) at least this often


class QueryTooLong(ValueError):
    """A query longer than MAX_QUERY characters."""


class Hit(NamedTuple):
    project: str  # normalized
    name: str  # as its metadata (or, until that is read, its file name) spells it
    version: str  # of the latest release
    summary: str  # "" until read, or when the release has none
    uploaded_ns: int  # the latest release's first file's upload time


class Results(NamedTuple):
    total: int  # every match the visitor may see
    hits: list[Hit]  # the first `limit` of them, best first
    complete: bool  # every project's summary was known when this was searched


def clean_query(text: str) -> str:
    """The query as searched: control characters become spaces, runs of spaces one, no
    spaces at the ends. QueryTooLong beyond MAX_QUERY characters."""
    cleaned = " ".join(_CONTROL.sub(" ", text).split())
    if len(cleaned) > MAX_QUERY:
        raise QueryTooLong(f"the query is longer than {MAX_QUERY} characters")
    return cleaned


def name_query(text: str) -> str:
    """The query normalized the way project names are (PEP 503; spaces count as separators)."""
    return _SEPARATORS.sub("-", text).strip("-").lower()


class _Entry:
    """One project as search knows it; updated in place (a query may see a mix of old and
    new fields of a project that changes meanwhile, never a broken one)."""

    __slots__ = (
        "dists",
        "folded",
        "generation",
        "name",
        "project",
        "summarized",
        "summary",
        "uploaded_ns",
        "version",
    )

    def __init__(self, project: str) -> None:
        self.project = project
        self.generation = -1
        self.dists: tuple[Distribution, ...] = ()  # the latest release's files
        self.name = project
        self.version = ""
        self.uploaded_ns = 0
        self.summary = ""
        self.folded = ""  # the summary, case-folded
        self.summarized = False  # the summary is the one of `dists`

    def hit(self) -> Hit:
        return Hit(self.project, self.name, self.version, self.summary, self.uploaded_ns)


class SearchIndex:
    def __init__(self, index: Index, facts: Callable[[], FactsCache]) -> None:
        self.index = index
        self._facts = facts  # the catalog opens its facts cache on first use
        self._entries: dict[str, _Entry] = {}
        self._order: tuple[_Entry, ...] = ()  # shorter names first, then alphabetical
        self._seen = -1  # the index generation the entries are as of
        self.epoch = 0  # grows whenever summaries arrive
        self._pending = 0  # entries whose summary is not known
        self._text_cache: dict[Hashable, _Texts] = {}  # per view: a few, oldest first out
        self._lock = threading.Lock()  # one sync or summary update at a time
        # Held by the background thread while it works (a sync, one summary's read): a fork
        # waits for it, so no lock of the index or the facts cache is held mid-way into a
        # child (gunicorn --preload forks right after the app started this thread).
        self._working = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        _instances.add(self)

    # ------------------------------------------------------------------ keeping current

    @property
    def generation(self) -> int:
        """The index generation the entries are as of (-1 before the first sync)."""
        return self._seen

    def sync(self) -> int:
        """Bring the entries up to the index (only the projects whose generation changed, no
        file read); the index generation they are as of now."""
        index = self.index
        if index.generation == self._seen:
            return self._seen
        with self._lock:
            # Read before the projects: a change after this is seen by the next sync.
            now = index.generation
            if now == self._seen:
                return now
            generations = index.generations
            projects = list(index.projects)
            entries = self._entries
            reshaped = False
            for project in projects:
                entry = entries.get(project)
                generation = generations.get(project, 0)
                if entry is not None and entry.generation == generation:
                    continue
                if entry is None:
                    entry = entries[project] = _Entry(project)
                    reshaped = True
                if not self._update(entry, generation):
                    del entries[project]
            if len(entries) != len(projects):  # removed since the last sync
                known = set(projects)
                for gone in [p for p in entries if p not in known]:
                    del entries[gone]
                reshaped = True
            if reshaped:
                self._order = tuple(sorted(entries.values(), key=_rank_in_group))
            self._pending = sum(1 for e in entries.values() if not e.summarized)
            self._seen = now
        if self._pending:
            self._wake.set()
        return now

    def _update(self, entry: _Entry, generation: int) -> bool:
        """The project's latest release from the index; False when it has no file left."""
        found = releases(self.index, entry.project)
        if not found:
            return False
        latest = latest_release(self.index, found)
        dists = tuple(latest.files)
        entry.generation = generation
        if dists != entry.dists:
            first = dists[0]
            entry.dists = dists
            entry.version = latest.version
            entry.uploaded_ns = min(d.stored.mtime_ns for d in dists)
            if not entry.summarized or entry.name.lower() != first.parsed.raw_name.lower():
                entry.name = first.parsed.raw_name
            entry.summarized = False  # the old summary stays shown until the new one is read
        return True

    def fill_summaries(self, limit: int | None = None) -> int:
        """Read the summaries not known yet (at most *limit*); how many were read. Reads
        files: for the background thread (and tests), never a request."""
        with self._lock:
            pending = [e for e in self._entries.values() if not e.summarized]
        if limit is not None:
            pending = pending[:limit]
        if not pending:
            return 0
        with self._working:  # opening the facts cache takes its locks too
            facts = self._facts()
        published = time.monotonic()
        read = 0
        for entry in pending:
            if self._stopped.is_set():
                break
            dists = entry.dists
            with self._working:
                try:
                    meta = release_metadata(facts, Release(entry.version, list(dists)))
                except OSError as error:  # gone meanwhile, or the store is away: next change
                    log.debug("no summary for %s yet: %s", entry.project, error)
                    meta = RawMetadata()
            with self._lock:
                if entry.dists is not dists:
                    continue  # changed while we read: the next round reads the new release
                summary = " ".join((meta.get("summary") or "").split())
                entry.summary, entry.folded = summary, summary.casefold()
                entry.name = meta.get("name") or entry.name
                entry.summarized = True
                self._pending -= 1
            read += 1
            if time.monotonic() - published > _BATCH_SECONDS:
                self.epoch += 1
                published = time.monotonic()
        if read:
            self.epoch += 1
        return read

    @property
    def complete(self) -> bool:
        """Is every known project's summary read?"""
        return self._pending <= 0

    def start(self, interval: float = 1.0) -> Callable[[], None]:
        """Keep current in a thread (every *interval* seconds, or at once when a query found
        summaries to read); the function that stops it. Started again in a forked worker."""
        self._stopped.clear()

        def loop() -> None:
            while not self._stopped.is_set():
                try:
                    with self._working:
                        self.sync()
                    self.fill_summaries()
                except Exception:  # a bug must not end the thread: search would go stale
                    log.exception("search index update failed")
                self._wake.wait(interval)
                self._wake.clear()

        thread = self._thread = threading.Thread(target=loop, name="creamery-search", daemon=True)
        thread.start()

        def stop() -> None:
            self._stopped.set()
            self._wake.set()
            if thread is not threading.current_thread():
                thread.join(timeout=10)

        return stop

    def _before_fork(self) -> None:
        self._working.acquire()

    def _after_fork_in_parent(self) -> None:
        self._working.release()

    def _after_fork_in_child(self) -> None:
        """The parent's thread did not come along: fresh locks, no thread (`start` again)."""
        self._working = threading.Lock()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------ searching

    def search(
        self,
        text: str,
        *,
        visible: Callable[[str], bool] | None = None,
        view: Hashable = None,
        limit: int = 100,
    ) -> Results:
        """The projects matching *text* (already `clean_query`'d), best first. *visible*
        filters what the visitor may see before anything is counted; *view* names that
        filter (`Access.view`), so what it lets through is worked out once per change."""
        self.sync()
        complete = self.complete
        wanted = name_query(text)
        words = sorted(set(text.casefold().split()), key=len, reverse=True)
        if not wanted and not words:
            return Results(0, [], complete)
        texts = self._texts(visible, view)
        groups: list[tuple[int, list[int]]] = []  # per group: how many, the first lines
        if wanted:
            groups += _name_groups(texts, wanted, limit)
        if words:
            groups.append(_summary_group(texts, wanted, words, limit))
        total = 0
        hits: list[Hit] = []
        for count, lines in groups:
            total += count
            hits += [texts.shown[line].hit() for line in lines[: limit - len(hits)]]
        return Results(total, hits, complete)

    def _texts(self, visible: Callable[[str], bool] | None, view: Hashable) -> _Texts:
        """The (visible) projects' names and summaries as lines of strings, in rank order, for
        `str.find` and regular expressions to scan at C speed: a Python loop over 10,000
        entries costs more than the 20 ms a query may take."""
        order, epoch = self._order, self.epoch
        key = (visible is not None, view)
        texts = self._text_cache.get(key)
        if texts is not None and texts.order is order and texts.epoch == epoch:
            return texts
        shown = order if visible is None else tuple(e for e in order if visible(e.project))
        names = [entry.project for entry in shown]
        summaries = [entry.folded for entry in shown]
        both = [f"{entry.project}\t{entry.folded}" for entry in shown]
        texts = _Texts(order, epoch, shown, _Lines.of(names), _Lines.of(summaries), _Lines.of(both))
        if visible is None or view is not None:  # an unnamed filter can't be found again
            if len(self._text_cache) >= _VIEWS and key not in self._text_cache:
                self._text_cache.pop(next(iter(self._text_cache)), None)
            self._text_cache[key] = texts
        return texts


class _Lines(NamedTuple):
    """Lines joined as `\\n<line>\\n<line>...`: each line's newline opens it."""

    text: str
    starts: list[int]  # where each line's newline is
    line_at: dict[int, int]  # a newline's position -> its line's number

    @classmethod
    def of(cls, lines: list[str]) -> _Lines:
        starts = [0] * len(lines)
        at = 0
        for number, line in enumerate(lines):
            starts[number] = at
            at += len(line) + 1
        text = "".join("\n" + line for line in lines)
        return cls(text, starts, {at: number for number, at in enumerate(starts)})

    def holding(self, needle: str) -> list[int]:
        """The lines that hold *needle* (no newline in it), in order: one `str.find` each."""
        found: list[int] = []
        find, starts = self.text.find, self.starts
        last = len(starts) - 1
        at = find(needle)
        while at >= 0:
            line = bisect.bisect_right(starts, at) - 1
            found.append(line)
            if line >= last:
                break
            at = find(needle, starts[line + 1])
        return found

    def matching(self, pattern: re.Pattern[str], limit: int) -> tuple[int, list[int]]:
        """How many lines *pattern* (which starts with the newline) matches, and the first
        *limit* of them: counted by `findall`, without a Python loop over them."""
        first: list[int] = []
        for found in pattern.finditer(self.text):
            if len(first) >= limit:
                return len(first) + len(pattern.findall(self.text, found.start())), first
            first.append(self.line_at[found.start()])
        return len(first), first


class _Texts(NamedTuple):
    order: tuple[_Entry, ...]  # the whole order it was made of, and its epoch
    epoch: int
    shown: tuple[_Entry, ...]  # the visible entries: line n of each text is shown[n]
    names: _Lines
    summaries: _Lines
    both: _Lines  # `<name>\t<summary>`


# Up to this many occurrences, lines are found with str.find and sorted out in Python; more
# (a word of most summaries), and regular expressions count them in C.
_FEW = 1000


def _name_groups(texts: _Texts, wanted: str, limit: int) -> list[tuple[int, list[int]]]:
    """Exact name, prefixes, substrings: (count, first lines) each."""
    names = texts.names
    if names.text.count(wanted) <= _FEW:
        exact: list[int] = []
        prefix: list[int] = []
        substring: list[int] = []
        for line in names.holding(wanted):
            project = texts.shown[line].project
            if project == wanted:
                exact.append(line)
            elif project.startswith(wanted):
                prefix.append(line)
            else:
                substring.append(line)
        return [(len(exact), exact), (len(prefix), prefix), (len(substring), substring)]
    name = re.escape(wanted)
    return [
        names.matching(re.compile(f"\n{name}(?![^\n])"), limit),
        names.matching(re.compile(f"\n{name}[^\n]"), limit),
        names.matching(re.compile(f"\n(?!{name})[^\n]*?{name}"), limit),
    ]


def _summary_group(
    texts: _Texts, wanted: str, words: list[str], limit: int
) -> tuple[int, list[int]]:
    """Summaries holding every word (the longest first: likely the rarest) whose name did
    not match."""
    first, *others = words
    summaries = texts.summaries
    if summaries.text.count(first) <= _FEW:
        shown = texts.shown
        lines = [
            line
            for line in summaries.holding(first)
            if not (wanted and wanted in shown[line].project)
            and all(word in shown[line].folded for word in others)
        ]
        return len(lines), lines
    looks = "".join(f"(?=[^\n]*{re.escape(word)})" for word in words)
    unnamed = f"(?![^\t\n]*{re.escape(wanted)})" if wanted else ""
    return texts.both.matching(re.compile(f"\n{unnamed}[^\t\n]*\t{looks}"), limit)


def _rank_in_group(entry: _Entry) -> tuple[int, str]:
    return (len(entry.project), entry.project)


_instances: weakref.WeakSet[SearchIndex] = weakref.WeakSet()


def _each(method: Callable[[SearchIndex], None]) -> Callable[[], None]:
    def run() -> None:
        for search in list(_instances):
            method(search)

    return run


os.register_at_fork(
    before=_each(SearchIndex._before_fork),
    after_in_parent=_each(SearchIndex._after_fork_in_parent),
    after_in_child=_each(SearchIndex._after_fork_in_child),
)
