"""Tokens and the audit log of a running server's package directory, changed and read as
`creamery token create` / `creamery audit` do: through the catalog, on the state directory
the server uses (`<root>/.creamery`). The server learns a change through the change feed;
`wait_applied` waits until it has (its `X-Creamery-Serial` reached the change's serial).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import httpx

from creamery.catalog.audit import AuditLog, Entry
from creamery.catalog.service import Catalog
from creamery.catalog.tokens import Token
from creamery.core.config import Config
from creamery.storage.state import StateDir
from support.servers import Server

APPLY_TIMEOUT = 10.0  # seconds for a server to apply a change from the feed (local: ~50 ms)


def root_of(server: Server) -> Path:
    root = server.roots[0]
    assert isinstance(root, Path), root
    return root


def open_catalog(root: Path) -> Catalog:
    """The catalog of *root* as a CLI command opens it (tokens loaded, no index scan)."""
    catalog = Catalog(Config(roots=(root,)))
    catalog.access.load()
    return catalog


def wait_applied(server: Server, serial: int, timeout: float = APPLY_TIMEOUT) -> None:
    """Wait until *server* has applied the change feed up to *serial* (a request without
    credentials: it never counts as a failed login)."""
    deadline = time.monotonic() + timeout
    applied = -1
    while time.monotonic() < deadline:
        response = httpx.get(server.url + "/health", timeout=5)
        applied = int(response.headers.get("x-creamery-serial", "-1"))
        if applied >= serial:
            return
        time.sleep(0.02)
    raise AssertionError(f"the server applied serial {applied}, not {serial}, in {timeout} s")


def create_token(
    server: Server,
    owner: str,
    *,
    projects: Iterable[str] = (),
    actions: Iterable[str] = (),
    expires: float | None = None,
    description: str = "",
) -> tuple[Token, str]:
    """A new token for *owner* in *server*'s state, once the server knows it; and its secret."""
    catalog = open_catalog(root_of(server))
    try:
        token, secret = catalog.create_token(
            owner, projects=projects, actions=actions, expires=expires, description=description
        )
        serial = catalog.feed.announced()
    finally:
        catalog.close()
    wait_applied(server, serial)
    return token, secret


def revoke_token(server: Server, token_id: str) -> Token:
    """Revoke a token in *server*'s state, once the server has applied the revocation."""
    catalog = open_catalog(root_of(server))
    try:
        token = catalog.revoke_token(token_id)
        serial = catalog.feed.announced()
    finally:
        catalog.close()
    assert token is not None, f"no token {token_id}"
    wait_applied(server, serial)
    return token


def state_dir(root: Path) -> Path:
    return root / ".creamery"


def audit_entries(root: Path) -> list[Entry]:
    """Every audit entry of *root*'s state, oldest first."""
    return list(AuditLog(StateDir(state_dir(root))).read())
