"""The catalog service in process, on real directories: publish, yank, remove, stored facts,
and another process's view of the same directories (a second Catalog) through the change log.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from support.dists import make_sdist, make_wheel, wheel_metadata

from creamery.catalog.facts import file_version
from creamery.catalog.service import AlreadyExists, Catalog, ReleaseNotFound, Upload
from creamery.core.config import Config
from creamery.render.simple_api import entry_for
from creamery.storage import read_all


@pytest.fixture
def config(tmp_path: Path) -> Config:
    root = tmp_path / "root"
    make_wheel(root, "kept", "1.0")
    make_sdist(root, "kept", "1.0")
    return Config(roots=(root,), cache_dir=tmp_path / "cache")


@pytest.fixture
def catalog(config: Config) -> Catalog:
    return opened(config)


def opened(config: Config) -> Catalog:
    catalog = Catalog(config)
    catalog.index.load()
    return catalog


def digests_of(data: bytes) -> dict[str, str]:
    return {
        "sha256": hashlib.sha256(data).hexdigest(),
        "md5": hashlib.md5(data).hexdigest(),
        "blake2b_256": hashlib.blake2b(data, digest_size=32).hexdigest(),
    }


def upload_of(catalog: Catalog, source: Path, **fields: object) -> Upload:
    """What the upload handler hands over: the bytes spooled, their digests and METADATA."""
    data = source.read_bytes()
    fd, spool = catalog.new_spool()
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    metadata = wheel_metadata(source) if source.name.endswith(".whl") else None
    return Upload(
        source.name,
        spool,
        digests=digests_of(data),
        metadata=metadata,
        metadata_read=metadata is not None,
        **fields,  # type: ignore[arg-type]
    )


def cached_rows(config: Config) -> int:
    """Rows of the on-disk facts cache (the cache for files placed by other tools)."""
    path = config.facts_cache_dir() / "facts.sqlite3"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        tables = ("digests", "metadata")
        return sum(db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables)


def test_publish_places_the_file_with_its_facts(catalog: Catalog, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "in", "fresh", "1.0")
    changed = catalog.publish(upload_of(catalog, wheel, signature=b"sig"), overwrite=False)

    root = catalog.storage.upload_root
    assert changed == [wheel.name, wheel.name + ".asc"]
    assert (root / wheel.name).read_bytes() == wheel.read_bytes()
    assert (root / (wheel.name + ".asc")).read_bytes() == b"sig"
    assert [d.filename for d in catalog.index.distributions("fresh")] == [wheel.name]
    entry = catalog.state.path / "files" / wheel.name
    assert sorted(p.name for p in entry.iterdir()) == ["facts", "metadata"]
    assert (entry / "metadata").read_bytes() == wheel_metadata(wheel)
    assert list(catalog.state.tmp.glob("*/*")) == []  # the spool became the file


def test_publish_refuses_a_taken_name_and_changes_nothing(catalog: Catalog, tmp_path: Path) -> None:
    first = make_wheel(tmp_path / "a", "taken", "1.0", summary="first")
    catalog.publish(upload_of(catalog, first), overwrite=False)
    facts = (catalog.state.path / "files" / first.name / "facts").read_bytes()
    for other in (
        make_wheel(tmp_path / "b", "taken", "1.0", summary="second"),
        make_wheel(tmp_path / "c", "Taken", "1.0.0", summary="same file to an installer"),
    ):
        with pytest.raises(AlreadyExists):
            catalog.publish(upload_of(catalog, other), overwrite=False)
    assert (catalog.storage.upload_root / first.name).read_bytes() == first.read_bytes()
    assert (catalog.state.path / "files" / first.name / "facts").read_bytes() == facts
    assert [d.filename for d in catalog.index.distributions("taken")] == [first.name]


def test_overwrite_replaces_the_bytes_and_their_facts(catalog: Catalog, tmp_path: Path) -> None:
    first = make_wheel(tmp_path / "a", "replaced", "1.0", summary="first")
    catalog.publish(upload_of(catalog, first), overwrite=False)
    second = make_wheel(tmp_path / "b", "replaced", "1.0", summary="second")
    catalog.publish(upload_of(catalog, second), overwrite=True)

    (dist,) = catalog.index.distributions("replaced")
    assert read_all(catalog.storage, dist.stored) == second.read_bytes()
    assert catalog.facts.digests(dist.stored).sha256 == digests_of(second.read_bytes())["sha256"]
    assert catalog.facts.metadata(dist.stored, "wheel").summary == "second"


def test_facts_stored_at_upload_are_used_without_reading_the_file(
    catalog: Catalog, config: Config, tmp_path: Path
) -> None:
    wheel = make_wheel(tmp_path / "in", "facty", "1.0", requires_python=">=3.9")
    catalog.publish(upload_of(catalog, wheel), overwrite=False)
    published = catalog.storage.upload_root / wheel.name
    # Change the bytes behind the catalog's back, keeping size, mtime and inode: whatever
    # is answered now can only come from the facts stored at upload, not from a read.
    st = published.stat()
    with published.open("r+b") as f:
        f.write(b"\0" * st.st_size)
    os.utime(published, ns=(st.st_atime_ns, st.st_mtime_ns))

    another = opened(config)  # another process: its own index and cache connection
    for view in (catalog, another):
        (dist,) = view.index.distributions("facty")
        assert view.facts.digests(dist.stored).sha256 == digests_of(wheel.read_bytes())["sha256"]
        assert view.facts.pypi_digests(dist.stored) == digests_of(wheel.read_bytes())
        metadata = view.facts.metadata(dist.stored, "wheel")
        assert metadata.raw == wheel_metadata(wheel)
        entry = entry_for(view.index, view.facts, dist, "sha256")
        assert entry.core_metadata_sha256 == hashlib.sha256(wheel_metadata(wheel)).hexdigest()
        assert entry.requires_python == ">=3.9"
    assert cached_rows(config) == 0  # nothing was computed, so nothing was cached


def test_stored_facts_of_replaced_bytes_are_ignored(
    catalog: Catalog, config: Config, tmp_path: Path
) -> None:
    wheel = make_wheel(tmp_path / "in", "swapped", "1.0", summary="uploaded")
    catalog.publish(upload_of(catalog, wheel), overwrite=False)
    # Another tool copies other bytes over the name: another file version.
    other = make_wheel(tmp_path / "other", "swapped", "1.0", summary="copied over")
    published = catalog.storage.upload_root / wheel.name
    shutil.copyfile(other, published)
    catalog.index.refresh([wheel.name])

    (dist,) = catalog.index.distributions("swapped")
    assert catalog.facts.stored(dist.stored) is None
    assert catalog.facts.digests(dist.stored).sha256 == digests_of(other.read_bytes())["sha256"]
    assert catalog.facts.metadata(dist.stored, "wheel").summary == "copied over"
    assert cached_rows(config) == 2  # computed once, cached for this version


def test_publish_into_a_directory(catalog: Catalog, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "in", "nested", "2.0")
    changed = catalog.publish(upload_of(catalog, wheel, directory="sub/dir"), overwrite=False)
    relpath = f"sub/dir/{wheel.name}"
    assert changed[0] == relpath
    (dist,) = catalog.index.distributions("nested")
    assert dist.relpath == relpath
    stored = catalog.facts.stored(dist.stored)
    assert stored is not None and stored.version == file_version(dist.stored)


def test_a_second_catalog_sees_each_write_after_it_catches_up(
    catalog: Catalog, config: Config, tmp_path: Path
) -> None:
    other = opened(config)
    wheel = make_wheel(tmp_path / "in", "shared", "1.0")
    catalog.publish(upload_of(catalog, wheel), overwrite=False)
    assert "shared" not in other.index.projects
    other.catch_up()
    assert [d.filename for d in other.index.distributions("shared")] == [wheel.name]

    catalog.set_yanked("shared", "1.0", yanked=True, reason="broken")
    (dist,) = other.index.distributions("shared")
    assert other.index.yank_reason(dist) is None
    other.catch_up()
    assert other.index.yank_reason(dist) == "broken"

    catalog.remove("shared", "1.0")
    other.catch_up()
    assert "shared" not in other.index.projects


def test_yank_and_unyank_a_release_or_one_file(catalog: Catalog) -> None:
    files = {d.filename: d for d in catalog.index.distributions("kept")}
    assert len(files) == 2

    changed = catalog.set_yanked("Kept", "1.0", yanked=True, reason=" old ")
    assert sorted(changed) == sorted(files)
    assert [catalog.index.yank_reason(d) for d in files.values()] == ["old", "old"]

    (wheel,) = [name for name in files if name.endswith(".whl")]
    assert catalog.set_yanked("kept", "1.0", yanked=False, filename=wheel) == [wheel]
    assert {n: catalog.index.yank_reason(d) for n, d in files.items()} == {
        wheel: None,
        **{n: "old" for n in files if n != wheel},
    }
    with pytest.raises(ReleaseNotFound):
        catalog.set_yanked("kept", "9.9", yanked=True)


def test_yank_is_all_or_nothing(catalog: Catalog) -> None:
    dists = catalog.index.distributions("kept")
    # The second file's state can't be written: its entry's place is taken by a file.
    blocker = catalog.state.path / "files" / dists[1].relpath
    blocker.parent.mkdir(parents=True)
    blocker.write_bytes(b"")
    with pytest.raises(OSError):
        catalog.set_yanked("kept", "1.0", yanked=True, reason="never half")
    assert catalog.state.read(dists[0].relpath, "yanked") is None
    assert [catalog.index.is_yanked(d) for d in dists] == [False, False]


def test_remove_deletes_the_files_their_signatures_and_state(
    catalog: Catalog, tmp_path: Path
) -> None:
    wheel = make_wheel(tmp_path / "in", "gone", "1.0")
    catalog.publish(upload_of(catalog, wheel, signature=b"sig", provenance=b"{}"), overwrite=False)
    catalog.set_yanked("gone", "1.0", yanked=True)
    entry = catalog.state.path / "files" / wheel.name
    assert sorted(p.name for p in entry.iterdir()) == ["facts", "metadata", "provenance", "yanked"]

    changed = catalog.remove("gone")
    assert sorted(changed) == [wheel.name, wheel.name + ".asc"]
    root = catalog.storage.upload_root
    assert not (root / wheel.name).exists() and not (root / (wheel.name + ".asc")).exists()
    assert not entry.exists()
    assert "gone" not in catalog.index.projects
    with pytest.raises(ReleaseNotFound):
        catalog.remove("gone")
