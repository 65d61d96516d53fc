#!/usr/bin/env python3
"""Benchmark creamery against pypiserver and a static nginx, side by side.

    python benchmarks/run.py            # 40,000-file corpus, all three servers
    python benchmarks/run.py --small    # 1,000-file corpus
    python benchmarks/run.py --both     # both corpora, plus the scaling table
    python benchmarks/run.py --only creamery --duration 3

Servers run one at a time. By default each server is pinned to CPU 0 and the clients
(wrk, curl, uv, pip) to the other CPUs. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus as corpus_mod
import measure
import procs
import report
import servers
from servers import WORK, log

SMALL_PROJECTS = 125  # x 4 versions x (wheel + sdist) = 1,000 files
# A wrk run that completes fewer requests than this is not repeated in later rounds
# (pypiserver at 40,000 files: each repetition costs minutes of backlog for little precision).
SLOW_REQUESTS = 100
# Nor is a client timing (uv, pip) longer than this.
SLOW_CLIENT_S = 10.0
# A server counts as settled after start-up once it uses < 5% CPU over this many seconds.
IDLE_WINDOW = 0.5
# Other processes on the machine using this share of the CPUs during a round get a note.
FOREIGN_WARN = 0.05
# Before each server's round, wait (up to --quiet-wait s) for others to use less than this.
QUIET_LIMIT = 0.05


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--projects", type=int, default=5000, help="projects (default 5000)")
    p.add_argument("--versions", type=int, default=4, help="versions per project (default 4)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--small", action="store_true", help="the 1,000-file corpus")
    size.add_argument("--both", action="store_true", help="the small corpus, then the large one")
    p.add_argument(
        "--only",
        default=",".join(servers.SERVERS),
        help="comma-separated servers to run (others come from earlier results)",
    )
    p.add_argument("--duration", type=float, default=5, help="seconds per wrk run (default 5)")
    p.add_argument(
        "--runs",
        type=int,
        default=3,
        help="rounds; each server is measured once per round, medians (default 3)",
    )
    p.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    p.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    p.add_argument(
        "--paths",
        type=int,
        default=500,
        help="distinct projects/files wrk cycles through (default 500)",
    )
    p.add_argument("--workers", type=int, default=1, help="creamery workers (default 1)")
    p.add_argument("--nginx-workers", default="1", help="nginx worker_processes (default 1)")
    p.add_argument("--no-pin", action="store_true", help="don't pin servers/clients to CPUs")
    p.add_argument("--creamery-python", help="python that runs creamery (default .venv)")
    p.add_argument(
        "--creamery-arg",
        action="append",
        default=[],
        help="extra argument for `creamery run` (repeatable)",
    )
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=20,
        help="seconds to wait before each round for other processes to quieten (default 20)",
    )
    p.add_argument("--skip-clients", action="store_true", help="skip the uv and pip timings")
    args = p.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.only) - set(servers.SERVERS)
    if unknown:
        p.error(f"unknown server(s) {', '.join(sorted(unknown))}")
    return args


@dataclass
class Tally:
    """One server's samples, gathered over the rounds."""

    name: str
    samples: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    command: list[str] = field(default_factory=list)
    ok: set[str] | None = None  # load tests that passed the pre-flight checks
    once: set[str] = field(default_factory=set)  # too slow to repeat in later rounds
    dead: bool = False
    rss_note: str = ""

    def add(self, key: str, value: float) -> None:
        self.samples.setdefault(key, []).append(value)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def result(self, load_text: str) -> dict:
        metrics: dict[str, float | None] = {}
        for key, values in self.samples.items():
            metrics[key] = max(values) if key == "rss_mb" else statistics.median(values)
        if "visible_ms" in self.once:
            metrics["visible_ms"] = None
        foreign = self.samples.get("foreign_cpu", [])
        notes = list(self.notes)
        if foreign and max(foreign) >= FOREIGN_WARN:
            notes.append(
                "other processes used up to "
                f"{max(foreign):.0%} of the CPUs during its rounds (the numbers suffer)"
            )
        if self.rss_note:
            notes.append(self.rss_note)
        return {
            "metrics": metrics,
            "samples": self.samples,
            "notes": notes,
            "command": self.command,
            "load": load_text,
            "finished": datetime.datetime.now().isoformat(timespec="seconds"),
        }


class Bench:
    def __init__(self, args: argparse.Namespace, corpus: corpus_mod.Corpus, tools: dict):
        self.args = args
        self.corpus = corpus
        self.tools = tools
        self.server_cpus, self.client_cpus = procs.cpu_sets(not args.no_pin)
        self.load = measure.Load(
            threads=args.threads,
            connections=args.connections,
            duration=args.duration,
            cpus=self.client_cpus,
        )
        if self.server_cpus is None:
            pin = "no CPU pinning"
        else:
            pin = f"server on CPU {min(self.server_cpus)}, clients on CPUs "
            pin += ",".join(map(str, sorted(self.client_cpus or ())))
            if args.workers > 1:
                pin += f" (creamery with {args.workers} workers: not pinned)"
        self.load_text = (
            f"{args.runs} rounds (each server started afresh and measured once per round; "
            f"medians over rounds); wrk -t{args.threads} -c{args.connections} "
            f"-d{args.duration:g}s --latency after a 1 s warm-up, cycling through "
            f"{len(corpus.sample_projects(args.paths))} projects/files; {pin}"
        )
        self.scratch = WORK / "scratch"
        self.scratch.mkdir(parents=True, exist_ok=True)
        pages = [f"/simple/{p}/" for p in corpus.sample_projects(args.paths)]
        files = [f"/packages/{f}" for f in corpus.sample_files(args.paths)]
        self.page_lua = measure.write_lua(WORK / f"wrk-pages-{corpus.name}.lua", pages)
        self.file_lua = measure.write_lua(WORK / f"wrk-files-{corpus.name}.lua", files)
        self.probe_project = corpus.sample_projects(3)[1]
        self.probe_file = corpus.sample_files(3)[0]

    def launch(self, name: str, port: int) -> servers.Launch:
        if name == "creamery":
            return servers.launch_creamery(
                self.corpus,
                port,
                self.args.workers,
                servers.creamery_python(self.args.creamery_python),
                self.args.creamery_arg,
            )
        if name == "pypiserver":
            return servers.launch_pypiserver(self.corpus, port)
        return servers.launch_nginx(self.corpus, port, self.args.nginx_workers)

    def _clean_leftovers(self) -> None:
        for path in self.corpus.packages.glob("*-99.0.*"):
            path.unlink()

    def _log_path(self, name: str) -> Path:
        return WORK / "logs" / f"{name}-{self.corpus.name}.log"

    def _start(self, name: str) -> tuple[subprocess.Popen, int, float, list[str]]:
        """Start *name* on a free port; returns (process, port, seconds to first 200, cmd)."""
        port = servers.free_port()
        launch = self.launch(name, port)
        cpus = self.server_cpus
        if name == "creamery" and self.args.workers > 1:
            cpus = None  # several workers: let them use every core
        log_path = self._log_path(name)
        t0 = time.monotonic()
        proc = procs.spawn(launch.cmd, log=log_path, cpus=cpus, env=launch.env, cwd=launch.cwd)
        try:
            return proc, port, measure.wait_ready(proc, port, t0, log_path), launch.cmd
        except BaseException:
            procs.stop(proc)
            raise

    def new_tally(self, name: str) -> Tally:
        tally = Tally(name)
        launch = self.launch(name, 0)
        tally.command = launch.cmd
        if launch.note:
            tally.note(launch.note)
        self._log_path(name).unlink(missing_ok=True)
        if name == "creamery":  # its facts cache (hashes, metadata) lives here: start cold
            shutil.rmtree(servers.creamery_cache(self.corpus), ignore_errors=True)
        return tally

    def round(self, tally: Tally, number: int) -> None:
        """Start the server, take one sample of everything, stop it."""
        if tally.dead:
            return
        name = tally.name
        log(f"\n== {name}, round {number + 1} of {self.args.runs}")
        self._clean_leftovers()
        if self.args.quiet_wait > 0:
            share = procs.wait_quiet(QUIET_LIMIT, self.args.quiet_wait)
            if share >= QUIET_LIMIT:
                log(f"  the machine is busy: other processes use {share:.0%} of the CPUs")
        proc = None
        foreign = procs.ForeignLoad()
        try:
            if number == 0:  # the very first start: creamery's cache is empty
                t0 = time.monotonic()
                proc, _, seconds, _ = self._start(name)
                tally.add("cold_startup_s", seconds)
                self._settle(proc, tally)
                tally.add("cold_busy_s", time.monotonic() - t0 - IDLE_WINDOW)
                busy = tally.samples["cold_busy_s"][0]
                log(f"  first start-up: {seconds:.2f} s, busy until {busy:.2f} s")
                procs.stop(proc)
            proc, port, seconds, tally.command = self._start(name)
            tally.add("startup_s", seconds)
            self._settle(proc, tally)
            log(f"  start-up: {seconds:.2f} s: {' '.join(tally.command)}")
            if tally.ok is None:
                tally.ok = self._preflight(port, tally)
            for what, fn in self._steps(tally, port, number):
                if what in tally.once and number > 0:
                    continue
                try:
                    fn()
                except Exception as exc:  # note it and go on with the next measurement
                    tally.note(f"{what} failed: {str(exc).splitlines()[0]}")
                    log(f"  {what} FAILED: {exc}")
                if proc.poll() is not None:
                    raise RuntimeError(f"server exited with code {proc.returncode} during {what}")
            each = procs.peak_rss_each_mb(proc.pid)
            tally.add("rss_mb", sum(each))
            log(f"  peak RSS: {sum(each):.1f} MB")
            if len(each) > 1:
                tally.rss_note = "peak RSS per process (parent first): " + " + ".join(
                    f"{mb:.1f}" for mb in each
                )
        except Exception as exc:  # keep the other servers' results
            tally.note(f"aborted: {exc}")
            tally.dead = True
            log(f"  ABORTED: {exc}")
            traceback.print_exc()
        finally:
            if proc is not None:
                procs.stop(proc)
            self._clean_leftovers()
            others = foreign.fraction()
            tally.add("foreign_cpu", others)
            log(f"  other processes on the machine used {others:.0%} of the CPUs meanwhile")

    @staticmethod
    def _settle(proc: subprocess.Popen, tally: Tally) -> None:
        """Let background work after start-up (cache building) finish before measuring."""
        if not procs.wait_idle(proc.pid, window=IDLE_WINDOW):
            tally.note("still busy 300 s after start-up; measured anyway")

    def _preflight(self, port: int, tally: Tally) -> set[str]:
        """Check each URL once; returns the load tests that can run."""
        ok = set()
        status, _, body = measure.http_get(port, "/simple/")
        if status == 200 and self.probe_project.encode() in body:
            ok.add("index")
        else:
            tally.note(f"/simple/: HTTP {status} or project missing")
        path = f"/simple/{self.probe_project}/"
        status, _, body = measure.http_get(port, path)
        if status == 200 and b".whl" in body:
            ok.add("page")
        else:
            tally.note(f"{path}: HTTP {status} or no files listed")
        status, headers, body = measure.http_get(port, path, {"Accept": measure.JSON_ACCEPT})
        ctype = headers.get("content-type", "")
        if status == 200:
            ok.add("json")
            if "json" not in ctype:
                tally.note(f"JSON request answered with {ctype.split(';')[0] or '?'}")
        else:
            tally.note(f"{path} (JSON): HTTP {status}")
        status, _, body = measure.http_get(port, f"/packages/{self.probe_file}")
        expected = (self.corpus.packages / self.probe_file).stat().st_size
        if status == 200 and len(body) == expected:
            ok.add("file")
        else:
            tally.note(f"/packages/{self.probe_file}: HTTP {status}, {len(body)} bytes")
        return ok

    def _steps(self, tally: Tally, port: int, number: int) -> list[tuple[str, Callable]]:
        base = f"http://127.0.0.1:{port}"
        index_url = f"{base}/simple/"
        tests = [
            ("index", index_url, None, ()),
            ("page", base, self.page_lua, ()),
            ("json", base, self.page_lua, (f"Accept: {measure.JSON_ACCEPT}",)),
            ("file", base, self.file_lua, ()),
        ]

        def load(key: str, url: str, script: Path | None, headers: tuple[str, ...]) -> None:
            r = measure.wrk(url, self.load, script=script, headers=headers)
            tally.add(f"{key}_rps", r.rps)
            tally.add(f"{key}_p99_ms", r.p99_ms)
            log(f"  {key:5s}: {r.rps:10,.1f} req/s  p99 {r.p99_ms:8.2f} ms")
            if r.requests < SLOW_REQUESTS:
                tally.once.add(f"wrk {key}")
                tally.note(f"wrk {key}: {r.requests} requests in a run, so measured once")
            if r.errors:
                errs = ", ".join(f"{k} {v}" for k, v in r.errors.items())
                tally.note(f"wrk {key}, round {number + 1}: {errs} (of {r.requests} requests)")

        def download() -> None:
            big = self.corpus.packages / self.corpus.big_file
            url = f"{base}/packages/{self.corpus.big_file}"
            mbps = measure.download_mbps(url, self.client_cpus, big.stat().st_size)
            tally.add("big_mbps", mbps)
            log(f"  200 MB download: {mbps:,.0f} MB/s")

        def visible() -> None:
            version = f"99.0.{number}"
            project = self.probe_project
            name = corpus_mod.wheel_filename(project, version)
            wheel = corpus_mod.build_wheel(project, version)
            ms = measure.visible_ms(port, project, self.corpus.packages, {name: wheel})[0]
            if ms is None:
                tally.once.add("new file visible")
                tally.note("new file not visible within 10 s")
                log("  new file NOT visible within 10 s")
            else:
                tally.add("visible_ms", ms)
                log(f"  new file visible after {ms:.1f} ms")

        def client(key: str, label: str, fn: Callable[[], float]) -> None:
            seconds = fn()
            tally.add(key, seconds)
            log(f"  {label}: {seconds:.2f} s")
            if seconds > SLOW_CLIENT_S:
                tally.once.add(label)
                tally.note(f"{label}: {seconds:.0f} s, so measured once")

        chain = [corpus_mod.project_name(i) for i in range(corpus_mod.CHAIN_LENGTH)]
        uv = functools.partial(
            measure.uv_install_s,
            self.tools["uv"],
            self.tools["python"],
            index_url,
            "chain0",
            self.client_cpus,
            self.scratch,
            chain,
        )
        pip = functools.partial(
            measure.pip_download_s,
            self.tools["pip_python"],
            index_url,
            self.corpus.sample_projects(20),
            self.client_cpus,
            self.scratch,
        )
        steps: list[tuple[str, Callable]] = [
            (f"wrk {key}", functools.partial(load, key, url, script, headers))
            for key, url, script, headers in tests
            if key in (tally.ok or ())
        ]
        steps.append(("200 MB download", download))
        if tally.name == "nginx":
            tally.note("new-file visibility: n/a (pages are pre-rendered)")
        else:
            steps.append(("new file visible", visible))
        if not self.args.skip_clients:
            label = "uv pip install chain0..4"
            steps.append((label, functools.partial(client, "uv_chain_s", label, uv)))
            label = "pip download 20 projects"
            steps.append((label, functools.partial(client, "pip_download_s", label, pip)))
        return steps


def machine_info() -> dict[str, str]:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(
                line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": cpu,
        "cores": str(len(os.sched_getaffinity(0))),
        "memory": f"{mem:.0f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def results_path(name: str, workers: int, ext: str) -> Path:
    suffix = f"-w{workers}" if workers != 1 else ""
    return WORK / f"results-{name}{suffix}.{ext}"


def load_results(name: str, workers: int = 1) -> dict | None:
    path = results_path(name, workers, "json")
    return json.loads(path.read_text()) if path.exists() else None


def render(data: dict, small: dict | None) -> str:
    servers_present = [s for s in servers.SERVERS if s in data["servers"]]
    results = data["servers"]
    c = data["corpus"]
    lines = [
        f"## Corpus `{c['name']}`: {c['files']:,} files ({c['projects']:,} projects x "
        f"{c['versions']} versions x wheel+sdist) + one 200 MB wheel",
        "",
        report.main_table(results, servers_present),
        "",
        "Ratios: how many times better creamery is (> 1: creamery better; for times, latency",
        "and memory the inverse ratio). Targets are for the 40,000-file corpus, one process.",
    ]
    if small is not None and c["name"] != "small":
        lines += ["", "### Scaling: 1,000 -> 40,000 files", ""]
        lines.append(report.scaling_table(results, small["servers"], servers_present))
    lines += ["", "### Run", ""]
    m = data["machine"]
    lines.append(
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['memory']}, Linux {m['kernel']}, "
        f"Python {m['python']}"
    )
    loads = {results[s].get("load", "?") for s in servers_present}
    if len(loads) == 1:
        lines.append(f"- load: {loads.pop()}")
    lines.append(f"- tools: {data['tools']}")
    for s in servers_present:
        r = results[s]
        notes = "; ".join(r.get("notes", [])) or "-"
        load = f"; load: {r.get('load', '?')}" if loads else ""
        lines.append(
            f"- {s} (finished {r.get('finished', '?')}): `{' '.join(r['command'])}`; {notes}{load}"
        )
    failed = report.failed_targets(results, small["servers"] if small else None)
    if "creamery" in results:
        lines += ["", "Targets missed:" + ("" if failed else " none")]
        lines += [f"- {f}" for f in failed]
    return "\n".join(lines) + "\n"


def bench_corpus(args: argparse.Namespace, corpus: corpus_mod.Corpus, tools: dict) -> str:
    bench = Bench(args, corpus, tools)
    previous = load_results(corpus.name, args.workers) or {}
    if not previous and args.workers != 1:
        previous = load_results(corpus.name) or {}
    results = dict(previous.get("servers", {}))
    tallies = [bench.new_tally(name) for name in servers.SERVERS if name in args.only]
    for number in range(args.runs):
        # Alternate the order so that a slow spell of the machine hits every server alike.
        for tally in tallies if number % 2 == 0 else reversed(tallies):
            bench.round(tally, number)
    for tally in tallies:
        results[tally.name] = tally.result(bench.load_text)
    data = {
        "corpus": {
            "name": corpus.name,
            "files": corpus.files,
            "projects": corpus.projects,
            "versions": corpus.versions,
        },
        "machine": machine_info(),
        "tools": tools["versions"],
        "servers": results,
    }
    results_path(corpus.name, args.workers, "json").write_text(json.dumps(data, indent=1) + "\n")
    small = load_results("small") if corpus.name != "small" else None
    text = render(data, small)
    results_path(corpus.name, args.workers, "md").write_text(text)
    return text


def prepare_tools(args: argparse.Namespace) -> dict:
    servers.ensure_system_tools(need_nginx="nginx" in args.only)
    if "pypiserver" in args.only:
        servers.ensure_pypiserver()
    pip_python, uv = servers.ensure_clients()
    versions = [
        servers.tool_version(["wrk", "--version"]).split(" Copyright")[0],
        servers.tool_version([str(uv), "--version"]),
        "pip " + servers.tool_version([str(pip_python), "-m", "pip", "--version"]).split()[1],
        servers.tool_version(["curl", "--version"]).split(" (")[0],
    ]
    if "creamery" in args.only:
        versions.insert(0, servers.creamery_version(args.creamery_python))
    nginx = servers.find_nginx()
    if nginx:
        versions.append(servers.tool_version([nginx, "-v"]).replace("nginx version: ", ""))
    return {
        "uv": uv,
        "pip_python": pip_python,
        "python": str(pip_python),
        "versions": ", ".join(versions),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    procs.install_signal_handlers()
    WORK.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        tools = prepare_tools(args)
        plans = []
        if args.small or args.both:
            plans.append(("small", SMALL_PROJECTS, args.versions))
        if not args.small:
            default = (args.projects, args.versions) == (5000, 4)
            name = "large" if default else f"p{args.projects}-v{args.versions}"
            plans.append((name, args.projects, args.versions))
        outputs = []
        for name, projects, versions in plans:
            corpus = corpus_mod.ensure_corpus(WORK, name, projects, versions, log=log)
            outputs.append(bench_corpus(args, corpus, tools))
        shutil.rmtree(WORK / "scratch", ignore_errors=True)
    finally:
        procs.stop_all()
    print()
    for text in outputs:
        print(text)
    log(f"total time {time.monotonic() - started:.0f} s; results in {WORK}/results-*.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
