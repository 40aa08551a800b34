"""Voxel / RAS / LPS conversions, checked against hand-computed answers."""

import numpy as np
import pytest

from medreg.geometry.frames import lps_to_ras, lps_to_voxel, ras_to_lps, ras_to_voxel, voxel_to_lps, voxel_to_ras

BRATS_AFFINE = np.array([[-1.0, 0, 0, 0], [0, -1, 0, 239], [0, 0, 1, 0], [0, 0, 0, 1]])


def test_ras_lps_flip_first_two_axes():
    p = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_array_equal(ras_to_lps(p), [[-1.0, -2.0, 3.0]])
    np.testing.assert_array_equal(lps_to_ras(ras_to_lps(p)), p)


def test_brats_header_voxel_lps_both_directions():
    # CSV (LPS) value X,Y,Z is voxel (X, Y+239, Z); the 239 comes from the affine.
    xyz = np.array([[100.0, -150.0, 40.0], [0.0, -239.0, 0.0]])
    ijk = lps_to_voxel(BRATS_AFFINE, xyz)
    np.testing.assert_allclose(ijk, [[100.0, 89.0, 40.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(voxel_to_lps(BRATS_AFFINE, ijk), xyz)
    np.testing.assert_allclose(voxel_to_ras(BRATS_AFFINE, ijk), [[-100.0, 150.0, 40.0], [0.0, 239.0, 0.0]])


def test_anisotropic_oblique_round_trip():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    affine = np.eye(4)
    affine[:3, :3] = q @ np.diag([0.7, 1.3, 2.5])
    affine[:3, 3] = [10.0, -20.0, 5.0]
    ijk = rng.uniform(0, 20, size=(7, 3))
    np.testing.assert_allclose(ras_to_voxel(affine, voxel_to_ras(affine, ijk)), ijk, atol=1e-10)
    np.testing.assert_allclose(lps_to_voxel(affine, voxel_to_lps(affine, ijk)), ijk, atol=1e-10)


def test_single_point_and_bad_shape():
    assert voxel_to_ras(np.eye(4), np.array([1.0, 2.0, 3.0])).shape == (1, 3)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        voxel_to_ras(np.eye(4), np.zeros((2, 2)))
