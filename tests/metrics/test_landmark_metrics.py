"""Landmark metrics against hand-computed values (docs/reference.md §4)."""

import numpy as np
import pytest

from medreg.metrics import brats_mee, robustness, tre, tre_summary


def test_tre_of_known_translation_in_mm():
    fixed = np.array([[0.0, 0.0, 0.0], [10.0, -5.0, 2.5], [1.0, 2.0, 3.0]])
    shift = np.array([3.0, 4.0, 0.0])  # |shift| = 5 mm
    moving = fixed + shift
    # no registration: error is the translation length
    np.testing.assert_allclose(tre(fixed, moving), [5.0, 5.0, 5.0])
    # a transform that recovers the translation exactly
    np.testing.assert_allclose(tre(fixed + shift, moving), [0.0, 0.0, 0.0], atol=1e-12)
    # one that recovers only the x part leaves 4 mm
    np.testing.assert_allclose(tre(fixed + [3.0, 0.0, 0.0], moving), [4.0, 4.0, 4.0])


def test_tre_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same number"):
        tre(np.zeros((3, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        tre(np.zeros((3, 2)), np.zeros((3, 2)))


def test_tre_summary_hand_computed():
    s = tre_summary(np.array([1.0, 2.0, 3.0, 4.0, 10.0]))
    assert s["mean"] == pytest.approx(4.0)
    assert s["median"] == pytest.approx(3.0)
    # linear percentile: position 0.9 * 4 = 3.6 -> 4 + 0.6 * (10 - 4) = 7.6
    assert s["p90"] == pytest.approx(7.6)
    assert s["max"] == pytest.approx(10.0)
    assert all(np.isnan(v) for v in tre_summary(np.array([])).values())


def test_brats_mee_and_robustness_crafted_case():
    before = np.array([4.0, 4.0, 2.0, 1.0, 3.0])
    after = np.array([1.0, 4.0, 0.5, 2.0, 2.9])
    # median of [0.5, 1, 2, 2.9, 4]
    assert brats_mee(after) == pytest.approx(2.0)
    # improved: 4->1, 2->0.5, 3->2.9 ; not improved: 4->4 (equal), 1->2 (worse)
    assert robustness(after, before) == pytest.approx(3 / 5)
    assert robustness(before, before) == 0.0
    with pytest.raises(ValueError):
        robustness(after, before[:3])
