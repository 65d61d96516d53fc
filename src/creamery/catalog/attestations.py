"""PEP 740 attestations sent with an upload (twine's `attestations` form field): verified
against the uploaded file, and kept as the provenance object the Integrity API serves.

The policy (`--attestations`): `verify` (the default) checks every attestation's Sigstore
signature against the trust root (offline: the one shipped with, or cached by, sigstore), that
it names this very file (filename and sha256), and that its certificate's identity is a
Trusted Publisher (GitHub Actions, GitLab CI/CD, Google Cloud, CircleCI), read from the
certificate and then proven with that publisher's policy; one that fails refuses the upload.
`store` keeps them unverified (the publisher read from the certificate, not proven); `reject`
refuses uploads that carry any.

`pypi-attestations` (and sigstore under it) is the optional extra `creamery[attestations]`,
imported only when attestations arrive.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from creamery.core.errors import ClientError
from creamery.core.headers import printable_value
from creamery.core.untrusted import load_json

if TYPE_CHECKING:
    from pypi_attestations import Attestation, Publisher

log = logging.getLogger("creamery.attestations")

INSTALL_HINT = "pip install 'creamery[attestations]'"
# PyPI's limit: one attestation per predicate type it knows (PEP 740 publish/v1, SLSA v1).
MAX_ATTESTATIONS = 2
MAX_ATTESTATIONS_BYTES = 256 << 10  # a real one is ~10 KB: a certificate and an envelope
SUPPORTED_PREDICATES = (
    "https://docs.pypi.org/attestations/publish/v1",
    "https://slsa.dev/provenance/v1",
)

# Fulcio's certificate extensions (OIDs 1.3.6.1.4.1.57264.1.*), as the library decodes them.
ISSUER = "1.3.6.1.4.1.57264.1.8"
BUILD_SIGNER_URI = "1.3.6.1.4.1.57264.1.9"
SOURCE_REPOSITORY_URI = "1.3.6.1.4.1.57264.1.12"
SOURCE_REPOSITORY_DIGEST = "1.3.6.1.4.1.57264.1.13"
SOURCE_REPOSITORY_REF = "1.3.6.1.4.1.57264.1.14"
BUILD_CONFIG_URI = "1.3.6.1.4.1.57264.1.18"

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
GITLAB_ISSUER = "https://gitlab.com"
GOOGLE_ISSUER = "https://accounts.google.com"
CIRCLECI_ISSUER = "https://oidc.circleci.com"
_CIRCLECI_SIGNER = re.compile(
    r"https://circleci\.com/api/v2/projects/([^/]+)/pipeline-definitions/([^/]+)"
)


def library_available() -> bool:
    try:
        return importlib.util.find_spec("pypi_attestations") is not None
    except (ImportError, ValueError):  # an import hook that refuses it: not available
        return False


def warn_if_unverifiable(policy: str) -> None:
    """At start: under `verify` without the library, attestations can't be accepted."""
    if policy == "verify" and not library_available():
        log.warning(
            "--attestations verify: pypi-attestations is not installed, so uploads that carry"
            " attestations are refused (%s)",
            INSTALL_HINT,
        )


def provenance_for(text: str | None, filename: str, sha256: str, policy: str) -> bytes | None:
    """The PEP 740 provenance object (JSON) for the attestations *text* sent with *filename*
    (whose content has *sha256*), or None when none were sent; ClientError (400, why) when
    the upload must be refused. Verification is CPU work: call it in a worker thread."""
    if text is None or not text.strip():
        return None
    if policy == "reject":
        raise ClientError(
            400,
            "this index does not accept attestations (--attestations reject): upload without them",
        )
    items = _items(text)
    if not library_available():
        if policy == "verify":
            raise ClientError(
                400, f"attestations can't be verified here: the server needs {INSTALL_HINT}"
            )
        return _document([(None, items)])  # store, and nothing to read them with
    attestations = [_parsed(number, item) for number, item in enumerate(items, 1)]
    publishers = [_publisher_or_refusal(n, a) for n, a in enumerate(attestations, 1)]
    if policy == "verify":
        _verify_all(attestations, publishers, filename, sha256)
    return _provenance(attestations, publishers)


def _items(text: str) -> list[dict[str, Any]]:
    """The JSON list of attestation objects, within the limits."""
    try:
        value = load_json(text, "attestations", max_bytes=MAX_ATTESTATIONS_BYTES)
    except ClientError as error:
        raise ClientError(400, error.reason) from error
    if not isinstance(value, list):
        raise ClientError(400, "attestations must be a JSON list of attestation objects")
    if not value:
        raise ClientError(400, "attestations is an empty list: leave the field out instead")
    if len(value) > MAX_ATTESTATIONS:
        raise ClientError(
            400, f"at most {MAX_ATTESTATIONS} attestations per file (one per predicate type)"
        )
    for number, item in enumerate(value, 1):
        if not isinstance(item, dict):
            raise ClientError(400, f"attestation {number} is not a JSON object")
    return value


def _parsed(number: int, item: dict[str, Any]) -> Attestation:
    from pydantic import ValidationError
    from pypi_attestations import Attestation

    try:
        return Attestation.model_validate(item)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the object"
        what = (str(first["msg"]).splitlines() or ["invalid"])[0][:200]
        raise ClientError(400, f"attestation {number} is malformed: {where}: {what}") from error


def _publisher_or_refusal(number: int, attestation: Attestation) -> Publisher | None:
    try:
        return publisher_of(attestation)
    except Exception as error:  # not DER, or a claim that is no UTF8String: hostile input
        raise ClientError(
            400, f"attestation {number} is malformed: its certificate can't be read"
        ) from error


# ---------------------------------------------------------------- the publisher


def publisher_of(attestation: Attestation) -> Publisher | None:
    """The Trusted Publisher the attestation's certificate names (not yet proven: `verify`
    proves it with that publisher's policy), or None for another identity."""
    claims = attestation.certificate_claims
    issuer = claims.get(ISSUER)
    if issuer == GITHUB_ISSUER:
        return _github(claims)
    if issuer == GITLAB_ISSUER:
        return _gitlab(claims)
    if issuer == GOOGLE_ISSUER:
        return _google(attestation)
    if issuer == CIRCLECI_ISSUER:
        return _circleci(claims)
    return None


def _github(claims: dict[str, str]) -> Publisher | None:
    from pypi_attestations import GitHubPublisher

    repository_url = claims.get(SOURCE_REPOSITORY_URI, "")
    repository = _below(repository_url, "https://github.com/")
    workflow = _workflow(claims, f"{repository_url}/.github/workflows/")
    if not repository or not workflow:
        return None
    return GitHubPublisher(repository=repository, workflow=workflow)


def _gitlab(claims: dict[str, str]) -> Publisher | None:
    from pypi_attestations import GitLabPublisher

    repository_url = claims.get(SOURCE_REPOSITORY_URI, "")
    repository = _below(repository_url, "https://gitlab.com/")
    workflow = _workflow(claims, f"{repository_url}//")
    if not repository or not workflow:
        return None
    return GitLabPublisher(repository=repository, workflow_filepath=workflow)


def _google(attestation: Attestation) -> Publisher | None:
    from cryptography import x509
    from pypi_attestations import GooglePublisher

    certificate = x509.load_der_x509_certificate(attestation.verification_material.certificate)
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    emails = names.value.get_values_for_type(x509.RFC822Name)
    return GooglePublisher(email=emails[0]) if len(emails) == 1 else None


def _circleci(claims: dict[str, str]) -> Publisher | None:
    from pypi_attestations import CircleCIPublisher

    signer = _CIRCLECI_SIGNER.fullmatch(claims.get(BUILD_SIGNER_URI, ""))
    if signer is None:
        return None
    return CircleCIPublisher(
        project_id=signer[1],
        pipeline_definition_id=signer[2],
        vcs_origin=claims.get(SOURCE_REPOSITORY_URI) or None,
        vcs_ref=claims.get(SOURCE_REPOSITORY_REF) or None,
    )


def _below(url: str, prefix: str) -> str | None:
    rest = url.removeprefix(prefix) if url.startswith(prefix) else ""
    return rest.strip("/") or None


def _workflow(claims: dict[str, str], prefix: str) -> str | None:
    """The workflow file of a Build Config URI `<prefix><workflow>@<ref or commit>`: the
    part the publisher's policy rebuilds from its own fields and the certificate's ref."""
    config = claims.get(BUILD_CONFIG_URI, "")
    if not config.startswith(prefix):
        return None
    for suffix in (claims.get(SOURCE_REPOSITORY_DIGEST), claims.get(SOURCE_REPOSITORY_REF)):
        if suffix and config.endswith("@" + suffix):
            return config[len(prefix) : -len(suffix) - 1] or None
    return None


def describe_publisher(publisher: dict[str, Any] | None) -> str:
    """One line for people: "GitHub trailofbits/pypi-attestations, release.yml"."""
    if not isinstance(publisher, dict):
        return "unknown publisher"
    kind = str(publisher.get("kind", "unknown"))
    if kind in ("GitHub", "GitLab"):
        workflow = publisher.get("workflow") or publisher.get("workflow_filepath")
        return f"{kind} {publisher.get('repository')}, {workflow}"
    if kind == "Google":
        return f"Google {publisher.get('email')}"
    if kind == "CircleCI":
        origin = publisher.get("vcs_origin") or publisher.get("project_id")
        return f"CircleCI {origin}"
    return kind


# ---------------------------------------------------------------- verification


def _verify_all(
    attestations: Sequence[Attestation],
    publishers: Sequence[Publisher | None],
    filename: str,
    sha256: str,
) -> None:
    from pydantic import ValidationError
    from pypi_attestations import Distribution

    try:
        dist = Distribution(name=filename, digest=sha256)
    except ValidationError as error:
        raise ClientError(
            400, f"attestations are for wheels and sdists: {filename!r} is neither"
        ) from error
    seen: set[str] = set()
    for number, (attestation, publisher) in enumerate(
        zip(attestations, publishers, strict=True), 1
    ):
        predicate = _verified(number, attestation, publisher, dist)
        if predicate not in SUPPORTED_PREDICATES:
            raise ClientError(400, f"attestation {number} has an unsupported type {predicate}")
        if predicate in seen:
            raise ClientError(400, f"attestations {predicate}: more than one of this type")
        seen.add(predicate)


def _verified(number: int, attestation: Attestation, publisher: Publisher | None, dist: Any) -> str:
    """The predicate type of a verified attestation, or the refusal saying what failed."""
    _quiet_offline_notice()
    if publisher is None:
        # Not a Trusted Publisher: say first whether the signature holds at all.
        from sigstore.verify.policy import UnsafeNoOp

        _verify(number, attestation, UnsafeNoOp(), dist)
        identity = attestation.certificate_claims.get(ISSUER, "an unknown issuer")
        raise ClientError(
            400,
            f"attestation {number} is signed by an identity of {identity}, not a Trusted"
            " Publisher (GitHub Actions, GitLab CI/CD, Google Cloud, CircleCI)",
        )
    return _verify(number, attestation, publisher, dist)


def _verify(number: int, attestation: Attestation, identity: Any, dist: Any) -> str:
    from pypi_attestations import AttestationError

    try:
        predicate, _ = attestation.verify(identity, dist, offline=True)
    except AttestationError as error:  # VerificationError, ConversionError (the bundle's shape)
        raise ClientError(400, _failure(number, error, dist.name)) from error
    except Exception as error:  # whatever else the input makes sigstore raise: never a 500
        # The client's mistake (the refusal is logged as one): the traceback only to debug.
        log.debug("attestation %d of %s: %r", number, dist.name, error, exc_info=True)
        reason = _first_line(error)
        raise ClientError(400, f"attestation {number} could not be verified: {reason}") from error
    return predicate


def _first_line(error: Exception) -> str:
    """The error's first line, its controls escaped: sigstore's messages echo the input."""
    text = str(error).strip()
    return printable_value(text.splitlines()[0], 300) if text else type(error).__name__


def _failure(number: int, error: Exception, filename: str) -> str:
    message = _first_line(error)
    if "distribution digest" in message:
        return f"attestation {number} does not match the uploaded file's digest"
    if "distribution name" in message:
        return f"attestation {number} is for another file than {filename!r}"
    if "invalid transparency log entry" in message or "ConversionError" in type(error).__name__:
        return f"attestation {number} is malformed: {message}"
    if "certificate chain" in message or "trust" in message.lower():
        return (
            f"attestation {number} is not signed under Sigstore's trust root ({message}):"
            " was it made with Sigstore's staging instance?"
        )
    return f"attestation {number} does not verify: {message}"


def _quiet_offline_notice() -> None:
    # sigstore warns on every offline verification; offline is the documented choice here.
    logging.getLogger("sigstore._internal.tuf").setLevel(logging.ERROR)


# ---------------------------------------------------------------- the provenance object


def _provenance(
    attestations: Sequence[Attestation], publishers: Sequence[Publisher | None]
) -> bytes:
    """PEP 740's provenance object: one attestation bundle per publisher."""
    bundles: list[tuple[Publisher | None, list[Attestation]]] = []
    for attestation, publisher in zip(attestations, publishers, strict=True):
        for known, members in bundles:
            if known == publisher:
                members.append(attestation)
                break
        else:
            bundles.append((publisher, [attestation]))
    if all(publisher is not None for publisher, _ in bundles):
        from pypi_attestations import AttestationBundle, Provenance

        provenance = Provenance(
            attestation_bundles=[
                AttestationBundle(publisher=publisher, attestations=members)
                for publisher, members in bundles
                if publisher is not None
            ]
        )
        return json.dumps(provenance.model_dump(mode="json")).encode()
    # `store` of an identity that is no Trusted Publisher: the PEP's shape, publisher null.
    return _document(
        [
            (
                None if publisher is None else publisher.model_dump(mode="json"),
                [a.model_dump(mode="json") for a in members],
            )
            for publisher, members in bundles
        ]
    )


def _document(bundles: Sequence[tuple[dict[str, Any] | None, Sequence[Any]]]) -> bytes:
    document = {
        "version": 1,
        "attestation_bundles": [
            {"publisher": publisher, "attestations": list(members)}
            for publisher, members in bundles
        ],
    }
    return json.dumps(document).encode()


def is_provenance_document(data: bytes) -> bool:
    """Whether *data* (kept by `provenance_for`) still reads as a provenance object: JSON,
    version 1, a list of bundles (a file damaged on disk does not)."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        return False
    return (
        isinstance(document, dict)
        and document.get("version") == 1
        and isinstance(document.get("attestation_bundles"), list)
    )


def publishers_in(provenance: bytes) -> list[str]:
    """What people read of a stored provenance object: its publishers, one line each."""
    try:
        document = json.loads(provenance)
        bundles = document["attestation_bundles"]
        return [describe_publisher(bundle.get("publisher")) for bundle in bundles]
    except (ValueError, TypeError, KeyError, AttributeError):
        return []
