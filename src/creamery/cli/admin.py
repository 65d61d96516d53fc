"""Administration commands that work directly on the package directories (no server needed):
`creamery passwd`, `yank`, `unyank`, `remove` and `docs remove`. All but `passwd` go through
the catalog, the service HTTP writes use, built from a Config of the same directories and
state directory: it records every change, so a running server sees it before its next
answer. `passwd` replaces
the htpasswd file atomically; a server looks at that file (one `stat`) before every check.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from creamery.core.config import (
    DEFAULT_ROOT,
    ConfigError,
    check_root_spec,
    check_state_dir,
    default_state_dir,
)
from creamery.core.objects import ObjectRoot, is_object_url

if TYPE_CHECKING:
    from creamery.catalog.service import Catalog

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
    add_location_arguments(parser)


def add_location_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the commands act: the server's directories or s3:// roots, its state directory
    and the object store's options."""
    parser.add_argument(
        "package_directory",
        metavar="PACKAGES_DIRECTORY",
        nargs="*",
        help="directories or s3://BUCKET[/PREFIX] roots, as the server has them",
    )
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        help=f"the server's --state-dir (default: ${STATE_DIR_ENV}, else .creamery in the first"
        " package directory)",
    )
    add_s3_arguments(parser)


def add_yank_arguments(parser: argparse.ArgumentParser) -> None:
    _add_release_arguments(parser, version_required=True)
    parser.add_argument("--reason", default="", help="shown to installers (PEP 592)")
    parser.add_argument("--file", dest="filename", help="yank only this file of the release")


def add_unyank_arguments(parser: argparse.ArgumentParser) -> None:
    _add_release_arguments(parser, version_required=True)
    parser.add_argument("--file", dest="filename", help="un-yank only this file of the release")


def add_remove_arguments(parser: argparse.ArgumentParser) -> None:
    _add_release_arguments(parser, version_required=False)


def open_catalog(args: argparse.Namespace) -> Catalog:
    """The catalog of the directories and state directory given, loaded."""
    from creamery.catalog.service import Catalog
    from creamery.core.config import Config

    version = args.version
    if (
        version
        and not args.package_directory
        and (os.path.isdir(version) or is_object_url(version))
    ):
        # `creamery remove PROJECT DIR`: the optional version was left out.
        args.version, args.package_directory = None, [version]
    roots = roots_of(args)
    config = Config(roots=roots, state_dir=state_dir_of(args, roots))
    return loaded(Catalog(config.with_updates(**s3_settings(args))))


def loaded(catalog: Catalog, load: Callable[[], None] | None = None) -> Catalog:
    """*catalog* after *load* (default: `Catalog.load`); a store that does not answer or a
    directory that can't be read is one line (exit 2), not a traceback."""
    try:
        (load or catalog.load)()
    except OSError as error:
        catalog.close()
        why = error.strerror or str(error) or type(error).__name__
        raise ConfigError(f"can't read the index: {why}") from error
    return catalog


def roots_of(args: argparse.Namespace) -> tuple[Path | ObjectRoot, ...]:
    """The directories and s3:// roots given (default: ~/packages), checked."""
    return tuple(check_root_spec(d) for d in (args.package_directory or [DEFAULT_ROOT]))


def add_s3_arguments(parser: argparse.ArgumentParser) -> None:
    """For an s3:// root: the options `creamery run` has (each also from its CREAMERY_S3_*
    variable, as the server reads it); the AWS_* variables are read by the store's client."""
    parser.add_argument("--s3-endpoint-url", metavar="URL", help="the S3-compatible store")
    parser.add_argument("--s3-region", metavar="REGION", help="the bucket's region")
    parser.add_argument("--s3-profile", metavar="NAME", help="the AWS profile to use")


def s3_settings(args: argparse.Namespace) -> dict[str, str | None]:
    """The object-storage Config fields from *args*, else from the CREAMERY_S3_* variables."""
    from creamery.core.config import parse_endpoint_url

    found: dict[str, str | None] = {}
    for name in ("endpoint_url", "region", "profile"):
        value = getattr(args, f"s3_{name}", None) or os.environ.get(f"CREAMERY_S3_{name.upper()}")
        if value and value.strip():
            found[f"s3_{name}"] = value.strip()
    try:
        found["s3_endpoint_url"] = parse_endpoint_url(found.get("s3_endpoint_url"))
    except ConfigError as error:
        raise ConfigError(f"--s3-endpoint-url: {error}") from None
    return found


def state_dir_of(args: argparse.Namespace, roots: tuple[Path | ObjectRoot, ...]) -> Path | None:
    """`--state-dir`, else $CREAMERY_STATE_DIR, else the server's default; checked. With a
    bucket first, the state is in the bucket: the directory given is only the local scratch."""
    given = getattr(args, "state_dir", None) or os.environ.get(STATE_DIR_ENV) or None
    if isinstance(roots[0], ObjectRoot):
        return Path(given).expanduser() if given else None
    local = tuple(r for r in roots if isinstance(r, Path))
    return check_state_dir(default_state_dir(local, Path(given) if given else None), roots)


def yank(args: argparse.Namespace) -> int:
    return _set_yanked(args, yanked=True)


def unyank(args: argparse.Namespace) -> int:
    return _set_yanked(args, yanked=False)


def _set_yanked(args: argparse.Namespace, *, yanked: bool) -> int:
    from creamery.catalog.service import ReleaseNotFound

    catalog = open_catalog(args)
    try:
        changed = catalog.set_yanked(
            args.project,
            args.version,
            yanked=yanked,
            reason=getattr(args, "reason", ""),
            filename=args.filename,
        )
    except ReleaseNotFound as error:
        raise ConfigError(str(error)) from error
    except OSError as error:
        raise ConfigError(f"can't change the yank state: {error.strerror}") from error
    finally:
        catalog.close()
    verb = "yanked" if yanked else "un-yanked"
    for relpath in changed:
        print(f"{verb} {relpath}")
    if not changed:
        print(f"nothing to do: {args.project} {args.version} was already {verb}")
    return 0


def remove(args: argparse.Namespace) -> int:
    from creamery.catalog.service import ReleaseNotFound

    catalog = open_catalog(args)
    try:
        changed = catalog.remove(args.project, args.version)
    except ReleaseNotFound as error:
        raise ConfigError(str(error)) from error
    except OSError as error:
        raise ConfigError(f"can't remove {args.project}: {error.strerror}") from error
    finally:
        catalog.close()
    for relpath in changed:
        print(f"removed {relpath}")
    return 0


def add_docs_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="docs_command", metavar="ACTION", required=True)
    remove = commands.add_parser(
        "remove",
        help="delete a version's hosted documentation (or all of a project's)",
        description="delete hosted documentation (docs/ui.md)",
    )
    _add_release_arguments(remove, version_required=False)


def docs_command(args: argparse.Namespace) -> int:
    """`creamery docs remove PROJECT [VERSION] [DIR|s3://...]`."""
    from creamery.catalog.docs import canonical_version
    from creamery.core.names import normalize

    catalog = open_catalog(args)
    try:
        version = args.version
        if version is not None:
            version = canonical_version(version)
            if version is None:
                raise ConfigError(f"invalid version {args.version!r} (see PEP 440)")
        removed = catalog.remove_docs(args.project, version)
    except OSError as error:
        raise ConfigError(
            f"can't remove {args.project}'s documentation: {error.strerror}"
        ) from error
    finally:
        catalog.close()
    name = normalize(args.project)
    if not removed:
        what = f"{name} {version}" if version else name
        raise ConfigError(f"no documentation of {what}")
    for each in removed:
        print(f"removed the documentation of {name} {each}")
    return 0


PASSWD = (add_passwd_arguments, passwd)
YANK = (add_yank_arguments, yank)
UNYANK = (add_unyank_arguments, unyank)
REMOVE = (add_remove_arguments, remove)
DOCS = (add_docs_arguments, docs_command)
