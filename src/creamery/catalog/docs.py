"""Hosted documentation: the zip files uploaded for a project's releases (`doc_upload`).

Each upload is one object in the state store, `docs/<project>/<version>.zip` (a local root's
state directory, or `.creamery/docs/` in a bucket); uploading a version again replaces it.
The shelf keeps in memory which versions of which projects have documentation (and the
stored version of each zip, for ETags); `generation` grows with every change, so pages that
link to the documentation know to render again. A change is announced in the change feed
as `.docs/<project>`, which every process applies with `refresh(project)`.

An uploaded zip is hostile until `check_zip` has read all of it: a zip, within bounds of size,
member count and compression ratio (zip bombs), every member a safe relative name (no
absolute path, `..`, backslash, drive letter, control character, symlink, encryption, nor two
members that are one name). Members are served from the zip, never extracted.
"""

from __future__ import annotations

import re
import threading
import unicodedata
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from creamery.core.archives import ArchiveError, zip_entry_count
from creamery.core.names import normalize, parse_version, version_sort_key
from creamery.storage import Storage, StoredFile

DOCS = "docs"
SUFFIX = ".zip"
DOCS_KEYS = ".docs/"  # change-feed keys: `.docs/<project>` (hidden: never a file's relpath)
INDEX_HTML = "index.html"

_DRIVE = re.compile(r"[A-Za-z]:")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_SYMLINK = 0o120000
_FILE_TYPE = 0o170000
_ENCRYPTED = 0x1
_UTF8_NAME = 0x800
_CHUNK = 1 << 20


class BadDocs(ValueError):
    """The upload is not a documentation zip creamery will serve; the one-line reason."""


@dataclass(frozen=True)
class ZipLimits:
    """Bounds on an uploaded zip: what it may hold once decompressed."""

    max_size: int = 1 << 30  # compressed: the zip file itself (`--max-upload-size`)
    max_total: int = 1 << 30  # all members decompressed
    max_members: int = 20_000
    max_member: int = 1 << 30
    max_ratio: int = 200  # decompressed / compressed, per member
    ratio_slack: int = 64 << 10  # small members (an empty file) compress badly: not a bomb


def docs_key(project: str, version: str) -> str:
    return f"{DOCS}/{project}/{version}{SUFFIX}"


def feed_key(project: str) -> str:
    return DOCS_KEYS + project


def canonical_version(text: str) -> str | None:
    """PEP 440's normal form of *text* (`1.0` stays `1.0`, `1.0RC1` is `1.0rc1`); None when
    it is not a version."""
    version = parse_version(text.strip())
    return None if version is None else str(version)


def member_name(info: zipfile.ZipInfo) -> str:
    """A member's name as served: UTF-8 (zipfile decodes a name without the UTF-8 flag as
    cp437; such a name is taken as the UTF-8 it almost always is), NFC. BadDocs when it is
    not UTF-8."""
    name = info.filename
    if not info.flag_bits & _UTF8_NAME and not name.isascii():
        try:
            name = name.encode("cp437").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            raise BadDocs("a member's name is not valid UTF-8") from None
    return unicodedata.normalize("NFC", name)


def unsafe_name(name: str) -> str | None:
    """Why *name* can't be a member of hosted documentation (None when it can)."""
    if not name:
        return "a member has an empty name"
    if _CONTROL.search(name):
        return "a member's name holds a control character"
    shown = repr(name[:80])
    if "\\" in name:
        return f"member {shown} has a backslash in its name"
    if name.startswith("/"):
        return f"member {shown} has an absolute path"
    if _DRIVE.match(name):
        return f"member {shown} names a drive"
    parts = name.removesuffix("/").split("/")
    if any(part in ("", ".", "..") for part in parts):
        return f"member {shown} has an empty, '.' or '..' path segment"
    return None


def check_zip(path: Path, limits: ZipLimits = ZipLimits()) -> None:
    """Raise BadDocs (one line) unless *path* is a zip creamery will serve; reads it all
    (each member's CRC is checked, and its real size against the declared one)."""
    size = path.stat().st_size
    if size > limits.max_size:
        raise BadDocs(f"the zip is larger than the limit of {limits.max_size} bytes")
    try:
        with path.open("rb") as raw:
            # Before the directory is parsed (a ZipInfo per entry): what the zip says it holds.
            if zip_entry_count(raw) > limits.max_members:
                raise BadDocs(f"the zip has more than {limits.max_members} members")
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            _check_members(infos, limits)
            for info in infos:
                if not info.is_dir():
                    _read_member(archive, info)
    except BadDocs:
        raise
    except (zipfile.BadZipFile, ArchiveError) as error:
        raise BadDocs(f"not a valid zip file: {_first_line(error)}") from None
    except (UnicodeDecodeError, NotImplementedError, EOFError, ValueError) as error:
        raise BadDocs(f"the zip can't be read: {_first_line(error)}") from None


def _first_line(error: BaseException) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0][:200]


def _check_members(infos: list[zipfile.ZipInfo], limits: ZipLimits) -> None:
    if len(infos) > limits.max_members:
        raise BadDocs(f"the zip has more than {limits.max_members} members")
    if not any(not info.is_dir() for info in infos):
        raise BadDocs("the zip holds no file")
    total = 0
    files: set[str] = set()
    directories: set[str] = set()
    for info in infos:
        name = member_name(info)
        reason = unsafe_name(name)
        if reason is not None:
            raise BadDocs(reason)
        shown = repr(name[:80])
        if info.flag_bits & _ENCRYPTED:
            raise BadDocs(f"member {shown} is encrypted")
        if (info.external_attr >> 16) & _FILE_TYPE == _SYMLINK:
            raise BadDocs(f"member {shown} is a symbolic link")
        if info.file_size > limits.max_member:
            raise BadDocs(f"member {shown} is larger than {limits.max_member} bytes")
        if info.file_size > limits.max_ratio * info.compress_size + limits.ratio_slack:
            raise BadDocs(
                f"member {shown} expands more than {limits.max_ratio} times (a zip bomb?)"
            )
        total += info.file_size
        if total > limits.max_total:
            raise BadDocs(f"the zip expands to more than {limits.max_total} bytes")
        key = name.removesuffix("/")
        parents = key.split("/")[:-1]
        directories.update("/".join(parents[: i + 1]) for i in range(len(parents)))
        if info.is_dir():
            if key in files:
                raise BadDocs(f"member {shown} is both a file and a directory")
            directories.add(key)
            continue
        if key in files:
            raise BadDocs(f"member {shown} is in the zip twice")
        files.add(key)
    clash = files & directories
    if clash:
        raise BadDocs(f"member {min(clash)[:80]!r} is both a file and a directory")


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    """Decompress one member (zipfile checks its CRC at the end), never past its size."""
    left = info.file_size
    with archive.open(info) as member:
        while True:
            chunk = member.read(min(_CHUNK, left + 1))
            if not chunk:
                return
            left -= len(chunk)
            if left < 0:
                raise BadDocs(f"member {member_name(info)[:80]!r} is larger than it says")


def served_root(names: Iterable[str]) -> str:
    """The directory the documentation is served from: "" (the zip's root), or its one top
    directory ("html/") when every member is inside it and the root has no index.html (what
    Sphinx's build directory zipped up looks like)."""
    tops: set[str] = set()
    for name in names:
        if name == INDEX_HTML:
            return ""
        top, slash, _ = name.partition("/")
        if not slash:
            return ""  # a file at the root
        tops.add(top)
        if len(tops) > 1:
            return ""
    return f"{tops.pop()}/" if tops else ""


class DocsShelf:
    def __init__(self, store: Storage) -> None:
        self.store = store
        self.generation = 0
        self._versions: dict[str, list[str]] = {}
        self._stored: dict[tuple[str, str], StoredFile] = {}
        self._lock = threading.Lock()

    def load(self) -> None:
        """Every project's documented versions, from the store's listing."""
        found = _group(self.store.scan(DOCS + "/"))
        with self._lock:
            self._stored = {k: s for project in found.values() for k, s in project.items()}
            self._versions = {p: _ordered(v) for p, v in found.items()}
            self.generation += 1

    def refresh(self, project: str) -> None:
        """Look at *project*'s documentation again (a change-feed key said it changed)."""
        found = _group(self.store.scan(f"{DOCS}/{project}/")).get(project, {})
        with self._lock:
            stored = {k: s for k, s in self._stored.items() if k[0] != project}
            stored.update(found)
            self._stored = stored
            versions = dict(self._versions)
            if found:
                versions[project] = _ordered(found)
            else:
                versions.pop(project, None)
            self._versions = versions
            self.generation += 1

    def put(self, project: str, version: str, zip_path: Path) -> str:
        """Store the (checked) zip at *zip_path* as *project*'s documentation of *version*,
        replacing an earlier one; the spool is consumed. The store's key."""
        key = docs_key(project, version)
        self.store.put(key, zip_path, if_absent=False)
        return key

    def delete(self, project: str, version: str | None = None) -> list[str]:
        """Delete one version's documentation, or all of *project*'s; the versions deleted."""
        versions = self.versions(project) if version is None else [version]
        return [v for v in versions if self.store.delete(docs_key(project, v))]

    def versions(self, project: str) -> list[str]:
        """The versions of *project* that have documentation, oldest first."""
        return list(self._versions.get(project, ()))

    def latest(self, project: str) -> str | None:
        """The newest version with documentation: what `/docs/<project>/` shows."""
        versions = self._versions.get(project)
        return versions[-1] if versions else None

    def projects(self) -> list[str]:
        return sorted(self._versions)

    def stored(self, project: str, version: str) -> StoredFile | None:
        """The zip of *project*'s *version* as last seen (its `version` tells replacements
        apart), or None."""
        return self._stored.get((project, version))


def _group(listing: Iterable[StoredFile]) -> dict[str, dict[tuple[str, str], StoredFile]]:
    found: dict[str, dict[tuple[str, str], StoredFile]] = {}
    for stored in listing:
        parts = stored.key.split("/")
        if len(parts) != 3 or not parts[2].endswith(SUFFIX):
            continue
        project, version = parts[1], parts[2][: -len(SUFFIX)]
        if project != normalize(project) or canonical_version(version) != version:
            continue
        found.setdefault(project, {})[(project, version)] = stored
    return found


def _ordered(found: dict[tuple[str, str], StoredFile]) -> list[str]:
    return sorted((version for _, version in found), key=version_sort_key)
