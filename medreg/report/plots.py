"""Figures of the evaluation report, as PNG bytes (matplotlib, Agg backend).

- :func:`tre_boxplot`: per-pair mean TRE per method (box + every pair as a dot), with the
  error before registration as the first box;
- :func:`runtime_bars`: mean seconds per pair per method on a log axis (min-max whiskers);
- :func:`folding_bars`: mean % of folded voxels per method (symlog axis: 0 stays visible).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _png(fig, dpi: int) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def _values(rows: list[dict[str, Any]], method: str, key: str) -> np.ndarray:
    v = np.array([float(r.get(key, np.nan)) for r in rows if r["method"] == method and r.get("status") == "ok"], dtype=np.float64)
    return v[np.isfinite(v)]


def _no_data(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what}", ha="center", va="center", transform=ax.transAxes, color="gray")


def tre_boxplot(rows: list[dict[str, Any]], methods: list[str], *, dpi: int = 100) -> bytes:
    """Box plot of per-pair mean TRE (mm) per method; 'no registration' first."""
    plt = _plt()
    seen: dict[str, float] = {}
    for r in rows:
        if r.get("status") == "ok" and np.isfinite(float(r.get("tre0_mean", np.nan))):
            seen.setdefault(r["pair"], float(r["tre0_mean"]))
    series = [("no registration", np.array(list(seen.values())))] + [(m, _values(rows, m, "tre_mean")) for m in methods]
    series = [(n, v) for n, v in series if v.size]
    fig, ax = plt.subplots(figsize=(max(4.5, 1.2 * len(series) + 1.5), 3.4))
    if not series:
        _no_data(ax, "landmarks")
    else:
        ax.boxplot([v for _, v in series], showfliers=False, widths=0.55, medianprops={"color": "black"})
        rng = np.random.default_rng(0)
        for i, (_, v) in enumerate(series, start=1):
            ax.scatter(i + rng.uniform(-0.12, 0.12, v.size), v, s=12, alpha=0.7, color=COLORS[(i - 1) % len(COLORS)], zorder=3)
        ax.set_xticks(range(1, len(series) + 1), [n for n, _ in series], rotation=20, ha="right")
        ax.set_ylim(bottom=0)
    ax.set_ylabel("mean TRE per pair (mm)")
    ax.set_title("Landmark error (lower is better)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig, dpi)


def _bars(rows, methods, key, *, ylabel, title, log: str, dpi: int) -> bytes:
    plt = _plt()
    data = [(m, _values(rows, m, key)) for m in methods]
    data = [(m, v) for m, v in data if v.size]
    fig, ax = plt.subplots(figsize=(max(4.5, 1.1 * len(data) + 1.5), 3.2))
    if not data:
        _no_data(ax, ylabel)
    else:
        x = np.arange(len(data))
        means = np.array([v.mean() for _, v in data])
        lo = means - np.array([v.min() for _, v in data])
        hi = np.array([v.max() for _, v in data]) - means
        if log == "log":
            means = np.maximum(means, 1e-3)
        ax.bar(x, means, color=[COLORS[i % len(COLORS)] for i in range(len(data))], width=0.6)
        if len(data) and np.any(lo + hi > 0):  # whiskers from the smallest to the largest pair
            ax.vlines(x, means - lo, means + hi, color="black", lw=1)
        for xi, m, top in zip(x, means, means + hi):
            ax.annotate(f"{m:.3g}", (xi, top), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8)
        ax.set_xticks(x, [m for m, _ in data], rotation=20, ha="right")
        top = float(np.max(means + hi))
        if log == "log":  # headroom above the tallest whisker for its label
            ax.set_yscale("log")
            ax.set_ylim(top=top * 4)
        elif log == "symlog" and top > 0:
            ax.set_yscale("symlog", linthresh=0.01)
            ax.set_ylim(0, top * 4)
        else:
            ax.set_ylim(0, max(1.0, top * 1.25))
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig, dpi)


def runtime_bars(rows: list[dict[str, Any]], methods: list[str], *, dpi: int = 100) -> bytes:
    """Mean registration time per pair (s, log scale), whiskers from the fastest to the slowest pair."""
    return _bars(rows, methods, "seconds", ylabel="seconds per pair (log)", title="Runtime (lower is better)", log="log", dpi=dpi)


def folding_bars(rows: list[dict[str, Any]], methods: list[str], *, dpi: int = 100) -> bytes:
    """Mean % of voxels with det J <= 0 per method."""
    return _bars(rows, methods, "folding_pct", ylabel="% voxels with det J <= 0", title="Folding (lower is better)",
                 log="symlog", dpi=dpi)
