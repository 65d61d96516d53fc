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

from creamery.core.objects import ObjectRoot, S3Options, is_object_url, parse_object_root

AUTH_ACTIONS = ("download", "list", "update")
UPLOAD_POLICIES = ("strict", "pypiserver")
ATTESTATION_POLICIES = ("verify", "store", "reject")  # PEP 740 attestations at upload
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
    {"/", "/simple", "/simple/", "/packages", "/packages/", "/RPC2", "/pypi", "/metrics", "/docs"}
)

# The prefix routes of routes.py: a health endpoint below one of them would be hidden by it.
RESERVED_PREFIXES = (
    "/simple/",
    "/packages/",
    "/upstream/",
    "/+simple/",
    "/legacy/+simple/",
    "/docs/",
)
API_PREFIX = "/-/"  # the account and write APIs (/-/tokens, /-/audit, /-/yank...): not for health
Auther = Callable[[str, str], bool]
# Seconds between safety rescans (other tools' changes that no event or feed reports): a listing
# of a bucket costs a request per 1,000 keys, so object roots are listed less often.
LOCAL_RESCAN_SECONDS = 30.0
OBJECT_RESCAN_SECONDS = 60.0
# Seconds between polls of the change feed: a local feed costs two `stat`s, an object feed a
# request to the store (what other replicas wrote shows up within this, plus a request).
LOCAL_FEED_SECONDS = 0.05
OBJECT_FEED_SECONDS = 1.0
DEFAULT_SNAPSHOT_SECONDS = 300.0  # an object root's index snapshot, written this often
DEFAULT_REDIRECT_SECONDS = 300  # --s3-redirect without a value: presigned URLs live 5 minutes
MAX_REDIRECT_SECONDS = 7 * 24 * 3600  # SigV4's limit
S3_EXTRA_HINT = "s3:// roots need the s3 extra: pip install 'creamery[s3]'"
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
    "permissions",
    "prune_rules",
    "mirror_allow",
    "mirror_deny",
)


class ConfigError(ValueError, RuntimeError):
    """An option has a value that can't be used; the message is one line for a person.

    Also a RuntimeError: pypiserver's `app()` raises that for bad options, and callers catch it.
    """


@dataclass(frozen=True)
class Config:
    roots: tuple[Path | ObjectRoot, ...] = ()
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
    # Seconds between safety rescans; 0 disables; None: 30 for directories, 60 for buckets.
    rescan_interval: float | None = None
    watch: bool = True  # file-system events
    max_upload_size: int = 1 << 30
    upload_policy: str = "strict"  # "strict" (PyPI's rules) or "pypiserver" (what it accepts)
    attestations: str = "verify"  # PEP 740 attestations: "verify", "store" unverified, "reject"
    metrics: bool = False  # Prometheus metrics at /metrics
    log_conf: Path | None = None  # a logging configuration file (INI or JSON dictConfig)
    # Caching mirror of the fallback URL (and extra upstreams) instead of redirecting to it.
    mirror: bool = False
    mirror_ttl: float = 600.0  # seconds a fetched project page stays fresh
    mirror_cache: Path | ObjectRoot | None = None  # default: <state directory>/mirror
    mirror_max_size: int | None = None  # bytes of cached files; None: unbounded
    mirror_max_age: float | None = None  # seconds a cached file may stay unused; None: forever
    mirror_merge: tuple[str, ...] = ()  # local projects whose upstream files may be merged
    # Supply-chain policies of the mirror (mirror/policy.py, docs/mirror.md "Policies").
    mirror_min_age: float | None = None  # seconds an upstream file must be out; None: no cooldown
    mirror_min_age_exempt: tuple[str, ...] = ()  # normalized names or globs
    mirror_min_age_unknown: str = "offer"  # files without an upload time: "offer" or "hide"
    mirror_min_age_fallback: str = "oldest"  # all too new: "oldest" release or "none"
    mirror_allow: Path | None = None  # only the projects/versions listed are mirrored
    mirror_deny: Path | None = None  # the projects/versions listed are not mirrored
    mirror_origin: tuple[str, ...] = ()  # "PATTERN=MODE" (local-only, upstream-only, merged)
    # PEP 708 (rejected): `tracks` / `alternate-locations` on mirrored pages, a non-standard
    # extension for the installers that read them; merging does not depend on it.
    mirror_pep708: bool = False
    extra_upstreams: tuple[str, ...] = ()
    upstream_timeout: float = 10.0
    # Connections and timeouts (docs/security.md): what one client can hold, and for how long.
    max_connections: int = 4096  # open connections the server serves at once (all workers)
    header_timeout: float = 10.0  # seconds to send the request line and headers
    body_timeout: float = 30.0  # seconds a request body may stay silent; 0 disables
    max_client_requests: int = 100  # requests in progress per client address; 0 disables
    reuse_port: bool = False  # share the port with other processes (SO_REUSEPORT)
    # creamery's own data (yank state, provenance, facts, feed, scratch): <first root>/.creamery.
    # With a bucket first, its state is in the bucket (<prefix>/.creamery/) and this is the
    # local scratch directory (upload spools, locks).
    state_dir: Path | None = None
    # Object storage (s3:// roots); None: the standard AWS variables and files decide.
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_profile: str | None = None
    s3_redirect: int | None = None  # answer downloads with 302 to URLs presigned for N seconds
    s3_timeout: float = 10.0  # seconds for one request to the store
    feed_interval: float | None = None  # seconds between feed polls; None: 0.05 local, 1 bucket
    snapshot_interval: float = DEFAULT_SNAPSHOT_SECONDS  # an object root's index snapshot; 0: never
    # Who may do what (catalog/access.py): a TOML permission file (None: pypiserver's rules),
    # PyPI-style ownership ("first-uploader", or None), and the reverse proxies whose
    # X-Forwarded-For is believed (CIDRs).
    permissions: Path | None = None
    owners: str | None = None
    trusted_proxies: tuple[str, ...] = ()
    # Retention in the server (catalog/prune.py, docs/retention.md): prune every N seconds
    # (None: never) by these rules (the rules file read again for every run).
    prune_every: float | None = None
    prune_keep: int | None = None
    prune_prereleases_older_than: float | None = None  # seconds
    prune_rules: Path | None = None
    auther: Auther | None = field(default=None, compare=False, repr=False)

    def with_updates(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)

    @property
    def upload_root(self) -> Path | ObjectRoot:
        return self.roots[0]

    @property
    def local_roots(self) -> tuple[Path, ...]:
        """The directories among the roots (watched, cleaned of leftovers)."""
        return tuple(r for r in self.roots if isinstance(r, Path))

    @property
    def object_roots(self) -> tuple[ObjectRoot, ...]:
        return tuple(r for r in self.roots if isinstance(r, ObjectRoot))

    def s3_options(self) -> S3Options:
        return S3Options(
            endpoint_url=self.s3_endpoint_url,
            region=self.s3_region,
            profile=self.s3_profile,
            redirect_seconds=self.s3_redirect,
            timeout=self.s3_timeout,
        )

    def rescan_seconds(self) -> float:
        if self.rescan_interval is not None:
            return self.rescan_interval
        return OBJECT_RESCAN_SECONDS if self.object_roots else LOCAL_RESCAN_SECONDS

    def feed_seconds(self) -> float:
        if self.feed_interval is not None:
            return self.feed_interval
        return (
            OBJECT_FEED_SECONDS if isinstance(self.upload_root, ObjectRoot) else LOCAL_FEED_SECONDS
        )

    def mirror_cache_dir(self) -> Path | ObjectRoot:
        """Where the mirror keeps its files: `--mirror-cache` (a directory or an s3:// prefix
        the replicas share), else `mirror` in the state (the bucket's `.creamery/mirror` with
        a bucket first)."""
        if self.mirror_cache is not None:
            return self.mirror_cache
        state = self.state_directory()
        return state.below("mirror") if isinstance(state, ObjectRoot) else state / "mirror"

    def state_directory(self) -> Path | ObjectRoot:
        """Where the state lives: a directory, or the `.creamery/` prefix of the first root's
        bucket (shared by every replica; `--state-dir` is then the local scratch)."""
        first = self.upload_root
        if isinstance(first, ObjectRoot):
            return first.state()
        return default_state_dir(self.local_roots, self.state_dir)

    def scratch_directory(self) -> Path:
        """The local directory for upload spools and locks: the state directory itself for a
        directory first; with a bucket first, `--state-dir`, else one under the cache dir."""
        state = self.state_directory()
        if isinstance(state, Path):
            return state
        if self.state_dir is not None:
            return self.state_dir
        # One per root (storage/state.py's object_scratch_dir): two indexes on one host never
        # clean each other's spools.
        digest = hashlib.sha256(str(self.upload_root).encode()).hexdigest()[:16]
        return self.facts_cache_dir() / "scratch" / digest

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
        data["roots"] = tuple(_root_from_text(p) for p in data["roots"])
        data["mirror_merge"] = tuple(data.get("mirror_merge", ()))
        data["mirror_min_age_exempt"] = tuple(data.get("mirror_min_age_exempt", ()))
        data["mirror_origin"] = tuple(data.get("mirror_origin", ()))
        data["extra_upstreams"] = tuple(data.get("extra_upstreams", ()))
        data["trusted_proxies"] = tuple(data.get("trusted_proxies", ()))
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


OWNERSHIP_MODES = ("first-uploader",)


def parse_owners(text: str | None) -> str | None:
    """`--owners`: PyPI-style ownership ("first-uploader"), or None / "none" / "off"."""
    if text is None or text.strip().lower() in FALSE_WORDS | {"none", ""}:
        return None
    mode = text.strip().lower()
    if mode not in OWNERSHIP_MODES:
        raise ConfigError(f"--owners must be one of {', '.join(OWNERSHIP_MODES)}: {text!r}")
    return mode


def parse_trusted_proxy(text: str) -> str:
    """`--trusted-proxy CIDR`: an IPv4 or IPv6 network (a bare address is a /32 or /128)."""
    import ipaddress

    try:
        return str(ipaddress.ip_network(text.strip(), strict=False))
    except ValueError:
        raise ConfigError(
            f"--trusted-proxy: {text!r} is not an IP address or CIDR network"
        ) from None


def parse_upload_policy(text: str) -> str:
    policy = str(text).strip().lower()
    if policy not in UPLOAD_POLICIES:
        raise ConfigError(f"upload policy must be one of {', '.join(UPLOAD_POLICIES)}: {text!r}")
    return policy


def parse_attestation_policy(text: str) -> str:
    policy = str(text).strip().lower()
    if policy not in ATTESTATION_POLICIES:
        choices = ", ".join(ATTESTATION_POLICIES)
        raise ConfigError(f"--attestations must be one of {choices}: {text!r}")
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


def parse_redirect_seconds(text: str | int | None) -> int | None:
    """`--s3-redirect[=SECONDS]`: how long presigned download URLs live; a bare flag (or
    true/yes/on) is 300 seconds, 0/no/off/false streams the bytes instead."""
    if text is None:
        return None
    word = str(text).strip().lower()
    if word in FALSE_WORDS:
        return None
    if word in ("", "1", "true", "yes", "on", "y", "t") and not isinstance(text, int):
        return DEFAULT_REDIRECT_SECONDS
    try:
        seconds = int(word)
    except ValueError:
        raise ConfigError(f"{text!r} is not a number of seconds") from None
    if not 1 <= seconds <= MAX_REDIRECT_SECONDS:
        raise ConfigError(f"{seconds} is not between 1 and {MAX_REDIRECT_SECONDS} seconds")
    return seconds


def parse_endpoint_url(text: str | None) -> str | None:
    """`--s3-endpoint-url`: an http:// or https:// URL (MinIO, Ceph RGW, Garage, R2)."""
    if text is None or not text.strip():
        return None
    url = text.strip()
    scheme, sep, rest = url.partition("://")
    if scheme.lower() not in ("http", "https") or not sep or not rest.strip("/"):
        raise ConfigError(f"{text!r} is not an http:// or https:// URL")
    return url


def parse_health_endpoint(text: str) -> str:
    if text in RESERVED_PATHS or text.startswith((*RESERVED_PREFIXES, API_PREFIX)):
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


def check_root_spec(text: str | os.PathLike[str]) -> Path | ObjectRoot:
    """A root as given (command line, file, environment, `app(roots=...)`): an `s3://` URL
    (checked, and the s3 extra installed) or a directory (which must exist and be listable)."""
    if is_object_url(text):
        return check_object_root(str(text))
    return check_root(Path(text))


def check_object_root(text: str) -> ObjectRoot:
    """A valid `s3://BUCKET[/PREFIX]`, with its client installed (not imported: a process
    that only parses options, the CLI's `--print-config`, loads no S3 client)."""
    import importlib.util

    try:
        root = parse_object_root(text)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if importlib.util.find_spec("obstore") is None:
        raise ConfigError(f"{text}: {S3_EXTRA_HINT}")
    return root


def check_mirror_cache(text: str | os.PathLike[str]) -> Path | ObjectRoot:
    if is_object_url(text):
        return check_object_root(str(text))
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


def check_state_dir(path: Path, roots: tuple[Path | ObjectRoot, ...]) -> Path:
    """A state directory inside a package directory must be hidden, or it would be listed."""
    resolved = path.expanduser().resolve()
    for root in roots:
        if isinstance(root, ObjectRoot):
            continue
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
        if config.permissions is not None or config.owners is not None:
            raise ConfigError(
                "--permissions and --owners need users: give a password file (-P), not '-P . -a .'"
            )
        return config.with_updates(password_file=None, auth_disabled=True)
    if config.password_file is not None and not config.password_file.is_file():
        # A FIFO or a directory exists, but is no file to read: say which.
        problem = "is not a regular file" if config.password_file.exists() else "does not exist"
        raise ConfigError(f"password file {str(config.password_file)!r} {problem}")
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
    changes["roots"] = tuple(check_root_spec(r) for r in roots)
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
    if "attestations" in kwargs:
        changes["attestations"] = parse_attestation_policy(kwargs.pop("attestations"))
    for path_key in ("welcome_file", "log_file", "cache_dir", "state_dir", "permissions"):
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
