"""``medreg probe``: what each step of a trained 3-D model does on its validation pairs.

The pairs are the model's own validation split, chosen exactly as ``medreg train`` chose them
from the manifest (``data.val_split``, ``data.val_pairs``, held out of training), loaded on the
network grid and put through the model's global stage, so the network sees what it saw in
validation. For each pair, each step of the model (its ``TwoStep`` / ``Downsample`` tree) and
each repeat of the whole model (``--unroll``: 2x, 4x its steps), :func:`medreg.registration.probe.probe_steps`
records the training loss (the model's own similarity, window and weight), its terms, folding,
the update's size, its descent cosine and the loss change; this module adds the landmark error
in mm after every step (through the global stage's ``A``, as validation in training does).

Out of distribution (``--ood``): ``swap-channels`` gives a multi-channel model its channels in
reverse order (for the demo-brain model: the t2 image where it learned t1, and t1 where it
learned t2), ``invert`` flips every channel's intensities (``1 - x`` of the [0, 1]-scaled input):
contrasts the network never saw, on the same anatomy and motion.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from medreg.errors import ConfigError, InputError
from medreg.evaluation.rows import rows_csv_text
from medreg.io.atomic import check_new_folder, write_text_atomic
from medreg.registration.objective import objective_from_config
from medreg.registration.probe import StepLoss, count_steps, probe_steps, unrolled_steps
from medreg.spatial.transforms import Identity

OOD_CHOICES = ("swap-channels", "invert")


def validation_items(config: Any, data: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The model's validation pairs from a ``medreg preprocess`` folder, as ``medreg train`` loads and aligns them."""
    from medreg.datasets.manifest import read_manifest
    from medreg.inference.register import model_global_stage
    from medreg.registration.build import required_multiple
    from medreg.training.data import LoadPaird, check_manifest, train_val_records
    from medreg.training.motion import align_validation_item

    manifest_path = Path(data) / "manifest.json" if Path(data).is_dir() else Path(data)
    manifest = read_manifest(manifest_path, dataset=config.data.dataset)
    check_manifest(manifest, manifest_path, config)
    if config.data.val_split is None:
        raise ConfigError("the model's config has no validation split (data.val_split); the probe runs on the "
                          "validation pairs only, never on test pairs")
    _, val_records = train_val_records(manifest, manifest_path, config.data, config.channels)
    if not val_records:
        raise InputError(manifest_path, f"expected validation pairs (split {config.data.val_split!r}), found none")
    if limit is not None:
        val_records = val_records[:limit]
    multiple = required_multiple(config.model)
    loader = LoadPaird(config.channels, config.preprocess, multiple, f"levels={config.model.levels}")
    stage = model_global_stage(config)
    return [align_validation_item(loader(r), stage) for r in val_records]


def ood_variant(image: torch.Tensor, kind: str) -> torch.Tensor:
    """An input the network never saw: channels reversed, or intensities inverted (``1 - x``)."""
    if kind == "swap-channels":
        if image.shape[0] < 2:
            raise ConfigError("--ood swap-channels needs a model with two or more channels; this one has "
                              f"{image.shape[0]} (use --ood invert)")
        return image.flip(0)
    if kind == "invert":
        return 1.0 - image
    raise ConfigError(f"--ood {kind!r}; expected one of {OOD_CHOICES}")


def _tre(phi, item: dict[str, Any], device) -> float:
    from medreg.training.validation import landmark_errors

    if len(item["fixed_points"]) == 0:
        return math.nan
    err = landmark_errors(phi, item["fixed_points"], item["moving_points"], item["affine"],
                          tuple(item["fixed"].shape[1:]), device, global_lps=item.get("global_lps"))
    return float(np.mean(err))


def probe_model(model: torch.nn.Module, config: Any, items: list[dict[str, Any]], *, unroll: int = 4,
                ood: Sequence[str] = (), device: torch.device | str = "cpu") -> list[dict[str, Any]]:
    """One row per condition, pair and step: the probe's figures (means over the pair) and the TRE in mm."""
    loss = StepLoss.from_objective(objective_from_config(model, config.loss))
    trained = count_steps(model)
    rows = []
    for condition in ("as trained", *ood):
        for item in items:
            fixed = torch.as_tensor(item["fixed"], dtype=torch.float32)
            moving = torch.as_tensor(item["moving"], dtype=torch.float32)
            if condition != "as trained":
                fixed, moving = ood_variant(fixed, condition), ood_variant(moving, condition)
            fixed, moving = fixed[None].to(device), moving[None].to(device)
            with torch.no_grad():
                maps = unrolled_steps(model, moving, fixed, unroll)
            res = probe_steps(maps, moving, fixed, loss, trained_steps=trained)
            tre = [_tre(phi, item, device) for phi in [Identity(), *maps]]
            for row, t in zip(res.rows(), tre):
                clean = {k[:-5]: v for k, v in row.items() if k.endswith("_mean")}  # one pair: sd is 0
                rows.append({"condition": condition, "pair": item["id"], "step": row["step"],
                             "beyond_training": row["beyond_training"], **clean, "tre_mm": t})
    return rows


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard deviation over pairs, per condition and step."""
    keys = [k for k in rows[0] if k not in ("condition", "pair", "step", "beyond_training")]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["condition"], r["step"]), []).append(r)
    out = []
    for (condition, step), rs in groups.items():
        row = {"condition": condition, "step": step, "pairs": len(rs), "beyond_training": rs[0]["beyond_training"]}
        for k in keys:
            v = np.array([r[k] for r in rs], dtype=float)
            row[f"{k}_mean"] = float(np.nanmean(v)) if not np.isnan(v).all() else math.nan
            row[f"{k}_sd"] = float(np.nanstd(v)) if not np.isnan(v).all() else math.nan
        out.append(row)
    return out


def save_curves(path: Path, summary: list[dict[str, Any]], trained: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("loss", "training loss"), ("similarity", "similarity term"), ("tre_mm", "landmark error (mm)"),
              ("cos_loss", "descent cosine: training loss"), ("cos_similarity", "descent cosine: similarity"),
              ("update_rms_vox", "update RMS (voxels)")]
    fig, axes = plt.subplots(2, 3, figsize=(14, 7))
    for ax, (key, title) in zip(axes.flat, panels):
        for condition in dict.fromkeys(r["condition"] for r in summary):
            plot_band(ax, [r for r in summary if r["condition"] == condition], key, condition)
        finish_panel(ax, title, trained, f"step (0 = before; the model has {trained}, grey line)")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_band(ax, rows: list[dict[str, Any]], key: str, label: str, style: str = "-", marker: str = "o") -> None:
    """``key``'s mean against ``step`` with a band of one standard deviation (``<key>_mean`` / ``<key>_sd``)."""
    steps = [r["step"] for r in rows]
    m = np.array([r[f"{key}_mean"] for r in rows], dtype=float)
    sd = np.array([r[f"{key}_sd"] for r in rows], dtype=float)
    line, = ax.plot(steps, m, style, marker=marker, label=label)
    ax.fill_between(steps, m - sd, m + sd, color=line.get_color(), alpha=0.2)


def finish_panel(ax, title: str, trained: int, xlabel: str) -> None:
    ax.axvline(trained, color="grey", lw=0.8)
    ax.set_title(title)
    ax.set_xlabel(xlabel)


def run_probe(model_path: str | Path, data: str | Path, out: str | Path, *, unroll: int = 4,
              ood: Sequence[str] = (), pairs: int | None = None, device: str = "cpu",
              threads: int | None = None) -> dict[str, Any]:
    """Probe a trained model on its validation pairs; write steps.csv, summary.csv, steps.png and probe.json to ``out``."""
    from medreg.inference.bundle import load_bundle
    from medreg.training.distributed import pick_device

    if unroll < 1:
        raise ConfigError(f"--unroll must be at least 1, found {unroll}")
    for kind in ood:
        if kind not in OOD_CHOICES:
            raise ConfigError(f"--ood {kind!r}; expected one of {OOD_CHOICES}")
    out = check_new_folder(out)
    if threads:
        torch.set_num_threads(int(threads))
    dev = pick_device(device)
    t0 = time.perf_counter()
    bundle = load_bundle(model_path, dev)
    items = validation_items(bundle.config, data, pairs)
    if "swap-channels" in ood and len(bundle.config.channels) < 2:
        raise ConfigError(f"--ood swap-channels needs a model with two or more channels; {bundle.path} has "
                          f"{len(bundle.config.channels)} ({', '.join(bundle.config.channels)}); use --ood invert")
    rows = probe_model(bundle.model, bundle.config, items, unroll=unroll, ood=ood, device=dev)
    summary = summarise(rows)
    trained = count_steps(bundle.model)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "steps.csv", rows_csv_text(rows))
    write_text_atomic(out / "summary.csv", rows_csv_text(summary))
    save_curves(out / "steps.png", summary, trained)
    info = {
        "model": str(bundle.path), "sha256": hashlib.sha256(Path(bundle.path).read_bytes()).hexdigest(),
        "data": str(data), "pairs": [i["id"] for i in items], "model_steps": trained, "unroll": unroll,
        "ood": list(ood), "loss": bundle.config.loss.model_dump(), "global_stage": bundle.config.global_stage.mode,
        "seconds": time.perf_counter() - t0, "device": str(dev), "threads": torch.get_num_threads(),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "torch": torch.__version__},
    }
    write_text_atomic(out / "probe.json", json.dumps(info, indent=2))
    return {"info": info, "summary": summary}


def format_summary(summary: list[dict[str, Any]], trained: int) -> str:
    """A short table: per condition, the steps of the model and the ends of each repeat."""
    lines = [f"{'condition':<14} {'step':>4} {'loss':>8} {'TRE mm':>7} {'cos(loss)':>10} {'loss change':>12} "
             f"{'update vox':>10}"]
    for r in summary:
        if r["step"] <= trained or r["step"] % trained == 0:
            lines.append(f"{r['condition']:<14} {r['step']:>4} {r['loss_mean']:>8.4f} {r['tre_mm_mean']:>7.2f} "
                         f"{r['cos_loss_mean']:>+10.3f} {r['loss_change_mean']:>+12.5f} {r['update_rms_vox_mean']:>10.3f}")
    return "\n".join(lines)


__all__ = ["OOD_CHOICES", "finish_panel", "format_summary", "plot_band", "ood_variant", "probe_model", "run_probe", "summarise", "validation_items"]
