"""Tables of the evaluation report as header + rows of strings (rendered to Markdown or HTML).

- :func:`summary_table`: one line per method (means over pairs, ``± std`` for TRE and time),
  after a 'no registration' line; ratios are against the reference baseline;
- :func:`setup_table`: what was registered and on which machine;
- :func:`pair_table`: per pair, the mean TRE, folding and time of every method.
"""

from __future__ import annotations

import math
from typing import Any


def fmt(value: Any, digits: int = 2, *, pct: bool = False) -> str:
    """A number for a table (``-`` when missing)."""
    if value is None:
        return "-"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(v):
        return "-"
    if pct:
        return f"{v:.{digits}f}"
    if v != 0 and abs(v) < 10 ** (-digits):
        return f"{v:.1e}"
    return f"{v:.{digits}f}"


def _pm(stat: dict[str, Any], digits: int = 2) -> str:
    if not stat or stat.get("mean") is None:
        return "-"
    if stat.get("n", 0) > 1 and stat.get("std") is not None:
        return f"{fmt(stat['mean'], digits)} ± {float(stat['std']):.{digits}f}"
    return fmt(stat["mean"], digits)


def _seconds(stat: dict[str, Any]) -> str:
    if not stat or stat.get("mean") is None:
        return "-"
    m = stat["mean"]
    digits = 3 if m < 1 else (1 if m < 100 else 0)
    return _pm(stat, digits)


def _speedup(value: Any) -> str:
    if value is None:
        return "-"
    factor = value if value >= 1 else 1 / value
    text = f"{factor:,.0f}x" if factor >= 100 else f"{factor:.3g}x"
    return text if value >= 1 else f"{text} slower"


def summary_table(summary: dict[str, Any], methods: list[str]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-method summary table."""
    ref = summary.get("reference")
    has_dice = any((summary["methods"].get(m, {}).get("metrics", {}).get("dice_mean") or {}).get("n") for m in methods)
    header = ["Method", "Pairs ok", "TRE mean (mm)", "TRE median (mm)", "TRE p90 (mm)", "MEE (mm)", "Robustness",
              "Folding (%)", "SDlogJ", "Time / pair (s)", f"Speedup vs {ref}", f"TRE ratio vs {ref}", "Peak memory (MB)"]
    if has_dice:
        header.insert(9, "Dice")
    rows: list[list[str]] = []
    nr = summary.get("no_registration", {})
    if (nr.get("tre0_mean") or {}).get("n"):
        line = ["no registration", "", _pm(nr["tre0_mean"]), fmt(nr["tre0_median"].get("mean")), "-", fmt(nr["tre0_median"].get("mean")),
                "-", "0", "0", "-", "-", "-", "-"]
        if has_dice:
            line.insert(9, fmt((nr.get("dice_before") or {}).get("mean"), 3))
        rows.append(line)
    for m in methods:
        e = summary["methods"].get(m)
        if e is None:
            continue
        s = e["metrics"]
        vs = e.get("vs_reference", {})
        line = [
            m, f"{e['ok']}/{e['pairs']}", _pm(s["tre_mean"]), fmt(s["tre_median"]["mean"]), fmt(s["tre_p90"]["mean"]),
            fmt(s["mee"]["mean"]), fmt(s["robustness"]["mean"]), fmt(s["folding_pct"]["mean"], 3), fmt(s["sdlogj"]["mean"], 3),
            _seconds(s["seconds"]), _speedup(vs.get("speedup")),
            fmt(vs.get("tre_ratio")), fmt(s["peak_rss_mb"]["mean"], 0),
        ]
        if has_dice:
            line.insert(9, fmt(s["dice_mean"]["mean"], 3))
        rows.append(line)
    return header, rows


def setup_table(info: dict[str, Any], rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(label, value) lines: dataset, split, pairs, image size, inputs, threads, machine, methods."""
    shapes = sorted({r.get("shape", "") for r in rows if r.get("shape")})
    spacings = sorted({r.get("spacing", "") for r in rows if r.get("spacing")})
    pairs = sorted({r["pair"] for r in rows})
    machine = info.get("machine", {})
    cpu = f"{machine.get('cpu', '?')}, {machine.get('cpu_count', '?')} cores"
    if machine.get("affinity_cpus") and machine.get("affinity_cpus") != machine.get("cpu_count"):
        cpu += f" ({machine['affinity_cpus']} usable)"
    if machine.get("gpu"):
        cpu += f"; GPU {machine['gpu']}"
    shard_note = ""
    if info.get("shards"):
        shard_note = f" (merged from {len(info['shards'])} folders)"
    elif info.get("shard") not in (None, "0/1"):
        i, n = info["shard"].split("/")
        shard_note = f" (shard {i}/{n}: pairs {i}, {int(i) + int(n)}, {int(i) + 2 * int(n)}, ... of the split, 0-based)"
    total = info.get("split_pairs")
    lines = [
        ("Dataset", f"{info.get('dataset', '?')} (preprocessed: {info.get('data', '?')})"),
        ("Split", str(info.get("split", "?"))),
        ("Pairs", f"{len(pairs)} evaluated" + (f" of {total} in the split" if total else "") + shard_note),
        ("Image size (voxels)", ", ".join(shapes) or "-"),
        ("Voxel size (mm)", ", ".join(spacings) or "-"),
        ("Input images", f"the preprocessed fixed and moving files of the manifest; classical methods use channel "
                         f"'{info.get('channel', '?')}', medreg all channels ({', '.join(info.get('channels', [])) or '?'})"),
        ("Threads", str(info.get("threads", "?"))),
        ("Machine", cpu),
        ("Methods", ", ".join(m["name"] for m in info.get("methods", []))),
        ("Reference for ratios", str(info.get("reference") or "-")),
    ]
    if info.get("model"):
        lines.append(("Model", str(info["model"])))
    if info.get("command"):
        lines.append(("Command", str(info["command"])))
    if info.get("finished"):
        lines.append(("Finished", str(info["finished"])))
    return lines


def pair_table(rows: list[dict[str, Any]], methods: list[str]) -> tuple[list[str], list[list[str]]]:
    """Per pair: TRE before, then 'TRE / folding % / seconds' per method (``failed`` when it failed)."""
    by = {(r["pair"], r["method"]): r for r in rows}
    pairs = sorted({r["pair"] for r in rows})
    header = ["Pair", "TRE before (mm)"] + [f"{m}: TRE / fold % / s" for m in methods]
    out = []
    for p in pairs:
        before = next((r.get("tre0_mean") for r in rows if r["pair"] == p and r.get("status") == "ok"), None)
        line = [p, fmt(before)]
        for m in methods:
            r = by.get((p, m))
            if r is None:
                line.append("")
            elif r.get("status") != "ok":
                line.append("failed")
            else:
                line.append(f"{fmt(r.get('tre_mean'))} / {fmt(r.get('folding_pct'), 3)} / {fmt(r.get('seconds'), 2)}")
        out.append(line)
    return header, out
