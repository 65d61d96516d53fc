"""One place for every option: defaults, validation and pypiserver's keyword aliases.

The configuration is an immutable `Config` passed to whatever needs it, never a module global.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from creamery.core.objects import ObjectRoot, is_object_url, parse_object_root

AUTH_ACTIONS = ("download", "list", "update")
UPLOAD_POLICIES = ("strict", "pypiserver")
DEFAULT_ROOT = Path("~/packages")
DEFAULT_FALLBACK_URL = "https://pypi.org/simple/"
DEFAULT_LOG_FRMT = "%(asctime)s|%(name)s|%(levelname)s|%(thread)d|%(message)s"
DEFAULT_LOG_REQ_FRMT = "%(bottle.request)s"
DEFAULT_LOG_RES_FRMT = "%(status)s"
DEFAULT_LOG_ERR_FRMT = "%(body)s: %(exception)s \n%(traceback)s"
# Where a server passes the configuration to the worker processes it starts.
CONFIG_ENV = "_CREAMERY_WORKER_CONFIG"
FALSE_WORDS = frozenset({"0", "no", "off", "false", "n", "f"})
_HEALTH_ENDPOINT = re.compile(r"^/[a-z0-9/_-]+$", re.IGNORECASE)
# Routes the health endpoint must not shadow.
RESERVED_PATHS = frozenset(
    {"/", "/simple", "/simple/", "/packages", "/packages/", "/RPC2", "/pypi", "/metrics"}
)

# The prefix routes of routes.py: a health endpoint below one of them would be hidden by it.
RESERVED_PREFIXES = ("/simple/", "/packages/", "/upstream/", "/+simple/", "/legacy/+simple/")
Auther = Callable[[str, str], bool]
# Config fields holding a path or an s3:// root (or None).
OBJECT_FIELDS = ("mirror_cache",)
# Config fields holding a path (or None).
PATH_FIELDS = (
    "password_file",
    "welcome_file",
    "log_file",
    "log_conf",
    "cache_dir",
    "mirror_cache",
    "state_dir",
)


class ConfigError(ValueError, RuntimeError):
    """An option has a value that can't be used; the message is one line for a person.

    Also a RuntimeError: pypiserver's `app()` raises that for bad options, and callers catch it.
    """


@dataclass(frozen=True)
class Config:
    roots: tuple[Path, ...] = ()
    host: str = "0.0.0.0"
    port: int = 8080
    authenticate: frozenset[str] = frozenset({"update"})
    password_file: Path | None = None  # None: no file given; "." on the CLI disables auth
    auth_disabled: bool = False  # `-P . -a .`
    disable_fallback: bool = False
    fallback_url: str = DEFAULT_FALLBACK_URL
    health_endpoint: str = "/health"
    server: str = "auto"
    overwrite: bool = False
    hash_algo: str | None = "sha256"
    welcome_file: Path | None = None
    welcome_text: str | None = None  # pypiserver's `welcome_msg`: the template itself
    cache_control: int | None = None
    server_base_url: str = "/"
    backend: str = "auto"
    verbosity: int = 0
    log_file: Path | None = None
    log_stream: str = "stdout"
    log_frmt: str = DEFAULT_LOG_FRMT
    log_req_frmt: str = DEFAULT_LOG_REQ_FRMT
    log_res_frmt: str = DEFAULT_LOG_RES_FRMT
    log_err_frmt: str = DEFAULT_LOG_ERR_FRMT
    workers: int = 1
    cache_dir: Path | None = None  # facts cache (hashes, METADATA); default under ~/.cache
    rescan_interval: float = 30.0  # seconds between safety rescans; 0 disables
    watch: bool = True  # file-system events
    max_upload_size: int = 1 << 30
    upload_policy: str = "strict"  # "strict" (PyPI's rules) or "pypiserver" (what it accepts)
    metrics: bool = False  # Prometheus metrics at /metrics
    log_conf: Path | None = None  # a logging configuration file (INI or JSON dictConfig)
    # Caching mirror of the fallback URL (and extra upstreams) instead of redirecting to it.
    mirror: bool = False
    mirror_ttl: float = 600.0  # seconds a fetched project page stays fresh
    mirror_cache: Path | ObjectRoot | None = None  # default: <state directory>/mirror
    mirror_max_size: int | None = None  # bytes of cached files; None: unbounded
    mirror_max_age: float | None = None  # seconds a cached file may stay unused; None: forever
    mirror_merge: tuple[str, ...] = ()  # local projects whose upstream files may be merged
    extra_upstreams: tuple[str, ...] = ()
    upstream_timeout: float = 10.0
    # Connections and timeouts (docs/security.md): what one client can hold, and for how long.
    max_connections: int = 4096  # open connections the server serves at once (all workers)
    header_timeout: float = 10.0  # seconds to send the request line and headers
    body_timeout: float = 30.0  # seconds a request body may stay silent; 0 disables
    max_client_requests: int = 100  # requests in progress per client address; 0 disables
    reuse_port: bool = False  # share the port with other processes (SO_REUSEPORT)
    # creamery's own data (yank state, provenance, facts, feed, scratch): <first root>/.creamery
    state_dir: Path | None = None
    auther: Auther | None = field(default=None, compare=False, repr=False)

    def with_updates(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)

    @property
    def upload_root(self) -> Path:
        return self.roots[0]

    def mirror_cache_dir(self) -> Path | ObjectRoot:
        if self.mirror_cache is not None:
            return self.mirror_cache
        return self.state_directory() / "mirror"

    def state_directory(self) -> Path:
        return default_state_dir(self.roots, self.state_dir)

    def facts_cache_dir(self) -> Path:
        if self.cache_dir is not None:
            return self.cache_dir
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "creamery"

    def to_json(self) -> str:
        """Serialize for worker processes (the `auther` callable can't travel)."""
        data: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "auther":
                continue
            value = getattr(self, f.name)
            if isinstance(value, Path | ObjectRoot):
                value = str(value)
            elif isinstance(value, tuple | frozenset):
                value = [str(v) for v in value]
            data[f.name] = value
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> Config:
        data = json.loads(text)
        data["roots"] = tuple(Path(p) for p in data["roots"])
        data["mirror_merge"] = tuple(data.get("mirror_merge", ()))
        data["extra_upstreams"] = tuple(data.get("extra_upstreams", ()))
        data["authenticate"] = frozenset(data["authenticate"])
        for name in PATH_FIELDS:
            if data.get(name) is not None:
                data[name] = (
                    _root_from_text(data[name]) if name in OBJECT_FIELDS else Path(data[name])
                )
        return cls(**data)


def _root_from_text(text: str) -> Path | ObjectRoot:
    return parse_object_root(text) if is_object_url(text) else Path(text)


# ---------------------------------------------------------------- validators (argparse types)


def parse_auth_actions(text: str | Iterable[str]) -> frozenset[str]:
    """pypiserver's `-a`: a comma list of download/list/update, or "." for none."""
    words = text.split(",") if isinstance(text, str) else list(text)
    actions = {w.strip().lower() for w in words if w.strip()}
    if actions == {"."}:
        return frozenset()
    if "." in actions:
        raise ConfigError("'.' (no authentication) can't be combined with other actions in -a")
    unknown = sorted(actions - set(AUTH_ACTIONS))
    if unknown:
        raise ConfigError(
            f"invalid authentication action {unknown[0]!r}: choose from {', '.join(AUTH_ACTIONS)}"
        )
    return frozenset(actions)


def parse_upload_policy(text: str) -> str:
    policy = str(text).strip().lower()
    if policy not in UPLOAD_POLICIES:
        raise ConfigError(f"upload policy must be one of {', '.join(UPLOAD_POLICIES)}: {text!r}")
    return policy


def parse_hash_algo(text: str | None) -> str | None:
    """A hashlib algorithm name, or None for 0/no/off/false (disabled)."""
    if text is None or text.strip().lower() in FALSE_WORDS:
        return None
    name = text.strip().lower()
    if name not in hashlib.algorithms_available:
        raise ConfigError(f"unknown hash algorithm {text!r}: use a hashlib name such as sha256")
    try:
        hashlib.new(name).hexdigest()
    except TypeError as error:  # shake_* need a length: not usable for link fragments
        raise ConfigError(f"hash algorithm {text!r} can't be used for link fragments") from error
    return name


def parse_health_endpoint(text: str) -> str:
    if text in RESERVED_PATHS or text.startswith(RESERVED_PREFIXES):
        raise ConfigError(f"provided health endpoint {text!r} overlaps with existing routes")
    if not _HEALTH_ENDPOINT.match(text):
        raise ConfigError(
            f"invalid health endpoint {text!r}: it must look like /health (letters, digits, / _ -)"
        )
    return text


def parse_base_url(text: str) -> str:
    """`--server-base-url`: a path prefix such as /pypi, kept as "/" or "/prefix"."""
    path = text.strip()
    if "://" in path:
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    path = "/" + path.strip("/")
    return path


def check_mirror_cache(text: str | os.PathLike[str]) -> Path | ObjectRoot:
    """`--mirror-cache`: a directory, or an s3://BUCKET/PREFIX the replicas share."""
    if is_object_url(text):
        try:
            return parse_object_root(str(text))
        except ValueError as error:
            raise ConfigError(f"mirror cache: {error}") from error
    return Path(text).expanduser()


def check_root(path: Path) -> Path:
    """A package directory must exist and be listable."""
    resolved = path.expanduser().resolve()
    if not resolved.is_dir():
        raise ConfigError(f"package directory {str(path)!r} does not exist or is not a directory")
    try:
        next(iter(os.scandir(resolved)), None)
    except OSError as error:
        raise ConfigError(
            f"package directory {str(path)!r} can't be read: {error.strerror}"
        ) from error
    return resolved


def default_state_dir(roots: tuple[Path, ...], state_dir: Path | None) -> Path:
    """`--state-dir`, else a hidden `.creamery/` in the first root (scans skip dot-dirs)."""
    if state_dir is not None:
        return state_dir
    return roots[0] / ".creamery"


def check_state_dir(path: Path, roots: tuple[Path, ...]) -> Path:
    """A state directory inside a package directory must be hidden, or it would be listed."""
    resolved = path.expanduser().resolve()
    for root in roots:
        inside = resolved.is_relative_to(root.resolve())
        parts = resolved.relative_to(root.resolve()).parts if inside else ()
        if inside and not any(p.startswith(".") for p in parts):
            raise ConfigError(
                f"state directory {str(path)!r} is inside the package directory {str(root)!r}:"
                " use a hidden name (such as .creamery) or a directory outside it"
            )
    return resolved


def check_auth(config: Config) -> Config:
    """pypiserver's rules for `-a` and `-P`, checked once at start."""
    if config.auther is not None:
        return config
    file_is_dot = config.password_file is not None and str(config.password_file) == "."
    if file_is_dot or not config.authenticate:
        if not (file_is_dot and not config.authenticate):
            raise ConfigError(
                "no-authentication needs both '-a .' and '-P .' (authenticated actions and "
                "password file must both be empty)"
            )
        return config.with_updates(password_file=None, auth_disabled=True)
    if config.password_file is not None and not config.password_file.is_file():
        raise ConfigError(f"password file {str(config.password_file)!r} does not exist")
    return config


# ---------------------------------------------------------------- pypiserver's app() keywords

_LEGACY_KWARGS = {
    "authenticated": "authenticate",
    "passwords": "password_file",
    "root": "roots",
    "redirect_to_fallback": "disable_fallback",
    "server": "server_method",
    "welcome_file": "welcome_msg",
}


def config_from_app_kwargs(kwargs: dict[str, Any]) -> Config:
    """Build a Config from `creamery.app(...)`/`pypiserver.app(...)` keywords, legacy ones too."""
    kwargs = dict(kwargs)
    for legacy, modern in _LEGACY_KWARGS.items():
        if legacy in kwargs:
            if modern in kwargs:
                raise ValueError(f"give either {legacy!r} or {modern!r}, not both")
            warnings.warn(
                f"app({legacy}=...) is deprecated, use {modern}=...",
                DeprecationWarning,
                stacklevel=3,
            )
            value = kwargs.pop(legacy)
            if legacy == "redirect_to_fallback":
                value = not value
            elif legacy == "welcome_file":
                kwargs["welcome_file"] = Path(value)
                continue
            kwargs[modern] = value
    changes: dict[str, Any] = {}
    roots = kwargs.pop("roots", None)
    if roots is None:
        roots = [DEFAULT_ROOT]
    elif isinstance(roots, str | os.PathLike):
        roots = [roots]
    changes["roots"] = tuple(check_root(Path(r)) for r in roots)
    if "authenticate" in kwargs:
        changes["authenticate"] = parse_auth_actions(kwargs.pop("authenticate"))
    if "password_file" in kwargs:
        pw = kwargs.pop("password_file")
        changes["password_file"] = None if pw is None else Path(pw)
    if "hash_algo" in kwargs:
        changes["hash_algo"] = parse_hash_algo(kwargs.pop("hash_algo"))
    if "server_method" in kwargs:
        changes["server"] = kwargs.pop("server_method")
    if "welcome_msg" in kwargs:
        changes["welcome_text"] = kwargs.pop("welcome_msg")
    if "server_base_url" in kwargs:
        changes["server_base_url"] = parse_base_url(kwargs.pop("server_base_url"))
    if "health_endpoint" in kwargs:
        changes["health_endpoint"] = parse_health_endpoint(kwargs.pop("health_endpoint"))
    if "backend_arg" in kwargs:
        changes["backend"] = kwargs.pop("backend_arg")
    if "upload_policy" in kwargs:
        changes["upload_policy"] = parse_upload_policy(kwargs.pop("upload_policy"))
    for path_key in ("welcome_file", "log_file", "cache_dir", "state_dir"):
        if kwargs.get(path_key) is not None:
            changes[path_key] = Path(kwargs.pop(path_key))
    if changes.get("state_dir") is not None:
        changes["state_dir"] = check_state_dir(changes["state_dir"], changes["roots"])
    known = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise TypeError(f"app() got unexpected keyword argument {unknown[0]!r}")
    changes.update(kwargs)
    return check_auth(Config(**changes))
