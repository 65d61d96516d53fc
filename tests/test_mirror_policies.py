"""The caching mirror's supply-chain policies (docs/mirror.md, "Policies"): the cooldown, allow
and deny lists, and origin rules. Units of `mirror/policy.py` (the list parser, the age logic),
then real `creamery run --mirror` processes over `support/upstream.py`, driven by pip and uv.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from support.clients import (
    clean_env,
    creamery,
    describe,
    pip_install,
    twine_upload,
    uv_install,
)
from support.dists import make_wheel
from support.polling import wait_for
from support.servers import Server, run_server
from support.upstream import UpstreamProcess, run_upstream

from creamery import app as creamery_app
from creamery.mirror.listing import Listing, UpstreamFile, parse_json
from creamery.mirror.policy import (
    MAX_HEADER,
    MinAge,
    OriginRules,
    Policies,
    format_duration,
    parse_origin,
    upload_seconds,
)
from creamery.mirror.policy_lists import (
    MAX_FILE_BYTES,
    MAX_GLOBS,
    PatternFile,
    PatternList,
    Patterns,
    PolicyError,
    parse_pattern,
)
from creamery.render.negotiation import Format
from creamery.web.app import Creamery

JSON = "application/vnd.pypi.simple.v1+json"
DAY = 86400.0
NOW = 1_800_000_000.0  # a fixed "now" for the units


# ---------------------------------------------------------------- units: the list files


def test_list_lines_names_globs_specifiers_comments() -> None:
    text = "\n".join(
        [
            "# a comment",
            "",
            "  Some_Project  ",
            "evil-*   # trailing comment",
            "partly.pkg>=2.0",
            "two-specs >=1.0, !=1.5",
            "ab?",
        ]
    )
    entries = PatternList.parse(text, "deny.txt")
    assert [(e.pattern, str(e.specifier or ""), e.line) for e in entries.entries] == [
        ("some-project", "", 3),
        ("evil-*", "", 4),
        ("partly-pkg", ">=2.0", 5),
        ("two-specs", "!=1.5,>=1.0", 6),
        ("ab?", "", 7),
    ]
    assert [e.where for e in entries.matching("evil-tool")] == ["deny.txt:4 evil-*"]
    assert entries.matching("evil") == ()  # `evil-*` needs the dash
    assert [e.text for e in entries.matching("partly-pkg")] == ["partly.pkg>=2.0"]
    assert entries.matching("abc")[0].pattern == "ab?"
    assert entries.matching("some-project")[0].specifier is None


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("partly-pkg >= two", "is not a PEP 440 version specifier"),
        ("pkg 1.0", "is not a PEP 440 version specifier"),
        ("pkg>=", "is not a PEP 440 version specifier"),
        ("../etc/passwd", "is not a project name"),
        ("-leading-dash", "is not a project name"),
        ("a\x00b", "holds a control or invisible character"),
        ("<script>", "is not a project name"),
        ("name[extra]>=1", "is not a PEP 440 version specifier"),
        ("x" * 600, "longer than 500 characters"),
        ("évil", "is not a project name"),
    ],
)
def test_a_bad_line_is_named_by_file_and_line(line: str, why: str) -> None:
    with pytest.raises(PolicyError) as raised:
        PatternList.parse(f"good\n# fine\n{line}\n", "deny.txt")
    message = str(raised.value)
    assert message.startswith("deny.txt:3: ")
    assert why in message
    assert "\n" not in message and len(message) < 300  # one short line, even for huge input


def test_list_lines_as_an_editor_shows_them() -> None:
    """A BOM and CRLF line ends are read as intended; a control character, which would reach
    the X-Creamery-Policy header, is refused with the line an editor shows it on."""
    entries = PatternList.parse("\ufeffevil\r\n# c\r\npartly\t>=2.0\r\n", "deny.txt")
    assert [(e.pattern, e.line) for e in entries.entries] == [("evil", 1), ("partly", 3)]
    for bad in ("pkg===a\x01b", "pkg\x0b>=1", "pkg\x85", "evil\u2028other", "pkg\x00"):
        with pytest.raises(PolicyError, match=r"^deny.txt:2: .*(control or invisible|not a)"):
            PatternList.parse(f"fine\n{bad}\nlast\n", "deny.txt")


def test_the_header_stays_short_with_many_rules(tmp_path: Path) -> None:
    """One rule a file for 500 files: the header names what fits and counts the rest."""
    policies = _policies(tmp_path, deny="".join(f"big==1.{i}\n" for i in range(500)))
    files = [_file(f"big-1.{i}-py3-none-any.whl", 30) for i in range(500)]
    decision = policies.decide(_listing("big", *files, _file("big-2.0.tar.gz", 30)), NOW)
    header = decision.header() or ""
    assert len(header) <= MAX_HEADER
    assert header.startswith(f"mirror-deny {tmp_path}/deny.txt:1 big==1.0 hid 1 file; ")
    assert re.search(r"; and \d+ more rules \(the project's page lists them\)$", header)
    assert len(decision.hidden) == 500


def test_huge_files_and_too_many_globs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="larger than"):
        PatternList.parse("a\n" * (MAX_FILE_BYTES // 2 + 1), "big.txt")
    with pytest.raises(PolicyError, match=f"big.txt:{MAX_GLOBS + 1}: more than {MAX_GLOBS} globs"):
        PatternList.parse("".join(f"g{i}-*\n" for i in range(MAX_GLOBS + 1)), "big.txt")
    names = PatternList.parse("".join(f"name-{i}\n" for i in range(50_000)), "names.txt")
    assert names.matching("name-49999")[0].line == 50_000  # exact names: any number, a dict
    big = tmp_path / "big.txt"
    big.write_bytes(b"a\n" * MAX_FILE_BYTES)
    with pytest.raises(PolicyError, match="larger than"):
        PatternFile(big)
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(PolicyError, match="not UTF-8"):
        PatternFile(binary)


def test_a_list_file_reloads_and_keeps_the_last_good_list(tmp_path: Path) -> None:
    path = tmp_path / "deny.txt"
    path.write_text("one\n")
    clock = [100.0]
    listed = PatternFile(path, clock=lambda: clock[0])

    def looked(seconds: float = 1) -> list[str]:
        clock[0] += seconds
        if listed.due():
            listed.refresh()
        return [e.pattern for e in listed.current().entries]

    assert looked(0) == ["one"]
    _rewrite(path, "two\n", 5)
    assert looked(0.5) == ["one"]  # looked at once a second
    assert looked() == ["one"]  # changed since the last look: maybe still being written
    assert looked() == ["two"]  # unchanged since: loaded
    assert listed.generation == 1
    _rewrite(path, "two\nbad line!\n", 10)
    assert looked() == looked() == looked() == ["two"]  # the previous list stays
    assert listed.generation == 1
    _rewrite(path, "three\n", -10)  # written a while ago (no request since): loaded at once
    assert looked() == ["three"]


def _rewrite(path: Path, text: str, later: float) -> None:
    path.write_text(text)
    os.utime(path, (time.time() + later, time.time() + later))


def test_a_list_file_caught_half_written_or_gone_keeps_the_list(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Truncated mid-write, deleted, a directory, unreadable, binary: the last good list
    stays in force, each problem is logged once, and the fixed file is loaded."""
    path = tmp_path / "deny.txt"
    path.write_text("evil-pkg\nother\n")
    clock = [100.0]
    listed = PatternFile(path, clock=lambda: clock[0])

    def looked() -> list[str]:
        clock[0] += 1
        listed.refresh()
        return [e.pattern for e in listed.current().entries]

    _rewrite(path, "", 1)  # `>` truncated it; the writer has not written yet
    assert looked() == ["evil-pkg", "other"]
    _rewrite(path, "evil-pk", 2)  # half of it written
    assert looked() == ["evil-pkg", "other"]
    _rewrite(path, "evil-pkg\nother\nthird\n", 3)  # done: loaded once it stays so
    assert looked() == ["evil-pkg", "other"]
    assert looked() == ["evil-pkg", "other", "third"]
    good = ["evil-pkg", "other", "third"]
    path.unlink()
    assert looked() == looked() == good
    path.mkdir()
    assert looked() == looked() == looked() == good
    path.rmdir()
    os.mkfifo(path)  # no writer: opening it would block
    assert looked() == looked() == looked() == good
    path.unlink()
    path.write_bytes(b"evil\x00\xff\xfe")
    assert looked() == looked() == looked() == good
    problems = 4  # gone, a directory, a FIFO, not UTF-8
    path.write_text("evil-*\n")
    os.chmod(path, 0)
    try:
        if not os.access(path, os.R_OK):  # (root reads it all the same)
            assert looked() == looked() == looked() == good
            problems += 1
    finally:
        os.chmod(path, 0o644)
    looked()  # changed since the last look
    assert looked() == ["evil-*"]
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == problems, errors  # each once
    assert all("the previous list stays in force" in e for e in errors)


def test_origin_rules_most_specific_wins_and_merge_is_shorthand() -> None:
    rules = OriginRules(
        [parse_origin("internal-*=local-only"), parse_origin("Internal_Public=upstream-only")],
        merged=["acme.utils", "internal-merged"],
    )
    assert rules.of("internal-tool") == ("local-only", "internal-*")
    assert rules.of("internal-public") == ("upstream-only", "internal-public")
    assert rules.of("internal-merged") == ("merged", "internal-merged")
    assert rules.of("acme-utils") == ("merged", "acme-utils")
    assert rules.of("requests") is None
    assert OriginRules([parse_origin("x=local-only")], merged=["x"]).of("x") == ("local-only", "x")
    for bad in ("x", "x=elsewhere", "=merged", "a/b=merged"):
        with pytest.raises(ValueError, match=r"expected PATTERN=MODE|not a project name"):
            parse_origin(bad)


# ---------------------------------------------------------------- units: the age logic


def test_a_file_no_listing_judges_follows_its_last_known_upload_time() -> None:
    """One cached file, unlisted: too new by its last known time, or unknown; no fallback."""
    age = Policies(MinAge(7 * DAY))
    old, new = (_file("u-1.0.tar.gz", days).upload_time for days in (30, 1))
    assert age.unlisted_age("u", "u-1.0.tar.gz", old, NOW) is None
    refused = age.unlisted_age("u", "u-1.0.tar.gz", new, NOW)
    assert refused is not None and refused.reason().startswith("mirror-min-age 7d: uploaded ")
    assert refused.filename == "u-1.0.tar.gz" and refused.version == "1.0"
    assert age.unlisted_age("u", "u-1.0.tar.gz", None, NOW) is None  # unknown: `offer`
    hide = Policies(MinAge(7 * DAY, Patterns(["exempt"]), unknown="hide"))
    unknown = hide.unlisted_age("u", "u-1.0.tar.gz", None, NOW)
    assert unknown is not None and unknown.reason() == "mirror-min-age 7d: upload time unknown"
    assert hide.unlisted_age("exempt", "exempt-1.0.tar.gz", None, NOW) is None
    assert Policies().unlisted_age("u", "u-1.0.tar.gz", new, NOW) is None


def _file(filename: str, age_days: float | None) -> UpstreamFile:
    uploaded = None
    if age_days is not None:
        moment = time.gmtime(NOW - age_days * DAY)
        uploaded = time.strftime("%Y-%m-%dT%H:%M:%S", moment) + ".123456Z"
    return UpstreamFile(filename, f"https://up/{filename}", {}, None, None, None, 10, uploaded)


def _listing(project: str, *files: UpstreamFile, versions: tuple[str, ...] = ()) -> Listing:
    return Listing(
        project, f"https://up/simple/{project}/", "https://up/simple/", files, versions=versions
    )


def _offered(policies: Policies, listing: Listing, now: float = NOW) -> list[str]:
    decision = policies.decide(listing, now)
    assert decision.listing is not None
    return [f.filename for f in decision.listing.files]


def test_upload_times_are_read_as_pep_700_gives_them() -> None:
    assert upload_seconds("2026-12-01T10:00:00Z") == upload_seconds("2026-12-01T10:00:00.000+00:00")
    assert upload_seconds("2026-12-01T10:00:00") is None  # no zone: not trusted
    assert upload_seconds("yesterday") is None
    assert upload_seconds(None) is None


HOSTILE_TIMES: list[object] = [
    12345,
    None,
    ["2020-01-01T00:00:00Z"],
    {"t": 1},
    True,
    "",
    "0000-01-01T00:00:00Z",
    "2020-01-01T00:00:00",  # no zone
    "2020-12-31T23:59:60Z",  # a leap second
    "9" * 100_000,
    "2020-01-01T00:00:00Z\r\nX-Evil: 1",
]


def test_hostile_upload_times_count_as_unknown(tmp_path: Path) -> None:
    """Whatever an upstream puts in `upload-time`: no exception, the file is one without an
    upload time (offered or hidden as told), and a far-future one is hidden until then."""
    files = [
        {"filename": f"p-1.{i}.tar.gz", "url": f"p-1.{i}.tar.gz", "upload-time": value}
        for i, value in enumerate(HOSTILE_TIMES)
    ]
    files.append({"filename": "p-9.0.tar.gz", "url": "x", "upload-time": "9999-12-31T23:59:59Z"})
    body = json.dumps({"meta": {"api-version": "1.1"}, "files": files}).encode()
    listing = parse_json(body, "p", "https://up/simple/p/", "https://up/simple/")
    offer = Policies(MinAge(7 * DAY)).decide(listing, NOW)
    assert offer.listing is not None and len(offer.listing.files) == len(HOSTILE_TIMES)
    far = offer.refusal("p-9.0.tar.gz")
    assert far is not None and "offered from 10000-01-07T23:59:59Z" in far.detail
    hide = Policies(MinAge(7 * DAY, unknown="hide", fallback="none")).decide(listing, NOW)
    assert hide.listing is not None and hide.listing.files == ()
    assert {h.detail for h in hide.hidden[:-1]} == {"upload time unknown"}
    assert re.fullmatch(r"[ -~]+", hide.header() or "")


def test_the_cooldown_hides_new_files_until_they_are_old_enough() -> None:
    policies = Policies(MinAge(7 * DAY))
    listing = _listing(
        "p",
        _file("p-1.0-py3-none-any.whl", 30),
        _file("p-2.0-py3-none-any.whl", 3),
        _file("p-2.0.tar.gz", 1),
        versions=("1.0", "2.0"),
    )
    decision = policies.decide(listing, NOW)
    assert decision.listing is not None
    assert [f.filename for f in decision.listing.files] == ["p-1.0-py3-none-any.whl"]
    assert decision.listing.versions == ("1.0",)  # PEP 700: no file of 2.0 is left
    assert decision.header() == "mirror-min-age 7d hid 2 files"
    assert decision.valid_until == pytest.approx(NOW + 4 * DAY, abs=1)  # the wheel's moment
    assert "offered from" in (decision.refusal("p-2.0-py3-none-any.whl") or _nothing()).detail
    later = policies.decide(listing, decision.valid_until + 1)
    assert later.listing is not None
    assert [f.filename for f in later.listing.files] == [
        "p-1.0-py3-none-any.whl",
        "p-2.0-py3-none-any.whl",
    ]
    assert later.listing.versions == ("1.0", "2.0")
    assert later.valid_until == pytest.approx(NOW + 6 * DAY, abs=1)  # then the sdist's
    assert policies.decide(listing, NOW + 7 * DAY).listing is listing  # nothing hidden


def test_the_cooldown_boundary_is_exact() -> None:
    """Offered from the very moment it is old enough, not a moment before; the decision made
    just before says when to decide again: that moment."""
    moment = NOW - 7 * DAY
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment))
    on_time = UpstreamFile("p-2.0.tar.gz", "u", {}, None, None, None, 1, stamp + ".000000Z")
    old = _file("p-1.0.tar.gz", 30)
    policies = Policies(MinAge(7 * DAY))
    assert _offered(policies, _listing("p", old, on_time)) == ["p-1.0.tar.gz", "p-2.0.tar.gz"]
    before = policies.decide(_listing("p", old, on_time), NOW - 0.000_01)
    assert before.refusal("p-2.0.tar.gz") is not None and before.valid_until == NOW


def _nothing() -> object:
    raise AssertionError("expected a refusal")


def test_exempt_projects_and_unknown_upload_times() -> None:
    new = _listing("p", _file("p-1.0-py3-none-any.whl", 30), _file("p-2.0-py3-none-any.whl", 1))
    exempt = Policies(MinAge(7 * DAY, Patterns(["p*"])))
    assert _offered(exempt, new) == ["p-1.0-py3-none-any.whl", "p-2.0-py3-none-any.whl"]
    html = _listing("h", _file("h-1.0.tar.gz", None), _file("h-2.0.tar.gz", None))
    assert _offered(Policies(MinAge(7 * DAY)), html) == ["h-1.0.tar.gz", "h-2.0.tar.gz"]
    hide = Policies(MinAge(7 * DAY, unknown="hide", fallback="none"))
    decision = hide.decide(html, NOW)
    assert decision.listing is not None and decision.listing.files == ()
    assert decision.valid_until == math.inf  # time will not tell
    assert decision.refusal("h-1.0.tar.gz") is not None
    refused = decision.refusal("h-2.0.tar.gz")
    assert refused is not None and refused.detail == "upload time unknown"


def test_never_hide_everything_unless_told_so() -> None:
    listing = _listing(
        "p",
        _file("p-1.0-py3-none-any.whl", 2),
        _file("p-1.0.tar.gz", 1.5),
        _file("p-0.9rc1-py3-none-any.whl", 3),
        _file("p-1.1-py3-none-any.whl", 1),
    )
    oldest = Policies(MinAge(7 * DAY)).decide(listing, NOW)
    assert oldest.fallback == "0.9rc1"  # the lowest version: the first to come out
    assert oldest.listing is not None
    assert [f.filename for f in oldest.listing.files] == ["p-0.9rc1-py3-none-any.whl"]
    assert "mirror-min-age-fallback offered 0.9rc1" in (oldest.header() or "")
    nothing = Policies(MinAge(7 * DAY, fallback="none")).decide(listing, NOW)
    assert nothing.listing is not None and nothing.listing.files == ()
    assert nothing.fallback is None


def test_the_fallback_offers_a_release_installers_can_take() -> None:
    """Not one they skip: a version PEP 440 can't read, or a release whose files are all
    yanked (unless nothing else is left)."""
    listing = _listing(
        "p",
        _file("p-0.1-foo.tar.gz", 1),  # no PEP 440 version: pip and uv skip it
        dataclasses.replace(_file("p-0.5.tar.gz", 1), yanked="broken"),
        _file("p-1.0-py3-none-any.whl", 1),
        _file("p-2.0-py3-none-any.whl", 1),
    )
    assert Policies(MinAge(7 * DAY)).decide(listing, NOW).fallback == "1.0"
    yanked_only = _listing("p", dataclasses.replace(_file("p-0.5.tar.gz", 1), yanked=""))
    assert Policies(MinAge(7 * DAY)).decide(yanked_only, NOW).fallback == "0.5"


def test_the_fallback_never_offers_what_a_list_denies(tmp_path: Path) -> None:
    deny = tmp_path / "deny.txt"
    deny.write_text("p<1.5\n")
    policies = Policies(MinAge(7 * DAY), deny=PatternFile(deny))
    listing = _listing("p", _file("p-1.0.tar.gz", 1), _file("p-2.0.tar.gz", 1))
    decision = policies.decide(listing, NOW)
    assert decision.fallback == "2.0"  # the oldest one the list leaves
    assert _offered(policies, listing) == ["p-2.0.tar.gz"]
    assert (decision.refusal("p-1.0.tar.gz") or _nothing()).kind == "mirror-deny"
    only_denied = _listing("p", _file("p-1.0.tar.gz", 1))
    assert policies.decide(only_denied, NOW).fallback is None
    assert _offered(policies, only_denied) == []


def test_ages_are_named_as_an_operator_writes_them() -> None:
    assert [format_duration(s) for s in (7 * DAY, 12 * 3600, 1800, 45, 90, 1.5)] == [
        "7d",
        "12h",
        "30m",
        "45s",
        "90s",
        "1.5s",
    ]
    assert parse_pattern(" Acme_Utils ") == "acme-utils" and parse_pattern("Evil.*") == "evil-*"
    for bad in ("", "a b", "a/b", "*/x", "é"):
        with pytest.raises(ValueError, match="is not a project name or glob"):
            parse_pattern(bad)


# ---------------------------------------------------------------- units: allow and deny


def _policies(tmp_path: Path, allow: str | None = None, deny: str | None = None) -> Policies:
    def listed(name: str, text: str | None) -> PatternFile | None:
        if text is None:
            return None
        path = tmp_path / name
        path.write_text(text)
        return PatternFile(path)

    return Policies(allow=listed("allow.txt", allow), deny=listed("deny.txt", deny))


def test_deny_blocks_projects_and_hides_versions(tmp_path: Path) -> None:
    policies = _policies(tmp_path, deny="evil-*\npartly-pkg>=2.0\n")
    assert policies.blocked("evil-thing") == f"mirror-deny {tmp_path}/deny.txt:1 evil-*"
    assert policies.blocked("partly-pkg") is None
    listing = _listing(
        "partly-pkg",
        _file("partly_pkg-1.0-py3-none-any.whl", 30),
        _file("partly_pkg-2.0-py3-none-any.whl", 30),
        _file("partly_pkg-2.1rc1-py3-none-any.whl", 30),
        _file("partly_pkg-not.a.version.tar.gz", 30),
        versions=("1.0", "2.0", "2.1rc1", "3.0"),
    )
    decision = policies.decide(listing, NOW)
    assert decision.listing is not None
    assert [f.filename for f in decision.listing.files] == [
        "partly_pkg-1.0-py3-none-any.whl",  # not.a.version: a deny can't compare it, so hides it
    ]
    assert decision.listing.versions == ("1.0",)  # 3.0 has no file but is denied all the same
    assert decision.header() == f"mirror-deny {tmp_path}/deny.txt:2 partly-pkg>=2.0 hid 3 files"
    assert decision.kinds() == ["mirror-deny"]
    evil = policies.decide(_listing("evil-thing", _file("evil_thing-1.0.tar.gz", 30)), NOW)
    assert evil.listing is None and evil.kinds() == ["mirror-deny"]


SPELLINGS = [
    "tspell-0.9-py3-none-any.whl",  # the one file both lists offer
    "tspell-2.0_1-py3-none-any.whl",  # pip reads 2.0-1: 2.0.post1
    "tspell-2-0.tar.gz",  # pip and uv read 2-0 (2.post0); a name `tspell-2` reads 0
    "tspell_2-0.tar.gz",  # uv reads 2-0 (its name is as long as the project's, then one more)
    "tspell.2.0.tar.gz",  # uv reads 2.0; we read no version at all
    "tspell-v2.0.tar.gz",  # 2.0
    "tspell-1.0-foo.tar.gz",  # no PEP 440 version: old pips take it as a legacy one
    "TSpell-1.0.zip",
    "tspell-2.0.linux-x86_64.tar.gz",  # pip reads 2.0.linux-x86-64
]


def test_a_version_rule_is_not_bypassed_by_how_the_version_is_spelled(tmp_path: Path) -> None:
    """Fail closed: a file is judged by every version an installer may read in its name, and
    a deny specifier names a version it can't read; an allow specifier does not."""
    listing = _listing("tspell", *(_file(name, 30) for name in SPELLINGS))
    for policies in (
        _policies(tmp_path, deny="tspell>=1.0\n"),
        _policies(tmp_path, allow="tspell<1.0\n"),
        _policies(tmp_path, deny="T?pell >=1.0\n"),  # a glob, spelled oddly too
    ):
        decision = policies.decide(listing, NOW)
        assert decision.listing is not None
        assert [f.filename for f in decision.listing.files] == ["tspell-0.9-py3-none-any.whl"]
        for name in SPELLINGS[1:]:
            assert decision.refusal(name) is not None, name
            assert policies.file_rule("tspell", name) is not None, name  # not listed (yet)
    whole = _policies(tmp_path, allow="tspell\n", deny="other>=1\n").decide(listing, NOW)
    assert whole.listing is listing  # a whole-project entry names every spelling


def test_allow_list_offers_only_what_it_names(tmp_path: Path) -> None:
    policies = _policies(tmp_path, allow="good-*\npinned<2\n", deny="good-but-bad\n")
    assert policies.blocked("other") == f"mirror-allow {tmp_path}/allow.txt: other is not listed"
    assert policies.blocked("good-one") is None
    assert policies.blocked("good-but-bad") is not None  # deny wins over allow
    listing = _listing("pinned", _file("pinned-1.5.tar.gz", 30), _file("pinned-2.0.tar.gz", 30))
    assert _offered(policies, listing) == ["pinned-1.5.tar.gz"]
    hidden = policies.decide(listing, NOW).refusal("pinned-2.0.tar.gz")
    assert (
        hidden is not None
        and hidden.reason() == f"mirror-allow {tmp_path}/allow.txt: only pinned<2"
    )
    many = _policies(tmp_path, allow="".join(f"pinned==1.{i}\n" for i in range(9)))
    hidden = many.decide(listing, NOW).refusal("pinned-2.0.tar.gz")
    assert hidden is not None and hidden.detail == (
        "only pinned==1.0, pinned==1.1, pinned==1.2 and 6 more entries"
    )


def test_a_big_listing_against_big_lists_is_decided_quickly(tmp_path: Path) -> None:
    """Entries are found once per listing, not once per file (10,000 files x 10,000 globs)."""
    globs = "".join(f"g{i}-*\n" for i in range(MAX_GLOBS - 1))
    policies = _policies(tmp_path, allow="big\n", deny=globs + "big>=5\n")
    files = [_file(f"big-{v}.{k}-py3-none-any.whl", 30) for v in range(1000) for k in range(10)]
    started = time.perf_counter()
    decision = policies.decide(_listing("big", *files), NOW)
    assert time.perf_counter() - started < 3.0
    assert decision.listing is not None and len(decision.listing.files) == 50  # 0.x to 4.x
    assert decision.header() == f"mirror-deny {tmp_path}/deny.txt:{MAX_GLOBS} big>=5 hid 9950 files"


# ---------------------------------------------------------------- real servers


def _age(path: Path, days: float) -> Path:
    moment = time.time() - days * DAY
    os.utime(path, (moment, moment))
    return path


def _wheel(directory: Path, name: str, version: str, days: float) -> Path:
    return _age(make_wheel(directory, name, version), days)


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpstreamProcess]:
    directory = tmp_path_factory.mktemp("policy-upstream")
    for name, version, days in [
        ("tcool", "1.0", 30),
        ("tcool", "2.0", 1),  # too new for 7d
        ("texempt", "1.0", 30),
        ("texempt", "2.0", 1),
        ("tfresh", "1.0", 2),  # everything too new: the oldest release is offered
        ("tfresh", "2.0", 1),
        ("evil-thing", "1.0", 30),
        ("tpartly", "1.0", 30),
        ("tpartly", "2.0", 30),
        ("tpartly", "3.0", 30),
        ("internal-only", "6.6.6", 30),  # someone took an internal name upstream
        ("tshared", "2.0", 30),
        ("tmerged", "2.0", 30),
        ("tplain", "1.0", 30),
        ("tspell", "0.9", 30),
        ("tspell", "2.0.post1", 30),  # listed as tspell-2.0_1-...: pip reads 2.0-1
    ]:
        _wheel(directory, name, version, days)
    spelled = directory / "tspell-2.0.post1-py3-none-any.whl"
    spelled.rename(directory / "tspell-2.0_1-py3-none-any.whl")
    with run_upstream(directory) as upstream:
        yield upstream


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("policy-local")
    make_wheel(directory, "tshared", "1.0")
    make_wheel(directory, "tmerged", "1.0")
    return directory


@pytest.fixture(scope="module")
def deny_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("policy-lists") / "deny.txt"
    path.write_text("# blocked outright\nevil-*\n\ntpartly>=2.0  # only these\ntspell>=1.0\n")
    return path


@pytest.fixture(scope="module")
def mirror(
    fake: UpstreamProcess, local: Path, deny_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    cache = tmp_path_factory.mktemp("policy-cache")
    args = ["--mirror", "--fallback-url", fake.index_url, "--mirror-cache", str(cache)]
    args += ["--metrics", "--mirror-min-age", "7d", "--mirror-min-age-exempt", "texempt"]
    args += ["--mirror-deny", str(deny_file), "--mirror-origin", "internal-*=local-only"]
    args += ["--mirror-origin", "tshared=upstream-only", "--mirror-merge", "tmerged"]
    with run_server([local], *args) as server:
        yield server


def _files(server: Server, project: str) -> list[str]:
    response = httpx.get(f"{server.url}/simple/{project}/", headers={"accept": JSON})
    assert response.status_code == 200, response.text
    return [item["filename"] for item in response.json()["files"]]


def _installed(target: Path) -> set[str]:
    return {p.name for p in target.glob("*.dist-info")}


def test_cooldown_page_hides_new_files_and_says_so(mirror: Server) -> None:
    response = httpx.get(f"{mirror.url}/simple/tcool/", headers={"accept": JSON})
    assert [f["filename"] for f in response.json()["files"]] == ["tcool-1.0-py3-none-any.whl"]
    assert response.json()["versions"] == ["1.0"]
    assert response.headers["x-creamery-policy"] == "mirror-min-age 7d hid 1 file"
    html = httpx.get(f"{mirror.url}/simple/tcool/")
    assert "tcool-2.0" not in html.text and "tcool-1.0-py3-none-any.whl" in html.text
    assert html.headers["x-creamery-policy"] == "mirror-min-age 7d hid 1 file"
    again = httpx.get(
        f"{mirror.url}/simple/tcool/", headers={"if-none-match": html.headers["etag"]}
    )
    assert again.status_code == 304 and again.headers["x-creamery-policy"]
    refused = httpx.get(f"{mirror.url}/upstream/tcool/tcool-2.0-py3-none-any.whl")
    assert refused.status_code == 404
    assert refused.headers["x-creamery-policy"].startswith("mirror-min-age 7d: uploaded ")
    assert "is not offered here: mirror-min-age 7d" in refused.text
    metadata = httpx.get(f"{mirror.url}/upstream/tcool/tcool-2.0-py3-none-any.whl.metadata")
    assert metadata.status_code == 404
    head = httpx.head(f"{mirror.url}/upstream/tcool/tcool-2.0-py3-none-any.whl")
    assert head.status_code == 404 and head.headers["x-creamery-policy"]
    for odd in ("TCool/tcool-2.0-py3-none-any.whl", "tcool/./tcool-2.0-py3-none-any.whl"):
        assert httpx.get(f"{mirror.url}/upstream/{odd}").status_code == 404
    assert httpx.get(f"{mirror.url}/upstream/tcool/tcool-1.0-py3-none-any.whl").status_code == 200


def test_pip_and_uv_get_the_older_release(mirror: Server, tmp_path: Path) -> None:
    pip = pip_install(f"{mirror.url}/simple/", tmp_path / "pip", tmp_path / "home", "tcool")
    assert pip.returncode == 0, describe(pip)
    assert _installed(tmp_path / "pip") == {"tcool-1.0.dist-info"}
    uv = uv_install(mirror.url, tmp_path / "uv", tmp_path / "home", "tcool")
    assert uv.returncode == 0, describe(uv)
    assert _installed(tmp_path / "uv") == {"tcool-1.0.dist-info"}
    pinned = pip_install(f"{mirror.url}/simple/", tmp_path / "p2", tmp_path / "home", "tcool==2.0")
    assert pinned.returncode != 0  # not offered at all, even asked for by name
    uv_pinned = uv_install(mirror.url, tmp_path / "uv2", tmp_path / "home", "tcool==2.0")
    assert uv_pinned.returncode != 0 and not _installed(tmp_path / "uv2")


def test_an_exempt_project_installs_its_new_release(mirror: Server, tmp_path: Path) -> None:
    assert _files(mirror, "texempt")[-1] == "texempt-2.0-py3-none-any.whl"
    uv = uv_install(mirror.url, tmp_path / "uv", tmp_path / "home", "texempt")
    assert uv.returncode == 0, describe(uv)
    assert _installed(tmp_path / "uv") == {"texempt-2.0.dist-info"}


def test_only_new_releases_fall_back_to_the_oldest_with_one_log_line(mirror: Server) -> None:
    for _ in range(3):
        response = httpx.get(f"{mirror.url}/simple/tfresh/", headers={"accept": JSON})
        assert [f["filename"] for f in response.json()["files"]] == ["tfresh-1.0-py3-none-any.whl"]
    assert "mirror-min-age-fallback offered 1.0" in response.headers["x-creamery-policy"]
    assert wait_for(lambda: "every file of tfresh is newer than 7d" in mirror.log())
    assert mirror.log().count("every file of tfresh") == 1


def test_a_denied_project_is_not_installable(mirror: Server, tmp_path: Path) -> None:
    response = httpx.get(f"{mirror.url}/simple/evil-thing/")
    assert response.status_code == 404
    for spelled in ("Evil_Thing", "EVIL.thing", "evil--thing"):
        again = httpx.get(f"{mirror.url}/simple/{spelled}/", follow_redirects=True)
        assert again.status_code == 404 and again.url.path == "/simple/evil-thing/"
    assert re.fullmatch(
        r"mirror-deny \S+deny\.txt:2 evil-\*", response.headers["x-creamery-policy"]
    )
    assert "evil-thing is not mirrored here: mirror-deny" in response.text
    file = httpx.get(f"{mirror.url}/upstream/evil-thing/evil_thing-1.0-py3-none-any.whl")
    assert file.status_code == 404 and file.headers["x-creamery-policy"].startswith("mirror-deny")
    pip = pip_install(f"{mirror.url}/simple/", tmp_path / "pip", tmp_path / "home", "evil-thing")
    assert pip.returncode != 0
    uv = uv_install(mirror.url, tmp_path / "uv", tmp_path / "home", "evil-thing")
    assert uv.returncode != 0
    assert not _installed(tmp_path / "pip") and not _installed(tmp_path / "uv")


def test_a_specifier_denied_version_is_skipped(mirror: Server, tmp_path: Path) -> None:
    assert _files(mirror, "tpartly") == ["tpartly-1.0-py3-none-any.whl"]
    pip = pip_install(f"{mirror.url}/simple/", tmp_path / "pip", tmp_path / "home", "tpartly")
    assert pip.returncode == 0, describe(pip)
    assert _installed(tmp_path / "pip") == {"tpartly-1.0.dist-info"}
    file = httpx.get(f"{mirror.url}/upstream/tpartly/tpartly-3.0-py3-none-any.whl")
    assert file.status_code == 404
    assert file.headers["x-creamery-policy"].endswith("deny.txt:4 tpartly>=2.0")


def test_a_denied_version_spelled_oddly_is_not_installed(mirror: Server, tmp_path: Path) -> None:
    """pip reads `tspell-2.0_1-py3-none-any.whl` as 2.0.post1, which `tspell>=1.0` denies."""
    assert _files(mirror, "tspell") == ["tspell-0.9-py3-none-any.whl"]
    pip = pip_install(f"{mirror.url}/simple/", tmp_path / "pip", tmp_path / "home", "tspell")
    assert pip.returncode == 0, describe(pip)
    assert _installed(tmp_path / "pip") == {"tspell-0.9.dist-info"}
    file = httpx.get(f"{mirror.url}/upstream/tspell/tspell-2.0_1-py3-none-any.whl")
    assert file.status_code == 404
    assert file.headers["x-creamery-policy"].endswith("deny.txt:5 tspell>=1.0")


def test_origin_rules_local_only_upstream_only_merged(mirror: Server, tmp_path: Path) -> None:
    internal = httpx.get(f"{mirror.url}/simple/internal-only/")
    assert internal.status_code == 404
    assert internal.headers["x-creamery-policy"] == "mirror-origin internal-*=local-only"
    assert "internal-only is local-only" in internal.text
    file = httpx.get(f"{mirror.url}/upstream/internal-only/internal_only-6.6.6-py3-none-any.whl")
    assert file.status_code == 404 and "local-only" in file.headers["x-creamery-policy"]
    assert httpx.get(f"{mirror.url}/project/internal-only/").status_code == 404
    assert _files(mirror, "tshared") == ["tshared-2.0-py3-none-any.whl"]  # the upstream's page
    assert _files(mirror, "tmerged") == [
        "tmerged-1.0-py3-none-any.whl",
        "tmerged-2.0-py3-none-any.whl",
    ]
    assert _files(mirror, "tplain") == ["tplain-1.0-py3-none-any.whl"]  # no rule: as before
    uv = uv_install(mirror.url, tmp_path / "uv", tmp_path / "home", "tshared")
    assert uv.returncode == 0, describe(uv)
    assert _installed(tmp_path / "uv") == {"tshared-2.0.dist-info"}


def test_the_ui_page_shows_what_was_hidden_and_why(mirror: Server) -> None:
    page = httpx.get(f"{mirror.url}/project/tcool/")
    assert page.status_code == 200
    section = page.text[page.text.index('id="policy-hidden"') :]
    section = section[: section.index("</section>")]
    assert "tcool-2.0-py3-none-any.whl" in section
    assert "mirror-min-age 7d" in section and "offered from" in section
    files = page.text[page.text.index("</section>") :]
    assert "upstream/tcool/tcool-2.0" not in files  # no download link for it
    partly = httpx.get(f"{mirror.url}/project/tpartly/").text
    assert "tpartly-3.0-py3-none-any.whl" in partly and "tpartly&gt;=2.0" in partly
    assert 'id="policy-hidden"' not in httpx.get(f"{mirror.url}/project/tplain/").text
    assert httpx.get(f"{mirror.url}/project/evil-thing/").status_code == 404


def test_an_upstream_only_name_shows_the_upstreams_project_everywhere(mirror: Server) -> None:
    """tshared 1.0 is hosted here, 2.0 upstream; upstream-only: every read surface agrees
    with the simple page, which offers the upstream's 2.0 alone."""
    page = httpx.get(f"{mirror.url}/project/tshared/")
    assert page.status_code == 200
    assert "upstream/tshared/tshared-2.0-py3-none-any.whl" in page.text
    assert "tshared-1.0" not in page.text and "Manage project" not in page.text
    assert httpx.get(f"{mirror.url}/project/tshared/1.0/").status_code == 404
    for path in ("/pypi/tshared/json", "/pypi/tshared/1.0/json", "/tshared/json"):
        document = httpx.get(mirror.url + path)  # as for any name not hosted here
        assert document.status_code == 404 and document.json() == {"message": "Not Found"}
    local = "/integrity/tshared/1.0/tshared-1.0-py3-none-any.whl/provenance"
    assert httpx.get(mirror.url + local).status_code == 404
    assert httpx.get(f"{mirror.url}/pypi/tmerged/json").json()["info"]["version"] == "1.0"
    assert "tmerged-1.0" in httpx.get(f"{mirror.url}/project/tmerged/1.0/").text


def test_a_blocked_name_ui_page_names_the_rule(mirror: Server) -> None:
    simple = httpx.get(f"{mirror.url}/simple/evil-thing/")
    page = httpx.get(f"{mirror.url}/project/evil-thing/")
    assert page.status_code == 404 == simple.status_code
    rule = simple.headers["x-creamery-policy"]
    assert rule.startswith("mirror-deny ") and rule.endswith("deny.txt:2 evil-*")
    assert page.headers["x-creamery-policy"] == rule
    assert "is not mirrored here" in page.text and html.escape(rule) in page.text
    assert httpx.get(f"{mirror.url}/project/evil-thing/1.0/").headers["x-creamery-policy"] == rule
    unknown = httpx.get(f"{mirror.url}/project/no-such-thing-here/")
    assert unknown.status_code == 404 and "x-creamery-policy" not in unknown.headers


def test_a_hosted_project_gone_after_handles_is_never_redirected(tmp_path: Path) -> None:
    """The race: `handles()` said hosted, then the project's last file went. The hook that
    answers then serves through the mirror (its rules apply) or 404s, never the fallback
    redirect, which would send the client past the policies."""
    (tmp_path / "root").mkdir()
    app = creamery_app(
        roots=[tmp_path / "root"],
        mirror=True,
        fallback_url="http://127.0.0.1:9/simple/",  # nobody answers
        mirror_origin=("internal-*=local-only",),
        cache_dir=tmp_path / "cache",
    )
    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""}

    async def answer(app: Creamery, project: str) -> tuple[int, dict[bytes, bytes]]:
        sent: list[Any] = []

        async def send(message: Any) -> None:
            sent.append(message)

        await app._not_hosted(scope, send, project, Format.JSON)
        return sent[0]["status"], dict(sent[0]["headers"])

    status, headers = anyio.run(answer, app, "internal-tool")
    assert status == 404 and headers[b"x-creamery-policy"] == b"mirror-origin internal-*=local-only"
    status, headers = anyio.run(answer, app, "gone-project")
    assert status >= 500 and b"location" not in headers  # the mirror asked the upstream
    no_mirror = creamery_app(roots=[tmp_path / "root"], cache_dir=tmp_path / "cache2")
    status, headers = anyio.run(answer, no_mirror, "gone-project")
    assert status == 303 and headers[b"location"].endswith(b"/gone-project/")  # as before


def test_the_ui_page_of_a_denied_project_says_which_rule(mirror: Server) -> None:
    """As /simple/ says it: a deny-listed project's UI page names the rule, in the page and
    the header (it was the bare "no project like that here" of a name nobody knows)."""
    page = httpx.get(f"{mirror.url}/project/evil-thing/")
    assert page.status_code == 404
    rule = page.headers["x-creamery-policy"]
    assert re.fullmatch(r"mirror-deny \S+deny\.txt:2 evil-\*", rule)
    assert 'id="policy-refusal"' in page.text and "evil-*" in page.text
    private = httpx.get(f"{mirror.url}/project/internal-nothing/")  # never looked up upstream
    assert private.status_code == 404
    assert private.headers["x-creamery-policy"] == "mirror-origin internal-*=local-only"
    assert 'id="policy-refusal"' in private.text
    unknown = httpx.get(f"{mirror.url}/project/no-such-project-anywhere/")
    assert unknown.status_code == 404 and "x-creamery-policy" not in unknown.headers
    assert 'id="policy-refusal"' not in unknown.text


def test_metrics_count_each_rule(mirror: Server) -> None:
    def count(rule: str, kind: str) -> float:
        scrape = httpx.get(f"{mirror.url}/metrics").text
        pattern = rf'creamery_mirror_policy_decisions_total\{{kind="{kind}",rule="{rule}"\}} (\S+)'
        found = re.search(pattern, scrape)
        return float(found.group(1)) if found else 0.0

    before = count("mirror-min-age", "page"), count("mirror-deny", "project")
    httpx.get(f"{mirror.url}/simple/tcool/")
    httpx.get(f"{mirror.url}/simple/evil-thing/")
    assert count("mirror-min-age", "page") == before[0] + 1
    assert count("mirror-deny", "project") == before[1] + 1
    files_before = count("mirror-min-age", "file")
    httpx.get(f"{mirror.url}/upstream/tcool/tcool-2.0-py3-none-any.whl")
    assert count("mirror-min-age", "file") == files_before + 1
    origin_before = count("mirror-origin", "project")  # a page refused, as for a denied one
    httpx.get(f"{mirror.url}/simple/internal-only/")
    assert count("mirror-origin", "project") == origin_before + 1


def test_allow_and_deny_files_edited_while_running(fake: UpstreamProcess, tmp_path: Path) -> None:
    allow = tmp_path / "allow.txt"
    allow.write_text("tcool\ntpartly<3\n")
    deny = tmp_path / "deny.txt"
    deny.write_text("# nothing yet\n")
    args = ["--mirror", "--fallback-url", fake.index_url, "--mirror-cache", str(tmp_path / "c")]
    args += ["--mirror-allow", str(allow), "--mirror-deny", str(deny)]
    (tmp_path / "local").mkdir()
    with run_server([tmp_path / "local"], *args) as server:
        assert _files(server, "tcool") == [
            "tcool-1.0-py3-none-any.whl",
            "tcool-2.0-py3-none-any.whl",  # no cooldown here
        ]
        assert _files(server, "tpartly") == [
            "tpartly-1.0-py3-none-any.whl",
            "tpartly-2.0-py3-none-any.whl",
        ]
        other = httpx.get(f"{server.url}/simple/tplain/")
        assert other.status_code == 404
        assert other.headers["x-creamery-policy"].endswith("allow.txt: tplain is not listed")
        uv = uv_install(server.url, tmp_path / "uv", tmp_path / "home", "tplain")
        assert uv.returncode != 0
        deny.write_text("tcool==2.0\n")
        assert wait_for(lambda: _files(server, "tcool") == ["tcool-1.0-py3-none-any.whl"])
        assert "deny.txt:1 tcool==2.0" in httpx.get(f"{server.url}/project/tcool/").text
        deny.write_text("# the same rule, a line lower\ntcool==2.0\n")
        assert wait_for(
            lambda: "deny.txt:2 tcool==2.0" in httpx.get(f"{server.url}/project/tcool/").text
        )
        allow.write_text("tcool\ntpartly<3\ntplain\nbroken line!\n")
        # Read when a request needs it (one stat a second at most), said once in the log.
        assert wait_for(lambda: _files(server, "tcool") and "allow.txt:4:" in server.log())
        assert server.log().count("allow.txt:4:") == 1
        assert "the previous list stays in force" in server.log()
        assert httpx.get(f"{server.url}/simple/tplain/").status_code == 404  # still the old list
        allow.write_text("tcool\ntpartly<3\ntplain\n")
        assert wait_for(lambda: httpx.get(f"{server.url}/simple/tplain/").status_code == 200)


def test_a_hidden_file_appears_once_old_enough_without_asking_upstream(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "up"
    _wheel(directory, "tsoon", "1.0", 30)
    make_wheel(directory, "tsoon", "2.0")  # uploaded now
    with run_upstream(directory) as fake:
        args = ["--mirror", "--fallback-url", fake.index_url]
        args += ["--mirror-cache", str(tmp_path / "c"), "--mirror-min-age", "4s"]
        (tmp_path / "local").mkdir()
        with run_server([tmp_path / "local"], *args) as server:
            first = httpx.get(f"{server.url}/simple/tsoon/", headers={"accept": JSON})
            assert [f["filename"] for f in first.json()["files"]] == ["tsoon-1.0-py3-none-any.whl"]
            assert first.headers["x-creamery-policy"] == "mirror-min-age 4s hid 1 file"
            new = f"{server.url}/upstream/tsoon/tsoon-2.0-py3-none-any.whl"
            assert httpx.get(new).status_code == 404
            assert wait_for(
                lambda: _files(server, "tsoon")[-1] == "tsoon-2.0-py3-none-any.whl", timeout=10
            )
            later = httpx.get(f"{server.url}/simple/tsoon/")
            assert "x-creamery-policy" not in later.headers
            assert httpx.get(new).status_code == 200
            assert fake.stats().get("/simple/tsoon/", 0) == 1  # the page once: time did it


def test_html_upstreams_give_no_upload_time_and_the_choice_decides(tmp_path: Path) -> None:
    directory = tmp_path / "up"
    _wheel(directory, "thtml", "1.0", 1)
    _wheel(directory, "thtml", "2.0", 1)
    with run_upstream(directory) as fake:
        fake.control(html_only=True)
        (tmp_path / "local").mkdir()
        base = ["--mirror", "--fallback-url", fake.index_url, "--mirror-min-age", "7d"]
        with run_server(
            [tmp_path / "local"], *base, "--mirror-cache", str(tmp_path / "a")
        ) as server:
            response = httpx.get(f"{server.url}/simple/thtml/", headers={"accept": JSON})
            assert len(response.json()["files"]) == 2  # `offer`: unknown counts as old enough
            assert "x-creamery-policy" not in response.headers
        strict = [*base, "--mirror-min-age-unknown", "hide", "--mirror-min-age-fallback", "none"]
        with run_server(
            [tmp_path / "local"], *strict, "--mirror-cache", str(tmp_path / "b")
        ) as server:
            response = httpx.get(f"{server.url}/simple/thtml/", headers={"accept": JSON})
            assert response.status_code == 200 and response.json()["files"] == []
            assert response.headers["x-creamery-policy"] == "mirror-min-age 7d hid 2 files"
            file = httpx.get(f"{server.url}/upstream/thtml/thtml-1.0-py3-none-any.whl")
            assert file.headers["x-creamery-policy"] == "mirror-min-age 7d: upload time unknown"
            assert wait_for(
                lambda: "every file of thtml is newer than 7d: offering nothing" in server.log()
            )
            page = httpx.get(f"{server.url}/project/thtml/")
            assert page.status_code == 200
            assert "this index offers none of its files" in page.text
            assert page.text.count("upload time unknown") == 2
            assert "upstream/thtml/" not in page.text  # no download links


def test_origin_rules_from_the_configuration_file_table(tmp_path: Path) -> None:
    config = tmp_path / "creamery.toml"
    config.write_text(
        '[creamery]\nmirror = true\nmirror-min-age = "12h"\nmirror-deny = "deny.txt"\n'
        '[creamery.mirror-origin]\n"Internal_*" = "local-only"\n"acme" = "merged"\n'
    )
    (tmp_path / "deny.txt").write_text("evil-*\n")
    result = creamery("run", "--config", config, "--print-config", tmp_path)
    assert result.returncode == 0, describe(result)
    assert 'mirror-origin = ["internal-*=local-only", "acme=merged"]' in result.stdout
    assert f'mirror-deny = "{tmp_path}/deny.txt"' in result.stdout
    config.write_text('[creamery]\nmirror = true\n[creamery.mirror-origin]\n"x" = "elsewhere"\n')
    result = creamery("run", "--config", config, "--print-config", tmp_path)
    assert result.returncode == 2
    assert "mirror-origin: 'x=elsewhere': expected PATTERN=MODE" in result.stderr
    (tmp_path / "deny.txt").write_text("fine\npkg >= two\n")
    result = creamery("run", "--mirror-deny", tmp_path / "deny.txt", "--print-config", tmp_path)
    assert result.returncode == 2
    assert f"{tmp_path}/deny.txt:2: 'pkg >= two'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_policies_without_the_mirror_are_refused_at_start(tmp_path: Path) -> None:
    """Without --mirror an unknown project is redirected to the fallback URL, where a deny
    list or local-only rule would not apply: a start-up error, not a silent hole."""
    deny = tmp_path / "deny.txt"
    deny.write_text("evil-*\n")
    result = creamery("run", "--mirror-deny", deny, "--print-config", tmp_path)
    assert result.returncode == 2
    assert "--mirror-deny applies to the caching mirror only" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    env = {"CREAMERY_MIRROR_ORIGIN": "internal-*=local-only", "CREAMERY_MIRROR_MIN_AGE": "7d"}
    result = creamery("run", "--print-config", tmp_path, env={**clean_env(), **env})
    assert result.returncode == 2
    assert "--mirror-min-age, --mirror-origin apply to the caching mirror only" in result.stderr
    offline = creamery(
        "run", "--mirror-deny", deny, "--disable-fallback", "--print-config", tmp_path
    )
    assert offline.returncode == 0, describe(offline)  # nothing is fetched from anywhere
    pep708 = creamery("run", "--mirror-pep708", "--print-config", tmp_path)
    assert pep708.returncode == 2  # it would change no page: said, not ignored
    assert "--mirror-pep708 applies to the caching mirror only" in pep708.stderr


def test_the_header_is_legal_and_short_whatever_the_rules(tmp_path: Path) -> None:
    """700 rules that each hid a file, in a list whose path holds a control character and
    non-ASCII: the header is printable ASCII, at most MAX_HEADER long (pip refuses a header
    line over 64 KiB), and pip and uv install what is offered."""
    directory = tmp_path / "up"
    _wheel(directory, "tmany", "1.0", 30)
    for i in range(700):
        _wheel(directory, "tmany", f"2.{i}", 30)
    lists = tmp_path / ("dé\x01" + "n" * 100)
    lists.mkdir()
    deny = lists / "deny.txt"
    deny.write_text("".join(f"tmany==2.{i}\n" for i in range(700)))
    with run_upstream(directory) as fake:
        args = ["--mirror", "--fallback-url", fake.index_url, "--mirror-deny", str(deny)]
        args += ["--mirror-cache", str(tmp_path / "c")]
        (tmp_path / "local").mkdir()
        with run_server([tmp_path / "local"], *args) as server:
            page = httpx.get(f"{server.url}/simple/tmany/", headers={"accept": JSON})
            assert [f["filename"] for f in page.json()["files"]] == ["tmany-1.0-py3-none-any.whl"]
            file = httpx.get(f"{server.url}/upstream/tmany/tmany-2.5-py3-none-any.whl")
            assert file.status_code == 404
            for said in (page.headers["x-creamery-policy"], file.headers["x-creamery-policy"]):
                assert re.fullmatch(r"[ -~]+", said) and len(said) <= MAX_HEADER
                assert "d\\xe9\\x01nnn" in said
            assert "more rules (the project's page lists them)" in page.headers["x-creamery-policy"]
            pip = pip_install(f"{server.url}/simple/", tmp_path / "pip", tmp_path / "home", "tmany")
            assert pip.returncode == 0, describe(pip)
            assert _installed(tmp_path / "pip") == {"tmany-1.0.dist-info"}
            uv = uv_install(server.url, tmp_path / "uv", tmp_path / "home", "tmany")
            assert uv.returncode == 0, describe(uv)
            assert _installed(tmp_path / "uv") == {"tmany-1.0.dist-info"}


def test_lists_reloaded_under_parallel_requests_and_a_10_mb_file(
    fake: UpstreamProcess, tmp_path: Path
) -> None:
    """A deny list near the size limit rewritten while 40 clients ask for pages at once: no
    5xx, each answer under one list or the other, then the new one; a 10 MB list is refused
    at start (exit 2, one line) and, while running, logged once with the last list kept."""
    import concurrent.futures

    deny = tmp_path / "deny.txt"
    filler = "".join(f"filler-{i}\n" for i in range(75_000))  # ~1 MB of names
    deny.write_text(filler + "tcool\n")
    huge = tmp_path / "huge.txt"
    huge.write_text("x\n" * 5_000_000)
    refused = creamery("run", "--mirror", "--mirror-deny", huge, "--print-config", tmp_path)
    assert refused.returncode == 2 and "larger than 1048576 bytes" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    args = ["--mirror", "--fallback-url", fake.index_url, "--mirror-cache", str(tmp_path / "c")]
    args += ["--mirror-deny", str(deny)]
    (tmp_path / "local").mkdir()
    with run_server([tmp_path / "local"], *args) as server:

        def status(project: str) -> int:
            return httpx.get(f"{server.url}/simple/{project}/", timeout=30).status_code

        assert status("tcool") == 404 and status("tplain") == 200
        deny.write_text(filler + "tplain\n")
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(status, ["tcool", "tplain"] * 20))
        assert set(answers) <= {200, 404}
        assert wait_for(lambda: status("tcool") == 200 and status("tplain") == 404)
        deny.write_bytes(huge.read_bytes())
        assert wait_for(lambda: status("tcool") and "larger than 1048576" in server.log(), 10)
        assert status("tcool") == 200 and status("tplain") == 404  # the last good list
        for _ in range(3):
            time.sleep(1)
            status("tplain")
        assert server.log().count("larger than 1048576 bytes") == 1


def test_a_local_only_name_uploaded_later_is_served_from_here(
    fake: UpstreamProcess, tmp_path: Path
) -> None:
    """`internal-only` exists upstream (6.6.6); local-only: refused until twine uploads it
    here, then the hosted file alone, and pip installs it, never the upstream's."""
    (tmp_path / "local").mkdir()
    args = ["-P", ".", "-a", ".", "--mirror", "--fallback-url", fake.index_url]
    args += ["--mirror-cache", str(tmp_path / "c"), "--mirror-origin", "internal-*=local-only"]
    with run_server([tmp_path / "local"], *args) as server:
        assert httpx.get(f"{server.url}/simple/internal-only/").status_code == 404
        wheel = make_wheel(tmp_path / "dist", "internal-only", "1.0")
        uploaded = twine_upload(server.url + "/", tmp_path / "home", wheel)
        assert uploaded.returncode == 0, describe(uploaded)
        assert _files(server, "internal-only") == ["internal_only-1.0-py3-none-any.whl"]
        page = httpx.get(f"{server.url}/simple/internal-only/")
        assert "x-creamery-policy" not in page.headers
        upstream = f"{server.url}/upstream/internal-only/internal_only-6.6.6-py3-none-any.whl"
        assert httpx.get(upstream).status_code == 404
        pip = pip_install(
            f"{server.url}/simple/", tmp_path / "t", tmp_path / "home", "internal-only"
        )
        assert pip.returncode == 0, describe(pip)
        assert _installed(tmp_path / "t") == {"internal_only-1.0.dist-info"}


def test_a_denied_merged_project_serves_its_hosted_files(
    fake: UpstreamProcess, tmp_path: Path
) -> None:
    """Hosted files are never hidden; the deny is said, and counted under its rule's name
    (not the whole reason), and the upstream is not asked for the project."""
    (tmp_path / "local").mkdir()
    make_wheel(tmp_path / "local", "tonly-here", "1.0")
    deny = tmp_path / "deny.txt"
    deny.write_text("tonly-here\n")
    args = ["--mirror", "--fallback-url", fake.index_url, "--mirror-cache", str(tmp_path / "c")]
    args += ["--metrics", "--mirror-merge", "tonly-here", "--mirror-deny", str(deny)]
    with run_server([tmp_path / "local"], *args) as server:
        page = httpx.get(f"{server.url}/simple/tonly-here/", headers={"accept": JSON})
        assert [f["filename"] for f in page.json()["files"]] == ["tonly_here-1.0-py3-none-any.whl"]
        assert page.headers["x-creamery-policy"] == f"mirror-deny {deny}:1 tonly-here"
        scrape = httpx.get(f"{server.url}/metrics").text
        counted = re.findall(
            r'creamery_mirror_policy_decisions_total\{kind="page",rule="([^"]*)"', scrape
        )
        assert counted == ["mirror-deny"]
        assert fake.stats().get("/simple/tonly-here/", 0) == 0  # not even asked upstream
        file = httpx.get(f"{server.url}/upstream/tonly-here/tonly_here-9.0-py3-none-any.whl")
        assert file.status_code == 404 and file.headers["x-creamery-policy"].startswith(
            "mirror-deny"
        )


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("x=elsewhere", "expected PATTERN=MODE, MODE one of local-only, upstream-only, merged"),
        ("x", "expected PATTERN=MODE"),
        ("=merged", "is not a project name or glob"),
        ("a/b=merged", "is not a project name or glob"),
        ("x=local-only y=merged", "expected PATTERN=MODE"),
    ],
)
def test_bad_origin_rules_from_the_environment_are_one_line(
    tmp_path: Path, value: str, why: str
) -> None:
    env = {**clean_env(), "CREAMERY_MIRROR_ORIGIN": value}
    result = creamery("run", "--mirror", "--print-config", tmp_path, env=env)
    assert result.returncode == 2
    assert result.stderr.startswith("creamery: error: CREAMERY_MIRROR_ORIGIN=")
    assert why in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_cached_file_follows_the_cooldown_with_the_upstream_down(tmp_path: Path) -> None:
    """Files cached before the cooldown was configured, served while no upstream answers or
    after it forgot them: one whose cached page says it is too new is refused; one whose page
    is gone (its upload time unknown now) follows --mirror-min-age-unknown."""
    directory = tmp_path / "up"
    _wheel(directory, "tyoung", "1.0", 30)
    make_wheel(directory, "tyoung", "2.0")  # uploaded now
    _wheel(directory, "tpageless", "1.0", 30)
    cache, local = tmp_path / "cache", tmp_path / "local"
    local.mkdir()
    young = "/upstream/tyoung/tyoung-2.0-py3-none-any.whl"
    pageless = "/upstream/tpageless/tpageless-1.0-py3-none-any.whl"
    with run_upstream(directory) as fake:
        base = ["--mirror", "--fallback-url", fake.index_url, "--mirror-cache", str(cache)]
        with run_server([local], *base) as server:
            for project, path in (("tyoung", young), ("tpageless", pageless)):
                assert _files(server, project)
                assert httpx.get(server.url + path).status_code == 200
        (cache / "pages" / "tpageless.json").unlink()  # e.g. `mirror-cache clear`: the page
        fake.control(fail=503)
        strict = [*base, "--mirror-min-age", "7d", "--mirror-min-age-unknown", "hide"]
        strict += ["--mirror-min-age-fallback", "none"]
        with run_server([local], *strict) as server:
            file = httpx.get(server.url + young)
            assert file.status_code == 404, file.text
            assert file.headers["x-creamery-policy"].startswith("mirror-min-age 7d: uploaded ")
            file = httpx.get(server.url + pageless)
            assert file.status_code == 404, file.text
            assert file.headers["x-creamery-policy"] == "mirror-min-age 7d: upload time unknown"
        with run_server([local], *base, "--mirror-min-age", "7d") as server:
            assert httpx.get(server.url + pageless).status_code == 200  # `offer`: served
            assert httpx.get(server.url + young).status_code == 404
        fake.control(fail=0)
        for wheel in directory.glob("tyoung-*"):
            wheel.unlink()  # the upstream forgets the project: its cached files stay
        with run_server([local], *strict, "--mirror-ttl", "0") as server:
            gone = httpx.get(f"{server.url}/simple/tyoung/")
            assert gone.status_code == 404  # no upstream lists it: its cached page forgotten
            file = httpx.get(server.url + young)  # cached, but no listing judges it: the age does
            assert file.status_code == 404, file.text
            assert file.headers["x-creamery-policy"] == "mirror-min-age 7d: upload time unknown"
            integrity = f"/integrity/tyoung/2.0/{young.rpartition('/')[2]}/provenance"
            provenance = httpx.get(server.url + integrity)
            assert provenance.status_code == 404
            assert "mirror-min-age 7d: upload time unknown" in provenance.text
