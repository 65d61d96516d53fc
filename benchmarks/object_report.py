"""The table of benchmarks/object_storage.py: one column per server, one row per figure."""

from __future__ import annotations

import peers


def fmt(value, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def render(data: dict) -> str:
    r = data["results"]
    cols = [
        ("local", "creamery, local dir"),
        ("s3", "creamery, s3:// (moto)"),
        ("devpi", f"devpi-server {peers.DEVPI_VERSION}"),
        ("srs", f"simple-repository-server {peers.SRS_VERSION}"),
    ]
    cols = [(k, t) for k, t in cols if k in r]

    def cell(key: str, path: str, digits: int = 0) -> str:
        value = r[key]
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return fmt(value, digits)

    rows = [
        (
            "start-up to first 200 (s)",
            lambda k: (
                cell(k, "startup_s", 2)
                if k != "s3"
                else f"{cell(k, 'startup_nosnap_s', 2)} (no snapshot) / "
                f"{cell(k, 'startup_snap_s', 2)} (snapshot)"
            ),
        ),
        ("first pass over the 500 pages, cold caches (s)", lambda k: cell(k, "cold_pages_s", 1)),
        ("`/simple/<p>/` req/s, one process on one core", lambda k: cell(k, "page.rps")),
        ("small file GET req/s, one process on one core", lambda k: cell(k, "file.rps")),
        ("peak RSS, one process (MB)", lambda k: cell(k, "rss_mb", 1)),
        ("`/simple/<p>/` req/s: 1 capped replica behind nginx", lambda k: cell(k, "lb1_page.rps")),
        ("... 2 capped replicas behind nginx", lambda k: cell(k, "lb2_page.rps")),
        ("... scaling (2 / 1)", lambda k: cell(k, "scaling_page", 2)),
        (
            "small files: 1 / 2 replicas behind nginx (req/s)",
            lambda k: f"{cell(k, 'lb1_file.rps')} / {cell(k, 'lb2_file.rps')}",
        ),
        ("... scaling (2 / 1)", lambda k: cell(k, "scaling_file", 2)),
        (
            "upload latency p50 / p99 (ms)",
            lambda k: f"{cell(k, 'upload_p50_ms', 1)} / {cell(k, 'upload_p99_ms', 1)}",
        ),
        (
            "propagation to another replica p50 / p99 (ms)",
            lambda k: f"{cell(k, 'propagation_p50_ms')} / {cell(k, 'propagation_p99_ms')}",
        ),
        (
            "read-your-writes on another replica (200s)",
            lambda k: f"{cell(k, 'read_your_writes_ok')} of {cell(k, 'read_your_writes_n')}",
        ),
    ]
    lines = ["| | " + " | ".join(t for _, t in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for label, fn in rows:
        lines.append(f"| {label} | " + " | ".join(fn(k) for k, _ in cols) + " |")
    text = "\n".join(lines).replace("| - / - |", "| - |").replace("| - of - |", "| - |")
    if "s3" in r and "local" in r:
        s3p, lp = r["s3"].get("page", {}).get("rps"), r["local"].get("page", {}).get("rps")
        if s3p and lp:
            text += f"\n\ns3 root / local root, `/simple/<p>/`: {s3p / lp:.2f}x (target >= 0.9x)"
    m = data["machine"]
    text += f"\n\nMachine: {m['cpu']}, {m['cores']} cores, {m['memory']}; Python {m['python']}."
    for key, title in cols:
        res = r[key]
        text += f"\n- {title} ({res.get('finished', '?')}, load {res.get('load', '?')}): "
        text += f"`{res.get('command', '?')}`"
        extra = []
        for k in ("store_list_s", "snapshot_after_s", "replica0_catchup_s", "scaling_cap"):
            if res.get(k) is not None:
                extra.append(
                    f"{k} = {res[k]:.2f}" if isinstance(res[k], float) else f"{k} = {res[k]}"
                )
        if extra or res.get("notes"):
            text += "; " + "; ".join(extra + res.get("notes", []))
    return text + "\n"
