"""Wheels whose METADATA carries a README (the long description and its content type), and the
READMEs the web UI tests render: Markdown and reStructuredText as projects write them, and
hostile ones that try to run script in the index's pages.

A hostile README sets a global when any of its payloads runs (`PWNED_GLOBALS`), so a browser
test can tell "sanitized" from "blocked by the Content-Security-Policy" from "ran".
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from support.dists import core_metadata, module_name, write_wheel

MARKDOWN = "text/markdown"
RST = "text/x-rst"
PLAIN = "text/plain"

MARKDOWN_README = """\
# Markdown demo

A **fast** and *friendly* library for [parsing things](https://example.com/parse).

## Installation

```python
import markdown_demo
markdown_demo.parse("a, b, c")
```

| option | default |
| ------ | ------- |
| `strict` | `False` |

- first point
- second point
"""

RST_README = """\
RST demo
========

A **bold** claim and an *emphasised* one, with a `link <https://example.com/rst>`_.

Usage
-----

Install it, then::

    import rst_demo
    rst_demo.run()

* one item
* another item
"""

# Every payload sets one of these globals if it runs.
PWNED_GLOBALS = ("pwnedScript", "pwnedImage", "pwnedLink", "pwnedSvg", "pwnedRaw", "pwnedRstLink")

MALICIOUS_MARKDOWN = """\
# Evil demo

Harmless text first.

<script>window.pwnedScript = true;</script>

<img src="data:image/png;base64,AAAA" alt="broken" onerror="window.pwnedImage = true">

[click me](javascript:window.pwnedLink=true)

<a href="javascript:window.pwnedLink=true" id="evil-link">or me</a>

<svg><script>window.pwnedSvg = true;</script></svg>

<style>body { display: none; }</style>

<iframe src="javascript:window.parent.pwnedScript=true"></iframe>

Harmless text last.
"""

MALICIOUS_RST = """\
Evil rst
========

Harmless text first.

.. raw:: html

    <script>window.pwnedRaw = true;</script>

A `link <javascript:window.pwnedRstLink=true>`_ to nowhere.

Harmless text last.
"""


def readme_metadata(
    name: str,
    version: str,
    readme: str,
    content_type: str = MARKDOWN,
    *,
    summary: str = "",
    requires_python: str | None = None,
    requires_dist: Iterable[str] = (),
    extra_headers: Iterable[str] = (),
) -> str:
    """Core metadata (2.1) whose body is *readme*, declared with `Description-Content-Type`."""
    headers = core_metadata(
        name, version, summary=summary, requires_dist=requires_dist, requires_python=requires_python
    )
    headers += f"Description-Content-Type: {content_type}\n"
    headers += "".join(f"{line}\n" for line in extra_headers)
    return headers + "\n" + readme


def readme_wheel(
    directory: Path | str,
    name: str,
    version: str,
    readme: str,
    content_type: str = MARKDOWN,
    *,
    summary: str = "",
    requires_python: str | None = None,
    requires_dist: Iterable[str] = (),
    extra_headers: Iterable[str] = (),
    tag: str = "py3-none-any",
) -> Path:
    """A real wheel of *name* *version* whose METADATA holds *readme*; returns its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    metadata = readme_metadata(
        name,
        version,
        readme,
        content_type,
        summary=summary,
        requires_python=requires_python,
        requires_dist=requires_dist,
        extra_headers=extra_headers,
    )
    files: dict[str, str | bytes] = {
        f"{module_name(name)}/__init__.py": f'__version__ = "{version}"\n'
    }
    return directory / write_wheel(str(directory), name, version, metadata, files, tag)
