"""Close connections that never send a byte (Linux).

granian's header timeout starts with the first byte of a request, so a connection that sends
nothing is held forever and takes one of --max-connections; a few thousand of them stop the
server. Every few seconds this thread looks at this process's accepted connections on the
listening port and shuts down those that have received nothing for --header-timeout. It reads
the kernel's TCP_INFO of each socket; it never closes a descriptor (only `shutdown`, on a
duplicate), so the server sees an ordinary disconnect.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import sys
import threading
from collections import Counter
from collections.abc import Callable

from creamery.core.config import Config
from creamery.http.limits import RateLimitedLog

log = logging.getLogger("creamery.limits")

# struct tcp_info (linux/tcp.h): tcpi_state is the first byte, tcpi_last_data_recv (ms) is at
# 52 and tcpi_bytes_received (u64, Linux 4.1+) at 128.
_TCP_ESTABLISHED = 1
_LAST_DATA_RECV = 52
_BYTES_RECEIVED = 128
_INFO_SIZE = 136
_FD_DIR = "/proc/self/fd"


def supported() -> bool:
    return sys.platform == "linux" and os.path.isdir(_FD_DIR)


def start(port: int, timeout: float) -> Callable[[], None] | None:
    """Start the reaper thread for *port*; returns its stop function (None if unsupported)."""
    if not supported() or port == 0:
        return None
    stopped = threading.Event()
    report = RateLimitedLog()
    interval = min(max(timeout / 2, 0.2), 5.0)

    def loop() -> None:
        while not stopped.wait(interval):
            try:
                closed = reap(port, timeout)
            except Exception:  # the safety net must not die
                log.exception("closing silent connections failed")
                continue
            if closed:
                addresses = ", ".join(f"{a} ({n})" for a, n in closed.most_common(3))
                report.warning(
                    "silent-connections",
                    "limit: closed %d connections that sent nothing for %g s (--header-timeout)"
                    ": %s",
                    sum(closed.values()),
                    timeout,
                    addresses,
                )

    threading.Thread(target=loop, name="creamery-reaper", daemon=True).start()
    return stopped.set


def reap(port: int, timeout: float) -> Counter[str]:
    """Shut down this process's silent connections on *port*; counts per client address."""
    closed: Counter[str] = Counter()
    limit_ms = timeout * 1000
    for name in os.listdir(_FD_DIR):
        try:
            duplicate = os.dup(int(name))
        except OSError:  # closed meanwhile
            continue
        try:
            peer = _silent_peer(socket.socket(fileno=duplicate), port, limit_ms)
        except OSError:  # not a socket (ENOTSOCK), or closed meanwhile
            os.close(duplicate)
            continue
        if peer is not None:
            closed[peer] += 1
    return closed


def _silent_peer(sock: socket.socket, port: int, limit_ms: float) -> str | None:
    """Shut *sock* down if it is a silent connection to *port*: its client's address."""
    with sock:
        if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
            return None
        if sock.getsockname()[1] != port:
            return None
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _INFO_SIZE)
        if len(info) < _INFO_SIZE or info[0] != _TCP_ESTABLISHED:
            return None  # the listening socket, or a connection closing
        (idle_ms,) = struct.unpack_from("I", info, _LAST_DATA_RECV)
        (received,) = struct.unpack_from("Q", info, _BYTES_RECEIVED)
        if received or idle_ms < limit_ms:
            return None
        peer = str(sock.getpeername()[0])
        sock.shutdown(socket.SHUT_RDWR)
        return peer


def start_reaper(config: Config) -> None:
    """In each process that accepts connections: close those that never send a byte."""
    start(config.port, config.header_timeout)
