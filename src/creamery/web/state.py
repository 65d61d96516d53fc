"""What every handler may use: the application's services, typed, in one small object.

Handlers receive this instead of the ASGI app, so they depend on the services, not on the
dispatcher (and the app, its routes and its handlers import one way).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from creamery.catalog.service import Catalog
from creamery.core.config import Config
from creamery.http.files import SmallFiles
from creamery.http.observe import Observer
from creamery.web.guard import Guard

if TYPE_CHECKING:  # the mirror brings in httpx: imported only when it is enabled
    from creamery.mirror.service import Mirror


@dataclass
class AppState:
    config: Config
    catalog: Catalog
    guard: Guard
    observer: Observer
    small_files: SmallFiles
    mirror: Mirror | None = None
