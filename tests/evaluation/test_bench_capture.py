"""``medreg bench capture``: the sweep, the motions and the moved pairs (landmarks exact after the motion)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from medreg.evaluation.bench_capture import DIRECTION, motion_matrix, motions, move_case, write_rows
from medreg.geometry import Grid
from medreg.io.landmarks import Landmarks, read_brats_csv, write_brats_csv
from medreg.io.nifti import load_volume, save_volume


def test_the_sweep_and_its_motions():
    m = motions()
    assert len(m) == 16 and m[0] == ("translation", 0.0, 0.0) and ("combined", 30.0, 30.0) in m
    centre = np.array([10.0, -20.0, 5.0])
    a = motion_matrix(0.0, 20.0, centre)
    assert np.allclose(a[:3, :3] @ centre + a[:3, 3], centre)  # rotation about the centre
    assert np.isclose(np.degrees(np.arccos((np.trace(a[:3, :3]) - 1) / 2)), 20.0)
    b = motion_matrix(15.0, 0.0, centre)
    assert np.allclose(b[:3, 3], 15.0 * DIRECTION) and np.isclose(np.linalg.norm(b[:3, 3]), 15.0)


def test_moved_landmarks_sit_on_the_moved_anatomy(tmp_path):
    grid = Grid(np.diag([-2.0, -2.0, 2.0, 1.0]) @ np.array([[1, 0, 0, -16], [0, 1, 0, -16], [0, 0, 1, -16], [0, 0, 0, 1.0]]),
                (32, 32, 32))
    spots = np.array([[6.0, -4.0, 3.0], [-8.0, 5.0, -6.0]])
    p = grid.index_to_lps(np.indices(grid.shape).reshape(3, -1).T.astype(float))
    img = sum(np.exp(-np.sum((p - s) ** 2, 1) / (2 * 2.5 ** 2)) for s in spots).reshape(grid.shape).astype(np.float32)
    moving = save_volume(tmp_path / "m.nii.gz", img, grid.affine)
    lm = write_brats_csv(tmp_path / "m.csv", Landmarks(["a", "b"], spots))
    case = SimpleNamespace(fixed={"t1": moving}, moving={"t1": moving}, fixed_landmarks=lm, moving_landmarks=lm)
    matrix = motion_matrix(6.0, 12.0, np.zeros(3))
    files = move_case(case, matrix, tmp_path / "moved")
    moved = read_brats_csv(files["moving_landmarks"]).points
    np.testing.assert_allclose(moved, spots @ matrix[:3, :3].T + matrix[:3, 3], atol=1e-4)
    vol = load_volume(files["moving"]["t1"])
    for q in moved:  # the blob peaks moved with the landmarks (within a voxel)
        near = np.linalg.norm(p - q, axis=1) < 2.5
        peak = p[np.argmax(np.where(near, vol.array.reshape(-1), -1))]
        assert np.linalg.norm(peak - q) < 2.0
    write_rows([{"kind": "translation", "mm": 0.0, "degrees": 0.0, "method": "m", "tre_mean": 1.0, "tre_max": 2.0,
                 "seconds": 1.0, "global_seconds": 0.0}], tmp_path / "out")
    assert (tmp_path / "out" / "capture.csv").is_file() and (tmp_path / "out" / "capture.png").stat().st_size > 1000


def test_a_dirlab_case_becomes_nifti_and_lps_csv_with_the_same_geometry(tmp_path):
    from medreg.evaluation.bench_capture import case_files
    from medreg.io.dirlab import RawGeometry, dirlab_affine, read_dirlab_img, write_dirlab_img
    from medreg.io.landmarks import read_dirlab_txt, write_dirlab_txt

    geom = RawGeometry(shape=(12, 10, 6), spacing=(1.5, 1.5, 2.5))
    rng = np.random.default_rng(0)
    paths = {}
    for side in ("fixed", "moving"):
        arr = rng.integers(-1000, 200, size=geom.shape).astype(np.int16)
        paths[side] = write_dirlab_img(tmp_path / f"{side}.img", arr)
        pts = Landmarks(["1", "2"], np.array([[3.0, 4.5, 5.0], [9.0, 1.5, 10.0]]) + (side == "moving"))
        paths[f"{side}_lm"] = write_dirlab_txt(tmp_path / f"{side}.txt", pts, dirlab_affine(geom))
    case = SimpleNamespace(id="case1", raw_geometry=geom, fixed={"ct": paths["fixed"]}, moving={"ct": paths["moving"]},
                           fixed_landmarks=paths["fixed_lm"], moving_landmarks=paths["moving_lm"])
    files = case_files(case, tmp_path / "case")
    for side in ("fixed", "moving"):
        vol = load_volume(files.__dict__[side]["ct"])
        np.testing.assert_array_equal(vol.array, read_dirlab_img(paths[side], geom).array)
        np.testing.assert_allclose(vol.affine, dirlab_affine(geom))
        lm = read_brats_csv(files.__dict__[f"{side}_landmarks"])
        np.testing.assert_allclose(lm.points, read_dirlab_txt(paths[f"{side}_lm"], dirlab_affine(geom)).points, atol=1e-4)
    brain = SimpleNamespace(raw_geometry=None)
    assert case_files(brain, tmp_path / "x") is brain and not (tmp_path / "x").exists()
