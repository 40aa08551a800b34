"""Quality-control figure of a generated dataset: fixed, moving, difference, landmarks.

One row per case: a slice of the fixed image, the same slice of the moving
image, their difference, and the fixed image with the landmarks lying near the
slice (fixed position as a dot, a line to the corresponding moving position).
Written atomically as PNG with matplotlib's Agg backend.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medreg.io.atomic import atomic_path


@dataclass
class QCRow:
    """One case: 2D slices (rows x columns as displayed) and landmark positions in the same frame."""

    title: str
    fixed: np.ndarray
    moving: np.ndarray
    fixed_points: np.ndarray  # (N, 2) (column, row)
    moving_points: np.ndarray  # (N, 2)
    aspect: float = 1.0  # row height / column width (mm)
    window: tuple[float, float] | None = None


def save_qc_figure(rows: list[QCRow], path: str | Path, *, suptitle: str = "", overwrite: bool = True) -> Path:
    """Draw ``rows`` (fixed | moving | fixed - moving | landmarks) into a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 4, figsize=(13, 3.3 * len(rows)), squeeze=False)
    for ax_row, row in zip(axes, rows):
        lo, hi = row.window if row.window else np.percentile(row.fixed, [1, 99.5])
        diff = row.fixed.astype(np.float32) - row.moving.astype(np.float32)
        dlim = float(np.percentile(np.abs(diff), 99.5)) or 1.0
        kw = dict(origin="upper", aspect=row.aspect, interpolation="nearest")
        ax_row[0].imshow(row.fixed, cmap="gray", vmin=lo, vmax=hi, **kw)
        ax_row[1].imshow(row.moving, cmap="gray", vmin=lo, vmax=hi, **kw)
        ax_row[2].imshow(diff, cmap="coolwarm", vmin=-dlim, vmax=dlim, **kw)
        ax_row[3].imshow(row.fixed, cmap="gray", vmin=lo, vmax=hi, **kw)
        f, m = row.fixed_points, row.moving_points
        for a, b in zip(f, m):
            ax_row[3].plot([a[0], b[0]], [a[1], b[1]], "-", color="yellow", lw=1.2)
        if len(f):
            ax_row[3].plot(f[:, 0], f[:, 1], "o", ms=3.5, color="lime", label="fixed")
            ax_row[3].plot(m[:, 0], m[:, 1], "x", ms=4, color="red", label="moving")
            ax_row[3].legend(loc="lower right", fontsize=7, framealpha=0.6)
        for ax, name in zip(ax_row, ("fixed", "moving", "fixed - moving", f"landmarks ({len(f)} near slice)")):
            ax.set_title(f"{row.title}: {name}" if name == "fixed" else name, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout()
    with atomic_path(path, overwrite) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    return Path(path)


def _near(fixed_vox: np.ndarray, moving_vox: np.ndarray, axis: int, index: int, slab: float):
    keep = np.abs(fixed_vox[:, axis] - index) <= slab
    return fixed_vox[keep], moving_vox[keep]


def brain_qc_figure(root: str | Path, case_ids: list[str], path: str | Path) -> Path:
    """Axial slices through the lesion of demo-brain cases (t1; radiological display)."""
    from medreg.datasets.brats import brats_pairs
    from medreg.datasets.base import load_pair_landmarks
    from medreg.geometry.frames import lps_to_voxel
    from medreg.io.nifti import load_volume

    rows = []
    for pair in brats_pairs(root, ("t1",), cases=case_ids):
        fixed = load_volume(pair.fixed["t1"])
        moving = load_volume(pair.moving["t1"])
        labels = load_volume(pair.fixed_labels, dtype=None).array
        area = (labels == 4).sum(axis=(0, 1))
        k = int(np.argmax(area)) if area.max() > 0 else labels.shape[2] // 2
        fl, ml = load_pair_landmarks(pair)
        fv, mv = lps_to_voxel(fixed.affine, fl.points), lps_to_voxel(moving.affine, ml.points)
        fv, mv = _near(fv, mv, 2, k, 6.0 / fixed.spacing[2])
        rows.append(QCRow(f"{pair.id} z={k}", fixed.array[:, :, k].T, moving.array[:, :, k].T,
                          fv[:, :2], mv[:, :2], aspect=fixed.spacing[1] / fixed.spacing[0]))
    return save_qc_figure(rows, path, suptitle="demo-brain: fixed = follow-up, moving = baseline (t1, axial)")


def lung_qc_figure(root: str | Path, case_names: list[str], path: str | Path) -> Path:
    """Coronal slices of demo-lung cases (HU window -1000..300, superior up, patient left on the right)."""
    from medreg.datasets.base import load_pair_landmarks
    from medreg.datasets.dirlab import dirlab_pairs
    from medreg.io.dirlab import read_dirlab_img
    from medreg.geometry.frames import lps_to_voxel

    wanted = {n.lower() for n in case_names}
    rows = []
    for pair in dirlab_pairs(root):
        if pair.fixed["ct"].parent.parent.name.lower() not in wanted:
            continue
        fixed = read_dirlab_img(pair.fixed["ct"], pair.raw_geometry)
        moving = read_dirlab_img(pair.moving["ct"], pair.raw_geometry)
        fl, ml = load_pair_landmarks(pair)
        fv, mv = lps_to_voxel(fixed.affine, fl.points), lps_to_voxel(moving.affine, ml.points)
        j = int(np.round(np.median(fv[:, 1])))
        fv, mv = _near(fv, mv, 1, j, 5.0 / fixed.spacing[1])
        zmax = fixed.shape[2] - 1
        sx, _, sz = fixed.spacing
        rows.append(QCRow(f"{pair.id} y={j}", fixed.array[:, j, ::-1].T, moving.array[:, j, ::-1].T,
                          np.c_[fv[:, 0], zmax - fv[:, 2]], np.c_[mv[:, 0], zmax - mv[:, 2]],
                          aspect=sz / sx, window=(-1000.0, 300.0)))
    return save_qc_figure(rows, path, suptitle="demo-lung: fixed = exhale (T50), moving = inhale (T00), coronal")


def summary_table(root: str | Path) -> str:
    """Markdown table of the per-case no-registration landmark errors in ``summary.json``."""
    summary = json.loads((Path(root) / "summary.json").read_text())
    lines = ["| case | split | landmarks | mean mm | median mm | max mm |", "|---|---|---|---|---|---|"]
    for cid, info in summary["cases"].items():
        e = info["no_registration_error_mm"]
        lines.append(f"| {cid} | {info['split']} | {info['n_landmarks']} | {e['mean']:.2f} | {e['median']:.2f} | {e['max']:.2f} |")
    return "\n".join(lines)
