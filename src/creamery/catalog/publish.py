"""Publishing an accepted upload: all or nothing.

The order (issue 8, `docs/architecture.md`): the upload was spooled outside the package
directory and validated; here, under a lock on the filename, everything that takes disk space
is written and flushed first (the signature, the provenance, the facts computed at upload:
digests and core metadata, for the very bytes published), each replacing its old version
with a backup kept; then the distribution is linked (or, with `--overwrite`, renamed) into
place: that is the commit point. If anything fails before it, every step is undone and the
old state is back; the change is recorded for other processes last (`Catalog.record`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from creamery.catalog.facts import StoredFacts, file_version
from creamery.catalog.index import Distribution, Index
from creamery.core import durable
from creamery.core.names import SIGNATURE, parse_filename, same_file_key
from creamery.storage import AlreadyExists as AlreadyExists
from creamery.storage import Storage, StoredFile, read_all
from creamery.storage.state import CORE_METADATA, FACTS, PROVENANCE, StateDir

_FALLBACK_NAME_MAX = 255


class NameTooLong(ValueError):
    """A name the upload would create does not fit the file system."""


@dataclass
class Upload:
    filename: str
    spool: Path  # the validated content, closed, in the scratch area
    directory: str = ""  # the relpath of its directory ("": the top of the upload root)
    signature: bytes | None = None
    provenance: bytes | None = None
    digests: dict[str, str] = field(default_factory=dict)  # computed while it streamed in
    metadata: bytes | None = None  # the core metadata (METADATA, PKG-INFO) read from it
    metadata_read: bool = False  # False: not looked for (the facts cache reads it later)

    @property
    def relpath(self) -> str:
        return f"{self.directory}/{self.filename}" if self.directory else self.filename


def name_max(directory: Path) -> int:
    """The longest file name (in bytes) the file system under *directory* accepts."""
    for candidate in (directory, *directory.parents):
        try:
            return os.pathconf(candidate, "PC_NAME_MAX")
        except FileNotFoundError:
            continue
        except (OSError, ValueError):
            break
    return _FALLBACK_NAME_MAX


def check_names_fit(filename: str, upload_root: Path, state_dir: Path) -> None:
    """Every name an upload creates must fit: the file and its signature in the upload root,
    the file's entry in the state directory. A name too long is the client's fault (400)."""
    size = len(os.fsencode(filename))
    limit = min(name_max(upload_root) - len(SIGNATURE), name_max(state_dir))
    if size > limit:
        raise NameTooLong(
            f"filename too long: {size} bytes, this index accepts at most {limit}"
            f" (its signature {SIGNATURE} must fit too)"
        )


@dataclass
class _Transaction:
    """Replacements that can be undone until the commit point."""

    undo: list[Callable[[], None]] = field(default_factory=list)
    backups: list[Path] = field(default_factory=list)

    def put(self, target: Path, new: Path | None) -> None:
        """Make *new* (a flushed file) the content of *target*, or remove *target* (None)."""
        backup = durable.temp_name(target.parent)
        try:
            os.link(target, backup)
        except FileNotFoundError:
            backup_or_none: Path | None = None
        else:
            backup_or_none = backup
            self.backups.append(backup)
        if new is not None:
            durable.place(new, target, overwrite=True)
        elif backup_or_none is not None:
            target.unlink(missing_ok=True)
            durable.fsync_directory(target.parent)
        self.undo.append(lambda: _restore(target, backup_or_none))

    def put_stored(self, storage: Storage, key: str, data: bytes | None) -> None:
        """Make *data* the content of *key* in *storage*, or remove *key* (None)."""
        old = storage.stat(key)
        backup = read_all(storage, old) if old is not None else None
        if data is not None:
            storage.put(key, data, if_absent=False)
        elif old is not None:
            storage.delete(key)
        self.undo.append(lambda: _restore_stored(storage, key, backup))

    def rollback(self) -> None:
        for step in reversed(self.undo):
            with contextlib.suppress(OSError):
                step()
        self._drop_backups()

    def commit(self) -> None:
        self._drop_backups()

    def _drop_backups(self) -> None:
        for backup in self.backups:
            with contextlib.suppress(OSError):
                backup.unlink()
        self.undo.clear()
        self.backups.clear()


def _restore(target: Path, backup: Path | None) -> None:
    if backup is None:
        target.unlink(missing_ok=True)
    else:
        os.replace(backup, target)
    durable.fsync_directory(target.parent)


def _restore_stored(storage: Storage, key: str, backup: bytes | None) -> None:
    if backup is None:
        storage.delete(key)
    else:
        storage.put(key, backup, if_absent=False)


@dataclass(frozen=True)
class Target:
    """Where uploads are published: the parts of the catalog that publishing uses."""

    storage: Storage
    state: StateDir
    index: Index


def publish(target: Target, upload: Upload, *, overwrite: bool) -> list[str]:
    """Publish under the filename's lock; the relpaths that changed. Raises AlreadyExists,
    or OSError (the server's disk) with nothing published."""
    relpath = upload.relpath
    state = target.state
    transaction = _Transaction()
    # `Demo-1.0.tar.gz` waits for `demo-1.0.tar.gz`, wherever it goes.
    with state.lock(same_file_key(upload.filename)):
        if not overwrite and _taken(target, relpath):
            raise AlreadyExists(upload.filename)
        entry = state.path_of(relpath, PROVENANCE).parent
        try:
            transaction.put_stored(target.storage, relpath + SIGNATURE, upload.signature)
            transaction.put(entry / PROVENANCE, _spooled(state, upload.provenance))
            _put_facts(transaction, state, upload)
            # The commit point. AlreadyExists when another process won the name meanwhile.
            stored = target.storage.put(relpath, upload.spool, if_absent=not overwrite)
        except BaseException:
            transaction.rollback()
            with contextlib.suppress(OSError):
                entry.rmdir()  # the entry, when the undo left it empty
            raise
        transaction.commit()
        _check_facts(target, stored)
    return [relpath, relpath + SIGNATURE]


def _put_facts(transaction: _Transaction, state: StateDir, upload: Upload) -> None:
    """The facts of the spooled bytes, under the version the published file will have (a link
    or a rename keeps the inode, size and mtime); none when the upload brought none."""
    if "sha256" not in upload.digests:
        facts_data = metadata = None
    else:
        metadata = upload.metadata if upload.metadata_read else None
        sha = None if metadata is None else hashlib.sha256(metadata).hexdigest()
        version = file_version(_as_stored(upload.relpath, upload.spool))
        facts = StoredFacts(version, dict(upload.digests), upload.metadata_read, sha)
        facts_data = facts.to_bytes()
    transaction.put(state.path_of(upload.relpath, CORE_METADATA), _spooled(state, metadata))
    transaction.put(state.path_of(upload.relpath, FACTS), _spooled(state, facts_data))


def _check_facts(target: Target, stored: StoredFile) -> None:
    """After the commit point: a store that copied the spool (another file system, an object
    store) gave it another version; its facts follow (until then they are ignored, as for any
    file whose version changed)."""
    relpath = stored.key
    data = target.state.read(relpath, FACTS)
    facts = None if data is None else StoredFacts.from_bytes(data)
    if facts is None or facts.version == file_version(stored):
        return
    moved = StoredFacts(
        file_version(stored), facts.digests, facts.metadata_read, facts.metadata_sha256
    )
    with contextlib.suppress(OSError):
        target.state.write(relpath, FACTS, moved.to_bytes())


def _as_stored(relpath: str, path: Path) -> StoredFile:
    """The spool as the local store will know it once linked or renamed into place."""
    st = os.stat(path)
    return StoredFile(relpath, st.st_size, st.st_ino, st.st_mtime_ns)


def _taken(target: Target, relpath: str) -> bool:
    on_store = target.storage.stat(relpath) is not None
    return on_store or bool(same_files(target.index, relpath.rpartition("/")[2]))


def same_files(index: Index, filename: str) -> list[Distribution]:
    """Indexed files that are *filename* to an installer: the same name, or one spelled
    differently (case, name normalization, `1.0` for `1.0.0`)."""
    key = same_file_key(filename)
    parsed = parse_filename(filename)
    candidates = (
        index.distributions(parsed.project) if parsed is not None else index.all_distributions()
    )
    return [d for d in candidates if d.filename == filename or same_file_key(d.filename) == key]


def _spooled(state: StateDir, data: bytes | None) -> Path | None:
    """Small data written and flushed in the scratch area; None stays None."""
    if data is None:
        return None
    fd, path = state.new_temp_file()
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path
