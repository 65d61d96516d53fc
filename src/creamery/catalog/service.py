"""The catalog: the one service through which the index is read and changed.

It owns the storage, the state directory, the in-memory index, the facts cache and the change
feed, and records every change it makes so other processes (server workers, the CLI) see it.
HTTP handlers and the CLI both go through it; it knows nothing about HTTP.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from creamery.catalog.facts import FactsCache
from creamery.catalog.index import Index
from creamery.changes import ChangeFeed
from creamery.changes.local_feed import LocalFeed
from creamery.core.config import Config
from creamery.storage.local import LocalStorage
from creamery.storage.state import StateDir

log = logging.getLogger("creamery.catalog")


class Catalog:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.state = StateDir(config.state_directory())
        self.storage = LocalStorage(config.roots, scratch=self.state)
        self.index = Index(self.storage, self.state)
        algos = (config.hash_algo,) if config.hash_algo else ()
        self.facts = FactsCache(config.facts_cache_dir(), algos, self.storage)
        self.feed: ChangeFeed = LocalFeed(self.state.path)

    def record(self, relpaths: Iterable[str]) -> int:
        """After a write: update this process's index now and tell the other processes.
        Returns the change's serial (the commit point of the write)."""
        changed = list(relpaths)
        self.index.refresh(changed)
        try:
            return self.feed.append(changed)
        except OSError as error:  # the write is done; other processes find it by rescanning
            log.warning("can't record changes for other processes: %s", error)
            return self.feed.announced()
