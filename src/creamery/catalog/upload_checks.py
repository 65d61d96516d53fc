"""PyPI's upload checks that protect users, as pure functions (the strict upload policy).

Each check takes what the upload brought (the filename, the archive's METADATA / PKG-INFO,
a form field) and returns why the upload is refused, in one line, or None; the sdist name
check only warns. The facts follow warehouse (`warehouse/forklift/legacy.py`, `metadata.py`)
and the packaging specifications; docs/standards.md lists them.
"""

from __future__ import annotations

import re
from email.parser import HeaderParser
from email.policy import compat32

from creamery.core.names import parse_version

# ---------------------------------------------------------------- wheel tags (PEP 425, 600, ...)

# The platforms PyPI accepts by name. linux_armv6l/armv7l stay for the Raspberry Pi wheels
# (piwheels) PyPI has always taken; other plain `linux_*` wheels are refused.
_NAMED_PLATFORMS = frozenset(
    {
        "any",
        "win32",
        "win_arm64",
        "win_amd64",
        "win_ia64",
        "manylinux1_x86_64",
        "manylinux1_i686",
        "manylinux2010_x86_64",
        "manylinux2010_i686",
        "manylinux2014_x86_64",
        "manylinux2014_i686",
        "manylinux2014_aarch64",
        "manylinux2014_armv7l",
        "manylinux2014_ppc64",
        "manylinux2014_ppc64le",
        "manylinux2014_s390x",
        "linux_armv6l",
        "linux_armv7l",
    }
)
_MACOSX = re.compile(r"macosx_(\d+)_(\d+)_([a-z0-9_]+)", re.ASCII)
_MACOSX_ARCHES = frozenset(
    {"ppc", "ppc64", "i386", "x86_64", "arm64", "intel", "fat", "fat3", "fat64", "universal"}
    | {"universal2"}
)
# macOS 10.x counted minors; from 11 on each major is `macosx_<major>_0` (PyPI's reading).
_MACOSX_MAJORS = frozenset({"11", "12", "13", "14", "15", "26"})
_LINUX = re.compile(r"(many|musl)linux_(\d+)_(\d+)_([a-z0-9_]+)", re.ASCII)  # PEP 600, PEP 656
_MUSLLINUX_ARCHES = frozenset({"x86_64", "i686", "aarch64", "armv7l", "ppc64le", "s390x"}) | {
    "riscv64"
}
_MANYLINUX_ARCHES = _MUSLLINUX_ARCHES | {"ppc64"}
_IOS = re.compile(r"ios_(\d+)_(\d+)_([a-z0-9_]+)_(iphoneos|iphonesimulator)", re.ASCII)  # PEP 730
_IOS_ARCHES = frozenset({"arm64", "x86_64"})
_ANDROID = re.compile(r"android_(\d+)_([a-z0-9_]+)", re.ASCII)  # PEP 738
_ANDROID_ARCHES = frozenset({"armeabi_v7a", "arm64_v8a", "x86", "x86_64"})
_PYEMSCRIPTEN = re.compile(r"pyemscripten_(\d+)_(\d+)_wasm32", re.ASCII)  # PEP 783
_PLAIN_LINUX = re.compile(r"linux_[a-z0-9_]+", re.ASCII)

# PEP 425: a Python tag is an implementation and a version (py3, cp311, pp310, graalpy311);
# an ABI tag is none, abi3, or an implementation's (cp311, cp313t, pypy36_pp73).
_PYTHON_TAG = re.compile(r"[a-z]+[0-9][0-9_]*", re.ASCII)
_ABI_TAG = re.compile(r"[a-z][a-z0-9_]*", re.ASCII)
MAX_TAGS = 64  # tags in one compressed tag set: real wheels have a handful


def valid_platform_tag(tag: str) -> bool:
    """Whether PyPI accepts a wheel for this platform tag."""
    if tag in _NAMED_PLATFORMS:
        return True
    if match := _MACOSX.fullmatch(tag):
        major, minor, arch = match.groups()
        known_release = major == "10" or (major in _MACOSX_MAJORS and minor == "0")
        return arch in _MACOSX_ARCHES and known_release
    if match := _LINUX.fullmatch(tag):
        libc, arch = match.group(1), match.group(4)
        return arch in (_MUSLLINUX_ARCHES if libc == "musl" else _MANYLINUX_ARCHES)
    if match := _IOS.fullmatch(tag):
        return match.group(3) in _IOS_ARCHES
    if match := _ANDROID.fullmatch(tag):
        return match.group(2) in _ANDROID_ARCHES
    return _PYEMSCRIPTEN.fullmatch(tag) is not None


def wheel_tags_problem(filename: str) -> str | None:
    """Why the tags of a wheel's filename are not ones PyPI accepts, or None.

    *filename* is a wheel name whose shape was already checked (`name-version[-build]-
    python-abi-platform.whl`); each of the last three parts may be a compressed set (`.`).
    """
    python, abi, platforms = filename[: -len(".whl")].split("-")[-3:]
    for kind, tags, pattern in (("Python", python, _PYTHON_TAG), ("ABI", abi, _ABI_TAG)):
        problem = _tag_set_problem(kind, tags, filename)
        if problem is None:
            problem = next(
                (
                    f"invalid {kind} tag {tag[:100]!r} in {filename!r} (see PEP 425)"
                    for tag in tags.split(".")
                    if not pattern.fullmatch(tag.lower())
                ),
                None,
            )
        if problem is not None:
            return problem
    problem = _tag_set_problem("platform", platforms, filename)
    if problem is not None:
        return problem
    for tag in platforms.split("."):
        if valid_platform_tag(tag):
            continue
        if _PLAIN_LINUX.fullmatch(tag):
            return (
                f"{filename!r} is built for plain linux ({tag}), which is not portable: repair it"
                " with auditwheel into a manylinux or musllinux wheel"
            )
        return f"{filename!r} has a platform tag PyPI does not accept: {tag[:100]!r}"
    return None


def _tag_set_problem(kind: str, tags: str, filename: str) -> str | None:
    parts = tags.split(".")
    if len(parts) > MAX_TAGS:
        return f"{filename!r} has {len(parts)} {kind} tags (at most {MAX_TAGS})"
    if any(not part for part in parts):
        return f"{filename!r} has an empty {kind} tag"
    return None


# ---------------------------------------------------------------- core metadata fields

# The core metadata specification's legal Metadata-Version values.
METADATA_VERSIONS = ("1.0", "1.1", "1.2", "2.1", "2.2", "2.3", "2.4", "2.5", "2.6")
_METADATA_VERSION = re.compile(r"([0-9]{1,4})\.([0-9]{1,4})", re.ASCII)
DESCRIPTION_TYPES = ("text/plain", "text/x-rst", "text/markdown")
MARKDOWN_VARIANTS = ("GFM", "CommonMark")
MAX_FIELD = 1000  # characters of a field shown in a message


def metadata_version_check(value: str | None, member: str) -> tuple[str | None, str | None]:
    """(refusal, warning) for a Metadata-Version.

    The specification: consumers SHOULD warn on a newer minor version than they know and MUST
    fail on a newer major version; a version that is not one of its values is refused.
    """
    if value is None or not value.strip():
        return f"{member} has no Metadata-Version", None
    value = value.strip()
    if value in METADATA_VERSIONS:
        return None, None
    match = _METADATA_VERSION.fullmatch(value)
    newest = METADATA_VERSIONS[-1]
    newest_major, newest_minor = (int(part) for part in newest.split("."))
    major, minor = (int(part) for part in match.groups()) if match else (0, 0)
    if major == newest_major and minor > newest_minor:
        return None, f"{member} Metadata-Version {value} is newer than {newest}, the newest known"
    if major > newest_major:
        return (
            f"{member} Metadata-Version {value} has a newer major version than {newest}, the"
            " newest creamery understands",
            None,
        )
    known = ", ".join(METADATA_VERSIONS)
    return f"{member} Metadata-Version {value[:MAX_FIELD]!r} is not one of {known}", None


def version_problem(value: str, member: str) -> str | None:
    """Why a Version field is not a version `packaging` reads (PEP 440), or None."""
    if parse_version(value) is None:
        return f"{member} Version {value[:MAX_FIELD]!r} is not a valid version (see PEP 440)"
    return None


def content_type_problem(value: str, where: str) -> str | None:
    """Why a Description-Content-Type is not one the core metadata specification allows.

    `type/subtype` is text/plain, text/x-rst or text/markdown (any case); `charset`, when
    given, is UTF-8; markdown's `variant`, when given, is GFM or CommonMark (as PyPI checks).
    Other parameters are left alone.
    """
    shown = value[:MAX_FIELD]
    media_type, *parameters = value.split(";")
    if media_type.strip().lower() not in DESCRIPTION_TYPES:
        allowed = ", ".join(DESCRIPTION_TYPES)
        return f"{where} {shown!r} is not a valid description content type (one of {allowed})"
    seen: dict[str, str] = {}
    for parameter in parameters:
        key, equals, raw = parameter.partition("=")
        key = key.strip().lower()
        if not equals or not key:
            return f"{where} {shown!r} has a malformed parameter {parameter.strip()[:100]!r}"
        seen[key] = raw.strip().strip('"')
    charset = seen.get("charset", "UTF-8")
    if charset.lower() != "utf-8":
        return f"{where} {shown!r}: the only charset allowed is UTF-8, not {charset[:100]!r}"
    variant = seen.get("variant")
    is_markdown = media_type.strip().lower() == "text/markdown"
    if is_markdown and variant is not None and variant not in MARKDOWN_VARIANTS:
        variants = " or ".join(MARKDOWN_VARIANTS)
        return f"{where} {shown!r}: the markdown variant must be {variants}, not {variant[:100]!r}"
    return None


# Fields the core metadata specification allows once, which the upload compares or checks: a
# second one is read by some tools (`email`'s `msg[key]` takes the first, `dict(msg.items())`
# the last), so a file could say one version to this check and another to an installer.
SINGLE_FIELDS = ("Metadata-Version", "Name", "Version", "Description-Content-Type")


def metadata_fields(raw: bytes) -> dict[str, list[str]]:
    """The header fields of METADATA / PKG-INFO the checks read, every occurrence of each
    (the specification's encoding, UTF-8; bytes that are not are shown replaced)."""
    headers = HeaderParser(policy=compat32).parsestr(raw.decode("utf-8", "replace"))
    fields = {}
    for key in SINGLE_FIELDS:
        values = headers.get_all(key)
        if values:
            fields[key] = [str(value).strip() for value in values]
    return fields


def metadata_checks(raw: bytes, member: str) -> tuple[str | None, list[str]]:
    """(refusal or None, warnings) for an archive's METADATA / PKG-INFO: no field of
    SINGLE_FIELDS twice, its Metadata-Version and Description-Content-Type (Name and Version
    are compared with the filename, and the Version checked with `version_problem`, where the
    upload reads them)."""
    fields = metadata_fields(raw)
    repeated = next((key for key in SINGLE_FIELDS if len(fields.get(key, ())) > 1), None)
    if repeated is not None:
        return f"{member} has {len(fields[repeated])} {repeated} fields (one is allowed)", []
    first = {key: values[0] for key, values in fields.items()}
    refusal, warning = metadata_version_check(first.get("Metadata-Version"), member)
    if refusal is None and first.get("Description-Content-Type"):
        where = f"{member} Description-Content-Type"
        refusal = content_type_problem(first["Description-Content-Type"], where)
    return refusal, [warning] if warning else []


# ---------------------------------------------------------------- sdist names (PEP 625, 527)


def pep625_filename(name: str, version: str) -> str:
    """The sdist filename PEP 625 (and PyPI) asks for: `{escaped_name}-{version}.tar.gz`, the
    name normalized with `_` for runs of `-_.`, the version normalized (PEP 440)."""
    escaped = re.sub(r"[-_.]+", "_", name).lower()
    parsed = parse_version(version)
    return f"{escaped}-{parsed if parsed is not None else version}.tar.gz"


def sdist_name_warning(filename: str, name: str, version: str) -> str | None:
    """A warning for an sdist that PyPI would refuse by its name, which creamery accepts:
    a legacy (non-normalized) name, or a .zip (PEP 527 allows it; PEP 625 asks for .tar.gz)."""
    expected = pep625_filename(name, version)
    if filename == expected:
        return None
    if filename.lower().endswith(".zip"):
        return (
            f"{filename!r} is a .zip sdist: PEP 625 asks for {expected!r} (PyPI refuses .zip"
            " sdists); creamery accepts it"
        )
    return (
        f"{filename!r} is not a PEP 625 sdist filename: it should be {expected!r} (PyPI refuses"
        " it); creamery accepts it"
    )
