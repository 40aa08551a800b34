"""``summary.json``: per-method statistics over pairs and ratios to the reference baseline.

For each method and metric: ``mean``, ``median``, ``std`` (population) and ``n`` over the
pairs where the method succeeded and the metric is defined (TRE needs landmarks, Dice label
maps). The *reference* is the first ``--baseline`` (else the first method). Ratios use
only pairs where both the method and the reference succeeded:

- ``time_ratio`` = mean(method seconds) / mean(reference seconds); ``speedup`` = its inverse;
- ``tre_ratio`` = mean(method per-pair mean TRE) / mean(reference per-pair mean TRE)
  (< 1: smaller error than the reference).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

SUMMARY_METRICS = (
    "tre_mean", "tre_median", "tre_p90", "tre_max", "mee", "robustness",
    "folding_pct", "sdlogj", "sdlogj_plus3", "dice_mean", "dice_before",
    "seconds", "wall_seconds", "peak_rss_mb",
)


def _finite(values: list[Any]) -> np.ndarray:
    arr = np.array([float(v) for v in values if v is not None and v == v], dtype=np.float64)
    return arr[np.isfinite(arr)]


def stats(values: list[Any]) -> dict[str, float | int | None]:
    """mean, median, std and n of the finite values (None when there are none)."""
    v = _finite(values)
    if v.size == 0:
        return {"mean": None, "median": None, "std": None, "n": 0}
    return {"mean": float(v.mean()), "median": float(np.median(v)), "std": float(v.std()), "n": int(v.size)}


def _ratio(num: np.ndarray, den: np.ndarray) -> float | None:
    if num.size == 0 or den.size == 0:
        return None
    d = float(den.mean())
    return None if d == 0 or not math.isfinite(d) else float(num.mean()) / d


def summarize(rows: list[dict[str, Any]], methods: list[str], reference: str | None) -> dict[str, Any]:
    """The content of ``summary.json`` (see the module docstring)."""
    by_method: dict[str, dict[str, dict[str, Any]]] = {m: {} for m in methods}
    for row in rows:
        by_method.setdefault(row["method"], {})[row["pair"]] = row
    ref_rows = {p: r for p, r in by_method.get(reference or "", {}).items() if r.get("status") == "ok"}
    out: dict[str, Any] = {"reference": reference, "methods": {}}
    for method, pairs in by_method.items():
        ok = [r for r in pairs.values() if r.get("status") == "ok"]
        entry: dict[str, Any] = {
            "pairs": len(pairs), "ok": len(ok), "failed": len(pairs) - len(ok),
            "threads": sorted({int(r["threads"]) for r in ok if r.get("threads") not in (None, "")}),
            "device": sorted({str(r.get("device")) for r in ok if r.get("device")}),
        }
        entry["metrics"] = {k: stats([r.get(k) for r in ok]) for k in SUMMARY_METRICS}
        common = [p for p, r in pairs.items() if r.get("status") == "ok" and p in ref_rows]
        ratios: dict[str, Any] = {"pairs": len(common)}
        if reference is not None and common:
            t = _ratio(_finite([pairs[p]["seconds"] for p in common]), _finite([ref_rows[p]["seconds"] for p in common]))
            tre_pairs = [p for p in common if _finite([pairs[p].get("tre_mean"), ref_rows[p].get("tre_mean")]).size == 2]
            ratios["time_ratio"] = t
            ratios["speedup"] = None if not t else 1.0 / t
            ratios["tre_ratio"] = _ratio(_finite([pairs[p]["tre_mean"] for p in tre_pairs]), _finite([ref_rows[p]["tre_mean"] for p in tre_pairs]))
        entry["vs_reference"] = ratios
        out["methods"][method] = entry
    # the error with no registration is a property of the pair, the same in every row
    per_pair = {}
    for row in rows:
        if row.get("status") == "ok" and row["pair"] not in per_pair:
            per_pair[row["pair"]] = row
    out["no_registration"] = {k: stats([r.get(k) for r in per_pair.values()]) for k in ("tre0_mean", "tre0_median", "dice_before")}
    out["pairs"] = sorted({r["pair"] for r in rows})
    return out
