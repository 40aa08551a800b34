"""ANTs through antspyx: the forward transform's direction and the LPS mm convention (docs/reference.md §5)."""

from __future__ import annotations

import numpy as np
import pytest

from medreg.baselines import get_baseline
from medreg.errors import InputError
from medreg.geometry.frames import voxel_to_lps

pytestmark = pytest.mark.ants

# features on the axis-0 line only, so a shift along axis 0 is the single unknown
LINE_BLOBS = [((20.0, 14.0, 15.0), 2.5, 1.0), ((10.0, 18.0, 12.0), 2.0, 0.7), ((14.0, 10.0, 19.0), 3.0, 0.8)]


def test_forward_transform_maps_fixed_index_20_to_moving_index_25(tmp_path, make_pair):
    """A feature at fixed index 20 sits at moving index 25 along axis 0: phi(20) must be 25, not 15."""
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])  # LPS mm = voxel index, so mm and voxels coincide
    fixed, moving = make_pair(tmp_path, affine, (5.0, 0.0, 0.0), blobs=LINE_BLOBS)
    work = tmp_path / "work"
    result = get_baseline("ants:affine").register(fixed, moving, threads=1, seed=1, workdir=work)

    p_fixed = voxel_to_lps(affine, np.array([[20.0, 14.0, 15.0]]))
    p_moving = voxel_to_lps(affine, np.array([[25.0, 14.0, 15.0]]))
    mapped = result.map_points(p_fixed)
    np.testing.assert_allclose(mapped, p_moving, atol=0.3)
    assert result.displacement_lps[20, 14, 15, 0] == pytest.approx(5.0, abs=0.3)

    # the composed field agrees with ANTs' own point mapping of the kept forward transforms
    import ants
    import pandas as pd

    pts = pd.DataFrame(p_fixed, columns=["x", "y", "z"])
    by_ants = ants.apply_transforms_to_points(3, pts, result.extra["fwdtransforms"]).to_numpy()[:, :3]
    np.testing.assert_allclose(mapped, by_ants, atol=0.01)
    assert result.threads == 1 and result.seconds > 0 and result.peak_rss_mb > 0
    assert "worker" in result.extra["peak_rss_source"]

    # a second run into the same folder would let antspyx pick up the first run's files: refused
    with pytest.raises(InputError, match="earlier registration outputs"):
        get_baseline("ants:syn-quick").register(fixed, moving, threads=1, workdir=work)


def test_syn_quick_recovers_a_translation_in_mm_on_an_oblique_anisotropic_grid(anisotropic_pair):
    fixed, moving, affine, shift = anisotropic_pair
    result = get_baseline("ants").register(fixed, moving, threads=2, seed=0)
    np.testing.assert_allclose(result.fixed_affine, affine, atol=1e-4)
    # the shift is (3, 2, 0) voxels; in mm it is M_lps @ shift with spacing (1.0, 1.5, 2.0)
    expected_u = (voxel_to_lps(affine, shift[None]) - voxel_to_lps(affine, np.zeros((1, 3))))[0]
    assert np.linalg.norm(expected_u) == pytest.approx(np.hypot(3.0, 3.0))
    centre = np.array([[12.0, 10.0, 14.0], [20.0, 18.0, 12.0], [16.0, 22.0, 20.0], [16.0, 16.0, 16.0]])
    p_fixed = voxel_to_lps(affine, centre)
    p_moving = voxel_to_lps(affine, centre + shift)
    errors = np.linalg.norm(result.map_points(p_fixed) - p_moving, axis=1)
    assert errors.max() < 0.6, errors  # vs 4.24 mm with no registration, 8.5 mm if the direction flipped
    mean_u = result.displacement_lps[8:24, 8:24, 8:24].reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose(mean_u, expected_u, atol=0.4)
    assert result.extra["options"]["type_of_transform"] == "antsRegistrationSyNQuick[s]"
    assert result.threads == 2
