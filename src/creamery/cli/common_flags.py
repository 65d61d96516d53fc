"""The flags every subcommand accepts, before it (`creamery -v run`) and after it (`run -v`)."""

from __future__ import annotations

import argparse

from creamery.core.config import Config

_DEFAULTS = Config()


def add_common_flags(parser: argparse.ArgumentParser, *, after_command: bool) -> None:
    """Flags valid on both sides of the subcommand.

    After the subcommand they default to SUPPRESS, so they never overwrite a value given before it
    (pypiserver's bug); `-v` counts separately there and the two counts are added.
    """

    def default(value: object) -> object:
        return argparse.SUPPRESS if after_command else value

    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        dest="verbosity_after" if after_command else "verbosity",
        default=default(0),
        help="log INFO; repeat for DEBUG (-vv) and everything (-vvv)",
    )
    parser.add_argument(
        "--log-file", metavar="FILE", default=default(None), help="also log to FILE"
    )
    parser.add_argument(
        "--log-stream",
        type=str.lower,
        choices=("stdout", "stderr", "none"),
        default=default(_DEFAULTS.log_stream),
        help=f"where to log (default: {_DEFAULTS.log_stream})",
    )
    parser.add_argument(
        "--log-frmt",
        metavar="FORMAT",
        default=default(_DEFAULTS.log_frmt),
        help="logging format string for every handler",
    )
    parser.add_argument(
        "--hash-algo",
        metavar="ALGO",
        default=default(_DEFAULTS.hash_algo),
        help="hashlib algorithm for link fragments; 0/no/off/false disables (default: sha256)",
    )
    parser.add_argument(
        "--backend",
        type=str.lower,
        choices=("auto", "simple-dir", "cached-dir"),
        default=default(_DEFAULTS.backend),
        help="accepted for pypiserver compatibility; creamery has one storage backend",
    )
