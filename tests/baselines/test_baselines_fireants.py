"""FireANTs (optional, installed with --no-deps): direction and the LPS mm convention."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medreg.baselines.fireants import FireantsBaseline
from medreg.geometry.frames import voxel_to_lps

pytest.importorskip(
    "fireants",
    reason="FireANTs is optional and not an extra (it pins an old SimpleITK): pip install --no-deps fireants==1.5.0",
)

# fewer steps than the benchmark (FIREANTS_DEFAULTS): a quick check of the convention on 32^3 voxels
QUICK = {
    "affine": {"scales": [2, 1], "iterations": [100, 50]},
    "greedy": {"scales": [2, 1], "iterations": [100, 50]},
}


def test_fireants_recovers_a_translation_in_mm_on_an_oblique_anisotropic_grid(anisotropic_pair, tmp_path):
    fixed, moving, affine, shift = anisotropic_pair
    method = FireantsBaseline(QUICK["affine"], QUICK["greedy"], device="cpu")
    result = method.register(fixed, moving, threads=2, seed=0, workdir=tmp_path / "work")
    np.testing.assert_allclose(result.fixed_affine, affine, atol=1e-4)
    assert result.displacement_lps.shape == (32, 32, 32, 3)

    # the shift is (3, 2, 0) voxels; in mm it is M_lps @ shift with spacing (1.0, 1.5, 2.0): 4.24 mm
    expected_u = (voxel_to_lps(affine, shift[None]) - voxel_to_lps(affine, np.zeros((1, 3))))[0]
    centre = np.array([[12.0, 10.0, 14.0], [20.0, 18.0, 12.0], [16.0, 22.0, 20.0], [9.0, 16.0, 22.0], [22.0, 9.0, 18.0]])
    errors = np.linalg.norm(result.map_points(voxel_to_lps(affine, centre)) - voxel_to_lps(affine, centre + shift), axis=1)
    assert errors.max() < 0.5, errors  # vs 4.24 mm with no registration, 8.5 mm if the direction flipped
    # FireANTs' affine stage (lr 3e-3 on a translation in mm) does not reach the shift alone here; the
    # greedy stage completes it where the image has features, so u is checked on the blobs, not on the
    # empty background (where a deformable method has nothing to match)
    bright = np.asarray(nib.load(str(fixed)).dataobj) > 300.0  # the blobs' cores (peak 1000)
    mean_u = result.displacement_lps[bright].mean(axis=0)
    np.testing.assert_allclose(mean_u, expected_u, atol=0.5)

    # medreg's conversion agrees with FireANTs' own ANTs-format export of the same transform
    import SimpleITK as sitk

    warp = sitk.ReadImage(result.extra["warp_file"])
    by_fireants = sitk.GetArrayFromImage(warp).transpose(2, 1, 0, 3)  # ITK (z, y, x, 3) -> (X, Y, Z, 3)
    np.testing.assert_allclose(result.displacement_lps, by_fireants, atol=1e-3)

    assert result.extra["device"] == "cpu" and result.extra["torch_threads"] == 2
    assert result.threads == 2 and result.seconds > 0 and result.peak_rss_mb > 0
    assert "worker" in result.extra["peak_rss_source"]
