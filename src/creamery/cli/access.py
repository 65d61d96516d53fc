"""`creamery token create|list|revoke`, `creamery owners add|remove|list` and `creamery audit`:
who may do what, from the command line, on the state of the given directories (or `s3://`
roots), with or without a server running.

Like `yank` and `remove` (admin.py), they build the catalog of the directories and state
directory given and write through it, so every change is audited and recorded in the change
feed, where a running server (every worker, every replica) picks it up. Unlike them they never
scan the index: the tokens, grants and audit log are all they read. A token's secret is printed
once, by `token create`, and nowhere else.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from creamery.cli import admin
from creamery.core.config import Config, ConfigError
from creamery.core.objects import is_object_url

if TYPE_CHECKING:
    from creamery.catalog.audit import Entry
    from creamery.catalog.service import Catalog

PASSWORDS_ENV = "CREAMERY_PASSWORDS"  # the server's -P, from its environment
OWNERSHIP = "first-uploader"
GRANT_ROLES = ("uploader", "maintainer", "owner")

# What the commands need is imported when they run, so `creamery run` starts light.


# ---------------------------------------------------------------- arguments


def _add_passwords_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-P",
        "--passwords",
        dest="password_file",
        metavar="PASSWORD_FILE",
        help=f"the server's htpasswd file: USER must be in it (default: ${PASSWORDS_ENV})",
    )


def _add_json_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--json", action="store_true", help=f"one JSON object per {what}")


def add_token_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="token_command", metavar="ACTION", required=True)

    create = commands.add_parser(
        "create", help="make a token and print its secret, once", description="make a token"
    )
    create.add_argument("user", metavar="USER", help="whose rights the token narrows")
    create.add_argument(
        "--project",
        dest="projects",
        metavar="PROJECT",
        action="append",
        default=[],
        help="a project in the token's scope, uploaded yet or not (repeatable; default: all)",
    )
    create.add_argument(
        "--action",
        dest="actions",
        metavar="ACTION",
        action="append",
        default=[],
        help="upload, yank, remove, download or list (repeatable, or comma-separated;"
        " default: upload)",
    )
    create.add_argument(
        "--expires",
        metavar="DURATION",
        help="expire after this long, such as 90d, 12h, 30m, 45s or 2w (default: never)",
    )
    create.add_argument("--description", default="", metavar="TEXT", help="one line")
    _add_passwords_argument(create)
    _add_json_argument(create, "token")
    admin.add_location_arguments(create)

    listing = commands.add_parser(
        "list", help="list tokens (never their secrets)", description="list tokens"
    )
    listing.add_argument("user", metavar="USER", nargs="?", help="only this user's tokens")
    _add_json_argument(listing, "token")
    admin.add_location_arguments(listing)

    revoke = commands.add_parser("revoke", help="revoke a token", description="revoke a token")
    revoke.add_argument("token_id", metavar="ID", help="the token's id (as `token list` shows)")
    admin.add_location_arguments(revoke)


def add_owners_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="owners_command", metavar="ACTION", required=True)

    add = commands.add_parser(
        "add", help="give a user a role on a project", description="give a user a role"
    )
    add.add_argument("project", metavar="PROJECT")
    add.add_argument("user", metavar="USER")
    add.add_argument(
        "--role",
        type=str.lower,
        choices=GRANT_ROLES,
        default="maintainer",
        help="uploader (new files), maintainer (+ yank, remove, overwrite) or owner (+ grants)"
        " (default: maintainer)",
    )
    _add_passwords_argument(add)
    admin.add_location_arguments(add)

    remove = commands.add_parser(
        "remove", help="take a user's role on a project away", description="take a role away"
    )
    remove.add_argument("project", metavar="PROJECT")
    remove.add_argument("user", metavar="USER")
    admin.add_location_arguments(remove)

    listing = commands.add_parser(
        "list", help="list who owns or maintains what", description="list the grants"
    )
    listing.add_argument("project", metavar="PROJECT", nargs="?", help="only this project")
    _add_json_argument(listing, "grant")
    admin.add_location_arguments(listing)


def add_audit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since", metavar="DURATION", help="only the last DURATION, such as 7d or 12h"
    )
    parser.add_argument("--project", metavar="PROJECT", help="only entries about this project")
    parser.add_argument("--user", metavar="USER", help="only entries made by this user")
    _add_json_argument(parser, "entry")
    admin.add_location_arguments(parser)


# ---------------------------------------------------------------- the catalog


def open_access(args: argparse.Namespace, *, ownership: bool = False) -> Catalog:
    """The catalog of the directories and state given, with its tokens and grants loaded (the
    index is not scanned). *ownership*: grants are read and written whatever mode the server
    runs in."""
    from creamery.catalog.service import Catalog

    roots = admin.roots_of(args)
    config = Config(
        roots=roots,
        state_dir=admin.state_dir_of(args, roots),
        owners=OWNERSHIP if ownership else None,
    )
    catalog = Catalog(config.with_updates(**admin.s3_settings(args)))
    try:
        catalog.access.load()
    except OSError as error:
        catalog.close()
        raise ConfigError(f"can't read the access state: {_why(error)}") from error
    return catalog


def _leading_name(args: argparse.Namespace, attr: str) -> None:
    """`token list [USER] [DIR...]`, `owners list [PROJECT] [DIR...]`: a first positional that
    is an existing directory or an s3:// URL is a directory, not a name."""
    given = getattr(args, attr)
    items = ([given] if given is not None else []) + list(args.package_directory or [])
    name = None
    if items and not (os.path.isdir(items[0]) or is_object_url(items[0])):
        name = items.pop(0)
    setattr(args, attr, name)
    args.package_directory = items


def _why(error: OSError) -> str:
    return error.strerror or str(error) or type(error).__name__


def _check_user(args: argparse.Namespace, user: str) -> None:
    """With the server's password file (-P, else $CREAMERY_PASSWORDS): *user* must be in it,
    or what is made for them would never work."""
    given = args.password_file or os.environ.get(PASSWORDS_ENV) or None
    if given is None or given.strip() == ".":
        return
    from pathlib import Path

    from creamery.catalog.auth import HtpasswdFile

    path = Path(given).expanduser()
    if not path.is_file():
        raise ConfigError(f"password file {str(path)!r} does not exist")
    if user not in HtpasswdFile(path):
        raise ConfigError(f"no user {user!r} in the password file {str(path)!r}")


# ---------------------------------------------------------------- token


def token_command(args: argparse.Namespace) -> int:
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "create": _create_token,
        "list": _list_tokens,
        "revoke": _revoke_token,
    }
    return commands[args.token_command](args)


def _create_token(args: argparse.Namespace) -> int:
    from creamery.catalog.audit import parse_duration

    expires = None
    if args.expires is not None:
        try:
            expires = time.time() + parse_duration(args.expires)
        except ValueError as error:
            raise ConfigError(f"--expires: {error}") from None
    actions = [a for given in args.actions for a in given.split(",")]
    _check_user(args, args.user)
    catalog = open_access(args)
    try:
        token, secret = catalog.create_token(
            args.user,
            projects=args.projects,
            actions=actions,
            expires=expires,
            description=args.description,
        )
    except ValueError as error:
        raise ConfigError(str(error)) from error
    except OSError as error:
        raise ConfigError(f"can't store the token: {_why(error)}") from error
    finally:
        catalog.close()
    public = token.public()
    if args.json:
        print(json.dumps({"token": secret, **public}))
        return 0
    print(f"id: {token.id}")
    print(f"token: {secret}")
    print(f"owner: {token.owner}")
    print(f"actions: {', '.join(sorted(token.actions))}")
    print(f"projects: {', '.join(token.projects) or '* (every project)'}")
    print(f"expires: {public['expires'] or 'never'}")
    if token.description:
        print(f"description: {token.description}")
    _stderr("The token is shown only now: store it (the password of the user __token__).")
    return 0


_TOKEN_COLUMNS = (
    ("id", "id"),
    ("owner", "owner"),
    ("actions", "actions"),
    ("projects", "projects"),
    ("created", "created"),
    ("expires", "expires"),
    ("last used", "last_used"),
    ("expired", "expired"),
)


def _list_tokens(args: argparse.Namespace) -> int:
    _leading_name(args, "user")
    catalog = open_access(args)
    try:
        tokens = catalog.access.tokens.all()
    finally:
        catalog.close()
    shown = [t.public() for t in tokens if args.user is None or t.owner == args.user]
    if args.json:
        for record in shown:
            print(json.dumps(record))
        return 0
    if not shown:
        print("no tokens" + ("" if args.user is None else f" of {args.user}"))
        return 0
    rows = [[_token_cell(record[key]) for _, key in _TOKEN_COLUMNS] for record in shown]
    print(table([title for title, _ in _TOKEN_COLUMNS], rows), end="")
    return 0


def _token_cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return _cell(",".join(str(v) for v in value) or "*")
    return _cell(value)


def _revoke_token(args: argparse.Namespace) -> int:
    from creamery.catalog.tokens import looks_like_token, split_secret

    token_id = args.token_id.strip()
    if looks_like_token(token_id):
        # The secret itself (a leaked token, pasted as it is): revoke it by its id, and never
        # repeat the secret in a message.
        split = split_secret(token_id)
        if split is None:
            raise ConfigError("not a token id, nor a creamery token")
        token_id = split[0]
    catalog = open_access(args)
    try:
        token = catalog.revoke_token(token_id)
    except OSError as error:
        raise ConfigError(f"can't revoke the token: {_why(error)}") from error
    finally:
        catalog.close()
    if token is None:
        raise ConfigError(f"no token with id {_cell(token_id)!r}")
    print(f"revoked token {token.id} of {token.owner}")
    return 0


# ---------------------------------------------------------------- owners


def owners_command(args: argparse.Namespace) -> int:
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "add": _add_owner,
        "remove": _remove_owner,
        "list": _list_owners,
    }
    return commands[args.owners_command](args)


def _project_name(text: str) -> str:
    from creamery.core.names import is_valid_project_name, normalize

    if not is_valid_project_name(text.strip()):
        raise ConfigError(f"invalid project name {_cell(text)!r}")
    return normalize(text)


def _check_grantee(user: str) -> None:
    if not user or any(c in user for c in ":\r\n\0") or user.strip() != user:
        raise ConfigError(f"invalid user name {_cell(user)!r}")


def _add_owner(args: argparse.Namespace) -> int:
    from creamery.catalog.permissions import Role

    project = _project_name(args.project)
    _check_grantee(args.user)
    _check_user(args, args.user)
    catalog = open_access(args, ownership=True)
    try:
        grant = catalog.grant(project, args.user, Role.named(args.role))
    except ValueError as error:
        raise ConfigError(str(error)) from error
    except OSError as error:
        raise ConfigError(f"can't store the grant: {_why(error)}") from error
    finally:
        catalog.close()
    print(f"{grant.user} is {grant.role.label} of {grant.project}")
    return 0


def _remove_owner(args: argparse.Namespace) -> int:
    project = _project_name(args.project)
    catalog = open_access(args, ownership=True)
    try:
        removed = catalog.ungrant(project, args.user)
    except ValueError as error:
        raise ConfigError(str(error)) from error
    except OSError as error:
        raise ConfigError(f"can't remove the grant: {_why(error)}") from error
    finally:
        catalog.close()
    if not removed:
        raise ConfigError(f"{_cell(args.user)!r} has no role on {project}")
    print(f"{args.user} has no role on {project} now")
    return 0


_GRANT_COLUMNS = (
    ("project", "project"),
    ("user", "user"),
    ("role", "role"),
    ("granted by", "granted_by"),
    ("since", "time"),
)


def _list_owners(args: argparse.Namespace) -> int:
    _leading_name(args, "project")
    project = None if args.project is None else _project_name(args.project)
    catalog = open_access(args, ownership=True)
    try:
        owners = catalog.access.owners
        grants = [] if owners is None else sorted(owners.all(), key=lambda g: (g.project, g.user))
    finally:
        catalog.close()
    shown = [g.public() for g in grants if project is None or g.project == project]
    if args.json:
        for record in shown:
            print(json.dumps(record))
        return 0
    if not shown:
        print("no grants" + ("" if project is None else f" on {project}"))
        return 0
    rows = [[_cell(record[key]) or "-" for _, key in _GRANT_COLUMNS] for record in shown]
    print(table([title for title, _ in _GRANT_COLUMNS], rows), end="")
    return 0


# ---------------------------------------------------------------- audit


_AUDIT_COLUMNS = (
    "time",
    "user",
    "token",
    "client",
    "action",
    "project",
    "target",
    "result",
    "detail",
)


def audit_command(args: argparse.Namespace) -> int:
    from creamery.catalog.audit import parse_duration

    since = None
    if args.since is not None:
        try:
            since = time.time() - parse_duration(args.since)
        except ValueError as error:
            raise ConfigError(f"--since: {error}") from None
    project = None if args.project is None else _project_name(args.project)
    catalog = open_access(args)
    try:
        entries = list(catalog.access.audit.read(since=since, project=project, user=args.user))
    except OSError as error:
        raise ConfigError(f"can't read the audit log: {_why(error)}") from error
    finally:
        catalog.close()
    if args.json:
        for entry in entries:
            # ASCII-escaped: a hostile filename or reason can't reach the terminal raw.
            print(json.dumps(dataclasses.asdict(entry)))
        return 0
    if not entries:
        print("no audit entries")
        return 0
    print(table(list(_AUDIT_COLUMNS), [_audit_row(e) for e in entries]), end="")
    return 0


def _audit_row(entry: Entry) -> list[str]:
    target = " ".join(v for v in (entry.version, entry.filename) if v)
    notes = [f"sha256={entry.sha256[:12]}…"] if entry.sha256 else []
    notes += [f"size={entry.size}"] if entry.size is not None else []
    notes += [f"reason={entry.reason!r}"] if entry.reason else []
    notes += [entry.detail] if entry.detail else []
    cells = [
        entry.time[:19].replace("T", " "),
        entry.user or "anonymous",
        entry.token or "-",
        entry.client or "-",
        entry.action,
        entry.project or "-",
        target or "-",
        entry.result,
    ]
    return [_cell(c) for c in [*cells, " ".join(notes)]]


# ---------------------------------------------------------------- output


def _cell(value: object) -> str:
    """*value* as one line without control characters (escaped), for a terminal."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Aligned columns, a header line first (the last column is not padded)."""
    lines = [list(headers), *(list(r) for r in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers) - 1)]
    return "".join(
        "  ".join([*(c.ljust(w) for c, w in zip(line, widths, strict=False)), line[-1]]).rstrip()
        + "\n"
        for line in lines
    )


def _stderr(text: str) -> None:
    print(text, file=sys.stderr)


TOKEN = (add_token_arguments, token_command)
OWNERS = (add_owners_arguments, owners_command)
AUDIT = (add_audit_arguments, audit_command)
