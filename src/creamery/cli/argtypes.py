"""The argparse converters of the command line's option values, and the path checks after them.

A converter raises `argparse.ArgumentTypeError`, which argparse reports as a usage error naming the
flag (and settings.py names the variable or file key); `config_type` turns one of core/config.py's
parsers into a converter.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from creamery.core.config import ConfigError
from creamery.core.operator_files import check_operator_file

_T = TypeVar("_T")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt](?:i?b)?|b)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def port_number(text: str) -> int:
    port = whole_number(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range 0-65535")
    return port


def positive_int(text: str) -> int:
    value = whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not 1 or more")
    return value


def non_negative_int(text: str) -> int:
    value = whole_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 or more)")
    return value


def positive_seconds(text: str) -> float:
    value = seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return value


def parse_size(text: str) -> int:
    """A byte count such as 1024, 500M, 1G or 1.5GiB (binary multiples)."""
    match = _SIZE.fullmatch(text.strip())
    size = int(float(match[1]) * _SIZE_UNITS[(match[2] or "")[:1].lower()]) if match else 0
    if size < 1:
        raise argparse.ArgumentTypeError(
            f"invalid size {text!r}: use a byte count or a K, M, G or T suffix, such as 500M"
        )
    return size


def config_type(parse: Callable[[str], _T]) -> Callable[[str], _T]:
    """A Config parser as an argparse type: its ConfigError is a usage error."""

    def convert(text: str) -> _T:
        try:
            return parse(text)
        except ConfigError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    convert.__name__ = parse.__name__
    return convert


# ---------------------------------------------------------------- paths, checked after parsing


def optional_path(text: str | None) -> Path | None:
    return None if text is None else Path(text).expanduser()


def readable(path: Path | None, what: str) -> Path | None:
    """*path*, once it opens for reading as a regular file; else a ConfigError naming *what* it
    is and why (a FIFO or a device named here is one line at start, not a hang)."""
    return check_operator_file(path, what)
