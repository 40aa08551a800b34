"""Landmark errors (docs/reference.md §4): TRE, its summary, BraTS-Reg MEE and robustness.

All points are world coordinates in LPS millimetres, shape ``(N, 3)``.

The right way to score a transform ``phi`` (fixed -> moving, defined on the fixed
grid) is to evaluate it at the *fixed* landmarks and compare with the moving
landmarks::

    TRE_i = || phi(p_i_fixed) - p_i_moving ||

so :func:`tre` takes the already-mapped fixed points (for example from
``BaselineResult.map_points``). Never sample the field at the moving landmarks
and add or subtract it: that treats the field as its own inverse. The error
with no registration is ``tre(fixed_points, moving_points)``.
"""

from __future__ import annotations

import numpy as np


def _as_points(points: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"{name}: expected points of shape (N, 3), found {arr.shape}")
    return arr


def tre(mapped_fixed_points: np.ndarray, moving_points: np.ndarray) -> np.ndarray:
    """Euclidean distance in mm between ``phi(p_fixed)`` and ``p_moving``, one per landmark.

    Args:
        mapped_fixed_points: ``phi`` evaluated at the fixed landmarks, (N, 3) LPS mm.
        moving_points: the matching moving landmarks, (N, 3) LPS mm, same order.

    Returns:
        (N,) float64 errors in mm.
    """
    a = _as_points(mapped_fixed_points, "mapped_fixed_points")
    b = _as_points(moving_points, "moving_points")
    if a.shape != b.shape:
        raise ValueError(f"expected the same number of points, found {a.shape[0]} and {b.shape[0]}")
    return np.linalg.norm(a - b, axis=1)


def tre_summary(errors: np.ndarray) -> dict[str, float]:
    """Mean, median, 90th percentile (linear interpolation) and max of landmark errors (mm).

    An empty array gives NaN for every statistic.
    """
    e = np.asarray(errors, dtype=np.float64).ravel()
    if e.size == 0:
        nan = float("nan")
        return {"mean": nan, "median": nan, "p90": nan, "max": nan}
    return {
        "mean": float(e.mean()),
        "median": float(np.median(e)),
        "p90": float(np.percentile(e, 90)),
        "max": float(e.max()),
    }


def brats_mee(errors: np.ndarray) -> float:
    """BraTS-Reg median Euclidean error of one case (mm): the median of its landmark errors."""
    e = np.asarray(errors, dtype=np.float64).ravel()
    return float(np.median(e)) if e.size else float("nan")


def robustness(errors: np.ndarray, errors_before: np.ndarray) -> float:
    """BraTS-Reg robustness of one case: share of landmarks whose error went down.

    A landmark counts as improved when its error after registration is strictly
    smaller than with no registration (``errors_before``, i.e. ``tre(p_fixed, p_moving)``).
    Returns a fraction in [0, 1] (NaN for no landmarks).
    """
    e = np.asarray(errors, dtype=np.float64).ravel()
    e0 = np.asarray(errors_before, dtype=np.float64).ravel()
    if e.shape != e0.shape:
        raise ValueError(f"expected errors of the same length, found {e.size} and {e0.size}")
    if e.size == 0:
        return float("nan")
    return float(np.mean(e < e0))
