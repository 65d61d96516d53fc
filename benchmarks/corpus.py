"""Benchmark corpus: small valid wheels and sdists, one big wheel, and static PEP 503 pages.

Layout under ``benchmarks/work``::

    big/big_payload-1.0.0-py3-none-any.whl     made once, hard-linked into every corpus
    corpus-<name>/packages/                    the flat package directory every server serves
    corpus-<name>/static/simple/...            pre-rendered pages for nginx
    corpus-<name>/static/packages              symlink to ../packages
    corpus-<name>/manifest.json                written last; its presence means "complete"

Projects 0-4 are ``chain0`` ... ``chain4`` (each depends on the next), the others ``pkg-NNNNN``.
Every project has ``versions`` releases, each with a wheel and an sdist.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import html
import io
import json
import os
import shutil
import tarfile
import time
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

FORMAT = 2  # bump when the generated files change, so cached corpora are rebuilt
CHAIN_LENGTH = 5
BIG_NAME = "big_payload"
BIG_VERSION = "1.0.0"
BIG_PAYLOAD_BYTES = 200 * 1000 * 1000
ZIP_DATE = (2024, 1, 1, 0, 0, 0)


def project_name(index: int) -> str:
    """Normalized (PEP 503) name of project *index*."""
    if index < CHAIN_LENGTH:
        return f"chain{index}"
    return f"pkg-{index:05d}"


def dist_name(project: str) -> str:
    """The name as it appears in distribution filenames (PEP 427 / 625)."""
    return project.replace("-", "_")


def version_string(index: int) -> str:
    return f"1.{index}.0"


def wheel_filename(project: str, version: str) -> str:
    return f"{dist_name(project)}-{version}-py3-none-any.whl"


def sdist_filename(project: str, version: str) -> str:
    return f"{dist_name(project)}-{version}.tar.gz"


def _requires(project: str) -> list[str]:
    if project.startswith("chain"):
        n = int(project[len("chain") :])
        if n + 1 < CHAIN_LENGTH:
            return [f"chain{n + 1}"]
    return []


def _metadata(project: str, version: str) -> str:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {project}",
        f"Version: {version}",
        f"Summary: creamery benchmark project {project}",
        "Requires-Python: >=3.8",
    ]
    lines += [f"Requires-Dist: {req}" for req in _requires(project)]
    return "\n".join(lines) + "\n\n"


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _zip_info(name: str, compress: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.compress_type = compress
    info.external_attr = 0o644 << 16
    return info


def build_wheel(project: str, version: str, extra: dict[str, bytes] | None = None) -> bytes:
    """A minimal installable wheel: a module, METADATA, WHEEL and RECORD."""
    dist = dist_name(project)
    info_dir = f"{dist}-{version}.dist-info"
    files: dict[str, bytes] = {
        f"{dist}/__init__.py": f'__version__ = "{version}"\n'.encode(),
        **(extra or {}),
        f"{info_dir}/METADATA": _metadata(project, version).encode(),
        f"{info_dir}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: creamery-benchmarks\n"
            b"Root-Is-Purelib: true\nTag: py3-none-any\n\n"
        ),
    }
    record = "".join(f"{path},{_record_hash(data)},{len(data)}\n" for path, data in files.items())
    record += f"{info_dir}/RECORD,,\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path, data in files.items():
            zf.writestr(_zip_info(path, zipfile.ZIP_DEFLATED), data)
        zf.writestr(_zip_info(f"{info_dir}/RECORD", zipfile.ZIP_DEFLATED), record)
    return buf.getvalue()


def build_sdist(project: str, version: str) -> bytes:
    """A minimal PEP 625 sdist with PKG-INFO and a buildable pyproject.toml."""
    dist = dist_name(project)
    top = f"{dist}-{version}"
    deps = ", ".join(f'"{req}"' for req in _requires(project))
    files = {
        f"{top}/PKG-INFO": _metadata(project, version).encode(),
        f"{top}/pyproject.toml": (
            '[build-system]\nrequires = ["flit_core>=3.2"]\n'
            'build-backend = "flit_core.buildapi"\n\n'
            f'[project]\nname = "{project}"\nversion = "{version}"\n'
            f'description = "creamery benchmark project"\ndependencies = [{deps}]\n'
        ).encode(),
        f"{top}/{dist}/__init__.py": f'"""{project}."""\n__version__ = "{version}"\n'.encode(),
    }
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 1704067200
            tf.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), compresslevel=6, mtime=0)


def _page(title: str, links: list[tuple[str, str]]) -> str:
    body = "".join(f'    <a href="{html.escape(h)}">{html.escape(t)}</a><br>\n' for h, t in links)
    return (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        '    <meta name="pypi:repository-version" content="1.0">\n'
        f"    <title>{html.escape(title)}</title>\n  </head>\n  <body>\n"
        f"    <h1>{html.escape(title)}</h1>\n{body}  </body>\n</html>\n"
    )


def _write_project_page(static: Path, project: str, files: list[tuple[str, str]]) -> None:
    """files: (filename, sha256 hex) pairs."""
    links = [(f"../../packages/{name}#sha256={digest}", name) for name, digest in files]
    page_dir = static / "simple" / project
    page_dir.mkdir(parents=True, exist_ok=True)
    (page_dir / "index.html").write_text(_page(f"Links for {project}", links))


def _make_projects(args: tuple[str, int, int, int]) -> int:
    """Worker: write projects [start, stop) and their static pages. Returns files written."""
    root, start, stop, versions = args
    packages = Path(root) / "packages"
    static = Path(root) / "static"
    count = 0
    for index in range(start, stop):
        project = project_name(index)
        page: list[tuple[str, str]] = []
        for v in range(versions):
            version = version_string(v)
            for name, data in (
                (wheel_filename(project, version), build_wheel(project, version)),
                (sdist_filename(project, version), build_sdist(project, version)),
            ):
                (packages / name).write_bytes(data)
                page.append((name, hashlib.sha256(data).hexdigest()))
                count += 1
        _write_project_page(static, project, page)
    return count


def ensure_big_wheel(work: Path) -> tuple[Path, str]:
    """The 200 MB wheel (random, stored uncompressed); made once. Returns (path, sha256)."""
    big_dir = work / "big"
    path = big_dir / wheel_filename(BIG_NAME, BIG_VERSION)
    digest_file = big_dir / "sha256"
    if path.exists() and digest_file.exists():
        return path, digest_file.read_text().strip()
    big_dir.mkdir(parents=True, exist_ok=True)
    payload = os.urandom(BIG_PAYLOAD_BYTES)
    dist = dist_name(BIG_NAME)
    info_dir = f"{dist}-{BIG_VERSION}.dist-info"
    small = {
        f"{dist}/__init__.py": b"",
        f"{info_dir}/METADATA": _metadata(BIG_NAME.replace("_", "-"), BIG_VERSION).encode(),
        f"{info_dir}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: creamery-benchmarks\n"
            b"Root-Is-Purelib: true\nTag: py3-none-any\n\n"
        ),
    }
    record = f"{dist}/payload.bin,{_record_hash(payload)},{len(payload)}\n"
    record += "".join(f"{p},{_record_hash(d)},{len(d)}\n" for p, d in small.items())
    record += f"{info_dir}/RECORD,,\n"
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w") as zf:
        zf.writestr(_zip_info(f"{dist}/payload.bin", zipfile.ZIP_STORED), payload)
        for p, d in small.items():
            zf.writestr(_zip_info(p, zipfile.ZIP_DEFLATED), d)
        zf.writestr(_zip_info(f"{info_dir}/RECORD", zipfile.ZIP_DEFLATED), record)
    del payload
    h = hashlib.sha256()
    with tmp.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    tmp.rename(path)
    digest_file.write_text(h.hexdigest() + "\n")
    return path, h.hexdigest()


@dataclass(frozen=True)
class Corpus:
    name: str
    root: Path
    projects: int
    versions: int
    files: int  # small files, without the big wheel

    @property
    def packages(self) -> Path:
        return self.root / "packages"

    @property
    def static(self) -> Path:
        return self.root / "static"

    @property
    def big_file(self) -> str:
        return wheel_filename(BIG_NAME, BIG_VERSION)

    @property
    def big_project(self) -> str:
        return BIG_NAME.replace("_", "-")

    def sample_projects(self, count: int) -> list[str]:
        """*count* non-chain projects spread evenly over the corpus."""
        plain = range(CHAIN_LENGTH, self.projects)
        count = min(count, len(plain))
        step = len(plain) / count
        return [project_name(plain[int(i * step)]) for i in range(count)]

    def sample_files(self, count: int) -> list[str]:
        """Wheels and sdists of sample projects, alternating."""
        out = []
        for i, project in enumerate(self.sample_projects(count)):
            version = version_string(i % self.versions)
            maker = wheel_filename if i % 2 == 0 else sdist_filename
            out.append(maker(project, version))
        return out


def ensure_corpus(work: Path, name: str, projects: int, versions: int, log=print) -> Corpus:
    """Build (or reuse) corpus *name* under *work*."""
    if projects <= CHAIN_LENGTH:
        raise ValueError(f"need more than {CHAIN_LENGTH} projects")
    root = work / f"corpus-{name}"
    manifest = root / "manifest.json"
    wanted = {"format": FORMAT, "projects": projects, "versions": versions}
    if manifest.exists():
        data = json.loads(manifest.read_text())
        if all(data.get(k) == v for k, v in wanted.items()):
            log(f"corpus {name}: reusing {root} ({data['files']} files + big wheel)")
            return Corpus(name, root, projects, versions, data["files"])
        log(f"corpus {name}: parameters changed, rebuilding")
    t0 = time.monotonic()
    big_path, big_digest = ensure_big_wheel(work)
    t_big = time.monotonic() - t0
    if root.exists():
        shutil.rmtree(root)
    (root / "packages").mkdir(parents=True)
    (root / "static" / "simple").mkdir(parents=True)
    os.symlink("../packages", root / "static" / "packages")
    jobs = os.cpu_count() or 1
    chunk = max(1, projects // (jobs * 8))
    tasks = [(str(root), s, min(s + chunk, projects), versions) for s in range(0, projects, chunk)]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        files = sum(pool.map(_make_projects, tasks))
    big_target = root / "packages" / big_path.name
    try:
        os.link(big_path, big_target)
    except OSError:
        shutil.copyfile(big_path, big_target)
    _write_project_page(root / "static", BIG_NAME.replace("_", "-"), [(big_path.name, big_digest)])
    index = [project_name(i) for i in range(projects)] + [BIG_NAME.replace("_", "-")]
    index.sort()
    (root / "static" / "simple" / "index.html").write_text(
        _page("Simple index", [(f"{p}/", p) for p in index])
    )
    manifest.write_text(json.dumps({**wanted, "files": files}, indent=1) + "\n")
    log(
        f"corpus {name}: {files} files + big wheel in {time.monotonic() - t0:.1f} s "
        f"(big wheel {t_big:.1f} s)"
    )
    return Corpus(name, root, projects, versions, files)
