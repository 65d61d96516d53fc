"""Fixtures shared by the test modules; the helpers behind them live in the `support` package."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.corpus import Corpus, build_corpus
from support.s3 import S3Server, s3_server
from support.servers import Server, run_server
from support.upstream import UpstreamProcess, run_upstream

# The real-browser fixtures (`browser`, `pages`, `page`) for the web UI's tests.
pytest_plugins = ["support.browser"]


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


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """One S3-compatible server (moto) for the session; each test takes its own bucket."""
    pytest.importorskip("moto", reason="the s3 tests need moto[server] (the test extra)")
    with s3_server() as server:
        yield server


@pytest.fixture
def s3_bucket(s3: S3Server) -> str:
    """A fresh, empty bucket on the session's S3 server."""
    if s3.paused:
        s3.start()
    return s3.new_bucket()


@pytest.fixture(scope="module")
def fake_process(fake_dir: Path) -> Iterator[UpstreamProcess]:
    """The controllable upstream (`support/upstream.py`) over the module's own `fake_dir`."""
    with run_upstream(fake_dir) as upstream:
        yield upstream


@pytest.fixture
def fake(fake_process: UpstreamProcess) -> UpstreamProcess:
    """The controllable upstream, well-behaved and with fresh statistics."""
    fake_process.reset()
    return fake_process
