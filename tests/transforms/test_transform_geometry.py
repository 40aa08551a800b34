"""Geometry tracking: preprocessed images keep the exact map back to the original world space."""

from __future__ import annotations

import numpy as np
import pytest

from medreg.transforms.config import config_from_dict
from medreg.geometry.image_geometry import ImageGeometry
from medreg.transforms.pipeline import preprocess_pair

CENTRE = np.array([10.0, -20.0, 30.0])  # LPS mm
SHIFT = np.array([3.7, -5.2, 8.1])  # moving = fixed shifted by this many mm (LPS)


def _config(**kw):
    base = dict(
        modalities=["t1"], spacing=[1.0, 1.0, 1.0],
        intensity=dict(kind="mri_percentile", lower=0.0, upper=100.0),
        shape_multiple=16, foreground_threshold=0.01,
    )
    base.update(kw)
    return config_from_dict(base)


@pytest.fixture
def fixed_lps(h):
    """Anisotropic spacing and an LPS header (voxel axes along L, P, S)."""
    return h.make_volume(h.lps_header((1.2, 0.9, 2.5), (-20, -55, 0)), (50, 70, 26), CENTRE)


@pytest.fixture
def moving_ras(h):
    """Another grid: RAS header with permuted axes and other spacings; the blob shifted by SHIFT."""
    return h.make_volume(h.permuted_ras_header((2.0, 1.0, 1.1), (-35, -20, -5)), (40, 60, 80), CENTRE + SHIFT)


def test_landmark_round_trip_is_exact(fixed_lps, moving_ras):
    pair = preprocess_pair([fixed_lps], [moving_ras], _config())
    geo = pair.fixed_geometry
    rng = np.random.default_rng(0)
    points = CENTRE + rng.uniform(-15, 15, size=(50, 3))
    back = geo.voxel_to_lps(geo.lps_to_voxel(points))
    assert np.abs(back - points).max() < 1e-4
    ijk_orig = rng.uniform(0, 20, size=(20, 3))
    assert np.abs(geo.voxel_to_original(geo.original_to_voxel(ijk_orig)) - ijk_orig).max() < 1e-6
    # The preprocessed grid really differs (RAS, 1 mm, cropped): not a trivial identity.
    assert not np.allclose(geo.affine, geo.original_affine)
    assert geo.spacing == pytest.approx((1.0, 1.0, 1.0))


def test_preprocessed_values_sit_at_their_world_positions(fixed_lps, moving_ras, h):
    """The affine tracks the data: value at a preprocessed voxel = blob value at that voxel's world point."""
    pair = preprocess_pair([fixed_lps], [moving_ras], _config())
    for arr, geo, centre in ((pair.fixed, pair.fixed_geometry, CENTRE), (pair.moving, pair.moving_geometry, CENTRE + SHIFT)):
        expected = h.blob(h.world_grid(geo.affine, geo.shape), centre).reshape(geo.shape)
        inside = expected > 0.2  # well inside both fields of view
        # percentile 0/100 scaling maps the sampled maximum (just below 1) to 1
        assert np.abs(arr[0][inside] / arr[0].max() - expected[inside] / expected.max()).max() < 0.03


def test_known_translation_is_recovered_in_mm(fixed_lps, moving_ras, h):
    pair = preprocess_pair([fixed_lps], [moving_ras], _config())
    assert pair.moving.shape == pair.fixed.shape  # the moving image is always on the fixed grid
    np.testing.assert_allclose(pair.moving_geometry.affine, pair.fixed_geometry.affine)
    found = h.centroid_lps(pair.moving, pair.moving_geometry.affine) - h.centroid_lps(pair.fixed, pair.fixed_geometry.affine)
    np.testing.assert_allclose(found, SHIFT, atol=0.05)
    # The same shift measured in preprocessed voxels is not the mm shift (voxel axes were flipped).
    geo = pair.fixed_geometry
    dv = geo.lps_to_voxel(CENTRE + SHIFT) - geo.lps_to_voxel(CENTRE)
    np.testing.assert_allclose(dv[0], [-3.7, 5.2, 8.1], atol=1e-9)


def test_pair_grid_independent_is_refused():
    from medreg.errors import ConfigError
    from medreg.transforms.config import config_from_dict

    with pytest.raises(ConfigError, match="pair_grid"):
        config_from_dict({"modalities": ["t1"], "intensity": {"kind": "mri_percentile"}, "pair_grid": "independent"})


def test_resample_back_to_original_grid(fixed_lps, moving_ras, h):
    pair = preprocess_pair([fixed_lps], [moving_ras], _config())
    geo = pair.fixed_geometry
    back = geo.resample_to_original(pair.fixed[0])
    assert back.shape == fixed_lps.shape
    orig = fixed_lps.array / fixed_lps.array.max()
    inside = orig > 0.2
    assert np.abs(back[inside] / pair.fixed.max() - orig[inside]).max() < 0.03
    # channel-first input keeps its channels
    assert geo.resample_to_original(pair.fixed).shape == (1, *fixed_lps.shape)
    # the moving image mapped to the fixed image's original grid shows the shifted blob there
    moved = geo.resample_to_original(pair.moving[0])
    expected = h.blob(h.world_grid(fixed_lps.affine, fixed_lps.shape), CENTRE + SHIFT).reshape(fixed_lps.shape)
    sel = expected > 0.2
    assert np.abs(moved[sel] / pair.moving.max() - expected[sel] / expected.max()).max() < 0.05


def test_resample_labels_nearest_keeps_label_values(fixed_lps, moving_ras):
    labels = (fixed_lps.array > 30).astype(np.float32) + (fixed_lps.array > 70)
    from medreg.io.nifti import Volume

    pair = preprocess_pair([fixed_lps], [moving_ras], _config(), fixed_label=Volume(labels, fixed_lps.affine))
    assert set(np.unique(pair.fixed_label)) == {0, 1, 2}
    back = pair.fixed_geometry.resample_to_original(pair.fixed_label, order=0)
    assert back.dtype == np.int16
    assert (back == labels).mean() > 0.98


def test_geometry_serialises_and_validates():
    geo = ImageGeometry(np.diag([-1.0, -1.0, 1.0, 1.0]), (4, 5, 6), np.eye(4), (16, 16, 16))
    again = ImageGeometry.from_dict(geo.to_dict())
    np.testing.assert_array_equal(again.original_affine, geo.original_affine)
    assert again.shape == (16, 16, 16)
    with pytest.raises(ValueError):
        ImageGeometry(np.eye(3), (4, 5, 6), np.eye(4), (16, 16, 16))
    with pytest.raises(ValueError):
        geo.resample_to_original(np.zeros((4, 5, 6)))
