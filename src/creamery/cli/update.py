"""`creamery update`: newer releases of hosted projects on an upstream index (pypiserver `-U`).

For every hosted project it asks the upstream's PEP 691 JSON page (several projects at a time),
prints `# update X from A to B` and the `pip download` command that fetches B, and with `-x`
downloads B's wheels and sdist itself: each file is spooled in the state directory's scratch
area, checked against the page's sha256 and published through the catalog beside the old file
(or in `-d DIR`), never replacing an existing one, with the digests computed while it arrived.
The catalog records the change, so a running server lists the file at once. A `-d DIR` outside
the package directories just receives the files.

Output on stdout is a shell script (comments and pip commands); problems go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import sys
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import httpx
from packaging.version import Version

from creamery.catalog.facts import read_metadata_bytes
from creamery.catalog.service import AlreadyExists, Catalog, Upload
from creamery.cli.admin import loaded, roots_of, s3_settings, state_dir_of
from creamery.core import durable
from creamery.core.config import Config, ConfigError
from creamery.core.hashing import pypi_hashers
from creamery.core.names import normalize, parse_filename, parse_version
from creamery.core.objects import ObjectRoot
from creamery.core.operator_files import read_name_list
from creamery.core.version import __version__
from creamery.storage.local import is_safe_relpath

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

PROG = "creamery update"
JSON_CONTENT_TYPE = "application/vnd.pypi.simple.v1+json"  # PEP 691
DOWNLOAD_KINDS = ("wheel", "sdist")
CHUNK_SIZE = 1 << 16


class UpdateError(Exception):
    """One project (or file) could not be checked or fetched; the message is one line."""


class NotOnIndex(UpdateError):
    """The index does not have the project: normal for a private one's, so not a failure."""


@dataclass(frozen=True)
class Settings:
    roots: tuple[Path | ObjectRoot, ...]
    index_url: str  # as given; pages are at <index_url>/<normalized name>/
    download_dir: Path | None = None  # None: beside the project's latest file
    execute: bool = False
    allow_unstable: bool = False  # PEP 440 pre-releases (a, b, rc, dev)
    ignored: frozenset[str] = frozenset()  # PEP 503-normalized names
    timeout: float | None = 30.0
    concurrency: int = 8
    state_dir: Path | None = None  # the server's --state-dir (None: its default)
    s3: tuple[tuple[str, str | None], ...] = ()  # the s3_* Config fields, for s3:// roots

    def catalog(self) -> Catalog:
        """The catalog of these directories, as a server of them has it."""
        config = Config(roots=self.roots, state_dir=self.state_dir)
        return Catalog(config.with_updates(**dict(self.s3)))


@dataclass(frozen=True)
class Hosted:
    """A hosted project and its latest local release."""

    project: str  # PEP 503-normalized
    name: str  # as spelled in the latest file's name
    version: str  # as spelled in the latest file's name
    # Where the latest file lives: a directory, or (an s3:// root) its relative key prefix.
    directory: Path


@dataclass(frozen=True)
class UpstreamFile:
    filename: str
    url: str  # absolute
    sha256: str | None  # PEP 691 `hashes`, lower-case hex


@dataclass(frozen=True)
class Update:
    hosted: Hosted
    version: str  # the newer release, as the upstream spells it
    files: tuple[UpstreamFile, ...]  # its wheels and sdist, none yanked
    directory: Path  # where they go

    def pip_command(self, index_url: str) -> str:
        words = ["pip", "-q", "download", "--no-deps", "-i", index_url, "-d", str(self.directory)]
        return " ".join(shlex.quote(w) for w in [*words, f"{self.hosted.name}=={self.version}"])


# ---------------------------------------------------------------- settings and local projects


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The `update` namespace as Settings; ConfigError names the first bad value."""
    download_dir = args.download_directory
    roots = roots_of(args)
    return Settings(
        roots=roots,
        index_url=check_index_url(args.index_url),
        download_dir=None if download_dir is None else Path(download_dir).expanduser().absolute(),
        execute=args.execute,
        allow_unstable=args.allow_unstable,
        ignored=read_ignorelist(args.ignorelist_file),
        timeout=args.timeout or None,
        concurrency=args.concurrency,
        state_dir=state_dir_of(args, roots),
        s3=tuple(s3_settings(args).items()),
    )


def check_index_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"index URL {url!r} is not an http:// or https:// URL")
    return url


def read_ignorelist(path: str | None) -> frozenset[str]:
    """Project names to skip: one per line, `#` starts a comment; compared normalized."""
    if path is None:
        return frozenset()
    names = read_name_list(Path(path).expanduser(), "ignore list")  # a FIFO: no hang
    return frozenset(normalize(name) for name in names)


def hosted_projects(catalog: Catalog, ignored: frozenset[str]) -> list[Hosted]:
    """The catalog's projects (by normalized name) with their latest release, PEP 440 order."""
    index = catalog.index
    loaded(catalog, catalog.load_index)  # a bucket's snapshot, else a scan
    hosted = []
    for project in sorted(set(index.projects) - ignored):
        latest = index.distributions(project)[-1]
        parsed = latest.parsed
        path = catalog.storage.local_path(latest.stored)
        # A file in a bucket has no path: its directory is the key's, relative to the root.
        directory = Path(path).parent if path else Path(latest.relpath).parent
        hosted.append(Hosted(project, parsed.raw_name, parsed.version, directory))
    return hosted


# ---------------------------------------------------------------- reading the upstream page


def newest_release(
    current: str, candidates: Iterable[Version], *, allow_unstable: bool
) -> Version | None:
    """The highest candidate above *current* (stable ones only unless *allow_unstable*).

    A local version that isn't PEP 440 sorts below every PEP 440 one, as in the index.
    """
    local = parse_version(current)
    eligible = [
        v
        for v in candidates
        if (allow_unstable or not v.is_prerelease) and (local is None or v > local)
    ]
    return max(eligible, default=None)


def releases(
    project: str, document: dict[str, Any], page_url: str
) -> dict[Version, list[UpstreamFile]]:
    """The page's downloadable files by version: wheels and sdists, not yanked (PEP 592)."""
    found: dict[Version, list[UpstreamFile]] = {}
    for entry in document.get("files") or []:
        parsed = _upstream_file(project, entry, page_url)
        if parsed is not None:
            found.setdefault(parsed[0], []).append(parsed[1])
    return found


def _upstream_file(project: str, entry: Any, page_url: str) -> tuple[Version, UpstreamFile] | None:
    if not isinstance(entry, dict) or entry.get("yanked"):
        return None
    filename, url, hashes = entry.get("filename"), entry.get("url"), entry.get("hashes")
    if not isinstance(filename, str) or not isinstance(url, str):
        return None
    # The name becomes a path here: a plain, visible file name only.
    if "/" in filename or not is_safe_relpath(filename):
        return None
    parsed = parse_filename(filename)
    if parsed is None or parsed.project != project or parsed.kind not in DOWNLOAD_KINDS:
        return None
    version = parse_version(parsed.version)
    if version is None:
        return None
    sha256 = hashes.get("sha256") if isinstance(hashes, dict) else None
    digest = sha256.lower() if isinstance(sha256, str) else None
    return version, UpstreamFile(filename, urljoin(page_url, url), digest)


def version_spelling(document: dict[str, Any], version: Version) -> str:
    """The release as the upstream's PEP 700 `versions` spells it, else its normal form."""
    for text in document.get("versions") or []:
        if isinstance(text, str) and parse_version(text) == version:
            return text
    return str(version)


# ---------------------------------------------------------------- HTTP


def make_client(settings: Settings) -> httpx.AsyncClient:
    # trust_env: HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY, SSL_CERT_FILE, .netrc.
    return httpx.AsyncClient(
        timeout=settings.timeout,
        limits=httpx.Limits(max_connections=settings.concurrency),
        follow_redirects=True,
        trust_env=True,
        headers={"User-Agent": f"creamery/{__version__} (update)"},
    )


def proxy_for(url: str) -> str | None:
    """The proxy the environment names for *url* (what httpx uses with trust_env), for messages."""
    proxies = urllib.request.getproxies()
    parts = urlsplit(url)
    if _bypassed(parts.hostname or "", proxies.get("no", "")):
        return None
    return proxies.get(parts.scheme) or proxies.get("all")


def _bypassed(host: str, no_proxy: str) -> bool:
    """NO_PROXY as curl and httpx read it: `*`, host names, addresses and domains."""
    for entry in no_proxy.lower().split(","):
        entry = entry.strip().rpartition("://")[2].strip("[]")
        domain = entry.lstrip(".")
        if entry == "*" or (domain and (host == domain or host.endswith("." + domain))):
            return True
    return False


def http_failure(url: str, error: httpx.HTTPError, timeout: float | None) -> UpdateError:
    if isinstance(error, httpx.TimeoutException):
        reason = f"timed out after {timeout:g} s" if timeout else "timed out"
    else:
        reason = str(error) or type(error).__name__
    proxy = proxy_for(url)
    through = f" through proxy {proxy}" if proxy else ""
    return UpdateError(f"can't fetch {url}{through}: {reason}")


def status_failure(url: str, response: httpx.Response) -> UpdateError:
    return UpdateError(f"{url} answered {response.status_code} {response.reason_phrase}")


async def fetch_page(client: httpx.AsyncClient, url: str) -> tuple[dict[str, Any], str]:
    """A project's PEP 691 page and its final URL (the base of relative file URLs)."""
    try:
        response = await client.get(url, headers={"Accept": JSON_CONTENT_TYPE})
    except httpx.HTTPError as error:
        raise http_failure(url, error, client.timeout.read) from error
    if response.status_code in (404, 410):
        raise NotOnIndex(f"not on the index ({url} answered {response.status_code}), skipped")
    if response.status_code != 200:
        raise status_failure(url, response)
    content_type = response.headers.get("content-type", "").partition(";")[0].strip().lower()
    if not content_type.endswith(("/json", "+json")):
        raise UpdateError(
            f"{url} answered {content_type or 'no content type'}, not PEP 691 JSON "
            f"({JSON_CONTENT_TYPE})"
        )
    try:
        document = response.json()
    except ValueError as error:
        raise UpdateError(f"{url} answered invalid JSON: {error}") from error
    if not isinstance(document, dict):
        raise UpdateError(f"{url} answered JSON that is not a project page")
    return document, str(response.url)


async def find_update(
    client: httpx.AsyncClient, settings: Settings, hosted: Hosted
) -> Update | None:
    """The newer release of *hosted* upstream, or None when it is current."""
    url = settings.index_url.rstrip("/") + f"/{hosted.project}/"
    document, page_url = await fetch_page(client, url)
    files = releases(hosted.project, document, page_url)
    newest = newest_release(hosted.version, files, allow_unstable=settings.allow_unstable)
    if newest is None:
        return None
    directory = settings.download_dir or hosted.directory
    return Update(hosted, version_spelling(document, newest), tuple(files[newest]), directory)


# ---------------------------------------------------------------- downloading


async def download(
    client: httpx.AsyncClient, file: UpstreamFile, directory: Path, catalog: Catalog
) -> bool:
    """Save *file* into *directory* once verified; False when a file of that name is there.

    Spooled in the scratch area, verified, then published through the catalog: the name
    appears complete or not at all, and only if it is free (put-if-absent).
    """
    below = relative_to_upload_root(catalog, directory)
    in_store = not directory.is_absolute()  # a key prefix of an s3:// upload root
    if in_store:
        key = f"{below}/{file.filename}" if below else file.filename
        stat = catalog.storage.stat
        if key in catalog.index.files or await asyncio.to_thread(stat, key) is not None:
            return False
    elif (directory / file.filename).exists():
        return False
    if file.sha256 is None:
        raise UpdateError(f"{file.filename}: the index gives no sha256 to verify it; not saved")
    fd, spool = catalog.new_spool() if below is not None else _temp_in(directory)
    try:
        with os.fdopen(fd, "wb") as out:
            digests = await _stream_to(client, file.url, out)
            out.flush()
            os.fsync(out.fileno())
        if digests["sha256"] != file.sha256:
            raise UpdateError(
                f"{file.filename}: sha256 mismatch (index: {file.sha256}, downloaded:"
                f" {digests['sha256']}); not saved"
            )
        if below is None:  # not where the catalog publishes: a plain download
            saved = durable.place(spool, directory / file.filename, overwrite=False)
            relpath = _locate(catalog, directory.absolute() / file.filename)
            if saved and relpath is not None:  # in another package directory
                catalog.record([relpath])
            return saved
        upload = Upload(file.filename, spool, directory=below, digests=digests)
        return await asyncio.to_thread(_publish, catalog, upload)
    finally:
        spool.unlink(missing_ok=True)


def relative_to_upload_root(catalog: Catalog, directory: Path) -> str | None:
    """*directory* as a relpath in the catalog's upload root (where it publishes), or None.
    A relative *directory* is a key prefix in an s3:// upload root already."""
    if not directory.is_absolute():
        below = directory.as_posix()
        return "" if below == "." else below
    upload_root = catalog.config.upload_root
    if not isinstance(upload_root, Path):
        return None  # -d DIR beside a bucket: a plain download
    root = upload_root.absolute()
    try:
        below = directory.absolute().relative_to(root).as_posix()
    except ValueError:
        return None
    if below == ".":
        return ""
    return below if is_safe_relpath(below) else None


def _locate(catalog: Catalog, path: Path) -> str | None:
    """The relpath of *path* in one of the catalog's directories, or None."""
    for root in catalog.config.local_roots:
        try:
            below = path.relative_to(root.absolute()).as_posix()
        except ValueError:
            continue
        return below if is_safe_relpath(below) else None
    return None


def _temp_in(directory: Path) -> tuple[int, Path]:
    temp = durable.temp_name(directory)
    return durable.create_exclusive(temp), temp  # 0666 less the umask, as servers read it


def _publish(catalog: Catalog, upload: Upload) -> bool:
    """Publish with the core metadata as facts (read from the spool: its head, not its bytes)."""
    parsed = parse_filename(upload.filename)
    if parsed is not None:
        upload.metadata = read_metadata_bytes(upload.spool, parsed.kind, upload.filename)
        upload.metadata_read = True
    try:
        catalog.publish(upload, overwrite=False)
    except AlreadyExists:
        return False
    return True


async def _stream_to(client: httpx.AsyncClient, url: str, out: IO[bytes]) -> dict[str, str]:
    """Write the body of *url* to *out*; returns its digests (hex) by the facts' names."""
    hashers = pypi_hashers()
    try:
        # identity: the hash is of the file itself, whatever a server thinks of .tar.gz
        async with client.stream("GET", url, headers={"Accept-Encoding": "identity"}) as response:
            if response.status_code != 200:
                raise status_failure(url, response)
            async for chunk in response.aiter_raw(CHUNK_SIZE):
                for hasher in hashers.values():
                    hasher.update(chunk)
                out.write(chunk)
    except httpx.HTTPError as error:
        raise http_failure(url, error, client.timeout.read) from error
    return {name: hasher.hexdigest() for name, hasher in hashers.items()}


# ---------------------------------------------------------------- reporting


class Reporter:
    """Result lines on stdout, problems on stderr, and a progress bar when stderr is a terminal.

    While the bar shows, lines bound for the terminal go through its console (whole, never
    wrapped), so they scroll above the bar; lines bound for a pipe are written as they are.
    """

    def __init__(self, *, interactive: bool) -> None:
        self.interactive = interactive
        self.failures = 0
        self.not_on_index = 0
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    @contextlib.contextmanager
    def stage(self, description: str, total: int) -> Iterator[None]:
        if not self.interactive:
            self.note(description)
            yield
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=Console(stderr=True),
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        with progress:
            self._progress, self._task = progress, progress.add_task(description, total=total)
            try:
                yield
            finally:
                self._progress = self._task = None

    def advance(self) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task)

    def out(self, line: str) -> None:
        self._write(line, sys.stdout)

    def note(self, line: str) -> None:
        self._write(f"{PROG}: {line}", sys.stderr)

    def fail(self, subject: str, reason: str) -> None:
        self.failures += 1
        self.note(f"{subject}: {reason}")

    def skip(self, subject: str, reason: str) -> None:
        self.not_on_index += 1
        self.note(f"{subject}: {reason}")

    def _write(self, line: str, stream: IO[str]) -> None:
        if self._progress is not None and stream.isatty():
            self._progress.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            print(line, file=stream, flush=True)


# ---------------------------------------------------------------- the command


def run_update(args: argparse.Namespace) -> int:
    """`creamery update`: 1 when a check or download failed, else 0.

    A project the index does not have is reported and skipped, not a failure: most projects of a
    private index are on no public one.
    """
    settings = settings_from_args(args)
    if settings.execute and settings.download_dir is not None:
        _make_download_dir(settings.download_dir)
    catalog = settings.catalog()
    try:
        hosted = hosted_projects(catalog, settings.ignored)
        reporter = Reporter(interactive=sys.stderr.isatty())
        if not hosted:
            reporter.note("no projects to check in " + ", ".join(map(str, settings.roots)))
            return 0
        return asyncio.run(update_all(settings, hosted, reporter, catalog))
    finally:
        catalog.close()


def _make_download_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(
            f"download directory {str(path)!r} can't be created: {error.strerror}"
        ) from error


async def update_all(
    settings: Settings, hosted: list[Hosted], reporter: Reporter, catalog: Catalog | None = None
) -> int:
    async with make_client(settings) as client:
        gate = asyncio.Semaphore(settings.concurrency)
        updates = await check_all(client, gate, settings, hosted, reporter)
        for update in updates:
            reporter.out(
                f"# update {update.hosted.name} from {update.hosted.version} to {update.version}"
            )
            reporter.out(update.pip_command(settings.index_url))
        if settings.execute and updates:
            await download_all(client, gate, updates, reporter, catalog or settings.catalog())
    absent = f", {reporter.not_on_index} not on the index" if reporter.not_on_index else ""
    failed = f", {reporter.failures} failed" if reporter.failures else ""
    reporter.note(f"{len(updates)} of {len(hosted)} projects have a newer release{absent}{failed}")
    return 1 if reporter.failures else 0


async def check_all(
    client: httpx.AsyncClient,
    gate: asyncio.Semaphore,
    settings: Settings,
    hosted: list[Hosted],
    reporter: Reporter,
) -> list[Update]:
    async def check(project: Hosted) -> Update | None:
        async with gate:
            try:
                return await find_update(client, settings, project)
            except NotOnIndex as error:
                reporter.skip(project.name, str(error))
                return None
            except UpdateError as error:
                reporter.fail(project.name, str(error))
                return None
            finally:
                reporter.advance()

    description = f"checking {len(hosted)} projects on {settings.index_url}"
    with reporter.stage(description, len(hosted)):
        found = await asyncio.gather(*(check(project) for project in hosted))
    return [update for update in found if update is not None]


async def download_all(
    client: httpx.AsyncClient,
    gate: asyncio.Semaphore,
    updates: list[Update],
    reporter: Reporter,
    catalog: Catalog,
) -> None:
    async def fetch(update: Update, file: UpstreamFile) -> None:
        async with gate:
            try:
                saved = await download(client, file, update.directory, catalog)
            except (UpdateError, OSError) as error:
                reporter.fail(update.hosted.name, str(error))
                return
            finally:
                reporter.advance()
        state = "saved" if saved else "already present"
        reporter.out(f"# {state}: {update.directory / file.filename}")

    jobs = [(update, file) for update in updates for file in update.files]
    with reporter.stage(f"downloading {len(jobs)} files", len(jobs)):
        await asyncio.gather(*(fetch(update, file) for update, file in jobs))
