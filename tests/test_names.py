"""Table-driven tests for distribution filename parsing and name normalization."""

from __future__ import annotations

import pytest

from creamery.core.names import guess_like_pypiserver, normalize, parse_filename

# (filename, raw name as spelled, version as spelled, kind)
WHEELS = [
    ("foo-1.0-py3-none-any.whl", "foo", "1.0"),
    ("foo_bar-1.0-py3-none-any.whl", "foo_bar", "1.0"),
    ("Foo_Bar-2.0.1-py2.py3-none-any.whl", "Foo_Bar", "2.0.1"),
    # build tags (PEP 427): a number, optionally followed by letters
    ("foo_bar-1.0-1-py3-none-any.whl", "foo_bar", "1.0"),
    (
        "foo_bar-1.0-1abc-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "foo_bar",
        "1.0",
    ),
    ("pywin32-217-cp27-none-win32.whl", "pywin32", "217"),
    ("pywin32-217-55-cp27-none-win32.whl", "pywin32", "217"),
    ("pywin32-217.1-cp27-none-win32.whl", "pywin32", "217.1"),
    ("numpy-1.26.0-cp311-cp311-win_amd64.whl", "numpy", "1.26.0"),
    ("backports.zoneinfo-0.2.1-cp38-cp38-manylinux1_x86_64.whl", "backports.zoneinfo", "0.2.1"),
    ("foo-2!1.0rc1.post2.dev3+local.7-py3-none-any.whl", "foo", "2!1.0rc1.post2.dev3+local.7"),
]

SDISTS = [
    # PEP 625
    ("foo_bar-1.0.tar.gz", "foo_bar", "1.0"),
    ("zope_interface-6.0.tar.gz", "zope_interface", "6.0"),
    ("foo-1.0rc1.post2.dev3.tar.gz", "foo", "1.0rc1.post2.dev3"),
    ("foo-2!1.0.tar.gz", "foo", "2!1.0"),
    ("foo-1.0+local.1.tar.gz", "foo", "1.0+local.1"),
    # legacy spellings
    ("foo-bar-1.0.tar.gz", "foo-bar", "1.0"),
    ("Django-4.2.tar.gz", "Django", "4.2"),
    ("zope.interface-6.0.tar.gz", "zope.interface", "6.0"),
    ("Foo.Bar_baz-0.1.tar.gz", "Foo.Bar_baz", "0.1"),
    ("foo_bar-1.0.TAR.GZ", "foo_bar", "1.0"),
    ("ABC12-34_V1X-1.2.3.zip", "ABC12-34_V1X", "1.2.3"),
    # pypiserver's classic table (tests/test_core.py)
    ("pytz-2012b.tar.bz2", "pytz", "2012b"),
    ("pytz-2012b.tgz", "pytz", "2012b"),
    ("pytz-2012b.ZIP", "pytz", "2012b"),
    ("pytz-2012a.zip", "pytz", "2012a"),
    ("pep8-0.6.0.zip", "pep8", "0.6.0"),
    ("A100-200-XYZ-1.2.3.zip", "A100-200-XYZ", "1.2.3"),
    ("flup-1.0.3.dev-20110405.tar.gz", "flup", "1.0.3.dev-20110405"),
    ("flup-123-1.0.3.dev-20110405.tar.gz", "flup-123", "1.0.3.dev-20110405"),
    ("package-1.0.0-alpha.1.zip", "package", "1.0.0-alpha.1"),
    ("package-1.3.7+build.11.e0f985a.zip", "package", "1.3.7+build.11.e0f985a"),
    ("package-v1-8.1.301.ga0df26f.zip", "package-v1", "8.1.301.ga0df26f"),
    ("package-v1.1-8.1.301.ga0df26f.zip", "package-v1.1", "8.1.301.ga0df26f"),
    ("package-2013.02.17.dev123.zip", "package", "2013.02.17.dev123"),
    ("package-20000101.zip", "package", "20000101"),
    ("package-123-1.0.0-alpha.1.zip", "package-123", "1.0.0-alpha.1"),
    ("package-123-1.3.7+build.11.e0f985a.zip", "package-123", "1.3.7+build.11.e0f985a"),
    ("package-123-v1.1_3-8.1.zip", "package-123-v1.1_3", "8.1"),
    ("package-123-2013.02.17.dev123.zip", "package-123", "2013.02.17.dev123"),
    ("package-123-20000101.zip", "package-123", "20000101"),
    ("pyelasticsearch-0.5-brainbot-1-20130712.zip", "pyelasticsearch", "0.5-brainbot-1-20130712"),
    ("pkg-1b.zip", "pkg", "1b"),
    ("pkg-3!1.0-0.1.tgz", "pkg", "3!1.0-0.1"),
]

EGGS = [
    ("greenlet-0.3.4-py3.1-win-amd64.egg", "greenlet", "0.3.4"),
    ("greenlet-0.3.4-py3.2-win32.egg", "greenlet", "0.3.4"),
    ("greenlet-0.3.4-py2.7-linux-x86_64.egg", "greenlet", "0.3.4"),
    ("foo-1.0-py2.7.egg", "foo", "1.0"),
]

BDISTS = [
    ("gevent-1.0b1.win32-py2.6.exe", "gevent", "1.0b1"),
    ("gevent-1.0b1.win32-py2.7.msi", "gevent", "1.0b1"),
    ("greenlet-0.3.4.win-amd64-py3.2.exe", "greenlet", "0.3.4"),
    ("package-name-0.0.1.alpha.1.win-amd64-py3.2.exe", "package-name", "0.0.1.alpha.1"),
    ("Twisted-12.0.0.win32-py2.7.msi", "Twisted", "12.0.0"),
    # bdist_dumb archives: built, not source; the platform tail is not part of the version
    ("package-name-0.0.1.dev0.linux-x86_64.tar.gz", "package-name", "0.0.1.dev0"),
    ("package-name-0.0.1.dev0.macosx-10.10-intel.tar.gz", "package-name", "0.0.1.dev0"),
]

UNPARSEABLE = [
    "-1.0.tar.gz",  # no name
    ".whl",
    ".tar.gz",
    "foo-1.0.whl",  # a wheel needs its three tags
    "foo-1.0-cp311-none.whl",
    "foo-notaversion-py3-none-any.whl",
    "README.txt",
    "index.html",
    "foo-1.0",
    "",
    # sidecars describe a distribution; they are never one
    "foo-1.0-py3-none-any.whl.asc",
    "foo-1.0-py3-none-any.whl.metadata",
    "foo-1.0.tar.gz.yanked",
    # pypiserver ignores these too (its tests' invalid files)
    "some_file",
    "some_file.ext",
    "some_wheel.whl",
    # unsafe characters: never listed, whatever the rest of the name
    "demo-2.1-py3-none-any\u202elmth.whl",
    "demo-2.1-py3-none-any\u2028.whl",
    "demo\u200b-2.1.tar.gz",
    "demo-2.1\x00.tar.gz",
]

# pypiserver 2.x's own filename table (tests/test_pkg_helpers.py), as facts: the file, the name
# and version its `guess_pkgname_and_version` gives. creamery lists each of them, under the same
# project and version, except where a spec gives the answer (EXCEPTIONS).
PYPISERVER_TABLE = [
    ("pytz-2012b.tar.bz2", "pytz", "2012b"),
    ("pytz-2012b.tgz", "pytz", "2012b"),
    ("pytz-2012b.ZIP", "pytz", "2012b"),
    ("pytz-2012a.zip", "pytz", "2012a"),
    ("pytz-2012b.tar.xz", "pytz", "2012b"),
    ("gevent-1.0b1.win32-py2.6.exe", "gevent", "1.0b1"),
    ("gevent-1.0b1.win32-py2.7.msi", "gevent", "1.0b1"),
    ("greenlet-0.3.4-py3.1-win-amd64.egg", "greenlet", "0.3.4"),
    ("greenlet-0.3.4.win-amd64-py3.2.exe", "greenlet", "0.3.4"),
    ("greenlet-0.3.4-py3.2-win32.egg", "greenlet", "0.3.4"),
    ("greenlet-0.3.4-py2.7-linux-x86_64.egg", "greenlet", "0.3.4"),
    ("pep8-0.6.0.zip", "pep8", "0.6.0"),
    ("ABC12-34_V1X-1.2.3.zip", "ABC12", "34_V1X-1.2.3"),
    ("A100-200-XYZ-1.2.3.zip", "A100-200-XYZ", "1.2.3"),
    ("flup-1.0.3.dev-20110405.tar.gz", "flup", "1.0.3.dev-20110405"),
    ("package-1.0.0-alpha.1.zip", "package", "1.0.0-alpha.1"),
    ("package-1.3.7+build.11.e0f985a.zip", "package", "1.3.7+build.11.e0f985a"),
    ("package-v1-8.1.301.ga0df26f.zip", "package-v1", "8.1.301.ga0df26f"),
    ("package-v1.1-8.1.301.ga0df26f.zip", "package-v1.1", "8.1.301.ga0df26f"),
    ("package-2013.02.17.dev123.zip", "package", "2013.02.17.dev123"),
    ("package-20000101.zip", "package", "20000101"),
    ("flup-123-1.0.3.dev-20110405.tar.gz", "flup-123", "1.0.3.dev-20110405"),
    ("package-123-1.0.0-alpha.1.zip", "package-123", "1.0.0-alpha.1"),
    ("package-123-1.3.7+build.11.e0f985a.zip", "package-123", "1.3.7+build.11.e0f985a"),
    ("package-123-v1.1_3-8.1.zip", "package-123-v1.1_3", "8.1"),
    ("package-123-2013.02.17.dev123.zip", "package-123", "2013.02.17.dev123"),
    ("package-123-20000101.zip", "package-123", "20000101"),
    ("pyelasticsearch-0.5-brainbot-1-20130712.zip", "pyelasticsearch", "0.5-brainbot-1-20130712"),
    ("pywin32-217-cp27-none-win32.whl", "pywin32", "217"),
    ("pywin32-217-55-cp27-none-win32.whl", "pywin32", "217-55"),
    ("pywin32-217.1-cp27-none-win32.whl", "pywin32", "217.1"),
    ("package.zip", "package", ""),
    ("package-name-0.0.1.dev0.linux-x86_64.tar.gz", "package-name", "0.0.1.dev0"),
    ("package-name-0.0.1.dev0.macosx-10.10-intel.tar.gz", "package-name", "0.0.1.dev0"),
    ("package-name-0.0.1.alpha.1.win-amd64-py3.2.exe", "package-name", "0.0.1.alpha.1"),
    ("pkg-3!1.0-0.1.tgz", "pkg", "3!1.0-0.1"),
    ("pkg-3!1+.0-0.1.tgz", "pkg", "3!1+.0-0.1"),
    ("pkg.zip", "pkg", ""),
    ("pkg-1b.zip", "pkg", "1b"),
    # issue 9: an invalid tag layout pypiserver lists
    ("test-1.0-py2-py3-none-any.whl", "test", "1.0"),
    ("foo.tar.gz", "foo", ""),
    ("foo-.tar.gz", "foo", ""),
]
# Where creamery follows a spec rather than pypiserver's guess (docs/deploy.md says why): the
# wheel spec's build tag is not part of the version; in a legacy sdist the version is the
# PEP 440 tail, so pip finds `ABC12-34_V1X` (pypiserver lists it under `abc12`).
EXCEPTIONS = {
    "pywin32-217-55-cp27-none-win32.whl": ("pywin32", "217"),
    "ABC12-34_V1X-1.2.3.zip": ("ABC12-34_V1X", "1.2.3"),
}


@pytest.mark.parametrize(("filename", "name", "version"), PYPISERVER_TABLE, ids=lambda v: v)
def test_pypiserver_guess_matches_its_table(filename: str, name: str, version: str) -> None:
    assert guess_like_pypiserver(filename) == (name, version)


@pytest.mark.parametrize(("filename", "name", "version"), PYPISERVER_TABLE, ids=lambda v: v)
def test_what_pypiserver_lists_is_listed(filename: str, name: str, version: str) -> None:
    parsed = parse_filename(filename)
    assert parsed is not None, filename
    name, version = EXCEPTIONS.get(filename, (name, version))
    assert (parsed.project, parsed.version) == (normalize(name), version)


def _cases(table, kind):
    return [
        pytest.param(filename, raw, version, kind, id=filename) for filename, raw, version in table
    ]


@pytest.mark.parametrize(
    ("filename", "raw_name", "version", "kind"),
    _cases(WHEELS, "wheel")
    + _cases(SDISTS, "sdist")
    + _cases(EGGS, "egg")
    + _cases(BDISTS, "bdist"),
)
def test_parse_filename(filename: str, raw_name: str, version: str, kind: str) -> None:
    parsed = parse_filename(filename)
    assert parsed is not None, filename
    assert (parsed.raw_name, parsed.version, parsed.kind) == (raw_name, version, kind)
    assert parsed.project == normalize(raw_name)


def test_abc12_is_one_name() -> None:
    """The version is the last PEP 440 part; the name keeps its digits and underscores."""
    parsed = parse_filename("ABC12-34_V1X-1.2.3.zip")
    assert parsed is not None
    assert (parsed.project, parsed.version) == ("abc12-34-v1x", "1.2.3")


@pytest.mark.parametrize("filename", UNPARSEABLE)
def test_unparseable_filenames(filename: str) -> None:
    assert parse_filename(filename) is None


@pytest.mark.parametrize(
    ("filename", "project"),
    [
        ("Foo.Bar_baz-0.1.tar.gz", "foo-bar-baz"),
        ("foo_bar_baz-0.2-py3-none-any.whl", "foo-bar-baz"),
        ("FOO__BAR--BAZ-0.3.zip", "foo-bar-baz"),
        ("Django-4.2.tar.gz", "django"),
        ("package-v1.1-8.1.301.ga0df26f.zip", "package-v1-1"),
    ],
)
def test_project_is_normalized(filename: str, project: str) -> None:
    parsed = parse_filename(filename)
    assert parsed is not None
    assert parsed.project == project


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("foo", "foo"),
        ("Foo", "foo"),
        ("FOO", "foo"),
        ("Foo.Bar_baz", "foo-bar-baz"),
        ("foo_bar", "foo-bar"),
        ("foo.bar", "foo-bar"),
        ("foo-bar", "foo-bar"),
        ("foo--bar", "foo-bar"),
        ("foo__bar", "foo-bar"),
        ("foo-_.bar", "foo-bar"),
        ("A__B--C..d", "a-b-c-d"),
        ("zope.interface", "zope-interface"),
        ("ABC12-34_V1X", "abc12-34-v1x"),
        ("pkg1", "pkg1"),
    ],
)
def test_normalize(name: str, expected: str) -> None:
    assert normalize(name) == expected
    assert normalize(expected) == expected  # idempotent


@pytest.mark.parametrize(
    ("one", "other", "same"),
    [
        ("demo-1.0.tar.gz", "Demo-1.0.tar.gz", True),
        ("demo-1.0.tar.gz", "demo-1.0.0.tar.gz", True),
        ("foo_bar-1.0-py3-none-any.whl", "Foo.Bar-1.0-PY3-none-any.whl", True),
        ("foo_bar-1.0-py3-none-any.whl", "foo_bar-01.0-py3-none-any.whl", True),
        ("demo-1.0.tar.gz", "demo-1.0.zip", False),
        ("demo-1.0.tar.gz", "demo-1.0.1.tar.gz", False),
        ("demo-1.0-py3-none-any.whl", "demo-1.0-1-py3-none-any.whl", False),
        ("demo-1.0-py3-none-any.whl", "demo-1.0-cp311-cp311-linux_x86_64.whl", False),
        ("demo-1.0.tar.gz", "demo2-1.0.tar.gz", False),
        ("README", "readme", True),  # not a distribution: the name, in any case
    ],
)
def test_same_file_key(one: str, other: str, same: bool) -> None:
    from creamery.core.names import same_file_key

    assert (same_file_key(one) == same_file_key(other)) is same
