"""Real PEP 740 attestations (tests/fixtures/attestations/, made by pypi-attestations' own
tooling, see its README there) and the distributions they attest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "attestations"
# GitHub Actions: trailofbits/pypi-attestations, release.yml (Sigstore's production instance).
GITHUB_SDIST = "pypi_attestations-0.0.19.tar.gz"
GITHUB_PUBLISHER = {
    "kind": "GitHub",
    "repository": "trailofbits/pypi-attestations",
    "workflow": "release.yml",
    "environment": None,
}
STAGING_WHEEL = "rfc8785-0.1.2-py3-none-any.whl"  # signed by Sigstore's staging instance


def attestation_of(filename: str) -> dict[str, object]:
    """The one attestation checked in for *filename* (`.publish.attestation`, else the only
    one of its `.provenance`, else `.attestation`)."""
    for suffix in (".publish.attestation", ".attestation"):
        path = FIXTURES / (filename + suffix)
        if path.is_file():
            found: dict[str, object] = json.loads(path.read_text())
            return found
    provenance = json.loads((FIXTURES / (filename + ".provenance")).read_text())
    only: dict[str, object] = provenance["attestation_bundles"][0]["attestations"][0]
    return only


def attestations_field(filename: str) -> tuple[str, str]:
    """The upload form's `attestations` field, as twine sends it for *filename*."""
    return ("attestations", json.dumps([attestation_of(filename)]))


def copy_fixture(filename: str, directory: Path, *, with_attestation: bool = False) -> Path:
    """*filename* copied into *directory* (and its attestation beside it, named as twine
    looks for it: `<dist>.publish.attestation`)."""
    directory.mkdir(parents=True, exist_ok=True)
    target = Path(shutil.copy(FIXTURES / filename, directory / filename))
    if with_attestation:
        beside = directory / (filename + ".publish.attestation")
        beside.write_text(json.dumps(attestation_of(filename)))
    return target
