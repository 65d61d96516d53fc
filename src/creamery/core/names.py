"""Project names, versions and distribution filenames (PEP 503, 440, 427, 625).

Built on `packaging`; only legacy names need rules of our own (`split_legacy_stem`).
"""

from __future__ import annotations

import functools
import re
import sys
from typing import Literal, NamedTuple

from packaging.utils import canonicalize_name, canonicalize_version
from packaging.version import VERSION_PATTERN, Version

Kind = Literal["wheel", "sdist", "egg", "bdist"]

SDIST_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar", ".zip")
BDIST_SUFFIXES = (".exe", ".msi", ".rpm", ".dmg")
_ALL_SUFFIXES = (".whl", ".tar.gz", ".egg", *SDIST_SUFFIXES[1:], *BDIST_SUFFIXES)

# Sidecars: <distribution relpath> + suffix, in URLs and (for some) on disk. Only the signature
# is a file beside the distribution (as pypiserver keeps it); yank state and provenance live in
# the state directory, and metadata is derived from the file (the facts cache).
SIGNATURE = ".asc"
METADATA = ".metadata"  # PEP 658: the wheel's METADATA
PROVENANCE = ".provenance"  # PEP 740
YANKED = ".yanked"  # pypiserver's yank marker
# Files that live beside a distribution and describe it; never listed on their own.
SIDECAR_SUFFIXES = (SIGNATURE, METADATA, YANKED, PROVENANCE)
# Sidecars earlier versions kept beside files, moved into the state directory when found.
LEGACY_SUFFIXES = (YANKED, PROVENANCE, METADATA)

_VALID_NAME = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)
# Platform tails of old bdist names: foo-1.0.win32-py2.7.exe, foo-1.0-py2.7-linux-x86_64.egg
_PLATFORM_TAIL = re.compile(
    r"([.-](?:py\d|cp\d|win32|win-amd64|macosx|linux|cygwin|sunos|solaris|aix|irix)).*$",
    re.IGNORECASE,
)
# pypiserver's historic guess: the version starts at "-<digits><letter, dot, ! or +>".
_PYPISERVER_VERSION_START = re.compile(r"-\d+[a-z_.!+]", re.IGNORECASE)
# What pypiserver 2.x lists besides wheels: these endings, the old installers' platform tails
# included (`foo-1.0.win32-py2.7.exe`, `foo-1.0-py2.7-linux-x86_64.egg`).
_PYPISERVER_ARCHIVE = re.compile(
    r"(\.zip|\.tar\.gz|\.tgz|\.tar\.bz2|\.tar\.xz|-py[23]\.\d-.*|"
    r"\.win-amd64-py[23]\.\d\..*|\.win32-py[23]\.\d\..*|\.egg)$",
    re.IGNORECASE,
)
# pypiserver's wheel rule: any three dash-free tags after a version starting with a digit.
_PYPISERVER_WHEEL = re.compile(
    r"^(?P<name>.+?)-(?P<version>\d.*?)(?:-(?P<build>\d.*?))?-.+?-.+?-.+?\.whl$"
)
# pypiserver cuts a legacy version at the first platform-looking part.
_PYPISERVER_PLATFORM = re.compile(
    r"[.-](?=cp\d|py\d|macosx|linux|sunos|solaris|irix|aix|cygwin|win)", re.I
)


@functools.lru_cache(maxsize=1 << 16)
def normalize(name: str) -> str:
    """PEP 503 normalized form of a project name.

    Memoized: start-up normalizes every filename's name, and the files of one project share
    one string.
    """
    return canonicalize_name(name)


def _parsed(raw_name: str, version: str, kind: Kind) -> ParsedFilename:
    # Interned: an index of 100,000 files repeats the same few spellings and versions.
    return ParsedFilename(normalize(raw_name), sys.intern(raw_name), sys.intern(version), kind)


def is_normalized(name: str) -> bool:
    return normalize(name) == name


def is_valid_project_name(name: str) -> bool:
    """True when *name* is a valid core-metadata project name."""
    return bool(_VALID_NAME.match(name))


_VERSION = re.compile(VERSION_PATTERN, re.VERBOSE | re.IGNORECASE)
# The wheel spec's filename: {name}-{version}(-{build})?-{python}-{abi}-{platform}.whl
_WHEEL = re.compile(
    r"^(?P<name>[A-Za-z0-9_.]+)-(?P<version>[^-]+)(?:-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$",
    re.IGNORECASE,
)


def is_valid_version(text: str) -> bool:
    """PEP 440 validity by the spec's own pattern: cheaper than building a Version."""
    return _VERSION.fullmatch(text.strip()) is not None


def parse_version(text: str) -> Version | None:
    try:
        return Version(text)
    except ValueError:  # InvalidVersion, or a release number past int()'s 4,300 digits
        return None


# Sorts unparseable legacy versions (0, text) before PEP 440 ones (1, Version).
VersionKey = tuple[int, Version | str]


def version_sort_key(text: str) -> VersionKey:
    """Order PEP 440 versions properly and put unparseable legacy versions before them."""
    version = parse_version(text)
    if version is None:
        return (0, text)
    return (1, version)


class ParsedFilename(NamedTuple):
    project: str  # PEP 503-normalized name
    raw_name: str  # the name as spelled in the filename
    version: str  # as spelled in the filename (PEP 440 when it parses)
    kind: Kind


def distribution_suffix(filename: str) -> str | None:
    """The archive suffix of a distribution filename, or None when it is not one."""
    lower = filename.lower()
    if not lower.endswith(_ALL_SUFFIXES):
        return None
    return next(suffix for suffix in _ALL_SUFFIXES if lower.endswith(suffix))


def is_sidecar(filename: str) -> bool:
    return filename.lower().endswith(SIDECAR_SUFFIXES)


def has_unsafe_characters(text: str) -> bool:
    """True when *text* holds a character a filename must not carry.

    Controls, format characters (bidi overrides such as U+202E, zero-width ones), line and
    paragraph separators, spaces other than the ASCII one, surrogates, private-use and
    unassigned code points: Unicode's "Other" and "Separator" categories, which is what
    `str.isprintable` tests, in C (start-up parses every filename).
    """
    return not text.isprintable()


def parse_filename(filename: str) -> ParsedFilename | None:
    """Project and version of a file to list, or None when it is not a distribution.

    The specs first (`parse_spec_filename`); then what pypiserver 2.x lists, so that a directory
    it served is served whole (`guess_like_pypiserver`). A name with unsafe characters (bidi
    overrides spoof what people read) or that is not a valid project name is never listed.
    """
    if has_unsafe_characters(filename):
        return None
    parsed = parse_spec_filename(filename)
    if parsed is not None or is_sidecar(filename):
        return parsed
    guessed = guess_like_pypiserver(filename)
    if guessed is None or not is_valid_project_name(guessed[0]):
        return None
    return _parsed(*guessed, _kind_of(filename))


def same_file_key(filename: str) -> str:
    """Equal for filenames an installer takes for the same file: the normalized name, the
    canonical version and the rest (tags, archive type) in any case, so `Demo-1.0.tar.gz` and
    `demo-1.0.0.tar.gz` are `demo-1.0.tar.gz` (pip sees two candidates for one release)."""
    parsed = parse_filename(filename)
    prefix = f"{parsed.raw_name}-{parsed.version}" if parsed is not None else ""
    if parsed is None or not filename.startswith(prefix):
        return filename.lower()
    rest = filename[len(prefix) :].lower()
    return f"{parsed.project}-{canonicalize_version(parsed.version)}{rest}"


def _kind_of(filename: str) -> Kind:
    lower = filename.lower()
    if lower.endswith(".whl"):
        return "wheel"
    if lower.endswith(".egg") or ".egg" in lower.rpartition("-py")[0][-4:]:
        return "egg"
    if lower.endswith(SDIST_SUFFIXES) and not _PLATFORM_TAIL.search(lower):
        return "sdist"
    return "bdist"


def guess_like_pypiserver(filename: str) -> tuple[str, str] | None:
    """(name, version) as pypiserver 2.x guesses them from a filename, or None.

    Its rules, as its `guess_pkgname_and_version` and its tests describe them: wheels need a
    version starting with a digit and three tags of any spelling (the build tag joins the
    version); other files need one of its archive endings, and the version is what follows
    the name's last dash before a digit, cut at a platform part; no dash, no version.
    """
    if filename.endswith(".whl"):
        wheel = _PYPISERVER_WHEEL.match(filename)
        if wheel is None:
            return None
        build = f"-{wheel['build']}" if wheel["build"] else ""
        return wheel["name"], wheel["version"] + build
    if not _PYPISERVER_ARCHIVE.search(filename):
        return None
    stem = _PYPISERVER_ARCHIVE.sub("", filename)
    if "-" not in stem:
        return stem, ""
    if stem.count("-") == 1 or "." not in stem:
        name, _, version = stem.rpartition("-")
        return name, version
    name = _PYPISERVER_VERSION_START.split(stem)[0]
    version = _PYPISERVER_PLATFORM.split(stem[len(name) + 1 :])[0]
    return name, version


def parse_spec_filename(filename: str) -> ParsedFilename | None:
    """Project and version by the specs, or None when the name can't be understood so.

    Wheels follow the wheel spec and PEP 625 sdists the sdist spec, both through `packaging`.
    Other files (legacy sdists, eggs, old installers) use `split_legacy_stem`.
    """
    suffix = distribution_suffix(filename)
    if suffix is None or len(filename) == len(suffix):
        return None
    if suffix == ".whl":
        return _parse_wheel(filename)
    stem = filename[: -len(suffix)]
    kind: Kind = "sdist" if suffix in SDIST_SUFFIXES else "egg" if suffix == ".egg" else "bdist"
    if kind == "sdist" and suffix in (".tar.gz", ".zip"):
        modern = _parse_modern_sdist(filename)
        if modern is not None:
            return modern
    if kind != "sdist":
        stem = _PLATFORM_TAIL.sub("", stem)
    split = split_legacy_stem(stem)
    if kind == "sdist" and split and not is_valid_version(split[1]):
        # bdist_dumb archives look like sdists with a platform tail: foo-1.0.linux-x86_64.tar.gz
        bare = _PLATFORM_TAIL.sub("", stem)
        if bare != stem and (dumb := split_legacy_stem(bare)) is not None:
            split, kind = dumb, "bdist"
    if split is None:
        return None
    raw_name, version = split
    if not is_valid_project_name(raw_name):
        return None
    return _parsed(raw_name, version, kind)


def _parse_wheel(filename: str) -> ParsedFilename | None:
    # A regex rather than parse_wheel_filename: start-up parses every filename, and tags
    # are never needed to list a file.
    match = _WHEEL.match(filename)
    if match is None or not is_valid_version(match["version"]):
        return None
    raw_name = match["name"]
    if not is_valid_project_name(raw_name):
        return None
    return _parsed(raw_name, match["version"], "wheel")


def _parse_modern_sdist(filename: str) -> ParsedFilename | None:
    """A PEP 625 sdist (`name-version.tar.gz`, the name without dashes)."""
    stem = filename[:-7] if filename.lower().endswith(".tar.gz") else filename[:-4]
    raw_name, dash, version = stem.partition("-")
    if not dash or "-" in version or not raw_name or not is_valid_version(version):
        return None
    if not is_valid_project_name(raw_name):
        return None
    return _parsed(raw_name, version, "sdist")


def split_legacy_stem(stem: str) -> tuple[str, str] | None:
    """Split a legacy `name-version` stem whose name may itself contain dashes.

    The rule, in order:
    1. candidates split at each dash followed by a digit, left to right, while the name before
       it holds no dotted numeric part (in `pyelasticsearch-0.5-brainbot-1-20130712`, `0.5`
       is a version, not a name part); of those whose rest is a valid PEP 440 version, the
       first without a dash wins (`package-123-20000101`), else the first;
    2. otherwise pypiserver's rule: the version starts at `-<digits><letter . ! + or _>`;
    3. otherwise, with a dash, split at the last one; without a version, give up.
    """
    valid: list[tuple[str, str]] = []
    for match in re.finditer(r"-(?=\d)", stem):
        name, version = stem[: match.start()], stem[match.end() :]
        if any(part[:1].isdigit() and "." in part for part in name.split("-")[1:]):
            break
        if is_valid_version(version):
            valid.append((name, version))
    if valid:
        return next((v for v in valid if "-" not in v[1]), valid[0])
    found = _PYPISERVER_VERSION_START.search(stem)
    if found is not None:
        return stem[: found.start()], stem[found.start() + 1 :]
    if stem.count("-") >= 1:
        name, _, version = stem.rpartition("-")
        if name and version:
            return name, version
    return None
