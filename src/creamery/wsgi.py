"""The WSGI variant of creamery, for gunicorn sync workers, waitress, mod_wsgi and paste."""

from __future__ import annotations

from typing import Any

from a2wsgi import ASGIMiddleware

import creamery
from creamery.config import FALSE_WORDS

_LIST_KEYS = {"roots": "\n", "root": "\n", "authenticate": " "}
_INT_KEYS = frozenset({"cache_control", "verbosity"})
_BOOL_KEYS = frozenset({"overwrite", "disable_fallback", "redirect_to_fallback"})


def wsgi_app(**kwargs: Any) -> ASGIMiddleware:
    """`creamery.app(**kwargs)` wrapped as a WSGI application."""
    return ASGIMiddleware(creamery.app(**kwargs))


def paste_app_factory(global_conf: dict[str, Any], **local_conf: str) -> ASGIMiddleware:
    """PasteDeploy entry point: converts the ini file's strings like pypiserver does."""
    del global_conf  # PasteDeploy passes it; pypiserver ignores it too
    return wsgi_app(**{key: _paste_value(key, value) for key, value in local_conf.items()})


def _paste_value(key: str, value: str) -> Any:
    if key in _LIST_KEYS:
        return [item.strip() for item in value.split(_LIST_KEYS[key]) if item.strip()]
    if key in _INT_KEYS:
        return int(value)
    if key in _BOOL_KEYS:
        return value.strip().lower() not in FALSE_WORDS
    return value
