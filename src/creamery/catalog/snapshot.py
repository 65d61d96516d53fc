"""Index snapshots: a replica starts from the newest one instead of listing the whole bucket.

    snapshots/<serial, 20 digits>.json.gz    in the state store (`<prefix>/.creamery/`)

A snapshot is the index as of a change-feed serial: every file it holds (key, size, version,
mtime_ns and the backend's place, of the package storage) and the state of each file. The
serial is read before the index is copied, so the snapshot holds at least every change up to
it (perhaps a few after: applying those again refreshes them, harmless). A replica starting
from it loads the index with no listing, then its follower catches up from the serial (when
those records were compacted away, `Resync`: a full rescan).

- **Writing** (`write`, `Snapshots`): by any replica, when the feed moved on since the newest
  snapshot and that one is older than *interval* (default 5 min) or *changes* serials behind
  (default 1,000, which keeps a starter within the feed's backlog). `put(if_absent=True)`:
  replicas writing the same serial never clobber each other (one wins, the others stop). Then
  all but the newest *keep* (2) go. Changes made by other tools (`aws s3 cp`) are not in the
  feed: a replica started from a snapshot finds them with its periodic rescan, as every
  replica does.
- **Reading** (`load_latest`): the newest snapshot that reads whole (gzip's CRC and length,
  the format, the serial of its name) and that describes this store: for each place it names, a
  sample of its files is `stat`ed and must have that place now (a snapshot of another layout,
  a bucket copied under another name, a directory moved, is not used). A damaged snapshot is
  skipped for the one before; none usable: None, and the caller lists everything.

`StoredFile.place` is restored as written: the backend's own string (a directory's root; an
object root's URL), one shared string per place. The distributions' parsed names (project,
spelling, version, kind) are kept too, with the identity of the parser that made them (a
digest of `core/names.py`): a replica of the same version builds its index without parsing a
filename (that, not the listing, is most of a local start-up); another parses them again.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import random
import re
import sys
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, get_args

from creamery.catalog.index import Index
from creamery.core import names
from creamery.core.names import Kind, ParsedFilename
from creamery.storage import AlreadyExists, Storage, StoredFile, read_all
from creamery.storage.state import FileState

log = logging.getLogger("creamery.snapshot")

PREFIX = "snapshots"
FORMAT = "creamery-index-snapshot"
VERSION = 1
INTERVAL = 300.0  # seconds between snapshots while the feed moves
CHANGES = 1_000  # serials after which a snapshot is due sooner
KEEP = 2
SAMPLES = 3  # files `stat`ed per place to check a snapshot describes this store
_DIGITS = 20
_NAME = re.compile(rf"{PREFIX}/(\d{{{_DIGITS}}})\.json\.gz")


class Damaged(ValueError):
    """A snapshot that does not read whole, or is not one this version writes."""


class Found(NamedTuple):
    serial: int
    stored: StoredFile


def snapshot_key(serial: int) -> str:
    return f"{PREFIX}/{serial:0{_DIGITS}d}.json.gz"


# ----------------------------------------------------------------------------- the format


def parser_identity() -> str:
    """Which filename parser wrote a snapshot's parsed names: a digest of `core/names.py`
    (any change there, and the names are parsed again); "" when the source can't be read."""
    global _PARSER
    if _PARSER is None:
        try:
            _PARSER = hashlib.sha256(Path(names.__file__).read_bytes()).hexdigest()[:32]
        except (OSError, TypeError):
            _PARSER = ""
    return _PARSER


_PARSER: str | None = None


def encode(
    files: list[StoredFile],
    file_state: dict[str, FileState],
    serial: int,
    parsed: dict[str, ParsedFilename] | None = None,
) -> bytes:
    places: dict[str, int] = {}
    known = parsed or {}
    rows = []
    for f in files:
        row = [f.key, f.size, f.version, f.mtime_ns, places.setdefault(f.place, len(places))]
        name = known.get(f.key)
        if name is not None:
            row += name  # project, raw_name, version, kind
        rows.append(row)
    document = {
        "format": FORMAT,
        "version": VERSION,
        "serial": serial,
        "written_ns": time.time_ns(),
        "parser": parser_identity() if known else "",
        "places": list(places),
        "files": rows,
        "state_fields": list(FileState._fields),
        "file_state": [[relpath, *state] for relpath, state in file_state.items()],
    }
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=True)
    return gzip.compress(text.encode("ascii"), compresslevel=5, mtime=0)


class Decoded(NamedTuple):
    files: list[StoredFile]
    file_state: dict[str, FileState]
    parsed: dict[str, ParsedFilename] | None  # None: written by another parser, parse again


def decode(data: bytes, serial: int) -> Decoded:
    """The content of a snapshot named *serial*; `Damaged` if it is not whole."""
    try:
        document = json.loads(gzip.decompress(data))
    except (OSError, EOFError, zlib.error, ValueError) as error:  # BadGzipFile is an OSError
        raise Damaged(f"does not read whole ({error})") from error
    try:
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise Damaged("not an index snapshot")
        if document["version"] != VERSION or document["serial"] != serial:
            raise Damaged(f"version {document['version']}, serial {document['serial']}")
        if document["state_fields"] != list(FileState._fields):
            raise Damaged("written by a version with other file state")
        places = [_text(place) for place in document["places"]]
        parser = document.get("parser")
        files, parsed = _rows(
            document["files"], places, bool(parser) and parser == parser_identity()
        )
        file_state = {_text(row[0]): _state(row[1:]) for row in document["file_state"]}
    except Damaged:
        raise
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise Damaged(f"malformed ({error!r})") from error
    return Decoded(files, file_state, parsed)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


def _rows(
    rows: Any, places: list[str], with_names: bool
) -> tuple[list[StoredFile], dict[str, ParsedFilename] | None]:
    """The StoredFiles of the rows (and the parsed names they carry, *with_names*), every
    field's type checked. One loop, no call per field: 40,000 rows are most of a start-up."""
    files: list[StoredFile] = []
    parsed: dict[str, ParsedFilename] = {}
    intern, kinds = sys.intern, _KINDS
    for row in rows:
        key, size, version, mtime_ns, place = row[:5]
        if (
            type(key) is not str
            or type(size) is not int
            or type(mtime_ns) is not int
            or (type(version) is not str and type(version) is not int)
            or type(place) is not int
        ):
            raise TypeError(f"a row of other types: {row!r:.200}")
        files.append(StoredFile(key, size, version, mtime_ns, places[place]))
        if with_names and len(row) > 5:
            project, raw_name, spelled, kind = row[5:]
            if type(project) is not str or type(raw_name) is not str or kind not in kinds:
                raise TypeError(f"a parsed name of other types: {row!r:.200}")
            # Interned, as the parser does: 40,000 files share a few thousand names, versions.
            parsed[key] = ParsedFilename(
                intern(project), intern(raw_name), intern(_text(spelled)), kind
            )
    return files, parsed if with_names else None


_KINDS = frozenset(get_args(Kind))


def _state(values: Any) -> FileState:
    if not all(isinstance(v, bool) for v in values):
        raise TypeError("not a file state")
    return FileState(*values)


# ----------------------------------------------------------------------------- the store


def listed(store: Storage) -> list[Found]:
    """The snapshots in *store*, newest first (one listing)."""
    found = [
        Found(int(match.group(1)), stored)
        for stored in store.scan(PREFIX)
        if (match := _NAME.fullmatch(stored.key)) is not None
    ]
    return sorted(found, reverse=True)


def write(store: Storage, index: Index, serial: int, *, keep: int = KEEP) -> bool:
    """Put the snapshot of *index* at *serial* (read before this call: the index holds every
    change up to it), then delete all but the newest *keep*. False when a snapshot of that
    serial exists (another replica's: left alone). Raises OSError when the store fails."""
    files, file_state, parsed = index.snapshot()
    body = encode(files, file_state, serial, parsed)
    try:
        store.put(snapshot_key(serial), body, if_absent=True)
    except AlreadyExists:
        return False
    log.info("index snapshot at serial %d: %d files, %d bytes", serial, len(files), len(body))
    prune(store, keep)
    return True


def prune(store: Storage, keep: int = KEEP) -> int:
    """Delete all snapshots but the newest *keep*; how many went (several replicas may)."""
    return sum(store.delete(found.stored.key) for found in listed(store)[keep:])


def load_latest(store: Storage, index: Index, *, storage: Storage | None = None) -> int | None:
    """Load *index* from the newest usable snapshot in *store* (the state store); its serial,
    or None: nothing usable, list everything. *storage*: the package storage the snapshot must
    describe (default: the index's). Raises OSError when the store does not answer."""
    packages = index.storage if storage is None else storage
    for found in listed(store):
        try:
            data = read_all(store, found.stored)
            files, file_state, parsed = decode(data, found.serial)
        except FileNotFoundError:
            continue  # pruned since the listing: an older one, or a newer one next start
        except Damaged as error:
            log.warning("skipping index snapshot %s: %s", found.stored.key, error)
            continue
        problem = _describes(packages, files)
        if problem is not None:
            log.warning("not using index snapshot %s: %s", found.stored.key, problem)
            return None
        index.load_snapshot(files, file_state, parsed)
        log.info("index restored from snapshot at serial %d", found.serial)
        return found.serial
    return None


def _describes(storage: Storage, files: list[StoredFile]) -> str | None:
    """None when *files* look like *storage* now: for each place, one of a few sampled files
    (the first, the last, one at random) is there with that place. Else the problem."""
    by_place: dict[str, list[StoredFile]] = {}
    for stored in files:
        by_place.setdefault(stored.place, []).append(stored)
    for place, stored_files in by_place.items():
        picks = {0, len(stored_files) - 1, random.randrange(len(stored_files))}
        places = [storage.stat(stored_files[i].key) for i in sorted(picks)[:SAMPLES]]
        if not any(now is not None and now.place == place for now in places):
            found = next((now.place for now in places if now is not None), None)
            return f"its files in {place} are not there" + (f" (in {found})" if found else "")
    return None


class Snapshots:
    """When to write a snapshot, and a thread that does (one per replica)."""

    def __init__(
        self,
        store: Storage,
        index: Index,
        *,
        interval: float = INTERVAL,
        changes: int = CHANGES,
        keep: int = KEEP,
    ) -> None:
        if interval <= 0 or changes < 1 or keep < 1:
            raise ValueError("interval, changes and keep must be positive")
        self.store = store
        self.index = index
        self.interval = interval
        self.changes = changes
        self.keep = keep

    def load(self) -> int | None:
        return load_latest(self.store, self.index)

    def due(self, serial: int) -> bool:
        """Is a snapshot at *serial* due? (One listing of the few snapshots.)"""
        snapshots = listed(self.store)
        if not snapshots:
            return True  # even at serial 0: the next replica starts without a listing
        newest = snapshots[0]
        if serial <= newest.serial:
            return False
        age = (time.time_ns() - newest.stored.mtime_ns) / 1e9
        return serial - newest.serial >= self.changes or age >= self.interval

    def maybe_write(self, serial: int) -> bool:
        """Write a snapshot at *serial* if one is due; True when this replica wrote it."""
        return self.due(serial) and write(self.store, self.index, serial, keep=self.keep)

    def start(self, applied: Callable[[], int], check: float | None = None) -> Callable[[], None]:
        """Every *check* seconds (default: a fifth of the interval, jittered so replicas don't
        look at once), write a snapshot at `applied()` when one is due. Returns the stopper.
        Start it once the index is loaded."""
        every = self.interval / 5 if check is None else check
        stopped = threading.Event()

        def loop() -> None:
            failing = False
            while not stopped.wait(every * random.uniform(0.5, 1.5)):
                try:
                    self.maybe_write(applied())
                except OSError as error:  # the store is down: once per outage
                    if not failing:
                        log.warning("can't write an index snapshot (%s): retrying", error)
                        failing = True
                    continue
                except Exception:
                    log.exception("writing an index snapshot failed")
                    continue
                failing = False

        thread = threading.Thread(target=loop, name="creamery-snapshot", daemon=True)
        thread.start()

        def stop() -> None:
            stopped.set()
            if thread is not threading.current_thread():
                thread.join(timeout=10)

        return stop
