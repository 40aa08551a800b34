"""What ``medreg bench io`` measures: accuracy against time of instance optimisation, beside baselines.

The pairs of one split of a preprocessed dataset (the first ``pairs`` of them) are registered by
medreg in one pass, by medreg with each instance-optimisation preset (``fast``, ``default``,
``accurate``, each additive and/or diffeomorphic), and by each baseline (elastix, ANTs SyNQuick,
...), all on the same files and threads, through :func:`medreg.evaluate.evaluate` (so every
row is the evaluation's own: TRE, folding, SDlogJ, seconds, peak memory). Per method it writes
one row of ``io.csv`` (mean and median TRE, mean seconds a pair, the IO's seconds, folding,
SDlogJ, peak memory); per preset and pyramid level one row of ``levels.csv`` (grid, steps run,
seconds); and ``io.png``, mean TRE against seconds a pair (one point per method: the
accuracy/time curve). The evaluation folder (``OUT/evaluation``: rows, report) is kept, so a
rerun resumes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Sequence


PRESETS = ("fast", "default", "accurate")


def io_methods(model: str | Path, presets: Sequence[str], diffeomorphic: Sequence[bool], device: str = "cpu") -> list:
    """medreg in one pass, then each preset (in order) for each ``diffeomorphic`` value."""
    from medreg.evaluation.methods import MedregMethod
    from medreg.inference.io_config import named_preset

    first = MedregMethod(model, device=device)
    out = [first]
    for name in presets:
        for diffeo in diffeomorphic:
            out.append(MedregMethod(model, io=named_preset(name, diffeomorphic=diffeo), device=device,
                                    share_model_of=first))
    return out


def _mean(values: list[Any]) -> float:
    """The evaluation summary's mean of the finite values (:func:`medreg.evaluation.summary.stats`), NaN for none."""
    from medreg.evaluation.summary import stats

    mean = stats(values)["mean"]
    return float("nan") if mean is None else float(mean)


def summarize(rows: list[dict[str, Any]], methods: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per method (in ``methods`` order) and per (method, level): means over the pairs of the ok rows."""
    table, levels = [], []
    for name in methods:
        mine = [r for r in rows if r.get("method") == name and r.get("status") == "ok"]
        if not mine:
            continue
        extra = [r.get("method_extra") or {} for r in mine]
        io_seconds = []
        per_level: dict[tuple[int, str], list[dict[str, Any]]] = {}
        for r in mine:
            lv = r.get("io_levels") or []
            io_seconds.append(sum(float(x["seconds"]) for x in lv) if lv else 0.0)
            for i, x in enumerate(lv):
                per_level.setdefault((i, str(x["grid"])), []).append(x)
        table.append({
            "method": name, "pairs": len(mine),
            "tre_mean": _mean([r.get("tre_mean") for r in mine]),
            "tre_median": _mean([r.get("tre_median") for r in mine]),
            "tre_p90": _mean([r.get("tre_p90") for r in mine]),
            "seconds": _mean([r.get("seconds") for r in mine]),
            "io_seconds": _mean(io_seconds),
            "folding_pct": _mean([r.get("folding_pct") for r in mine]),
            "sdlogj": _mean([r.get("sdlogj") for r in mine]),
            "peak_rss_mb": max(float(r.get("peak_rss_mb") or float("nan")) for r in mine),
            "io_steps": int(extra[0].get("io_steps", 0) or 0),
            "io_preset": extra[0].get("io_preset") or "",
        })
        for (i, grid), xs in sorted(per_level.items()):
            levels.append({"method": name, "level": i, "grid": grid, "steps": int(xs[0]["steps"]),
                           "steps_run": _mean([x["steps_run"] for x in xs]),
                           "seconds": _mean([x["seconds"] for x in xs]),
                           "seconds_per_step": _mean([float(x["seconds"]) / max(1, int(x["steps_run"])) for x in xs])})
    return table, levels


def plot(table: list[dict[str, Any]], path: Path, title: str) -> None:
    """Mean TRE against seconds a pair, one point per method (log time axis; in the legend), the presets
    joined (solid: diffeomorphic, dashed: additive); a method that takes no time (``none``) is a line."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.2, 4.4))
    markers = "os^vDP*Xhp<>"
    timed = [r for r in table if math.isfinite(r["tre_mean"]) and math.isfinite(r["seconds"]) and r["seconds"] > 0.05]
    for i, r in enumerate(timed):
        label = r["method"]
        label = "medreg one pass" if label in ("medreg", "medreg+affine") else \
            label.replace("medreg+affine+", "").replace("medreg+", "")
        label = f"{label} ({r['tre_mean']:.2f} mm, {r['seconds']:.1f} s)"
        ax.scatter(r["seconds"], r["tre_mean"], marker=markers[i % len(markers)], s=42, label=label, zorder=3)
    for r in table:
        if r not in timed and math.isfinite(r["tre_mean"]):
            ax.axhline(r["tre_mean"], color="grey", linestyle=":", linewidth=0.8)
            ax.annotate(f"{r['method']} {r['tre_mean']:.2f} mm", (0.01, r["tre_mean"]), xycoords=("axes fraction", "data"),
                        fontsize=7, xytext=(0, 2), textcoords="offset points")
    for additive in (False, True):  # the presets as a curve
        pts = sorted((r["seconds"], r["tre_mean"]) for r in timed if r["io_preset"] and
                     r["method"].endswith("-additive") == additive)
        if len(pts) > 1:
            ax.plot(*zip(*pts), linestyle="--" if additive else "-", color="grey", linewidth=0.8, zorder=2)
    ax.set_xscale("log")
    ax.set_xlabel("seconds a pair")
    ax.set_ylabel("mean TRE (mm)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def format_table(table: list[dict[str, Any]], levels: list[dict[str, Any]]) -> str:
    head = f"{'method':34s} {'pairs':>5s} {'TRE mean':>9s} {'median':>7s} {'s/pair':>8s} {'IO s':>6s} " \
           f"{'fold %':>7s} {'SDlogJ':>6s} {'peak MB':>8s}"
    lines = [head]
    for r in table:
        lines.append(f"{r['method']:34s} {r['pairs']:5d} {r['tre_mean']:9.3f} {r['tre_median']:7.3f} "
                     f"{r['seconds']:8.1f} {r['io_seconds']:6.1f} {r['folding_pct']:7.4f} {r['sdlogj']:6.3f} "
                     f"{r['peak_rss_mb']:8.0f}")
    if levels:
        lines.append("")
        lines.append(f"{'method':34s} {'level':>5s} {'grid':>8s} {'steps':>5s} {'run':>5s} {'s':>6s} {'s/step':>7s}")
        for r in levels:
            lines.append(f"{r['method']:34s} {r['level']:5d} {r['grid']:>8s} {r['steps']:5d} {r['steps_run']:5.1f} "
                         f"{r['seconds']:6.2f} {r['seconds_per_step']:7.3f}")
    return "\n".join(lines)


def bench_io(*, model: str | Path, dataset: str, data: str | Path, out: str | Path, split: str = "test",
             presets: Sequence[str] = PRESETS, diffeomorphic: Sequence[bool] = (False, True),
             baselines: Sequence[str] = ("elastix", "ants:syn-quick"), threads: int = 2, pairs: int | None = 1,
             device: str = "cpu", progress: bool = True, command: str | None = None,
             log: Callable[[str], None] = print) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run the benchmark (see the module doc); write ``io.csv``, ``levels.csv`` and ``io.png`` into ``out``."""
    from medreg.evaluate import EvaluationOptions, evaluate
    from medreg.evaluation.methods import BaselineMethod
    from medreg.evaluation.rows import read_rows, rows_csv_text
    from medreg.io.atomic import write_text_atomic

    out = Path(out)
    methods = io_methods(model, presets, diffeomorphic, device) + [BaselineMethod(s) for s in baselines]
    names = [m.name for m in methods]
    opts = EvaluationOptions(dataset=dataset, data=Path(data), out=out / "evaluation", model=Path(model),
                             split=split, threads=int(threads), device=device, methods=methods, limit=pairs,
                             save_fields=False, progress=progress, command=command)
    result = evaluate(opts)
    for pair, method, reason in result.failed:
        log(f"medreg bench io: {pair} / {method} failed: {reason.splitlines()[0]}")
    rows = read_rows(out / "evaluation")
    table, levels = summarize(rows, names)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "io.csv", rows_csv_text(table), overwrite=True)
    write_text_atomic(out / "levels.csv", rows_csv_text(levels), overwrite=True)
    n_pairs = len({r["pair"] for r in rows if r.get("status") == "ok"})
    plot(table, out / "io.png", f"{dataset} {split}: {n_pairs} pair(s), {threads} threads")
    log(format_table(table, levels))
    return table, levels


__all__ = ["PRESETS", "bench_io", "format_table", "io_methods", "plot", "summarize"]
