"""Dice against hand-computed values."""

import numpy as np
import pytest

from medreg.metrics import dice, mean_dice


def test_dice_hand_computed():
    a = np.zeros((4, 4, 1), dtype=np.int16)
    b = np.zeros_like(a)
    a[0:2, 0:2] = 1  # 4 voxels
    b[0:2, 0:1] = 1  # 2 voxels, both inside a
    a[3, 3] = 2
    b[2, 2] = 2  # label 2 disjoint
    scores = dice(a, b)
    assert set(scores) == {1, 2}
    assert scores[1] == pytest.approx(2 * 2 / (4 + 2))
    assert scores[2] == 0.0
    assert mean_dice(scores) == pytest.approx((2 / 3 + 0) / 2)


def test_dice_identical_and_absent_labels():
    a = np.array([[[0, 1, 1, 3]]])
    scores = dice(a, a, labels=[1, 3, 7])
    assert scores[1] == 1.0 and scores[3] == 1.0
    assert np.isnan(scores[7])
    assert mean_dice(scores) == 1.0
    with pytest.raises(ValueError, match="same shape"):
        dice(a, a[..., :2])
