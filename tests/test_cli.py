"""The command line: parsing into a Config, one-line errors, pypiserver's legacy forms."""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.clients import clean_env, creamery
from support.servers import free_port

from creamery import __version__, server, wsgi
from creamery.cli.argtypes import parse_size
from creamery.cli.main import build_run_config, main, parse_args
from creamery.core.config import Config, ConfigError
from creamery.http.logs import LOGGER_NAME, log_level, logging_config, setup_logging


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "packages"
    path.mkdir()
    return path


def assert_one_error_line(capsys: pytest.CaptureFixture[str], status: int) -> str:
    err = capsys.readouterr().err
    assert status == 2
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("creamery: error: ")
    return lines[0]


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--bogus"],
        ["run", "-p", "abc"],
        ["run", "--port", "70000"],
        ["run", "--workers", "0"],
        ["run", "--cache-control", "-5"],
        ["run", "--rescan-interval", "-1"],
        ["run", "--rescan-interval", "nan"],
        ["run", "--max-upload-size", "lots"],
        ["run", "--max-connections", "0"],
        ["run", "--header-timeout", "0"],
        ["run", "--body-timeout", "-1"],
        ["run", "--max-client-requests", "-1"],
        ["run", "--server", "nope"],
        ["run", "--log-stream", "file"],
        ["run", "--backend", "sql"],
        ["run", "--hash-algo", "yes"],
        ["run", "--health-endpoint", "/simple/"],
        ["run", "-a", "bogus"],
        ["run", "-a", "update,."],
        ["run", "-a", "."],
        ["run", "-P", "."],
        ["run", "-P", "{tmp}/missing.htpasswd"],
        ["run", "--welcome", "{tmp}/missing.html"],
        ["run", "--welcome", "{tmp}"],
        ["--bogus"],
        ["-p", "abc"],
    ],
)
def test_bad_values_give_one_line_and_status_2(
    argv: list[str], root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [arg.format(tmp=root.parent) for arg in argv]
    status = main([*argv, str(root)])
    assert_one_error_line(capsys, status)


def test_missing_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = assert_one_error_line(capsys, main(["run", str(tmp_path / "nope")]))
    assert "nope" in line


def test_default_directory_must_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    line = assert_one_error_line(capsys, main(["run"]))
    assert "~/packages" in line


def test_flag_errors_come_before_directory_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = assert_one_error_line(
        capsys, main(["run", "--hash-algo", "yes", str(tmp_path / "nope")])
    )
    assert "hash algorithm" in line


def test_subprocess_error_is_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "creamery", "run", "--bogus"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["creamery: error: unrecognized arguments: --bogus"]


# ---------------------------------------------------------------- building the Config


def test_defaults(root: Path) -> None:
    config = build_run_config(["run", str(root)])
    assert config == Config(roots=(root.resolve(),))


def test_every_run_flag(root: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    passwords = tmp_path / "htpasswd"
    passwords.write_text("")
    welcome = tmp_path / "welcome.html"
    welcome.write_text("<html></html>")
    config = build_run_config(
        [
            "run",
            "-p",
            "9000",
            "-H",
            "127.0.0.1",
            "-a",
            "Update, download",
            "-P",
            str(passwords),
            "--disable-fallback",
            "--fallback-url",
            "https://example.org/simple/",
            "--health-endpoint",
            "/ping",
            "--server",
            "UVICORN",
            "-o",
            "--welcome",
            str(welcome),
            "--cache-control",
            "3600",
            "--server-base-url",
            "/pypi/",
            "--log-req-frmt",
            "req",
            "--log-res-frmt",
            "res",
            "--log-err-frmt",
            "err",
            "--workers",
            "4",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--rescan-interval",
            "0",
            "--disable-watch",
            "--max-upload-size",
            "500M",
            *("--max-connections", "64", "--header-timeout", "2.5", "--body-timeout", "0"),
            *("--max-client-requests", "0", "--reuse-port"),
            str(root),
            str(other),
        ]
    )
    assert config.roots == (root.resolve(), other.resolve())
    assert (config.port, config.host) == (9000, "127.0.0.1")
    assert config.authenticate == {"update", "download"}
    assert config.password_file == passwords
    assert config.disable_fallback and config.overwrite
    assert config.fallback_url == "https://example.org/simple/"
    assert config.health_endpoint == "/ping"
    assert config.server == "uvicorn"
    assert config.welcome_file == welcome
    assert config.cache_control == 3600
    assert config.server_base_url == "/pypi"
    assert (config.log_req_frmt, config.log_res_frmt, config.log_err_frmt) == ("req", "res", "err")
    assert config.workers == 4
    assert config.cache_dir == tmp_path / "cache"
    assert config.rescan_interval == 0
    assert not config.watch
    assert config.max_upload_size == 500 << 20
    assert (config.max_connections, config.header_timeout, config.body_timeout) == (64, 2.5, 0)
    assert config.max_client_requests == 0 and config.reuse_port


def test_no_authentication_needs_both_dots(root: Path) -> None:
    config = build_run_config(["run", "-P", ".", "-a", ".", str(root)])
    assert config.auth_disabled
    assert config.password_file is None
    assert config.authenticate == frozenset()


def test_common_flags_before_and_after_the_command_agree(root: Path, tmp_path: Path) -> None:
    common = [
        "-v",
        "--hash-algo",
        "md5",
        "--backend",
        "simple-dir",
        "--log-stream",
        "stderr",
        "--log-file",
        str(tmp_path / "log"),
        "--log-frmt",
        "%(message)s",
    ]
    before = build_run_config([*common, "run", str(root)])
    after = build_run_config(["run", *common, str(root)])
    assert before == after
    assert before.verbosity == 1
    assert before.hash_algo == "md5"
    assert before.backend == "simple-dir"
    assert before.log_stream == "stderr"
    assert before.log_file == tmp_path / "log"
    assert before.log_frmt == "%(message)s"


def test_verbosity_counts_on_both_sides(root: Path) -> None:
    assert build_run_config(["-vv", "run", "-v", str(root)]).verbosity == 3


def test_hash_algo_can_be_disabled(root: Path) -> None:
    assert build_run_config(["run", "--hash-algo", "off", str(root)]).hash_algo is None


@pytest.mark.parametrize(
    ("text", "size"),
    [("1024", 1024), ("1k", 1024), ("500M", 500 << 20), ("1G", 1 << 30), ("2GiB", 2 << 30)],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "0", "-1G", "1X", "G", "1 GB B"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_size(text)


# ---------------------------------------------------------------- legacy forms


def test_legacy_flags_without_command(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = build_run_config(["-p", "9000", str(root)])
    assert config.port == 9000
    assert config.roots == (root.resolve(),)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert "deprecated" in err[0]


def test_legacy_directory_only(root: Path) -> None:
    assert build_run_config([str(root)]) == build_run_config(["run", str(root)])


def test_bare_command_serves_home_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "packages").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path))
    assert build_run_config([]).roots == ((tmp_path / "packages").resolve(),)


def test_legacy_error_has_no_deprecation_note(capsys: pytest.CaptureFixture[str]) -> None:
    line = assert_one_error_line(capsys, main(["--bogus"]))
    assert line == "creamery: error: unrecognized arguments: --bogus"


@pytest.mark.parametrize(
    ("argv", "execute"),
    [(["-U", "DIR"], False), (["DIR", "-U", "-x"], True), (["-Ux", "DIR"], True)],
)
def test_dash_u_means_update(argv: list[str], execute: bool) -> None:
    args = parse_args(argv)
    assert args.command == "update"
    assert args.package_directory == ["DIR"]
    assert args.execute is execute


def test_update_calls_run_update(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    seen = []
    module = types.ModuleType("creamery.cli.update")
    module.run_update = lambda args: seen.append(args) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "creamery.cli.update", module)
    assert main(["-v", "update", "-x", "-d", "dl", "--ignorelist-file", "ign", str(root)]) == 0
    (args,) = seen
    assert args.execute and args.download_directory == "dl" and args.ignorelist_file == "ign"
    assert args.verbosity == 1


def test_update_not_available(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "creamery.cli.update", None)
    line = assert_one_error_line(capsys, main(["update"]))
    assert line == "creamery: error: creamery update is not available yet"


# ---------------------------------------------------------------- --version, --help


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"creamery {__version__}\n"


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["update", "-h"]])
def test_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 0
    assert "usage: creamery" in capsys.readouterr().out


def test_status_help_reads_as_the_issue_writes_it(capsys: pytest.CaptureFixture[str]) -> None:
    """`creamery status PROJECT STATUS [--reason TEXT] [PACKAGES_DIRECTORY]`, each explained."""
    assert main(["status", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "[--reason TEXT]" in out and "PROJECT [STATUS] [PACKAGES_DIRECTORY ...]" in out
    assert "PROJECT a hosted project" in out and "--reason TEXT one line" in out


# ---------------------------------------------------------------- server choice


def test_auto_picks_granian() -> None:
    assert server.pick_server("auto") == "granian"


@pytest.mark.parametrize("name", server.UNSUPPORTED_SERVERS)
def test_unsupported_servers(name: str) -> None:
    with pytest.raises(ConfigError, match="not supported"):
        server.pick_server(name)


def test_uninstalled_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "_installed", lambda module: module != "hypercorn")
    with pytest.raises(ConfigError, match="pip install hypercorn"):
        server.pick_server("hypercorn")


def test_uninstalled_server_from_main(
    root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(server, "_installed", lambda module: module != "hypercorn")
    monkeypatch.setattr("creamery.http.logs.setup_logging", lambda config: None)
    line = assert_one_error_line(capsys, main(["run", "--server", "hypercorn", str(root)]))
    assert line.endswith("server 'hypercorn' is not installed: pip install hypercorn")


# ---------------------------------------------------------------- logging


@pytest.fixture
def restore_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger(LOGGER_NAME)
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield logger
    for handler in logger.handlers:
        handler.close()
    logger.handlers[:], logger.level, logger.propagate = saved


@pytest.mark.parametrize(
    ("verbosity", "level"),
    [(0, logging.WARNING), (1, logging.INFO), (2, logging.DEBUG), (3, 1), (7, 1)],
)
def test_verbosity_levels(verbosity: int, level: int) -> None:
    assert log_level(verbosity) == level


def test_log_format_applies_to_stream_and_file(
    tmp_path: Path, restore_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    log_file = tmp_path / "creamery.log"
    config = Config(verbosity=1, log_file=log_file, log_stream="stderr", log_frmt="<%(message)s>")
    setup_logging(config)
    restore_logger.info("hello")
    for handler in restore_logger.handlers:
        handler.flush()
    assert capsys.readouterr().err == "<hello>\n"
    assert log_file.read_text() == "<hello>\n"


def test_every_handler_keeps_client_values_on_one_line(
    tmp_path: Path, restore_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    """Control characters in a logged value are escaped; a record marked multiline (a server
    error's traceback, `--log-err-frmt`) keeps its lines."""
    log_file = tmp_path / "creamery.log"
    config = Config(verbosity=1, log_file=log_file, log_stream="stderr", log_frmt="<%(message)s>")
    setup_logging(config)
    restore_logger.info("rejected: %s (%d)", "x\r\nforged\x1b[31m", 400)
    restore_logger.error("Traceback:\n  line", extra={"multiline": True})
    for handler in restore_logger.handlers:
        handler.flush()
    expected = "<rejected: x\\r\\nforged\\x1b[31m (400)>\n<Traceback:\n  line>\n"
    assert capsys.readouterr().err == expected
    assert log_file.read_text() == expected


def test_log_stream_none_is_silent(
    restore_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging(Config(log_stream="none"))
    restore_logger.error("not shown")
    assert capsys.readouterr() == ("", "")


def test_unwritable_log_file(tmp_path: Path, restore_logger: logging.Logger) -> None:
    with pytest.raises(ConfigError, match="can't open log file"):
        setup_logging(Config(log_file=tmp_path / "no" / "dir.log"))


def test_logging_config_covers_server_loggers() -> None:
    loggers = logging_config(Config(), ["uvicorn"])["loggers"]
    assert set(loggers) == {"creamery", "uvicorn"}


# ---------------------------------------------------------------- paste


def test_paste_factory_converts_strings(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}
    monkeypatch.setattr(wsgi, "wsgi_app", lambda **kwargs: seen.update(kwargs))
    wsgi.paste_app_factory(
        {},
        roots="/a\n/b\n",
        authenticate="update download",
        cache_control="60",
        verbosity="2",
        overwrite="false",
        disable_fallback="yes",
        fallback_url="https://example.org/",
    )
    assert seen == {
        "roots": ["/a", "/b"],
        "authenticate": ["update", "download"],
        "cache_control": 60,
        "verbosity": 2,
        "overwrite": False,
        "disable_fallback": True,
        "fallback_url": "https://example.org/",
    }


@pytest.mark.parametrize(
    "command",
    [
        ["prune", "--keep", "1"],
        ["status", "gone"],
        ["status", "gone", "archived"],
        ["yank", "gone", "1.0"],
        ["remove", "gone", "1.0"],
        ["docs", "remove", "gone"],
        ["update"],
    ],
)
def test_a_store_that_does_not_answer_is_one_line_not_a_traceback(command: list[str]) -> None:
    """Was: `creamery prune`, `status`, `yank`, `remove`, `docs remove` and `update` on an
    s3:// root whose store was down printed a StoreUnavailable traceback (exit 1); `token` and
    `owners` already said it in a line."""
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens: connection refused
    env = clean_env(
        AWS_ENDPOINT_URL=nobody,
        AWS_ACCESS_KEY_ID="x",
        AWS_SECRET_ACCESS_KEY="y",
        AWS_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    result = creamery(*command, "s3://bucket/packages", env=env)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("creamery: error: can't read the index: s3://bucket/packages/"), last
    assert last.endswith("the store does not answer (LIST: connection refused)"), last
