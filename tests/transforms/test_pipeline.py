"""The MONAI pair pipeline: intensity, shapes, channels, cropping, raw .img input."""

from __future__ import annotations

import numpy as np
import pytest

from medreg.errors import InputError
from medreg.io.nifti import Volume, save_volume
from medreg.transforms.config import config_from_dict
from medreg.transforms.pipeline import build_pair_pipeline, preprocess_pair, read_source

CENTRE = np.array([0.0, 0.0, 10.0])
# LPS header (voxel axes along L, P, S), 1 x 1 x 2 mm, LPS origin (-16, -16, -10)
AFFINE = np.array([[-1.0, 0, 0, 16], [0, -1, 0, 16], [0, 0, 2, -10], [0, 0, 0, 1]])
SHAPE = (32, 32, 20)


def _config(**kw):
    base = dict(modalities=["t1"], intensity=dict(kind="mri_percentile"), shape_multiple=8, foreground_threshold=0.02)
    base.update(kw)
    return config_from_dict(base)


@pytest.fixture
def vol(h):
    return h.make_volume(AFFINE, SHAPE, CENTRE, sigma=5.0)


def test_mri_percentiles_scale_each_channel_to_unit_range(vol):
    bright = Volume(vol.array * 7.0 + 3.0, vol.affine)
    pair = preprocess_pair([vol, bright], [vol, bright], _config(modalities=["t1", "t2"], crop_foreground=False))
    assert pair.fixed.shape[0] == 2 and pair.fixed.dtype == np.float32
    for c in range(2):
        assert pair.fixed[c].min() == pytest.approx(0.0, abs=1e-6)
        assert pair.fixed[c].max() == pytest.approx(1.0, abs=1e-6)
    # channel-wise: the affinely brightened channel normalises to the same image
    np.testing.assert_allclose(pair.fixed[0], pair.fixed[1], atol=1e-5)
    # the 99.5th percentile is clipped: more than 0.4 % of voxels are exactly 1
    assert (pair.fixed[0] >= 1.0 - 1e-6).mean() > 0.004


def test_ct_window_maps_hu_to_unit_range():
    hu = np.full(SHAPE, -2048.0, dtype=np.float32)  # outside the field of view
    hu[4:28, 4:28, 2:18] = -1000.0
    hu[8:12, 8:12, 5:10] = -400.0
    hu[14:18, 14:18, 5:10] = 200.0
    hu[20:24, 20:24, 5:10] = 1500.0
    ct = Volume(hu, AFFINE)
    cfg = _config(modalities=["ct"], intensity=dict(kind="ct_window", hu_min=-1000.0, hu_max=200.0), crop_foreground=False)
    out = preprocess_pair([ct], [ct], cfg).fixed[0]
    values = set(np.round(np.unique(out), 6))
    assert values == {0.0, 0.5, 1.0}


def test_shape_is_a_multiple_and_crop_shrinks_it(vol):
    full = preprocess_pair([vol], [vol], _config(crop_foreground=False, shape_multiple=16)).fixed
    assert all(s % 16 == 0 for s in full.shape[1:])
    assert full.shape[1:] == (32, 32, 32)  # RAS, same spacing: 32x32x20 padded to 32
    cropped = preprocess_pair([vol], [vol], _config(shape_multiple=8, crop_margin=0, foreground_threshold=0.3)).fixed
    assert all(s % 8 == 0 for s in cropped.shape[1:])
    assert np.prod(cropped.shape) < np.prod(full.shape)
    # the blob is whole: nothing above the threshold was cut away
    assert cropped[0][cropped[0] > 0.3].sum() == pytest.approx(full[0][full[0] > 0.3].sum(), rel=1e-5)


def test_max_shape_limits_the_output(vol):
    out = preprocess_pair([vol], [vol], _config(crop_foreground=False, max_shape=[16, 24, 8])).fixed
    assert out.shape[1:] == (16, 24, 8)


def test_target_shape_gives_exactly_that_shape(vol):
    for target in ([48, 24, 16], [16, 16, 32]):  # pads some axes, crops others
        pair = preprocess_pair([vol], [vol], _config(target_shape=target))
        assert pair.fixed.shape[1:] == tuple(target) == pair.fixed_geometry.shape


def test_crop_keeps_landmarks_in_background(vol):
    far = np.array([[-14.0, -14.0, -8.0]])  # LPS, a corner far from the blob
    cfg = _config(crop_margin=0, foreground_threshold=0.5)
    without = preprocess_pair([vol], [vol], cfg)
    ijk = without.fixed_geometry.lps_to_voxel(far)[0]
    assert np.any(ijk < 0) or np.any(ijk > np.array(without.fixed_geometry.shape) - 1)
    kept = preprocess_pair([vol], [vol], cfg, fixed_points=far)
    ijk = kept.fixed_geometry.lps_to_voxel(far)[0]
    assert np.all(ijk >= 0) and np.all(ijk <= np.array(kept.fixed_geometry.shape) - 1)


def test_moving_on_another_grid_is_resampled_onto_fixed_grid(vol, h):
    other = h.make_volume(h.permuted_ras_header((1.5, 0.8, 1.3), (-20, -20, -12)), (30, 50, 30), CENTRE + [2.0, 1.0, -3.0], sigma=5.0)
    pair = preprocess_pair([vol], [other], _config(spacing=[1.0, 1.0, 1.0], crop_foreground=False,
                                                    intensity=dict(kind="mri_percentile", lower=0.0, upper=100.0)))
    geo = pair.moving_geometry
    assert pair.moving.shape == pair.fixed.shape
    expected = h.blob(h.world_grid(geo.affine, geo.shape), CENTRE + [2.0, 1.0, -3.0], 5.0).reshape(geo.shape)
    sel = expected > 0.2
    assert np.abs(pair.moving[0][sel] / pair.moving.max() - expected[sel] / expected.max()).max() < 0.03


def test_channels_on_different_grids_are_rejected(vol):
    shifted = Volume(vol.array, vol.affine + _shift(5.0))
    with pytest.raises(InputError, match="expected every channel on the grid"):
        preprocess_pair([vol, shifted], [vol, vol], _config(modalities=["t1", "t2"]))


def _shift(mm: float) -> np.ndarray:
    s = np.zeros((4, 4))
    s[0, 3] = mm
    return s


def test_wrong_channel_count_is_an_error(vol):
    with pytest.raises(ValueError, match="expected 2 fixed channels"):
        preprocess_pair([vol], [vol], _config(modalities=["t1", "t2"]))


def test_nifti_and_raw_img_sources(tmp_path, vol):
    from medreg.io.dirlab import RawGeometry, dirlab_affine, write_dirlab_img

    path = save_volume(tmp_path / "a.nii.gz", vol.array, vol.affine)
    loaded = read_source(path)
    np.testing.assert_allclose(loaded.affine, vol.affine)
    geom = RawGeometry((32, 32, 20), (1.1, 1.1, 2.5))
    raw = write_dirlab_img(tmp_path / "case1_T00_s.img", np.round(vol.array).astype(np.int16))
    img = read_source(raw, raw_geometry=geom)
    assert img.array.dtype == np.float32 and img.shape == (32, 32, 20)
    np.testing.assert_allclose(img.affine, dirlab_affine(geom))
    with pytest.raises(InputError, match="raw .img without"):
        read_source(raw)


def test_pipeline_is_made_of_monai_dictionary_transforms():
    from monai.transforms import CropForegroundd, DivisiblePadd, Orientationd, ResampleToMatchd, Spacingd

    pipe = build_pair_pipeline(_config(spacing=[1.0, 1.0, 1.0]))
    kinds = {type(t) for t in pipe.transforms}
    kinds |= {type(getattr(t, attr)) for t in pipe.transforms for attr in ("spacing", "resample") if hasattr(t, attr)}
    assert {Orientationd, Spacingd, ResampleToMatchd, CropForegroundd, DivisiblePadd} <= kinds


def test_same_grid_is_not_resampled(vol):
    """Moving already on the fixed grid, spacing already right: passed through exactly (no interpolation blur)."""
    cfg = _config(spacing=[1.0, 1.0, 2.0], crop_foreground=False, shape_multiple=4,
                  intensity=dict(kind="mri_percentile", lower=0.0, upper=100.0))
    pair = preprocess_pair([vol], [vol], cfg)
    np.testing.assert_allclose(pair.fixed, pair.moving, atol=1e-7)
    ras = vol.array[::-1, ::-1, :]  # LPS -> RAS reorientation is a flip of the first two axes
    np.testing.assert_allclose(pair.fixed[0], ras / ras.max(), atol=1e-6)
