"""Publishing an accepted upload: all or nothing.

The order (issue 8, `docs/architecture.md`): the upload was spooled outside the package
directory and validated; here, under a lock on the filename, everything that takes space is
written first, each a durable `put` replacing its old version with a backup kept in memory:
the signature (in the package storage), the provenance and the facts computed at upload
(digests and core metadata, for the very bytes published; in the state's store, the bucket's
`.creamery/` for an object root). Then the distribution is put (linked, or with `--overwrite`
renamed, into place; an object store's conditional create): that is the commit point. If
anything fails before or at it (another replica won the name: AlreadyExists), every step is
undone and the old state is back; the change is recorded for other processes last
(`Catalog.record`). One exception, between replicas on an object store: without
`--overwrite` the winner of the put claims the name for every spelling of the file
(`_claim`) and writes the rest after it (`publish`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from creamery.catalog.facts import StoredFacts, file_version
from creamery.catalog.index import Distribution, Index
from creamery.core.names import SIGNATURE, parse_filename, same_file_key
from creamery.core.objects import ObjectRoot
from creamery.storage import AlreadyExists as AlreadyExists
from creamery.storage import Storage, StoredFile, read_all
from creamery.storage.state import (
    CORE_METADATA,
    FACTS,
    LONGEST_KIND,
    PROVENANCE,
    YANKED,
    StateDir,
)

_FALLBACK_NAME_MAX = 255
# S3's (and R2's, MinIO's, Ceph's, Garage's) longest object key, in UTF-8 bytes.
MAX_OBJECT_KEY = 1024


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

    @property
    def project(self) -> str | None:
        parsed = parse_filename(self.filename)
        return None if parsed is None else parsed.project

    @property
    def version(self) -> str | None:
        parsed = parse_filename(self.filename)
        return None if parsed is None else parsed.version

    @property
    def size(self) -> int | None:
        try:
            return os.stat(self.spool).st_size
        except OSError:
            return None


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


def check_names_fit(
    filename: str, upload_root: Path | ObjectRoot, state_dir: Path | None = None
) -> None:
    """Every name an upload creates must fit: the file and its signature in the upload root,
    the file's entry in the state. A name too long is the client's fault (400).

    A directory limits each name (PC_NAME_MAX), the local state directory *state_dir* too;
    an object root limits whole keys: `<prefix>/<file>.asc` and its state's longest key,
    `<prefix>/.creamery/files/<file>/provenance` (*state_dir* is not used)."""
    size = len(os.fsencode(filename))
    if isinstance(upload_root, ObjectRoot):
        state_key = upload_root.state().key(StateDir.key(filename, "x" * LONGEST_KIND))
        keys = (upload_root.key(filename) + SIGNATURE, state_key)
        limit = MAX_OBJECT_KEY - max(len(os.fsencode(key)) - size for key in keys)
    else:
        limit = name_max(upload_root) - len(SIGNATURE)
        if state_dir is not None:
            limit = min(limit, name_max(state_dir))
    if size > limit:
        raise NameTooLong(
            f"filename too long: {size} bytes, this index accepts at most {limit}"
            f" (its signature {SIGNATURE} and its state must fit too)"
        )


def check_state_key_fits(key: str, upload_root: Path | ObjectRoot, state_dir: Path | None) -> None:
    """A key in the state a client names (`docs/<project>/<version>.zip`) must fit: each of
    its names in the local state directory *state_dir*, the whole key in an object root (the
    state is in the bucket then). A key too long is the client's fault (400)."""
    if isinstance(upload_root, ObjectRoot):
        size = len(os.fsencode(upload_root.state().key(key)))
        if size > MAX_OBJECT_KEY:
            raise NameTooLong(f"name too long: its key is {size} bytes, at most {MAX_OBJECT_KEY}")
    elif state_dir is not None:
        limit = name_max(state_dir)
        longest = max(len(os.fsencode(name)) for name in key.split("/"))
        if longest > limit:
            raise NameTooLong(f"name too long: {longest} bytes, this index accepts at most {limit}")


@dataclass
class _Transaction:
    """Replacements that can be undone until the commit point: each old version is kept in
    memory (signatures, provenance and facts are small) and put back by `rollback`."""

    undo: list[Callable[[], None]] = field(default_factory=list)

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
        self.undo.clear()

    def commit(self) -> None:
        self.undo.clear()


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


def publish(
    target: Target,
    upload: Upload,
    *,
    overwrite: bool,
    before_commit: Callable[[], None] = lambda: None,
) -> list[str]:
    """Publish under the filename's lock; the relpaths that changed. Raises AlreadyExists,
    or OSError (the server's disk, the store) with nothing published.

    Replicas on one object store share no lock: without *overwrite* the store's put-if-absent
    picks the winner, so there only the winner writes what goes with the file (signature,
    provenance, facts), right after the commit point: a loser's writes and undo would clobber
    the winner's. A failure after it withdraws the file. Elsewhere (and for *overwrite*,
    which needs the old state back on failure) they are written first, as the lock orders
    every writer. *before_commit* runs just before the commit point (the audit entry): when
    it raises, nothing is published."""
    relpath = upload.relpath
    state = target.state
    # A remote state is shared by replicas (a local one by this host's processes only).
    winner_writes_after = not overwrite and state.remote
    transaction = _Transaction()
    # `Demo-1.0.tar.gz` waits for `demo-1.0.tar.gz`, wherever it goes (on this host).
    with state.lock(same_file_key(upload.filename)):
        if not overwrite and _taken(target, relpath):
            raise AlreadyExists(upload.filename)
        first = not overwrite or target.storage.stat(relpath) is None
        facts = None if winner_writes_after else _facts_of(upload)
        try:
            if not winner_writes_after:
                _put_companions(transaction, target, upload, facts, first=first)
            before_commit()
            # The commit point. AlreadyExists when another process won the name meanwhile.
            stored = target.storage.put(relpath, upload.spool, if_absent=not overwrite)
        except BaseException:
            transaction.rollback()
            state.drop_empty_entry(relpath)  # the entry, when the undo left it empty
            raise
        if winner_writes_after:
            try:
                _claim(target, upload.filename, relpath)  # AlreadyExists: another spelling won
                facts = _facts_of(upload, stored)
                _put_companions(transaction, target, upload, facts, first=True)
            except BaseException:
                transaction.rollback()
                _withdraw(target.storage, stored)
                raise
        elif facts is not None:
            _check_facts(state, stored, facts)
        transaction.commit()
    return [relpath, relpath + SIGNATURE]


@runtime_checkable
class _Replacing(Protocol):
    """A store that puts only over the version it was given (`S3Storage.replace`)."""

    def replace(self, key: str, content: Path | bytes, *, version: str) -> StoredFile: ...


_CLAIM_ATTEMPTS = 5


def _claim(target: Target, filename: str, relpath: str) -> None:
    """Between replicas, just after the commit point: `Demo-1.0.tar.gz` and `demo-1.0.0.tar.gz`
    are one file to an installer but two keys, so both puts-if-absent succeed. The first to
    create `claims/<same-file key>` in the state (naming its relpath) keeps its file; a claim
    naming a file that is gone (removed, withdrawn, a writer killed) is taken over, only over
    the version read (`If-Match`). AlreadyExists when another spelling holds it."""
    store = target.state.store
    key = target.state.claim_key(filename)
    for _ in range(_CLAIM_ATTEMPTS):
        try:
            store.put(key, relpath.encode(), if_absent=True)
            return
        except AlreadyExists:
            pass
        held = store.stat(key)
        if held is None:
            continue  # removed meanwhile: create it again
        try:
            owner = read_all(store, held).decode("utf-8", "replace")
        except FileNotFoundError:
            continue
        if owner == relpath:  # this name's own (its put-if-absent decided)
            return
        if target.storage.stat(owner) is not None:
            raise AlreadyExists(owner)
        if not isinstance(store, _Replacing):
            return  # no conditional replace: the literal name's put decided
        try:
            store.replace(key, relpath.encode(), version=str(held.version))
            return
        except AlreadyExists:  # VersionChanged: another writer took it over first
            continue
    raise AlreadyExists(filename)


def _put_companions(
    transaction: _Transaction,
    target: Target,
    upload: Upload,
    facts: StoredFacts | None,
    *,
    first: bool,
) -> None:
    """The signature beside the file; its provenance, core metadata and facts in the state
    (None removes an old version). The *first* file of its name starts un-yanked: a yank
    marker left by an earlier file of that name (removed by hand, or by a removal killed
    before it forgot the state) belonged to that file; an overwrite keeps the release's."""
    relpath, state = upload.relpath, target.state
    transaction.put_stored(target.storage, relpath + SIGNATURE, upload.signature)
    if first:
        transaction.put_stored(state.store, state.key(relpath, YANKED), None)
    for kind, data in (
        (PROVENANCE, upload.provenance),
        (CORE_METADATA, _metadata_of(upload) if facts is not None else None),
        (FACTS, facts.to_bytes() if facts is not None else None),
    ):
        transaction.put_stored(state.store, state.key(relpath, kind), data)


def _withdraw(storage: Storage, stored: StoredFile) -> None:
    """Undo a commit point: remove the file just put, unless it was replaced since. Its
    bytes are told by size and version, not mtime: an object store that did not answer the
    HEAD after the put gave a guessed one (`S3Storage.put`)."""
    with contextlib.suppress(OSError):
        found = storage.stat(stored.key)
        if found is not None and (found.size, found.version) == (stored.size, stored.version):
            storage.delete(stored.key)


def _metadata_of(upload: Upload) -> bytes | None:
    return upload.metadata if upload.metadata_read else None


def _facts_of(upload: Upload, stored: StoredFile | None = None) -> StoredFacts | None:
    """The facts of the spooled bytes, under the version of *stored*, else the version the
    published file will have if linked or renamed into place (the inode, size and mtime
    stay); none when the upload brought none."""
    if "sha256" not in upload.digests:
        return None
    metadata = _metadata_of(upload)
    sha = None if metadata is None else hashlib.sha256(metadata).hexdigest()
    version = file_version(stored or _as_stored(upload.relpath, upload.spool))
    return StoredFacts(version, dict(upload.digests), upload.metadata_read, sha)


def _check_facts(state: StateDir, stored: StoredFile, facts: StoredFacts) -> None:
    """After the commit point: a store that copied the spool (another file system, an object
    store: its version is an ETag) gave it another version; its facts follow (until then they
    are ignored, as for any file whose version changed). The facts are this upload's own, not
    read back: another replica may have overwritten the state meanwhile, and its digests must
    never be stamped with this upload's version."""
    if facts.version == file_version(stored):
        return
    moved = StoredFacts(
        file_version(stored), facts.digests, facts.metadata_read, facts.metadata_sha256
    )
    with contextlib.suppress(OSError):
        state.write(stored.key, FACTS, moved.to_bytes())


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
