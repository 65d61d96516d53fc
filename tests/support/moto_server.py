"""moto's S3 server, deciding conditional writes atomically, as S3 does.

moto (5.2) checks `If-None-Match: *` and then writes, in two steps that racing requests
interleave: in a probe, 2 of 800 pairs of simultaneous puts of one key both won. S3 (and MinIO,
Ceph Reef) decide a conditional create atomically, and creamery's replicas rely on it (serials
of the change feed, uploads, state records). Without this, the tests that race writers on a
bucket would test moto's race, not ours. One lock around the two writes that take conditions
(PUT and the completion of a multipart upload) closes it; every other request runs as before.

Run as `python tests/support/moto_server.py -H 127.0.0.1 -p PORT` (moto.server's arguments).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from moto.s3.responses import S3Response
from moto.server import main

_WRITES = threading.Lock()


def _one_at_a_time(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with _WRITES:
            return method(*args, **kwargs)

    return locked


S3Response.put_object = _one_at_a_time(S3Response.put_object)  # type: ignore[method-assign]
S3Response._key_response_post = _one_at_a_time(S3Response._key_response_post)  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
