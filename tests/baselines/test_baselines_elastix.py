"""elastix through itk-elastix (optional extra): direction and LPS mm convention."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from medreg.baselines.elastix import ElastixBaseline
from medreg.geometry.frames import voxel_to_lps

itk = pytest.importorskip("itk", reason="itk-elastix is an optional extra: pip install 'medreg[baselines]'")
if importlib.util.find_spec("itk.ElastixPython") is None:
    pytest.skip("itk is installed without elastix (pip install itk-elastix==0.25.4)", allow_module_level=True)


def test_elastix_recovers_a_translation_in_mm_on_an_oblique_anisotropic_grid(anisotropic_pair):
    fixed, moving, affine, shift = anisotropic_pair
    # affine map only, fewer iterations: a quick check of the convention (the benchmark uses the defaults)
    method = ElastixBaseline(("affine",), {"MaximumNumberOfIterations": ["100"], "NumberOfResolutions": ["2"]})
    result = method.register(fixed, moving, threads=2, seed=0)
    np.testing.assert_allclose(result.fixed_affine, affine, atol=1e-4)
    expected_u = (voxel_to_lps(affine, shift[None]) - voxel_to_lps(affine, np.zeros((1, 3))))[0]
    mean_u = result.displacement_lps[8:24, 8:24, 8:24].reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose(mean_u, expected_u, atol=0.5)  # flipped direction would give -expected_u
    centre = np.array([[12.0, 10.0, 14.0], [20.0, 18.0, 12.0], [16.0, 16.0, 16.0]])
    errors = np.linalg.norm(result.map_points(voxel_to_lps(affine, centre)) - voxel_to_lps(affine, centre + shift), axis=1)
    assert errors.max() < 1.0, errors
    assert result.extra["itk_threads"] == 2
    assert result.threads == 2 and result.peak_rss_mb > 0
