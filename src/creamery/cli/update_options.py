"""`creamery update`'s arguments, apart from update.py: the parser then loads no httpx or rich."""

from __future__ import annotations

import argparse

from creamery.cli import admin
from creamery.cli.argtypes import positive_int, seconds
from creamery.core.config import DEFAULT_FALLBACK_URL


def add_update_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "package_directory",
        metavar="PACKAGES_DIRECTORY",
        nargs="*",
        help="directories or s3:// roots whose projects to check, scanned recursively (default:"
        " ~/packages)",
    )
    parser.add_argument(
        "-x",
        "--execute",
        action="store_true",
        help="download the newer wheels and sdists (sha256-verified) instead of only printing "
        "pip commands",
    )
    parser.add_argument(
        "-d",
        "--download-directory",
        metavar="DIR",
        help="where new files go (default: the directory of the project's latest file)",
    )
    parser.add_argument(
        "-u",
        "--allow-unstable",
        action="store_true",
        help="also consider pre-releases (alpha, beta, rc, dev)",
    )
    parser.add_argument(
        "--blacklist-file",
        "--ignorelist-file",
        dest="ignorelist_file",
        metavar="FILE",
        help="projects to skip: one name per line, # comments, any spelling of the name",
    )
    parser.add_argument(
        "--index-url",
        metavar="URL",
        default=DEFAULT_FALLBACK_URL,
        help=f"simple index to compare with; must speak PEP 691 JSON (default: "
        f"{DEFAULT_FALLBACK_URL})",
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=seconds,
        default=30.0,
        help="give up on a request after this long; 0 waits forever (default: 30)",
    )
    parser.add_argument(
        "--concurrency",
        metavar="N",
        type=positive_int,
        default=8,
        help="requests in flight at once (default: 8)",
    )
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        help=f"the server's --state-dir, where -x spools and records downloads (default:"
        f" ${admin.STATE_DIR_ENV}, else .creamery in the first package directory)",
    )
    admin.add_s3_arguments(parser)
