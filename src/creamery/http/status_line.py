"""A reason phrase in the status line (`409 File already exists: ...`), where the host allows.

ASGI has no reason phrase: granian and uvicorn send the standard one. Under a WSGI host the
status line is ours to write (`wsgi.py`), so the app leaves the reason in the environ there
(twine prints it).
"""

from __future__ import annotations

import re

from creamery.http.asgi_types import Scope

REASON_KEY = "creamery.reason_phrase"  # the environ key the WSGI adapter reads
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")
_MAX_REASON = 200


def reason_phrase(scope: Scope, reason: str) -> None:
    """Ask for *reason* in the status line (`409 File already exists: ...`), where possible.

    ASGI has no reason phrase: granian and uvicorn send the standard one. Under a WSGI host the
    status line is ours to write, so the reason goes there too (twine prints it).
    """
    environ = scope.get("wsgi_environ")
    if isinstance(environ, dict):
        text = _UNPRINTABLE.sub("?", reason).strip()  # a status line holds no CR, LF or UTF-8
        environ[REASON_KEY] = text[:_MAX_REASON]
