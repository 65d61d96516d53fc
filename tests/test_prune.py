"""Retention (`creamery prune`, `creamery run --prune-every`): the planner's rules and
protections as pure logic, the rules file's checks, and end to end: the CLI's dry run lists
exactly what its real run removes (over a directory and over a bucket), pip and uv stop seeing
the pruned versions of a running server at once, the audit log has the entries, and a server
with `--prune-every 2s` and two workers prunes once per round by its rules.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.clients import clean_env, creamery, describe, pip_download, uv_install
from support.dists import make_sdist, make_wheel
from support.polling import wait_for
from support.s3 import S3Server
from support.servers import Server, run_server
from support.wire import JSON_ACCEPT

from creamery.catalog.prune import (
    LAST_RUN_KEY,
    LOCK_FILE,
    SERVER_ACTOR,
    Hosted,
    Plan,
    Schedule,
    execute,
    make_plan,
    plan,
)
from creamery.catalog.prune_rules import Rule, Rules, RulesError, build_rules, parse_rules
from creamery.catalog.service import Catalog
from creamery.core.config import Config

NOW = 2_000_000_000.0
DAY = 86400.0
KEEP_3 = Rules(Rule(keep=3))


def release(
    project: str,
    version: str,
    *,
    age_days: float = 100,
    requires: tuple[str, ...] = (),
    yanked: bool = False,
) -> Hosted:
    files = (f"{project}-{version}-py3-none-any.whl",)
    return Hosted(project, version, files, NOW - age_days * DAY, requires, yanked)


def removed(planned: Plan) -> set[str]:
    return {d.release.name for d in planned.removals}


def kept_for(planned: Plan) -> dict[str, list[str]]:
    return {d.release.name: list(d.protections) for d in planned.protected}


def reasons(planned: Plan) -> dict[str, list[str]]:
    return {d.release.name: list(d.reasons) for d in planned.removals}


def series(project: str, *versions: str, **kwargs: object) -> list[Hosted]:
    return [release(project, v, **kwargs) for v in versions]  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- the planner


def test_keep_n_removes_the_oldest_versions_beyond_the_newest_n() -> None:
    # Listed in no particular order: versions are ordered by PEP 440, not by the input.
    hosted = series("foo", "1.10", "1.2", "1.9", "2.0", "0.1", "1.0")
    planned = plan(hosted, KEEP_3, now=NOW)
    assert removed(planned) == {"foo 0.1", "foo 1.0", "foo 1.2"}
    assert set(reasons(planned)["foo 0.1"]) == {"beyond the newest 3"}
    assert planned.protected == ()
    # The same input, the same plan: a dry run lists what the real run removes.
    assert plan(list(reversed(hosted)), KEEP_3, now=NOW) == planned


def test_a_project_with_n_releases_or_fewer_loses_nothing() -> None:
    planned = plan(series("foo", "1.0", "2.0", "3.0"), KEEP_3, now=NOW)
    assert planned.removals == () and planned.protected == ()


def test_pre_and_dev_releases_older_than_the_age_go_young_ones_and_finals_stay() -> None:
    hosted = [
        release("foo", "1.0", age_days=400),
        release("foo", "1.1rc1", age_days=40),
        release("foo", "1.1.dev2", age_days=45),
        release("foo", "1.1", age_days=39),
        release("foo", "1.2b1", age_days=10),  # young: stays
        release("foo", "1.2.dev0", age_days=31),
        release("foo", "1.2", age_days=5),
    ]
    rules = Rules(Rule(prereleases_older_than=30 * DAY))
    planned = plan(hosted, rules, now=NOW)
    assert reasons(planned) == {
        "foo 1.1rc1": ["pre-release older than 30d"],
        "foo 1.1.dev2": ["dev release older than 30d"],
        "foo 1.2.dev0": ["dev release older than 30d"],
    }
    both = plan(hosted, Rules(Rule(keep=6, prereleases_older_than=30 * DAY)), now=NOW)
    assert reasons(both)["foo 1.1.dev2"] == ["dev release older than 30d"]
    assert set(reasons(both)["foo 1.0"]) == {"beyond the newest 6"}


def test_the_latest_release_is_never_removed_nor_the_newest_final() -> None:
    hosted = [
        release("foo", "1.0"),
        release("foo", "2.0"),  # the newest final, beyond the newest 1
        release("foo", "3.0a1", age_days=90),  # the newest version, an old pre-release
    ]
    planned = plan(hosted, Rules(Rule(keep=1, prereleases_older_than=30 * DAY)), now=NOW)
    assert removed(planned) == {"foo 1.0"}
    assert kept_for(planned) == {
        "foo 2.0": ["the newest final release"],
        "foo 3.0a1": ["the latest release (the newest version)"],
    }


def test_when_the_newest_final_is_yanked_the_release_installers_pick_stays() -> None:
    hosted = [release("foo", "1.0"), release("foo", "1.1"), release("foo", "2.0", yanked=True)]
    planned = plan(hosted, Rules(Rule(keep=1)), now=NOW)
    assert removed(planned) == {"foo 1.0"}
    assert kept_for(planned) == {"foo 1.1": ["the release installers pick (the newest not yanked)"]}


@pytest.mark.parametrize(
    ("requirement", "pinned"),
    [
        ("foo==1.0", True),
        ("foo==1.0.0", True),  # PEP 440 equality
        ("Foo_Lib[extra]==1.0 ; python_version < '3'", True),  # extras and markers ignored
        ("foo===1.0", True),
        ("foo===1.0.0", False),  # arbitrary equality: the string
        ("foo==1.*", True),  # a prefix match protects what it matches
        ("foo>=1.0,<1.1", False),
        ("foo~=1.0", False),
        ("foo", False),
        ("not a requirement ==", False),
    ],
)
def test_a_pin_in_requires_dist_protects_the_release(requirement: str, pinned: bool) -> None:
    name = "foo-lib" if requirement.startswith("Foo_Lib") else "foo"
    hosted = [
        *series(name, "1.0", "2.0", "3.0"),
        release("bar", "1.0", requires=(requirement,)),
    ]
    planned = plan(hosted, Rules(Rule(keep=1)), now=NOW, projects=[name])
    if pinned:
        assert kept_for(planned) == {
            f"{name} 1.0": [f"pinned by bar 1.0 (Requires-Dist: {requirement})"]
        }
        assert removed(planned) == {f"{name} 2.0"}
    else:
        assert removed(planned) == {f"{name} 1.0", f"{name} 2.0"}


def test_an_arbitrary_equality_pin_matches_any_files_spelling_of_the_release() -> None:
    """`1.0` and `1.0.0` are one release; `===1.0.0` pins the file spelled `1.0.0`, which an
    installer finds, so the release stays."""
    files = ("foo-1.0-py3-none-any.whl", "foo-1.0.0-py3-none-any.whl")
    both = Hosted("foo", "1.0", files, NOW - 100 * DAY, spellings=("1.0", "1.0.0"))
    hosted = [both, *series("foo", "2.0"), release("bar", "1.0", requires=("foo===1.0.0",))]
    planned = plan(hosted, Rules(Rule(keep=1)), now=NOW, projects=["foo"])
    assert removed(planned) == set()
    assert kept_for(planned) == {"foo 1.0": ["pinned by bar 1.0 (Requires-Dist: foo===1.0.0)"]}


def test_a_release_pinned_only_by_releases_the_run_removes_goes_too() -> None:
    hosted = [
        release("app", "1.0", requires=("lib==1.0",)),  # removed: so lib 1.0 is free
        release("app", "2.0", requires=("lib==2.0",)),  # kept: lib 2.0 stays
        release("app", "3.0", requires=("lib>=3",)),
        *series("lib", "1.0", "2.0", "3.0", "4.0"),
        release("tool", "1.0", requires=("app==2.0",)),  # keeps app 2.0, which keeps lib 2.0
        release("tool", "2.0"),
    ]
    planned = plan(hosted, Rules(Rule(keep=1)), now=NOW)
    # tool 1.0 goes (keep 1): nothing that stays pins app 2.0 then, nor lib 2.0.
    assert removed(planned) == {"app 1.0", "app 2.0", "tool 1.0", "lib 1.0", "lib 2.0", "lib 3.0"}
    assert kept_for(planned) == {}
    # A release that stays pins app 2.0, which pins lib 2.0: both stay.
    pinned_by_kept = [*hosted, release("other", "1.0", requires=("app==2.0",))]
    again = plan(pinned_by_kept, Rules(Rule(keep=1)), now=NOW)
    assert kept_for(again) == {
        "app 2.0": ["pinned by other 1.0 (Requires-Dist: app==2.0)"],
        "lib 2.0": ["pinned by app 2.0 (Requires-Dist: lib==2.0)"],
    }
    assert removed(again) == {"app 1.0", "lib 1.0", "lib 3.0", "tool 1.0"}


def test_a_pinning_release_is_removed_before_the_release_it_pins() -> None:
    hosted = [
        release("zapp", "1.0", requires=("alib==1.0",)),
        release("zapp", "2.0"),
        release("alib", "1.0", requires=("aaa==1.0",)),
        release("alib", "2.0"),
        *series("aaa", "1.0", "2.0"),
    ]
    planned = plan(hosted, Rules(Rule(keep=1)), now=NOW)
    order = [d.release.name for d in planned.removals]
    assert order == ["zapp 1.0", "alib 1.0", "aaa 1.0"]  # a run stopped halfway breaks no pin


def test_only_the_projects_asked_for_are_pruned_but_every_pin_counts() -> None:
    hosted = [*series("foo", "1.0", "2.0"), *series("bar", "1.0", "2.0", requires=("foo==1.0",))]
    planned = plan(hosted, Rules(Rule(keep=1)), now=NOW, projects=["foo"])
    assert removed(planned) == set()
    assert kept_for(planned) == {
        "foo 1.0": [
            "pinned by bar 1.0 (Requires-Dist: foo==1.0)",
            "pinned by bar 2.0 (Requires-Dist: foo==1.0)",
        ]
    }


def test_per_project_overrides_and_exempt_projects() -> None:
    rules = parse_rules(
        {
            "defaults": {"keep": 1},
            "projects": {
                "Big_Project": {"keep": 3},
                "internal-*": {"exempt": True},
                "internal-special": {"keep": 2},  # an exact name wins over a glob
                "nightly": {"prereleases-older-than": "7d"},
            },
        },
        "rules.toml",
    )
    versions = ("1.0", "2.0", "3.0", "4.0")
    hosted = [
        *series("big-project", *versions),
        *series("internal-tools", *versions),
        *series("internal-special", *versions),
        *series("small", *versions),
        release("nightly", "1.0.dev1", age_days=8),
        release("nightly", "1.0.dev2", age_days=1),
    ]
    planned = plan(hosted, rules, now=NOW)
    assert removed(planned) == {
        "big-project 1.0",
        *(f"internal-special {v}" for v in ("1.0", "2.0")),
        *(f"small {v}" for v in ("1.0", "2.0", "3.0")),
        "nightly 1.0.dev1",
    }
    assert planned.exempt == ("internal-tools",)
    # nightly's table keeps the default keep 1 and adds its age: both rules apply.
    assert rules.for_project("nightly") == Rule(keep=1, prereleases_older_than=7 * DAY)


def test_force_lifts_the_protections_but_a_project_keeps_one_release() -> None:
    hosted = [
        release("foo", "1.0"),
        release("foo", "2.0a1", age_days=90),
        release("bar", "1.0", requires=("foo==1.0",)),
        release("bar", "2.0"),
        release("old", "1.0a1", age_days=90),
        release("old", "1.0a2", age_days=90),
    ]
    rules = Rules(Rule(keep=1, prereleases_older_than=30 * DAY))
    normal = plan(hosted, rules, now=NOW)
    assert removed(normal) == {"bar 1.0", "old 1.0a1"}
    assert set(kept_for(normal)) == {"foo 1.0", "foo 2.0a1", "old 1.0a2"}
    forced = plan(hosted, rules, now=NOW, force=True)
    assert removed(forced) == {"bar 1.0", "foo 1.0", "old 1.0a1"}
    assert kept_for(forced) == {
        "foo 2.0a1": ["the project's last release (kept even with --force)"],
        "old 1.0a2": ["the project's last release (kept even with --force)"],
    }


# ----------------------------------------------------------------------------- the rules file


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"defaults": {"keep": 0}}, "[defaults]: keep must be a whole number of releases"),
        ({"defaults": {"keep": "5"}}, "keep must be a whole number of releases, 1 or more"),
        ({"defaults": {"keep": True}}, "keep must be a whole number"),
        (
            {"defaults": {"kep": 5}},
            "[defaults]: unknown key 'kep' (use keep, prereleases-older-than)",
        ),
        ({"defaults": {"exempt": True}}, "exempt belongs in a project's table"),
        ({"default": {"keep": 5}}, "unknown table 'default'"),
        ({"projects": {"foo": {"prereleases-older-than": "30 days"}}}, "invalid duration"),
        ({"projects": {"foo": {"exempt": "yes"}}}, "exempt must be true or false"),
        ({"projects": {"foo": 5}}, '[projects."foo"] must be a table'),
        ({"projects": {"Foo": {"keep": 2}, "foo": {"keep": 3}}}, "the same project as another"),
        ({"projects": {"a b": {"keep": 2}}}, "not a project name or glob"),
        ({"projects": ["foo"]}, "projects must be tables"),
    ],
)
def test_a_bad_rule_is_one_line_naming_where(document: dict[str, object], message: str) -> None:
    with pytest.raises(RulesError) as error:
        parse_rules(document, "rules.toml")
    assert message in str(error.value)
    assert str(error.value).startswith("rules.toml: ")
    assert "\n" not in str(error.value)


def test_the_command_line_overrides_the_files_defaults(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('[defaults]\nkeep = 5\nprereleases_older_than = "30d"\n')
    rules = build_rules(keep=2, path=path)
    assert rules.defaults == Rule(keep=2, prereleases_older_than=30 * DAY)
    assert rules.defaults.describe() == "keep 2, pre-releases older than 30d"
    with pytest.raises(RulesError, match="no retention rule"):
        build_rules(path=None)
    path.write_text("[defaults\nkeep = 5\n")
    with pytest.raises(RulesError, match="invalid TOML"):
        build_rules(keep=1, path=path)
    with pytest.raises(RulesError, match="can't be read"):
        build_rules(keep=1, path=tmp_path / "missing.toml")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe[defaults]\nkeep = 1\n", "invalid TOML: not UTF-8 (byte 0)"),
        (b"x = " + b"[" * 100_000 + b"]" * 100_000 + b"\n", "values nested too deeply"),
        (b"x = " + b"{a=" * 5_000 + b"1" + b"}" * 5_000 + b"\n", "values nested too deeply"),
    ],
)
def test_a_rules_file_tomllib_chokes_on_is_one_line_not_a_traceback(
    tmp_path: Path, content: bytes, message: str
) -> None:
    """tomllib raises UnicodeDecodeError and RecursionError, not TOMLDecodeError, for these:
    `creamery prune` printed a traceback, and a server's round died in its safety net."""
    path = tmp_path / "rules.toml"
    path.write_bytes(content)
    with pytest.raises(RulesError) as error:
        build_rules(keep=1, path=path)
    assert str(error.value) == f"{path}: invalid TOML: {message.removeprefix('invalid TOML: ')}"


def test_a_rules_file_is_read_to_a_limit(tmp_path: Path) -> None:
    """`--rules /dev/zero` read without end (tomllib reads the whole file), and a server
    re-reads the file every round; a megabyte is some twenty thousand project tables."""
    with pytest.raises(RulesError) as error:
        build_rules(keep=1, path=Path("/dev/zero"))
    assert str(error.value) == "rules file '/dev/zero' is not a regular file (a device)"
    path = tmp_path / "rules.toml"
    tables = "".join(f'[projects."p{i}-*"]\nkeep = 2\n' for i in range(20_000))
    path.write_text("[defaults]\nkeep = 1\n" + tables)
    assert path.stat().st_size < 1 << 20
    assert len(build_rules(path=path).overrides) == 20_000


def test_glob_patterns_are_normalized_like_names() -> None:
    rules = parse_rules({"projects": {"Acme_*.Tools": {"exempt": True}}}, "r")
    assert rules.for_project("acme-x-tools").exempt
    assert not rules.for_project("acme-x-stuff").exempt


# ----------------------------------------------------------------------------- the command line


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """app 1.0-4.0 (1.0 and 2.0 with sdists), an old and a young pre-release, and lib 1.0-3.0,
    1.0 pinned by app 4.0."""
    root = tmp_path / "packages"
    for version in ("1.0", "2.0", "3.0", "4.0"):
        requires = ("prune-lib==1.0",) if version == "4.0" else ("prune-lib>=1",)
        make_wheel(root, "prune-app", version, requires_dist=requires)
    make_sdist(root, "prune-app", "1.0")
    make_sdist(root, "prune-app", "2.0")
    old = make_wheel(root, "prune-app", "5.0rc1")
    os.utime(old, (time.time() - 60 * DAY, time.time() - 60 * DAY))
    make_wheel(root, "prune-app", "5.0rc2")
    for version in ("1.0", "2.0", "3.0"):
        make_wheel(root, "prune-lib", version)
    return root


def prune(*args: object, env: dict[str, str] | None = None) -> dict[str, object]:
    result = creamery("prune", "--json", *args, env=env)
    assert result.returncode == 0, describe(result)
    found: dict[str, object] = json.loads(result.stdout)
    return found


def files_in(plan_json: object) -> set[str]:
    assert isinstance(plan_json, list)
    return {f for decision in plan_json for f in decision["files"]}


def test_the_dry_run_lists_exactly_what_the_real_run_removes(root: Path) -> None:
    rules = ("--keep", "2", "--prereleases-older-than", "30d")
    before = {p.name for p in root.iterdir() if p.is_file()}
    dry = prune(*rules, "--dry-run", root)
    assert {p.name for p in root.iterdir() if p.is_file()} == before  # nothing removed
    assert dry["dry_run"] is True
    to_remove = files_in(dry["remove"])
    assert to_remove == {
        "prune_app-1.0.tar.gz",
        "prune_app-1.0-py3-none-any.whl",
        "prune_app-2.0.tar.gz",
        "prune_app-2.0-py3-none-any.whl",
        "prune_app-3.0-py3-none-any.whl",
        "prune_app-5.0rc1-py3-none-any.whl",  # the old pre-release; 5.0rc2 is the newest
    }
    protected = {(d["project"], d["version"]): d["protected_by"] for d in dry["protected"]}
    assert protected == {
        ("prune-app", "4.0"): ["the newest final release"],
        ("prune-lib", "1.0"): ["pinned by prune-app 4.0 (Requires-Dist: prune-lib==1.0)"],
    }

    real = prune(*rules, root)
    assert files_in(real["removed"]) == to_remove
    assert real["remove"] == dry["remove"] and real["skipped"] == []
    assert before - {p.name for p in root.iterdir() if p.is_file()} == to_remove

    again = creamery("prune", *rules, root)
    assert again.returncode == 0, describe(again)
    assert "nothing to remove" in again.stdout


def test_force_on_the_command_line_removes_protected_releases(root: Path) -> None:
    rules = ("--keep", "1", "--prereleases-older-than", "30d")
    normal = prune(*rules, "--dry-run", root)
    assert {(d["project"], d["version"]) for d in normal["protected"]} == {
        ("prune-app", "4.0"),
        ("prune-lib", "1.0"),
    }
    table = creamery("prune", *rules, "--force", "--dry-run", root)
    assert table.returncode == 0, describe(table)
    assert table.stdout.startswith("rules: keep 1, pre-releases older than 30d (forced)\n")
    forced = prune(*rules, "--force", root)
    assert forced["force"] is True and forced["protected"] == []
    assert files_in(forced["removed"]) == files_in(normal["remove"]) | {
        "prune_app-4.0-py3-none-any.whl",
        "prune_lib-1.0-py3-none-any.whl",
    }
    left = sorted(p.name for p in root.iterdir() if p.is_file())
    assert left == ["prune_app-5.0rc2-py3-none-any.whl", "prune_lib-3.0-py3-none-any.whl"]


def test_the_cli_reads_every_spelling_of_a_release_for_the_pins(tmp_path: Path) -> None:
    root = tmp_path / "packages"
    for version in ("1.0", "1.0.0", "2.0"):
        make_wheel(root, "prune-spelled", version)
    make_wheel(root, "prune-pinner", "1.0", requires_dist=["prune-spelled===1.0.0"])
    planned = prune("--keep", "1", "--dry-run", root)
    assert planned["remove"] == []
    [protected] = planned["protected"]  # type: ignore[misc]
    assert protected["protected_by"] == [
        "pinned by prune-pinner 1.0 (Requires-Dist: prune-spelled===1.0.0)"
    ]


def test_a_run_stopped_by_an_error_says_what_it_removed_before(tmp_path: Path) -> None:
    """The second root holds a directory where a wheel of 2.0 would be: deleting 2.0 fails
    halfway. The table of what went (1.0) comes first, then one error line naming the path
    and the count; exit status 2. It said only `can't prune: Is a directory`."""
    first, second = tmp_path / "one", tmp_path / "two"
    for version in ("1.0", "2.0", "3.0"):
        make_wheel(first, "prune-stop", version)
    blocker = second / "prune_stop-2.0-py3-none-any.whl"
    (blocker / "inside").mkdir(parents=True)
    result = creamery("prune", "--keep", "1", first, second)
    assert result.returncode == 2, describe(result)
    assert result.stderr == (
        f"creamery: error: can't prune: Is a directory: {str(blocker)!r} (stopped after removing"
        " 1 release (1 file) of 1 project)\n"
    )
    assert "removed 1 release (1 file) of 1 project" in result.stdout, describe(result)
    assert not (first / "prune_stop-1.0-py3-none-any.whl").exists()
    assert (first / "prune_stop-3.0-py3-none-any.whl").exists()


def test_bad_rules_exit_2_with_one_line(root: Path, tmp_path: Path) -> None:
    before = sorted(root.iterdir())
    rules = tmp_path / "rules.toml"
    rules.write_text('[projects."prune-app"]\nkeep = 0\n')
    for args in (
        ("--rules", rules),
        ("--keep", "0"),
        ("--keep", "2", "--prereleases-older-than", "soon"),
        (),
        ("--keep", "1", "--project", "no-such-project"),
    ):
        result = creamery("prune", *args, root)
        assert result.returncode == 2, describe(result)
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("creamery: error: ")
    assert [p for p in sorted(root.iterdir()) if p.name != ".creamery"] == before


def test_a_rules_file_with_overrides_from_the_command_line(root: Path, tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[defaults]\nkeep = 1\n\n[projects."Prune_Lib"]\nexempt = true\n\n'
        '[projects."prune-app"]\nkeep = 5\n'
    )
    dry = prune("--rules", rules, "--dry-run", root)
    assert dry["exempt"] == ["prune-lib"]
    assert files_in(dry["remove"]) == {"prune_app-1.0.tar.gz", "prune_app-1.0-py3-none-any.whl"}
    table = creamery("prune", "--rules", rules, "--dry-run", root)
    assert table.returncode == 0, describe(table)
    assert "remove  prune-app 1.0" in table.stdout and "beyond the newest 5" in table.stdout
    assert "dry run, nothing removed: 1 release (2 files) of 1 project to remove" in table.stdout


# ----------------------------------------------------------------------------- a running server


@pytest.fixture
def served(root: Path) -> Iterator[Server]:
    with run_server([root], "-a", ".", "-P", ".", "--disable-fallback") as server:
        yield server


def simple_versions(server: Server, project: str) -> set[str]:
    response = httpx.get(f"{server.url}/simple/{project}/", headers=JSON_ACCEPT, timeout=10)
    assert response.status_code == 200
    return set(response.json()["versions"])


def test_pip_and_uv_stop_seeing_pruned_versions_and_the_audit_says_who(
    root: Path, served: Server, tmp_path: Path
) -> None:
    index = served.url
    fetched = pip_download(index, tmp_path / "before", tmp_path / "home", "prune-app==1.0")
    assert fetched.returncode == 0, describe(fetched)

    result = creamery("prune", "--keep", "2", root)
    assert result.returncode == 0, describe(result)
    assert "removed 3 releases (5 files) of 1 project, kept 2 for protection" in result.stdout
    # The change feed: the server knows before its next answer.
    assert simple_versions(served, "prune-app") == {"4.0", "5.0rc1", "5.0rc2"}

    pip = pip_download(index, tmp_path / "after", tmp_path / "home", "prune-app==1.0")
    assert pip.returncode != 0, describe(pip)
    assert "No matching distribution" in pip.stderr or "from versions" in pip.stderr
    uv = uv_install(served.url, tmp_path / "uv", tmp_path / "home", "prune-app==2.0")
    assert uv.returncode != 0, describe(uv)
    assert "prune-app" in uv.stderr and "2.0" in uv.stderr
    kept = uv_install(served.url, tmp_path / "uv4", tmp_path / "home", "prune-app==4.0")
    assert kept.returncode == 0, describe(kept)

    audit = creamery("audit", "--json", root)
    assert audit.returncode == 0, describe(audit)
    entries = [json.loads(line) for line in audit.stdout.splitlines()]
    removals = {(e["version"], e["reason"]) for e in entries if e["action"] == "remove"}
    assert removals == {
        ("1.0", "prune: beyond the newest 2"),
        ("2.0", "prune: beyond the newest 2"),
        ("3.0", "prune: beyond the newest 2"),
    }
    assert {(e["user"], e["client"]) for e in entries} == {(f"local:{getpass.getuser()}", "cli")}
    (summary,) = [e for e in entries if e["action"] == "prune"]
    assert summary["detail"].startswith("removed 3 releases (5 files) of 1 project")


def test_prune_every_in_a_server_with_two_workers_prunes_once_per_round(
    root: Path, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[defaults]\nkeep = 3\n[projects."prune-lib"]\nexempt = true\n')
    args = ("-a", ".", "-P", ".", "--disable-fallback", "--workers", "2", "-v")
    prune_args = ("--prune-every", "2s", "--prune-rules", str(rules))
    with run_server([root], *args, *prune_args) as server:
        # app 1.0, 2.0 and 3.0 are beyond the newest 3; lib is exempt.
        assert wait_for(
            lambda: simple_versions(server, "prune-app") == {"4.0", "5.0rc1", "5.0rc2"},
            timeout=20,
        ), simple_versions(server, "prune-app")
        assert simple_versions(server, "prune-lib") == {"1.0", "2.0", "3.0"}
        time.sleep(4.5)  # two more rounds: nothing to do, nothing removed twice
        log = server.log()
        assert log.count("prune: removed 3 releases (5 files)") == 1, log

        rules.write_text("[defaults]\nkeep = 0\n")  # broken: the next rounds skip
        assert wait_for(lambda: "prune skipped: " in server.log(), timeout=10), server.log()
        rules.write_text("[defaults]\nkeep = 1\n")  # read again: 5.0rc1 goes, 4.0 is protected
        assert wait_for(
            lambda: simple_versions(server, "prune-app") == {"4.0", "5.0rc2"}, timeout=10
        ), simple_versions(server, "prune-app")
        # lib's exemption is gone: 2.0 goes, 1.0 stays pinned by app 4.0.
        assert wait_for(lambda: simple_versions(server, "prune-lib") == {"1.0", "3.0"}, timeout=10)
    audit = creamery("audit", "--json", root)
    entries = [json.loads(line) for line in audit.stdout.splitlines()]
    removals = [(e["project"], e["version"]) for e in entries if e["action"] == "remove"]
    # One worker pruned each round: no release was removed twice.
    assert sorted(removals) == sorted(
        [("prune-app", v) for v in ("1.0", "2.0", "3.0", "5.0rc1")] + [("prune-lib", "2.0")]
    ), entries
    assert {e["user"] for e in entries} == {"server:prune"}
    assert [e["action"] for e in entries].count("prune") == 2
    assert not (root / "prune_app-1.0-py3-none-any.whl").exists()


def test_one_worker_of_a_host_prunes_at_a_time_and_only_when_due(root: Path) -> None:
    catalog = Catalog(Config(roots=(root,)))
    catalog.load()
    schedule = Schedule(catalog, 3600, lambda: Rules(Rule(keep=1)))
    lock = catalog.state.locks / LOCK_FILE
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        with lock.open("w") as other_worker:
            fcntl.flock(other_worker, fcntl.LOCK_EX)
            assert schedule.run_if_due() is None  # busy: this round is the other worker's
        outcome = schedule.run_if_due()  # never ran: due
        assert outcome is not None and len(outcome.removed) == 5, outcome
        assert schedule.run_if_due() is None  # ran just now: not due for an hour
        schedule.interval = 0.1
        time.sleep(0.2)
        again = schedule.run_if_due()
        assert again is not None and again.removed == [] and again.skipped == []
    finally:
        catalog.close()
    assert sorted(p.name for p in root.glob("prune_app-*")) == [
        "prune_app-4.0-py3-none-any.whl",
        "prune_app-5.0rc2-py3-none-any.whl",
    ]


@pytest.mark.parametrize("stored", ["ahead", "inf"])
def test_a_last_run_in_the_future_does_not_stop_pruning(root: Path, stored: str) -> None:
    """The clock was set back a year (or a replica's runs ahead), or the state says `inf`:
    the last run looks later than now, and no run was ever due again."""
    catalog = Catalog(Config(roots=(root,)))
    catalog.load()
    schedule = Schedule(catalog, 3600, lambda: Rules(Rule(keep=1)))
    moment = f"{time.time() + 365 * DAY:.3f}" if stored == "ahead" else stored
    try:
        catalog.state.store.put(LAST_RUN_KEY, moment.encode(), if_absent=False)
        outcome = schedule.run_if_due()
        assert outcome is not None and len(outcome.removed) == 5, outcome
        assert schedule.run_if_due() is None  # and the clock is the present one again
        # A replica whose clock runs an hour ahead wrote it: not due (replicas do not take
        # turns pruning at every tick), only a day or more ahead is a clock set back.
        catalog.state.store.put(LAST_RUN_KEY, f"{time.time() + 3600:.3f}".encode(), if_absent=False)
        assert schedule.run_if_due() is None
    finally:
        catalog.close()


def test_a_run_removes_only_what_it_planned_even_when_others_change_things(root: Path) -> None:
    catalog = Catalog(Config(roots=(root,)))
    catalog.load()
    try:
        planned = make_plan(catalog, Rules(Rule(keep=2)))
        assert [d.release.name for d in planned.removals] == [
            "prune-app 1.0",
            "prune-app 2.0",
            "prune-app 3.0",
        ]
        # Meanwhile another process removes 1.0 and uploads a file to 3.0.
        catalog.remove("prune-app", "1.0")
        make_sdist(root, "prune-app", "3.0")
        catalog.index.refresh(["prune_app-3.0.tar.gz"])
        outcome = execute(catalog, planned, SERVER_ACTOR)
    finally:
        catalog.close()
    assert [d.release.name for d in outcome.removed] == ["prune-app 2.0"]
    assert [(d.release.name, why) for d, why in outcome.skipped] == [
        ("prune-app 1.0", "already removed"),
        ("prune-app 3.0", "its files changed since the plan"),
    ]
    assert (root / "prune_app-3.0-py3-none-any.whl").exists()


def test_a_release_another_process_already_deleted_is_skipped_not_counted(root: Path) -> None:
    """Another `creamery prune` deleted the files, and this process's index has not heard: the
    removal deletes nothing, so it is "already removed", not one more release removed (three
    runs side by side reported 789 removals of 299 releases)."""
    catalog = Catalog(Config(roots=(root,)))
    catalog.load()
    try:
        planned = make_plan(catalog, Rules(Rule(keep=4)))
        assert [d.release.name for d in planned.removals] == ["prune-app 1.0", "prune-app 2.0"]
        for name in ("prune_app-1.0-py3-none-any.whl", "prune_app-1.0.tar.gz"):
            (root / name).unlink()  # behind the catalog's back: its index still lists them
        outcome = execute(catalog, planned, SERVER_ACTOR)
    finally:
        catalog.close()
    assert [d.release.name for d in outcome.removed] == ["prune-app 2.0"]
    assert [(d.release.name, why) for d, why in outcome.skipped] == [
        ("prune-app 1.0", "already removed")
    ]


def test_a_real_run_stops_while_another_prunes_on_the_host(root: Path) -> None:
    """`creamery prune` takes the host's prune lock (a server's round holds it too): a second
    run at the same time stops with one line and removes nothing; a dry run needs no lock."""
    before = sorted(root.iterdir())
    state = root / ".creamery"
    lock = state / "locks" / LOCK_FILE
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as other:
        fcntl.flock(other, fcntl.LOCK_EX)
        result = creamery("prune", "--keep", "1", root)
        assert result.returncode == 2, describe(result)
        assert result.stderr == (
            "creamery: error: another prune is running on this host (a server's --prune-every"
            " round or creamery prune): try again when it is done\n"
        )
        assert [p for p in sorted(root.iterdir()) if p.name != ".creamery"] == [
            p for p in before if p.name != ".creamery"
        ]
        assert prune("--keep", "1", "--dry-run", root)["remove"] != []
    assert prune("--keep", "1", root)["removed"] != []


def test_a_bad_prune_rule_stops_the_server_at_start(root: Path, tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text("[defaults]\nkeep = -1\n")
    result = creamery("run", "--prune-every", "1d", "--prune-rules", rules, root)
    assert result.returncode == 2, describe(result)
    assert "keep must be a whole number of releases" in result.stderr
    result = creamery("run", "--prune-every", "1d", root)
    assert result.returncode == 2 and "--prune-every needs a rule" in result.stderr, describe(
        result
    )
    env = clean_env(CREAMERY_PRUNE_EVERY="1d", CREAMERY_PRUNE_KEEP="0")
    result = creamery("run", root, env=env)
    assert result.returncode == 2 and "CREAMERY_PRUNE_KEEP='0'" in result.stderr, describe(result)


def test_a_prune_rule_without_an_interval_stops_the_server_at_start(root: Path) -> None:
    """`--prune-keep 5` alone pruned nothing, silently: retention that looked on."""
    result = creamery("run", "--prune-keep", "5", root)
    assert result.returncode == 2, describe(result)
    assert result.stderr == (
        "creamery: error: --prune-keep applies to --prune-every only: add --prune-every DURATION"
        " (such as 1d), or run creamery prune\n"
    )
    env = clean_env(CREAMERY_PRUNE_PRERELEASES_OLDER_THAN="30d")
    result = creamery("run", root, env=env)
    assert result.returncode == 2, describe(result)
    assert "--prune-prereleases-older-than applies to --prune-every only" in result.stderr


@pytest.mark.parametrize("interval", ["0.5s", "0.001"])
def test_a_prune_interval_under_a_second_stops_the_server_at_start(
    root: Path, interval: str
) -> None:
    """A timer of a millisecond would spin: take the lock, read the state, plan over every
    hosted release, a thousand times a second, in every worker."""
    result = creamery("run", "--prune-every", interval, "--prune-keep", "1", root)
    assert result.returncode == 2, describe(result)
    assert result.stderr.startswith("creamery: error: --prune-every must be at least 1s")
    env = clean_env(CREAMERY_PRUNE_EVERY=interval, CREAMERY_PRUNE_KEEP="1")
    result = creamery("run", root, env=env)
    assert result.returncode == 2 and "at least 1s" in result.stderr, describe(result)
    assert "CREAMERY_PRUNE_EVERY" in result.stderr, describe(result)


# ----------------------------------------------------------------------------- a bucket


def test_the_dry_run_matches_the_real_run_on_a_bucket(
    s3: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    dists = tmp_path / "dists"
    built = [make_wheel(dists, "s3pinner", "1.0", requires_dist=["s3prune==1.0"])]
    for version in ("1.0", "2.0", "3.0"):
        built += [make_sdist(dists, "s3prune", version), make_wheel(dists, "s3prune", version)]
    for path in built:
        s3.put(s3_bucket, f"pkgs/{path.name}", path.read_bytes())
    env = clean_env(**s3.env())
    root = f"s3://{s3_bucket}/pkgs"

    dry = prune("--keep", "1", "--dry-run", root, env=env)
    to_remove = files_in(dry["remove"])
    assert to_remove == {"s3prune-2.0.tar.gz", "s3prune-2.0-py3-none-any.whl"}
    assert [d["protected_by"] for d in dry["protected"]] == [
        ["pinned by s3pinner 1.0 (Requires-Dist: s3prune==1.0)"]
    ]
    real = prune("--keep", "1", root, env=env)
    assert files_in(real["removed"]) == to_remove
    keys = set(s3.keys(s3_bucket, "pkgs/"))
    assert not {f"pkgs/{name}" for name in to_remove} & keys
    assert {"pkgs/s3prune-1.0.tar.gz", "pkgs/s3prune-3.0.tar.gz"} <= keys
    audit = creamery("audit", "--json", root, env=env)
    actions = [json.loads(line)["action"] for line in audit.stdout.splitlines()]
    assert actions == ["remove", "prune"], audit.stdout


def test_prune_every_on_a_bucket_removes_by_the_rules(
    s3: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    dists = tmp_path / "dists"
    built = [make_wheel(dists, "s3every", v) for v in ("1.0", "2.0", "3.0")]
    for path in built:
        s3.put(s3_bucket, f"pkgs/{path.name}", path.read_bytes())
    args = (
        "-a",
        ".",
        "-P",
        ".",
        "--disable-fallback",
        "-v",
        "--prune-every",
        "2s",
        "--prune-keep",
        "2",
    )
    with run_server([f"s3://{s3_bucket}/pkgs"], *args, env=s3.env()) as server:
        assert wait_for(lambda: simple_versions(server, "s3every") == {"2.0", "3.0"}, timeout=20)
        # The run's log line comes after its summary entry.
        assert wait_for(lambda: "prune: removed 1 release" in server.log(), timeout=10)
    keys = set(s3.keys(s3_bucket, "pkgs/"))
    assert f"pkgs/{built[0].name}" not in keys and f"pkgs/{built[1].name}" in keys
    assert "pkgs/.creamery/prune/last-run" in keys  # shared by the bucket's replicas
    audit = creamery("audit", "--json", f"s3://{s3_bucket}/pkgs", env=clean_env(**s3.env()))
    entries = [json.loads(line) for line in audit.stdout.splitlines()]
    assert [(e["action"], e["version"], e["user"]) for e in entries] == [
        ("remove", "1.0", "server:prune"),
        ("prune", None, "server:prune"),
    ]
