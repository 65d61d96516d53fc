"""htpasswd lines as Apache's `htpasswd -s` writes them (the `{SHA}` scheme).

For bcrypt lines, run the real CLI: `support.clients.creamery_passwd`.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path


def sha1_hash(password: str) -> str:
    """What `htpasswd -s` writes: {SHA} and the base64 of the raw SHA-1 digest."""
    return "{SHA}" + base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()


def write_sha1_htpasswd(path: Path, user: str, password: str, extra: str = "") -> Path:
    """An htpasswd file with *user* in the `{SHA}` scheme, then the lines in *extra*."""
    path.write_text(f"{user}:{sha1_hash(password)}\n{extra}")
    return path
