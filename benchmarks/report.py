"""Markdown tables, ratios and the pass/fail targets."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

Results = dict[str, dict]  # server -> {"metrics": {...}, "notes": [...], ...}


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool
    digits: int = 0


METRICS = [
    Metric("cold_startup_s", "first start-up (empty caches) to 200 on `/simple/`", "s", False, 2),
    Metric("cold_busy_s", "first start: CPU busy (indexing) until", "s", False, 2),
    Metric("startup_s", "start-up (restart) to first 200 on `/simple/`", "s", False, 2),
    Metric("index_rps", "`/simple/`", "req/s", True),
    Metric("index_p99_ms", "`/simple/` p99", "ms", False, 1),
    Metric("page_rps", "`/simple/<p>/` HTML", "req/s", True),
    Metric("page_p99_ms", "`/simple/<p>/` HTML p99", "ms", False, 1),
    Metric("json_rps", "`/simple/<p>/` JSON", "req/s", True),
    Metric("json_p99_ms", "`/simple/<p>/` JSON p99", "ms", False, 1),
    Metric("file_rps", "small file GET", "req/s", True),
    Metric("file_p99_ms", "small file GET p99", "ms", False, 1),
    Metric("big_mbps", "200 MB download", "MB/s", True),
    Metric("rss_mb", "peak RSS (VmHWM incl. children)", "MB", False, 1),
    Metric("visible_ms", "new file visible in `/simple/<p>/`", "ms", False, 1),
    Metric("uv_chain_s", "`uv pip install` 5-project chain", "s", False, 2),
    Metric("pip_download_s", "`pip download` 20 projects", "s", False, 2),
]
BY_KEY = {m.key: m for m in METRICS}


def value(results: Results, server: str, key: str) -> float | None:
    v = results.get(server, {}).get("metrics", {}).get(key)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return float(v)


def advantage(metric: Metric, ours: float | None, theirs: float | None) -> float | None:
    """How many times better creamery is (>1: creamery better)."""
    if ours is None or theirs is None or ours <= 0 or theirs <= 0:
        return None
    return ours / theirs if metric.higher_is_better else theirs / ours


Verdict = tuple[bool | None, str]  # (passed, what was measured against the target)


@dataclass(frozen=True)
class Target:
    key: str
    text: str
    check: Callable[[Results], Verdict]


def _rps_target(key: str) -> Target:
    def check(r: Results) -> Verdict:
        c, p, n = (value(r, s, key) for s in ("creamery", "pypiserver", "nginx"))
        if c is None:
            return None, "not measured"
        verdicts, details = [], []
        if p is not None and p > 0:
            verdicts.append(c >= 100 * p)
            details.append(f"{c / p:,.0f}x pypiserver")
        if n is not None and n > 0:
            verdicts.append(c >= 0.5 * n)
            details.append(f"{c / n:.2f}x nginx")
        return (all(verdicts) if verdicts else None), ", ".join(details)

    return Target(key, ">= 100x pypiserver and >= 0.5x nginx", check)


def _abs_target(key: str, text: str, ok: Callable[[float], bool]) -> Target:
    def check(r: Results) -> Verdict:
        c = value(r, "creamery", key)
        if c is None:
            return None, "not measured"
        return ok(c), f"{fmt(c, BY_KEY[key].digits)} {BY_KEY[key].unit}"

    return Target(key, text, check)


def _vs_nginx(key: str, text: str, ok: Callable[[float, float], bool]) -> Target:
    def check(r: Results) -> Verdict:
        c, n = value(r, "creamery", key), value(r, "nginx", key)
        if c is None or n is None or n <= 0:
            return None, "not measured"
        return ok(c, n), f"{c / n:.2f}x nginx's"

    return Target(key, text, check)


TARGETS = {
    t.key: t
    for t in [
        _rps_target("page_rps"),
        _rps_target("json_rps"),
        _rps_target("file_rps"),
        _abs_target("startup_s", "< 1 s", lambda c: c < 1),
        _abs_target("rss_mb", "< 100 MB", lambda c: c < 100),
        _abs_target("visible_ms", "< 200 ms", lambda c: c < 200),
        _vs_nginx("big_mbps", ">= 0.75x nginx", lambda c, n: c >= 0.75 * n),
        _vs_nginx("uv_chain_s", "<= 1.5x nginx's time", lambda c, n: c <= 1.5 * n),
    ]
}
SCALING_KEYS = ("page_rps", "json_rps", "file_rps")
SCALING_TARGET = 0.9


def fmt(v: float | None, digits: int = 0) -> str:
    if v is None:
        return "-"
    if digits == 0 and abs(v) >= 1:
        return f"{v:,.0f}"
    if digits == 0:
        return f"{v:.2f}"
    return f"{v:,.{digits}f}"


def _short(v: float) -> str:
    return f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}" if v >= 10 else f"{v:.1f}"


def cell(results: Results, server: str, m: Metric) -> str:
    """The median; for req/s and MB/s also the range over the rounds, to show the noise."""
    text = fmt(value(results, server, m.key), m.digits)
    samples = results.get(server, {}).get("samples", {}).get(m.key, [])
    if m.unit in ("req/s", "MB/s") and len(samples) > 1:
        text += f" ({_short(min(samples))}-{_short(max(samples))})"
    return text


def fmt_ratio(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}x" if v >= 100 else f"{v:.2f}x"


def verdict(ok: bool | None) -> str:
    return {True: "pass", False: "**FAIL**", None: "n/a"}[ok]


def verdict_cell(v: Verdict) -> str:
    ok, detail = v
    return f"{verdict(ok)} ({detail})" if ok is not None else verdict(ok)


def main_table(results: Results, servers: list[str]) -> str:
    head = ["metric", *servers]
    if "creamery" in servers:
        head += [f"creamery vs {s}" for s in servers if s != "creamery"]
        head += ["target (creamery)", "result"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in METRICS:
        row = [f"{m.label} ({m.unit})"]
        row += [cell(results, s, m) for s in servers]
        if "creamery" in servers:
            ours = value(results, "creamery", m.key)
            row += [
                fmt_ratio(advantage(m, ours, value(results, s, m.key)))
                for s in servers
                if s != "creamery"
            ]
            target = TARGETS.get(m.key)
            row += [target.text, verdict_cell(target.check(results))] if target else ["", ""]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def scaling_table(large: Results, small: Results, servers: list[str]) -> str:
    head = ["req/s", *(f"{s}: 1k -> 40k files" for s in servers), "target (creamery)", "result"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in SCALING_KEYS:
        row = [BY_KEY[key].label]
        ratio_c = None
        for s in servers:
            a, b = value(small, s, key), value(large, s, key)
            ratio = b / a if a and b else None
            if s == "creamery":
                ratio_c = ratio
            row.append(f"{fmt(a)} -> {fmt(b)} ({fmt_ratio(ratio)})" if ratio else "-")
        ok = None if ratio_c is None else ratio_c >= SCALING_TARGET
        row += [f">= {SCALING_TARGET}x", verdict(ok)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def failed_targets(results: Results, small: Results | None) -> list[str]:
    out = []
    for key, target in TARGETS.items():
        ok, detail = target.check(results)
        if ok is False:
            out.append(f"{BY_KEY[key].label} ({BY_KEY[key].unit}): {detail}; target {target.text}")
    if small:
        for key in SCALING_KEYS:
            a, b = value(small, "creamery", key), value(results, "creamery", key)
            if a and b and b / a < SCALING_TARGET:
                out.append(
                    f"{BY_KEY[key].label} (req/s) at 40k files: {b / a:.2f}x of 1k files; "
                    f"target >= {SCALING_TARGET}x"
                )
    return out
