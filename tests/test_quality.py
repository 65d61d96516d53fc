"""The code stays lint-clean, formatted and type-clean (the same checks developers run)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINTED = tuple(
    path
    for path in ("src", "tests", "benchmarks", "deploy", "scripts/build-standalone")
    if (ROOT / path).exists()
)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    "command",
    [
        ("ruff", "check", *LINTED),
        ("ruff", "format", "--check", *LINTED),
        ("mypy",),
    ],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_quality_gate(command: tuple[str, ...]) -> None:
    result = run(*command)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_strict() -> None:
    """The mypy gate is only as strong as its configuration: strict, and no blanket ignore of
    untyped imports (a module without types is listed on its own, with its reason)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert config.get("strict") is True
    assert "ignore_missing_imports" not in config
