"""Child processes: start pinned to CPUs, in their own session, and always killed at the end."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

_children: list[subprocess.Popen] = []


def cpu_sets(pin: bool) -> tuple[set[int] | None, set[int] | None]:
    """(server CPUs, client CPUs): the server gets CPU 0, load generators the rest."""
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2:
        return None, None
    return {cpus[0]}, set(cpus[1:])


def _preexec(cpus: set[int] | None):
    if cpus is None:
        return None

    def pin() -> None:
        os.sched_setaffinity(0, cpus)

    return pin


def spawn(
    cmd: Sequence[str],
    *,
    log: Path,
    cpus: set[int] | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen:
    """Start a long-running child in a new session (so its whole group can be killed)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_preexec(cpus),
        )
    _children.append(proc)
    return proc


def run(
    cmd: Sequence[str],
    *,
    cpus: set[int] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """Run a short-lived client (wrk, curl, uv, pip) to completion, pinned if asked."""
    proc = subprocess.run(
        list(cmd),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        preexec_fn=_preexec(cpus),
        check=False,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"{cmd[0]} exited {proc.returncode}: {' '.join(cmd)}\n{proc.stdout[-2000:]}"
            f"\n{proc.stderr[-2000:]}"
        )
    return proc


def stop(proc: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM the child's process group, then SIGKILL whatever is left."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    # The leader may be gone while workers of its group linger.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)
    if proc in _children:
        _children.remove(proc)


def stop_all() -> None:
    for proc in list(_children):
        stop(proc, timeout=5)


def install_signal_handlers() -> None:
    """Turn SIGTERM/SIGHUP into SystemExit so `finally` blocks stop the children."""

    def handler(signum, _frame):
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


def process_tree(pid: int) -> list[int]:
    """*pid* and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except OSError:
            continue
    return out


def peak_rss_each_mb(pid: int) -> list[float]:
    """VmHWM (peak resident set) of *pid* and of each descendant, in MB (10^6 bytes)."""
    out = []
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        out.append(int(line.split()[1]) * 1024 / 1e6)
                        break
        except OSError:
            continue
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of *pid* and its descendants."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def wait_idle(pid: int, window: float = 0.5, busy: float = 0.05, timeout: float = 300) -> bool:
    """Wait until *pid* and its children use less than *busy* of a core over *window* s.

    Servers that build caches or indexes in the background after answering are measured
    only once they are done. Returns False on timeout.
    """
    deadline = time.monotonic() + timeout
    last = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(window)
        now = cpu_seconds(pid)
        if now - last < busy * window:
            return True
        last = now
    return False


def system_busy_seconds() -> float:
    """User and system CPU time of every process on the machine, from /proc/stat.

    Interrupt time is left out: it is charged to no process, and loopback traffic makes a
    lot of it on behalf of this benchmark.
    """
    with open("/proc/stat") as fh:
        user, nice, system = map(int, fh.readline().split()[1:4])
    return (user + nice + system) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU time of this program and of the children it has waited for."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class ForeignLoad:
    """How much CPU other processes on the machine (not this benchmark) used meanwhile."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.busy0 = system_busy_seconds()
        self.own0 = own_cpu_seconds()

    def fraction(self) -> float:
        """Share of all CPUs used by others since creation; call after children are reaped."""
        elapsed = time.monotonic() - self.t0
        others = (system_busy_seconds() - self.busy0) - (own_cpu_seconds() - self.own0)
        return max(0.0, others / (elapsed * (os.cpu_count() or 1)))


def wait_quiet(limit: float, timeout: float, window: float = 1.0) -> float:
    """Wait up to *timeout* s until other processes use less than *limit* of all CPUs
    over *window* s (nothing of ours runs meanwhile). Returns the last share seen."""
    deadline = time.monotonic() + timeout
    share = 1.0
    while True:
        probe = ForeignLoad()
        time.sleep(window)
        share = probe.fraction()
        if share < limit or time.monotonic() >= deadline:
            return share
