"""Core metadata as the project page shows it (`render/metadata_view.py`): untrusted fields
parsed, only http(s) URLs linked."""

from __future__ import annotations

from packaging.metadata import RawMetadata

from creamery.render.metadata_view import (
    License,
    Person,
    dependencies,
    grouped_classifiers,
    license_of,
    link,
    people,
    project_urls,
    wheel_tags,
)


def test_only_web_urls_are_linked() -> None:
    assert link(" https://example.org/x ") == "https://example.org/x"
    assert link("http://example.org") == "http://example.org"
    for bad in ("javascript:alert(1)", "JavaScript:alert(1)", "data:text/html,x", "", None, "//x"):
        assert link(bad) is None, bad


def test_people_from_names_and_addresses() -> None:
    assert people("Jane", "jane@example.org") == [Person("Jane", "jane@example.org")]
    assert people(None, "Jane Doe <jane@example.org>, bob@example.org") == [
        Person("Jane Doe", "jane@example.org"),
        Person("bob@example.org", "bob@example.org"),
    ]
    assert people("The Team", None) == [Person("The Team", None)]
    assert people("Jane Doe", "Jane Doe <jane@example.org>") == [
        Person("Jane Doe", "jane@example.org")
    ]
    assert people(None, None) == []


def test_license_expression_first() -> None:
    both = RawMetadata(license_expression="MIT", license="Some long text")
    assert license_of(both) == License("MIT", None)
    assert license_of(RawMetadata(license="BSD")) == License("BSD", None)
    text = "Permission is hereby granted...\n" * 5
    assert license_of(RawMetadata(license=text)) == License(None, text.strip())
    assert license_of(RawMetadata()) == License(None, None)


def test_project_urls_keep_order_and_drop_unsafe_ones() -> None:
    meta = RawMetadata(
        home_page="https://home.example",
        project_urls={"Source": "https://src.example", "Evil": "javascript:alert(1)"},
        download_url="ftp://files.example/x.tar.gz",
    )
    assert project_urls(meta) == [
        ("Homepage", "https://home.example"),
        ("Source", "https://src.example"),
    ]


def test_classifiers_are_grouped() -> None:
    assert grouped_classifiers(
        ["Topic :: A :: B", "License :: OSI Approved :: MIT License", "Topic :: C", "Typing"]
    ) == [
        ("Topic", ["A :: B", "C"]),
        ("License", ["OSI Approved :: MIT License"]),
        ("Typing", ["Typing"]),
    ]


def test_dependencies_with_extras_and_markers() -> None:
    first, second, broken = dependencies(
        ['Requests[socks,security]>=2; extra == "net"', "tomli", "not a [valid requirement"]
    )
    assert (first.name, first.project, first.extras) == (
        "Requests",
        "requests",
        ("security", "socks"),
    )
    assert first.specifier == ">=2" and first.marker == 'extra == "net"'
    assert (second.project, second.specifier, second.marker) == ("tomli", "", None)
    assert broken.text == "not a [valid requirement" and broken.project == "not"


def test_wheel_tags() -> None:
    assert wheel_tags("x-1.0-cp311-cp311-manylinux_2_17_x86_64.whl") == (
        "cp311",
        "cp311",
        "manylinux_2_17_x86_64",
    )
    assert wheel_tags("x-1.0-1-py3-none-any.whl") == ("py3", "none", "any")
    assert wheel_tags("x-1.0.tar.gz") is None
