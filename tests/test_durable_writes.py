"""Writes are complete or absent, and creamery's own data lives in its state directory.

Against real `creamery run` processes: the package directory holds exactly what pypiserver
would hold; legacy sidecars migrate on start; a name too long is a 400 and a full disk a 507
with nothing published; kill -9 mid-upload leaves nothing after a restart; concurrent
`--overwrite` uploads never pair one upload's metadata with another's wheel; derived metadata
follows the bytes served when a file is replaced on disk (checked with pip and uv).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from support.attested import GITHUB_SDIST, attestations_field, copy_fixture
from support.clients import UV, client_env, describe, run_client
from support.dists import make_wheel, sign
from support.forms import upload
from support.polling import wait_for
from support.s3 import S3Server
from support.servers import Server, free_port, run_server, started
from support.wire import listed

from creamery.catalog import publish
from creamery.core import durable
from creamery.storage.local import LocalStorage
from creamery.storage.state import FileState, StateDir

HTTP = httpx.Client(timeout=30)
OPEN = ("-P", ".", "-a", ".", "--disable-fallback")


def wheel_metadata(data: bytes) -> bytes:
    import io

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return archive.read(name)


def entries(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def published(root: Path) -> list[str]:
    """What the package directory holds besides the hidden state directory."""
    return [name for name in entries(root) if name != ".creamery"]


def leftovers(*directories: Path) -> list[str]:
    found: list[str] = []
    for directory in directories:
        found += [str(p) for p in directory.rglob("*.part")]
    return found


# ----------------------------------------------------------------------------- state directory


def test_an_upload_leaves_only_the_distribution_and_its_signature(tmp_path: Path) -> None:
    """pypiserver's `len(list(root.iterdir())) == 1`: no .metadata, no .creamery/ in the root."""
    root, state = tmp_path / "root", tmp_path / "state"
    root.mkdir()
    wheel = make_wheel(tmp_path / "dist", "clean", "1.0", requires_dist=["six>=1.10"])
    with run_server([root], *OPEN, "--state-dir", str(state)) as srv:
        assert upload(srv, wheel.name, wheel.read_bytes()).status_code == 200
        assert entries(root) == [wheel.name]
        signature = sign(wheel).read_bytes()
        other = copy_fixture(GITHUB_SDIST, tmp_path / "dist")  # with a real attestation
        response = upload(
            srv,
            other.name,
            other.read_bytes(),
            attestations_field(other.name),
            extra_files=[("gpg_signature", other.name + ".asc", signature)],
        )
        assert response.status_code == 200, response.text
        assert HTTP.post(
            srv.url + "/-/yank", json={"project": "clean", "version": "1.0"}
        ).is_success
        assert entries(root) == sorted([wheel.name, other.name, other.name + ".asc"])
        # ... and everything still works from the state directory and the facts cache.
        files = listed(srv, "clean")
        assert files[wheel.name]["yanked"] is True
        metadata = HTTP.get(f"{srv.url}/packages/{wheel.name}.metadata")
        assert metadata.content == wheel_metadata(wheel.read_bytes())
        core = files[wheel.name]["core-metadata"]
        assert core == {"sha256": hashlib.sha256(metadata.content).hexdigest()}
        attested = listed(srv, "pypi-attestations")[other.name]
        provenance = HTTP.get(attested["provenance"])
        assert provenance.status_code == 200 and provenance.json()["attestation_bundles"]
        assert (state / "files" / wheel.name / "yanked").is_file()
        assert (state / "changes.feed").is_file()
    assert entries(root) == sorted([wheel.name, other.name, other.name + ".asc"])


def test_the_default_state_directory_is_hidden_in_the_first_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    wheel = make_wheel(tmp_path / "dist", "hidden", "1.0")
    with run_server([root], *OPEN) as srv:
        assert upload(srv, wheel.name, wheel.read_bytes()).status_code == 200
        assert HTTP.post(srv.url + "/-/yank", json={"project": "hidden", "version": "1.0"})
        assert entries(root) == [".creamery", wheel.name]
        assert (root / ".creamery" / "files" / wheel.name / "yanked").is_file()
        assert list(listed(srv, "hidden")) == [wheel.name]
        packages = HTTP.get(srv.url + "/packages/").text
        assert ".creamery" not in packages and "/yanked" not in packages  # no state file
        assert re.findall(r'href="([^"#]+)', packages) == [wheel.name]


def test_a_state_directory_inside_the_root_must_be_hidden(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "state").mkdir(parents=True)
    result = subprocess.run(
        [sys.executable, "-m", "creamery", "run", "--state-dir", str(root / "state"), str(root)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result
    assert "state directory" in result.stderr and "hidden" in result.stderr, result.stderr


def _legacy_root(tmp_path: Path) -> tuple[Path, Path, bytes]:
    """A directory as creamery 1.x left it: sidecars beside the files."""
    root = tmp_path / "legacy"
    root.mkdir()
    wheel = make_wheel(root, "legacy", "1.0")
    (root / (wheel.name + ".yanked")).write_text("broken build")
    provenance = b'{"version": 1, "attestation_bundles": []}'
    (root / (wheel.name + ".provenance")).write_bytes(provenance)
    (root / (wheel.name + ".metadata")).write_bytes(wheel_metadata(wheel.read_bytes()))
    return root, wheel, provenance


def test_legacy_sidecars_migrate_into_the_state_directory_on_start(tmp_path: Path) -> None:
    root, wheel, provenance = _legacy_root(tmp_path)
    for _ in range(2):  # a second start finds nothing left to do, and loses nothing
        with run_server([root], *OPEN) as srv:
            assert entries(root) == [".creamery", wheel.name]
            files = listed(srv, "legacy")
            assert list(files) == [wheel.name]
            assert files[wheel.name]["yanked"] == "broken build"
            url = files[wheel.name]["provenance"]
            assert HTTP.get(url).content == provenance
            served = HTTP.get(f"{srv.url}/packages/{wheel.name}.metadata").content
            assert served == wheel_metadata(wheel.read_bytes())
    state = root / ".creamery"
    assert (state / "files" / wheel.name / "yanked").read_text() == "broken build"
    assert (state / "migrated" / (wheel.name + ".metadata")).is_file()  # kept, not lost


def test_the_cli_uses_the_same_state(tmp_path: Path) -> None:
    root, wheel, _ = _legacy_root(tmp_path)
    state = tmp_path / "state"
    env = {**os.environ, "CREAMERY_STATE_DIR": str(state)}
    with run_server([root], *OPEN, "--state-dir", str(state)) as srv:
        assert listed(srv, "legacy")[wheel.name]["yanked"] == "broken build"
        cli = [sys.executable, "-m", "creamery"]
        result = subprocess.run(
            [*cli, "unyank", "legacy", "1.0", str(root)], env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        assert wheel.name in result.stdout
        # The server reads the CLI's change from the journal before its next answer.
        assert listed(srv, "legacy")[wheel.name]["yanked"] is False
        result = subprocess.run(
            [*cli, "remove", "legacy", "1.0", "--state-dir", str(state), str(root)],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
        assert listed(srv, "legacy") == {}
    assert entries(root) == []
    assert not (state / "files" / wheel.name).exists()


# ----------------------------------------------------------------------------- signatures


def test_an_empty_signature_is_stored_as_pypiserver_stores_it(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    wheel = make_wheel(tmp_path / "dist", "emptysig", "1.0")
    with run_server([root], *OPEN) as srv:
        response = upload(
            srv,
            wheel.name,
            wheel.read_bytes(),
            extra_files=[("gpg_signature", wheel.name + ".asc", b"")],
        )
        assert response.status_code == 200, response.text
        assert (root / (wheel.name + ".asc")).read_bytes() == b""
        assert HTTP.get(f"{srv.url}/packages/{wheel.name}.asc").status_code == 200


# ----------------------------------------------------------------------------- all or nothing


def test_a_filename_too_long_is_the_clients_fault(tmp_path: Path) -> None:
    """254 bytes: the file fits NAME_MAX (255) but its signature (and once .metadata) did not."""
    root = tmp_path / "root"
    root.mkdir()
    limit = os.pathconf(root, "PC_NAME_MAX")
    suffix = "-1.0-py3-none-any.whl"
    too_long = make_wheel(tmp_path / "long", "a" * (limit - 1 - len(suffix)), "1.0")
    assert len(too_long.name) == limit - 1
    longest = make_wheel(tmp_path / "ok", "b" * (limit - 4 - len(suffix)), "1.0")
    with run_server([root], *OPEN) as srv:
        response = upload(srv, too_long.name, too_long.read_bytes())
        assert response.status_code == 400, response.text
        assert "too long" in response.text and str(limit - 4) in response.text
        assert published(root) == []
        assert listed(srv, "a" * (limit - 1 - len(suffix))) == {}
        # The longest name that fits, with every derived name, is accepted and complete.
        signature = (longest.name + ".asc", sign(longest).read_bytes())
        response = upload(
            srv, longest.name, longest.read_bytes(), extra_files=[("gpg_signature", *signature)]
        )
        assert response.status_code == 200, response.text
        assert HTTP.get(f"{srv.url}/packages/{longest.name}.metadata").status_code == 200
        assert HTTP.post(
            srv.url + "/-/yank", json={"project": "b" * (limit - 4 - len(suffix)), "version": "1.0"}
        ).is_success
        assert leftovers(root) == []


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (needs root); skipped where mounting is not allowed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
    )
    if result.returncode != 0:
        pytest.skip(f"can't mount a tmpfs: {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path, leave: int) -> Path:
    """Fill the disk until *leave* bytes are free."""
    filler = disk / "filler.bin"
    free = shutil.disk_usage(disk).free
    with open(filler, "wb") as out:
        out.write(b"\0" * max(0, free - leave))
    return filler


def test_a_full_disk_is_507_and_publishes_nothing(small_disk: Path, tmp_path: Path) -> None:
    root = small_disk / "root"
    root.mkdir()
    files = {"blob.bin": os.urandom(200_000)}
    wheel = make_wheel(tmp_path / "dist", "fulldisk", "1.0", files=files)
    signature = (wheel.name + ".asc", os.urandom(120_000))
    huge = make_wheel(tmp_path / "huge", "fulldisk", "1.0", files={"blob.bin": os.urandom(2 << 20)})
    with run_server([root], *OPEN) as srv:
        before = published(root)
        # Larger than the disk: the spool fills it.
        response = upload(srv, huge.name, huge.read_bytes())
        assert response.status_code == 507, response.text
        assert published(root) == before and leftovers(root) == []
        # The wheel fits, the signature does not: the disk fills between the two writes.
        filler = _fill(small_disk, wheel.stat().st_size + 60_000)
        response = upload(
            srv, wheel.name, wheel.read_bytes(), extra_files=[("gpg_signature", *signature)]
        )
        assert response.status_code == 507, response.text
        assert "No space left" in response.text
        assert published(root) == before
        assert listed(srv, "fulldisk") == {}
        assert HTTP.get(f"{srv.url}/packages/{wheel.name}").status_code == 404
        assert leftovers(root) == []
        # Space again: the retry is a normal first upload (not a 409).
        filler.unlink()
        response = upload(
            srv, wheel.name, wheel.read_bytes(), extra_files=[("gpg_signature", *signature)]
        )
        assert response.status_code == 200, response.text
        assert list(listed(srv, "fulldisk")) == [wheel.name]
        assert (root / (wheel.name + ".asc")).read_bytes() == signature[1]


def _start_upload(srv: Server, filename: str, sent: int, total: int) -> socket.socket:
    """An upload whose body stops after *sent* bytes of a *total*-byte file part."""
    boundary = "x-durable-boundary"
    head = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name=":action"\r\n\r\nfile_upload\r\n'
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="content"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    request = (
        "POST / HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{srv.port}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(head) + total}\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    sock.sendall(request + head + os.urandom(sent))
    return sock


def test_kill_9_mid_upload_leaves_nothing_after_a_restart(tmp_path: Path) -> None:
    root, state = tmp_path / "root", tmp_path / "state"
    root.mkdir()
    port = free_port()
    command = [sys.executable, "-m", "creamery", "run", "-i", "127.0.0.1", "-p", port, *OPEN]
    command += ["--state-dir", state, root]
    with started(command, port, tmp_path) as srv:
        sock = _start_upload(srv, "killed-1.0.tar.gz", 2_000_000, 4_000_000)
        try:
            assert wait_for(lambda: leftovers(state) != [], timeout=10), "no spool file seen"
            os.killpg(srv.process.pid, 9)
            srv.process.wait(timeout=10)
        finally:
            sock.close()
    assert leftovers(state) != []  # what the crash left
    assert entries(root) == []
    with run_server([root], *OPEN, "--state-dir", str(state)) as srv:
        assert leftovers(state, root) == []
        assert listed(srv, "killed") == {}
        assert "killed" not in HTTP.get(srv.url + "/packages/").text
    assert entries(root) == []


def test_a_restart_after_uploads_reports_no_interrupted_uploads(tmp_path: Path) -> None:
    """Was: every process that took an upload left its (empty) spool directory when it stopped,
    so each restart of a server that had taken one logged a WARNING "removed 1 leftovers of
    interrupted uploads", though nothing was interrupted (found restarting a systemd unit)."""
    root = tmp_path / "root"
    root.mkdir()
    wheel = make_wheel(tmp_path, "restarted", "1.0")
    with run_server([root], *OPEN) as srv:
        assert upload(srv, wheel.name, wheel.read_bytes()).status_code == 200
    with run_server([root], *OPEN) as srv:
        assert listed(srv, "restarted") != {}
        assert "leftovers" not in srv.log(), srv.log()


@pytest.mark.parametrize("where", ["directory", "bucket"])
def test_a_first_upload_of_a_name_does_not_inherit_an_old_files_yank(
    where: str, tmp_path: Path, s3: S3Server
) -> None:
    """Was: the yank marker of a file removed by hand (`rm`, `aws s3 rm`; or by `creamery
    prune` or a remove killed after the file went, before its state) stayed in the state, and
    the next upload of that filename, new bytes, was served yanked, with the old reason."""
    wheel = make_wheel(tmp_path / "dist", "reborn", "1.0")
    bucket = s3.new_bucket() if where == "bucket" else ""
    root: Path | str = f"s3://{bucket}/pkgs" if bucket else tmp_path / "root"
    env = s3.env() if bucket else {}
    if not bucket:
        (tmp_path / "root").mkdir()
    with run_server([root], *OPEN, "--rescan-interval", "1", env=env) as srv:
        assert upload(srv, wheel.name, wheel.read_bytes()).status_code == 200
        yank = {"project": "reborn", "version": "1.0", "reason": "broken build"}
        assert HTTP.post(srv.url + "/-/yank", json=yank).is_success
        if bucket:
            s3.delete(bucket, f"pkgs/{wheel.name}")
        else:
            (tmp_path / "root" / wheel.name).unlink()
        assert wait_for(lambda: listed(srv, "reborn") == {}, timeout=10)
        assert upload(srv, wheel.name, wheel.read_bytes()).status_code == 200
        assert listed(srv, "reborn")[wheel.name]["yanked"] is False
    with run_server([root], *OPEN, env=env) as srv:  # and it was not only the memory's view
        assert listed(srv, "reborn")[wheel.name]["yanked"] is False


def test_scratch_of_live_processes_is_kept_and_of_dead_ones_removed(tmp_path: Path) -> None:
    live, cleaner = StateDir(tmp_path), StateDir(tmp_path)
    fd, live_spool = live.new_temp_file()
    os.close(fd)
    dead = tmp_path / "tmp" / "12345-deadbeef"
    dead.mkdir()
    (dead / "upload-0.part").write_bytes(b"x" * 100)
    old_part = tmp_path / ".creamery-0123456789abcdef.part"
    old_part.write_bytes(b"y")
    os.utime(old_part, (1, 1))
    assert cleaner.clean_scratch([tmp_path]) == 2
    assert live_spool.exists() and not dead.exists() and not old_part.exists()


def test_durable_place_claims_a_name_once(tmp_path: Path) -> None:
    first, second = tmp_path / "a.part", tmp_path / "b.part"
    first.write_bytes(b"first")
    second.write_bytes(b"second")
    target = tmp_path / "pkg" / "x.whl"
    assert durable.place(first, target, overwrite=False)
    assert not durable.place(second, target, overwrite=False)
    assert target.read_bytes() == b"first"
    assert not first.exists() and not second.exists()
    third = tmp_path / "c.part"
    third.write_bytes(b"third")
    assert durable.place(third, target, overwrite=True)
    assert target.read_bytes() == b"third"


# ----------------------------------------------------------------------------- overwrite races


@pytest.mark.parametrize("workers", ["1", "2"])
def test_concurrent_overwrites_keep_each_wheel_with_its_own_metadata(
    tmp_path: Path, workers: str
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    builds = [
        make_wheel(tmp_path / f"b{i}", "racer", "1.0", summary=f"build {i}").read_bytes()
        for i in range(50)
    ]
    name = "racer-1.0-py3-none-any.whl"
    with run_server([root], "-o", "--workers", workers, *OPEN) as srv:
        for _round in range(3):
            with ThreadPoolExecutor(50) as pool:
                statuses = list(pool.map(lambda data: upload(srv, name, data).status_code, builds))
            assert statuses == [200] * 50
            served = HTTP.get(f"{srv.url}/packages/{name}").content
            assert served in builds
            metadata = HTTP.get(f"{srv.url}/packages/{name}.metadata").content
            assert metadata == wheel_metadata(served)
            entry = listed(srv, "racer")[name]
            assert entry["hashes"]["sha256"] == hashlib.sha256(served).hexdigest()
            assert entry["core-metadata"]["sha256"] == hashlib.sha256(metadata).hexdigest()
        assert leftovers(root) == []


# ----------------------------------------------------------------------------- replaced on disk


def test_metadata_follows_a_wheel_copied_over_an_uploaded_one(tmp_path: Path) -> None:
    """Issue 9 item 12, with pip and uv: derived data belongs to the exact bytes served."""
    root = tmp_path / "root"
    root.mkdir()
    first = make_wheel(tmp_path / "first", "demo", "1.0", requires_dist=["six>=1.10"])
    rebuild = make_wheel(tmp_path / "rebuild", "demo", "1.0", requires_dist=["six>=1.16", "idna"])
    six = make_wheel(tmp_path / "deps", "six", "1.10.0")
    idna = make_wheel(tmp_path / "deps", "idna", "3.0")
    with run_server([root], "-o", *OPEN) as srv:
        for wheel in (six, idna, first, rebuild):
            assert upload(srv, wheel.name, wheel.read_bytes()).status_code == 200
        assert b"idna" in HTTP.get(f"{srv.url}/packages/{first.name}.metadata").content
        shutil.copyfile(first, root / first.name)  # `cp` the first build over the rebuild
        served = HTTP.get(f"{srv.url}/packages/{first.name}").content
        assert served == first.read_bytes()
        metadata = HTTP.get(f"{srv.url}/packages/{first.name}.metadata").content
        assert metadata == wheel_metadata(first.read_bytes())
        entry = listed(srv, "demo")[first.name]
        assert entry["core-metadata"]["sha256"] == hashlib.sha256(metadata).hexdigest()
        index = srv.url + "/simple/"
        env = client_env(tmp_path / "home")
        pip = run_client(
            [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
             "--no-cache-dir", "--disable-pip-version-check", "--index-url", index,
             "--report", "-", "--quiet", "demo"],
            env,
        )  # fmt: skip
        assert pip.returncode == 0, describe(pip)
        assert "six" in pip.stdout and "idna" not in pip.stdout, pip.stdout
        requirements = tmp_path / "req.in"
        requirements.write_text("demo\n")
        uv = run_client(
            [UV, "pip", "compile", "--no-config", "--no-cache", "--python", sys.executable,
             "--index-url", index, str(requirements)],
            env,
        )  # fmt: skip
        assert uv.returncode == 0, describe(uv)
        assert "six==1.10.0" in uv.stdout and "idna" not in uv.stdout, uv.stdout


def test_state_scan_reads_names_only_and_migration_is_idempotent(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    state = StateDir(root / ".creamery")
    (root / "sub" / "x-1.0.tar.gz.yanked").write_text("old")
    storage = LocalStorage((root,))
    legacy = storage.stat("sub/x-1.0.tar.gz.yanked")
    assert legacy is not None
    assert state.migrate(storage, legacy)
    assert not state.migrate(storage, legacy)  # nothing left to move
    assert state.yank_reason("sub/x-1.0.tar.gz") == "old"
    state.write("y-1.0.tar.gz", "provenance", b"{}")
    assert state.scan() == {
        "sub/x-1.0.tar.gz": FileState(yanked=True, provenance=False),
        "y-1.0.tar.gz": FileState(yanked=False, provenance=True),
    }
    assert state.delete("sub/x-1.0.tar.gz", "yanked")
    assert not (root / ".creamery" / "files" / "sub" / "x-1.0.tar.gz").exists()
    assert list(state.scan()) == ["y-1.0.tar.gz"]


def test_every_derived_name_must_fit(tmp_path: Path) -> None:
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    publish.check_names_fit("a" * (limit - 4), tmp_path, tmp_path / "state")
    with pytest.raises(publish.NameTooLong, match=f"at most {limit - 4}"):
        publish.check_names_fit("a" * (limit - 3), tmp_path, tmp_path / "state")


def test_a_transaction_undone_restores_every_old_version(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    storage = LocalStorage((root,))
    (root / "x.whl.asc").write_bytes(b"old signature")
    state = StateDir(tmp_path / "state")
    transaction = publish._Transaction()
    transaction.put_stored(storage, "x.whl.asc", b"new signature")
    transaction.put_stored(state.store, state.key("x.whl", "provenance"), b"{}")
    transaction.put_stored(storage, "absent", None)
    assert (root / "x.whl.asc").read_bytes() == b"new signature"
    assert state.read("x.whl", "provenance") == b"{}"
    transaction.rollback()
    state.drop_empty_entry("x.whl")
    assert (root / "x.whl.asc").read_bytes() == b"old signature"
    assert state.read("x.whl", "provenance") is None
    assert sorted(p.name for p in root.iterdir()) == ["x.whl.asc"]  # no backups, no spools
    assert [p.name for p in (tmp_path / "state").iterdir()] == ["files"]
    assert list((tmp_path / "state" / "files").iterdir()) == []
    removal = publish._Transaction()
    removal.put_stored(storage, "x.whl.asc", None)
    assert not (root / "x.whl.asc").exists()
    removal.commit()
    assert list(root.iterdir()) == []


def test_app_keywords_take_a_state_directory(tmp_path: Path) -> None:
    from creamery.core.config import ConfigError, config_from_app_kwargs

    (tmp_path / "root").mkdir()
    config = config_from_app_kwargs({"roots": tmp_path / "root", "state_dir": tmp_path / "s"})
    assert config.state_directory() == tmp_path / "s"
    assert config.mirror_cache_dir() == tmp_path / "s" / "mirror"
    default = config_from_app_kwargs({"roots": tmp_path / "root"})
    assert default.state_directory() == tmp_path / "root" / ".creamery"
    with pytest.raises(ConfigError, match="hidden"):
        config_from_app_kwargs({"roots": tmp_path / "root", "state_dir": tmp_path / "root" / "s"})
