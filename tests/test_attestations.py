"""PEP 740: attestations verified at upload, the provenance object served at PyPI's Integrity
API route with fully qualified URLs, the `--attestations` policies, and the mirror passing
upstream provenance on.

Every attestation here is real (tests/fixtures/attestations/, made by pypi-attestations' own
tooling), verified offline with Sigstore's production trust root as the server does.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.attested import (
    FIXTURES,
    GITHUB_PUBLISHER,
    GITHUB_SDIST,
    STAGING_WHEEL,
    attestation_of,
    attestations_field,
    copy_fixture,
)
from support.clients import creamery, describe, installed, pip_install, twine_upload, uv_install
from support.dists import make_sdist
from support.forms import upload
from support.htpasswd import write_sha1_htpasswd
from support.polling import wait_for
from support.servers import Server, run_server
from support.upstream import run_upstream
from support.wire import listed

from creamery.catalog import attestations
from creamery.http.absolute import BASE_VARY, Rebased, base_url
from creamery.mirror.provenance import is_provenance
from creamery.render.negotiation import Format
from creamery.render.simple_api import BASE, make_page
from creamery.web.integrity import INTEGRITY_V1, negotiate

pytest.importorskip("pypi_attestations")

OPEN = ("-P", ".", "-a", ".", "--disable-fallback")
HTTP = httpx.Client(timeout=30)
JSON_SIMPLE = {"Accept": "application/vnd.pypi.simple.v1+json"}
CIRCLECI_WHEEL = "circleci_sign_publish_example-0.0.1.dev137-py3-none-any.whl"
GOOGLE_SDIST = "gcb_attestation_test-0.0.0.tar.gz"
GITLAB_SDIST = "gitlab_oidc_project-0.0.3.tar.gz"


def integrity(base: str, project: str, version: str, filename: str) -> str:
    return f"{base}/integrity/{project}/{version}/{filename}/provenance"


def twine_attested(server: Server, home: Path, dist: Path) -> str:
    """`twine upload --attestations` of *dist* and the `.publish.attestation` beside it."""
    beside = dist.with_name(dist.name + ".publish.attestation")
    result = twine_upload(f"{server.url}/legacy/", home, "--attestations", dist, beside)
    return result.stdout + result.stderr if result.returncode else ""


def upload_attested(server: Server, directory: Path, auth: tuple[str, str] | None = None) -> Path:
    """The GitHub-published sdist uploaded with its attestation (as twine sends it); the copy."""
    dist = copy_fixture(GITHUB_SDIST, directory)
    sent = attestations_field(dist.name)
    assert upload(server, dist.name, dist.read_bytes(), sent, auth=auth).status_code == 200
    return dist


def nothing_stored(server: Server, filename: str) -> bool:
    root = Path(server.roots[0])
    return (
        not (root / filename).exists()
        and not (root / ".creamery" / "files" / filename).exists()
        and HTTP.get(f"{server.url}/packages/{filename}").status_code == 404
    )


@pytest.fixture(scope="module")
def verifying(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The default policy (`verify`)."""
    root = tmp_path_factory.mktemp("verify-root")
    with run_server([root], *OPEN) as server:
        yield server


# ----------------------------------------------------------------------------- verify


def test_twine_upload_with_a_valid_attestation_serves_its_provenance(
    verifying: Server, tmp_path: Path
) -> None:
    dist = copy_fixture(GITHUB_SDIST, tmp_path / "dist", with_attestation=True)
    failed = twine_attested(verifying, tmp_path / "home", dist)
    assert not failed, failed
    url = integrity(verifying.url, "pypi-attestations", "0.0.19", GITHUB_SDIST)
    # PEP 740: fully qualified URLs, in JSON and in HTML, to PyPI's Integrity API route.
    assert listed(verifying, "pypi-attestations")[GITHUB_SDIST]["provenance"] == url
    html = HTTP.get(f"{verifying.url}/simple/pypi-attestations/").text
    assert f'data-provenance="{url}"' in html
    served = HTTP.get(url)
    assert served.status_code == 200, served.text
    assert served.headers["content-type"] == INTEGRITY_V1
    assert served.json() == {
        "version": 1,
        "attestation_bundles": [
            {"publisher": GITHUB_PUBLISHER, "attestations": [attestation_of(GITHUB_SDIST)]}
        ],
    }
    as_json = HTTP.get(url, headers={"Accept": "application/json"})
    assert as_json.headers["content-type"] == "application/json"
    assert as_json.content == served.content
    assert HTTP.get(url, headers={"Accept": "text/html"}).status_code == 406
    # The URL as pip might spell it: a non-normalized name, an equal version.
    assert HTTP.get(integrity(verifying.url, "PyPI_Attestations", "0.0.19.0", GITHUB_SDIST)).json()
    # Still at creamery's older `<file>.provenance` URL.
    compat = HTTP.get(f"{verifying.url}/packages/{GITHUB_SDIST}.provenance")
    assert compat.status_code == 200 and compat.json() == served.json()


def test_integrity_404s_say_why(verifying: Server, tmp_path: Path) -> None:
    plain = make_sdist(tmp_path, "plain-sdist", "1.0")
    assert upload(verifying, plain.name, plain.read_bytes()).status_code == 200
    assert "provenance" not in listed(verifying, "plain-sdist")[plain.name]
    cases = {
        integrity(verifying.url, "plain-sdist", "1.0", plain.name): "No provenance available",
        integrity(verifying.url, "plain-sdist", "2.0", plain.name): "is not a file of",
        integrity(verifying.url, "no-such-project", "1.0", "x-1.0.tar.gz"): "not a project",
    }
    for url, reason in cases.items():
        answer = HTTP.get(url)
        assert answer.status_code == 404, url
        assert reason in answer.json()["message"], answer.text


def test_the_provenance_url_follows_the_host_the_client_used(
    verifying: Server, tmp_path: Path
) -> None:
    dist = copy_fixture(GOOGLE_SDIST, tmp_path)
    response = upload(verifying, dist.name, dist.read_bytes(), attestations_field(dist.name))
    assert response.status_code == 200, response.text
    proxied = {"X-Forwarded-Host": "pypi.example.org", "X-Forwarded-Proto": "https"}
    page = HTTP.get(f"{verifying.url}/simple/gcb-attestation-test/", headers=proxied)
    expected = integrity("https://pypi.example.org", "gcb-attestation-test", "0.0.0", dist.name)
    assert f'data-provenance="{expected}"' in page.text
    direct = HTTP.get(f"{verifying.url}/simple/gcb-attestation-test/")
    assert integrity(verifying.url, "gcb-attestation-test", "0.0.0", dist.name) in direct.text
    assert page.headers["etag"] != direct.headers["etag"]  # one ETag per base
    assert "X-Forwarded-Host" in page.headers["vary"] and "Accept" in page.headers["vary"]
    again = HTTP.get(
        f"{verifying.url}/simple/gcb-attestation-test/",
        headers={**proxied, "If-None-Match": page.headers["etag"]},
    )
    assert again.status_code == 304
    assert again.headers["vary"] == page.headers["vary"]  # a cache keeps varying on the base
    for accept in ("application/vnd.pypi.simple.v1+html", "text/html"):  # same body, own type
        answer = HTTP.get(
            f"{verifying.url}/simple/gcb-attestation-test/", headers={"Accept": accept}
        )
        assert answer.headers["content-type"].startswith(accept)
    published = HTTP.get(expected.replace("https://pypi.example.org", verifying.url)).json()
    publisher = published["attestation_bundles"][0]["publisher"]
    assert publisher == {
        "kind": "Google",
        "email": "919436158236-compute@developer.gserviceaccount.com",
    }


def test_every_page_with_absolute_urls_varies_on_the_base(
    verifying: Server, tmp_path: Path
) -> None:
    """A shared cache keys these pages on what `base_url` reads: a client's X-Forwarded-Host
    must not reach another's copy (the JSON API's, the welcome's and the UI's links)."""
    sdist = make_sdist(tmp_path, "vary-check", "1.0")
    assert upload(verifying, sdist.name, sdist.read_bytes()).status_code == 200
    proxied = {"X-Forwarded-Host": "attacker.example"}
    for path in ("/pypi/vary-check/json", "/", "/project/vary-check/", "/search/?q=vary"):
        if path.startswith("/search/"):  # its results say how long ago: no 304 to compare
            answer = HTTP.get(verifying.url + path, headers=proxied)
            assert BASE_VARY in answer.headers["vary"]
            continue
        answer = HTTP.get(verifying.url + path, headers=proxied)
        assert answer.status_code == 200, path
        assert "attacker.example" in answer.text, path  # believed, as pypiserver does
        vary = {part.strip().lower() for part in answer.headers["vary"].split(",")}
        assert {"host", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-prefix"} <= vary
        again = HTTP.get(
            verifying.url + path, headers={**proxied, "If-None-Match": answer.headers["etag"]}
        )
        assert again.status_code == 304, path
        assert again.headers["vary"] == answer.headers["vary"]


def test_a_bundle_for_other_bytes_is_refused_and_nothing_is_stored(
    verifying: Server, tmp_path: Path
) -> None:
    impostor = make_sdist(tmp_path, "gitlab-oidc-project", "0.0.3")  # the name, not the bytes
    assert impostor.name == GITLAB_SDIST
    response = upload(
        verifying, GITLAB_SDIST, impostor.read_bytes(), attestations_field(GITLAB_SDIST)
    )
    assert response.status_code == 400
    assert response.text.strip() == "attestation 1 does not match the uploaded file's digest"
    assert nothing_stored(verifying, GITLAB_SDIST)
    assert HTTP.get(f"{verifying.url}/simple/gitlab-oidc-project/").status_code == 404


def test_an_attestation_of_another_file_is_refused(verifying: Server, tmp_path: Path) -> None:
    other = make_sdist(tmp_path, "unrelated", "1.0")
    sent = attestations_field(GITHUB_SDIST)
    response = upload(verifying, other.name, other.read_bytes(), sent)
    assert response.status_code == 400
    assert "attestation 1 is for another file" in response.text
    assert nothing_stored(verifying, other.name)


def _tampered_signature() -> str:
    attestation = attestation_of(CIRCLECI_WHEEL)
    envelope = dict(attestation["envelope"])  # type: ignore[call-overload]
    signature = bytearray(base64.b64decode(envelope["signature"]))
    signature[-1] ^= 0x01
    envelope["signature"] = base64.b64encode(bytes(signature)).decode()
    return json.dumps([{**attestation, "envelope": envelope}])


def _with_material(**changes: object) -> str:
    attestation = attestation_of(CIRCLECI_WHEEL)
    material = {**attestation["verification_material"], **changes}  # type: ignore[dict-item]
    return json.dumps([{**attestation, "verification_material": material}])


def _with_log_entry_version(version: str) -> str:
    attestation = attestation_of(CIRCLECI_WHEEL)
    material = attestation["verification_material"]
    entry = dict(material["transparency_entries"][0])  # type: ignore[index]
    entry["kindVersion"] = {"kind": "dsse", "version": version}
    return _with_material(transparency_entries=[entry])


@pytest.mark.parametrize(
    ("attestations_text", "reason"),
    [
        ("[{not json", "attestations is not valid JSON"),
        ('{"version": 1}', "attestations must be a JSON list"),
        ("[]", "attestations is an empty list"),
        ('[{"version": 1}]', "attestation 1 is malformed: verification_material"),
        ('[{"version": 1, "verification_material": {}, "envelope": {}}]', "is malformed"),
        (_tampered_signature(), "attestation 1 does not verify"),
        (_with_material(certificate="AAAA"), "its certificate can't be read"),
        (_with_material(transparency_entries=[{"logIndex": "x"}]), "invalid transparency log"),
        (json.dumps([attestation_of(CIRCLECI_WHEEL)] * 3), "at most 2 attestations"),
        (json.dumps([attestation_of(CIRCLECI_WHEEL)] * 2), "more than one of this type"),
        # sigstore's refusal echoed it, and the answer could not be encoded: a 500
        (_with_log_entry_version("\ud800"), "attestations holds a \\u escape of half a"),
    ],
    ids=[
        *("json", "not-a-list", "empty", "no-material", "stub", "tampered"),
        *("certificate", "log-entry", "three", "twice", "lone-surrogate"),
    ],
)
def test_malformed_attestations_are_refused(
    verifying: Server, tmp_path: Path, attestations_text: str, reason: str
) -> None:
    wheel = FIXTURES / CIRCLECI_WHEEL
    response = upload(
        verifying, wheel.name, wheel.read_bytes(), ("attestations", attestations_text)
    )
    assert response.status_code == 400, response.text
    assert reason in response.text and "\n" not in response.text.strip()
    assert nothing_stored(verifying, wheel.name)


def test_a_refusal_echoing_the_attestation_is_one_printable_line(verifying: Server) -> None:
    """Found by fuzzing: sigstore's refusal quoted the log entry's version as sent (an ESC
    went into the answer and the log), and each such upload logged a WARNING traceback."""
    wheel = FIXTURES / CIRCLECI_WHEEL
    sent = ("attestations", _with_log_entry_version("0.0.9\x1b[2J\x07"))
    response = upload(verifying, wheel.name, wheel.read_bytes(), sent)
    assert response.status_code == 400, response.text
    reason = response.text.strip()
    assert reason.startswith("attestation 1 could not be verified") and reason.isprintable()
    assert "\\x1b[2J\\x07" in reason
    assert "Traceback" not in verifying.log()
    assert nothing_stored(verifying, wheel.name)


def test_a_staging_signed_attestation_is_not_trusted(verifying: Server) -> None:
    wheel = FIXTURES / STAGING_WHEEL
    response = upload(verifying, wheel.name, wheel.read_bytes(), attestations_field(wheel.name))
    assert response.status_code == 400
    assert "attestation 1 is not signed under Sigstore's trust root" in response.text
    assert nothing_stored(verifying, wheel.name)


def test_pip_and_uv_install_an_attested_wheel(verifying: Server, tmp_path: Path) -> None:
    dist = copy_fixture(CIRCLECI_WHEEL, tmp_path / "dist", with_attestation=True)
    failed = twine_attested(verifying, tmp_path / "home", dist)
    assert not failed, failed
    entry = listed(verifying, "circleci-sign-publish-example")[CIRCLECI_WHEEL]
    provenance = HTTP.get(entry["provenance"]).json()
    assert provenance["attestation_bundles"][0]["publisher"]["kind"] == "CircleCI"
    requirement = "circleci-sign-publish-example==0.0.1.dev137"
    result = pip_install(
        f"{verifying.url}/simple/", tmp_path / "pip", tmp_path / "home", requirement
    )
    assert result.returncode == 0, describe(result)
    assert installed(tmp_path / "pip") == {"circleci_sign_publish_example-0.0.1.dev137"}
    result = uv_install(verifying.url, tmp_path / "uv", tmp_path / "home", requirement)
    assert result.returncode == 0, describe(result)
    assert installed(tmp_path / "uv") == {"circleci_sign_publish_example-0.0.1.dev137"}


def test_the_project_page_names_the_verified_publisher(verifying: Server, tmp_path: Path) -> None:
    dist = copy_fixture(GITHUB_SDIST, tmp_path)
    upload(verifying, dist.name, dist.read_bytes(), attestations_field(dist.name))  # or had it
    page = HTTP.get(f"{verifying.url}/project/pypi-attestations/").text
    url = integrity(verifying.url, "pypi-attestations", "0.0.19", GITHUB_SDIST)
    assert f'href="{url}"' in page
    assert "published by GitHub trailofbits/pypi-attestations, release.yml" in page


def test_provenance_is_guarded_like_the_file(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    htpasswd = write_sha1_htpasswd(tmp_path / "htpasswd", "alice", "secret")
    auth = ("alice", "secret")
    with run_server([root], "-P", str(htpasswd), "-a", "update,download") as srv:
        dist = upload_attested(srv, tmp_path / "dist", auth)
        url = listed(srv, "pypi-attestations")[dist.name]["provenance"]  # listing is open
        assert HTTP.get(url).status_code == 401  # as the file itself
        assert HTTP.get(f"{srv.url}/packages/{dist.name}").status_code == 401
        assert HTTP.get(url, auth=auth).json()["attestation_bundles"]


# ----------------------------------------------------------------------------- store, reject


def test_store_keeps_attestations_unverified_behind_a_base_url(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    args = (*OPEN, "--attestations", "store", "--server-base-url", "/idx/")
    with run_server([root], *args, ready_paths=("/idx/health",)) as srv:
        wheel = FIXTURES / STAGING_WHEEL
        response = upload(
            srv, wheel.name, wheel.read_bytes(), attestations_field(wheel.name), path="/idx/"
        )
        assert response.status_code == 200, response.text
        page = HTTP.get(f"{srv.url}/idx/simple/rfc8785/", headers=JSON_SIMPLE).json()
        url = page["files"][0]["provenance"]
        assert url == integrity(f"{srv.url}/idx", "rfc8785", "0.1.2", wheel.name)
        bundles = HTTP.get(url).json()["attestation_bundles"]
        assert bundles == [{"publisher": None, "attestations": [attestation_of(wheel.name)]}]
        # Malformed is still refused: `store` keeps attestations, not anything.
        stub = ("attestations", '[{"version": 1}]')
        sdist = make_sdist(tmp_path, "stub-attested", "1.0")
        refused = upload(srv, sdist.name, sdist.read_bytes(), stub, path="/idx/")
        assert refused.status_code == 400 and "is malformed" in refused.text


def test_store_never_shows_a_publisher_as_proven(tmp_path: Path) -> None:
    """Under `store` nobody checked the certificate: the UI does not say it was proven."""
    root = tmp_path / "root"
    root.mkdir()
    with run_server([root], *OPEN, "--attestations", "store") as srv:
        dist = copy_fixture(GITHUB_SDIST, tmp_path / "dist")
        sent = attestations_field(GITHUB_SDIST)
        assert upload(srv, dist.name, dist.read_bytes(), sent).status_code == 200
        page = HTTP.get(f"{srv.url}/project/pypi-attestations/").text
        shown = "published by GitHub trailofbits/pypi-attestations, release.yml"
        assert f"{shown} (not verified by this index)" in page


def test_provenance_is_served_only_for_the_bytes_it_attests(tmp_path: Path) -> None:
    """Under `store`, another file's attestation; a file deleted by hand and another copied
    in under its name (or a crash between the provenance's write and the file's): the
    provenance kept under the name attests other bytes, and is neither offered nor served."""
    root = tmp_path / "root"
    root.mkdir()
    with run_server([root], *OPEN, "--attestations", "store") as srv:
        impostor = make_sdist(tmp_path, "impostor", "1.0")
        sent = attestations_field(GITHUB_SDIST)  # trailofbits/pypi-attestations' own
        assert upload(srv, impostor.name, impostor.read_bytes(), sent).status_code == 200
        genuine = copy_fixture(GOOGLE_SDIST, tmp_path / "dist")
        sent = attestations_field(GOOGLE_SDIST)
        assert upload(srv, genuine.name, genuine.read_bytes(), sent).status_code == 200
        project = "gcb-attestation-test"
        assert "provenance" in listed(srv, project)[genuine.name]
        (root / genuine.name).unlink()  # by hand, then other bytes under the same name
        rebuilt = make_sdist(tmp_path / "rebuilt", project, "0.0.0")
        shutil.copy(rebuilt, root / genuine.name)
        for name, filename in (("impostor", impostor.name), (project, genuine.name)):
            assert wait_for(lambda n=name, f=filename: "provenance" not in listed(srv, n)[f])
            html = HTTP.get(f"{srv.url}/simple/{name}/").text
            assert "data-provenance" not in html
            ui = HTTP.get(f"{srv.url}/project/{name}/").text
            assert "published by" not in ui and "/provenance" not in ui
            version = "1.0" if name == "impostor" else "0.0.0"
            for url in (
                integrity(srv.url, name, version, filename),
                f"{srv.url}/packages/{filename}.provenance",
            ):
                assert HTTP.get(url).status_code == 404, url
        assert f"the provenance kept for {impostor.name} attests other bytes" in srv.log()


def test_reject_refuses_uploads_that_carry_attestations(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    with run_server([root], *OPEN, env={"CREAMERY_ATTESTATIONS": "reject"}) as srv:
        dist = copy_fixture(GITHUB_SDIST, tmp_path / "dist", with_attestation=True)
        failed = twine_attested(srv, tmp_path / "home", dist)
        assert "400 Bad Request" in failed, failed  # twine shows the status line only
        sent = attestations_field(dist.name)
        refused = upload(srv, dist.name, dist.read_bytes(), sent)
        assert refused.status_code == 400
        assert "this index does not accept attestations (--attestations reject)" in refused.text
        assert nothing_stored(srv, GITHUB_SDIST)
        plain = twine_upload(f"{srv.url}/legacy/", tmp_path / "home", dist)
        assert plain.returncode == 0, describe(plain)
        assert "provenance" not in listed(srv, "pypi-attestations")[GITHUB_SDIST]


def test_without_the_library_verify_refuses_attestations_and_says_what_to_install(
    tmp_path: Path,
) -> None:
    """A server where pypi-attestations can't be imported (an import hook refuses it)."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import sys\n"
        "class Refuse:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.partition('.')[0] == 'pypi_attestations':\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Refuse())\n"
    )
    root = tmp_path / "root"
    root.mkdir()
    pythonpath = os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))
    with run_server([root], *OPEN, env={"PYTHONPATH": pythonpath}) as srv:
        dist = copy_fixture(GITHUB_SDIST, tmp_path)
        response = upload(srv, dist.name, dist.read_bytes(), attestations_field(dist.name))
        assert response.status_code == 400
        assert "pip install 'creamery[attestations]'" in response.text
        assert nothing_stored(srv, dist.name)
        assert upload(srv, dist.name, dist.read_bytes()).status_code == 200
        assert srv.log().count("pypi-attestations is not installed") == 1


# ----------------------------------------------------------------------------- mirror


def test_the_mirror_passes_upstream_provenance_on(tmp_path: Path) -> None:
    upstream_dir = tmp_path / "upstream"
    upstream_dir.mkdir()
    wheel = Path(shutil.copy(FIXTURES / CIRCLECI_WHEEL, upstream_dir))
    provenance = (FIXTURES / (CIRCLECI_WHEEL + ".provenance")).read_bytes()
    (upstream_dir / (wheel.name + ".provenance")).write_bytes(provenance)
    bare = copy_fixture(GOOGLE_SDIST, upstream_dir)  # listed upstream without provenance
    local = tmp_path / "local"
    local.mkdir()
    with (
        run_upstream(upstream_dir) as fake,
        run_server([local], "--mirror", "--fallback-url", fake.index_url) as mirror,
    ):
        project = "circleci-sign-publish-example"
        url = integrity(mirror.url, project, "0.0.1.dev137", wheel.name)
        files = listed(mirror, project)
        assert files[wheel.name]["provenance"] == url  # rewritten to our route, absolute
        html = HTTP.get(f"{mirror.url}/simple/{project}/").text
        assert f'data-provenance="{url}"' in html
        ui = HTTP.get(f"{mirror.url}/project/{project}/").text
        assert f'href="{url}"' in ui  # the UI links our route too, not the upstream's
        for _ in range(2):
            served = HTTP.get(url)
            assert served.status_code == 200, served.text
            assert served.content == provenance
        assert fake.stats()[f"/files/{wheel.name}.provenance"] == 1  # fetched once, cached
        (upstream_dir / (wheel.name + ".provenance")).unlink()
        assert HTTP.get(url).content == provenance  # from the cache
        assert "provenance" not in listed(mirror, "gcb-attestation-test")[bare.name]
        missing = HTTP.get(integrity(mirror.url, "gcb-attestation-test", "0.0.0", bare.name))
        assert missing.status_code == 404
        assert "No provenance available" in missing.json()["message"]


def test_the_mirror_serves_no_provenance_of_a_file_its_policies_hide(tmp_path: Path) -> None:
    upstream_dir = tmp_path / "upstream"
    upstream_dir.mkdir()
    wheel = Path(shutil.copy(FIXTURES / CIRCLECI_WHEEL, upstream_dir))
    provenance = (FIXTURES / (CIRCLECI_WHEEL + ".provenance")).read_bytes()
    (upstream_dir / (wheel.name + ".provenance")).write_bytes(provenance)
    deny = tmp_path / "deny.txt"
    deny.write_text("circleci-sign-publish-example\n")
    local = tmp_path / "local"
    local.mkdir()
    args = ("--mirror", "--mirror-deny", str(deny))
    with (
        run_upstream(upstream_dir) as fake,
        run_server([local], *args, "--fallback-url", fake.index_url) as mirror,
    ):
        url = integrity(mirror.url, "circleci-sign-publish-example", "0.0.1.dev137", wheel.name)
        answer = HTTP.get(url)
        assert answer.status_code == 404
        assert "not offered here" in answer.json()["message"]
        assert f"/files/{wheel.name}.provenance" not in fake.stats()


def test_the_mirror_refuses_what_is_not_a_provenance_object(tmp_path: Path) -> None:
    upstream_dir = tmp_path / "upstream"
    upstream_dir.mkdir()
    wheel = Path(shutil.copy(FIXTURES / CIRCLECI_WHEEL, upstream_dir))
    (upstream_dir / (wheel.name + ".provenance")).write_text('{"version": 2}')
    local = tmp_path / "local"
    local.mkdir()
    with (
        run_upstream(upstream_dir) as fake,
        run_server([local], "--mirror", "--fallback-url", fake.index_url) as mirror,
    ):
        url = listed(mirror, "circleci-sign-publish-example")[wheel.name]["provenance"]
        answer = HTTP.get(url)
        assert answer.status_code == 502
        assert "sent no PEP 740 provenance object" in answer.text


def test_a_quarantined_projects_provenance_is_not_served(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    with run_server([root], *OPEN) as srv:
        dist = upload_attested(srv, tmp_path / "dist")
        url = integrity(srv.url, "pypi-attestations", "0.0.19", dist.name)
        assert HTTP.get(url).status_code == 200
        result = creamery("status", "pypi-attestations", "quarantined", "--reason", "bad", root)
        assert result.returncode == 0, describe(result)
        for method in ("GET", "HEAD"):
            refused = HTTP.request(method, url)
            assert refused.status_code == 404, refused.text  # PEP 792: as the file itself
        message = HTTP.get(url).json()["message"]
        assert message == "project pypi-attestations is quarantined, its files are not served: bad"


def test_a_provenance_damaged_on_disk_is_not_served(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    with run_server([root], *OPEN) as srv:
        dist = upload_attested(srv, tmp_path / "dist")
        kept = root / ".creamery" / "files" / dist.name / "provenance"
        kept.write_bytes(kept.read_bytes()[:100])  # truncated
        url = integrity(srv.url, "pypi-attestations", "0.0.19", dist.name)
        for method in ("GET", "HEAD"):
            for address in (url, f"{srv.url}/packages/{dist.name}.provenance"):
                answer = HTTP.request(method, address)
                assert answer.status_code == 404, (method, address, answer.text)
        assert HTTP.get(url).json()["message"] == f"No provenance available for {dist.name}"
        assert f"the provenance kept for {dist.name} is damaged" in srv.log()
        assert HTTP.get(f"{srv.url}/project/pypi-attestations/").status_code == 200


def test_the_mirror_serves_no_provenance_of_a_quarantined_project(tmp_path: Path) -> None:
    """Quarantined upstream after its provenance was cached, or quarantined here (merged)."""
    upstream_dir = tmp_path / "upstream"
    upstream_dir.mkdir()
    wheel = Path(shutil.copy(FIXTURES / CIRCLECI_WHEEL, upstream_dir))
    provenance = (FIXTURES / (CIRCLECI_WHEEL + ".provenance")).read_bytes()
    (upstream_dir / (wheel.name + ".provenance")).write_bytes(provenance)
    project = "circleci-sign-publish-example"
    local = tmp_path / "local"
    local.mkdir()
    args = ("--mirror", "--mirror-ttl", "0", "--mirror-merge", project)
    with (
        run_upstream(upstream_dir) as fake,
        run_server([local], *args, "--fallback-url", fake.index_url) as mirror,
    ):
        url = integrity(mirror.url, project, "0.0.1.dev137", wheel.name)
        assert HTTP.get(url).content == provenance  # fetched and cached
        fake.control(statuses={project: {"status": "quarantined", "reason": "typosquat"}})
        assert listed(mirror, project) == {}  # the mirror has seen the quarantine
        refused = HTTP.get(url)
        assert refused.status_code == 404, refused.text
        assert "quarantined upstream" in refused.json()["message"]
        fake.control(statuses={})
        make_sdist(local, project, "0.0.1")  # hosted here too: merged with the upstream's
        result = creamery("status", project, "quarantined", "--reason", "ours", local)
        assert result.returncode == 0, describe(result)
        refused = HTTP.get(url)
        assert refused.status_code == 404, refused.text
        assert refused.json()["message"].endswith("its files are not served: ours")


# ----------------------------------------------------------------------------- units


def _provenance_publisher(filename: str) -> dict[str, object]:
    document = json.loads((FIXTURES / (filename + ".provenance")).read_text())
    publisher: dict[str, object] = document["attestation_bundles"][0]["publisher"]
    return publisher


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        (GITHUB_SDIST, _provenance_publisher(GITHUB_SDIST)),
        (GOOGLE_SDIST, _provenance_publisher(GOOGLE_SDIST)),
        (CIRCLECI_WHEEL, _provenance_publisher(CIRCLECI_WHEEL)),
        (
            GITLAB_SDIST,
            {
                "kind": "GitLab",
                "repository": "facutuesca/gitlab-oidc-project",
                "workflow_filepath": ".gitlab-ci.yml",
                "environment": None,
            },
        ),
        (STAGING_WHEEL, None),  # an e-mail identity: no Trusted Publisher
    ],
    ids=["github", "google", "circleci", "gitlab", "email"],
)
def test_the_publisher_is_read_from_the_certificate(
    filename: str, expected: dict[str, object] | None
) -> None:
    """As PyPI recorded it in the provenance it served (GitLab: its Trusted Publisher's
    fields), from the certificate alone."""
    from pypi_attestations import Attestation

    attestation = Attestation.model_validate(attestation_of(filename))
    publisher = attestations.publisher_of(attestation)
    found = None if publisher is None else publisher.model_dump(mode="json")
    if expected is not None:
        expected = {"environment": None, **expected} if expected["kind"] == "GitHub" else expected
    assert found == expected


@pytest.mark.parametrize("filename", [GITHUB_SDIST, GOOGLE_SDIST, CIRCLECI_WHEEL, GITLAB_SDIST])
def test_each_kind_of_publisher_verifies_offline(filename: str) -> None:
    import hashlib

    digest = hashlib.sha256((FIXTURES / filename).read_bytes()).hexdigest()
    text = json.dumps([attestation_of(filename)])
    document = json.loads(attestations.provenance_for(text, filename, digest, "verify") or b"")
    assert document["version"] == 1
    assert document["attestation_bundles"][0]["attestations"] == [attestation_of(filename)]
    described = attestations.publishers_in(json.dumps(document).encode())
    assert described and described[0].split()[0] in ("GitHub", "Google", "CircleCI", "GitLab")


def test_the_mirror_checks_the_provenance_shape() -> None:
    provenance = (FIXTURES / (CIRCLECI_WHEEL + ".provenance")).read_bytes()
    assert is_provenance(provenance)
    for bad in (b"", b"[]", b'{"version": 1}', b'{"version": 1, "attestation_bundles": []}'):
        assert not is_provenance(bad)
    assert not is_provenance(b'{"version":1,"attestation_bundles":[{"publisher":1}]}')


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (None, INTEGRITY_V1),
        ("*/*", INTEGRITY_V1),
        ("application/json", "application/json"),
        ("application/json, application/vnd.pypi.integrity.v1+json;q=0.5", "application/json"),
        ("text/html", None),
        ("application/vnd.pypi.integrity.v1+json;q=0", None),
    ],
)
def test_integrity_negotiation_is_pypis(accept: str | None, chosen: str | None) -> None:
    assert negotiate(accept) == chosen


def _scope(**headers: str) -> dict[str, object]:
    encoded = [(k.lower().replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return {"type": "http", "scheme": "http", "server": ("10.0.0.1", 80), "headers": encoded}


def test_a_forwarded_value_no_proxy_sends_is_ignored() -> None:
    """A 10 KB prefix or host would be repeated in every provenance URL of a page."""
    long = "a" * 10_000
    assert base_url(_scope(host="idx", x_forwarded_prefix="/" + long)) == "http://idx/"
    assert base_url(_scope(host="idx", x_forwarded_host=long)) == "http://idx/"
    assert base_url(_scope(host=long)) == "http://10.0.0.1:80/"
    assert base_url(_scope(host="idx", x_forwarded_host="idx/" + long)) == "http://idx/"
    assert base_url(_scope(host="idx", x_forwarded_prefix="/p")) == "http://idx/p/"


def test_rebased_pages_are_bounded_in_bytes() -> None:
    """Each base a client makes up is a page kept: their bytes stay within the budget."""
    page = make_page((BASE + "integrity/p/1/p-1.tar.gz/provenance\n").encode() * 1000, Format.HTML)
    assert page.based
    rebased = Rebased(max_entries=256, max_bytes=1 << 20)
    for number in range(300):
        served = rebased.page(_scope(host="idx", x_forwarded_prefix=f"/{number:0900d}"), page)
        assert served.body.startswith(f"http://idx/{number:0900d}/integrity/".encode())
        assert rebased.held <= 1 << 20
    assert rebased.held > (1 << 20) // 2  # the recent ones are kept
    last = _scope(host="idx", x_forwarded_prefix=f"/{299:0900d}")
    assert rebased.page(last, page) is rebased.page(last, page)
    huge = Rebased(max_bytes=1000)
    assert huge.page(_scope(host="idx"), page).body.startswith(b"http://idx/integrity/")
    assert huge.held == 0  # larger than the budget: served, not kept


def test_each_rendering_is_rebased_with_its_own_headers() -> None:
    """The PEP 691 HTML and the text/html pages have the same body and ETag: a browser must
    still get text/html after an installer asked for the other (old pip wants text/html)."""
    body = (BASE + "integrity/p/1/p-1.tar.gz/provenance").encode()
    rebased = Rebased()
    scope = _scope(host="idx")
    pep691 = rebased.page(scope, make_page(body, Format.HTML))
    text = rebased.page(scope, make_page(body, Format.TEXT_HTML))
    assert dict(pep691.headers)[b"content-type"] == Format.HTML.content_type.encode()
    assert dict(text.headers)[b"content-type"] == b"text/html; charset=utf-8"
