"""The session's corpus: two package roots with known contents (the `corpus` fixture)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from support.dists import make_sdist, make_wheel, sign, wheel_metadata, yank

# The corpus's one fixed upload time (PEP 700), set as the mtime of `FIXED_MTIME_FILE`.
FIXED_MTIME = 1614834367  # 2021-03-04T05:06:07Z
FIXED_MTIME_ISO = "2021-03-04T05:06:07"
FIXED_MTIME_FILE = "tlib-2.0-py3-none-any.whl"
SECRET = "creamery-test-secret-outside-the-roots"


@dataclass
class Corpus:
    """Two package roots with known contents; every path here is a real file."""

    base: Path
    roots: tuple[Path, Path]
    files: dict[str, Path] = field(default_factory=dict)  # filename -> path, served ones only
    hidden: dict[str, Path] = field(default_factory=dict)  # dot-files / dot-dirs: never served
    secret: Path | None = None  # a file beside the roots, for traversal attempts

    def add(self, path: Path) -> Path:
        self.files[path.name] = path
        return path

    def relpath(self, filename: str) -> str:
        """The path under /packages/ (relative to the file's root, with forward slashes)."""
        path = self.files.get(filename) or self.hidden[filename]
        for root in self.roots:
            if path.is_relative_to(root):
                return path.relative_to(root).as_posix()
        raise AssertionError(f"{path} is in no root")

    def data(self, filename: str) -> bytes:
        return self.files[filename].read_bytes()

    def sha256(self, filename: str) -> str:
        return hashlib.sha256(self.data(filename)).hexdigest()

    def metadata(self, filename: str) -> bytes:
        return wheel_metadata(self.files[filename])

    def project_files(self, project: str) -> set[str]:
        from creamery.core.names import parse_filename

        return {
            name
            for name in self.files
            if (parsed := parse_filename(name)) is not None and parsed.project == project
        }


def build_corpus(base: Path) -> Corpus:
    """Projects with dependencies, yanks, signatures, requires-python, odd names and hiding."""
    root, root2 = base / "root1", base / "root2"
    root.mkdir(parents=True)
    root2.mkdir(parents=True)
    corpus = Corpus(base=base, roots=(root, root2))
    add = corpus.add

    # tlib: several versions across both roots; 0.5 yanked without reason, 3.0 with one.
    yank(add(make_wheel(root, "tlib", "0.5", summary="Test library")))
    add(make_sdist(root2, "tlib", "0.9", summary="Test library"))
    add(make_wheel(root, "tlib", "1.0", summary="Test library"))
    add(make_sdist(root, "tlib", "1.0", summary="Test library"))
    add(make_wheel(root, "tlib", "2.0", summary="Test library"))
    add(make_sdist(root, "tlib", "2.0", summary="Test library"))
    yank(add(make_wheel(root, "tlib", "3.0", summary="Test library")), "broken build")
    os.utime(corpus.files[FIXED_MTIME_FILE], (FIXED_MTIME, FIXED_MTIME))

    # tapp lives in a subdirectory and depends on tlib.
    add(make_wheel(root / "sub", "tapp", "1.0", requires_dist=["tlib>=1.0"], summary="Test app"))

    # A non-normalized project name, spelled two ways in filenames.
    add(make_wheel(root, "Foo.Bar_baz", "0.2", summary="Oddly named project"))
    add(make_sdist(root, "Foo.Bar_baz", "0.1", filename_name="Foo.Bar_baz"))

    # requires-python: 2.0 can't be installed by any Python 3.
    add(make_wheel(root, "tpyreq", "1.0", requires_python=">=3.8,<4", summary="Needs py3"))
    add(make_wheel(root, "tpyreq", "2.0", requires_python=">=4", summary="Needs py4"))

    sign(add(make_wheel(root, "tsigned", "1.0", summary="Signed project")))

    add(make_wheel(root2, "tother", "1.0", summary="A zebra among packages"))

    # Must never be listed or served.
    dotfile = make_wheel(root, "thidden", "1.0")
    corpus.hidden[".thidden-1.0-py3-none-any.whl"] = dotfile.rename(
        root / ".thidden-1.0-py3-none-any.whl"
    )
    hidden_in_dir = make_wheel(root / ".hiddendir", "thidden2", "1.0")
    corpus.hidden[hidden_in_dir.name] = hidden_in_dir

    corpus.secret = base / "secret.txt"
    corpus.secret.write_text(SECRET)
    return corpus
