"""The ASGI types, defined once: every module that speaks ASGI imports them from here.

They are the same aliases as `starlette.types` (so values pass between our code and
Starlette's unchanged), kept in a leaf module that imports nothing of ours or Starlette's.
Messages and scopes stay `Any`-valued mappings: ASGI defines their keys per message type,
and their values are of many types.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
