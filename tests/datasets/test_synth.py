"""Synthesis tools of the demo datasets, on small volumes with analytic answers."""

from __future__ import annotations

import numpy as np
import pytest

from medreg.datasets import synth
from medreg.errors import InputError

SHAPE = (23, 30, 17)  # odd, anisotropic, not divisible by the node step


def _smooth_map(seed: int = 0, rms: float = 1.5, step: float = 4.0) -> synth.GridMap:
    rng = np.random.default_rng(seed)
    nodes = synth.node_shape(SHAPE, step)
    disp = synth.smooth_random_field(rng, nodes, 1.0, rms)
    return synth.GridMap(synth.node_positions(SHAPE, nodes) + disp, SHAPE)


def test_node_grid_spans_the_image_corner_to_corner():
    nodes = synth.node_shape(SHAPE, 4.0)
    pos = synth.node_positions(SHAPE, nodes)
    assert pos.shape == (3, *nodes)
    for axis, n in enumerate(SHAPE):
        line = np.moveaxis(pos[axis], axis, 0)[:, 0, 0]
        assert line[0] == 0.0 and line[-1] == n - 1
        assert np.all(np.diff(line) <= 4.0 + 1e-12)


def test_dense_map_equals_point_map_at_voxel_centres():
    gmap = _smooth_map()
    dense = gmap.dense()
    assert dense.shape == (3, *SHAPE) and dense.dtype == np.float32
    vox = np.argwhere(np.ones(SHAPE, bool))[::7]
    assert np.abs(gmap(vox) - dense.reshape(3, -1).T[::7]).max() < 1e-4


def test_affine_map_is_reproduced_exactly_and_inverted():
    matrix = synth.random_affine(np.random.default_rng(3), max_rot_deg=10, max_shift=3, max_scale=0.1)
    centre = np.array(SHAPE) / 2.0
    gmap = synth.GridMap.from_function(lambda p: synth.apply_affine_about(matrix, p, centre), SHAPE, 5.0)
    pts = np.random.default_rng(1).uniform(0, 16, (50, 3))
    expected = synth.apply_affine_about(matrix, pts, centre)
    assert np.abs(gmap(pts) - expected).max() < 1e-9  # trilinear reproduces affine maps
    assert np.allclose(gmap.jacobian_det_nodes(), np.linalg.det(matrix[:3, :3]), rtol=1e-9)
    inv = gmap.inverse(expected)
    analytic = np.linalg.solve(matrix[:3, :3], (expected - centre - matrix[:3, 3]).T).T + centre
    assert np.abs(inv - analytic).max() < 1e-6


def test_point_inverse_of_a_smooth_map_is_below_a_thousandth_of_a_voxel():
    gmap = _smooth_map(seed=2, rms=2.0)
    pts = np.random.default_rng(4).uniform(1, 15, (200, 3))
    back = gmap.inverse(gmap(pts))
    assert np.abs(back - pts).max() < 1e-3
    assert np.linalg.norm(gmap(back) - gmap(pts), axis=1).max() < 1e-6


def test_point_inverse_raises_when_it_cannot_converge():
    def fold(p: np.ndarray) -> np.ndarray:  # not invertible: |x| in the first axis
        q = p.copy()
        q[:, 0] = np.abs(p[:, 0]) + 1.0
        return q

    with pytest.raises(synth.InversionError):
        synth.invert_points(fold, np.zeros((1, 3)), max_iter=10)


def test_dense_inverse_of_a_displacement_field_is_within_0_01_mm():
    from scipy import ndimage as ndi

    spacing = np.array([1.2, 0.8, 2.5])
    rng = np.random.default_rng(5)
    nodes = synth.node_shape(SHAPE, 4.0)
    gmap = synth.GridMap(synth.node_positions(SHAPE, nodes) + synth.smooth_random_field(rng, nodes, 2.0, 1.5), SHAPE)
    disp = gmap.dense().astype(np.float64) - np.indices(SHAPE)
    inv, residual = synth.invert_displacement(disp)
    grid = np.indices(SHAPE, dtype=np.float64)
    pre = grid + inv
    inside = np.all((pre >= 0) & (pre <= (np.array(SHAPE) - 1)[:, None, None, None]), axis=0)
    assert inside.mean() > 0.8
    # T(T^-1(y)) = y in mm (anisotropic spacing), T = trilinear interpolation of the voxel field
    t_of_pre = pre + np.stack([ndi.map_coordinates(d, pre, order=1) for d in disp])
    err_mm = np.linalg.norm((t_of_pre - grid) * spacing[:, None, None, None], axis=0)[inside]
    assert err_mm.max() < 0.01
    assert residual < 0.01 / spacing.max()
    # and it agrees with the Newton inverse of the underlying node map (up to voxel interpolation)
    pts = grid.reshape(3, -1).T[inside.ravel()][::29]
    assert np.abs(gmap.inverse(pts) - pre.reshape(3, -1).T[inside.ravel()][::29]).max() < 0.05


def test_mass_effect_profile_peak_direction_and_bijectivity():
    centre = np.array([10.0, -5.0, 3.0])
    direction = np.array([0.6, 0.8, 0.0])
    r = np.linspace(0.0, 100.0, 2001)
    pts = centre + r[:, None] * direction
    pulled = synth.mass_effect_pullback(pts, centre, peak_mm=8.0, radius_mm=20.0)
    d = r - np.linalg.norm(pulled - centre, axis=1)  # how far each point is pulled toward the centre
    assert d[0] == pytest.approx(0.0, abs=1e-12)
    assert d.max() == pytest.approx(8.0, rel=1e-4)
    assert r[np.argmax(d)] == pytest.approx(20.0, abs=0.05)
    assert d[-1] < 0.01  # decays far away
    new_r = np.linalg.norm(pulled - centre, axis=1)
    assert np.all(np.diff(new_r) > 0)  # radial map strictly increasing: no folding
    assert np.allclose(np.cross(pulled[1:] - centre, direction), 0, atol=1e-9)  # purely radial
    with pytest.raises(ValueError):
        synth.mass_effect_pullback(pts, centre, peak_mm=10.0, radius_mm=15.0)


def test_smooth_random_field_is_deterministic_and_scaled():
    a = synth.smooth_random_field(np.random.default_rng(7), (12, 10, 9), 1.5, 2.5)
    b = synth.smooth_random_field(np.random.default_rng(7), (12, 10, 9), 1.5, 2.5)
    c = synth.smooth_random_field(np.random.default_rng(8), (12, 10, 9), 1.5, 2.5)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.sqrt((a ** 2).mean(axis=(1, 2, 3))) == pytest.approx([2.5] * 3, rel=1e-9)


def test_random_affine_bounds():
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = synth.random_affine(rng, max_rot_deg=3, max_shift=2, max_scale=0.02)
        assert np.all(np.abs(m[:3, 3]) <= 2)
        assert 0.98 ** 3 <= np.linalg.det(m[:3, :3]) <= 1.02 ** 3
        assert np.array_equal(m[3], [0, 0, 0, 1])


def test_bias_field_and_rician_noise():
    rng = np.random.default_rng(0)
    bias = synth.bias_field(rng, SHAPE, step=4.0, sigma_nodes=1.0, strength=0.1)
    assert bias.shape == SHAPE and bias.min() > 0.5 and bias.max() < 2.0
    assert abs(float(np.log(bias).mean())) < 0.1
    image = np.full(SHAPE, 100.0, dtype=np.float32)
    mask = np.zeros(SHAPE, bool)
    mask[5:15, 5:20, 3:12] = True
    noisy = synth.rician_noise(rng, image, 5.0, mask)
    assert np.array_equal(noisy[~mask], image[~mask])
    assert 4.0 < noisy[mask].std() < 6.0 and noisy[mask].min() >= 0


def test_forstner_prefers_corners_and_pick_maxima_keeps_distance():
    img = np.zeros((40, 40, 40), np.float32)
    img[10:30, 10:30, 10:30] = 100.0  # a cube: 8 corners, edges and faces
    measure = synth.forstner_measure(img, (1.0, 1.0, 1.0), sigma_grad_mm=1.0, sigma_int_mm=1.5)
    corner, edge, face = measure[10, 10, 10], measure[10, 10, 20], measure[10, 20, 20]
    assert corner > 5 * edge and edge >= face
    pts = synth.pick_maxima(measure, np.ones(img.shape, bool), (1.0, 1.0, 1.0), min_distance_mm=6.0, max_points=8)
    assert len(pts) == 8
    near_corner = np.abs(np.abs(pts - 19.5) - 10.0).max()
    assert near_corner <= 2.0
    d = np.linalg.norm(pts[:, None] - pts[None], axis=2) + np.eye(8) * 1e9
    assert d.min() >= 6.0


def test_block_mean():
    a = np.arange(5 * 4 * 3, dtype=np.float32).reshape(5, 4, 3)
    out = synth.block_mean(a, (2, 2, 1))
    assert out.shape == (2, 2, 3)
    assert out[0, 0, 0] == pytest.approx(a[:2, :2, 0].mean())


def test_build_folder_is_atomic_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "data"

    def good(folder):
        (folder / "a.txt").write_text("new")

    def bad(folder):
        (folder / "half.txt").write_text("x")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        synth.build_folder(out, bad)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind
    synth.build_folder(out, good)
    assert (out / "a.txt").read_text() == "new"
    with pytest.raises(InputError, match="refusing to overwrite"):
        synth.build_folder(out, good)
    (out / "a.txt").write_text("old")
    synth.build_folder(out, good, overwrite=True)
    assert (out / "a.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def _square(source: int, x: int) -> int:
    return source + x * x


def test_run_jobs_parallel_equals_serial():
    jobs = [(1,), (2,), (3,)]
    assert synth.run_jobs(_square, 10, jobs, workers=1) == [11, 14, 19]
    assert synth.run_jobs(_square, 10, jobs, workers=2) == [11, 14, 19]
