#!/usr/bin/env python3
"""Object storage and replicas (issue 11): creamery on an s3:// root against a local root,
devpi-server and simple-repository-server, on the same 40,000-file corpus, in one run.

    python3 benchmarks/object_storage.py                       # everything
    python3 benchmarks/object_storage.py --only devpi,srs      # the peers (others from before)
    python3 benchmarks/object_storage.py --only s3 --uploads 20

Parts (`--only`): `local` (creamery on a directory), `s3` (creamery on a bucket of a moto
server preloaded with the corpus: start-up with and without a snapshot, one replica, two
replicas behind nginx, uploads, propagation between replicas), `devpi` (devpi-server, its
primary + `--primary-url` replica), `srs` (simple-repository-server; two processes on one
directory). Needs wrk and nginx (as run.py), boto3 and moto (`pip install -e '.[test]'`), and
creamery's s3 extra for the `s3` part. Results: benchmarks/work/results-object-storage.{json,md}.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import re
import shutil
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import balancer
import corpus as corpus_mod
import measure
import moto_store
import object_report
import peers
import procs
import propagation
import servers
from object_report import fmt
from run import machine_info
from servers import WORK, log

PARTS = ("local", "s3", "devpi", "srs")
RESULTS = WORK / "results-object-storage"
BUCKET = "creamery-bench"
PREFIX = "index"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", default=",".join(PARTS), help="comma list of " + ", ".join(PARTS))
    p.add_argument("--projects", type=int, default=5000)
    p.add_argument("--versions", type=int, default=4)
    p.add_argument("--duration", type=float, default=5, help="seconds per wrk run (default 5)")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--paths", type=int, default=500, help="projects/files wrk cycles through")
    p.add_argument("--uploads", type=int, default=50, help="uploads for propagation (50)")
    p.add_argument(
        "--replica-cpu",
        type=float,
        default=0.3,
        help="CPU cap per replica in the scaling runs, in cores (default 0.3; 0: none)",
    )
    p.add_argument(
        "--feed-interval", type=float, help="creamery --feed-interval (default: its own)"
    )
    p.add_argument("--snapshot-wait", type=float, default=180, help="s to wait for a snapshot")
    p.add_argument(
        "--catchup-wait", type=float, default=900, help="s to wait for devpi replicas (900)"
    )
    p.add_argument("--creamery-python", help="python that runs creamery (default .venv)")
    p.add_argument("--creamery-arg", action="append", default=[], help="extra `creamery run` arg")
    p.add_argument(
        "--s3-cache-from", help="seed the first s3 replica's cache from this directory (warm)"
    )
    p.add_argument("--peer-venvs", help="where the peers' venvs live (default benchmarks/work)")
    args = p.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    if set(args.only) - set(PARTS):
        p.error(f"unknown part(s): {', '.join(sorted(set(args.only) - set(PARTS)))}")
    return args


class Bench:
    def __init__(self, args: argparse.Namespace, corpus: corpus_mod.Corpus) -> None:
        self.args = args
        self.corpus = corpus
        self.server_cpus, self.client_cpus = procs.cpu_sets(True)
        self.load = measure.Load(
            connections=args.connections, duration=args.duration, cpus=self.client_cpus
        )
        self.projects = corpus.sample_projects(args.paths)
        self.files = corpus.sample_files(args.paths)
        self.nginx = servers.find_nginx()
        self.venvs = peers.venv_root(args.peer_venvs)
        self.python = servers.creamery_python(args.creamery_python)
        self.caps: list[balancer.CpuCap] = []

    # ------------------------------------------------------------ plumbing

    def lua(self, name: str, paths: list[str]) -> Path:
        return measure.write_lua(WORK / f"wrk-os-{name}.lua", paths)

    def spawn(self, name: str, cmd: list[str], env=None, cpus=None, cap: float = 0):
        log_path = WORK / "logs" / f"os-{name}.log"
        if cap > 0 and balancer.cap_available():
            group = balancer.CpuCap(re.sub(r"\W+", "-", name), cap)
            self.caps.append(group)
            cmd = group.wrap(cmd)
        return procs.spawn(cmd, log=log_path, cpus=cpus, env=env), log_path

    def start(self, name, cmd, port, ready, env=None, cpus="server", cap: float = 0):
        """Start; returns (process, seconds to the first 200 on *ready*)."""
        cpus = self.server_cpus if cpus == "server" else cpus
        t0 = time.monotonic()
        proc, log_path = self.spawn(name, cmd, env=env, cpus=cpus, cap=cap)
        try:
            return proc, propagation.wait_path(proc, port, ready, t0, log_path)
        except BaseException:
            procs.stop(proc)
            raise

    def warm(self, port: int, script: Path, out: dict, key: str) -> None:
        """GET every path of *script* once, in order: the first render of a project page
        computes its files' hashes (from the store, for a bucket); wrk then measures the
        steady state. The time of that pass is kept (*key*, seconds)."""
        paths = re.findall(r'^  "(/[^"]*)"', script.read_text(), re.M)
        t0 = time.monotonic()
        bad = 0
        conn = None
        for path in paths:
            conn = conn or propagation.http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            try:
                status, _ = propagation.get(port, path, conn=conn)
            except (OSError, propagation.http.client.HTTPException):
                conn.close()
                conn, status = None, 0
            bad += status != 200
        if conn is not None:
            conn.close()
        out[key] = time.monotonic() - t0
        if bad:
            out.setdefault("notes", []).append(f"warm-up {script.stem}: {bad} non-200 answers")
        log(f"    first pass over {len(paths)} paths ({script.stem}): {out[key]:.2f} s")

    def wrk(self, port: int, script: Path, note: list[str]) -> dict[str, float]:
        r = measure.wrk(f"http://127.0.0.1:{port}", self.load, script=script)
        if r.errors:
            note.append(f"wrk {script.stem}: " + ", ".join(f"{k} {v}" for k, v in r.errors.items()))
        log(f"    {script.stem}: {r.rps:,.0f} req/s, p99 {r.p99_ms:.1f} ms")
        return {"rps": r.rps, "p99_ms": r.p99_ms}

    def balanced(self, name: str, upstreams: list[int]):
        """nginx (on the clients' CPUs) over *upstreams*; returns (process, port)."""
        port = servers.free_port()
        cmd = balancer.nginx_command(self.nginx, WORK / f"nginx-{name}", port, upstreams)
        proc, log_path = self.spawn(f"nginx-{name}", cmd, cpus=self.client_cpus)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                propagation.get(port, "/")
                return proc, port
            time.sleep(0.05)
        raise RuntimeError(f"nginx did not start; see {log_path}")

    def scaling(
        self, name, launch, pages: Path, files: Path | None, ready: str, out: dict, settle=None
    ) -> None:
        """One capped replica behind nginx, then two: req/s of each and the ratio."""
        cap = self.args.replica_cpu if balancer.cap_available() else 0
        out["scaling_cap"] = cap
        for count in (1, 2):
            started = []
            try:
                ports = []
                for i in range(count):
                    port = servers.free_port()
                    cmd, env = launch(port, i)
                    started.append(
                        self.start(
                            f"{name}-r{i}",
                            cmd,
                            port,
                            ready,
                            env=env,
                            cpus=self.server_cpus,
                            cap=cap,
                        )[0]
                    )
                    ports.append(port)
                    if settle is not None:
                        settle(port)
                lb, lb_port = self.balanced(f"{name}-{count}", ports)
                started.append(lb)
                log(f"  {count} replica(s) behind nginx, each capped at {cap:g} core")
                note = out.setdefault("notes", [])
                for replica in ports:  # each replica renders each page once
                    self.warm(replica, pages, {}, "cold")
                    if files is not None:
                        self.warm(replica, files, {}, "cold")
                out[f"lb{count}_page"] = self.wrk(lb_port, pages, note)
                if files is not None:
                    out[f"lb{count}_file"] = self.wrk(lb_port, files, note)
            finally:
                for proc in reversed(started):
                    procs.stop(proc)
                self.close_caps()
        for kind in ("page", "file"):
            if f"lb2_{kind}" in out:
                out[f"scaling_{kind}"] = out[f"lb2_{kind}"]["rps"] / out[f"lb1_{kind}"]["rps"]

    def close_caps(self) -> None:
        for group in self.caps:
            group.close()
        self.caps.clear()

    def rss(self, proc) -> float:
        return sum(procs.peak_rss_each_mb(proc.pid))

    # ------------------------------------------------------------ creamery

    def creamery_cmd(self, port: int, root: str, extra: list[str] = ()) -> list[str]:
        cmd = [self.python, "-m", "creamery", "run", "-i", "127.0.0.1", "-p", str(port)]
        cmd += ["-a", ".", "-P", ".", "--disable-fallback", *extra, *self.args.creamery_arg]
        return [*cmd, root]

    def creamery_env(
        self, name: str, store: moto_store.MotoStore | None = None, seed: Path | None = None
    ) -> dict:
        """The environment of a creamery process with a cache directory of its own: empty, or
        a copy of *seed* (hashes already computed: a replica that served before)."""
        cache = WORK / f"os-cache-{name}"
        shutil.rmtree(cache, ignore_errors=True)
        if seed is not None and seed.exists():
            shutil.copytree(seed, cache)
        env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
        return {**env, **(store.env() if store else {})}

    def flat_dir(self) -> Path:
        """The corpus's 40,000 files alone (no big wheel): what the bucket holds too."""
        root = WORK / f"flat-{self.corpus.name}"
        marker = root / f".bench-{self.corpus.files}"
        if not marker.exists():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            for name in peers.corpus_files(self.corpus):
                os.link(self.corpus.packages / name, root / name)
            marker.touch()
        return root

    def creamery_scripts(self) -> tuple[Path, Path]:
        pages = self.lua("creamery-pages", [f"/simple/{p}/" for p in self.projects])
        files = self.lua("creamery-files", [f"/packages/{f}" for f in self.files])
        return pages, files

    def part_local(self) -> dict:
        out: dict = {"notes": []}
        root = self.flat_dir()
        pages, files = self.creamery_scripts()
        port = servers.free_port()
        cmd = self.creamery_cmd(port, str(root))
        out["command"] = " ".join(cmd)
        env = self.creamery_env("local")
        proc, _ = self.start("creamery-local", cmd, port, "/simple/", env=env)  # cold caches
        procs.wait_idle(proc.pid)
        procs.stop(proc)
        proc, out["startup_s"] = self.start("creamery-local", cmd, port, "/simple/", env=env)
        try:
            procs.wait_idle(proc.pid)
            out["idle_rss_mb"] = self.rss(proc)
            self.warm(port, pages, out, "cold_pages_s")
            self.warm(port, files, out, "cold_files_s")
            out["page"] = self.wrk(port, pages, out["notes"])
            out["file"] = self.wrk(port, files, out["notes"])
            out["rss_mb"] = self.rss(proc)
        finally:
            procs.stop(proc)
        return out

    def part_s3(self) -> dict:
        out: dict = {"notes": []}
        store = moto_store.start_store(
            lambda cmd, log: procs.spawn(cmd, log=log, cpus=self.client_cpus),
            servers.free_port(),
            BUCKET,
            PREFIX,
            self.flat_dir(),
            [],
            WORK / "logs" / "os-moto.log",
        )
        try:
            t0 = time.monotonic()
            listed = len(store.keys(""))
            out["store_list_s"] = time.monotonic() - t0
            log(f"  moto: {listed} objects; full listing (boto3): {out['store_list_s']:.1f} s")
            self.s3_measure(store, out)
        finally:
            procs.stop(store.proc)
        return out

    def s3_extra(self) -> list[str]:
        extra = []
        if self.args.feed_interval is not None:
            extra += ["--feed-interval", str(self.args.feed_interval)]
        return extra

    def s3_measure(self, store: moto_store.MotoStore, out: dict) -> None:
        pages, files = self.creamery_scripts()
        store.delete(store.keys(".creamery/"))
        port = servers.free_port()
        cmd = self.creamery_cmd(port, store.url, self.s3_extra())
        out["command"] = " ".join(cmd)
        seed = Path(self.args.s3_cache_from) if self.args.s3_cache_from else None
        env = self.creamery_env("s3-a", store, seed)
        if seed is not None:
            out["notes"].append(f"facts cache seeded from {seed}")
        log("  start-up without a snapshot (full listing)")
        proc, out["startup_nosnap_s"] = self.start("creamery-s3", cmd, port, "/simple/", env=env)
        try:
            out["health_after_nosnap"] = propagation.get(port, "/health")[0]
            t0 = time.monotonic()
            snaps: list[str] = []
            while time.monotonic() - t0 < self.args.snapshot_wait and not snaps:
                snaps = store.keys(".creamery/snapshots/")
                time.sleep(1)
            out["snapshot_after_s"] = time.monotonic() - t0 if snaps else None
            procs.wait_idle(proc.pid)
            out["idle_rss_mb"] = self.rss(proc)
            log("  one replica, pinned to one core")
            self.warm(port, pages, out, "cold_pages_s")
            self.warm(port, files, out, "cold_files_s")
            out["page"] = self.wrk(port, pages, out["notes"])
            out["file"] = self.wrk(port, files, out["notes"])
            out["rss_mb"] = self.rss(proc)
        finally:
            procs.stop(proc)
        if snaps:
            log(f"  start-up with a snapshot ({snaps[0]})")
            proc, out["startup_snap_s"] = self.start("creamery-s3", cmd, port, "/simple/", env=env)
            procs.stop(proc)
        else:
            out["notes"].append(f"no snapshot in the bucket within {self.args.snapshot_wait:g} s")

        warmed = WORK / "os-cache-s3-a"  # what replica A computed: the others start warm

        def launch(p: int, i: int):
            env = self.creamery_env(f"s3-{i}", store, warmed)
            return self.creamery_cmd(p, store.url, self.s3_extra()), env

        self.scaling("creamery-s3", launch, pages, files, "/simple/", out)
        self.s3_writes(store, out)

    def s3_writes(self, store: moto_store.MotoStore, out: dict) -> None:
        a, b = servers.free_port(), servers.free_port()
        started = []
        try:
            for name, port in (("a", a), ("b", b)):
                cmd = self.creamery_cmd(port, store.url, self.s3_extra())
                env = self.creamery_env(f"s3-w{name}", store, WORK / "os-cache-s3-a")
                started.append(
                    self.start(f"creamery-s3-{name}", cmd, port, "/simple/", env=env, cpus=None)[0]
                )
            project = self.corpus.sample_projects(3)[1]
            n = self.args.uploads
            log(f"  {n} uploads to replica A, polling replica B's /simple/{project}/")
            writes = propagation.propagation(
                a,
                b,
                "/",
                f"/simple/{project}/",
                project,
                [f"99.{i}.0" for i in range(n)],
                peers.new_wheel,
            )
            out.update(writes.summary())
            ryw = propagation.read_your_writes(
                a,
                b,
                "/",
                lambda p, f: f"/packages/{f}",
                project,
                [f"98.{i}.0" for i in range(10)],
                peers.new_wheel,
            )
            summary = ryw.summary()
            for key in ("read_your_writes_ok", "read_your_writes_n", "read_your_writes_p50_ms"):
                out[key] = summary[key]
            log_summary(out)
        finally:
            for proc in started:
                procs.stop(proc)
            keys = [k for k in store.keys("") if re.search(r"-9[89]\.\d+\.0-", k)]
            store.delete(keys)

    # ------------------------------------------------------------ peers

    def part_srs(self) -> dict:
        out: dict = {"notes": []}
        pages = self.lua("srs-pages", [f"/simple/{p}/" for p in self.projects])
        files = self.lua(
            "srs-files",
            [peers.srs_file_path(corpus_mod_project(f), f) for f in self.files],
        )
        port = servers.free_port()
        peer = peers.srs(self.corpus, self.venvs, port)
        out["command"] = " ".join(peer.cmd)
        proc, out["startup_s"] = self.start("srs", peer.cmd, port, peer.ready)
        try:
            procs.wait_idle(proc.pid)
            out["idle_rss_mb"] = self.rss(proc)
            self.warm(port, pages, out, "cold_pages_s")
            self.warm(port, files, out, "cold_files_s")
            out["page"] = self.wrk(port, pages, out["notes"])
            out["file"] = self.wrk(port, files, out["notes"])
            out["rss_mb"] = self.rss(proc)
        finally:
            procs.stop(proc)

        def launch(p: int, i: int):
            return peers.srs(self.corpus, self.venvs, p).cmd, None

        self.scaling("srs", launch, pages, files, peer.ready, out)
        out["notes"].append("no replica mode: two processes on one directory (shared disk)")
        return out

    def part_devpi(self) -> dict:
        out: dict = {"notes": []}
        port = servers.free_port()
        peer = peers.devpi(self.corpus, self.venvs, port, role="primary")
        out["command"] = " ".join(peer.cmd)
        proc, out["first_startup_s"] = self.start("devpi", peer.cmd, port, peer.ready)
        procs.wait_idle(proc.pid)
        procs.stop(proc)
        proc, out["startup_s"] = self.start("devpi", peer.cmd, port, peer.ready)
        try:
            procs.wait_idle(proc.pid)
            out["idle_rss_mb"] = self.rss(proc)
            page_paths = [peer.page.format(project=p) for p in self.projects]
            pages = self.lua("devpi-pages", page_paths)
            files = self.lua("devpi-files", devpi_files(port, page_paths, self.files))
            self.warm(port, pages, out, "cold_pages_s")
            self.warm(port, files, out, "cold_files_s")
            out["page"] = self.wrk(port, pages, out["notes"])
            out["file"] = self.wrk(port, files, out["notes"])
            out["rss_mb"] = self.rss(proc)
            self.devpi_replicas(port, peer, pages, files, out)
        finally:
            procs.stop(proc)
        return out

    def devpi_replicas(self, primary: int, peer, pages: Path, files: Path, out: dict) -> None:
        """devpi's own replica mode: two fresh replicas of the running primary (started at once,
        timed until they have its serial), uploads to the primary seen on a replica, then
        nginx over one and over both, each capped like creamery's replicas."""
        started = []
        try:
            replicas = []
            t0 = time.monotonic()
            for i in range(2):
                port = servers.free_port()
                rep = peers.devpi_replica(self.corpus, self.venvs, port, primary, str(i))
                proc, _ = self.spawn(f"devpi-replica-{i}", rep.cmd)
                started.append(proc)
                replicas.append((port, proc, rep))
            target = serial(primary)
            for i, (port, proc, rep) in enumerate(replicas):
                log_path = WORK / "logs" / f"os-devpi-replica-{i}.log"
                propagation.wait_path(proc, port, rep.ready, t0, log_path)
                while serial(port) < target and time.monotonic() - t0 < self.args.catchup_wait:
                    time.sleep(0.5)
                done = serial(port)
                out[f"replica{i}_catchup_s"] = time.monotonic() - t0 if done >= target else None
                log(
                    f"  devpi replica {i}: serial {done} of {target} after "
                    f"{time.monotonic() - t0:.0f} s"
                )
            if any(out[f"replica{i}_catchup_s"] is None for i in range(2)):
                out["notes"].append(
                    f"devpi replicas not caught up with the primary's {target} serials within "
                    f"{self.args.catchup_wait:g} s: no propagation or scaling figures"
                )
                return
            project = self.corpus.sample_projects(3)[1]
            n = self.args.uploads
            log(f"  {n} uploads to the primary, polling replica 0")
            writes = propagation.propagation(
                primary,
                replicas[0][0],
                peers.devpi_upload_path(),
                peer.page.format(project=project),
                project,
                [f"99.{i}.0" for i in range(n)],
                peers.new_wheel,
            )
            out.update(writes.summary())
            log_summary(out)
            self.devpi_scaling(
                [port for port, _, _ in replicas], [p for _, p, _ in replicas], pages, files, out
            )
        finally:
            for proc in started:
                procs.stop(proc)
            self.close_caps()

    def devpi_scaling(self, ports, processes, pages: Path, files: Path, out: dict) -> None:
        """The caught-up replicas, capped like creamery's, behind nginx: one, then both."""
        cap = self.args.replica_cpu if balancer.cap_available() else 0
        out["scaling_cap"] = cap
        for i, proc in enumerate(processes):
            if cap > 0:
                group = balancer.CpuCap(f"devpi-{i}", cap)
                self.caps.append(group)
                group.add(proc.pid)
            self.warm(ports[i], pages, {}, "cold")
            self.warm(ports[i], files, {}, "cold")
        for count in (1, 2):
            lb, lb_port = self.balanced(f"devpi-{count}", ports[:count])
            try:
                log(f"  {count} devpi replica(s) behind nginx, each capped at {cap:g} core")
                out[f"lb{count}_page"] = self.wrk(lb_port, pages, out["notes"])
                out[f"lb{count}_file"] = self.wrk(lb_port, files, out["notes"])
            finally:
                procs.stop(lb)
        for kind in ("page", "file"):
            out[f"scaling_{kind}"] = out[f"lb2_{kind}"]["rps"] / out[f"lb1_{kind}"]["rps"]
        out["notes"].append("scaling: devpi replicas of the primary (caught up) behind nginx")


def serial(port: int) -> int:
    with contextlib.suppress(Exception):
        status, body = propagation.get(port, "/+status")
        if status == 200:
            data = json.loads(body)["result"]
            return int(data.get("serial", -1))
    return -1


def corpus_mod_project(filename: str) -> str:
    return peers._split(filename)[0]


def devpi_files(port: int, page_paths: list[str], names: list[str]) -> list[str]:
    """devpi's file URLs (`/root/bench/+f/<hash>/<name>`) for *names*, read from its pages."""
    wanted = set(names)
    found = []
    for path in page_paths:
        _, body = propagation.get(port, path)
        for href in re.findall(rb'href="([^"#]+)', body):
            target = os.path.normpath(path + href.decode())
            if os.path.basename(target) in wanted:
                found.append(target)
    return found


def log_summary(out: dict) -> None:
    log(
        f"    upload p50 {fmt(out.get('upload_p50_ms'))} ms, p99 {fmt(out.get('upload_p99_ms'))}"
        f" ms; propagation p50 {fmt(out.get('propagation_p50_ms'))} ms, p99 "
        f"{fmt(out.get('propagation_p99_ms'))} ms ({out.get('propagation_missed')} missed)"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    procs.install_signal_handlers()
    WORK.mkdir(parents=True, exist_ok=True)
    servers.ensure_system_tools(need_nginx=True)
    corpus = corpus_mod.ensure_corpus(
        WORK,
        "large"
        if (args.projects, args.versions) == (5000, 4)
        else f"p{args.projects}-v{args.versions}",
        args.projects,
        args.versions,
        log=log,
    )
    previous = (
        json.loads(RESULTS.with_suffix(".json").read_text())
        if RESULTS.with_suffix(".json").exists()
        else {}
    )
    results = dict(previous.get("results", {}))
    bench = Bench(args, corpus)
    try:
        for part in PARTS:
            if part not in args.only:
                continue
            log(f"\n== {part} (load: {os.getloadavg()[0]:.2f})")
            load = f"{os.getloadavg()[0]:.2f}"
            try:
                res = getattr(bench, f"part_{part}")()
            except Exception as exc:  # keep the other parts' results
                traceback.print_exc()
                res = {"notes": [f"aborted: {str(exc).splitlines()[0]}"]}
            res["load"] = f"{load} -> {os.getloadavg()[0]:.2f}"
            res["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
            results[part] = res
    finally:
        bench.close_caps()
        procs.stop_all()
    data = {
        "machine": machine_info(),
        "results": results,
        "load": {
            "connections": args.connections,
            "duration": args.duration,
            "paths": args.paths,
            "uploads": args.uploads,
        },
    }
    RESULTS.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")
    text = object_report.render(data)
    RESULTS.with_suffix(".md").write_text(text)
    print("\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
