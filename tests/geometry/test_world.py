"""The one world seam: grids, world transforms and the ITK warp, checked against analytic answers."""

import numpy as np
import pytest
import torch

from medreg.geometry import Grid, WorldTransform, warp_image
from medreg.spatial.transforms import Affine, DisplacementField


def _oblique(shape=(9, 10, 11), spacing=(1.0, 1.5, 2.0)):
    c, s = np.cos(0.3), np.sin(0.3)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    a = np.eye(4)
    a[:3, :3] = rot @ np.diag(spacing)
    a[:3, 3] = (-5.0, 7.0, 3.0)
    return Grid(a, shape)


def test_grid_frames_round_trip_and_lps_flip():
    g = _oblique()
    ijk = np.array([[0.0, 0, 0], [8, 9, 10], [2.5, 3.25, 4.0]])
    lps = g.index_to_lps(ijk)
    ras = ijk @ g.affine[:3, :3].T + g.affine[:3, 3]
    assert np.allclose(lps, ras * [-1, -1, 1])
    assert np.allclose(g.lps_to_index(lps), ijk)
    corner = g.normalized_from_index @ np.array([0, 0, 0, 1.0])
    assert np.allclose(corner[:3], 1.0 / np.asarray(g.shape) - 1)


def test_derived_grids_keep_world_points():
    g = _oblique((8, 8, 8), (1.0, 1.0, 1.0))
    half = g.resampled((2.0, 2.0, 2.0))
    assert half.shape == (4, 4, 4)
    # coarse voxel 0 is the centre of fine voxels 0..1
    assert np.allclose(half.index_to_lps(np.zeros((1, 3))), g.index_to_lps(np.full((1, 3), 0.5)))
    crop = g.cropped((2, 3, 1), (6, 8, 5))
    assert crop.shape == (4, 5, 4)
    assert np.allclose(crop.index_to_lps(np.zeros((1, 3))), g.index_to_lps(np.array([[2.0, 3, 1]])))
    assert g.padded(5).shape == (10, 10, 10) and np.allclose(g.padded(5).affine, g.affine)
    assert g.slice(3).shape == (8, 8, 1)


def test_translation_in_mm_on_an_oblique_anisotropic_grid():
    g = _oblique()
    t = np.array([1.5, -2.0, 0.75])
    u = np.broadcast_to(t, (*g.shape, 3)).copy()
    w = WorldTransform.from_displacement(u, g)
    pts = g.index_to_lps(np.array([[1.0, 2, 3], [4.3, 5.1, 6.7], [-3.0, 20, 2]]))  # the last is outside the grid
    assert np.allclose(w.map_points(pts), pts + t, atol=1e-4)
    other = _oblique((5, 6, 7), (2.0, 1.0, 1.0))
    assert np.allclose(w.displacement_on(other), t, atol=1e-4)


def test_network_transform_between_two_grids_maps_points_exactly():
    fixed, moving = _oblique(), _oblique((12, 8, 10), (1.2, 1.2, 1.2))
    theta = torch.tensor([[0.9, 0.05, 0.0, 0.1], [0.0, 1.1, 0.02, -0.05], [0.01, 0.0, 0.95, 0.0]])
    w = WorldTransform(Affine(theta), fixed, moving)
    p = fixed.index_to_lps(np.array([[3.2, 4.1, 5.9]]))
    x = fixed.normalized_from_lps @ np.append(p[0], 1.0)
    y = theta.double().numpy() @ x
    expect = (moving.lps_from_normalized @ np.append(y, 1.0))[:3]
    assert np.allclose(w.map_points(p)[0], expect, atol=1e-4)
    # displacement sampled at every voxel of the fixed grid equals phi at those voxels
    u = w.displacement_on(fixed)
    idx = np.array([[2, 3, 4], [8, 9, 10]])
    pts = fixed.index_to_lps(idx.astype(float))
    assert np.allclose(u[tuple(idx.T)], w.map_points(pts) - pts, atol=1e-3)


def test_displacement_via_a_coarse_grid_is_interpolated_with_border_values():
    g = Grid(np.eye(4), (8, 8, 8))
    ramp = torch.zeros(1, 3, 8, 8, 8)
    ramp[0, 0] = torch.linspace(-0.2, 0.2, 8).view(8, 1, 1)  # normalized, varies along axis 0
    w = WorldTransform(DisplacementField(ramp), g)
    coarse = g.resampled((2.0, 2.0, 2.0))
    exact = w.displacement_on(g)
    via = w.displacement_on(g, via=coarse)
    assert np.abs(exact - via)[1:-1].max() < 1e-5  # linear in x: interpolation is exact inside
    assert np.allclose(via[0], (exact[0] + exact[1]) / 2, atol=1e-6)  # border value before the first coarse centre


def test_warp_image_follows_itk_border_rule():
    g = Grid(np.diag([2.0, 2.0, 2.0, 1.0]), (4, 4, 4))
    img = np.arange(64, dtype=np.float32).reshape(4, 4, 4)
    same = warp_image(img, g, g)
    assert np.allclose(same, img)
    # shift by half a voxel (1 mm) beyond the last centre along axis 0 (LPS x = -RAS x): border value
    u = np.zeros((4, 4, 4, 3), np.float32)
    u[..., 0] = -0.9  # LPS -0.9 mm = RAS +0.9 mm: within half a voxel (1 mm) of the last centre
    out = warp_image(img, g, g, u)
    assert np.allclose(out[3], img[3])
    u[..., 0] = -1.2  # beyond the image edge: 0
    assert np.allclose(warp_image(img, g, g, u)[3], 0.0)
    lab = np.zeros((4, 4, 4), np.float32)
    lab[1:3, 1:3, 1:3] = 7
    assert set(np.unique(warp_image(lab, g, g, u, mode="nearest"))) <= {0.0, 7.0}


def test_warp_agrees_with_map_points():
    fixed = _oblique()
    moving = Grid(np.diag([1.1, 1.1, 1.1, 1.0]) @ np.array([[1, 0, 0, -8], [0, 1, 0, 0], [0, 0, 1, -2], [0, 0, 0, 1.0]]),
                  (20, 20, 20))
    img = np.random.default_rng(0).random((20, 20, 20)).astype(np.float32)
    theta = torch.tensor([[1.0, 0.0, 0.0, 0.05], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -0.03]])
    w = WorldTransform(Affine(theta), fixed, fixed)
    warped = w.warp(img, moving)
    idx = np.array([4, 5, 6])
    q = w.map_points(fixed.index_to_lps(idx[None].astype(float)))
    mi = moving.lps_to_index(q)[0]
    from scipy.ndimage import map_coordinates

    assert warped[tuple(idx)] == pytest.approx(float(map_coordinates(img, mi[:, None], order=1)[0]), abs=1e-4)


def test_affine_displacement_is_the_map_minus_identity_at_every_voxel():
    g = _oblique((5, 6, 7))
    m = np.eye(4)
    m[:3, :3] = [[1.02, 0.05, 0.0], [-0.03, 0.98, 0.01], [0.0, 0.02, 1.01]]
    m[:3, 3] = [3.0, -2.0, 1.5]
    u = g.affine_displacement(m)
    p = g.voxel_points()
    assert u.shape == (5, 6, 7, 3) and p.shape == (5, 6, 7, 3)
    np.testing.assert_allclose(p[2, 3, 4], g.index_to_lps(np.array([[2.0, 3, 4]]))[0])
    np.testing.assert_allclose(u[2, 3, 4], m[:3, :3] @ p[2, 3, 4] + m[:3, 3] - p[2, 3, 4], atol=1e-4)
