"""`creamery mirror-cache show|clear`: the caching mirror's cache, from the command line.

The cache is a directory or an `s3://BUCKET/PREFIX` (reached with the standard AWS variables
and files, as the server reaches it); both work while servers use it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from creamery.core.config import DEFAULT_ROOT, Config, ConfigError, check_mirror_cache, check_root
from creamery.core.names import normalize
from creamery.core.objects import ObjectRoot
from creamery.mirror.cache import MirrorCache, open_cache


def add_cache_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("show", "clear"), help="list the cache or empty it")
    parser.add_argument(
        "package_directory",
        metavar="PACKAGES_DIRECTORY",
        nargs="*",
        help="the served directories; the cache defaults to .creamery/mirror in the first",
    )
    parser.add_argument(
        "--mirror-cache",
        metavar="DIR",
        help="the cache directory itself, or s3://BUCKET/PREFIX",
    )
    parser.add_argument(
        "--project",
        metavar="NAME",
        action="append",
        default=[],
        help="with clear: only this project's pages and files (repeatable)",
    )


def cache_command(args: argparse.Namespace) -> int:
    try:
        location = _cache_location(args)
    except ConfigError as error:
        print(f"creamery: error: {error}", file=sys.stderr)
        return 2
    if isinstance(location, Path) and not location.is_dir():
        print(f"mirror cache {location}: empty (no such directory)")
        return 0
    try:
        with tempfile.TemporaryDirectory(prefix="creamery-mirror-cache-") as spool:
            cache = open_cache(location, spool=Path(spool))
            return _act(cache, args)
    except OSError as error:
        print(f"creamery: error: mirror cache {location}: {error}", file=sys.stderr)
        return 1


def _act(cache: MirrorCache, args: argparse.Namespace) -> int:
    if args.action == "clear":
        projects = frozenset(normalize(p) for p in args.project)
        removed = cache.clear(projects)
        which = f" of {', '.join(sorted(projects))}" if projects else ""
        print(f"mirror cache {cache.where}: removed {removed} files{which}")
        return 0
    _show(cache)
    return 0


def _cache_location(args: argparse.Namespace) -> Path | ObjectRoot:
    if args.mirror_cache:
        return check_mirror_cache(args.mirror_cache)
    roots = args.package_directory or [DEFAULT_ROOT]
    state_dir = os.environ.get("CREAMERY_STATE_DIR")  # the server's --state-dir
    config = Config(
        roots=(check_root(Path(roots[0])),), state_dir=Path(state_dir) if state_dir else None
    )
    return config.mirror_cache_dir()


def _show(cache: MirrorCache) -> None:
    entries = sorted(cache.list_files(), key=lambda e: e.key)
    pages = cache.page_projects()
    for entry in entries:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.last_used))
        print(f"{_human(entry.size):>10}  {used}  {entry.key}")
    total = sum(e.size for e in entries)
    print(
        f"mirror cache {cache.where}: {len(entries)} files, {_human(total)},"
        f" pages of {len(pages)} projects"
    )


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


CACHE_COMMAND = (add_cache_arguments, cache_command)
