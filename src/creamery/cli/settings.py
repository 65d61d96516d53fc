"""`creamery run` options from the environment and a TOML file, beneath the command line.

Precedence: flag > environment > file > built-in default. Each option has one name, its long flag
(`--hash-algo`): the variable `CREAMERY_HASH_ALGO`, the file key `hash-algo` (or `hash_algo`).
Values from both go through the option's own argparse converter, so they are checked exactly like
flags, and an error names where the value came from. docs/configuration.md is the user's guide.
"""

from __future__ import annotations

import argparse
import json
import os
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from creamery.core.config import PATH_FIELDS, ConfigError
from creamery.core.objects import is_object_url
from creamery.core.operator_files import read_operator_text

ENV_PREFIX = "CREAMERY_"
CONFIG_FILE_ENV = "CREAMERY_CONFIG"  # the environment's `--config FILE`
TABLE = "creamery"  # the file's table; without one, the top level is read
MAX_CONFIG_BYTES = 1 << 20  # a larger --config file is refused unread
_TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
_FALSE_WORDS = frozenset({"0", "false", "no", "off"})
# Not settings: they say where the settings are, or what to do with them.
_META_DESTS = frozenset({"help", "version", "command", "config_file", "print_config"})
# Relative paths in a file are relative to the file, wherever creamery is started from.
_PATH_DESTS = frozenset({"package_directory", *PATH_FIELDS})
_COMMA_DESTS = frozenset({"authenticate"})  # a file may give these as a list of words
# A file may give these as a table of `"PATTERN" = "VALUE"` ([creamery.mirror-origin]).
_TABLE_DESTS = frozenset({"mirror_origin"})
_AFTER_COMMAND = {"verbosity_after": "verbosity"}  # `run -v` counts apart from `-v run`


@dataclass(frozen=True)
class Source:
    """Where an option's value came from."""

    kind: str  # "flag", "env", "file" or "default"
    where: str = ""  # the variable's name, or the file's path
    label: str = ""  # how an error names it: "CREAMERY_PORT='abc'", "creamery.toml: port"

    def __str__(self) -> str:
        return f"{self.kind} {self.where}" if self.where else self.kind


@contextmanager
def blame(sources: Mapping[str, Source], *dests: str) -> Iterator[None]:
    """Prefix a ConfigError with where the values of *dests* came from (environment, file)."""
    try:
        yield
    except ConfigError as error:
        labels = [s.label for d in dests if (s := sources.get(d)) is not None and s.label]
        if not labels:
            raise
        raise ConfigError(f"{', '.join(labels)}: {error}") from error


@dataclass(frozen=True)
class Option:
    """One `run` option as the environment and the file see it."""

    dest: str
    name: str  # the long flag without dashes, e.g. "hash-algo"
    kind: str  # "switch", "count", "list" (repeatable), "paths" (positional) or "value"
    convert: Callable[[str], Any] | None = None
    choices: tuple[Any, ...] | None = None
    aliases: tuple[str, ...] = ()  # other long flags, for hints

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper().replace("-", "_")

    def from_env(self, text: str) -> Any:
        try:
            if self.kind == "switch":
                return _boolean(text)
            if self.kind == "count":
                return _count(text.strip())
            if self.kind == "list":
                return [item.strip() for item in text.split(",") if item.strip()]
            if self.kind == "paths":
                return split_paths(text)
            return self.check(text)
        except (argparse.ArgumentTypeError, ValueError, TypeError) as error:
            raise ConfigError(f"{self.env_label(text)}: {error}") from None

    def env_label(self, text: str) -> str:
        return f"{self.env}={text!r}"

    def from_file(self, value: Any, path: Path) -> Any:
        try:
            return self._from_file(value, path.resolve().parent)
        except (argparse.ArgumentTypeError, ValueError, TypeError) as error:
            raise ConfigError(f"{self.file_label(path)}: {error}") from None

    def file_label(self, path: Path) -> str:
        return f"{path}: {self.name}"

    def _from_file(self, value: Any, base: Path) -> Any:
        if self.kind == "switch":
            if not isinstance(value, bool):
                raise ValueError(f"expected true or false, not {_toml(value)}")
            return value
        if self.kind == "count":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"expected a whole number, not {_toml(value)}")
            return _count(str(value))
        if self.kind == "list" and isinstance(value, dict) and self.dest in _TABLE_DESTS:
            if not all(isinstance(v, str) for v in value.values()):
                raise ValueError('expected a table of "PATTERN" = "MODE" strings')
            return [self.check(f"{key}={mode}") for key, mode in value.items()]
        if self.kind in ("list", "paths"):
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise ValueError("expected a string or a list of strings")
            if self.kind == "paths":
                return [_resolve(item, base) for item in items]
            return [f"@{_resolve(i[1:], base)}" if i.startswith("@") else i for i in items]
        if isinstance(value, list) and self.dest in _COMMA_DESTS:
            value = ",".join(str(item) for item in value)
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, int | float):
            value = str(value)
        if not isinstance(value, str):
            raise ValueError(f"expected a string or a number, not {_toml(value)}")
        if self.dest in _PATH_DESTS and not (self.dest == "password_file" and value == "."):
            value = _resolve(value, base)
        return self.check(value)

    def check(self, text: str) -> Any:
        """The value as argparse would give it for `--flag TEXT`."""
        value = self.convert(text) if self.convert is not None else text
        if self.choices is not None and value not in self.choices:
            choices = ", ".join(repr(c) for c in self.choices)
            raise argparse.ArgumentTypeError(f"invalid choice: {value!r} (choose from {choices})")
        return value


def _boolean(text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise ValueError("expected 1/0, true/false, yes/no or on/off")


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise ValueError(f"{value} is negative")
    return value


def split_paths(text: str) -> list[str]:
    """`CREAMERY_PACKAGES_DIRECTORY=/a:s3://bucket/prefix:/b`: split on the path separator,
    except the one in `s3://`."""
    items: list[str] = []
    for item in text.split(os.pathsep):
        if items and items[-1].lower() == "s3" and item.startswith("//"):
            items[-1] += os.pathsep + item
        else:
            items.append(item)
    return [item for item in items if item]


def _resolve(text: str, base: Path) -> str:
    if is_object_url(text):  # an s3:// root or cache is not relative to the file
        return text
    path = Path(text).expanduser()
    return str(path if path.is_absolute() else base / path)


# ---------------------------------------------------------------- options of a parser


def options_of(parser: argparse.ArgumentParser) -> list[Option]:
    """The settable options of *parser* (the `run` subparser)."""
    options: dict[str, Option] = {}
    for action in parser._actions:
        dest = _AFTER_COMMAND.get(action.dest, action.dest)
        if dest in _META_DESTS or dest in options or isinstance(action, _NOT_SETTINGS):
            continue
        longs = [s[2:] for s in action.option_strings if s.startswith("--")]
        if longs:
            name, aliases = longs[-1], tuple(longs[:-1])
        else:
            metavar = action.metavar if isinstance(action.metavar, str) else action.dest
            name, aliases = metavar.lower().replace("_", "-"), ()
        options[dest] = Option(
            dest=dest,
            name=name,
            kind=_kind(action),
            convert=action.type if callable(action.type) else None,
            choices=tuple(action.choices) if action.choices is not None else None,
            aliases=aliases,
        )
    # The package directories first, as in a command line's usual reading order.
    return sorted(options.values(), key=lambda option: option.kind != "paths")


_NOT_SETTINGS = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)


def _kind(action: argparse.Action) -> str:
    if isinstance(action, argparse._StoreTrueAction):
        return "switch"
    if isinstance(action, argparse._CountAction):
        return "count"
    if isinstance(action, argparse._AppendAction):
        return "list"
    if not action.option_strings:
        return "paths"
    return "value"


# ---------------------------------------------------------------- layering


def apply(
    options: Iterable[Option],
    args: argparse.Namespace,
    explicit: set[str],
    environ: Mapping[str, str],
) -> dict[str, Source]:
    """Fill in *args* from the environment and the file for what no flag gave; say the sources.

    *explicit* holds the dests given as flags. Empty environment variables count as unset.
    """
    options = list(options)
    config_file, config_source = _config_file(args, explicit, environ)
    from_file = read_file(config_file, options) if config_file is not None else {}
    sources: dict[str, Source] = {}
    if config_file is not None:
        sources["config_file"] = config_source
    for option in options:
        text = environ.get(option.env, "")
        if option.dest in explicit:
            sources[option.dest] = Source("flag")
        elif text.strip():
            setattr(args, option.dest, option.from_env(text))
            sources[option.dest] = Source("env", option.env, option.env_label(text))
        elif option.dest in from_file:
            assert config_file is not None
            setattr(args, option.dest, from_file[option.dest])
            label = option.file_label(config_file)
            sources[option.dest] = Source("file", str(config_file), label)
        else:
            sources[option.dest] = Source("default")
    return sources


def _config_file(
    args: argparse.Namespace, explicit: set[str], environ: Mapping[str, str]
) -> tuple[Path | None, Source]:
    if "config_file" in explicit:
        return Path(args.config_file).expanduser(), Source("flag")
    text = environ.get(CONFIG_FILE_ENV, "").strip()
    if text:
        args.config_file = text
        return Path(text).expanduser(), Source("env", CONFIG_FILE_ENV)
    return None, Source("default")


def read_file(path: Path, options: Iterable[Option]) -> dict[str, Any]:
    """The file's values by dest, each converted and checked; ConfigError names file and key."""
    label = str(path)
    try:  # a FIFO or a device is refused at once: read, it would hang the start
        document = tomllib.loads(read_operator_text(path, "config file", MAX_CONFIG_BYTES))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{label}: invalid TOML: {error}") from error
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        raise ConfigError(f"{label}: invalid TOML: values nested too deeply") from None
    table = document.get(TABLE, document)
    if not isinstance(table, dict):
        raise ConfigError(f"{label}: [{TABLE}] must be a table")
    by_name = {option.name: option for option in options}
    values: dict[str, Any] = {}
    keys: dict[str, str] = {}
    for key, value in table.items():
        name = key.replace("_", "-")
        option = by_name.get(name)
        if option is None:
            raise ConfigError(f"{label}: unknown option {key!r}{_hint(name, by_name.values())}")
        if name in keys:
            raise ConfigError(f"{label}: {keys[name]!r} and {key!r} are the same option")
        keys[name] = key
        values[option.dest] = option.from_file(value, path)
    return values


def _hint(name: str, options: Iterable[Option]) -> str:
    options = list(options)
    for option in options:
        if name in option.aliases:
            return f" (write {option.name!r})"
    close = get_close_matches(name, [option.name for option in options], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ---------------------------------------------------------------- --print-config


def render(
    options: Iterable[Option],
    args: argparse.Namespace,
    sources: Mapping[str, Source],
    overrides: Mapping[str, Any] | None = None,
) -> str:
    """The effective options as a TOML file for `--config`, each with its source as a comment.

    *overrides* replaces values by dest (the resolved package directories, for instance).
    """
    overrides = overrides or {}
    rows: list[tuple[str, str]] = []
    for option in options:
        value = overrides.get(option.dest, getattr(args, option.dest, None))
        source = str(sources.get(option.dest, Source("default")))
        if value is None:
            rows.append((f"# {option.name} is not set", source))
        else:
            rows.append((f"{option.name} = {_toml(value)}", source))
    width = min(max(len(line) for line, _ in rows), 60)
    head = ["# The effective configuration of `creamery run`: the source of each value is on its"]
    head.append("# right (flag, env VARIABLE, file PATH or default). Usable as a --config file.")
    if "config_file" in sources:
        head.append(f"# Options were read from {args.config_file} ({sources['config_file']}).")
    body = [f"{line:<{width}}  # {source}" for line, source in rows]
    return "\n".join([*head, f"[{TABLE}]", *body]) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple | frozenset | set):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, str | os.PathLike):
        # A JSON string is a TOML basic string, once DEL (legal in JSON) is escaped.
        return json.dumps(os.fspath(value), ensure_ascii=False).replace("\x7f", "\\u007f")
    return json.dumps(str(value), ensure_ascii=False)
