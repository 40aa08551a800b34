"""The evaluation protocol behind ``medreg evaluate`` (BraTS-Reg style, docs/reference.md §2-§4).

Every method (medreg's model, with and without instance optimisation, and the baselines)
registers the same pairs: the preprocessed fixed and moving files of the manifest's split,
with the same thread count. For each (pair, method) it records TRE (mean, median, p90,
max; ``phi`` evaluated at the fixed landmarks), BraTS-Reg MEE and robustness, folding %
and SDlogJ (plain and +3), Dice of warped label maps where present, the method's time,
threads, device and peak memory (see :mod:`medreg.evaluation.pair_metrics`).

Outputs in ``DIR`` (``--out``)::

    evaluation.json   what was registered, methods, threads, machine (see run_info)
    rows/             one JSON per (pair, method), written when it is finished (resume)
    metrics.csv       a row per pair and method; failed rows carry their reason
    summary.json      per method mean/median/std of each metric, ratios to the reference
    report.md, report.html, figures/
    pairs/<pair>/<method>/field.nii.gz, landmarks.csv, qc.png
    submission/<method>/<case>.csv, <case>_detj.nii.gz     (with --submission)

An interrupted run resumes: rerun the same command and finished (pair, method) rows are
skipped (failed ones are tried again). A failing pair is recorded and the run goes on.
``--shard I/N`` takes pairs ``I, I+N, I+2N, ...`` of the split (``I`` 0-based); run each
shard into its own folder and combine them with :func:`merge_evaluations`.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from medreg.errors import ConfigError, InputError
from medreg.evaluation.methods import EvalMethod, PairInputs, build_methods
from medreg.inference.global_stage import GlobalConfig
from medreg.inference.io_config import NO_IO, IOConfig
from medreg.evaluation.outputs import method_slug, pair_output_dir, write_displacement_field, write_submission
from medreg.evaluation.rows import PATH_COLUMNS, finished, metrics_csv_text, read_metrics_csv, read_rows, write_row
from medreg.evaluation.run_info import INFO_FILE, check_resume, machine_info, read_info, write_info
from medreg.evaluation.shard import Shard
from medreg.evaluation.summary import summarize
from medreg.io.atomic import write_text_atomic


@dataclass
class EvaluationOptions:
    """Everything ``medreg evaluate`` needs (see the module docstring).

    ``methods`` replaces the methods built from ``model``/``baselines`` (tests, custom methods).
    ``channel``: the image classical methods register (default: the manifest's first channel).
    ``contrasts``: evaluate every method on each of these channels in turn, as ``NAME@contrast``
    (single-channel medreg models read that contrast; the report has one row per method and contrast).
    ``split``: a split name of the manifest, or ``all``; ``val`` on a manifest without one is the
    model's validation pairs (held out of its training split). ``limit``: only the first N pairs.
    """

    dataset: str
    data: Path
    out: Path
    model: Path | None = None
    baselines: list[str] = field(default_factory=list)
    io: IOConfig = NO_IO
    global_stage: GlobalConfig | None = None  # None: the model's (its config's global_stage.mode)
    split: str = "test"
    threads: int = 1
    shard: Shard = field(default_factory=Shard)
    submission: bool = False
    device: str = "cpu"
    channel: str | None = None
    contrasts: list[str] = field(default_factory=list)  # every method once per contrast (NAME@contrast)
    seed: int = 0
    save_fields: bool = True
    progress: bool = True
    command: str | None = None
    methods: list[EvalMethod] | None = None
    max_qc_pairs: int = 20
    limit: int | None = None  # only the first N pairs of the split


@dataclass
class EvaluationResult:
    """What an evaluation (or a merge) wrote and did."""

    out: Path
    summary: dict[str, Any]
    methods: list[str]
    done: int = 0
    skipped: int = 0
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (pair, method, reason)
    seconds: float = 0.0
    action: str = "evaluate"  # or "merge", "report"

    @property
    def ok(self) -> bool:
        return not self.failed

    def text(self) -> str:
        """A one-screen summary: counts, the summary table (Markdown) and where the report is."""
        from medreg.report.document import _md_table
        from medreg.report.tables import summary_table

        if self.action == "evaluate":
            lines = [f"medreg evaluate -> {self.out}",
                     f"  {self.done} registered, {self.skipped} already done (skipped), {len(self.failed)} failed, in {self.seconds:.1f} s"]
        else:
            lines = [f"medreg evaluate {self.action} -> {self.out}", f"  {self.skipped} rows, {len(self.failed)} failed"]
        for pair, method, reason in self.failed[:10]:
            lines.append(f"  FAILED {pair} / {method}: {reason.splitlines()[0] if reason else ''}")
        header, rows = summary_table(self.summary, self.methods)
        lines += ["", _md_table(header, rows), "",
                  f"metrics: {self.out / 'metrics.csv'}", f"summary: {self.out / 'summary.json'}",
                  f"report:  {self.out / 'report.html'}  (and report.md)"]
        return "\n".join(lines)


def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def _select_pairs(manifest, split: str, manifest_path: Path, config: Any = None) -> list:
    """The split's pairs. ``val`` on a manifest without a ``val`` split is the model's validation pairs
    (``config``: its ``data.val_split`` / ``val_pairs``, held out of training as ``medreg train`` did)."""
    if split == "all":
        pairs = list(manifest.pairs)
    else:
        pairs = manifest.split(split)
    if not pairs and split == "val" and config is not None and config.data.val_split:
        from medreg.training.data import train_val_records

        _, val = train_val_records(manifest, manifest_path, config.data)
        ids = {str(r["id"]).split("@")[0] for r in val}
        pairs = [p for p in manifest.pairs if p.id in ids]
    if not pairs:
        splits = sorted({str(p.split) for p in manifest.pairs})
        raise InputError(manifest_path, f"expected pairs in split {split!r}, found none (splits in the manifest: {splits}; "
                                        "use --split NAME or --split all)")
    return pairs


def _reference(methods: list[EvalMethod]) -> str:
    for m in methods:
        if m.describe().get("kind") == "baseline":
            return m.name
    return methods[0].name


def _fmt_tuple(values, digits: int = 3) -> str:
    return "x".join(f"{float(v):.{digits}g}" if isinstance(v, float) else str(v) for v in values)


def _run_one(method: EvalMethod, entry, root: Path, opts: EvaluationOptions, channel: str, brats_header: bool,
             manifest: Any = None) -> dict[str, Any]:
    """Register one pair with one method, score it and write its outputs; a failure becomes a row."""
    import numpy as np

    from medreg.datasets.manifest import resolve
    from medreg.evaluation.pair_metrics import evaluate_result, load_pair_data
    from medreg.io.landmarks import write_brats_csv
    from medreg.io.nifti import load_volume
    from medreg.report.qc import qc_strip_png

    out = Path(opts.out)
    fixed = {c: resolve(root, rel) for c, rel in entry.fixed.items()}
    moving = {c: resolve(root, rel) for c, rel in entry.moving.items()}
    inputs = PairInputs(entry.id, fixed, moving, channel, manifest)
    geo = entry.fixed_geometry()
    row: dict[str, Any] = {
        "pair": entry.id, "method": method.name, "split": entry.split or "", "threads": int(opts.threads),
        "device": method.device, "shape": _fmt_tuple(geo.shape), "spacing": _fmt_tuple(geo.spacing),
        "fixed_files": ";".join(str(p) for p in fixed.values()), "moving_files": ";".join(str(p) for p in moving.values()),
        "input_channel": channel, "started": _now(),
    }
    folder = pair_output_dir(out, entry.id, method.name)
    if folder.exists():  # an unfinished earlier attempt of this very row: its files are ours to replace
        shutil.rmtree(folder)
    start = time.perf_counter()
    try:
        def opt(rel):
            return None if rel is None else resolve(root, rel)

        data = load_pair_data(entry.id, opt(entry.fixed_landmarks), opt(entry.moving_landmarks),
                              opt(entry.fixed_labels), opt(entry.moving_labels))
        result = method.register(inputs, threads=int(opts.threads), seed=int(opts.seed), workdir=None)
        row["wall_seconds"] = time.perf_counter() - start
        if tuple(result.shape) != tuple(geo.shape):
            raise InputError(fixed[channel], f"expected the method's field on the fixed grid {geo.shape}, found {result.shape}")
        ev = evaluate_result(result, data)
        row.update(ev.metrics)
        row.update(seconds=float(result.seconds), peak_rss_mb=float(result.peak_rss_mb), threads=int(result.threads))
        if result.extra.get("device"):  # where it really ran (FireANTs and medreg pick CUDA when present)
            row["device"] = str(result.extra["device"])
        row["dice_labels"] = {str(k): v for k, v in ev.dice_per_label.items()} if ev.dice_per_label else ""
        row["method_extra"] = {k: v for k, v in result.extra.items() if isinstance(v, (str, int, float, bool))}
        if result.extra.get("io_levels"):
            row["io_levels"] = result.extra["io_levels"]
        folder.mkdir(parents=True, exist_ok=True)
        if opts.save_fields:
            write_displacement_field(folder / "field.nii.gz", result.displacement_lps, result.fixed_affine)
            row["field"] = os.path.relpath(folder / "field.nii.gz", out)
        if ev.mapped is not None:
            write_brats_csv(folder / "landmarks.csv", ev.mapped)
            row["landmarks"] = os.path.relpath(folder / "landmarks.csv", out)
        fvol = load_volume(fixed[channel], allow_constant=True)
        mvol = load_volume(moving[channel], allow_constant=True)
        png = qc_strip_png(fvol.array, mvol.array, mvol.affine, result.displacement_lps, result.fixed_affine,
                           title=f"{entry.id} - {method.name}   (TRE {row['tre_mean']:.2f} mm, folding {row['folding_pct']:.3f} %)"
                           if np.isfinite(row["tre_mean"]) else f"{entry.id} - {method.name}")
        (folder / "qc.png").write_bytes(png)
        row["qc"] = os.path.relpath(folder / "qc.png", out)
        if opts.submission:
            write_submission(out / "submission" / method_slug(method.name), entry.id, ev.mapped, ev.detj, geo,
                             brats_header=brats_header, overwrite=True)
        row["status"], row["reason"] = "ok", ""
    except Exception as exc:  # recorded; the run goes on
        row["wall_seconds"] = time.perf_counter() - start
        row["status"], row["reason"] = "failed", f"{type(exc).__name__}: {exc}"[:4000]
        row["traceback"] = traceback.format_exc()[-8000:]
    return row


def finalize(out: Path, info: dict[str, Any], *, max_qc_pairs: int = 20, rows: list[dict[str, Any]] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Write ``metrics.csv``, ``summary.json`` and the report of ``out`` from its rows."""
    from medreg.report.document import write_report

    out = Path(out)
    rows = read_rows(out) if rows is None else rows
    order = [m["name"] for m in info.get("methods", [])]
    rows.sort(key=lambda r: (r["pair"], order.index(r["method"]) if r["method"] in order else len(order), r["method"]))
    methods = order + sorted({r["method"] for r in rows} - set(order))
    summary = summarize(rows, methods, info.get("reference"))
    summary.update({"dataset": info.get("dataset"), "split": info.get("split"), "threads": info.get("threads")})
    write_text_atomic(out / "metrics.csv", metrics_csv_text(rows), overwrite=True)
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=1) + "\n", overwrite=True)
    write_report(out, info, rows, summary, max_qc_pairs=max_qc_pairs)
    return rows, summary


def evaluate(opts: EvaluationOptions) -> EvaluationResult:
    """Run the protocol (see the module docstring); returns counts and the summary."""
    from tqdm.auto import tqdm

    from medreg.datasets.manifest import read_manifest

    start = time.perf_counter()
    if opts.threads < 1:
        raise ConfigError(f"--threads: expected >= 1, found {opts.threads}")
    data = Path(opts.data)
    manifest_path = data / "manifest.json" if data.is_dir() else data
    manifest = read_manifest(manifest_path, dataset=opts.dataset)
    root = manifest_path.parent
    methods = opts.methods if opts.methods is not None else build_methods(opts.model, list(opts.baselines), io=opts.io,
                                                                           device=opts.device, global_stage=opts.global_stage)
    config = next((m.load().config for m in methods if hasattr(m, "load")), None)
    split_pairs = _select_pairs(manifest, opts.split, manifest_path, config)
    if opts.limit is not None:
        split_pairs = split_pairs[:int(opts.limit)]
    pairs = opts.shard.select(split_pairs)
    channels = list(split_pairs[0].fixed)
    channel = opts.channel or channels[0]
    for e in split_pairs:
        for c in [channel, *opts.contrasts]:
            if c not in e.fixed or c not in e.moving:
                raise InputError(manifest_path, f"pair {e.id!r}: expected channel {c!r}, found {sorted(e.fixed)}")
    if opts.contrasts:
        from medreg.evaluation.methods import per_contrast

        methods = per_contrast(methods, list(opts.contrasts))
    out = Path(opts.out)
    info = {
        "format": "medreg-evaluation", "dataset": manifest.dataset, "data": str(root.resolve()), "split": opts.split,
        "split_pairs": len(split_pairs), "shard": str(opts.shard), "pairs": [e.id for e in pairs],
        "threads": int(opts.threads), "channel": channel, "channels": channels, "seed": int(opts.seed),
        "contrasts": list(opts.contrasts),
        "model": None if opts.model is None else str(opts.model), "io": opts.io.describe(),
        "global": next((m.global_stage.mode for m in methods if hasattr(m, "global_stage")), None),
        "methods": [m.describe() for m in methods], "reference": _reference(methods),
        "machine": machine_info([m.device for m in methods]), "command": opts.command, "started": _now(),
        "submission": bool(opts.submission),
    }
    from medreg import __version__

    info["medreg_version"] = __version__
    info = check_resume(out, info)
    out.mkdir(parents=True, exist_ok=True)
    write_info(out, info)
    result = EvaluationResult(out=out, summary={}, methods=[m["name"] for m in info["methods"]])
    brats_header = manifest.dataset in ("brats", "demo-brain")
    for method in methods:
        bar = tqdm(pairs, desc=f"{method.name:>16}", unit="pair", disable=not opts.progress, file=sys.stderr, dynamic_ncols=True)
        for entry in bar:
            bar.set_postfix_str(entry.id)
            if finished(out, entry.id, method.name):
                result.skipped += 1
                continue
            row = _run_one(method, entry, root, opts, getattr(method, "contrast", channel), brats_header, manifest)
            write_row(out, row)
            if row["status"] == "ok":
                result.done += 1
            else:
                result.failed.append((entry.id, method.name, row["reason"]))
                bar.write(f"medreg evaluate: {entry.id} / {method.name} failed: {row['reason'].splitlines()[0]}", file=sys.stderr)
        bar.close()
    info["finished"] = _now()
    write_info(out, info)
    _, result.summary = finalize(out, info, max_qc_pairs=opts.max_qc_pairs)
    result.seconds = time.perf_counter() - start
    return result


def merge_evaluations(dirs: list[Path], out: Path, *, max_qc_pairs: int = 20) -> EvaluationResult:
    """Combine evaluation folders (shards) into ``out``: rows, metrics.csv, summary.json, one report.

    The inputs must agree on dataset, split, threads, channel and seed; a (pair, method) found
    in several inputs is taken from the one where it succeeded (two successes: an error).
    Per-pair files stay where they are; the merged rows point to them (paths relative to ``out``).
    """
    start = time.perf_counter()
    out = Path(out)
    dirs = [Path(d) for d in dirs]
    if not dirs:
        raise InputError(None, "expected at least one evaluation folder to merge, found none")
    infos = []
    for d in dirs:
        if d.resolve() == out.resolve():
            raise InputError(d, "expected --out to differ from the folders being merged")
        info = read_info(d)
        if info is None:
            raise InputError(d / INFO_FILE, "expected an evaluation folder (written by medreg evaluate), found no evaluation.json")
        infos.append(info)
    for key in ("dataset", "split", "threads", "channel", "seed"):
        values = {json.dumps(i.get(key)) for i in infos}
        if len(values) > 1:
            raise InputError(dirs[0], f"expected the folders to agree on {key!r}, found {sorted(values)}")
    existing = read_info(out)
    if existing is None and out.exists() and any(out.iterdir()):
        raise InputError(out, "expected an empty folder or an earlier merge for --out, found other files")
    if existing is not None and "merged_from" not in existing:
        raise InputError(out / INFO_FILE, "expected an earlier merge for --out, found an evaluation (merge into another folder)")
    chosen: dict[tuple[str, str], tuple[dict[str, Any], Path]] = {}
    for d in dirs:
        rows = read_rows(d) if (d / "rows").is_dir() else read_metrics_csv(d / "metrics.csv")
        for row in rows:
            key = (row["pair"], row["method"])
            if key in chosen:
                prev = chosen[key][0]
                if prev.get("status") == "ok" and row.get("status") == "ok":
                    raise InputError(d, f"expected each (pair, method) in one folder, found {key} finished in {chosen[key][1]} too")
                if prev.get("status") == "ok":
                    continue
            chosen[key] = (row, d)
    merged_rows = []
    for row, d in chosen.values():
        row = dict(row)
        for col in PATH_COLUMNS:
            if row.get(col):
                row[col] = os.path.relpath((d / row[col]).resolve(), out.resolve())
        merged_rows.append(row)
    methods: list[dict[str, Any]] = []
    for info in infos:
        methods += [m for m in info.get("methods", []) if m["name"] not in {x["name"] for x in methods}]
    shards = [{"folder": str(d.resolve()), "shard": i.get("shard"), "pairs": len(i.get("pairs", []))} for d, i in zip(dirs, infos)]
    info = {**infos[0], "methods": methods, "shard": "merged", "shards": shards, "merged_from": [str(d.resolve()) for d in dirs],
            "pairs": sorted({r["pair"] for r in merged_rows}), "finished": _now(),
            "machine": infos[0].get("machine", {}), "command": infos[0].get("command")}
    counts = {int(str(i.get("shard", "0/1")).split("/")[1]) for i in infos if "/" in str(i.get("shard"))}
    indexes = {int(str(i.get("shard")).split("/")[0]) for i in infos if "/" in str(i.get("shard"))}
    if len(counts) == 1 and indexes != set(range(next(iter(counts)))):
        info["missing_shards"] = sorted(set(range(next(iter(counts)))) - indexes)
    if existing is not None and (out / "rows").is_dir():  # rows of an earlier merge into this folder
        shutil.rmtree(out / "rows")
    out.mkdir(parents=True, exist_ok=True)
    for row in merged_rows:
        write_row(out, row)
    write_info(out, info)
    rows, summary = finalize(out, info, max_qc_pairs=max_qc_pairs)
    result = EvaluationResult(out=out, summary=summary, methods=[m["name"] for m in methods],
                              skipped=len(rows), seconds=time.perf_counter() - start, action="merge")
    result.failed = [(r["pair"], r["method"], str(r.get("reason", ""))) for r in rows if r.get("status") != "ok"]
    return result


def rebuild_report(folder: Path, *, max_qc_pairs: int = 20) -> EvaluationResult:
    """Rewrite ``summary.json`` and the report of an evaluation folder from its rows (or its metrics.csv)."""
    folder = Path(folder)
    info = read_info(folder)
    if info is None:
        raise InputError(folder / INFO_FILE, "expected an evaluation folder (written by medreg evaluate), found no evaluation.json")
    rows = read_rows(folder) if (folder / "rows").is_dir() else read_metrics_csv(folder / "metrics.csv")
    rows, summary = finalize(folder, info, max_qc_pairs=max_qc_pairs, rows=rows)
    result = EvaluationResult(out=folder, summary=summary, methods=[m["name"] for m in info.get("methods", [])],
                              skipped=len(rows), action="report")
    result.failed = [(r["pair"], r["method"], str(r.get("reason", ""))) for r in rows if r.get("status") != "ok"]
    return result
