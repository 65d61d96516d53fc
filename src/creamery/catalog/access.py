"""Who is asking, and what they may do: the one place every permission is decided.

Principals: a signed-in user (htpasswd, or the custom `auther`), a token (`__token__` and
`creamery-...`: its owner, narrowed to the token's scope and actions) and the anonymous
principal of requests without credentials. Operations: list, download, upload, overwrite,
yank, remove, manage (`permissions.OPERATION_ROLES`).

- No permission file: pypiserver's rules. What `-a` guards needs a valid user, who may do it
  to every project; what it does not guard, anyone may do. Tokens narrow their owner's rights.
- `--permissions FILE`: the file's roles decide (`permissions.Policy`); anonymous is a
  principal like the others. A principal never has less than anonymous has.
- `--owners first-uploader`: a project with owners is changed only by its grantees (and by
  admins: the permission file's `owner` role); the first uploader of a project owns it.

Tokens, grants and the audit log live in the state (`tokens.py`, `owners.py`, `audit.py`);
a change to them is recorded in the change feed under `ACCESS_KEYS`, so every process and
replica applies it at its next catch-up (within the feed's poll interval).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from creamery.catalog.audit import AuditLog, Entry
from creamery.catalog.auth import Authenticator
from creamery.catalog.owners import Owners
from creamery.catalog.permissions import (
    OPERATION_ROLES,
    PermissionFile,
    Policy,
    Role,
)
from creamery.catalog.tokens import TOKEN_USER, Token, TokenStore
from creamery.core.config import Config
from creamery.storage.state import StateDir

log = logging.getLogger("creamery.access")

ACCESS_KEYS = ".access/"  # change-feed keys: never a relpath (hidden), never a file's
TOKEN_KEY = ACCESS_KEYS + "tokens/"
OWNERS_KEY = ACCESS_KEYS + "owners/"
# The pypiserver action (`-a`) each operation falls under.
PYPISERVER_ACTION = {
    "list": "list",
    "download": "download",
    "upload": "update",
    "overwrite": "update",
    "yank": "update",
    "remove": "update",
    "manage": "update",
}
READS = frozenset({"list", "download"})
TOKEN_ACTION = {
    "list": "list",
    "download": "download",
    "upload": "upload",
    "overwrite": "upload",
    "yank": "yank",
    "remove": "remove",
}
VERBS = {
    "list": "see",
    "download": "download from",
    "upload": "upload to",
    "overwrite": "overwrite files of",
    "yank": "yank releases of",
    "remove": "remove releases of",
    "manage": "manage",
}


@dataclass(frozen=True, slots=True)
class Principal:
    user: str | None = None  # None: anonymous
    token: Token | None = None

    @property
    def anonymous(self) -> bool:
        return self.user is None

    @property
    def token_id(self) -> str | None:
        return None if self.token is None else self.token.id

    def __str__(self) -> str:
        """How logs name it: the user, with the token's id; "-" for anonymous (as before)."""
        if self.user is None:
            return "-"
        return self.user if self.token is None else f"{self.user} (token {self.token.id})"


ANONYMOUS = Principal()


@dataclass(frozen=True, slots=True)
class Actor:
    """Who made a write, for its audit entry: a principal from a client address, or a
    command run on the server's host (`local`)."""

    user: str | None
    token: str | None = None
    client: str = ""

    @classmethod
    def of(cls, principal: Principal, client: str) -> Actor:
        return cls(principal.user, principal.token_id, client)

    @classmethod
    def local(cls) -> Actor:
        """A `creamery` command on this host: the login that ran it."""
        import getpass

        try:
            login = getpass.getuser()
        except (KeyError, OSError):
            login = str(os.getuid())
        return cls(f"local:{login}", None, "cli")

    def entry(self, action: str, **fields: Any) -> Entry:
        return Entry(action, user=self.user, token=self.token, client=self.client, **fields)


@dataclass(frozen=True, slots=True)
class Refused:
    """Credentials that are not good: *status* 401 (a token: sign in again) or 403 (a wrong
    password, pypiserver's answer), with a one-line reason that holds no secret."""

    status: int
    reason: str


class Access:
    def __init__(self, config: Config, state: StateDir) -> None:
        self.config = config
        self.authenticator = Authenticator(config)
        self.tokens = TokenStore(state.store)
        self.owners: Owners | None = Owners(state.store) if config.owners else None
        self.audit = AuditLog(state)
        self.permissions: PermissionFile | None = None
        if config.permissions is not None:
            self.permissions = PermissionFile(config.permissions, self._reloaded)
        self._disabled = config.auth_disabled
        self._guarded = frozenset() if config.auth_disabled else config.authenticate
        self.always_required = self._guarded | {"account"}
        self._guarded_operations = frozenset(
            op for op, action in PYPISERVER_ACTION.items() if action in self._guarded
        )
        self.loaded = False

    # ------------------------------------------------------------------ state

    def load(self) -> None:
        """Read the tokens and grants (at start; OSError when the store does not answer)."""
        self.tokens.load()
        if self.owners is not None:
            self.owners.load()
        self.loaded = True

    def refresh(self, keys: Iterable[str]) -> None:
        """Apply change-feed keys under ACCESS_KEYS (others are ignored)."""
        for key in keys:
            if key.startswith(TOKEN_KEY):
                self.tokens.refresh(key[len(TOKEN_KEY) :])
            elif key.startswith(OWNERS_KEY) and self.owners is not None:
                self.owners.refresh(key[len(OWNERS_KEY) :])

    def _reloaded(self, policy: Policy | None, problem: str | None) -> None:
        result = "ok" if policy is not None else "failed"
        detail = f"{len(policy.rules)} rules" if policy is not None else problem
        self.audit.try_write(Entry("permissions.reload", result, detail=detail))

    @property
    def policy(self) -> Policy | None:
        return None if self.permissions is None else self.permissions.current()

    # ------------------------------------------------------------------ who is this

    def identifies(self) -> bool:
        """Must every request say who it is (credentials are checked even where `-a` does
        not ask for them)? With a permission file: what a principal sees depends on it."""
        return self.permissions is not None

    def required(self, action: str) -> bool:
        """Does a route of this pypiserver action (list, download, update, account) need
        credentials before anything else? A permission file that names no anonymous rule
        makes reads need them too (clients are challenged, then send their credentials)."""
        if action in self.always_required:
            return True
        permissions = self.permissions
        if permissions is None or action == "update":
            return False
        return not permissions.policy.anonymous_named

    def authenticate(self, user: str, password: str) -> Principal | Refused:
        """Check credentials (bcrypt for a password: run it in a worker thread)."""
        if user == TOKEN_USER:
            return self._token_principal(password)
        if self.authenticator.check(user, password):
            return Principal(user)
        # The same words for an unknown user keep user names secret.
        return Refused(403, f"Forbidden: wrong password for {user!r}, or no such user")

    def _token_principal(self, password: str) -> Principal | Refused:
        token = self.tokens.verify(password)
        if token is None:
            return Refused(401, "Unauthorized: invalid or revoked token")
        if token.expired():
            return Refused(401, f"Unauthorized: token {token.id} has expired")
        if not self.owner_exists(token.owner):
            return Refused(401, f"Unauthorized: token {token.id} belongs to no current user")
        return Principal(token.owner, token)

    def owner_exists(self, user: str) -> bool:
        htpasswd = self.authenticator.htpasswd
        return htpasswd is None or user in htpasswd

    def still_valid(self, principal: Principal) -> bool:
        """Is a remembered token principal still good (not revoked, not expired)? A dict
        lookup: a revocation applied from the change feed takes effect at the next request."""
        token = principal.token
        if token is None:
            return True
        current = self.tokens.get(token.id)  # replaced when its last use is noted: same digest
        return current is not None and current.digest == token.digest and not token.expired()

    # ------------------------------------------------------------------ what may they do

    def may(self, principal: Principal, operation: str, project: str) -> bool:
        """May *principal* do *operation* to *project* (a normalized name)?"""
        if self._anonymous_may(operation, project):
            return True
        user = principal.user
        if user is None:
            return False
        token = principal.token
        if token is not None:
            action = TOKEN_ACTION.get(operation)
            if action is None or not token.allows(action, project):
                return False
        if operation in READS:  # reading is the permission file's alone, never the grants'
            return self._file_role(user, project) >= OPERATION_ROLES[operation]
        return self.role(user, project) >= OPERATION_ROLES[operation]

    def _file_role(self, user: str, project: str) -> Role:
        policy = self.policy
        return Role.OWNER if policy is None else policy.role(user, project)

    def _anonymous_may(self, operation: str, project: str) -> bool:
        if self._disabled:
            return True
        if operation in self._guarded_operations:
            return False
        permissions = self.permissions
        if permissions is None:
            return True
        return permissions.current().allows(None, operation, project)

    def role(self, user: str, project: str) -> Role:
        """A signed-in user's role on *project*: the permission file's (everything without
        one), and with ownership, the grants of an owned project."""
        policy = self.policy
        base = self._file_role(user, project)
        owners = self.owners
        if owners is None:
            return base
        admin = policy is not None and base == Role.OWNER  # the permission file's owners
        if admin:
            return Role.OWNER
        if not owners.has_owners(project):
            # Nobody owns it yet: whoever may upload creates it (and owns it), but nobody
            # grants themselves a name they have not uploaded.
            return min(base, Role.MAINTAINER if policy is not None else Role.UPLOADER)
        # An owned project: its grants decide.
        return max(owners.role(user, project), min(base, Role.READER))

    def why_not(self, principal: Principal, operation: str, project: str) -> str:
        """One line for a refusal: the same for a hidden project as for an unknown one."""
        verb = VERBS[operation]
        token = principal.token
        if token is not None:
            action = TOKEN_ACTION.get(operation)
            if action is None:
                return f"Forbidden: a token can't {operation}; sign in with a password"
            if action not in token.actions:
                return f"Forbidden: token {token.id} does not allow {action}"
            if not token.covers(project):
                return f"Forbidden: token {token.id} is not scoped to project {project!r}"
        who = "anonymous users" if principal.user is None else repr(principal.user)
        return f"Forbidden: {who} may not {verb} {project!r}"

    # ------------------------------------------------------------------ what may they see

    def filters_reads(self) -> bool:
        """Can two principals see different projects? (Without a permission file, whoever
        may list may list everything: pages need no filtering.)"""
        return self.permissions is not None

    def narrows(self, principal: Principal) -> bool:
        """Does *principal* see less than everything? With a permission file, or as a token
        whose scope or actions narrow its owner's reading (even without one)."""
        token = principal.token
        return self.permissions is not None or (token is not None and token.narrows)

    def view(self, principal: Principal) -> Hashable:
        """Principals with equal views see the same projects: the key of a page rendered for
        one of them (the root page is rendered once per view, not per request)."""
        policy = self.policy
        token = principal.token
        scope = None
        if token is not None:
            scope = (token.projects, "list" in token.actions)
        user_rules = None if policy is None else policy.view_key(principal.user)
        # Grants give write roles only: reading is never narrowed by ownership.
        generation = None if self.permissions is None else self.permissions.generation
        return (generation, principal.user is None, user_rules, scope)

    def visible(self, principal: Principal) -> Callable[[str], bool]:
        """A predicate: may *principal* see this project (normalized)?"""
        return lambda project: self.may(principal, "list", project)

    # ------------------------------------------------------------------ audit

    def record(self, entry: Entry) -> Entry:
        """Write an audit entry; OSError when it can't be made durable (the write fails)."""
        return self.audit.write(entry)
