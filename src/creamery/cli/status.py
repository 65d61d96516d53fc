"""`creamery status PROJECT [active|archived|quarantined|deprecated] [--reason TEXT] [DIR...]`:
show or set a project's PEP 792 status, through the catalog (audited, recorded in the change
feed: a running server shows it before its next answer). Without a status, the current one
is printed (`--json`: the simple API's `project-status` object).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import TYPE_CHECKING

from creamery.cli import admin
from creamery.core.config import ConfigError
from creamery.core.names import normalize
from creamery.core.objects import is_object_url

if TYPE_CHECKING:
    from creamery.catalog.service import Catalog

STATUSES = ("active", "archived", "quarantined", "deprecated")  # as catalog/status.py has them


def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("project", metavar="PROJECT", help="a hosted project (any spelling)")
    parser.add_argument(
        "status",
        metavar="STATUS",
        nargs="?",
        help="active, archived (no new uploads), quarantined (no file offered nor served) or"
        " deprecated; left out: show the current status",
    )
    parser.add_argument(
        "--reason",
        metavar="TEXT",
        help="one line (300 characters at most), shown to installers and on the web pages",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the status as the simple API's JSON"
    )
    admin.add_location_arguments(parser)


def status_command(args: argparse.Namespace) -> int:
    _take_directory_for_status(args)
    if args.status is None and args.reason is not None:
        raise ConfigError("--reason needs a status: creamery status PROJECT STATUS --reason ...")
    catalog = _open_catalog(args)
    name = normalize(args.project)
    try:
        if args.status is None:
            if name not in catalog.index.projects and catalog.statuses.get(name).active:
                raise ConfigError(f"no project {name!r} here")
            current = catalog.statuses.get(name)
        else:
            try:
                current = catalog.set_status(args.project, args.status, args.reason or "")
            except ValueError as error:
                raise ConfigError(str(error)) from error
            except OSError as error:
                raise ConfigError(f"can't change the status: {error.strerror or error}") from error
    finally:
        catalog.close()
    if args.json:
        print(json.dumps({"project": name, "project-status": current.marker()}))
    else:
        reason = f" ({current.reason})" if current.reason else ""
        print(f"{name}: {current.status}{reason}")
    return 0


def _take_directory_for_status(args: argparse.Namespace) -> None:
    """`creamery status PROJECT DIR`: the optional status was left out."""
    given = args.status
    if given is None or given.strip().lower() in STATUSES:
        return
    if not args.package_directory and (os.path.isdir(given) or is_object_url(given)):
        args.status, args.package_directory = None, [given]


def _open_catalog(args: argparse.Namespace) -> Catalog:
    from creamery.catalog.service import Catalog
    from creamery.core.config import Config

    roots = admin.roots_of(args)
    config = Config(roots=roots, state_dir=admin.state_dir_of(args, roots))
    return admin.loaded(Catalog(config.with_updates(**admin.s3_settings(args))))


STATUS = (add_status_arguments, status_command)
