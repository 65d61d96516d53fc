"""creamery: a fast, standards-complete, self-hosted Python package index."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from creamery.web.app import Creamery
    from creamery.wsgi import WsgiApp

from creamery.core.version import __version__


def app(**kwargs: Any) -> Creamery:
    """Return creamery's ASGI application, configured with pypiserver's ``app()`` keywords."""
    from creamery.core.config import config_from_app_kwargs
    from creamery.web.app import create_app

    return create_app(config_from_app_kwargs(kwargs))


def wsgi_app(**kwargs: Any) -> WsgiApp:
    """Return a WSGI application (gunicorn sync workers, mod_wsgi, paste)."""
    from creamery.wsgi import wsgi_app as _wsgi_app

    return _wsgi_app(**kwargs)


__all__ = ["__version__", "app", "wsgi_app"]
