"""Core metadata as a project page shows it: people with their addresses, the license,
project URLs, classifiers grouped, dependencies with their extras and markers, wheel tags.

Pure functions of the metadata (untrusted: whatever an uploader wrote); the page escapes
everything, and only http(s) and mailto URLs become links.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import getaddresses
from urllib.parse import urlsplit

from packaging.metadata import RawMetadata
from packaging.requirements import InvalidRequirement, Requirement

from creamery.core.names import normalize

_LINK_SCHEMES = frozenset({"http", "https"})
_SHORT_LICENSE = 120  # a longer License field is the license's text: shown folded


@dataclass(frozen=True, slots=True)
class Person:
    name: str
    email: str | None


@dataclass(frozen=True, slots=True)
class Dependency:
    name: str  # as written
    project: str  # normalized: the page links it when hosted here
    extras: tuple[str, ...]
    specifier: str
    marker: str | None
    text: str  # the whole requirement as written


@dataclass(frozen=True, slots=True)
class License:
    short: str | None  # an expression or a one-line name
    text: str | None  # a license's full text


def link(url: str | None) -> str | None:
    """*url* when it is safe to link (http or https), else None."""
    if not url:
        return None
    url = url.strip()
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        return None
    return url if scheme in _LINK_SCHEMES else None


def people(names: str | None, emails: str | None) -> list[Person]:
    """Author (or maintainer) and their addresses: `Name <a@b>` lists and plain names."""
    found: list[Person] = []
    for name, address in getaddresses([emails]) if emails else []:
        if "@" in address:
            found.append(Person(name.strip(), address))
        elif name.strip():
            found.append(Person(name.strip(), None))
    label = (names or "").strip()
    if label:
        if len(found) == 1 and not found[0].name:  # Author: X, Author-email: x@y
            found = [Person(label, found[0].email)]
        elif not any(p.name == label for p in found):
            found.insert(0, Person(label, None))
    return [Person(p.name or p.email or "", p.email) for p in found]


def license_of(meta: RawMetadata) -> License:
    """PEP 639's expression first; else the License field (a name, or a whole text)."""
    expression = (meta.get("license_expression") or "").strip()
    if expression:
        return License(expression, None)
    text = (meta.get("license") or "").strip()
    if not text:
        return License(None, None)
    if len(text) <= _SHORT_LICENSE and "\n" not in text:
        return License(text, None)
    return License(None, text)


def license_classifiers(classifiers: list[str]) -> list[str]:
    prefix = "License :: "
    return [c.rpartition(" :: ")[2] for c in classifiers if c.startswith(prefix)]


def project_urls(meta: RawMetadata) -> list[tuple[str, str]]:
    """(label, URL) pairs: Home-page, Download-URL and every Project-URL that may be linked."""
    found: list[tuple[str, str]] = []
    home = link(meta.get("home_page"))
    if home:
        found.append(("Homepage", home))
    for label, url in (meta.get("project_urls") or {}).items():
        safe = link(url)
        if safe and (label, safe) not in found:
            found.append((label.strip() or safe, safe))
    download = link(meta.get("download_url"))
    if download:
        found.append(("Download", download))
    return found


def grouped_classifiers(classifiers: list[str]) -> list[tuple[str, list[str]]]:
    """`Topic :: Software Development` -> ("Topic", ["Software Development"]), in order."""
    groups: dict[str, list[str]] = {}
    for classifier in classifiers:
        head, _, rest = classifier.partition(" :: ")
        groups.setdefault(head.strip(), []).append(rest.strip() or head.strip())
    return list(groups.items())


def dependencies(requirements: list[str]) -> list[Dependency]:
    """Requires-Dist entries, parsed (one that does not parse is shown as written)."""
    found = []
    for text in requirements:
        try:
            parsed = Requirement(text)
        except InvalidRequirement:
            name = text.split(";")[0].split("[")[0].split(" ")[0].strip()
            found.append(Dependency(name, normalize(name), (), "", None, text))
            continue
        found.append(
            Dependency(
                name=parsed.name,
                project=normalize(parsed.name),
                extras=tuple(sorted(parsed.extras)),
                specifier=str(parsed.specifier),
                marker=str(parsed.marker) if parsed.marker is not None else None,
                text=text,
            )
        )
    return found


def wheel_tags(filename: str) -> tuple[str, str, str] | None:
    """(python, abi, platform) tags of a wheel's filename; None for other files."""
    if not filename.endswith(".whl"):
        return None
    parts = filename[:-4].split("-")
    if len(parts) < 5:
        return None
    return parts[-3], parts[-2], parts[-1]
