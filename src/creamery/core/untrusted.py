"""JSON a client sends, read within bounds: its size and how deeply it nests.

Python's json parser recurses once per nesting level, so 100,000 `[` exhaust the interpreter's
stack; and a document nested a few hundred levels deep parses but then costs whoever walks it.
Every JSON value read from a request goes through `load_json`.
"""

from __future__ import annotations

import json
from typing import Any

from creamery.core.errors import ClientError

MAX_JSON_BYTES = 1 << 20
MAX_JSON_DEPTH = 64  # PEP 740 attestations, the deepest JSON clients send, nest 6 levels


def load_json(
    data: str | bytes,
    what: str,
    *,
    max_bytes: int = MAX_JSON_BYTES,
    max_depth: int = MAX_JSON_DEPTH,
) -> Any:
    """The parsed value; ClientError 413 when too large, 400 when invalid or nested too deeply."""
    size = len(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    if size > max_bytes:
        raise ClientError(413, f"{what} is larger than {max_bytes} bytes")
    try:
        value = json.loads(data)
    except RecursionError as error:
        raise _too_deep(what, max_depth) from error
    except ValueError as error:  # UnicodeDecodeError included
        raise ClientError(400, f"{what} is not valid JSON") from error
    if nesting_depth(value, max_depth) > max_depth:
        raise _too_deep(what, max_depth)
    if _holds_lone_surrogate(value):
        raise ClientError(400, f"{what} holds a \\u escape of half a surrogate pair")
    return value


def _holds_lone_surrogate(value: Any) -> bool:
    """JSON's `\\ud800` parses to a str no encoder takes: kept, it fails every later answer
    that shows it (a token's description, an error echoing the field), as a 500."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def nesting_depth(value: Any, limit: int) -> int:
    """How deeply lists and objects nest in *value* (0 for a scalar), counted up to limit + 1."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if not isinstance(current, list | dict):
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        children = current.values() if isinstance(current, dict) else current
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _too_deep(what: str, max_depth: int) -> ClientError:
    return ClientError(400, f"{what} nests deeper than {max_depth} levels")
