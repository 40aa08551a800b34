"""The held-out subject's preparation: exact regridding, hole filling, and (slow) the real S1."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medreg.datasets import subjects
from medreg.datasets.demo_brain import brats_affine


def _lia_affine(n: int) -> np.ndarray:
    # FreeSurfer-conformed: i -> L, j -> I, k -> A (S1's raw.nii.gz)
    return np.array([[-1, 0, 0, n / 2], [0, 0, 1, -n / 2], [0, -1, 0, n / 2], [0, 0, 0, 1]], dtype=float)


def test_to_brats_grid_is_an_exact_reordering_that_keeps_world_directions():
    n = 20
    affine = _lia_affine(n)
    ijk = np.indices((n, n, n)).reshape(3, -1).T.astype(float)
    ras = (ijk @ affine[:3, :3].T + affine[:3, 3]).T.reshape(3, n, n, n).astype(np.float32)
    mask = np.zeros((n, n, n), dtype=bool)
    mask[3:15, 5:12, 2:18] = True
    rng = np.random.default_rng(0)
    image = rng.random((n, n, n)).astype(np.float32) * mask
    shape = (24, 24, 20)
    *world, out_img, out_mask = subjects.to_brats_grid([*ras, image, mask.astype(np.float32)], affine, mask, shape=shape)
    inside = out_mask > 0
    # no interpolation: the masked values are the same multiset
    assert np.array_equal(np.sort(out_img[inside]), np.sort(image[mask]))
    # BraTS-Reg axes: i towards L (R decreases by 1 mm a voxel), j towards P (A decreases), k towards S
    r, a, s_ = (np.where(inside, w, np.nan) for w in world)
    assert np.allclose(np.diff(r, axis=0)[inside[1:] & inside[:-1]], -1.0)
    assert np.allclose(np.diff(a, axis=1)[inside[:, 1:] & inside[:, :-1]], -1.0)
    assert np.allclose(np.diff(s_, axis=2)[inside[:, :, 1:] & inside[:, :, :-1]], 1.0)
    # the brain's box is centred in the grid
    out_ijk = np.argwhere(inside)
    lo, hi = out_ijk.min(0), out_ijk.max(0)
    assert np.all(np.abs((lo + hi) / 2 - (np.array(shape) - 1) / 2) <= 1)


def test_to_brats_grid_refuses_what_does_not_fit_or_is_oblique():
    n = 20
    mask = np.ones((n, n, n), dtype=bool)
    with pytest.raises(Exception, match="does not fit"):
        subjects.to_brats_grid([mask.astype(np.float32)], _lia_affine(n), mask, shape=(10, 30, 30))
    oblique = _lia_affine(n)
    oblique[:3, :3] = [[0.8, 0.6, 0], [-0.6, 0.8, 0], [0, 0, 1]]
    with pytest.raises(Exception, match="axis-aligned"):
        subjects.to_brats_grid([mask.astype(np.float32)], oblique, mask)


def test_fill_holes_fills_an_enclosed_ventricle_but_not_the_outside():
    mask = np.zeros((20, 20, 20), dtype=bool)
    mask[2:18, 2:18, 2:18] = True
    mask[8:12, 8:12, 8:12] = False  # enclosed
    mask[8:12, 8:12, 15:20] = False  # open to the outside through the top
    filled = subjects.fill_holes(mask)
    assert filled[8:12, 8:12, 8:12].all()
    assert not filled[8:12, 8:12, 18:20].any()
    assert filled.sum() > mask.sum()


@pytest.mark.slow
@pytest.mark.network
@pytest.mark.ants
def test_real_s1_is_a_whole_brain_on_the_brats_grid():
    """About 75 s cold (pip download of pycortex, ANTs SyN at 2 mm, Atropos), then cached."""
    arrays = subjects.load_s1()
    info = json.loads((subjects.s1_root() / "info.json").read_text())
    assert info["split"] == "test"
    assert arrays["t1"].shape == subjects.BRATS_SHAPE
    mask = arrays["mask"]
    assert 1100 < mask.sum() / 1000 < 1800  # ml: an adult brain with its CSF
    from scipy import ndimage as ndi

    assert ndi.binary_fill_holes(mask).sum() == mask.sum()  # no enclosed cavity left (the ventricles are in)
    wm, gm = arrays["wm"] > 0.5, arrays["gm"] > 0.5
    assert np.median(arrays["t1"][wm]) == pytest.approx(subjects.WM_MEDIAN, rel=0.02)
    assert np.median(arrays["t1"][gm]) < np.median(arrays["t1"][wm])
    assert not arrays["t1"][~mask].any()


def test_threshold_lungs_keeps_enclosed_air_not_the_outside_or_specks():
    ct = np.full((40, 40, 20), -1000, dtype=np.int16)  # air around the body
    ct[5:35, 5:35, :] = 40  # the body
    ct[8:18, 10:30, 2:18] = -850  # right lung
    ct[22:32, 10:30, 2:18] = -850  # left lung
    ct[20, 20, 10] = -900  # a speck of gas
    lungs = subjects.threshold_lungs(ct)
    assert lungs[8:18, 10:30, 2:18].all() and lungs[22:32, 10:30, 2:18].all()
    assert not lungs[0].any() and not lungs[20, 20, 10]
    assert lungs.sum() == 2 * 10 * 20 * 16
