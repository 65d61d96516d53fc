"""Administration commands that work directly on the package directories (no server needed):
`creamery passwd`, `yank`, `unyank` and `remove`. They use the server's state directory and
append to its change feed, so a running server sees their changes before its next answer.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from creamery.core.config import (
    DEFAULT_ROOT,
    ConfigError,
    check_root,
    check_state_dir,
    default_state_dir,
)

if TYPE_CHECKING:
    from creamery.catalog.index import Index
    from creamery.changes.local_feed import LocalFeed
    from creamery.storage import Storage

STATE_DIR_ENV = "CREAMERY_STATE_DIR"

# The command line imports this module to build its parser; what the commands need is imported
# when they run, so `creamery run` starts light.


def add_passwd_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("password_file", metavar="FILE", help="htpasswd file (created if missing)")
    parser.add_argument("user", metavar="USER")
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input instead of prompting",
    )


def passwd(args: argparse.Namespace) -> int:
    """Add or update a bcrypt entry, so users don't need Apache's tools."""
    from creamery.catalog.auth import add_user

    password = _read_password(args.password_stdin)
    try:
        add_user(Path(args.password_file), args.user, password)
    except ValueError as error:
        raise ConfigError(str(error)) from error
    except OSError as error:
        raise ConfigError(f"can't write {args.password_file!r}: {error.strerror}") from error
    print(f"password for {args.user!r} set in {args.password_file}")
    return 0


def _read_password(from_stdin: bool) -> str:
    if from_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise ConfigError("the passwords don't match")
    if not password:
        raise ConfigError("empty password")
    return password


def _add_release_arguments(parser: argparse.ArgumentParser, *, version_required: bool) -> None:
    parser.add_argument("project", metavar="PROJECT")
    parser.add_argument("version", metavar="VERSION", nargs=None if version_required else "?")
    parser.add_argument("package_directory", metavar="PACKAGES_DIRECTORY", nargs="*")
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        help=f"the server's --state-dir (default: ${STATE_DIR_ENV}, else .creamery in the first"
        " package directory)",
    )


def add_yank_arguments(parser: argparse.ArgumentParser) -> None:
    _add_release_arguments(parser, version_required=True)
    parser.add_argument("--reason", default="", help="shown to installers (PEP 592)")
    parser.add_argument("--file", dest="filename", help="yank only this file of the release")


def add_unyank_arguments(parser: argparse.ArgumentParser) -> None:
    _add_release_arguments(parser, version_required=True)
    parser.add_argument("--file", dest="filename", help="un-yank only this file of the release")


def add_remove_arguments(parser: argparse.ArgumentParser) -> None:
    _add_release_arguments(parser, version_required=False)


def _open(args: argparse.Namespace) -> tuple[Storage, Index, LocalFeed]:
    from creamery.catalog.index import Index
    from creamery.changes.local_feed import LocalFeed
    from creamery.storage.local import LocalStorage
    from creamery.storage.state import StateDir

    if args.version and not args.package_directory and os.path.isdir(args.version):
        # `creamery remove PROJECT DIR`: the optional version was left out.
        args.version, args.package_directory = None, [args.version]
    roots = tuple(check_root(Path(d)) for d in (args.package_directory or [DEFAULT_ROOT]))
    given = args.state_dir or os.environ.get(STATE_DIR_ENV) or None
    state_path = default_state_dir(roots, Path(given) if given else None)
    state = StateDir(check_state_dir(state_path, roots))
    storage = LocalStorage(roots, scratch=state)
    index = Index(storage, state)
    index.load()
    journal = LocalFeed(state.path)
    migrated = [r for r, stored in index.legacy.items() if state.migrate(storage, stored)]
    if migrated:
        changed = migrated + sorted({r.rpartition(".")[0] for r in migrated})
        index.refresh(changed)
        journal.append(changed)
    return storage, index, journal


def yank(args: argparse.Namespace) -> int:
    return _set_yanked(args, yanked=True)


def unyank(args: argparse.Namespace) -> int:
    return _set_yanked(args, yanked=False)


def _set_yanked(args: argparse.Namespace, *, yanked: bool) -> int:
    from creamery.catalog import releases

    storage, index, journal = _open(args)
    try:
        changed = releases.set_yanked(
            storage,
            index,
            args.project,
            args.version,
            yanked=yanked,
            reason=getattr(args, "reason", ""),
            filename=args.filename,
        )
    except releases.ReleaseNotFound as error:
        raise ConfigError(str(error)) from error
    journal.append(changed)
    verb = "yanked" if yanked else "un-yanked"
    for relpath in changed:
        print(f"{verb} {relpath}")
    if not changed:
        print(f"nothing to do: {args.project} {args.version} was already {verb}")
    return 0


def remove(args: argparse.Namespace) -> int:
    from creamery.catalog import releases

    storage, index, journal = _open(args)
    try:
        changed = releases.remove(storage, index, args.project, args.version)
    except releases.ReleaseNotFound as error:
        raise ConfigError(str(error)) from error
    journal.append(changed)
    for relpath in changed:
        print(f"removed {relpath}")
    return 0


PASSWD = (add_passwd_arguments, passwd)
YANK = (add_yank_arguments, yank)
UNYANK = (add_unyank_arguments, unyank)
REMOVE = (add_remove_arguments, remove)
