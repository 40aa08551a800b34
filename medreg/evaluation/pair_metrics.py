"""Every metric of one (pair, method) result (docs/reference.md §2-§4).

- Landmarks: ``phi`` is evaluated at the *fixed* landmarks (``result.map_points``) and
  compared with the matching moving landmarks (joined on names): TRE mean, median,
  90th percentile and max (mm), the BraTS-Reg median error (MEE) and robustness (share
  of landmarks whose error went down vs no registration, ``||p_fixed - p_moving||``).
- Regularity: folding = % of fixed voxels with ``det J <= 0``; SDlogJ after cropping
  2 border voxels, plain (``clip``) and Learn2Reg's ``plus3`` variant.
- Overlap: the moving label map is pulled through ``phi`` with nearest neighbour
  (``warped(x) = labels_moving(phi(x))``) and compared with the fixed labels (mean Dice
  over labels present); ``dice_before`` is the same without registration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medreg.baselines.base import BaselineResult
from medreg.geometry import Grid, warp_image
from medreg.io.landmarks import Landmarks

NAN = float("nan")


@dataclass
class PairData:
    """What the evaluation reads once per pair (besides the images the methods read)."""

    pair_id: str
    fixed_landmarks: Landmarks | None = None  # all fixed landmarks (mapped for the submission)
    matched_fixed: Landmarks | None = None  # fixed landmarks that have a moving partner
    matched_moving: Landmarks | None = None
    fixed_labels: Path | None = None
    moving_labels: Path | None = None


@dataclass
class PairEvaluation:
    """The metrics of one result, the mapped fixed landmarks and the Jacobian determinant."""

    metrics: dict[str, Any]
    mapped: Landmarks | None
    detj: np.ndarray
    dice_per_label: dict[int, float] = field(default_factory=dict)


def load_pair_data(pair_id: str, fixed_landmarks: Path | None, moving_landmarks: Path | None,
                   fixed_labels: Path | None, moving_labels: Path | None) -> PairData:
    """Read a pair's landmark files (joined on names) and keep its label paths."""
    from medreg.io.landmarks import match_landmarks, read_brats_csv

    data = PairData(pair_id, fixed_labels=fixed_labels, moving_labels=moving_labels)
    if fixed_landmarks is not None:
        data.fixed_landmarks = read_brats_csv(fixed_landmarks)
        if moving_landmarks is not None:
            data.matched_fixed, data.matched_moving = match_landmarks(data.fixed_landmarks, read_brats_csv(moving_landmarks))
    return data


def warp_volume(moving: np.ndarray, moving_affine: np.ndarray, result: BaselineResult, *,
                order: int = 1) -> np.ndarray:
    """``moving(phi(x))`` for every voxel ``x`` of the fixed grid (``order`` 0 = nearest, 1 = linear).

    The warp the user gets from ``medreg apply`` (:func:`medreg.geometry.warp_image`: ITK's
    border rule); nearest keeps ``moving``'s data type.
    """
    out = warp_image(moving, Grid(moving_affine, moving.shape[:3]), result.grid, result.displacement_lps,
                     mode="nearest" if order == 0 else "linear")
    return out.astype(moving.dtype) if order == 0 else out


def landmark_metrics(result: BaselineResult, data: PairData) -> tuple[dict[str, Any], Landmarks | None]:
    """TRE statistics, MEE, robustness and the no-registration error; also ``phi(all fixed landmarks)``."""
    from medreg.metrics.landmarks import brats_mee, robustness, tre, tre_summary

    out: dict[str, Any] = {"n_landmarks": 0}
    for k in ("tre_mean", "tre_median", "tre_p90", "tre_max", "mee", "robustness", "tre0_mean", "tre0_median"):
        out[k] = NAN
    mapped = None
    if data.fixed_landmarks is not None:
        mapped = Landmarks(list(data.fixed_landmarks.names), result.map_points(data.fixed_landmarks.points))
    if data.matched_fixed is not None and data.matched_moving is not None and len(data.matched_fixed):
        err = tre(result.map_points(data.matched_fixed.points), data.matched_moving.points)
        err0 = tre(data.matched_fixed.points, data.matched_moving.points)
        s, s0 = tre_summary(err), tre_summary(err0)
        out.update(
            n_landmarks=int(err.size), tre_mean=s["mean"], tre_median=s["median"], tre_p90=s["p90"], tre_max=s["max"],
            mee=brats_mee(err), robustness=robustness(err, err0), tre0_mean=s0["mean"], tre0_median=s0["median"],
        )
    return out, mapped


def overlap_metrics(result: BaselineResult, data: PairData) -> tuple[dict[str, Any], dict[int, float]]:
    """Mean Dice of the warped moving labels vs the fixed labels, before and after registration."""
    from medreg.baselines.base import BaselineResult as _Result
    from medreg.io.nifti import load_volume
    from medreg.metrics.overlap import dice, mean_dice

    if data.fixed_labels is None or data.moving_labels is None:
        return {"dice_mean": NAN, "dice_before": NAN}, {}
    fixed = load_volume(data.fixed_labels, dtype=None, allow_constant=True)
    moving = load_volume(data.moving_labels, dtype=None, allow_constant=True)
    mov = np.rint(moving.array).astype(np.int32) if np.issubdtype(moving.array.dtype, np.floating) else moving.array.astype(np.int32)
    fix = np.rint(fixed.array).astype(np.int32) if np.issubdtype(fixed.array.dtype, np.floating) else fixed.array.astype(np.int32)
    labels = [int(v) for v in np.union1d(np.unique(fix), np.unique(mov)) if v != 0]
    warped = warp_volume(mov, moving.affine, result, order=0)
    if mov.shape == fix.shape and np.allclose(moving.affine, result.fixed_affine, atol=1e-6):
        before = mov  # the moving labels are already on the fixed grid (medreg preprocess: pair_grid fixed)
    else:
        identity = _Result(np.zeros_like(result.displacement_lps), result.fixed_affine, 0.0, 1, 0.0)
        before = warp_volume(mov, moving.affine, identity, order=0)
    per_label = dice(fix, warped, labels)
    return {"dice_mean": mean_dice(per_label), "dice_before": mean_dice(dice(fix, before, labels))}, per_label


def evaluate_result(result: BaselineResult, data: PairData) -> PairEvaluation:
    """All metrics of one result (see the module docstring)."""
    from medreg.metrics.jacobian import folding_fraction, sdlogj

    metrics, mapped = landmark_metrics(result, data)
    detj = result.jacobian_determinant()
    metrics["folding_pct"] = 100.0 * folding_fraction(detj)
    metrics["sdlogj"] = sdlogj(detj, variant="clip")
    metrics["sdlogj_plus3"] = sdlogj(detj, variant="plus3")
    overlap, per_label = overlap_metrics(result, data)
    metrics.update(overlap)
    return PairEvaluation(metrics=metrics, mapped=mapped, detj=detj, dice_per_label=per_label)
