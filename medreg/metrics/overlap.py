"""Overlap of label maps: Dice per label and its mean."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def dice(
    labels_a: np.ndarray, labels_b: np.ndarray, labels: Iterable[int] | None = None
) -> dict[int, float]:
    """Dice coefficient ``2|A∩B| / (|A|+|B|)`` per label.

    Args:
        labels_a, labels_b: integer label maps of the same shape (0 = background).
        labels: labels to score; by default every non-zero label present in either map.

    Returns:
        ``{label: dice}``; a label absent from both maps scores NaN (undefined).
    """
    a = np.asarray(labels_a)
    b = np.asarray(labels_b)
    if a.shape != b.shape:
        raise ValueError(f"expected label maps of the same shape, found {a.shape} and {b.shape}")
    if labels is None:
        present = np.union1d(np.unique(a), np.unique(b))
        labels = [int(v) for v in present if v != 0]
    scores: dict[int, float] = {}
    for lab in labels:
        in_a = a == lab
        in_b = b == lab
        denom = int(in_a.sum()) + int(in_b.sum())
        scores[int(lab)] = float("nan") if denom == 0 else 2.0 * int((in_a & in_b).sum()) / denom
    return scores


def mean_dice(scores: dict[int, float]) -> float:
    """Mean of the defined (non-NaN) per-label Dice scores; NaN when none is defined."""
    values = np.array([v for v in scores.values() if not np.isnan(v)], dtype=np.float64)
    return float(values.mean()) if values.size else float("nan")
