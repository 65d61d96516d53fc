"""The legacy upload API (`POST /` and `/legacy/`), as twine, uv, poetry, pdm and hatch use it.

Each validation rule has its own message; a rejected, aborted or truncated upload leaves no
trace, and an accepted file appears atomically and is in the index before the response.
"""

from __future__ import annotations

import hmac
import json
import logging
import unicodedata
import zipfile
from dataclasses import dataclass
from typing import TYPE_CHECKING

from creamery import publish, releases
from creamery.facts import Digests, parse_core_metadata, read_metadata_bytes
from creamery.form import FormError, ReceivedFile, ReceivedForm
from creamery.names import ParsedFilename, is_valid_project_name, normalize, parse_filename

if TYPE_CHECKING:
    from creamery.web import Creamery

log = logging.getLogger("creamery.upload")

UPLOADABLE_KINDS = ("wheel", "sdist", "egg", "bdist")
DIGEST_FIELDS = {"md5_digest": "md5", "sha256_digest": "sha256", "blake2_256_digest": "blake2_256"}


@dataclass(frozen=True)
class Outcome:
    status: int
    message: str
    changed: tuple[str, ...] = ()


def check_filename(filename: str) -> ParsedFilename:
    """A bare, safe distribution filename whose name and version follow the specs."""
    if not filename:
        raise FormError(400, "the uploaded file has no filename")
    if any(unicodedata.category(c) == "Cc" for c in filename):
        raise FormError(400, "the filename contains control characters")
    if "/" in filename or "\\" in filename or filename in (".", "..") or filename.startswith("."):
        raise FormError(400, f"invalid filename {filename!r}: it must be a bare file name")
    parsed = parse_filename(filename)
    if parsed is None or parsed.kind not in UPLOADABLE_KINDS:
        raise FormError(400, f"invalid distribution filename {filename!r}")
    if not is_valid_project_name(parsed.raw_name):
        raise FormError(400, f"invalid project name {parsed.raw_name!r} in {filename!r}")
    if releases.parse_version(parsed.version) is None:
        raise FormError(400, f"invalid version {parsed.version!r} in {filename!r} (see PEP 440)")
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
        if sent and not hmac.compare_digest(sent, content.hexdigest(algo)):
            raise FormError(400, f"{field_name} does not match the uploaded file's content")


def check_archive(content: ReceivedFile, parsed: ParsedFilename, filename: str) -> bytes | None:
    """Open the archive; a wheel's METADATA must name the same project and version."""
    is_zip = parsed.kind == "wheel" or filename.lower().endswith((".zip", ".egg"))
    if is_zip and not zipfile.is_zipfile(content.path):
        raise FormError(400, f"{filename!r} is not a valid zip archive")
    raw = read_metadata_bytes(content.path, parsed.kind)
    if parsed.kind != "wheel":
        return None
    metadata = parse_core_metadata(raw)
    if raw is None or metadata.name is None or metadata.version is None:
        raise FormError(400, f"{filename!r} has no .dist-info/METADATA with Name and Version")
    if normalize(metadata.name) != parsed.project:
        raise FormError(
            400, f"METADATA Name {metadata.name!r} does not match the filename {filename!r}"
        )
    if not releases.same_version(metadata.version, parsed.version):
        raise FormError(
            400, f"METADATA Version {metadata.version!r} does not match the filename {filename!r}"
        )
    return raw


def check_signature(form: ReceivedForm, filename: str) -> bytes | None:
    sent = form.small_files.get("gpg_signature")
    if sent is None:
        return None
    sig_name, data = sent
    if sig_name and sig_name.rpartition("/")[2] != filename + ".asc":
        raise FormError(400, f"unrelated signature {sig_name!r} for package {filename!r}")
    # pypiserver stores whatever was sent, an empty signature too: so does creamery.
    return data


def provenance(form: ReceivedForm) -> bytes | None:
    """PEP 740: the attestations twine sends, kept as a provenance object."""
    text = form.value("attestations")
    if not text or not text.strip():
        return None
    try:
        attestations = json.loads(text)
    except ValueError as error:
        raise FormError(400, "attestations is not valid JSON") from error
    if not isinstance(attestations, list):
        raise FormError(400, "attestations must be a JSON list")
    document = {
        "version": 1,
        "attestation_bundles": [{"publisher": None, "attestations": attestations}],
    }
    return json.dumps(document).encode()


def accept_file(creamery: Creamery, form: ReceivedForm, user_agent: str, user: str) -> Outcome:
    """Validate and publish an uploaded distribution (runs in a worker thread)."""
    content = form.files.get("content")
    if content is None:
        raise FormError(400, "missing 'content' file field")
    filename = content.filename
    parsed = check_filename(filename)
    try:
        publish.check_names_fit(filename, creamery.storage.upload_root, creamery.state.path)
    except publish.NameTooLong as error:
        raise FormError(400, str(error)) from error
    check_form_matches(form, parsed, filename)
    check_digests(form, content)
    signature = check_signature(form, filename)
    attested = provenance(form)
    metadata = check_archive(content, parsed, filename)
    overwrite = creamery.config.overwrite
    upload = publish.Upload(
        filename, content.path, signature, attested, metadata, _digests(creamery, content)
    )
    try:
        changed = publish.publish(creamery, upload, overwrite=overwrite)
    except publish.AlreadyExists as error:
        raise _already_exists(filename, user_agent) from error
    if overwrite:
        # The same filename elsewhere (another directory or root) is replaced too.
        others = [
            d
            for d in creamery.index.all_distributions()
            if d.filename == filename and d.relpath != filename
        ]
        changed += releases.remove_files(creamery.storage, creamery.state, others)
    log.warning("upload of %s (%d bytes) by %s", filename, content.size, user or "-")
    return Outcome(200, f"OK: {filename} uploaded", tuple(changed))


def _digests(creamery: Creamery, content: ReceivedFile) -> Digests | None:
    """The digests computed while the upload streamed in, when they cover what is served."""
    wanted = creamery.facts.algos
    if not all(a in content.hashers for a in ("sha256", *wanted)):
        return None
    return Digests(content.hexdigest("sha256"), {a: content.hexdigest(a) for a in wanted})


def _already_exists(filename: str, user_agent: str) -> FormError:
    # twine >= 6.2 only skips (--skip-existing) on PyPI's 400 "File already exists";
    # everyone else, uv included, understands 409.
    status = 400 if "twine" in user_agent.lower() else 409
    return FormError(status, f"File already exists: {filename!r} (use --overwrite to replace)")


def remove_release(creamery: Creamery, form: ReceivedForm, user: str) -> Outcome:
    name, version = form.value("name"), form.value("version")
    if not name or not version:
        raise FormError(400, f"missing 'name'/'version' fields: name={name}, version={version}")
    try:
        changed = releases.remove(creamery.storage, creamery.index, name, version)
    except releases.ReleaseNotFound as error:
        raise FormError(404, f"{name} ({version}) not found") from error
    log.warning("removal of %s %s by %s", normalize(name), version, user or "-")
    return Outcome(200, f"OK: {normalize(name)} {version} removed", tuple(changed))


def check_doc_upload(form: ReceivedForm) -> Outcome:
    """Documentation uploads are validated and then discarded: creamery hosts no docs."""
    content = form.files.get("content") or None
    if content is None or not zipfile.is_zipfile(content.path):
        raise FormError(400, "doc_upload needs a 'content' zip file")
    return Outcome(200, "OK: documentation accepted (creamery does not host documentation)")
