"""API tokens: high-entropy secrets shown once, stored only as a keyed hash, in creamery's state.

A token reads `creamery-<id>_<secret>`: the prefix lets secret scanners find leaked ones, the id
(12 hex digits) finds its record without a search, and the secret is 256 random bits (base64url).
The record (`access/tokens/<id>` in the state store, JSON) holds its owner (an htpasswd user),
description, scope (project names, empty for all), allowed actions, creation and expiry times
and the HMAC-SHA256 of the secret keyed by the id: verifying costs one HMAC, no bcrypt round,
and compares in constant time. Revoking deletes the record. When a token was last used is kept
apart (`access/used/<id>`), written at most once per `USED_EVERY` seconds per process, so the
record itself is never rewritten (a late "last used" write can't resurrect a revoked token).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from creamery.core.names import has_unsafe_characters, normalize
from creamery.storage import AlreadyExists, Storage, read_all

log = logging.getLogger("creamery.tokens")

PREFIX = "creamery-"
TOKEN_USER = "__token__"  # the user name clients send with a token, as on PyPI
ACTIONS = ("upload", "yank", "remove", "download", "list")
DEFAULT_ACTIONS = frozenset({"upload"})
READ_ACTIONS = frozenset({"list", "download"})
TOKENS = "access/tokens"
USED = "access/used"
USED_EVERY = 600.0  # seconds: how stale a token's "last used" may be
_ID = re.compile(r"[0-9a-f]{12}")
_SECRET_BYTES = 32
_SECRET_CHARS = 43  # base64url of 32 bytes, unpadded
# base64url's alphabet only: `urlsafe_b64decode` alone would take `+`, `/`, `=`, spaces, NULs.
_SECRET = re.compile(rf"[A-Za-z0-9_-]{{{_SECRET_CHARS}}}")
_DIGEST = re.compile(r"[0-9a-f]{64}")
MAX_DESCRIPTION = 200
MAX_PROJECTS = 1000
# Verified against this when the id is unknown, so unknown and known ids cost the same.
_DUMMY_DIGEST = "0" * 64


@dataclass(frozen=True)
class Token:
    id: str
    owner: str
    digest: str  # hex HMAC-SHA256(key=id, msg=secret)
    description: str = ""
    projects: tuple[str, ...] = ()  # normalized names; () = every project
    actions: frozenset[str] = DEFAULT_ACTIONS
    created: float = 0.0
    expires: float | None = None
    last_used: float | None = field(default=None, compare=False)
    # Does this token read less than its owner (a project scope, or no list or download)?
    narrows: bool = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        narrows = bool(self.projects) or not self.actions >= READ_ACTIONS
        object.__setattr__(self, "narrows", narrows)

    def expired(self, now: float | None = None) -> bool:
        return self.expires is not None and (time.time() if now is None else now) >= self.expires

    def covers(self, project: str) -> bool:
        """Is *project* (normalized) in the token's scope?"""
        return not self.projects or project in self.projects

    def allows(self, action: str, project: str | None = None) -> bool:
        """May this token do *action* (a token action) on *project* (normalized; None: any)?"""
        if action == "unyank":
            action = "yank"
        elif action == "overwrite":
            action = "upload"
        if action not in self.actions:
            return False
        return project is None or self.covers(project)

    def to_json(self) -> bytes:
        data = asdict(self)
        data["projects"] = list(self.projects)
        data["actions"] = sorted(self.actions)
        data.pop("last_used")
        data.pop("narrows")
        return json.dumps(data, sort_keys=True).encode()

    def public(self) -> dict[str, object]:
        """What `token list` and the HTTP API show: everything but the digest."""
        data: dict[str, object] = {
            "id": self.id,
            "owner": self.owner,
            "description": self.description,
            "projects": list(self.projects),
            "actions": sorted(self.actions),
            "created": _iso(self.created),
            "expires": None if self.expires is None else _iso(self.expires),
            "last_used": None if self.last_used is None else _iso(self.last_used),
            "expired": self.expired(),
        }
        return data

    @classmethod
    def from_json(cls, raw: bytes) -> Token:
        """A record as `to_json` writes it; ValueError for anything else (a string where a
        list belongs would otherwise become a scope of single letters, a NaN expiry would
        never expire)."""
        try:
            data = json.loads(raw)
        except RecursionError:
            raise ValueError("nested too deeply") from None
        if not isinstance(data, dict):
            raise ValueError("not a token record")
        token_id, owner, digest = data.get("id"), data.get("owner"), data.get("digest")
        if not isinstance(token_id, str) or not _ID.fullmatch(token_id):
            raise ValueError("no valid id")
        if not isinstance(owner, str) or not owner:
            raise ValueError("no valid owner")
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            raise ValueError("no valid digest")
        description = data.get("description", "")
        projects = data.get("projects", [])
        actions = data.get("actions", sorted(DEFAULT_ACTIONS))
        if not isinstance(description, str):
            raise ValueError("the description is not a string")
        if not isinstance(projects, list) or not all(isinstance(p, str) for p in projects):
            raise ValueError("the projects are not a list of names")
        if not isinstance(actions, list) or not set(actions) <= set(ACTIONS):
            raise ValueError("the actions are not a list of token actions")
        return cls(
            id=token_id,
            owner=owner,
            digest=digest,
            description=description,
            projects=tuple(projects),
            actions=frozenset(actions),
            created=_seconds(data.get("created", 0.0)),
            expires=None if data.get("expires") is None else _seconds(data["expires"]),
        )


def _seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"not a time: {value!r}")
    return float(value)


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def check_actions(actions: Iterable[str]) -> frozenset[str]:
    """Token actions as given (`--action`), checked; ValueError with one line."""
    chosen = frozenset(a.strip().lower() for a in actions if a.strip())
    unknown = sorted(chosen - set(ACTIONS))
    if unknown:
        raise ValueError(f"unknown token action {unknown[0]!r}: choose from {', '.join(ACTIONS)}")
    return chosen or DEFAULT_ACTIONS


def check_projects(projects: Iterable[str]) -> tuple[str, ...]:
    from creamery.core.names import is_valid_project_name

    names: list[str] = []
    for project in projects:
        if not is_valid_project_name(project.strip()):
            raise ValueError(f"invalid project name {project!r}")
        names.append(normalize(project.strip()))
    if len(names) > MAX_PROJECTS:
        raise ValueError(f"a token may name at most {MAX_PROJECTS} projects")
    return tuple(sorted(set(names)))


def _digest(token_id: str, secret: bytes) -> str:
    return hmac.new(token_id.encode("ascii"), secret, hashlib.sha256).hexdigest()


def mint(
    owner: str,
    *,
    projects: Iterable[str] = (),
    actions: Iterable[str] = (),
    expires: float | None = None,
    description: str = "",
    now: float | None = None,
) -> tuple[Token, str]:
    """A new token and its secret (`creamery-...`), which is shown once and stored nowhere."""
    # Printable, as a status reason: no C1 control a terminal obeys (`creamery tokens`
    # prints it), no bidi override or line separator to spoof what the token list shows.
    if len(description) > MAX_DESCRIPTION or has_unsafe_characters(description):
        raise ValueError(
            f"the description must be one line of at most {MAX_DESCRIPTION} printable characters"
        )
    if not owner or any(c in owner for c in ":\r\n\0"):
        raise ValueError("the owner must be a user name")
    token_id = os.urandom(6).hex()
    raw = os.urandom(_SECRET_BYTES)
    encoded = base64.urlsafe_b64encode(raw).rstrip(b"=")
    created = time.time() if now is None else now
    if expires is not None and expires <= created:
        raise ValueError("the expiry must be in the future")
    token = Token(
        id=token_id,
        owner=owner,
        digest=_digest(token_id, encoded),
        description=description.strip(),
        projects=check_projects(projects),
        actions=check_actions(actions),
        created=created,
        expires=expires,
    )
    return token, f"{PREFIX}{token_id}_{encoded.decode('ascii')}"


def split_secret(password: str) -> tuple[str, bytes] | None:
    """`creamery-<id>_<secret>` -> (id, secret bytes as sent), None for anything else."""
    if not password.startswith(PREFIX):
        return None
    token_id, sep, secret = password[len(PREFIX) :].partition("_")
    if not sep or not _ID.fullmatch(token_id) or not _SECRET.fullmatch(secret):
        return None
    return token_id, secret.encode("ascii")


def looks_like_token(password: str) -> bool:
    return password.startswith(PREFIX)


class TokenStore:
    """The tokens in the state store, and this process's copy of them (all of them: a few
    hundred records, loaded at start and refreshed by the change feed)."""

    def __init__(self, store: Storage) -> None:
        self.store = store
        self._tokens: dict[str, Token] = {}
        self._used_written: dict[str, float] = {}  # id -> when this process last wrote it
        self._lock = threading.Lock()
        self.loaded = False

    # ------------------------------------------------------------------ reading

    def load(self) -> None:
        """Read every token record (one listing, one read each)."""
        found: dict[str, Token] = {}
        for stored in self.store.scan(TOKENS):
            token = self._read(stored.key.rpartition("/")[2])
            if token is not None:
                found[token.id] = token
        used = self._read_used_all()
        with self._lock:
            self._tokens = {i: _with_used(t, used.get(i)) for i, t in found.items()}
            self.loaded = True

    def read(self, token_id: str) -> Token | None:
        """One token's record from the store (None: no such token)."""
        return self._read(token_id)

    def _read(self, token_id: str) -> Token | None:
        if not _ID.fullmatch(token_id):
            return None
        stored = self.store.stat(f"{TOKENS}/{token_id}")
        if stored is None:
            return None
        try:
            token = Token.from_json(read_all(self.store, stored))
        except FileNotFoundError:
            return None
        except ValueError as error:
            log.error("token record %s is damaged (%s): ignored", token_id, error)
            return None
        if token.id != token_id:  # its digest is keyed by another id: it would never verify
            log.error("token record %s is damaged (it names id %s): ignored", token_id, token.id)
            return None
        return token

    def _read_used_all(self) -> dict[str, float]:
        used: dict[str, float] = {}
        for stored in self.store.scan(USED):
            value = self._read_used(stored.key.rpartition("/")[2])
            if value is not None:
                used[stored.key.rpartition("/")[2]] = value
        return used

    def _read_used(self, token_id: str) -> float | None:
        stored = self.store.stat(f"{USED}/{token_id}")
        if stored is None:
            return None
        try:
            return float(read_all(self.store, stored).decode("ascii"))
        except (OSError, ValueError, UnicodeDecodeError):
            return None

    def refresh(self, token_id: str) -> None:
        """Re-read one token (the change feed said it changed: created or revoked)."""
        token = self._read(token_id)
        with self._lock:
            if token is None:
                self._tokens.pop(token_id, None)
            else:
                old = self._tokens.get(token_id)
                self._tokens[token_id] = _with_used(
                    token, old.last_used if old is not None else self._read_used(token_id)
                )

    def all(self) -> list[Token]:
        with self._lock:
            return sorted(self._tokens.values(), key=lambda t: (t.owner, t.created, t.id))

    def get(self, token_id: str) -> Token | None:
        return self._tokens.get(token_id)

    def verify(self, password: str) -> Token | None:
        """The token *password* is the secret of, if it exists (expired ones included: the
        caller says why it refuses); constant time in the secret."""
        split = split_secret(password)
        if split is None:
            return None
        token_id, secret = split
        token = self._tokens.get(token_id)
        expected = token.digest if token is not None else _DUMMY_DIGEST
        ok = hmac.compare_digest(_digest(token_id, secret), expected)
        return token if ok and token is not None else None

    # ------------------------------------------------------------------ writing

    def create(self, token: Token) -> None:
        """Store a new token's record (put-if-absent: ids never collide silently)."""
        try:
            self.store.put(f"{TOKENS}/{token.id}", token.to_json(), if_absent=True)
        except AlreadyExists:
            raise ValueError("a token with this id exists already: try again") from None
        with self._lock:
            self._tokens[token.id] = token

    def revoke(self, token_id: str) -> Token | None:
        """Delete a token; the token it was, or None when there is none with that id."""
        token = self._read(token_id) if _ID.fullmatch(token_id) else None
        if token is None:
            return None
        self.store.delete(f"{TOKENS}/{token_id}")
        self.store.delete(f"{USED}/{token_id}")
        with self._lock:
            self._tokens.pop(token_id, None)
        return token

    def use_due(self, token: Token, now: float | None = None) -> bool:
        """Is a "last used" write due for *token* (a dict lookup: on every authenticated
        request that is not remembered)?"""
        last = self._used_written.get(token.id)
        return last is None or (time.time() if now is None else now) - last >= USED_EVERY

    def mark_used(self, token: Token, now: float | None = None) -> bool:
        """Note that *token* was used; writes at most once per USED_EVERY seconds per token
        and process. True the first time the token is ever used (for the audit log)."""
        moment = time.time() if now is None else now
        with self._lock:
            last = self._used_written.get(token.id)
            if last is not None and moment - last < USED_EVERY:
                return False
            current = self._tokens.get(token.id)
            if current is None:  # revoked meanwhile: a write would leave its `used` behind
                return False
            self._used_written[token.id] = moment
            first = current.last_used is None
            self._tokens[token.id] = _with_used(current, moment)
        data = f"{moment:.3f}".encode("ascii")
        if first:
            try:
                self.store.put(f"{USED}/{token.id}", data, if_absent=True)
                return True
            except AlreadyExists:  # another process or replica saw the first use
                pass
        self.store.put(f"{USED}/{token.id}", data, if_absent=False)
        return False


def _with_used(token: Token, used: float | None) -> Token:
    if used == token.last_used:
        return token
    from dataclasses import replace

    return replace(token, last_used=used)
