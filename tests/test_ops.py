"""What operators see, from real `creamery run` processes: log files, Prometheus scrapes, health.

Logging: one access line per request (method, path, status, bytes, duration, user) and never a
password or an Authorization header; uploads, removals and yanks name their user; `--log-frmt`
applies to every handler, `--log-stream none` silences the stream, `--log-conf` (INI and JSON)
replaces all of it. Metrics: `/metrics` parsed with prometheus_client's own parser, with one
worker and with two. Health: 503 once a root is gone.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from support.clients import creamery_passwd
from support.dists import make_wheel
from support.polling import wait_for
from support.servers import Server, run_server

USER, PASSWORD = "alice", "l0g-me-n0t-s3cret"
AUTH = (USER, PASSWORD)
CREDENTIALS = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
WRONG = ("alice", "not-the-password")
WRONG_CREDENTIALS = base64.b64encode(b"alice:not-the-password").decode()
# `1.2.3.4 alice "GET /simple/tlib/ HTTP/1.1" 200 1234 0.8ms`
ACCESS_LINE = re.compile(
    r'(?P<client>[^\s|]+) (?P<user>\S+) "(?P<method>[A-Z]+) (?P<target>\S+) HTTP/[\d.]+"'
    r" (?P<status>\d{3}) (?P<bytes>\d+) (?P<ms>\d+\.\d)ms$"
)


def make_root(base: Path, name: str = "packages") -> Path:
    root = base / name
    make_wheel(root, "tlib", "1.0", summary="Test library")
    make_wheel(root, "tlib", "2.0", summary="Test library")
    make_wheel(root / "sub", "tapp", "1.0", requires_dist=["tlib"])
    return root


def upload(http: httpx.Client, wheel: Path, **kwargs: Any) -> httpx.Response:
    data = {":action": "file_upload", "protocol_version": "1"}
    files = {"content": (wheel.name, wheel.read_bytes(), "application/octet-stream")}
    return http.post("/", data=data, files=files, **kwargs)


def access_lines(text: str) -> list[re.Match[str]]:
    """The access lines in *text*, whatever comes before them (the --log-frmt prefix)."""
    found = []
    for line in text.splitlines():
        match = ACCESS_LINE.search(line)
        if match:
            found.append(match)
    return found


# ---------------------------------------------------------------- logging


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    """A server protecting everything, logging at INFO to a file and nowhere else."""
    base = tmp_path_factory.mktemp("logged")
    htpasswd = creamery_passwd(base / "htpasswd", USER, PASSWORD)
    log_file = base / "creamery.log"
    args = ("-v", "-a", "download,list,update", "-P", str(htpasswd))
    args += ("--log-file", str(log_file), "--log-stream", "none")
    with run_server([make_root(base)], *args) as server:
        yield server, log_file


def test_access_line_with_basic_auth(logged: tuple[Server, Path]) -> None:
    server, log_file = logged
    with server.client(auth=AUTH) as http:
        page = http.get("/simple/tlib/")
        download = http.get("/packages/tlib-1.0-py3-none-any.whl")
    assert page.status_code == download.status_code == 200

    def lines_for(target: str) -> list[re.Match[str]]:
        return [m for m in access_lines(log_file.read_text()) if m["target"] == target]

    assert wait_for(lambda: lines_for("/packages/tlib-1.0-py3-none-any.whl"))
    (line,) = lines_for("/simple/tlib/")
    assert (line["client"], line["user"], line["method"]) == ("127.0.0.1", USER, "GET")
    assert (int(line["status"]), int(line["bytes"])) == (200, len(page.content))
    assert float(line["ms"]) >= 0
    (line,) = lines_for("/packages/tlib-1.0-py3-none-any.whl")
    assert (line["user"], int(line["bytes"])) == (USER, len(download.content))


def test_refused_requests_are_logged_without_credentials(logged: tuple[Server, Path]) -> None:
    server, log_file = logged
    with server.client() as http:
        assert http.get("/simple/tapp/").status_code == 401
        assert http.get("/simple/tapp/", auth=WRONG).status_code == 403

    def statuses() -> list[str]:
        return [m["status"] for m in access_lines(log_file.read_text()) if "tapp" in m["target"]]

    assert wait_for(lambda: len(statuses()) == 2)
    assert sorted(statuses()) == ["401", "403"]


def test_writes_are_logged_with_their_user(logged: tuple[Server, Path], tmp_path: Path) -> None:
    server, log_file = logged
    wheel = make_wheel(tmp_path, "tnew", "1.0")
    with server.client(auth=AUTH) as http:
        assert upload(http, wheel).status_code == 200
        yanked = http.post("/-/yank", json={"project": "tnew", "version": "1.0"})
        assert yanked.status_code == 200, yanked.text
        removed = http.post("/", data={":action": "remove_pkg", "name": "tnew", "version": "1.0"})
        assert removed.status_code == 200, removed.text

    def posts() -> list[re.Match[str]]:
        lines = access_lines(log_file.read_text())
        return [m for m in lines if m["method"] == "POST" and m["status"] == "200"]

    assert wait_for(lambda: len(posts()) == 3)
    text = log_file.read_text()
    assert f"upload of {wheel.name} ({wheel.stat().st_size} bytes) by {USER}" in text
    assert f"yanked tnew 1.0 by {USER}" in text
    assert f"removal of tnew 1.0 by {USER}" in text
    assert [(m["target"], m["status"], m["user"]) for m in posts()] == [
        ("/", "200", USER),
        ("/-/yank", "200", USER),
        ("/", "200", USER),
    ]


def test_log_never_holds_a_password_or_authorization(logged: tuple[Server, Path]) -> None:
    """The whole log: these requests, and those of the tests above when they ran first."""
    server, log_file = logged
    with server.client() as http:
        assert http.get("/simple/", auth=AUTH).status_code == 200
        assert http.get("/simple/", auth=WRONG).status_code == 403
        assert http.get("/simple/", headers={"Authorization": "Basic " + CREDENTIALS}).is_success
        assert http.post("/", auth=WRONG, data={":action": "remove_pkg"}).status_code == 403

    def probes() -> list[re.Match[str]]:
        return [m for m in access_lines(log_file.read_text()) if m["target"] == "/simple/"]

    assert wait_for(lambda: len(probes()) == 3)
    text = log_file.read_text()
    for secret in (PASSWORD, CREDENTIALS, WRONG[1], WRONG_CREDENTIALS, "Basic ", "uthorization"):
        assert secret not in text
    assert server.log() == ""  # --log-stream none: the file is the only place


def test_log_format_applies_to_stream_and_file(tmp_path: Path) -> None:
    log_file = tmp_path / "creamery.log"
    args = ("-v", "--log-frmt", "FMT|%(levelname)s|%(name)s|%(message)s")
    with run_server([make_root(tmp_path)], *args, "--log-file", str(log_file)) as server:
        assert httpx.get(server.url + "/simple/tlib/").status_code == 200
        target = "/simple/tlib/"
        assert wait_for(lambda: target in server.log() and target in log_file.read_text())
        stream, file = server.log(), log_file.read_text()
    for text in (stream, file):
        (line,) = [line for line in text.splitlines() if "/simple/tlib/" in line]
        assert line.startswith('FMT|INFO|creamery.access|127.0.0.1 - "GET /simple/tlib/ ')
        assert all(line.startswith("FMT|") for line in text.splitlines() if line)


def test_default_verbosity_logs_writes_not_requests(tmp_path: Path) -> None:
    """Without -v only WARNING and up: no access lines, but uploads are still recorded."""
    wheel = make_wheel(tmp_path / "dist", "tquiet", "1.0")
    with run_server([make_root(tmp_path)], "-a", ".", "-P", ".") as server:
        with server.client() as http:
            assert http.get("/simple/tlib/").status_code == 200
            assert upload(http, wheel).status_code == 200
        assert wait_for(lambda: "upload of" in server.log())
        text = server.log()
    assert f"upload of {wheel.name}" in text and " by -" in text
    assert access_lines(text) == []


def test_custom_request_and_response_formats(tmp_path: Path) -> None:
    htpasswd = creamery_passwd(tmp_path / "htpasswd", USER, PASSWORD)
    args = ("-v", "-a", "list,update", "-P", str(htpasswd))
    args += ("--log-req-frmt", "REQ %(REQUEST_METHOD)s %(PATH_INFO)s by %(REMOTE_USER)s")
    args += ("--log-res-frmt", "RES %(status)s %(bytes)s")
    with run_server([make_root(tmp_path)], *args) as server:
        assert httpx.get(server.url + "/simple/tlib/", auth=AUTH).status_code == 200
        assert wait_for(lambda: "REQ GET /simple/tlib/" in server.log())
        text = server.log()
    assert re.search(rf"REQ GET /simple/tlib/ by {USER} RES 200 \d+$", text, re.MULTILINE)
    assert PASSWORD not in text and CREDENTIALS not in text


def test_authorization_header_is_not_a_format_key(tmp_path: Path) -> None:
    """A format asking for the Authorization header gets an error line, not the header."""
    htpasswd = creamery_passwd(tmp_path / "htpasswd", USER, PASSWORD)
    args = ("-v", "-a", "list,update", "-P", str(htpasswd))
    args += ("--log-req-frmt", "REQ %(HTTP_AUTHORIZATION)s")
    with run_server([make_root(tmp_path)], *args) as server:
        assert httpx.get(server.url + "/simple/tlib/", auth=AUTH).status_code == 200
        assert wait_for(lambda: "bad log format" in server.log())
        text = server.log()
    assert CREDENTIALS not in text and PASSWORD not in text


LOG_CONF_JSON = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "JSONCONF %(name)s %(message)s"}},
    "handlers": {"file": {"class": "logging.FileHandler", "filename": "", "formatter": "plain"}},
    "loggers": {"creamery": {"level": "INFO", "handlers": ["file"], "propagate": False}},
}
LOG_CONF_INI = """\
[loggers]
keys=root,creamery

[handlers]
keys=file

[formatters]
keys=plain

[logger_root]
level=WARNING
handlers=

[logger_creamery]
level=INFO
handlers=file
qualname=creamery
propagate=0

[handler_file]
class=FileHandler
formatter=plain
args=({path!r},)

[formatter_plain]
format=INICONF %(name)s %(message)s
"""


@pytest.mark.parametrize("kind", ["json", "ini"])
@pytest.mark.parametrize("workers", [1, 2])
def test_log_conf_file(tmp_path: Path, kind: str, workers: int) -> None:
    """`--log-conf` configures logging on its own (no -v needed), in every worker."""
    log_file = tmp_path / "from-conf.log"
    if kind == "json":
        conf = json.loads(json.dumps(LOG_CONF_JSON))
        conf["handlers"]["file"]["filename"] = str(log_file)
        conf_file = tmp_path / "logging.json"
        conf_file.write_text(json.dumps(conf))
        prefix = "JSONCONF"
    else:
        conf_file = tmp_path / "logging.ini"
        conf_file.write_text(LOG_CONF_INI.format(path=str(log_file)))
        prefix = "INICONF"
    args = ("--log-conf", str(conf_file), "--workers", str(workers))
    with run_server([make_root(tmp_path)], *args) as server:
        for _ in range(4):
            assert httpx.get(server.url + "/simple/tlib/").status_code == 200
        assert wait_for(
            lambda: log_file.exists() and log_file.read_text().count("/simple/tlib/") == 4
        )
        text = log_file.read_text()
    lines = [line for line in text.splitlines() if "/simple/tlib/" in line]
    assert len(lines) == 4
    assert all(line.startswith(f"{prefix} creamery.access ") for line in lines)


# ---------------------------------------------------------------- metrics


def scrape(server: Server) -> dict[str, list[Sample]]:
    """`/metrics` parsed by prometheus_client's parser: samples by metric family name."""
    response = httpx.get(server.url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {family.name: family.samples for family in text_string_to_metric_families(response.text)}


def value(families: dict[str, list[Sample]], sample: str, **labels: str) -> float:
    """The sum of *sample*'s values whose labels include *labels* (0 when there is none)."""
    family = sample.removesuffix("_total").removesuffix("_bucket").removesuffix("_count")
    family = family.removesuffix("_sum")
    return sum(
        s.value
        for s in families.get(family, [])
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    )


@pytest.fixture(scope="module")
def metered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("metered")
    htpasswd = creamery_passwd(base / "htpasswd", USER, PASSWORD)
    with run_server([make_root(base)], "--metrics", "-P", str(htpasswd)) as server:
        yield server


def test_metrics_scrape(metered: Server, tmp_path: Path) -> None:
    before = scrape(metered)
    assert value(before, "creamery_projects") == 2
    assert value(before, "creamery_files") == 3
    wheel = make_wheel(tmp_path, "tmetered", "1.0")
    with metered.client() as http:
        pages = [http.get("/simple/tlib/") for _ in range(3)]
        download = http.get("/packages/tlib-1.0-py3-none-any.whl")
        assert http.get("/simple/nope/").status_code == 303
        assert upload(http, wheel).status_code == 401
        assert upload(http, wheel, auth=WRONG).status_code == 403
        assert upload(http, wheel, auth=AUTH).status_code == 200
        assert upload(http, wheel, auth=AUTH).status_code == 409
    assert all(p.status_code == 200 for p in pages) and download.status_code == 200
    after = scrape(metered)

    def grew(sample: str, **labels: str) -> float:
        return value(after, sample, **labels) - value(before, sample, **labels)

    # Requests by route, method and status.
    assert grew("creamery_requests_total", route="simple_project", status="200") == 3
    assert grew("creamery_requests_total", route="simple_project", status="303") == 1
    assert grew("creamery_requests_total", route="files", method="GET", status="200") == 1
    assert grew("creamery_requests_total", route="upload", method="POST", status="401") == 1
    assert grew("creamery_requests_total", route="upload", status="403") == 1
    assert grew("creamery_requests_total", route="upload", status="200") == 1
    # Latency: cumulative buckets ending in +Inf, which equals the count.
    buckets = [
        s
        for s in after["creamery_request_duration_seconds"]
        if s.name.endswith("_bucket") and s.labels["route"] == "simple_project"
    ]
    assert len(buckets) >= 10 and buckets[-1].labels["le"] == "+Inf"
    counts = [b.value for b in buckets]
    assert counts == sorted(counts)
    count = value(after, "creamery_request_duration_seconds_count", route="simple_project")
    assert buckets[-1].value == count >= 4
    assert value(after, "creamery_request_duration_seconds_sum", route="simple_project") > 0
    # Bytes sent, uploads, auth failures, and the index's size.
    sent = len(download.content)
    assert grew("creamery_sent_bytes_total", route="files") == sent
    assert grew("creamery_sent_bytes_total", route="simple_project") >= sum(
        len(p.content) for p in pages
    )
    assert grew("creamery_uploads_total", outcome="accepted") == 1
    assert grew("creamery_uploads_total", outcome="rejected") == 1  # the 409
    assert grew("creamery_auth_failures_total", status="401") == 1
    assert grew("creamery_auth_failures_total", status="403") == 1
    assert value(after, "creamery_projects") == 3
    assert value(after, "creamery_files") == 4


def test_request_methods_a_client_makes_up_are_one_series(metered: Server) -> None:
    """The method label is bounded: 50 invented methods are counted as "other", not as 50
    series kept for the life of the process (and served on every scrape)."""
    for number in range(50):
        assert metered.raw(f"X{number}INVENTED /simple/ HTTP/1.1").status == 405
    families = scrape(metered)
    methods = {s.labels["method"] for s in families["creamery_requests"]}
    assert not any("INVENTED" in method for method in methods), methods
    assert value(families, "creamery_requests_total", method="other", status="405") >= 50


def test_metrics_off_by_default(tmp_path: Path) -> None:
    with run_server([make_root(tmp_path)]) as server:
        assert httpx.get(server.url + "/metrics").status_code == 404


def test_metrics_with_two_workers(tmp_path: Path) -> None:
    """Every worker's requests count, whichever worker answers the scrape."""
    args = ("--metrics", "--workers", "2", "-v", "--log-frmt", "PID%(process)d %(message)s")
    with run_server([make_root(tmp_path)], *args) as server:
        before = scrape(server)
        requests = 40
        for _ in range(requests):  # a connection each, so both workers take some
            assert httpx.get(server.url + "/simple/tapp/").status_code == 200
        scrapes = [scrape(server) for _ in range(6)]
        assert wait_for(lambda: server.log().count("/simple/tapp/") == requests)
        pids = re.findall(r"^PID(\d+) .*/simple/tapp/", server.log(), re.MULTILINE)
    assert len(pids) == requests
    assert len(set(pids)) == 2, "one worker answered everything: the test proves nothing"
    for after in scrapes:
        grew = value(after, "creamery_requests_total", route="simple_project") - value(
            before, "creamery_requests_total", route="simple_project"
        )
        assert grew == requests
        count = value(after, "creamery_request_duration_seconds_count", route="simple_project")
        assert count >= requests
        assert value(after, "creamery_projects") == 2
        assert value(after, "creamery_files") == 3


# ---------------------------------------------------------------- health


@pytest.mark.parametrize("workers", [1, 2])
def test_health_is_503_when_a_root_vanishes(tmp_path: Path, workers: int) -> None:
    """chmod 000 does not stop root, so the root is taken away instead (a lost mount)."""
    first, second = make_root(tmp_path, "first"), make_root(tmp_path / "b", "second")
    with run_server([first, second], "--workers", str(workers)) as server:
        health = server.url + "/health"
        assert httpx.get(health).status_code == 200
        second.rename(tmp_path / "moved")
        for _ in range(2 * workers):  # every worker says so
            response = httpx.get(health)
            assert response.status_code == 503
            assert "second" in response.text
        (tmp_path / "moved").rename(second)
        for _ in range(2 * workers):
            assert httpx.get(health).status_code == 200
        first.rename(tmp_path / "moved")
        assert httpx.get(health).status_code == 503
        assert httpx.head(health).status_code == 503
        (tmp_path / "moved").rename(first)
        assert httpx.get(health).status_code == 200


def test_health_is_503_when_a_root_is_replaced_by_a_file(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    with run_server([root], "--health-endpoint", "/ping", ready_paths=("/ping",)) as server:
        root.rename(tmp_path / "moved")
        root.write_text("not a directory")
        response = httpx.get(server.url + "/ping")
        assert response.status_code == 503
        assert str(root) in response.text
