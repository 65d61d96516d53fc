#!/usr/bin/env python3
"""What the web UI costs and how fast it answers (issue 13).

    PYTHONPATH=src python3 benchmarks/ui.py                      # everything (~6 min, 2 cores)
    PYTHONPATH=src python3 benchmarks/ui.py --only search        # in-process search (~1 min)
    PYTHONPATH=src python3 benchmarks/ui.py --only pages --runs 1
    PYTHONPATH=src python3 benchmarks/ui.py --only hot --before /tmp/before

One corpus, `work/corpus-ui/`: 10,000 projects x 1 version x (wheel + sdist), `corpus.py`'s
generator (every summary is "creamery benchmark project <name>").

- **search** (in-process, no server): the catalog's search index over the corpus; the time of
  the first sync (names) and of reading every summary, then p50/p99 of `SearchIndex.search`
  alone and with the page's rendering (`web/ui/search.py::page`, 100 results at most: what a
  cache miss costs the server) for exact names, name prefixes, name substrings, a summary
  match, a summary word every project has (10,000 matches) and a query nothing matches.
- **pages** (wrk, as `access.py`: server pinned to CPU 0, `wrk -t2 -c32` on CPU 1, 1 s
  warm-up, `--runs` rounds with a fresh server each): `/project/<p>/` and
  `/project/<p>/<v>/` cycling through 200 projects (rows say n/a when the tree has no
  project page), `/search/?q=` cycling through 200 queries (rendered once, then served from
  the page cache), and `/search/?q=pkg-0NNNN` with random numbers (mostly cache misses).
- **hot**: `/simple/<p>/` and `/packages/<file>` (500 each, spread over the corpus) on the
  tree before the UI (`--before DIR`: a checkout of 73e4fdf, made with
  `git worktree add /tmp/before 73e4fdf`) and on this tree, alternating in each round: req/s
  and the server's CPU time per request (steadier than req/s on a shared machine).

Results: `work/results-ui.md` and `.json`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus as corpus_mod
import measure
import procs
import servers
from servers import BENCH, WORK, log

PROJECTS = 10_000
VERSIONS = 1
PATHS = 500
PAGE_PROJECTS = 200
BEFORE_COMMIT = "73e4fdf"
CACHE = WORK / "creamery-cache-ui"  # XDG_CACHE_HOME of every process here (facts cache)
SERVER_ARGS = ["-a", ".", "-P", ".", "--disable-fallback"]


# ---------------------------------------------------------------------- queries


def queries(corpus: corpus_mod.Corpus) -> dict[str, list[str]]:
    """Queries by kind, 50 of each (the summary kinds fewer: they are all alike)."""
    sample = corpus.sample_projects(50)
    numbers = [name.rsplit("-", 1)[1] for name in sample]  # 05 digits
    return {
        "exact": sample,
        "prefix": [f"pkg-{n[:4]}" for n in numbers],  # ~10 names each
        "substring": [n[1:4] for n in numbers],  # ~30 names each, none a prefix
        "summary": [f"project {name}" for name in sample],  # one summary, no name
        "summary-all": ["benchmark", "creamery benchmark"],  # every project's summary
        "none": ["zzz-nothing", "no such thing here"],
    }


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def search_inprocess(corpus: corpus_mod.Corpus, rounds: int) -> dict[str, Any]:
    from creamery.catalog.search import clean_query
    from creamery.catalog.service import Catalog
    from creamery.core.config import config_from_app_kwargs
    from creamery.web.ui.search import LIMIT, page

    catalog = Catalog(config_from_app_kwargs({"roots": [str(corpus.packages)]}))
    started = time.perf_counter()
    catalog.index.load()
    loaded = time.perf_counter() - started
    search = catalog.search
    started = time.perf_counter()
    search.sync()
    synced = time.perf_counter() - started
    started = time.perf_counter()
    search.fill_summaries()
    summaries = time.perf_counter() - started
    log(f"  index {loaded:.2f} s, first sync {synced:.2f} s, summaries {summaries:.1f} s")
    base = "http://127.0.0.1:8080/"
    out: dict[str, Any] = {
        "index_s": loaded,
        "sync_s": synced,
        "summaries_s": summaries,
        "projects": len(catalog.index.projects),
        "kinds": {},
    }
    kinds = queries(corpus)
    found: dict[str, list[float]] = {kind: [] for kind in kinds}
    rendered: dict[str, list[float]] = {kind: [] for kind in kinds}
    totals: dict[str, list[int]] = {kind: [] for kind in kinds}
    cpu: dict[str, list[float]] = {kind: [] for kind in kinds}  # search + page, CPU time
    for number in range(rounds):
        for kind, texts in kinds.items():
            for text in texts:
                query = clean_query(text)
                c0, t0 = time.process_time(), time.perf_counter()
                results = search.search(query, limit=LIMIT)
                t1 = time.perf_counter()
                page(query, results, base)
                t2, c2 = time.perf_counter(), time.process_time()
                found[kind].append((t1 - t0) * 1e3)
                rendered[kind].append((t2 - t0) * 1e3)
                cpu[kind].append((c2 - c0) * 1e3)
                if number == 0:
                    totals[kind].append(results.total)
        log(f"  search round {number + 1} of {rounds}: load {os.getloadavg()[0]:.2f}")
    for kind in kinds:
        out["kinds"][kind] = {
            "queries": len(kinds[kind]),
            "matches": statistics.median(totals[kind]),
            "search_p50_ms": percentile(found[kind], 0.5),
            "search_p99_ms": percentile(found[kind], 0.99),
            "page_p50_ms": percentile(rendered[kind], 0.5),
            "page_p99_ms": percentile(rendered[kind], 0.99),
            "page_cpu_p50_ms": percentile(cpu[kind], 0.5),
        }
    return out


# ---------------------------------------------------------------------- servers under wrk


def start(tree: Path, port: int, corpus: corpus_mod.Corpus, name: str, cpus: set[int] | None):
    python = servers.creamery_python(None)
    cmd = [python, "-m", "creamery", "run", "-i", "127.0.0.1", "-p", str(port)]
    cmd += [*SERVER_ARGS, str(corpus.packages)]
    env = {**os.environ, "XDG_CACHE_HOME": str(CACHE), "PYTHONPATH": str(tree / "src")}
    logfile = WORK / "logs" / f"ui-{name}.log"
    t0 = time.monotonic()
    proc = procs.spawn(cmd, log=logfile, cpus=cpus, env=env)
    measure.wait_ready(proc, port, t0, logfile, path="/health")
    procs.wait_idle(proc.pid, window=0.5)  # search reads its summaries in the background
    return proc, " ".join(cmd)


def random_search_script(path: Path) -> Path:
    """wrk: `/search/?q=pkg-0NNNN` with random numbers: mostly misses of the page cache."""
    path.write_text(
        "function request()\n"
        '  return wrk.format(nil, "/search/?q=pkg-" .. string.format("%05d", '
        "math.random(5, 9999)))\n"
        "end\n"
    )
    return path


def _measure(
    proc: Any, port: int, load: measure.Load, script: Path, paths: list[str]
) -> tuple[float, float, dict[str, int]] | None:
    """(req/s, server CPU µs per request, wrk errors); None when the tree has no such page."""
    for path in paths[:5] + paths[-5:]:
        status, _, _ = measure.http_get(port, path)
        if status == 404:
            return None
        if status != 200:
            raise RuntimeError(f"{path} answered {status}")
    for path in paths:  # every page rendered once before the load
        measure.http_get(port, path)
    spent = procs.cpu_seconds(proc.pid)
    result = measure.wrk(f"http://127.0.0.1:{port}", load, script=script)
    spent = procs.cpu_seconds(proc.pid) - spent
    return result.rps, spent / max(result.requests, 1) * 1e6, result.errors


def page_rows(corpus: corpus_mod.Corpus, runs: int, load: measure.Load, cpus: set[int] | None):
    sample = corpus.sample_projects(PAGE_PROJECTS)
    version = corpus_mod.version_string(0)
    texts = [q for kind in queries(corpus).values() for q in kind][:PAGE_PROJECTS]
    from urllib.parse import quote

    rows = {
        "project": [f"/project/{p}/" for p in sample],
        "release": [f"/project/{p}/{version}/" for p in sample],
        "search": [f"/search/?q={quote(q)}" for q in texts],
        "search-miss": [f"/search/?q=pkg-{n:05d}" for n in range(5, 60)],  # checks only
    }
    scripts = {
        key: measure.write_lua(WORK / f"wrk-ui-{key}.lua", paths)
        for key, paths in rows.items()
        if key != "search-miss"
    }
    scripts["search-miss"] = random_search_script(WORK / "wrk-ui-search-miss.lua")
    out: dict[str, Any] = {"rps": {k: [] for k in rows}, "cpu_us": {k: [] for k in rows}}
    out["errors"] = []
    for number in range(runs):
        port = servers.free_port()
        proc, command = start(BENCH.parent, port, corpus, "pages", cpus)
        out["command"] = command
        try:
            for key in rows if number % 2 == 0 else reversed(list(rows)):
                measured = _measure(proc, port, load, scripts[key], rows[key])
                if measured is None:
                    log(f"  {key:12s} n/a (no such page on this tree)")
                    continue
                rps, cpu_us, errors = measured
                out["rps"][key].append(rps)
                out["cpu_us"][key].append(cpu_us)
                if errors:
                    out["errors"].append(f"{key} round {number + 1}: {errors}")
                log(f"  {key:12s} {rps:10,.0f} req/s  {cpu_us:7.1f} µs CPU/request")
        finally:
            procs.stop(proc)
    return out


def hot_rows(
    corpus: corpus_mod.Corpus, before: Path, runs: int, load: measure.Load, cpus: set[int] | None
):
    pages = [f"/simple/{p}/" for p in corpus.sample_projects(PATHS)]
    files = [f"/packages/{f}" for f in corpus.sample_files(PATHS)]
    paths = {"simple": pages, "file": files}
    scripts = {k: measure.write_lua(WORK / f"wrk-ui-{k}.lua", v) for k, v in paths.items()}
    trees = {"before": before, "now": BENCH.parent}
    out: dict[str, Any] = {
        "rps": {t: {k: [] for k in paths} for t in trees},
        "cpu_us": {t: {k: [] for k in paths} for t in trees},
        "commands": {},
        "errors": [],
    }
    for number in range(runs):
        order = list(trees) if number % 2 == 0 else list(reversed(trees))
        for tree in order:
            port = servers.free_port()
            proc, command = start(trees[tree], port, corpus, tree, cpus)
            out["commands"][tree] = f"PYTHONPATH={trees[tree] / 'src'} {command}"
            try:
                for kind in paths:
                    measured = _measure(proc, port, load, scripts[kind], paths[kind])
                    assert measured is not None, f"{tree}: {kind} answered 404"
                    rps, cpu_us, errors = measured
                    out["rps"][tree][kind].append(rps)
                    out["cpu_us"][tree][kind].append(cpu_us)
                    if errors:
                        out["errors"].append(f"{tree} {kind} round {number + 1}: {errors}")
                    log(f"  {tree:6s} {kind:6s} {rps:10,.0f} req/s  {cpu_us:6.1f} µs CPU/request")
            finally:
                procs.stop(proc)
    return out


# ---------------------------------------------------------------------- report

KIND_LABELS = {
    "exact": "exact name (`pkg-04321`)",
    "prefix": "name prefix (`pkg-0432`)",
    "substring": "name substring (`432`)",
    "summary": "summary only (`project pkg-04321`)",
    "summary-all": "summary word of every project (`benchmark`)",
    "none": "nothing matches",
}
PAGE_LABELS = {
    "project": "`/project/<p>/`",
    "release": "`/project/<p>/<v>/`",
    "search": "`/search/?q=` (200 queries, page cache)",
    "search-miss": "`/search/?q=pkg-0NNNN` (random: cache misses)",
}


def _spread(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"{statistics.median(values):,.0f} [{min(values):,.0f}-{max(values):,.0f}]"


def render(data: dict[str, Any]) -> str:
    lines = [f"# Web UI: {data['date']}", "", f"{data['machine']}; commit {data['commit']}."]
    found = data.get("search")
    if found:
        lines += [
            "",
            f"## Search in-process ({found['projects']:,} projects)",
            "",
            f"Index load {found['index_s']:.2f} s; search's first sync (names) "
            f"{found['sync_s'] * 1e3:.0f} ms; reading every summary {found['summaries_s']:.1f} s "
            "(background thread).",
            "",
            "| query | matches | search p50 / p99 (ms) | search + page p50 / p99 (ms) "
            "| search + page, CPU p50 (ms) |",
            "| --- | --- | --- | --- | --- |",
        ]
        for kind, row in found["kinds"].items():
            lines.append(
                f"| {KIND_LABELS[kind]} | {row['matches']:,.0f} | "
                f"{row['search_p50_ms']:.2f} / {row['search_p99_ms']:.2f} | "
                f"{row['page_p50_ms']:.2f} / {row['page_p99_ms']:.2f} | "
                f"{row.get('page_cpu_p50_ms', float('nan')):.2f} |"
            )
    pages = data.get("pages")
    if pages:
        lines += [
            "",
            "## Pages under wrk (req/s, median of rounds [range]; server CPU µs per request)",
            "",
            "| path | req/s | CPU µs/request |",
            "| --- | --- | --- |",
        ]
        for key, label in PAGE_LABELS.items():
            cpu = pages["cpu_us"][key]
            cell = f"{statistics.median(cpu):.0f}" if cpu else "n/a"
            lines.append(f"| {label} | {_spread(pages['rps'][key])} | {cell} |")
        lines += ["", f"- `{pages.get('command', '')}`"]
        lines += [f"- wrk errors: {e}" for e in pages["errors"]]
    hot = data.get("hot")
    if hot:
        lines += [
            "",
            f"## Hot paths before the UI ({BEFORE_COMMIT}) and now",
            "",
            "| path | before req/s | now req/s | now / before | before CPU µs | now CPU µs |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for kind, label in (("simple", "`/simple/<p>/`"), ("file", "`/packages/<file>`")):
            before, now = hot["rps"]["before"][kind], hot["rps"]["now"][kind]
            ratio = statistics.median(now) / statistics.median(before)
            cpu_b = statistics.median(hot["cpu_us"]["before"][kind])
            cpu_n = statistics.median(hot["cpu_us"]["now"][kind])
            lines.append(
                f"| {label} | {_spread(before)} | {_spread(now)} | {ratio:.2f}x | "
                f"{cpu_b:.1f} | {cpu_n:.1f} |"
            )
        lines.append("")
        lines += [f"- {tree}: `{cmd}`" for tree, cmd in hot["commands"].items()]
        lines += [f"- wrk errors: {e}" for e in hot["errors"]]
    loads = ", ".join(f"{v:.1f}" for v in data.get("load", []))
    lines += ["", f"Load average at the start of each part: {loads}."]
    if data.get("note"):
        lines.append(f"({data['note']}.)")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", choices=("search", "pages", "hot"), help="one of the three parts")
    p.add_argument("--rounds", type=int, default=5, help="in-process search rounds (default 5)")
    p.add_argument("--runs", type=int, default=3, help="wrk rounds (default 3)")
    p.add_argument("--duration", type=float, default=5, help="seconds per wrk run (default 5)")
    p.add_argument(
        "--before",
        type=Path,
        default=Path("/tmp/before"),
        help=f"a checkout of {BEFORE_COMMIT} (git worktree add /tmp/before {BEFORE_COMMIT})",
    )
    p.add_argument("--no-pin", action="store_true", help="wrk: don't pin server and clients")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    procs.install_signal_handlers()
    random.seed(13)
    os.environ["XDG_CACHE_HOME"] = str(CACHE)  # the in-process catalog's facts cache too
    corpus = corpus_mod.ensure_corpus(WORK, "ui", PROJECTS, VERSIONS, log=log)
    data: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "commit": servers.tool_version(["git", "-C", str(BENCH.parent), "rev-parse", "HEAD"]),
        "load": [],
    }
    try:
        if args.only in (None, "search"):
            data["load"].append(os.getloadavg()[0])
            log(f"search in-process: {args.rounds} rounds")
            data["search"] = search_inprocess(corpus, args.rounds)
        if args.only in (None, "pages", "hot"):
            servers.ensure_system_tools(need_nginx=False)
            server_cpus, client_cpus = procs.cpu_sets(not args.no_pin)
            load = measure.Load(duration=args.duration, cpus=client_cpus)
            if args.only in (None, "pages"):
                data["load"].append(os.getloadavg()[0])
                log(f"pages under wrk: {args.runs} rounds")
                data["pages"] = page_rows(corpus, args.runs, load, server_cpus)
            if args.only in (None, "hot"):
                if not (args.before / "src" / "creamery").is_dir():
                    raise SystemExit(
                        f"{args.before} is no checkout: git worktree add {args.before} "
                        f"{BEFORE_COMMIT}"
                    )
                data["load"].append(os.getloadavg()[0])
                log(f"hot paths, before and now: {args.runs} rounds")
                data["hot"] = hot_rows(corpus, args.before, args.runs, load, server_cpus)
    finally:
        procs.stop_all()
    saved = WORK / "results-ui.json"
    if args.only is not None and saved.exists():  # the other parts: from the last run
        earlier = json.loads(saved.read_text())
        for part in ("search", "pages", "hot"):
            if part not in data and part in earlier:
                data[part] = earlier[part]
        data["note"] = f"only `{args.only}` measured at {data['date']}; the rest earlier"
    text = render(data)
    (WORK / "results-ui.json").write_text(json.dumps(data, indent=1) + "\n")
    (WORK / "results-ui.md").write_text(text)
    print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
