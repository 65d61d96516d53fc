"""A shared log of changed paths, so every worker process sees a write before it is answered.

File-system events reach each worker within milliseconds, but "milliseconds" is not "before the
client's next request". The process that writes appends the relpaths it changed to this log;
every process checks the log's size (one `stat`) before answering and applies what is new.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from creamery.core.durable import write_atomic

log = logging.getLogger("creamery.journal")

_MAX_SIZE = 1 << 20  # started afresh past this; readers notice the shrink and resync


class Journal:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "changes.log"
        self._offset = self._size()
        self._inode = self._inode_now()

    def _stat(self) -> os.stat_result | None:
        try:
            return os.stat(self.path)
        except OSError:
            return None

    def _size(self) -> int:
        st = self._stat()
        return st.st_size if st else 0

    def _inode_now(self) -> int:
        st = self._stat()
        return st.st_ino if st else 0

    def append(self, relpaths: list[str]) -> None:
        """Record changed relpaths (one write, so concurrent appenders don't interleave)."""
        if not relpaths:
            return
        data = "".join(r + "\n" for r in relpaths).encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self._size() > _MAX_SIZE:
                self._start_afresh()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        except OSError as error:
            log.warning("can't record changes for other workers: %s", error)

    def _start_afresh(self) -> None:
        write_atomic(self.path, b"", mode=0o644)

    def poll(self) -> list[str] | None:
        """Relpaths recorded since the last poll; None when nothing is new.

        An empty list means "the log was started afresh: rescan to be sure".
        """
        st = self._stat()
        if st is None:
            return None
        if st.st_ino == self._inode and st.st_size == self._offset:
            return None
        if st.st_ino != self._inode or st.st_size < self._offset:
            self._inode, self._offset = st.st_ino, st.st_size
            return []
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read(st.st_size - self._offset)
        except OSError:
            return None
        complete = data.rpartition(b"\n")[0]
        if not complete:
            return None
        self._offset += len(complete) + 1
        return complete.decode("utf-8", "replace").split("\n")
