"""The web UI: pages for people (home, project, search, documentation, sign-in, managing
releases and tokens), rendered on the server and served from memory.

Every page is a route with `browser=True` (`http/routing.py`): a signed-in session counts as
credentials there, and a visitor a page needs credentials from is sent to the sign-in page.
`layout` holds what every page shares (the template environment, fingerprinted assets, the
visitor's part of the header); each page is one module that declares its routes here.
"""

from __future__ import annotations

from creamery.http.routing import Route
from creamery.web.state import AppState
from creamery.web.ui import assets, docs, home, manage, project, search, session, tokens


def routes(state: AppState) -> list[Route]:
    """The UI's routes, in the order they are tried (before pypiserver's catch-all)."""
    return [
        *assets.routes(state),
        *home.routes(state),
        *project.routes(state),
        *search.routes(state),
        *session.routes(state),
        *manage.routes(state),
        *tokens.routes(state),
        *docs.routes(state),
    ]
