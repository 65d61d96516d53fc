"""Options from flags, CREAMERY_* variables and a TOML file: precedence, conversion, errors,
`--print-config`, and a real server configured all three ways.

Precedence is flag > environment > file > default; values from the environment and the file go
through the flags' own converters, and an error names the variable or the file and key.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from support.clients import clean_env, creamery
from support.dists import make_wheel
from support.servers import run_server

from creamery.cli.main import build_run_config, config_from_args, main, parse_args, run_options
from creamery.cli.settings import CONFIG_FILE_ENV, ENV_PREFIX, Source
from creamery.core.config import Config, ConfigError, config_from_app_kwargs

DOCS = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "packages"
    path.mkdir()
    return path


@pytest.fixture(autouse=True)
def no_creamery_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """`main()` reads os.environ: start every test without the caller's CREAMERY_* variables."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


def config(argv: list[str], env: dict[str, str] | None = None) -> tuple[Config, dict[str, Source]]:
    args = parse_args(argv, env or {})
    return config_from_args(args), args.sources


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def one_error_line(capsys: pytest.CaptureFixture[str], status: int) -> str:
    err = capsys.readouterr().err
    assert status == 2, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("creamery: error: ")
    return lines[0].removeprefix("creamery: error: ")


# ---------------------------------------------------------------- precedence


def test_flag_beats_env_beats_file_beats_default(root: Path, tmp_path: Path) -> None:
    toml = write(
        tmp_path / "creamery.toml",
        '[creamery]\nport = 1111\nhash-algo = "md5"\nfallback-url = "https://file.example/"\n'
        "workers = 3\n",
    )
    env = {"CREAMERY_PORT": "2222", "CREAMERY_HASH_ALGO": "sha1"}
    cfg, sources = config(["run", "--config", str(toml), "-p", "3333", str(root)], env)
    assert cfg.port == 3333 and sources["port"] == Source("flag")
    assert cfg.hash_algo == "sha1" and sources["hash_algo"].kind == "env"
    assert cfg.fallback_url == "https://file.example/" and sources["fallback_url"].kind == "file"
    assert cfg.workers == 3
    assert cfg.server_base_url == "/" and sources["server_base_url"] == Source("default")
    # Without the flag, the environment; without that, the file.
    assert config(["run", "--config", str(toml), str(root)], env)[0].port == 2222
    assert config(["run", "--config", str(toml), str(root)])[0].port == 1111
    assert config(["run", str(root)])[0].port == 8080


def test_common_flags_before_the_command_count_as_flags(root: Path) -> None:
    env = {"CREAMERY_VERBOSE": "0", "CREAMERY_LOG_STREAM": "stderr", "CREAMERY_HASH_ALGO": "md5"}
    cfg, sources = config(["-vv", "--hash-algo", "sha1", "run", str(root)], env)
    assert (cfg.verbosity, cfg.hash_algo, cfg.log_stream) == (2, "sha1", "stderr")
    assert sources["verbosity"] == sources["hash_algo"] == Source("flag")
    assert config(["run", "-v", str(root)], {"CREAMERY_VERBOSE": "3"})[0].verbosity == 1
    assert config(["run", str(root)], {"CREAMERY_VERBOSE": "3"})[0].verbosity == 3


def test_legacy_form_reads_the_environment(root: Path) -> None:
    assert config(["-p", "9999", str(root)], {"CREAMERY_WORKERS": "2"})[0].workers == 2


def test_environment_does_not_touch_other_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CREAMERY_PORT", "not a port")
    monkeypatch.setenv("CREAMERY_VERBOSE", "2")
    args = parse_args(["passwd", str(tmp_path / "htpasswd"), "bob"])
    assert args.verbosity == 0 and not hasattr(args, "sources")


# ---------------------------------------------------------------- the environment


def test_environment_values_of_every_kind(root: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    env = {
        "CREAMERY_PACKAGES_DIRECTORY": f"{root}{os.pathsep}{other}",
        "CREAMERY_HOST": "127.0.0.2",
        "CREAMERY_AUTHENTICATE": "download, update",
        "CREAMERY_DISABLE_FALLBACK": "yes",
        "CREAMERY_OVERWRITE": "ON",
        "CREAMERY_METRICS": "0",
        "CREAMERY_MIRROR": "false",
        "CREAMERY_EXTRA_UPSTREAM": "https://a.example/simple/, https://b.example/simple/",
        "CREAMERY_MIRROR_MERGE": "Foo.Bar,baz",
        "CREAMERY_MAX_UPLOAD_SIZE": "500M",
        "CREAMERY_RESCAN_INTERVAL": "2.5",
        "CREAMERY_LOG_STREAM": "NONE",
        "CREAMERY_HASH_ALGO": "off",
        "CREAMERY_SERVER_BASE_URL": "/pypi/",
        "CREAMERY_CACHE_CONTROL": "60",
        "CREAMERY_VERBOSE": "2",
        "CREAMERY_BACKEND": "cached-dir",
        "CREAMERY_SERVER": "uvicorn",
        "CREAMERY_LOG_FRMT": "%(message)s",
    }
    cfg, sources = config(["run"], env)
    assert cfg.roots == (root.resolve(), other.resolve())
    assert cfg.host == "127.0.0.2"
    assert cfg.authenticate == {"download", "update"}
    assert (cfg.disable_fallback, cfg.overwrite, cfg.metrics, cfg.mirror) == (
        True,
        True,
        False,
        False,
    )
    assert cfg.extra_upstreams == ("https://a.example/simple/", "https://b.example/simple/")
    assert cfg.mirror_merge == ("baz", "foo-bar")
    assert cfg.max_upload_size == 500 << 20
    assert cfg.rescan_interval == 2.5
    assert cfg.log_stream == "none"
    assert cfg.hash_algo is None
    assert cfg.server_base_url == "/pypi"
    assert (cfg.cache_control, cfg.verbosity, cfg.backend, cfg.server) == (
        60,
        2,
        "cached-dir",
        "uvicorn",
    )
    assert cfg.log_frmt == "%(message)s"
    assert sources["port"] == Source("default")
    assert all(sources[o.dest].kind == "env" for o in run_options() if o.env in env)


def test_empty_variables_count_as_unset(root: Path) -> None:
    cfg, sources = config(["run", str(root)], {"CREAMERY_PORT": "", "CREAMERY_OVERWRITE": " "})
    assert (cfg.port, cfg.overwrite) == (8080, False)
    assert sources["port"] == Source("default")


def test_no_authentication_from_the_environment(root: Path) -> None:
    env = {"CREAMERY_AUTHENTICATE": ".", "CREAMERY_PASSWORDS": "."}
    assert config(["run", str(root)], env)[0].auth_disabled


def test_env_variable_names() -> None:
    names = {option.dest: option.env for option in run_options()}
    assert names["port"] == "CREAMERY_PORT"
    assert names["host"] == "CREAMERY_HOST"  # -i/-H/--interface/--host: the last long flag
    assert names["password_file"] == "CREAMERY_PASSWORDS"
    assert names["authenticate"] == "CREAMERY_AUTHENTICATE"
    assert names["hash_algo"] == "CREAMERY_HASH_ALGO"
    assert names["fallback_url"] == "CREAMERY_FALLBACK_URL"
    assert names["package_directory"] == "CREAMERY_PACKAGES_DIRECTORY"
    assert names["welcome_file"] == "CREAMERY_WELCOME"
    assert names["verbosity"] == "CREAMERY_VERBOSE"
    assert names["extra_upstream"] == "CREAMERY_EXTRA_UPSTREAM"
    assert len(set(names.values())) == len(names)
    assert CONFIG_FILE_ENV not in names.values()
    assert "print_config" not in names and "config_file" not in names


# ---------------------------------------------------------------- the file


def test_file_values_of_every_kind(root: Path, tmp_path: Path) -> None:
    (tmp_path / "welcome.html").write_text("<h1>hi</h1>")
    (tmp_path / "merge.txt").write_text("Foo.Bar  # comment\n")
    write(tmp_path / "htpasswd", "")
    toml = write(
        tmp_path / "creamery.toml",
        """
        [creamery]
        packages_directory = ["packages"]     # relative to this file
        port = 8081
        host = "::1"
        authenticate = ["update", "list"]
        passwords = "htpasswd"
        disable-fallback = true
        overwrite = false
        metrics = true
        hash-algo = false
        welcome = "welcome.html"
        log-file = "logs/creamery.log"
        cache-dir = "~/creamery-cache"
        verbose = 1
        rescan-interval = 0
        max-upload-size = "2G"
        upstream-timeout = 1.5
        mirror-merge = ["@merge.txt", "other"]
        extra-upstream = "https://a.example/simple/"
        """.replace("\n        ", "\n"),
    )
    cfg, sources = config(["run", "--config", str(toml)])
    assert cfg.roots == (root.resolve(),)
    assert (cfg.port, cfg.host) == (8081, "::1")
    assert cfg.authenticate == {"update", "list"}
    assert cfg.password_file == tmp_path.resolve() / "htpasswd"
    assert (cfg.disable_fallback, cfg.overwrite, cfg.metrics) == (True, False, True)
    assert cfg.hash_algo is None
    assert cfg.welcome_file == tmp_path.resolve() / "welcome.html"
    assert cfg.log_file == tmp_path.resolve() / "logs" / "creamery.log"
    assert cfg.cache_dir == Path.home() / "creamery-cache"
    assert (cfg.verbosity, cfg.rescan_interval, cfg.upstream_timeout) == (1, 0.0, 1.5)
    assert cfg.max_upload_size == 2 << 30
    assert cfg.mirror_merge == ("foo-bar", "other")
    assert cfg.extra_upstreams == ("https://a.example/simple/",)
    assert sources["port"] == Source("file", str(toml), f"{toml}: port")
    assert sources["config_file"] == Source("flag")


def test_top_level_keys_without_a_creamery_table(root: Path, tmp_path: Path) -> None:
    toml = write(tmp_path / "c.toml", f'port = 8082\npackages-directory = "{root}"\n')
    assert config(["run", "--config", str(toml)])[0].port == 8082


def test_other_tables_beside_the_creamery_table_are_left_alone(root: Path, tmp_path: Path) -> None:
    toml = write(tmp_path / "c.toml", "[tool.other]\nport = 1\n[creamery]\nport = 8083\n")
    assert config(["run", "--config", str(toml), str(root)])[0].port == 8083


def test_config_file_from_the_environment(root: Path, tmp_path: Path) -> None:
    env_file = write(tmp_path / "env.toml", "port = 8084\n")
    flag_file = write(tmp_path / "flag.toml", "port = 8085\n")
    env = {CONFIG_FILE_ENV: str(env_file)}
    cfg, sources = config(["run", str(root)], env)
    assert cfg.port == 8084 and sources["config_file"] == Source("env", CONFIG_FILE_ENV)
    assert config(["run", "--config", str(flag_file), str(root)], env)[0].port == 8085


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"CREAMERY_PORT": "abc"}, "CREAMERY_PORT='abc': 'abc' is not a whole number"),
        ({"CREAMERY_PORT": "70000"}, "CREAMERY_PORT='70000': port 70000 is out of range"),
        ({"CREAMERY_WORKERS": "0"}, "CREAMERY_WORKERS='0': 0 is not 1 or more"),
        ({"CREAMERY_OVERWRITE": "maybe"}, "CREAMERY_OVERWRITE='maybe': expected 1/0, true/false"),
        ({"CREAMERY_VERBOSE": "-1"}, "CREAMERY_VERBOSE='-1': -1 is negative"),
        ({"CREAMERY_LOG_STREAM": "file"}, "CREAMERY_LOG_STREAM='file': invalid choice: 'file'"),
        ({"CREAMERY_SERVER": "nope"}, "CREAMERY_SERVER='nope': invalid choice: 'nope'"),
        ({"CREAMERY_MAX_UPLOAD_SIZE": "lots"}, "CREAMERY_MAX_UPLOAD_SIZE='lots': invalid size"),
        ({"CREAMERY_HASH_ALGO": "yes"}, "CREAMERY_HASH_ALGO='yes': unknown hash algorithm"),
        ({"CREAMERY_AUTHENTICATE": "bogus"}, "CREAMERY_AUTHENTICATE='bogus': invalid auth"),
        ({"CREAMERY_HEALTH_ENDPOINT": "/simple/"}, "CREAMERY_HEALTH_ENDPOINT='/simple/': "),
        ({"CREAMERY_PASSWORDS": "{tmp}/missing"}, "CREAMERY_PASSWORDS='{tmp}/missing': "),
        ({"CREAMERY_PASSWORDS": "."}, "CREAMERY_PASSWORDS='.': no-authentication needs both"),
        ({"CREAMERY_WELCOME": "{tmp}/missing.html"}, "CREAMERY_WELCOME='{tmp}/missing.html': "),
        ({"CREAMERY_LOG_CONF": "{tmp}/missing.ini"}, "CREAMERY_LOG_CONF='{tmp}/missing.ini': "),
        ({"CREAMERY_MIRROR_MERGE": "@{tmp}/none"}, "CREAMERY_MIRROR_MERGE='@{tmp}/none': "),
        ({CONFIG_FILE_ENV: "{tmp}/none.toml"}, "config file '{tmp}/none.toml' can't be read"),
    ],
)
def test_bad_environment_values_name_the_variable(
    env: dict[str, str],
    expected: str,
    root: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, text in env.items():
        monkeypatch.setenv(name, text.format(tmp=root.parent))
    line = one_error_line(capsys, main(["run", "--print-config", str(root)]))
    assert line.startswith(expected.format(tmp=root.parent))


def test_bad_package_directory_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CREAMERY_PACKAGES_DIRECTORY", str(tmp_path / "nope"))
    line = one_error_line(capsys, main(["run", "--print-config"]))
    assert line.startswith(f"CREAMERY_PACKAGES_DIRECTORY='{tmp_path / 'nope'}': package dir")


def test_a_flag_hides_a_bad_variable(root: Path) -> None:
    assert config(["run", "-p", "1234", str(root)], {"CREAMERY_PORT": "abc"})[0].port == 1234


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('port = "abc"', "port: 'abc' is not a whole number"),
        ("port = 70000", "port: port 70000 is out of range 0-65535"),
        ("port = [1]", "port: expected a string or a number, not [1]"),
        ('overwrite = "yes"', 'overwrite: expected true or false, not "yes"'),
        ("verbose = true", "verbose: expected a whole number, not true"),
        ("verbose = -2", "verbose: -2 is negative"),
        ("extra-upstream = [1, 2]", "extra-upstream: expected a string or a list of strings"),
        ('log-stream = "file"', "log-stream: invalid choice: 'file'"),
        ('hash-algo = "nope"', "hash-algo: unknown hash algorithm 'nope'"),
        ('authenticate = ["update", "bogus"]', "authenticate: invalid authentication action"),
        ('passwords = "missing"', "passwords: password file"),
        ('packages-directory = ["nope"]', "packages-directory: package directory"),
        ("prot = 8080", "unknown option 'prot' (did you mean 'port'?)"),
        ('interface = "::"', "unknown option 'interface' (write 'host')"),
        ('config = "other.toml"', "unknown option 'config'"),
        ("print-config = true", "unknown option 'print-config'"),
        ("hash-algo = 'md5'\nhash_algo = 'md5'", "'hash-algo' and 'hash_algo' are the same"),
        ("creamery = 1", "[creamery] must be a table"),
        ("port = ", "invalid TOML: "),
    ],
)
def test_bad_file_values_name_the_file_and_key(
    text: str, expected: str, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = write(tmp_path / "creamery.toml", text + "\n")
    # --print-config everywhere in this module: a test that goes wrong must not start serving.
    argv = ["run", "--print-config", "--config", str(toml)]
    if "packages-directory" not in text:
        argv.append(str(root))
    line = one_error_line(capsys, main(argv))
    assert line.startswith(f"{toml}: {expected}")


def test_missing_config_file(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["run", "--print-config", "--config", "/nonexistent.toml", str(root)]
    line = one_error_line(capsys, main(argv))
    assert line == "config file '/nonexistent.toml' can't be read: No such file or directory"


def test_flag_errors_keep_their_form(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = one_error_line(capsys, main(["run", "--print-config", "-a", "bogus", str(root)]))
    assert line.startswith("invalid authentication action 'bogus'")


# ---------------------------------------------------------------- --print-config


def test_print_config_shows_each_source(root: Path, tmp_path: Path) -> None:
    toml = write(tmp_path / "c.toml", "[creamery]\nworkers = 2\nport = 1\n")
    env = {"CREAMERY_PORT": "2", "CREAMERY_HASH_ALGO": "md5", CONFIG_FILE_ENV: str(toml)}
    done = creamery("run", "--print-config", "--overwrite", str(root), env=clean_env(**env))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = {line.split(" = ")[0]: line for line in done.stdout.splitlines() if " = " in line}
    assert lines["port"].startswith("port = 2 ") and lines["port"].endswith("# env CREAMERY_PORT")
    assert lines["hash-algo"].startswith('hash-algo = "md5" ')
    assert lines["workers"].endswith(f"# file {toml}")
    assert lines["overwrite"].startswith("overwrite = true ")
    assert lines["overwrite"].endswith("# flag")
    assert lines["server"].startswith('server = "auto" ') and lines["server"].endswith("# default")
    assert lines["packages-directory"].startswith(f'packages-directory = ["{root.resolve()}"]')
    assert f"# Options were read from {toml} (env {CONFIG_FILE_ENV})." in done.stdout
    assert "# passwords is not set" in done.stdout


def test_print_config_round_trips(root: Path, tmp_path: Path) -> None:
    """The output is a TOML file that gives the same configuration back."""
    argv = ["run", "-p", "8123", "-a", "download,update", "--overwrite", "--hash-algo", "md5"]
    argv += ["--log-frmt", 'q"%(message)s\\\u00e9\t', "--extra-upstream", "https://a.example/"]
    argv += ["--cache-control", "30", "-vv", "--max-upload-size", "3M", str(root)]
    done = creamery(*argv, "--print-config")
    assert done.returncode == 0, done.stderr
    toml = write(tmp_path / "printed.toml", done.stdout)
    assert build_run_config(["run", "--config", str(toml)]) == build_run_config(argv)


def test_print_config_does_not_serve_and_still_checks(root: Path) -> None:
    done = creamery("run", "--print-config", "-p", "1", "-P", str(root / "missing"), str(root))
    assert done.returncode == 2
    assert done.stderr.startswith("creamery: error: password file")
    assert done.stdout == ""


# ---------------------------------------------------------------- a real server


def test_real_server_configured_by_flag_env_and_file(tmp_path: Path) -> None:
    """The test harness passes `-p PORT`: the flag must beat CREAMERY_PORT (an unusable port).

    CREAMERY_CONFIG names the file, and with two workers the internal variable that carries
    the configuration to them must not be confused with it.
    """
    root = tmp_path / "packages"
    make_wheel(root, "tlib", "1.0")
    toml = write(
        tmp_path / "creamery.toml",
        '[creamery]\ndisable-fallback = true\nhealth-endpoint = "/ping"\nhash-algo = "sha1"\n'
        'packages-directory = ["packages"]\nworkers = 2\n',
    )
    env = {"CREAMERY_PORT": "1", "CREAMERY_HASH_ALGO": "md5", CONFIG_FILE_ENV: str(toml)}
    with run_server([], env=env, ready_paths=("/ping",)) as server:
        page = httpx.get(server.url + "/simple/tlib/")
        assert page.status_code == 200
        assert "#md5=" in page.text  # env beats file
        assert httpx.get(server.url + "/simple/unknown/").status_code == 404  # file
        assert httpx.get(server.url + "/health").status_code != 200  # moved to /ping


# ---------------------------------------------------------------- documentation


def test_every_option_is_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for option in run_options():
        assert f"`{option.env}`" in text, option.env
        assert f"`{option.name}`" in text, option.name
    assert f"`{CONFIG_FILE_ENV}`" in text


def test_upload_policy_from_flag_env_file_and_app(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert config(["run", str(root)])[0].upload_policy == "strict"
    assert config(["run", "--upload-policy", "pypiserver", str(root)])[0].upload_policy == (
        "pypiserver"
    )
    env = {"CREAMERY_UPLOAD_POLICY": "PyPIServer"}
    assert config(["run", str(root)], env)[0].upload_policy == "pypiserver"
    toml = write(tmp_path / "c.toml", '[creamery]\nupload-policy = "pypiserver"\n')
    assert config(["run", "--config", str(toml), str(root)])[0].upload_policy == "pypiserver"
    os.environ["CREAMERY_UPLOAD_POLICY"] = "lax"  # undone by the no_creamery_env fixture
    try:
        line = one_error_line(capsys, main(["run", "--print-config", str(root)]))
    finally:
        del os.environ["CREAMERY_UPLOAD_POLICY"]
    assert line.startswith("CREAMERY_UPLOAD_POLICY='lax'"), line
    kwargs = {"roots": [root], "upload_policy": "pypiserver"}
    assert config_from_app_kwargs(kwargs).upload_policy == "pypiserver"
    with pytest.raises(ConfigError, match="upload policy"):
        config_from_app_kwargs({"roots": [root], "upload_policy": "lax"})
