"""The legacy upload API (`POST /` and `/legacy/`), as twine, uv, poetry, pdm and hatch use it.

Each validation rule has its own message; a rejected, aborted or truncated upload leaves no
trace, and an accepted file is published through the catalog: it appears atomically, with the
facts learnt while validating it (digests, core metadata), and is in the index before the
response.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from dataclasses import dataclass

from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import InvalidVersion

from creamery.catalog import attestations, releases, upload_checks
from creamery.catalog.access import ANONYMOUS, Actor, Principal
from creamery.catalog.facts import parse_core_metadata
from creamery.catalog.publish import same_files
from creamery.catalog.service import (
    AlreadyExists,
    NameTooLong,
    ProjectClosed,
    ReleaseNotFound,
    Upload,
)
from creamery.core import archives
from creamery.core.errors import ClientError
from creamery.core.names import (
    SIGNATURE,
    ParsedFilename,
    has_unsafe_characters,
    is_valid_project_name,
    normalize,
    parse_filename,
    parse_spec_filename,
    parse_version,
)
from creamery.http.form import FormError, ReceivedFile, ReceivedForm
from creamery.web.state import AppState

log = logging.getLogger("creamery.upload")

_HEX = re.compile(r"[0-9a-f]+", re.ASCII)
STRICT_SDIST_SUFFIXES = (".tar.gz", ".zip")  # PEP 527
# PEP 425 tags: letters, digits and `_`, several joined by `.` (compressed tag sets).
_WHEEL_TAG = re.compile(r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*")
_BUILD_TAG = re.compile(r"[0-9][A-Za-z0-9_.]*")
_PYPISERVER_UPLOAD_NAME = re.compile(r"[a-z0-9_.!+-]+", re.IGNORECASE)  # its issue #102
DIGEST_FIELDS = {"md5_digest": "md5", "sha256_digest": "sha256", "blake2_256_digest": "blake2b_256"}


@dataclass(frozen=True)
class Outcome:
    status: int
    message: str
    changed: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()  # accepted, but PyPI would refuse it: said to the uploader


def check_filename(filename: str, policy: str = "strict") -> ParsedFilename:
    """A bare, safe distribution filename that the upload policy accepts."""
    if not filename:
        raise FormError(400, "the uploaded file has no filename")
    if has_unsafe_characters(filename):
        raise FormError(
            400, "the filename contains control characters or format characters (bidi overrides...)"
        )
    if "/" in filename or "\\" in filename or filename in (".", "..") or filename.startswith("."):
        raise FormError(400, f"invalid filename {filename!r}: it must be a bare file name")
    if policy == "pypiserver":
        return _check_pypiserver_filename(filename)
    return _check_strict_filename(filename)


def _check_strict_filename(filename: str) -> ParsedFilename:
    """PyPI's rules: wheels, and sdists as .tar.gz or .zip (PEP 527), with PEP 440 versions."""
    parsed = parse_spec_filename(filename)
    if parsed is None:
        raise FormError(400, f"invalid distribution filename {filename!r}")
    if parsed.kind == "egg":
        raise FormError(
            400,
            f"{filename!r}: eggs are not accepted (PyPI stopped taking them in 2023); upload a"
            " wheel, or start the server with --upload-policy pypiserver",
        )
    if parsed.kind != "wheel" and not (
        parsed.kind == "sdist" and filename.lower().endswith(STRICT_SDIST_SUFFIXES)
    ):
        raise FormError(
            400,
            f"{filename!r}: only wheels and .tar.gz or .zip sdists are accepted (PEP 527);"
            " or start the server with --upload-policy pypiserver",
        )
    if parsed.kind == "wheel":
        check_wheel_filename(filename)
    if not is_valid_project_name(parsed.raw_name):
        raise FormError(400, f"invalid project name {parsed.raw_name!r} in {filename!r}")
    if parse_version(parsed.version) is None:
        raise FormError(400, f"invalid version {parsed.version!r} in {filename!r} (see PEP 440)")
    return parsed


def check_wheel_filename(filename: str) -> None:
    """The wheel spec's filename: `packaging`'s parser, and tags of the characters tags use."""
    try:
        _name, _version, build, _tags = parse_wheel_filename(filename)
    except (InvalidWheelFilename, InvalidVersion) as error:
        raise FormError(400, f"invalid wheel filename {filename!r}: {error}") from error
    parts = filename[:-4].split("-")
    for tag in parts[-3:]:
        if not _WHEEL_TAG.fullmatch(tag):
            raise FormError(400, f"invalid wheel tag {tag!r} in {filename!r}")
    if build and not _BUILD_TAG.fullmatch(parts[2]):
        raise FormError(400, f"invalid build tag {parts[2]!r} in {filename!r}")


def _check_pypiserver_filename(filename: str) -> ParsedFilename:
    """What pypiserver 2.x accepts: its filename characters, and a name it can guess."""
    parsed = parse_filename(filename)
    if not _PYPISERVER_UPLOAD_NAME.fullmatch(filename) or parsed is None:
        raise FormError(400, f"Bad filename: {filename!r}")
    return parsed


def check_form_matches(form: ReceivedForm, parsed: ParsedFilename, filename: str) -> None:
    name = form.value("name")
    if name is not None and name.strip():
        if not is_valid_project_name(name.strip()):
            raise FormError(400, f"invalid project name {name!r}")
        if normalize(name) != parsed.project:
            raise FormError(400, f"the form's name {name!r} does not match the file {filename!r}")
    version = (form.value("version") or "").strip()
    if version and not releases.same_version(version, parsed.version):
        raise FormError(400, f"the form's version {version!r} does not match the file {filename!r}")


def check_digests(form: ReceivedForm, content: ReceivedFile) -> None:
    for field_name, algo in DIGEST_FIELDS.items():
        sent = (form.value(field_name) or "").strip().lower()
        if not sent:
            continue
        if not _HEX.fullmatch(sent):
            raise FormError(400, f"{field_name} is not a hexadecimal digest")
        if not hmac.compare_digest(sent.encode("ascii"), _actual(content, algo, sent).encode()):
            raise FormError(400, f"{field_name} does not match the uploaded file's content")


# distutils' upload command (`setup.py sdist upload`: Python <= 3.11 and setuptools' copy of
# distutils) sends hashlib.blake2b's default, a 512-bit digest, as `blake2_256_digest`;
# pypiserver ignores the digests, so those uploads worked there. Check it as what it is.
_BLAKE2B_512_HEX = 128


def _actual(content: ReceivedFile, algo: str, sent: str) -> str:
    if algo == "blake2b_256" and len(sent) == _BLAKE2B_512_HEX:
        with content.path.open("rb") as spooled:  # rare: read the spooled file once more
            return hashlib.file_digest(spooled, "blake2b").hexdigest()
    return content.hexdigest(algo)


def check_archive(
    content: ReceivedFile, parsed: ParsedFilename, filename: str, policy: str = "strict"
) -> archives.Inspection | None:
    """Open the archive within the limits; its core metadata must match the filename.

    Returns what was read (the core metadata, kept as a fact of the file), None when the
    archive could not be read. The archive limits hold under every policy; under `pypiserver`
    a file that is not a readable archive, or whose metadata disagrees, is accepted (as
    pypiserver does).
    """
    try:
        found = archives.inspect(content.path, filename, parsed.kind, complete=True)
    except archives.ArchiveLimitError as error:
        raise FormError(400, f"{filename!r} exceeds an archive limit: {error}") from error
    except archives.ArchiveError as error:
        if policy == "strict":
            raise FormError(400, f"{filename!r} is {error}") from error
        return None
    if parsed.kind in ("wheel", "sdist") and policy == "strict":
        problem = metadata_problem(found, parsed, filename)
        if problem is not None:
            raise FormError(400, problem)
    return found


def metadata_problem(
    found: archives.Inspection, parsed: ParsedFilename, filename: str
) -> str | None:
    """Why the archive's METADATA / PKG-INFO does not describe this file, or None."""
    member = ".dist-info/METADATA" if parsed.kind == "wheel" else "PKG-INFO"
    metadata = parse_core_metadata(found.metadata)
    if found.metadata is None or metadata.name is None or metadata.version is None:
        return f"{filename!r} has no {member} with Name and Version"
    if normalize(metadata.name) != parsed.project:
        return f"{member} Name {metadata.name!r} does not match the filename {filename!r}"
    if (invalid := upload_checks.version_problem(metadata.version, member)) is not None:
        return invalid
    if not releases.same_version(metadata.version, parsed.version):
        return f"{member} Version {metadata.version!r} does not match the filename {filename!r}"
    return None


def pypi_checks(
    form: ReceivedForm, parsed: ParsedFilename, filename: str, found: archives.Inspection | None
) -> tuple[str, ...]:
    """PyPI's checks that protect users (strict policy; `upload_checks`): raise the refusal,
    or return the warnings (an sdist name PyPI would refuse, a newer Metadata-Version)."""
    member = ".dist-info/METADATA" if parsed.kind == "wheel" else "PKG-INFO"
    problem = upload_checks.wheel_tags_problem(filename) if parsed.kind == "wheel" else None
    warnings: list[str] = []
    if problem is None and found is not None and found.metadata is not None:
        problem, warnings = upload_checks.metadata_checks(found.metadata, member)
    sent_type = (form.value("description_content_type") or "").strip()
    if problem is None and sent_type:
        problem = upload_checks.content_type_problem(sent_type, "description_content_type")
    if problem is not None:
        raise FormError(400, problem)
    if parsed.kind == "sdist":
        warning = upload_checks.sdist_name_warning(filename, parsed.project, parsed.version)
        warnings += [warning] if warning else []
    for warning in warnings:
        log.warning("upload of %s: warning: %s", filename, warning)
    return tuple(warnings)


def check_signature(form: ReceivedForm, filename: str) -> bytes | None:
    sent = sent_signature(form)
    if sent is None:
        return None
    sig_name, data = sent
    if sig_name and sig_name.rpartition("/")[2] != filename + SIGNATURE:
        raise FormError(400, f"unrelated signature {sig_name!r} for package {filename!r}")
    # pypiserver stores whatever was sent, an empty signature too: so does creamery.
    return data


def sent_signature(form: ReceivedForm) -> tuple[str, bytes] | None:
    """The `gpg_signature` sent, (name, data): a file part as twine sends it, or two text
    fields, the name then the ASCII-armoured signature, as `pdm publish` sends it (httpx
    encodes its (name, data) pair so); FormError (400) for any other shape."""
    sent = form.small_files.get("gpg_signature")
    values = form.fields.get("gpg_signature")
    if sent is not None or values is None:
        return sent
    if len(values) != 2:
        raise FormError(
            400, "gpg_signature: send a file, or two fields (its name, then its armoured text)"
        )
    sig_name, text = values
    if "\ufffd" in text:  # not UTF-8: a binary signature, which text fields can't carry
        raise FormError(400, "gpg_signature sent as a field must be ASCII-armoured (gpg --armor)")
    return sig_name, text.encode("utf-8")


def provenance(app: AppState, form: ReceivedForm, content: ReceivedFile) -> bytes | None:
    """PEP 740: the attestations twine sends, checked as `--attestations` says (verified by
    default) and kept as the provenance object; FormError (400, why) refuses the upload."""
    try:
        return attestations.provenance_for(
            form.value("attestations"),
            content.filename,
            content.hexdigest("sha256"),
            app.config.attestations,
        )
    except ClientError as error:
        raise FormError(error.status, error.reason) from error


def forbidden(app: AppState, principal: Principal, operation: str, project: str) -> FormError:
    """The refusal of *operation* on *project*: 401 (with a challenge) to an anonymous
    request, so clients send their credentials; 403 with the reason to a signed-in one."""
    if principal.anonymous:
        return FormError(401, "Authentication required")
    return FormError(403, app.catalog.access.why_not(principal, operation, project))


def check_allowed(
    app: AppState,
    principal: Principal,
    operation: str,
    project: str,
    actor: Actor | None = None,
    **target: str | None,
) -> None:
    """Raise the refusal (401 or 403) unless *principal* may do *operation* to *project*;
    a refusal to a signed-in principal is audited (result "denied")."""
    access = app.catalog.access
    if access.may(principal, operation, project):
        return
    if not principal.anonymous:
        who = actor or Actor(principal.user, principal.token_id)
        access.audit.try_write(who.entry(operation, result="denied", project=project, **target))
    raise forbidden(app, principal, operation, project)


def check_open(app: AppState, project: str) -> None:
    """PEP 792: an archived or quarantined project takes no new uploads (400, saying why),
    refused before the archive is read."""
    refusal = app.catalog.statuses.get(project).upload_refusal(project)
    if refusal is not None:
        raise FormError(400, refusal)


def accept_file(
    app: AppState,
    form: ReceivedForm,
    user_agent: str,
    principal: Principal = ANONYMOUS,
    actor: Actor | None = None,
) -> Outcome:
    """Validate and publish an uploaded distribution (runs in a worker thread)."""
    content = form.files.get("content")
    if content is None:
        raise FormError(400, "missing 'content' file field")
    filename = content.filename
    policy = app.config.upload_policy
    parsed = check_filename(filename, policy)
    # Before reading the archive: whoever may not upload here learns nothing more.
    check_allowed(app, principal, "upload", parsed.project, actor, filename=filename)
    check_open(app, parsed.project)
    overwrite = app.config.overwrite
    if overwrite and same_files(app.catalog.index, filename):
        check_allowed(app, principal, "overwrite", parsed.project, actor, filename=filename)
    try:
        app.catalog.check_name_fits(filename)
    except NameTooLong as error:
        raise FormError(400, str(error)) from error
    if policy == "strict":  # pypiserver ignores the form's name and version
        check_form_matches(form, parsed, filename)
    check_digests(form, content)
    signature = check_signature(form, filename)
    found = check_archive(content, parsed, filename, policy)
    warnings = pypi_checks(form, parsed, filename, found) if policy == "strict" else ()
    attested = provenance(app, form, content)  # the costliest check: the last one
    upload = Upload(
        filename,
        content.path,
        signature=signature,
        provenance=attested,
        digests=stored_digests(content),
        metadata=None if found is None else found.metadata,
        metadata_read=found is not None,
    )
    try:
        changed = app.catalog.publish(upload, overwrite=overwrite, actor=actor)
    except AlreadyExists as error:
        raise _already_exists(filename, user_agent) from error
    except ProjectClosed as error:  # archived while this upload was checked
        raise FormError(400, str(error)) from error
    log.warning("upload of %s (%d bytes) by %s", filename, content.size, principal)
    return Outcome(200, f"OK: {filename} uploaded", tuple(changed), warnings)


def stored_digests(content: ReceivedFile) -> dict[str, str]:
    """The digests computed while the upload streamed in, by the names the facts use."""
    return {name: content.hexdigest(name) for name in content.hashers}


def _already_exists(filename: str, user_agent: str) -> FormError:
    # twine >= 6.2 only skips (--skip-existing) on PyPI's 400 "File already exists";
    # everyone else, uv included, understands 409.
    status = 400 if "twine" in user_agent.lower() else 409
    return FormError(status, f"File already exists: {filename!r} (use --overwrite to replace)")


def remove_release(
    app: AppState,
    form: ReceivedForm,
    principal: Principal = ANONYMOUS,
    actor: Actor | None = None,
) -> Outcome:
    name, version = form.value("name"), form.value("version")
    if not name or not version:
        raise FormError(400, f"missing 'name'/'version' fields: name={name}, version={version}")
    check_allowed(app, principal, "remove", normalize(name), actor, version=version)
    try:
        changed = app.catalog.remove(name, version, actor=actor)
    except ReleaseNotFound as error:
        raise FormError(404, f"{name} ({version}) not found") from error
    log.warning("removal of %s %s by %s", normalize(name), version, principal)
    return Outcome(200, f"OK: {normalize(name)} {version} removed", tuple(changed))
