"""The deployment files of deploy/ and docs/deploy.md, checked as far as this machine allows:
their syntax with the real tools (systemd-analyze, nginx), and real runs of the documented
gunicorn and uvicorn command lines, of nginx in front of creamery under /pypi/, and of the
Docker entrypoint and health check. Docker itself is not run here (no daemon).
"""

from __future__ import annotations

import configparser
import json
import os
import re
import runpy
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.clients import BIN, python_m, twine_upload
from support.dists import make_wheel
from support.htpasswd import write_sha1_htpasswd
from support.servers import Server, free_port, started

from creamery.cli.main import parse_args
from creamery.core.objects import parse_object_root

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DOCS = ROOT / "docs" / "deploy.md"
REPLICAS = DEPLOY / "replicas"
APP_UID = 9898
USER, PASSWORD = "uploader", "s3cret"  # in the htpasswd files of the sites served here


def creamery_args(command: str | list[str]) -> list[str]:
    """The arguments after the program of a `creamery ...` command line, checked by creamery."""
    words = shlex.split(command) if isinstance(command, str) else command
    assert Path(words[0]).name == "creamery", words
    parse_args(words[1:])  # raises CliError on an unknown flag or a bad value
    return words[1:]


# ---------------------------------------------------------------- Docker


def dockerfile() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]


def test_dockerfile_has_a_non_root_user_a_volume_and_a_health_check() -> None:
    instructions = dockerfile()
    values = {name: [v for n, v in instructions if n == name] for name, _ in instructions}
    assert re.fullmatch(r"python:3\.1\d-slim", values["FROM"][0])
    assert values["USER"][-1] == "creamery"
    assert f"ARG CREAMERY_UID={APP_UID}" in " ".join(f"{n} {v}" for n, v in instructions)
    assert '"/data/packages"' in values["VOLUME"][0]
    assert values["HEALTHCHECK"][0].split("CMD", 1)[1].strip() == '["creamery-healthcheck"]'
    assert values["ENTRYPOINT"] == ['["docker-entrypoint.sh"]']
    assert values["CMD"] == ['["run"]']
    assert "8080" in values["EXPOSE"]
    # Everything the build copies exists and gets through .dockerignore.
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    for copy in values["COPY"]:
        sources = [w for w in copy.split() if not w.startswith("--")][:-1]
        for source in sources:
            assert (ROOT / source).exists(), source
            assert f"!{source}" in ignore or f"!{source}/" in ignore, source


@pytest.fixture
def sandbox() -> Iterator[Path]:
    """A directory that the image's uid can enter (pytest's tmp_path is private to root)."""
    base = Path(tempfile.mkdtemp(prefix="creamery-entrypoint-"))
    base.chmod(0o755)
    fake = base / "bin" / "creamery"  # shows who runs it, with what
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "uid=$(id -u) port=$CREAMERY_PORT args=$*"\n')
    fake.chmod(0o755)
    (base / "packages").mkdir()
    yield base
    shutil.rmtree(base)


def entrypoint(sandbox: Path, *args: str, uid: int | None = None, **env: str):
    """Run deploy/docker-entrypoint.sh as root, or as *uid* like `docker run --user`."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to switch users")
    script = sandbox / "docker-entrypoint.sh"
    shutil.copy(DEPLOY / "docker-entrypoint.sh", script)
    prefix = [] if uid is None else ["setpriv", f"--reuid={uid}", f"--regid={uid}"]
    environment = {
        "PATH": f"{sandbox / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin",
        "CREAMERY_PACKAGES_DIRECTORY": str(sandbox / "packages"),
        **env,
    }
    if uid is not None:
        prefix.append("--clear-groups")
    return subprocess.run(
        [*prefix, "sh", str(script), *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=30,
    )


def test_entrypoint_as_root_hands_the_volume_over_and_drops_root(sandbox: Path) -> None:
    packages = sandbox / "packages"
    (packages / "old-1.0.tar.gz").write_bytes(b"")
    result = entrypoint(sandbox, "run", "-v")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"uid={APP_UID} port=8080 args=run -v"
    assert {p.stat().st_uid for p in [packages, *packages.iterdir()]} == {APP_UID}


def test_entrypoint_explains_an_unreadable_volume(sandbox: Path) -> None:
    (sandbox / "packages").chmod(0o700)  # root's
    result = entrypoint(sandbox, "run", uid=APP_UID)
    assert result.returncode == 1
    assert "can't be read by uid 9898" in result.stderr
    assert "chown -R 9898:9898" in result.stderr
    assert "--user root" in result.stderr


def test_entrypoint_warns_about_a_read_only_volume_and_serves(sandbox: Path) -> None:
    result = entrypoint(sandbox, uid=APP_UID, PYPISERVER_PORT="9000")
    assert result.returncode == 0, result.stderr
    assert "read-only" in result.stderr
    assert result.stdout.strip() == f"uid={APP_UID} port=9000 args="


def test_entrypoint_runs_other_commands_as_given(sandbox: Path) -> None:
    result = entrypoint(sandbox, "sh", "-c", "echo $CREAMERY_PORT", CREAMERY_PORT="7000")
    assert (result.returncode, result.stdout) == (0, "7000\n")


def test_health_check_url_follows_the_server_variables() -> None:
    health_url = runpy.run_path(str(DEPLOY / "healthcheck.py"))["health_url"]
    assert health_url({}) == "http://127.0.0.1:8080/health"
    assert health_url({"PYPISERVER_PORT": "9000"}) == "http://127.0.0.1:9000/health"
    assert (
        health_url(
            {
                "CREAMERY_PORT": "8000",
                "CREAMERY_SERVER_BASE_URL": "/pypi/",
                "CREAMERY_HEALTH_ENDPOINT": "/-/ok",
            }
        )
        == "http://127.0.0.1:8000/pypi/-/ok"
    )


def test_health_check_against_a_server(run_server, tmp_path: Path) -> None:
    def check(port: int) -> int:
        env = {**os.environ, "CREAMERY_PORT": str(port)}
        command = [sys.executable, str(DEPLOY / "healthcheck.py")]
        return subprocess.run(command, env=env, capture_output=True, timeout=30).returncode

    with run_server([tmp_path]) as server:
        assert check(server.port) == 0
    assert check(free_port()) == 1


def test_compose_file() -> None:
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"creamery", "nginx"}
    creamery, nginx = services["creamery"], services["nginx"]
    assert (DEPLOY / creamery["build"]["context"] / "Dockerfile").is_file()
    assert any(v.endswith(":/data/packages") for v in creamery["volumes"])
    args = creamery_args(["creamery", *creamery["command"]])
    htpasswd = args[args.index("-P") + 1]
    assert any(v.split(":")[1] == htpasswd for v in creamery["volumes"])
    mounts = {v.split(":")[0]: v.split(":")[1] for v in nginx["volumes"]}
    assert mounts["./nginx/creamery.conf"] == "/etc/nginx/conf.d/default.conf"
    assert nginx["depends_on"]["creamery"]["condition"] == "service_healthy"


# ---------------------------------------------------------------- nginx


def nginx_config(workdir: Path, listen: int, upstream: int) -> Path:
    """deploy/nginx/creamery.conf on local ports, inside a main file with private paths."""
    server = (DEPLOY / "nginx" / "creamery.conf").read_text()
    assert "listen 80;" in server and "server creamery:8080;" in server
    server = server.replace("listen 80;", f"listen 127.0.0.1:{listen};")
    server = server.replace("server creamery:8080;", f"server 127.0.0.1:{upstream};")
    return nginx_main(workdir, server)


def nginx_main(workdir: Path, server: str) -> Path:
    """A main nginx.conf with private temp paths around the server block *server*."""
    (workdir / "creamery.conf").write_text(server)
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temp_paths = "".join(f"  {kind}_temp_path {workdir}/{kind};\n" for kind in kinds)
    main = workdir / "nginx.conf"
    main.write_text(
        f"pid {workdir}/nginx.pid;\nerror_log {workdir}/error.log;\nevents {{}}\n"
        f"http {{\n  access_log off;\n{temp_paths}  include {workdir}/creamery.conf;\n}}\n"
    )
    return main


@pytest.fixture
def nginx() -> str:
    found = shutil.which("nginx") or shutil.which("/usr/sbin/nginx")
    if found is None:
        pytest.skip("nginx is not installed")
    return found


def test_nginx_config_is_valid(nginx: str, tmp_path: Path) -> None:
    config = nginx_config(tmp_path, free_port(), free_port())
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr


def test_nginx_serves_creamery_under_pypi(nginx: str, run_server, tmp_path: Path) -> None:
    packages = tmp_path / "packages"
    make_wheel(packages, "tproxied", "1.0")
    htpasswd = write_sha1_htpasswd(tmp_path / "htpasswd", USER, PASSWORD)
    with run_server([packages], "-P", str(htpasswd)) as creamery:
        port = free_port()
        config = nginx_config(tmp_path, port, creamery.port)
        command = [nginx, "-p", tmp_path, "-e", tmp_path / "error.log", "-c", config]
        command += ["-g", "daemon off; master_process off;"]
        with started(command, port, tmp_path, ready="/pypi/health") as proxy:
            check_behind_prefix(proxy, tmp_path)


def check_behind_prefix(proxy: Server, tmp_path: Path) -> None:
    base = proxy.url + "/pypi/"
    with httpx.Client(base_url=proxy.url, timeout=10) as http:
        assert http.get("/pypi").headers["location"] == "/pypi/"
        assert f"{base}simple/" in http.get("/pypi/").text  # X-Forwarded-Host/-Prefix
        moved = http.get("/pypi/simple/TProxied/")
        assert moved.status_code == 301
        page = http.get("/pypi/simple/TProxied/", follow_redirects=True)
        assert str(page.url) == base + "simple/tproxied/"
        assert "tproxied-1.0-py3-none-any.whl" in page.text
        urls = [f["url"] for f in http.get("/pypi/pypi/tproxied/json").json()["urls"]]
        assert urls == [base + "packages/tproxied-1.0-py3-none-any.whl"]
    wheel = make_wheel(tmp_path / "dist", "tthrough", "1.0")
    # Through `proxy_request_buffering off`:
    result = twine_upload(base, tmp_path / "home", wheel, user=USER, password=PASSWORD)
    assert result.returncode == 0, result.stdout + result.stderr
    installed = python_m(
        *("pip", "download", "--disable-pip-version-check", "--no-deps", "-d", tmp_path / "got"),
        *("--index-url", base + "simple/", "tthrough==1.0"),
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr


# ---------------------------------------------------------------- replicas over a bucket

_VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?::([-?])([^}]*))?\}")


def interpolate(text: str, env: dict[str, str]) -> tuple[str, set[str]]:
    """Compose's `${VAR}`, `${VAR:-default}`, `${VAR:?error}` and `$$`; also returns the
    variables that have no default (`.env` must set them)."""
    required: set[str] = set()

    def value(match: re.Match[str]) -> str:
        name, kind, default = match.groups()
        if name is None:
            return "$"
        if kind != "-":
            required.add(name)
        if env.get(name):
            return env[name]
        if kind == "-":
            return default
        raise AssertionError(f"${{{name}}} is needed and unset")

    return _VARIABLE.sub(value, text), required


def dotenv(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def replicas_compose() -> tuple[dict, set[str]]:
    """deploy/replicas/compose.yaml, its variables filled from .env.example (as compose does
    from .env), and the variables it needs."""
    yaml = pytest.importorskip("yaml")
    text, required = interpolate(
        (REPLICAS / "compose.yaml").read_text(), dotenv(REPLICAS / ".env.example")
    )
    return yaml.safe_load(text), required


def mounts(service: dict) -> dict[str, str]:
    return {v.split(":")[0]: v.split(":")[1] for v in service.get("volumes", [])}


def test_replicas_compose_file_parses_and_names_what_exists() -> None:
    compose, required = replicas_compose()
    services = compose["services"]
    assert set(services) == {"minio", "bucket", "creamery-a", "creamery-b", "nginx"}
    assert required <= set(dotenv(REPLICAS / ".env.example")), "every secret has an example"
    a, b = services["creamery-a"], services["creamery-b"]
    assert a == b, "the replicas are one definition"
    assert (REPLICAS / a["build"]["context"] / "Dockerfile").is_file()
    assert a["build"]["args"]["CREAMERY_EXTRAS"] == "s3"
    assert "ARG CREAMERY_EXTRAS" in (ROOT / "Dockerfile").read_text()
    args = creamery_args(["creamery", *a["command"]])
    root = parse_object_root(args[-1])
    assert (root.bucket, root.prefix) == ("packages", "index")
    htpasswd = args[args.index("-P") + 1]
    assert mounts(a)["./htpasswd"] == htpasswd
    assert a["environment"]["AWS_ENDPOINT_URL"] == "http://minio:9000"
    assert a["environment"]["AWS_ACCESS_KEY_ID"] == "creamery"  # not MinIO's administrator
    assert a["healthcheck"]["test"] == ["CMD", "creamery-healthcheck"]
    assert a["depends_on"]["bucket"]["condition"] == "service_completed_successfully"
    assert services["bucket"]["depends_on"]["minio"]["condition"] == "service_healthy"
    nginx = services["nginx"]
    assert mounts(nginx)["./nginx.conf"] == "/etc/nginx/conf.d/default.conf"
    for replica in ("creamery-a", "creamery-b"):
        assert nginx["depends_on"][replica]["condition"] == "service_healthy"
        assert f"server {replica}:8080" in (REPLICAS / "nginx.conf").read_text()
    # Every file mounted exists, except the htpasswd file the user writes (git-ignored).
    for service in services.values():
        for source in mounts(service):
            if source.startswith("./") and source != "./htpasswd":
                assert (REPLICAS / source).is_file(), source
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert {"deploy/replicas/.env", "deploy/replicas/htpasswd"} <= set(ignored)


def test_replicas_bucket_setup_script_and_policy() -> None:
    compose, _ = replicas_compose()
    bucket = compose["services"]["bucket"]
    script = REPLICAS / "create-bucket.sh"
    assert bucket["entrypoint"] == ["sh", "/setup/create-bucket.sh"]
    assert mounts(bucket)["./create-bucket.sh"] == "/setup/create-bucket.sh"
    assert subprocess.run(["sh", "-n", str(script)], capture_output=True).returncode == 0
    text = script.read_text()
    for variable in ("MINIO_ROOT_USER", "CREAMERY_BUCKET", "CREAMERY_S3_ACCESS_KEY"):
        assert f"${variable}" in text and variable in bucket["environment"], variable
    policy = json.loads((REPLICAS / "bucket-policy.json").read_text())
    actions = {a for statement in policy["Statement"] for a in statement["Action"]}
    needed = {"s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject"}
    assert needed <= actions
    resources = {r for statement in policy["Statement"] for r in statement["Resource"]}
    assert resources == {"arn:aws:s3:::BUCKET_NAME", "arn:aws:s3:::BUCKET_NAME/*"}


def replicas_nginx_config(workdir: Path, listen: int, upstreams: list[int]) -> Path:
    """deploy/replicas/nginx.conf on local ports, inside a main file with private paths."""
    server = (REPLICAS / "nginx.conf").read_text()
    assert "listen 80;" in server
    server = server.replace("listen 80;", f"listen 127.0.0.1:{listen};")
    for name, port in zip(("creamery-a", "creamery-b"), upstreams, strict=True):
        assert f"server {name}:8080 " in server
        server = server.replace(f"server {name}:8080 ", f"server 127.0.0.1:{port} ")
    return nginx_main(workdir, server)


def test_replicas_nginx_config_is_valid(nginx: str, tmp_path: Path) -> None:
    config = replicas_nginx_config(tmp_path, free_port(), [free_port(), free_port()])
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr


def test_replicas_nginx_serves_while_one_replica_is_down(
    nginx: str, run_server, tmp_path: Path
) -> None:
    """One replica answers, the other port is closed: every read still gets a 200 (nginx
    sends it to the live one), and an upload goes through once."""
    packages = tmp_path / "packages"
    make_wheel(packages, "tbalanced", "1.0")
    htpasswd = write_sha1_htpasswd(tmp_path / "htpasswd", USER, PASSWORD)
    with run_server([packages], "-P", str(htpasswd)) as creamery:
        port = free_port()
        config = replicas_nginx_config(tmp_path, port, [free_port(), creamery.port])
        command = [nginx, "-p", tmp_path, "-e", tmp_path / "error.log", "-c", config]
        command += ["-g", "daemon off; master_process off;"]
        with started(command, port, tmp_path, ready="/pypi/health") as proxy:
            with httpx.Client(base_url=proxy.url, timeout=10) as http:
                for _ in range(6):
                    page = http.get("/pypi/simple/tbalanced/", headers={"connection": "close"})
                    assert page.status_code == 200
                    assert "tbalanced-1.0-py3-none-any.whl" in page.text
            wheel = make_wheel(tmp_path / "dist", "tbalancedup", "1.0")
            base = proxy.url + "/pypi/"
            result = twine_upload(base, tmp_path / "home", wheel, user=USER, password=PASSWORD)
            assert result.returncode == 0, result.stdout + result.stderr
            assert (packages / wheel.name).read_bytes() == wheel.read_bytes()


# ---------------------------------------------------------------- systemd, supervisor


def test_systemd_unit(tmp_path: Path) -> None:
    unit = (DEPLOY / "creamery.service").read_text()
    exec_start = re.search(r"^ExecStart=(.*)$", unit, re.MULTILINE)[1]
    assert shlex.split(exec_start)[0] == "/usr/local/bin/creamery"
    assert "-P /etc/creamery/htpasswd" in exec_start
    creamery_args(exec_start)
    assert re.search(r"^User=creamery$", unit, re.MULTILINE)
    assert re.search(r"^ReadWritePaths=/srv/packages$", unit, re.MULTILINE)
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # verify insists that the program exists: point it at this environment's creamery.
    copy = tmp_path / "creamery.service"
    copy.write_text(unit.replace("/usr/local/bin/creamery", str(BIN / "creamery")))
    result = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    problems = [line for line in result.stderr.splitlines() if "creamery.service" in line]
    assert result.returncode == 0 and not problems, result.stderr


def test_supervisor_program() -> None:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(DEPLOY / "supervisor-creamery.conf")
    program = parser["program:creamery"]
    creamery_args(program["command"])
    assert program["stopasgroup"] == program["killasgroup"] == "true"
    assert program["user"] and program["autorestart"] == "true"


# ---------------------------------------------------------------- gunicorn, uvicorn


def documented(program: str) -> str:
    """The first command line of docs/deploy.md that starts with *program* (joined lines)."""
    text = re.sub(r"\\\n\s*", " ", DOCS.read_text())
    for line in text.splitlines():
        if line.startswith(program):
            return line
    raise AssertionError(f"docs/deploy.md shows no `{program} ...` command line")


def adapt(text: str, port: int, packages: Path, etc: Path) -> str:
    """A documented command or file, moved to this test's port and directories."""
    text = text.replace("127.0.0.1:8080", f"127.0.0.1:{port}").replace(
        "--port 8080", f"--port {port}"
    )
    text = text.replace("/srv/packages", str(packages))
    return text.replace("/etc/creamery", str(etc))


@pytest.fixture
def site(tmp_path: Path) -> tuple[Path, Path]:
    """(packages with one project, /etc/creamery stand-in with htpasswd and deploy/*.py)."""
    packages = tmp_path / "packages"
    make_wheel(packages, "tserved", "1.0")
    etc = tmp_path / "etc"
    etc.mkdir()
    write_sha1_htpasswd(etc / "htpasswd", USER, PASSWORD)
    return packages, etc


def gunicorn_or_skip() -> None:
    if not (BIN / "gunicorn").exists():
        pytest.skip("gunicorn is not installed (pip install -e '.[test]')")


def test_gunicorn_with_uvicorn_workers_as_documented(site, tmp_path: Path) -> None:
    """Four workers: an upload through one of them is listed by all of them at once."""
    gunicorn_or_skip()
    packages, etc = site
    port = free_port()
    command = shlex.split(adapt(documented("gunicorn -w 4 -k uvicorn"), port, packages, etc))
    assert "-w" in command and "uvicorn.workers.UvicornWorker" in command
    with started([BIN / command[0], *command[1:]], port, tmp_path) as server:
        wheel = make_wheel(tmp_path / "dist", "tworkers", "1.0")
        result = twine_upload(
            server.url + "/", tmp_path / "home", wheel, user=USER, password=PASSWORD
        )
        assert result.returncode == 0, result.stdout + result.stderr
        with server.client() as http:
            for _ in range(12):  # new connections: they land on different workers
                page = http.get("/simple/tworkers/", headers={"connection": "close"})
                assert wheel.name in page.text
        assert server.log().count("Booting worker") >= 4


@pytest.mark.parametrize(
    "program",
    ["gunicorn -w 4 -k gthread", "gunicorn -c", "uvicorn --app-dir"],
    ids=["gunicorn-wsgi", "gunicorn-config-file", "uvicorn"],
)
def test_documented_server_command_lines(program: str, site, tmp_path: Path) -> None:
    if program.startswith("gunicorn"):
        gunicorn_or_skip()
    packages, etc = site
    port = free_port()
    for name in ("gunicorn.conf.py", "creamery_asgi.py"):
        (etc / name).write_text(adapt((DEPLOY / name).read_text(), port, packages, etc))
    command = shlex.split(adapt(documented(program), port, packages, etc))
    with (
        started([BIN / command[0], *command[1:]], port, tmp_path) as server,
        server.client() as http,
    ):
        assert "tserved" in http.get("/simple/").text
        assert http.get("/packages/tserved-1.0-py3-none-any.whl").status_code == 200


def test_deploy_scripts_are_executable() -> None:
    for path in (DEPLOY / "docker-entrypoint.sh", DEPLOY / "healthcheck.py"):
        assert path.stat().st_mode & stat.S_IXUSR, path
