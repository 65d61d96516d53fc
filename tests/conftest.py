"""Fixtures shared by the test modules; the helpers behind them live in the `support` package."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from support.corpus import Corpus, build_corpus
from support.servers import Server, run_server


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return build_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session", name="run_server")
def run_server_fixture() -> Callable[..., object]:
    """`run_server(roots, *args, ready_paths=..., env=...)` as a context manager."""
    return run_server


@pytest.fixture(scope="module")
def server(corpus: Corpus) -> Iterator[Server]:
    """One default server over the corpus per test module."""
    with run_server(corpus.roots) as srv:
        yield srv
