"""The catalog: the one service through which the index is read and changed.

It owns the storage, the state directory, the in-memory index, the facts and the change feed,
and builds them from the roots: directories only (`LocalStorage`, the state directory and its
local feed, as always), or with `s3://` roots (`S3Storage`, `LayeredStorage` for a mix; with a
bucket first, the state and the change feed are under its `.creamery/` prefix, shared by every
replica, and the index starts from the snapshot there). The S3 client is imported only then.
Every write goes through it, from HTTP handlers and from the CLI alike (`publish`,
`set_yanked`, `remove`), and it records every change it makes (`record`, last: the commit
point's announcement) so other processes (server workers, a server beside the CLI) see it
before their next answer. It knows nothing about HTTP.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from creamery.catalog import publish as publishing
from creamery.catalog import releases
from creamery.catalog.access import ACCESS_KEYS, OWNERS_KEY, TOKEN_KEY, Access, Actor
from creamery.catalog.audit import Entry
from creamery.catalog.docs import DOCS_KEYS, DocsShelf, docs_key, feed_key
from creamery.catalog.facts import FactsCache
from creamery.catalog.index import Index
from creamery.catalog.owners import Grant, Owners
from creamery.catalog.permissions import Role
from creamery.catalog.search import SearchIndex
from creamery.catalog.status import (
    STATUS_KEYS,
    ProjectStatus,
    StatusShelf,
    check_reason,
    check_status,
    now_iso,
)
from creamery.catalog.status import feed_key as status_feed_key
from creamery.catalog.tokens import Token, mint
from creamery.changes import ChangeFeed
from creamery.changes.follower import Follower
from creamery.changes.local_feed import LocalFeed
from creamery.core.config import DEFAULT_SNAPSHOT_SECONDS, Config
from creamery.core.names import normalize
from creamery.storage import Storage
from creamery.storage.layered import LayeredStorage, storage_for
from creamery.storage.state import StateDir

if TYPE_CHECKING:
    from creamery.catalog.snapshot import Snapshots

log = logging.getLogger("creamery.catalog")

# The errors its writes raise, for callers that import only the service.
AlreadyExists = publishing.AlreadyExists
NameTooLong = publishing.NameTooLong
ReleaseNotFound = releases.ReleaseNotFound
Upload = publishing.Upload


class ProjectClosed(ValueError):
    """An upload to a project whose PEP 792 status (archived, quarantined) refuses them."""


class TooManyTokens(ValueError):
    """The owner already has as many tokens as `create_token`'s *limit* allows."""


class Catalog:
    def __init__(self, config: Config) -> None:
        self.config = config
        # Directories only: one LocalStorage, as always (no S3 client is imported).
        self.storage: Storage = storage_for(config.roots, config.s3_options())
        self.state = open_state(config)
        self.index = Index(self.storage, self.state)
        self.feed: ChangeFeed = open_feed(config, self.state)
        # Tokens, grants, the permission file and the audit log (PermissionFileError here
        # when the permission file can't be used).
        self.access = Access(config, self.state)
        # Which releases have hosted documentation (loaded with the index).
        self.docs = DocsShelf(self.state.store)
        # PEP 792: the projects that are not active (loaded with the index).
        self.statuses = StatusShelf(self.state.store)
        # Projects by name and summary, for the UI's search (kept current by a server).
        self.search = SearchIndex(self.index, lambda: self.facts)
        # Created before any scan: what is appended while one runs is applied again, not missed.
        self.follower = Follower(
            self.feed, self._apply, self._resync, interval=config.feed_seconds()
        )
        self.snapshots: Snapshots | None = None
        if self.state.path is None:  # the state is in a bucket: so are the index's snapshots
            from creamery.catalog.snapshot import Snapshots

            # --snapshot-interval 0: read them, never write one (start_background).
            interval = config.snapshot_interval or DEFAULT_SNAPSHOT_SECONDS
            self.snapshots = Snapshots(self.state.store, self.index, interval=interval)
        self._moving_lock = threading.Lock()
        self._token_lock = threading.Lock()  # a token limit's count and create, as one
        self._unmovable: set[str] = set()  # legacy sidecars copied but not removable

    @cached_property
    def facts(self) -> FactsCache:
        """Opened on first use: a CLI command that only yanks never touches the cache."""
        algos = (self.config.hash_algo,) if self.config.hash_algo else ()
        return FactsCache(self.config.facts_cache_dir(), algos, self.storage, self.state)

    # ------------------------------------------------------------------ the index

    def load(self) -> None:
        """For a one-shot process (a CLI command): scan, and move sidecars of earlier versions
        into the state directory. (A server does this in its life cycle, `web/app.py`.)"""
        self.load_index()
        self.migrate_legacy_sidecars()

    def _apply(self, keys: list[str]) -> None:
        """The change feed's keys: files for the index, `.access/...` for tokens and grants,
        `.docs/<project>` for hosted documentation, `.status/<project>` for its status."""
        files = [k for k in keys if not k.startswith((ACCESS_KEYS, DOCS_KEYS, STATUS_KEYS))]
        if len(files) != len(keys):
            self.access.refresh(k for k in keys if k.startswith(ACCESS_KEYS))
            for project in {k[len(DOCS_KEYS) :] for k in keys if k.startswith(DOCS_KEYS)}:
                self.docs.refresh(project)
            for project in {k[len(STATUS_KEYS) :] for k in keys if k.startswith(STATUS_KEYS)}:
                self.statuses.refresh(project)
                self.index.touch(project)  # its pages show the status: rendered again
        if files:
            self.index.refresh(files)

    def _resync(self) -> None:
        """The feed's records were compacted away: compare everything again."""
        self.index.rescan()
        self.docs.load()
        self._load_statuses()
        if self.access.loaded:
            self.access.load()

    def load_index(self) -> None:
        """A server's first load: from the bucket's index snapshot when there is one (then
        what changed since), else by listing everything. The tokens and grants too."""
        self.access.load()
        self.docs.load()
        self._load_statuses()
        serial = None if self.snapshots is None else self.snapshots.load()
        if serial is None:
            self.index.load()
            return
        self.follower.resume(serial)  # the index is as of *serial*: apply what came after
        try:
            self.follower.catch_up()
        except OSError as error:  # the store went away meanwhile: the background poll retries
            log.warning("can't catch up with the change feed yet: %s", error)

    def _load_statuses(self) -> None:
        before = self.statuses.projects()
        self.statuses.load()
        after = self.statuses.projects()
        for project in before.keys() | after.keys():
            if before.get(project) != after.get(project):
                self.index.touch(project)

    def start_background(self) -> list[Callable[[], None]]:
        """A server's periodic work beyond the rescans (search's summaries, the snapshot of an
        object root's index); the functions that stop it. With the state in a bucket, first
        the store's conditional writes are checked (a warning when it ignores them)."""
        if self.state.path is None:
            check_conditional_writes(self.state.store)
        stops = [self.search.start()]
        interval = self.config.snapshot_interval
        if self.snapshots is not None and interval > 0:
            stops.append(self.snapshots.start(lambda: self.follower.applied))
        return stops

    def close(self) -> None:
        """For a one-shot process (a CLI command), before it exits: what the feed does in the
        background (an object feed's compaction) ends first."""
        self.feed.close()

    def health(self) -> str | None:
        """None when every object store answers, else the problems in one line (naming each
        store). Directories are not asked: one that is read-only still serves (its `health`
        would say uploads fail), and the server checks that they can be read."""
        storage = self.storage
        backends = storage.backends if isinstance(storage, LayeredStorage) else (storage,)
        problems = [p for b in backends if b.remote and (p := b.health()) is not None]
        return "; ".join(problems) or None

    def migrate_legacy_sidecars(self, min_age: float = 0.0) -> int:
        """Move `.yanked`/`.provenance`/`.metadata` files found beside distributions into the
        state directory (earlier versions kept them there), and record it. Files changed less
        than *min_age* seconds ago wait; their count is returned."""
        with self._moving_lock:
            young = time.time_ns() - int(min_age * 1e9)
            legacy = {r: st for r, st in self.index.legacy.items() if r not in self._unmovable}
            ready = {r: st for r, st in legacy.items() if st.mtime_ns <= young}
            moved = [r for r, st in ready.items() if self.state.migrate(self.storage, st)]
            # Copied but not removable (a read-only root): once, or a later un-yank would be
            # undone by the next attempt.
            self._unmovable |= {r for r in ready if self.storage.stat(r) is not None}
            if moved:
                self.record(moved + sorted({r.rpartition(".")[0] for r in moved}))
            return len(legacy) - len(ready)

    def record(self, relpaths: Iterable[str]) -> int:
        """After a write: update this process's index now, tell the other processes, and apply
        what they recorded before (so the serial this process has applied covers the write).
        Returns the change's serial: the write's announcement, the last step of its commit."""
        changed = list(relpaths)
        self._apply(changed)
        try:
            serial = self.feed.append(changed)
        except OSError as error:  # the write is done; other processes find it by rescanning
            log.warning("can't record changes for other processes: %s", error)
            serial = self.feed.announced()
        try:
            self.follower.catch_up()
        except OSError as error:  # committed and recorded: the write must not be answered 503
            log.warning("can't catch up with the change feed after a write: %s", error)
        return serial

    def catch_up(self) -> int:
        """Apply what other processes recorded since the last call; the serial applied."""
        return self.follower.catch_up()

    # ------------------------------------------------------------------ writes

    def new_spool(self) -> tuple[int, Path]:
        """An open file in the scratch area, to receive an upload before it is published."""
        return self.state.new_temp_file()

    def check_name_fits(self, filename: str) -> None:
        """Raises NameTooLong when a name *filename* needs does not fit the file systems."""
        publishing.check_names_fit(filename, self.config.upload_root, self.state.path)

    def publish(self, upload: Upload, *, overwrite: bool, actor: Actor | None = None) -> list[str]:
        """Publish a validated upload (put-if-absent unless *overwrite*), its signature,
        provenance and facts; with *overwrite*, the same file under other spellings or in other
        directories goes. Audited (by *actor*) just before the commit point, recorded after
        it; the relpaths that changed. Raises AlreadyExists, or OSError with nothing published
        (an audit log that can't be written included). With ownership on, the first uploader
        of a project becomes its owner."""
        actor = actor or Actor.local()
        self._check_open(upload.project)
        replacing = bool(publishing.same_files(self.index, upload.filename))
        entry = actor.entry(
            "overwrite" if replacing and overwrite else "upload",
            project=upload.project,
            version=upload.version,
            filename=upload.filename,
            sha256=upload.digests.get("sha256"),
            size=upload.size,
        )
        audited = _Audited(self.access, entry)
        target = publishing.Target(self.storage, self.state, self.index)

        def before_commit() -> None:
            # Again, read from the state: archived (or quarantined) by another process or
            # replica, or in this one while the upload was being written, it takes no file.
            self._check_open(upload.project, fresh=True)
            audited.write()

        with audited:
            changed = publishing.publish(
                target, upload, overwrite=overwrite, before_commit=before_commit
            )
        left: list[str] = []
        if overwrite:
            removed, left = self._remove_other_spellings(upload)
            changed += removed
        self.record(changed)
        for relpath in left:  # its file may be gone (its state not): looked at again
            with contextlib.suppress(OSError):  # the store not answering for it: a rescan's
                self.record([relpath])
        if actor.user is not None and upload.project is not None:
            self.claim(upload.project, actor)
        return changed

    def _remove_other_spellings(self, upload: Upload) -> tuple[list[str], list[str]]:
        """After an overwrite's commit point: the same file under other names goes. A failure
        here does not undo the upload (it is in, and must be answered and recorded so): the
        old names stay, until the next overwrite or a removal. The relpaths removed, and
        those whose removal failed (perhaps after their file went)."""
        others = publishing.same_files(self.index, upload.filename)
        stale = [d for d in others if d.relpath != upload.relpath]
        removed: list[str] = []
        left: list[str] = []
        for dist in stale:
            try:
                removed += releases.remove_files(self.storage, self.state, [dist])
            except OSError as error:
                log.error("overwrite of %s left %s: %s", upload.relpath, dist.relpath, error)
                left.append(dist.relpath)
        return removed, left

    def _check_open(self, project: str | None, *, fresh: bool = False) -> None:
        """ProjectClosed when *project*'s status takes no uploads (PEP 792); *fresh*: its
        status read from the state first."""
        if project is None:
            return
        if fresh:
            self.statuses.refresh(project)
        refusal = self.statuses.get(project).upload_refusal(project)
        if refusal is not None:
            raise ProjectClosed(refusal)

    def claim(self, project: str, actor: Actor) -> None:
        """`--owners first-uploader`: a project without owners is now *actor*'s."""
        owners = self.access.owners
        if owners is None or actor.user is None or owners.has_owners(project):
            return
        try:
            if owners.claim(project, actor.user):
                self.access.audit.try_write(
                    actor.entry("owners.grant", project=project, detail=f"{actor.user} owner")
                )
                self.record_access([OWNERS_KEY + project])
        except OSError as error:  # the upload is in; its ownership waits for the next one
            log.error("can't record the owner of %s: %s", project, error)

    def set_yanked(
        self,
        project: str,
        version: str,
        *,
        yanked: bool,
        reason: str = "",
        filename: str | None = None,
        actor: Actor | None = None,
    ) -> list[str]:
        """PEP 592: yank (with a reason) or un-yank a release or one of its files, all or
        nothing. Audited first, recorded last; the relpaths whose state changed. Raises
        ReleaseNotFound, OSError."""
        releases.matching_files(self.index, project, version, filename)  # ReleaseNotFound
        entry = (actor or Actor.local()).entry(
            "yank" if yanked else "unyank",
            project=normalize(project),
            version=version,
            filename=filename,
            reason=reason.strip() or None if yanked else None,
        )
        with _Audited(self.access, entry) as audited:
            audited.write()
            changed = releases.set_yanked(
                self.storage,
                self.index,
                project,
                version,
                yanked=yanked,
                reason=reason,
                filename=filename,
            )
        self.record(changed)
        return changed

    def remove(
        self,
        project: str,
        version: str | None = None,
        *,
        filename: str | None = None,
        actor: Actor | None = None,
        reason: str | None = None,
    ) -> list[str]:
        """Delete a release (or a whole project, or with *filename* one file of the release)
        with its signatures and state. Audited first (with *reason*, such as the retention
        rule's), recorded last; the relpaths that changed. Raises ReleaseNotFound."""
        dists = releases.to_remove(self.index, project, version, filename)  # ReleaseNotFound
        entry = (actor or Actor.local()).entry(
            "remove",
            project=normalize(project),
            version=version,
            filename=filename,
            reason=reason,
            detail=releases.describe(dists),
        )
        # Every file found is looked at again, by every process, whatever the removal did:
        # one that failed half-way may have deleted a file, and a retry that finds the file
        # gone (only its state left) changes no file but must still take it off the pages.
        found = [d.relpath for d in dists]
        with _Audited(self.access, entry) as audited:
            audited.write()
            try:
                changed = releases.remove_files(self.storage, self.state, dists)
            except OSError:
                with contextlib.suppress(OSError):
                    self.record(found)
                raise
        self.record(sorted({*found, *changed}))
        return changed

    def check_docs_name_fits(self, project: str, version: str) -> None:
        """Raises NameTooLong when *project*'s documentation of *version* can't be stored."""
        key = docs_key(project, version)
        publishing.check_state_key_fits(key, self.config.upload_root, self.state.path)

    def publish_docs(
        self, project: str, version: str, zip_path: Path, *, actor: Actor | None = None
    ) -> str:
        """Store a checked documentation zip (`docs.check_zip`) for *project*'s *version*
        (both normalized), replacing an earlier upload of it; the spool is consumed. Audited
        before the commit point (the object's put), recorded after it; the store's key.
        OSError with nothing stored (an audit log that can't be written included); NameTooLong
        (nothing audited) when the project or version makes a name the store can't hold."""
        self.check_docs_name_fits(project, version)
        entry = (actor or Actor.local()).entry(
            "docs.upload", project=project, version=version, size=zip_path.stat().st_size
        )
        with _Audited(self.access, entry) as audited:
            audited.write()
            key = self.docs.put(project, version, zip_path)
        self.record([feed_key(project)])
        return key

    def remove_docs(
        self, project: str, version: str | None = None, *, actor: Actor | None = None
    ) -> list[str]:
        """Delete the documentation of one version of *project*, or all of it; the versions
        whose documentation went. Audited first, recorded last."""
        name = normalize(project)
        if not self.docs.versions(name) or (
            version is not None and version not in self.docs.versions(name)
        ):
            return []
        entry = (actor or Actor.local()).entry("docs.remove", project=name, version=version)
        with _Audited(self.access, entry) as audited:
            audited.write()
            removed = self.docs.delete(name, version)
        self.record([feed_key(name)])
        return removed

    def set_status(
        self, project: str, status: str, reason: str = "", *, actor: Actor | None = None
    ) -> ProjectStatus:
        """PEP 792: set *project*'s status (active, archived, quarantined, deprecated) with a
        reason (one line). Audited first, recorded last (every process and replica shows it
        before its next answer); the status as stored. ValueError for an unknown status, a
        bad reason or a project not hosted here; OSError when the state can't take it."""
        name = normalize(project)
        chosen = check_status(status)
        why = check_reason(reason)
        if name not in self.index.projects and self.statuses.get(name).active:
            raise ValueError(f"no project {name!r} here")
        by = actor or Actor.local()
        new = ProjectStatus(chosen, why, by.user, now_iso())
        entry = by.entry("status", project=name, reason=why or None, detail=chosen)
        with _Audited(self.access, entry) as audited:
            audited.write()
            self.statuses.put(name, new)
        self.record([status_feed_key(name)])
        return self.statuses.get(name)

    def record_access(self, keys: list[str]) -> int:
        """After a change to tokens or grants: tell every process and replica (the feed)."""
        return self.record(keys)

    # ------------------------------------------------------------------ tokens and grants

    def create_token(
        self,
        owner: str,
        *,
        projects: Iterable[str] = (),
        actions: Iterable[str] = (),
        expires: float | None = None,
        description: str = "",
        actor: Actor | None = None,
        limit: int | None = None,
    ) -> tuple[Token, str]:
        """A new API token for *owner* and its secret (shown once, stored nowhere). Audited
        first, recorded last (every process and replica learns it from the feed). ValueError
        for a bad scope, action, expiry or description, TooManyTokens when *owner* has *limit*
        tokens already; OSError when the state can't take it."""
        token, secret = mint(
            owner, projects=projects, actions=actions, expires=expires, description=description
        )
        # Counted and created under one lock: racing requests of one process each counted
        # the same tokens and all created theirs (30 at 95 of 100 made 102). Replicas each
        # hold their own; the limit bounds memory, so one request per replica past it is fine.
        with self._token_lock:
            if limit is not None and len(self.tokens_of(owner)) >= limit:
                raise TooManyTokens(f"{owner!r} has {limit} tokens: revoke some first")
            self._record_token(token, owner, actor)
        return token, secret

    def tokens_of(self, owner: str) -> list[Token]:
        """*owner*'s tokens, oldest first."""
        return [token for token in self.access.tokens.all() if token.owner == owner]

    def _record_token(self, token: Token, owner: str, actor: Actor | None) -> None:
        entry = (actor or Actor.local()).entry(
            "token.create",
            project=token.projects[0] if len(token.projects) == 1 else None,
            detail=f"{token.id} for {owner}: {','.join(sorted(token.actions))} on "
            + (",".join(token.projects) or "every project"),
        )
        with _Audited(self.access, entry) as audited:
            audited.write()
            self.access.tokens.create(token)
        self.record_access([TOKEN_KEY + token.id])

    def revoke_token(self, token_id: str, *, actor: Actor | None = None) -> Token | None:
        """Revoke a token (its record is deleted); the token, None when there is none."""
        token = self.access.tokens.get(token_id) or self.access.tokens.read(token_id)
        if token is None:
            return None
        entry = (actor or Actor.local()).entry(
            "token.revoke",
            project=token.projects[0] if len(token.projects) == 1 else None,
            detail=f"{token.id} of {token.owner}",
        )
        with _Audited(self.access, entry) as audited:
            audited.write()
            self.access.tokens.revoke(token_id)
        self.record_access([TOKEN_KEY + token_id])
        return token

    def grant(self, project: str, user: str, role: Role, *, actor: Actor | None = None) -> Grant:
        """Give *user* *role* on *project* (ownership: `creamery owners add`). ValueError for
        a role that is not uploader, maintainer or owner, or when ownership is off."""
        owners = self._owners()
        name = normalize(project)
        by = actor or Actor.local()
        entry = by.entry("owners.grant", project=name, detail=f"{user} {role.label}")
        with _Audited(self.access, entry) as audited:
            audited.write()
            grant = owners.grant(name, user, role, granted_by=by.user or "")
        self.record_access([OWNERS_KEY + name])
        return grant

    def ungrant(self, project: str, user: str, *, actor: Actor | None = None) -> bool:
        """Take *user*'s role on *project* away; False when they had none."""
        owners = self._owners()
        name = normalize(project)
        if user not in owners.grants(name):
            return False
        entry = (actor or Actor.local()).entry("owners.revoke", project=name, detail=user)
        with _Audited(self.access, entry) as audited:
            audited.write()
            owners.revoke(name, user)
        self.record_access([OWNERS_KEY + name])
        return True

    def _owners(self) -> Owners:
        owners = self.access.owners
        if owners is None:
            raise ValueError(
                "ownership is off: start the server (and run this) with --owners first-uploader"
            )
        return owners


class _Audited:
    """An audited write: `write` makes the entry durable (before the commit point); when the
    write fails after that, a second entry says so (result "failed")."""

    def __init__(self, access: Access, entry: Entry) -> None:
        self.access = access
        self.entry = entry
        self.written = False

    def write(self) -> None:
        self.access.record(self.entry)
        self.written = True

    def __enter__(self) -> _Audited:
        return self

    def __exit__(self, kind: object, error: BaseException | None, traceback: object) -> None:
        if error is not None and self.written:
            result = "exists" if isinstance(error, publishing.AlreadyExists) else "failed"
            detail = type(error).__name__ if result == "failed" else None
            self.access.audit.try_write(replace(self.entry, time="", result=result, detail=detail))


# ---------------------------------------------------------------------- building it


def open_state(config: Config) -> StateDir:
    """The state directory; with a bucket first, the state under its `.creamery/` prefix,
    with a local scratch directory for spools and locks."""
    state = config.state_directory()
    if isinstance(state, Path):
        return StateDir(state)
    from creamery.storage.s3 import S3Storage

    return StateDir(S3Storage(state, config.s3_options()), config.scratch_directory())


def open_feed(config: Config, state: StateDir) -> ChangeFeed:
    """The change feed every process follows: a journal in the state directory, or records
    in the bucket's `.creamery/` prefix."""
    if state.path is not None:
        return LocalFeed(state.path)
    from creamery.changes.object_feed import ObjectFeed

    return ObjectFeed(state.store)  # `changes/<serial>` beside the state's `files/`


_PROBES = "probes"


def check_conditional_writes(store: Storage) -> bool | None:
    """Does *store* honour `If-None-Match: *` (put-if-absent)? Replicas rely on it: for the
    winner of two uploads of one filename, and for the change feed's serials. One probe per
    server start (two PUTs of an empty object, one DELETE); a store that ignores the header
    gets one warning line, since one replica is still safe on it. None: the store did not
    answer (the server carries on; its health says so)."""
    probe = f"{_PROBES}/{socket.gethostname()}-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        store.put(probe, b"", if_absent=True)
        try:
            store.put(probe, b"", if_absent=True)
        except publishing.AlreadyExists:
            honoured = True
        else:
            honoured = False
            log.warning(
                "the object store ignores conditional writes (If-None-Match: *): run one"
                " replica only; with several, two uploads of one filename may both be"
                " accepted (docs/deploy.md)"
            )
        store.delete(probe)
    except OSError as error:
        log.info("could not check the store's conditional writes: %s", error)
        return None
    return honoured
