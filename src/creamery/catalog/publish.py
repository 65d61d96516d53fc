"""Publishing an accepted upload: all or nothing.

The order (issue 8, `docs/architecture.md`): the upload was spooled outside the package
directory and validated; here, under a lock on the filename, everything that takes disk space
is written and flushed first (the signature, the provenance), each replacing its old version
with a backup kept; then the distribution is linked (or, with `--overwrite`, renamed) into
place: that is the commit point. If anything fails before it, every step is undone and the
old state is back; the change is recorded for other workers last (`Creamery.record_changes`).
Derived facts (METADATA, digests) are stored in the facts cache under the published file's
identity, so they can never describe other bytes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from creamery.catalog.facts import Digests
from creamery.catalog.index import Distribution
from creamery.core import durable
from creamery.core.names import SIGNATURE, parse_filename, same_file_key
from creamery.storage import AlreadyExists as AlreadyExists
from creamery.storage import Storage, StoredFile, read_all
from creamery.storage.state import PROVENANCE

if TYPE_CHECKING:
    from creamery.web.app import Creamery

_FALLBACK_NAME_MAX = 255


class NameTooLong(ValueError):
    """A name the upload would create does not fit the file system."""


@dataclass
class Upload:
    filename: str
    spool: Path  # the validated content, closed, in the scratch area
    signature: bytes | None
    provenance: bytes | None
    metadata: bytes | None  # the wheel's METADATA, as validated
    digests: Digests | None  # computed while the upload streamed in


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


def publish(creamery: Creamery, upload: Upload, *, overwrite: bool) -> list[str]:
    """Publish under the filename's lock; the relpaths that changed. Raises AlreadyExists,
    or OSError (the server's disk) with nothing published."""
    filename = upload.filename
    storage = creamery.storage
    state = creamery.state
    transaction = _Transaction()
    with state.lock(same_file_key(filename)):  # `Demo-1.0.tar.gz` waits for `demo-1.0.tar.gz`
        if not overwrite and _taken(creamery, filename):
            raise AlreadyExists(filename)
        provenance = state.path_of(filename, PROVENANCE)
        try:
            transaction.put_stored(storage, filename + SIGNATURE, upload.signature)
            transaction.put(provenance, _spooled(creamery, upload.provenance))
            # AlreadyExists when another process won the name meanwhile.
            stored = storage.put(filename, upload.spool, if_absent=not overwrite)
        except BaseException:
            transaction.rollback()
            with contextlib.suppress(OSError):
                provenance.parent.rmdir()  # the entry, when the undo left it empty
            raise
        transaction.commit()
        _remember_facts(creamery, stored, upload)
    return [filename, filename + SIGNATURE]


def _taken(creamery: Creamery, filename: str) -> bool:
    return creamery.storage.stat(filename) is not None or bool(same_files(creamery, filename))


def same_files(creamery: Creamery, filename: str) -> list[Distribution]:
    """Indexed files that are *filename* to an installer: the same name, or one spelled
    differently (case, name normalization, `1.0` for `1.0.0`)."""
    key = same_file_key(filename)
    parsed = parse_filename(filename)
    candidates = (
        creamery.index.distributions(parsed.project)
        if parsed is not None
        else creamery.index.all_distributions()
    )
    return [d for d in candidates if d.filename == filename or same_file_key(d.filename) == key]


def _spooled(creamery: Creamery, data: bytes | None) -> Path | None:
    """Small data written and flushed in the scratch area; None stays None."""
    if data is None:
        return None
    fd, path = creamery.state.new_temp_file()
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _remember_facts(creamery: Creamery, stored: StoredFile, upload: Upload) -> None:
    if upload.metadata is not None:
        creamery.facts.remember_metadata(stored, upload.metadata)
    if upload.digests is not None:
        creamery.facts.remember_digests(stored, upload.digests)
