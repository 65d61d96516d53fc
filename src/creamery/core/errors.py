"""The error a client's mistake raises: a 4xx status and a one-line reason (answered in
`http/errors.py`, never a 500)."""

from __future__ import annotations


class ClientError(Exception):
    """The request can't be served as sent: `status` (4xx) and a one-line `reason`."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
