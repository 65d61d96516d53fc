#!/usr/bin/env python3
"""What tokens and a permission file cost on the hot paths (issue 12).

    PYTHONPATH=src python3 benchmarks/access.py                    # in-process, then wrk
    PYTHONPATH=src python3 benchmarks/access.py --only inprocess   # the precise part (~1 min)
    PYTHONPATH=src python3 benchmarks/access.py --only wrk --runs 3

One server configuration per row, all on the same package directory (1,000 projects x 2
versions x wheel + sdist, `corpus.py`'s generator, in `work/corpus-access/`):

- `none`: no authentication (`-a . -P .`), the reference;
- `password`: `-a update,list,download -P htpasswd`, a bcrypt user (verified once, remembered);
- `token`: the same server, `__token__` and a read token (download, list) of that user;
- `perms-anon`: `-a update -P htpasswd --permissions FILE`, a 200-rule file (exact names,
  globs, groups; anonymous reader on `*`), requests without credentials;
- `perms-token`: the same server, the token's requests (its owner is in the groups that see
  the projects anonymous can't).

Each row measures `/simple/<p>/` (HTML) cycling through 500 projects spread over the corpus,
a small file `/packages/<file>` cycling through 500 files, and the root `/simple/` (with a
permission file: rendered once per view, then kept). With the permission file the anonymous
row cycles only through the projects anonymous may see (the others answer 404 for it).

Two measurements:

- **in-process** (the precise one on a 2-core machine): the ASGI app called directly, no
  network, CPU time per request (`time.process_time`, best of `--rounds` rounds of
  `--requests` requests; rows interleaved in each round, so a slow spell hits all of them),
  the process pinned to one CPU (`--cpu`, like `taskset -c`);
- **wrk**: `python -m creamery run` on a free port pinned to CPU 0, `wrk -t2 -c32 -d5s`
  (1 s warm-up) on CPU 1, as `run.py`; `--runs` rounds, each server started afresh, median.

Tokens are created as the CLI does (`Catalog.create_token` after `access.load()`) in a state
directory of this run (`work/access-state/`, emptied first). Results: `work/results-access.md`
and `.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import json
import os
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus as corpus_mod
import measure
import procs
import servers
from servers import BENCH, WORK, log

PROJECTS = 1000
VERSIONS = 2
PATHS = 500
USER = "alice"
PASSWORD = "bench-password-not-secret"
RULES = 200
KINDS = ("page", "file", "index")
KIND_LABELS = {"page": "/simple/<p>/", "file": "small file", "index": "/simple/"}


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    server: str  # key of the server configuration (rows with the same one share it)
    credentials: str | None  # None, "password", "token"


ROWS = (
    Row("none", "no auth (`-a . -P .`)", "none", None),
    Row("password", "`-a update,list,download`, htpasswd user (remembered)", "auth", "password"),
    Row("token", "`-a update,list,download`, `__token__` (remembered)", "auth", "token"),
    Row("perms-anon", "200-rule `--permissions`, anonymous", "perms", None),
    Row("perms-token", "200-rule `--permissions`, `__token__`", "perms", "token"),
)


@dataclass
class Setup:
    corpus: corpus_mod.Corpus
    state: Path
    cache: Path
    htpasswd: Path
    permissions: Path
    token: str
    token_id: str
    pages: list[str]  # every row but perms-anon
    files: list[str]
    anon_pages: list[str]  # what anonymous may see under the permission file
    anon_files: list[str]
    rules_summary: str = ""
    server_args: dict[str, list[str]] = field(default_factory=dict)

    def authorization(self, row: Row) -> str | None:
        if row.credentials is None:
            return None
        if row.credentials == "password":
            user, secret = USER, PASSWORD
        else:
            user, secret = "__token__", self.token
        return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()

    def paths(self, row: Row, kind: str) -> list[str]:
        if kind == "index":
            return ["/simple/"]
        anon = row.server == "perms" and row.credentials is None
        if kind == "page":
            return self.anon_pages if anon else self.pages
        return self.anon_files if anon else self.files


# ---------------------------------------------------------------------- the set-up


def permission_file(sample: list[str]) -> tuple[str, str]:
    """A 200-rule TOML file over the corpus, and a one-line summary of it.

    Among the sampled projects: 100 exact names and 35 globs that everyone may read (each with
    maintainer/owner rules for groups and users), 20 exact names and 5 globs that only the
    `staff` group (alice among them) may read, the rest decided by `*` (anonymous and every
    user: reader; staff: uploader). Padding rules name projects that don't exist.
    """
    rules: list[dict[str, Any]] = []
    groups = {f"team-{k:02d}": [f"user-{k:02d}{m}" for m in range(6)] for k in range(20)}
    groups["team-03"].append(USER)
    groups["team-11"].append(USER)
    groups["staff"] = [USER, "bob", "carol", "dave"]
    groups["secret"] = ["eve", "mallory"]
    rules.append({"user": "anonymous", "role": "reader", "projects": ["*"]})
    rules.append({"user": "*", "role": "reader", "projects": ["*"]})
    rules.append({"group": "staff", "role": "uploader", "projects": ["*"]})
    exact_public = sample[0:200:2]  # 100 names
    for c in range(25):
        names = exact_public[c * 4 : c * 4 + 4]
        rules.append({"users": ["anonymous", "*"], "role": "reader", "projects": names})
        rules.append({"group": f"team-{c % 20:02d}", "role": "maintainer", "projects": names})
        rules.append({"user": f"user-{c % 20:02d}0", "role": "owner", "projects": names})
    globs = [f"pkg-00{d}{e}*" for d in range(1, 10) for e in range(0, 10, 3)][:30]
    globs += ["pkg-00[5-6]?7", "pkg-002?1", "pkg-008[13]?", "pkg-004??", "pkg-0099?"]
    for n, pattern in enumerate(globs):
        rules.append({"users": ["anonymous", "*"], "role": "reader", "projects": [pattern]})
        rules.append({"group": f"team-{n % 20:02d}", "role": "maintainer", "projects": [pattern]})
    staff_exact = sample[1:200:10]  # 20 names, not among the public exact ones
    for c in range(10):
        names = staff_exact[c * 2 : c * 2 + 2]
        rules.append({"group": "staff", "role": "reader", "projects": names})
        rules.append({"group": f"team-{c:02d}", "role": "uploader", "projects": names})
    for pattern in ["pkg-0095*", "pkg-0077*", "pkg-00[34]5?", "pkg-006?3", "pkg-0001?"]:
        rules.append({"group": "staff", "role": "reader", "projects": [pattern]})
        rules.append({"group": "team-03", "role": "maintainer", "projects": [pattern]})
    n = 0
    while len(rules) < RULES:
        pattern = f"secret-{n:03d}-*" if n % 2 else f"internal-tool-{n:03d}"
        rules.append({"group": "secret", "role": "maintainer", "projects": [pattern]})
        n += 1
    text = "[groups]\n" + "".join(
        f"{name} = {json.dumps(members)}\n" for name, members in groups.items()
    )
    for rule in rules:
        text += "\n[[rules]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in rule.items())
    summary = (
        f"{len(rules)} rules, {len(groups)} groups; among the {len(sample)} sampled projects "
        f"{len(exact_public)} public exact names, {len(globs)} public globs, "
        f"{len(staff_exact)} staff-only exact names and 5 staff-only globs"
    )
    return text, summary


def prepare() -> Setup:
    from creamery.catalog.permissions import Policy, Role
    from creamery.catalog.service import Catalog
    from creamery.core.config import config_from_app_kwargs

    corpus = corpus_mod.ensure_corpus(WORK, "access", PROJECTS, VERSIONS, log=log)
    state = WORK / "access-state"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    cache = WORK / "creamery-cache-access"
    conf = WORK / "access-conf"
    conf.mkdir(parents=True, exist_ok=True)
    import bcrypt

    htpasswd = conf / "htpasswd"
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()
    htpasswd.write_text(f"{USER}:{hashed}\nbob:{hashed}\n")
    sample = corpus.sample_projects(PATHS)
    text, summary = permission_file(sample)
    permissions = conf / "permissions.toml"
    permissions.write_text(text)
    policy = Policy.parse(text)
    if len(policy.rules) != RULES:
        raise SystemExit(f"the permission file has {len(policy.rules)} rules, not {RULES}")
    catalog = Catalog(config_from_app_kwargs({"roots": [str(corpus.packages)], "state_dir": state}))
    catalog.access.load()
    token, secret = catalog.create_token(
        USER, actions=("download", "list"), description="benchmarks/access.py"
    )
    pages = [f"/simple/{p}/" for p in sample]
    files = [f"/packages/{f}" for f in corpus.sample_files(PATHS)]

    def anonymous_reads(path: str) -> bool:
        name = path.split("/")[2] if path.startswith("/simple/") else None
        if name is None:
            stem = path.rsplit("/", 1)[1]
            name = stem.split("-", 1)[0].replace("_", "-")
        return policy.role(None, name) >= Role.READER

    setup = Setup(
        corpus=corpus,
        state=state,
        cache=cache,
        htpasswd=htpasswd,
        permissions=permissions,
        token=secret,
        token_id=token.id,
        pages=pages,
        files=files,
        anon_pages=[p for p in pages if anonymous_reads(p)],
        anon_files=[f for f in files if anonymous_reads(f)],
        rules_summary=summary,
    )
    setup.server_args = {
        "none": ["-a", ".", "-P", "."],
        "auth": ["-a", "update,list,download", "-P", str(htpasswd)],
        "perms": ["-a", "update", "-P", str(htpasswd), "--permissions", str(permissions)],
    }
    log(
        f"set-up: {corpus.files} files, {summary}; anonymous sees {len(setup.anon_pages)} of "
        f"{len(pages)} pages, {len(setup.anon_files)} of {len(files)} files; token {token.id}"
    )
    return setup


def app_kwargs(setup: Setup, server: str) -> dict[str, Any]:
    """`creamery.app()` keywords equal to the server's command line."""
    kwargs: dict[str, Any] = {
        "roots": [str(setup.corpus.packages)],
        "disable_fallback": True,
        "cache_dir": str(setup.cache),
        "state_dir": str(setup.state),
    }
    if server == "none":
        kwargs.update(authenticate=".", password_file=".")
    elif server == "auth":
        kwargs.update(authenticate="update,list,download", password_file=str(setup.htpasswd))
    else:
        kwargs.update(
            authenticate="update", password_file=str(setup.htpasswd), permissions=setup.permissions
        )
    return kwargs


# ---------------------------------------------------------------------- in-process


def _scopes(paths: list[str], authorization: str | None) -> list[dict[str, Any]]:
    headers = [(b"host", b"x")]
    if authorization is not None:
        headers.append((b"authorization", authorization.encode()))
    return [
        {
            "type": "http",
            "method": "GET",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": headers,
            "client": ("127.0.0.1", 5000),
            "server": ("127.0.0.1", 80),
            "scheme": "http",
            "http_version": "1.1",
        }
        for path in paths
    ]


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _run(app: Any, scopes: list[dict[str, Any]], count: int) -> float:
    """CPU seconds per request over *count* requests cycling through *scopes*."""

    async def send(message: dict[str, Any]) -> None:
        pass

    n = len(scopes)
    started = time.process_time()
    for i in range(count):
        await app(dict(scopes[i % n]), _receive, send)
    return (time.process_time() - started) / count


async def _check(app: Any, scopes: list[dict[str, Any]], label: str) -> None:
    """Every path once: all must answer 200 (this also renders every page)."""
    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    for s in scopes:
        await app(dict(s), _receive, send)
    bad = [(s["path"], st) for s, st in zip(scopes, statuses, strict=True) if st != 200]
    if bad:
        raise SystemExit(f"{label}: {len(bad)} of {len(scopes)} not 200, e.g. {bad[:3]}")


async def inprocess(setup: Setup, rounds: int, requests: int) -> dict[str, dict[str, Any]]:
    import creamery

    apps: dict[str, Any] = {}
    for server in ("none", "auth", "perms"):
        apps[server] = creamery.app(**app_kwargs(setup, server))
        await asyncio.to_thread(apps[server].start)
    work: list[tuple[Row, str, Any, list[dict[str, Any]]]] = []
    for row in ROWS:
        for kind in KINDS:
            scopes = _scopes(setup.paths(row, kind), setup.authorization(row))
            app = apps[row.server]
            await _check(app, scopes, f"{row.key} {kind}")
            await _run(app, scopes, 2_000)  # warm: credentials remembered, files cached
            work.append((row, kind, app, scopes))
    samples: dict[tuple[str, str], list[float]] = {(r.key, k): [] for r, k, _, _ in work}
    for number in range(rounds):
        # Alternate the order, so drift over a round does not favour the first rows.
        order = work if number % 2 == 0 else list(reversed(work))
        for row, kind, app, scopes in order:
            samples[row.key, kind].append(await _run(app, scopes, requests) * 1e6)
        log(f"  in-process round {number + 1} of {rounds}: load {os.getloadavg()[0]:.2f}")
    for app in apps.values():
        app.stop()
    out: dict[str, dict[str, Any]] = {}
    for (key, kind), values in samples.items():
        out.setdefault(key, {})[kind] = {
            "best_us": min(values),
            "median_us": statistics.median(values),
            "samples_us": values,
        }
    return out


# ---------------------------------------------------------------------- wrk


def wrk_rows(setup: Setup, runs: int, load: measure.Load, cpus: set[int] | None) -> dict:
    python = servers.creamery_python(None)
    env = {**os.environ, "XDG_CACHE_HOME": str(setup.cache)}  # PYTHONPATH: the tree measured
    scripts: dict[tuple[str, str], Path] = {}
    for row in ROWS:
        for kind in ("page", "file"):
            paths = setup.paths(row, kind)
            scripts[row.key, kind] = measure.write_lua(
                WORK / f"wrk-access-{row.key}-{kind}.lua", paths
            )
    samples: dict[str, dict[str, list[float]]] = {r.key: {k: [] for k in KINDS} for r in ROWS}
    # The server's CPU time per request served: steadier than req/s on a shared machine (what
    # other processes take slows the clock, not the server's work per request).
    cpu_us: dict[str, dict[str, list[float]]] = {r.key: {k: [] for k in KINDS} for r in ROWS}
    commands: dict[str, str] = {}
    loads: dict[str, list[float]] = {r.key: [] for r in ROWS}
    errors: list[str] = []
    for number in range(runs):
        order = ROWS if number % 2 == 0 else tuple(reversed(ROWS))
        for row in order:
            port = servers.free_port()
            cmd = [python, "-m", "creamery", "run", "-i", "127.0.0.1", "-p", str(port)]
            cmd += [*setup.server_args[row.server], "--disable-fallback"]
            cmd += ["--state-dir", str(setup.state), str(setup.corpus.packages)]
            commands[row.key] = " ".join(cmd)
            logfile = WORK / "logs" / f"access-{row.key}.log"
            t0 = time.monotonic()
            proc = procs.spawn(cmd, log=logfile, cpus=cpus, env=env)
            try:
                measure.wait_ready(proc, port, t0, logfile, path="/health")
                procs.wait_idle(proc.pid, window=0.5)
                auth = setup.authorization(row)
                headers = () if auth is None else (f"Authorization: {auth}",)
                hdrs = dict(h.split(": ", 1) for h in headers)
                for kind in KINDS:
                    for path in setup.paths(row, kind):  # every page rendered before the load
                        status, _, _ = measure.http_get(port, path, hdrs)
                        if status != 200:
                            raise RuntimeError(f"{row.key}: {path} answered {status}")
                loads[row.key].append(os.getloadavg()[0])
                base = f"http://127.0.0.1:{port}"
                for kind in KINDS:
                    spent = procs.cpu_seconds(proc.pid)
                    if kind == "index":
                        r = measure.wrk(base + "/simple/", load, headers=headers)
                    else:
                        r = measure.wrk(base, load, script=scripts[row.key, kind], headers=headers)
                    spent = procs.cpu_seconds(proc.pid) - spent
                    samples[row.key][kind].append(r.rps)
                    cpu_us[row.key][kind].append(spent / max(r.requests, 1) * 1e6)
                    if r.errors:
                        errors.append(f"{row.key} {kind} round {number + 1}: {r.errors}")
                    log(f"  {row.key:12s} {kind:5s} {r.rps:10,.0f} req/s  p99 {r.p99_ms:6.2f} ms")
            finally:
                procs.stop(proc)
    return {
        "samples": samples,
        "cpu_us": cpu_us,
        "commands": commands,
        "load": loads,
        "errors": errors,
    }


# ---------------------------------------------------------------------- report


def _table(title: str, cell: Callable[[str, str], str]) -> list[str]:
    """A markdown table: one row per configuration, one column per kind of request."""
    lines = ["", title, ""]
    lines.append("| row | " + " | ".join(KIND_LABELS[k] for k in KINDS) + " |")
    lines.append("| --- |" + " --- |" * len(KINDS))
    for row in ROWS:
        lines.append(f"| {row.label} | " + " | ".join(cell(row.key, k) for k in KINDS) + " |")
    return lines


def render(setup: Setup, data: dict[str, Any]) -> str:
    lines = [f"# Tokens and permissions: {data['date']}", ""]
    lines.append(f"{setup.corpus.files} files ({PROJECTS} projects); {setup.rules_summary}.")
    inproc = data.get("inprocess")
    if inproc:

        def best(key: str, kind: str) -> str:
            us, ref = inproc[key][kind]["best_us"], inproc["none"][kind]["best_us"]
            return f"{us:.2f} ({ref / us:.2f}x)"

        title = "## In-process (µs of CPU per request, best of rounds; ratio = none / row)"
        lines += _table(title, best)
    wrk = data.get("wrk")
    if wrk:

        def rate(key: str, kind: str) -> str:
            values = wrk["samples"][key][kind]
            med, ref = statistics.median(values), statistics.median(wrk["samples"]["none"][kind])
            return f"{med:,.0f} [{min(values):,.0f}-{max(values):,.0f}] ({med / ref:.2f}x)"

        def cpu(key: str, kind: str) -> str:
            med = statistics.median(wrk["cpu_us"][key][kind])
            ref = statistics.median(wrk["cpu_us"]["none"][kind])
            return f"{med:.1f} ({ref / med:.2f}x)"

        lines += _table("## wrk (req/s, median of rounds [range]; ratio = row / none)", rate)
        title = "## Server CPU per request under wrk (µs, median of rounds; ratio = none / row)"
        lines += _table(title, cpu)
        lines.append("")
        for row in ROWS:
            load = ", ".join(f"{v:.1f}" for v in wrk["load"][row.key])
            lines.append(f"- {row.key} (load {load}): `{wrk['commands'][row.key]}`")
        for error in wrk["errors"]:
            lines.append(f"- wrk errors: {error}")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", choices=("inprocess", "wrk"), help="one of the two measurements")
    p.add_argument("--rounds", type=int, default=7, help="in-process rounds (default 7)")
    p.add_argument("--requests", type=int, default=20_000, help="per in-process sample")
    cpus = sorted(os.sched_getaffinity(0))
    p.add_argument(
        "--cpu", type=int, default=cpus[-1], help="in-process: pin to this CPU (default: last)"
    )
    p.add_argument("--runs", type=int, default=3, help="wrk rounds (default 3)")
    p.add_argument("--duration", type=float, default=5, help="seconds per wrk run (default 5)")
    p.add_argument("--no-pin", action="store_true", help="wrk: don't pin server and clients")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    procs.install_signal_handlers()
    import creamery

    log(f"creamery from {Path(creamery.__file__).parent} (PYTHONPATH picks the tree)")
    setup = prepare()
    data: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "commit": servers.tool_version(["git", "-C", str(BENCH.parent), "rev-parse", "HEAD"]),
    }
    try:
        if args.only in (None, "wrk"):
            servers.ensure_system_tools(need_nginx=False)
            server_cpus, client_cpus = procs.cpu_sets(not args.no_pin)
            load = measure.Load(duration=args.duration, cpus=client_cpus)
            log(f"wrk: {args.runs} rounds, load {os.getloadavg()[0]:.2f}")
            data["wrk"] = wrk_rows(setup, args.runs, load, server_cpus)
        if args.only in (None, "inprocess"):
            before = os.sched_getaffinity(0)
            os.sched_setaffinity(0, {args.cpu})
            load_now = os.getloadavg()[0]
            log(f"in-process on CPU {args.cpu}: {args.rounds} rounds, load {load_now:.2f}")
            try:
                data["inprocess"] = asyncio.run(inprocess(setup, args.rounds, args.requests))
            finally:
                os.sched_setaffinity(0, before)
    finally:
        procs.stop_all()
    text = render(setup, data)
    (WORK / "results-access.json").write_text(json.dumps(data, indent=1) + "\n")
    (WORK / "results-access.md").write_text(text)
    print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
