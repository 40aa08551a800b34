"""The global stage: known rigid and affine motions recovered, its outputs read by SimpleITK and antspyx,
and pairs that do not overlap.

The pattern is a sum of Gaussians defined in world (LPS mm) coordinates; the moving image is
the pattern moved by a known map ``A`` (fixed -> moving points): ``moving(q) = pattern(A^-1 q)``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from medreg.errors import InputError
from medreg.geometry import Grid
from medreg.inference.global_stage import GlobalConfig, global_align
from medreg.io.nifti import Volume, load_volume, save_volume
from medreg.registration import RegistrationModule
from medreg.spatial import Identity

CENTRES = np.array([[5, 3, -4], [-8, 6, 5], [10, -7, 2], [-3, -9, -6], [0, 0, 0], [12, 10, -3], [-10, -2, 9]], float)


def _pattern(points_lps: np.ndarray) -> np.ndarray:
    return sum(np.exp(-np.sum((points_lps - c) ** 2, 1) / (2 * 3.5 ** 2)) * (1 + 0.25 * i) for i, c in enumerate(CENTRES))


def _image(grid: Grid, motion: np.ndarray | None = None) -> np.ndarray:
    idx = np.indices(grid.shape).reshape(3, -1).T.astype(float)
    p = grid.index_to_lps(idx)
    if motion is not None:
        inv = np.linalg.inv(motion)
        p = p @ inv[:3, :3].T + inv[:3, 3]
    return _pattern(p).reshape(grid.shape).astype(np.float32)


def _rotation(deg: float, axis) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    return Rotation.from_rotvec(np.deg2rad(deg) * axis).as_matrix()


def _motion(deg=10.0, axis=(1, 2, 0.5), shift=(5.0, -3.0, 4.0), linear=None) -> np.ndarray:
    a = np.eye(4)
    a[:3, :3] = _rotation(deg, axis) if linear is None else linear
    a[:3, 3] = shift
    return a


FIXED = Grid(np.diag([-2.0, -2.0, 2.0, 1.0]) @ np.array([[1, 0, 0, -20], [0, 1, 0, -20], [0, 0, 1, -20], [0, 0, 0, 1.0]]),
             (40, 40, 40))


def _error(found: np.ndarray, truth: np.ndarray) -> float:
    pts = np.array([[x, y, z] for x in (-12, 12) for y in (-12, 12) for z in (-12, 12)], float)
    return float(np.linalg.norm((pts @ found[:3, :3].T + found[:3, 3]) - (pts @ truth[:3, :3].T + truth[:3, 3]), axis=1).max())


@pytest.mark.parametrize("mode, truth, tol", [
    ("rigid", _motion(), 0.5),
    ("affine", _motion(linear=_rotation(8.0, (0, 1, 1)) @ np.diag([1.06, 0.95, 1.03]) + np.array([[0, 0.03, 0], [0, 0, 0], [0.02, 0, 0]])),
     0.75),
])
def test_known_motions_are_recovered(mode, truth, tol):
    """To well under half a 2 mm voxel at the corners of a 24 mm cube (the worst place for a linear error)."""
    fixed = Volume(_image(FIXED), FIXED.affine)
    moving = Volume(_image(FIXED, truth), FIXED.affine)
    res = global_align(fixed, moving, GlobalConfig(mode))
    before = _error(np.eye(4), truth)
    assert before > 4.0
    assert _error(res.matrix, truth) < tol, (res.message, _error(res.matrix, truth))
    assert res.score_end > res.score_start and res.initial_overlap


def test_the_result_is_the_optimum_not_the_centre_of_mass_start():
    """A moving scan with a smaller field of view (a third of the pattern cut off) has its centre of mass far from
    where the motion puts the fixed one's: the translation must come from the optimisation (a parameter that
    shared the start's array was once reset to it), and the cut-off part must not pull it (points mapped outside
    the moving image do not count)."""
    truth = _motion(deg=6.0, shift=(4.0, -3.0, 2.0))
    fixed = Volume(_image(FIXED), FIXED.affine)
    cut = FIXED.cropped((0, 0, 0), (26, 40, 40))
    res = global_align(fixed, Volume(_image(cut, truth), cut.affine), GlobalConfig("rigid"))
    com_only = np.eye(4)
    com_only[:3, 3] = res.centred_mm
    assert _error(com_only, truth) > 2.0
    assert _error(res.matrix, truth) < 0.5, res.message


def test_the_direction_agrees_with_ants_on_the_same_pair(tmp_path):
    """ANTs' rigid forward transform maps fixed points to moving points; so does A."""
    import ants

    truth = _motion(deg=8.0)
    fpath = save_volume(tmp_path / "f.nii.gz", _image(FIXED), FIXED.affine)
    mpath = save_volume(tmp_path / "m.nii.gz", _image(FIXED, truth), FIXED.affine)
    res = global_align(load_volume(fpath), load_volume(mpath), GlobalConfig("rigid"))
    reg = ants.registration(ants.image_read(str(fpath)), ants.image_read(str(mpath)), type_of_transform="Rigid",
                            random_seed=1)
    import pandas as pd

    pts = np.array([[6.0, -4.0, 3.0], [-7.0, 5.0, -2.0]])
    mapped = ants.apply_transforms_to_points(3, pd.DataFrame(pts, columns=["x", "y", "z"]), reg["fwdtransforms"])
    ours = pts @ res.matrix[:3, :3].T + res.matrix[:3, 3]
    truth_pts = pts @ truth[:3, :3].T + truth[:3, 3]
    assert np.abs(ours - truth_pts).max() < 0.5
    # ANTs agrees on the direction (its rigid fit on a pair this small is itself only good to ~1-3 mm)
    inverse = np.linalg.inv(truth)
    theirs = mapped[["x", "y", "z"]].to_numpy()
    assert np.linalg.norm(theirs - truth_pts, axis=1).max() < 0.5 * np.linalg.norm(
        theirs - (pts @ inverse[:3, :3].T + inverse[:3, 3]), axis=1).min()


class IdentityModel(RegistrationModule):
    def forward(self, moving, fixed):
        return Identity()


def _config():
    from medreg.config import Config

    return Config.model_validate({
        "data": {"dataset": "demo-brain"},
        "preprocess": {"modalities": ["t1"], "spacing": [2.0, 2.0, 2.0], "intensity": {"kind": "mri_percentile"},
                       "crop_foreground": False, "shape_multiple": 8},
        "model": {"levels": 1, "unet_channels": [4, 8]},
    })


def test_register_with_a_global_stage_writes_one_transform_that_itk_and_ants_read(tmp_path):
    import SimpleITK as sitk

    from medreg.inference.outputs import write_outputs
    from medreg.inference.register import register_pair
    from medreg.io.landmarks import Landmarks, read_brats_csv, write_brats_csv

    truth = _motion(deg=12.0, shift=(6.0, 4.0, -5.0))
    f = save_volume(tmp_path / "f.nii.gz", _image(FIXED), FIXED.affine)
    m = save_volume(tmp_path / "m.nii.gz", _image(FIXED, truth), FIXED.affine)
    pts = np.array([[4.0, 2.0, -3.0], [-6.0, 5.0, 4.0], [8.0, -6.0, 1.0]])
    lm = write_brats_csv(tmp_path / "lm.csv", Landmarks(["a", "b", "c"], pts))
    res = register_pair(IdentityModel(), _config(), f, m, landmarks=lm, global_stage=GlobalConfig("rigid"))
    out = tmp_path / "out"
    write_outputs(res, out)
    assert {"affine.mat", "transform.h5", "field.nii.gz", "warped.nii.gz"} <= {p.name for p in out.iterdir()}
    info = json.loads((out / "run.json").read_text())
    assert info["global"]["mode"] == "rigid" and "centres of mass" in info["global"]["message"]
    # the total field is A (the network is the identity) and the landmarks follow it
    mapped = read_brats_csv(out / "landmarks.csv").points
    assert np.abs(mapped - (pts @ truth[:3, :3].T + truth[:3, 3])).max() < 0.5
    # SimpleITK: the composite transform.h5 resamples the moving image into warped.nii.gz
    fixed_img, moving_img = sitk.ReadImage(str(f)), sitk.ReadImage(str(m))
    tx = sitk.ReadTransform(str(out / "transform.h5"))
    for p in pts:
        assert np.allclose(tx.TransformPoint(p.tolist()), res.map_points(p[None])[0], atol=0.01)
    itk_warped = sitk.GetArrayFromImage(sitk.Resample(moving_img, fixed_img, tx, sitk.sitkLinear, 0.0)).transpose(2, 1, 0)
    warped = load_volume(out / "warped.nii.gz").array
    inner = (slice(3, -3),) * 3
    assert np.abs(itk_warped[inner] - warped[inner]).max() < 1e-3 * warped.max()
    # antspyx: affine.mat is the affine alone, read as ANTs reads it; the composite file warps as above
    import ants

    a = ants.read_transform(str(out / "affine.mat"))
    assert np.allclose(a.apply_to_point(pts[0].tolist()), res.global_matrix[:3, :3] @ pts[0] + res.global_matrix[:3, 3],
                       atol=1e-4)
    ants_warped = ants.apply_transforms(ants.image_read(str(f)), ants.image_read(str(m)),
                                        transformlist=[str(out / "transform.h5")]).numpy()
    assert np.abs(ants_warped[inner] - warped[inner]).max() < 1e-3 * warped.max()
    # medreg apply on the composite file gives the same points as landmarks.csv
    from medreg.inference.apply import apply_to_points

    again = read_brats_csv(apply_to_points(out / "transform.h5", lm, tmp_path / "again.csv")).points
    np.testing.assert_allclose(again, mapped, atol=0.01)


def test_images_that_do_not_overlap_are_centred_first(tmp_path):
    from medreg.inference.register import register_pair

    truth = _motion(deg=5.0, shift=(2.0, -1.0, 3.0))
    far = FIXED.affine.copy()
    far[:3, 3] += [300.0, 0.0, 0.0]  # a wrong origin: 300 mm away
    f = save_volume(tmp_path / "f.nii.gz", _image(FIXED), FIXED.affine)
    moving = _image(FIXED, truth)
    m = save_volume(tmp_path / "m.nii.gz", moving, far)
    res = register_pair(IdentityModel(), _config(), f, m, global_stage=GlobalConfig("rigid"))
    g = res.extra["global"]
    assert not g["initial_overlap"] and "did not overlap" in g["message"]
    assert abs(np.linalg.norm(g["centre_of_mass_shift_mm"]) - 300.0) < 10.0


def test_a_pair_that_cannot_be_aligned_fails_naming_both_files_and_writes_nothing(tmp_path, capsys):
    from medreg.cli.main import main
    from medreg.io.checkpoint import save_model_file
    from medreg.registration.build import build_model

    f = save_volume(tmp_path / "f.nii.gz", _image(FIXED), FIXED.affine)
    empty = save_volume(tmp_path / "m.nii.gz", np.zeros(FIXED.shape, np.float32), FIXED.affine)
    with pytest.raises(InputError, match=r"f\.nii\.gz and .*m\.nii\.gz"):
        global_align(load_volume(f), load_volume(empty, allow_constant=True), GlobalConfig("rigid"))
    cfg = _config()
    model = save_model_file(tmp_path / "model.safetensors", build_model(cfg.model, 1), cfg.to_json())
    out = tmp_path / "out"
    code = main(["register", "--model", str(model), "--fixed", str(f), "--moving", str(empty), "--global", "rigid",
                 "--out", str(out), "--device", "cpu"])
    assert code == 2 and not out.exists()
    assert "m.nii.gz" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--global"):
        GlobalConfig("similarity")


def test_mutual_information_aligns_images_of_inverted_contrast():
    """A head-like ball in both images, its tissue contrast inverted in the moving one (another MRI contrast): NCC
    cannot align the pair, mutual information can. The pyramid is 4 / 2 mm: this test image is only 80 mm wide."""
    truth = _motion(deg=8.0, shift=(4.0, -3.0, 2.0))
    pts = FIXED.voxel_points()
    inv = np.linalg.inv(truth)
    tissue = _image(FIXED)
    fixed = Volume(np.where(np.linalg.norm(pts, axis=-1) < 17.0, 0.3 + tissue / tissue.max(), 0.0).astype(np.float32),
                   FIXED.affine)
    moved = _image(FIXED, truth)
    ball = np.linalg.norm(pts @ inv[:3, :3].T + inv[:3, 3], axis=-1) < 17.0  # the ball moves with the pattern
    moving = Volume(np.where(ball, 1.3 - moved / moved.max(), 0.0).astype(np.float32), FIXED.affine)
    pyramid = dict(levels_mm=(4.0, 2.0), steps=(60, 30), affine_steps=(0, 0))
    mi = global_align(fixed, moving, GlobalConfig("rigid", similarity="mi", **pyramid))
    assert _error(mi.matrix, truth) < 1.0, mi.message
    assert "MI" in mi.message and mi.describe()["similarity"] == "mi"
    try:
        ncc = _error(global_align(fixed, moving, GlobalConfig("rigid", **pyramid)).matrix, truth)
    except InputError:  # NCC may also refuse the pair outright
        ncc = np.inf
    assert ncc > 5 * _error(mi.matrix, truth)


def test_global_similarity_needs_the_stage():
    import argparse

    from medreg.cli.io_flags import add_global_argument, global_from_args
    from medreg.errors import ConfigError

    parser = argparse.ArgumentParser()
    add_global_argument(parser)
    assert global_from_args(parser.parse_args([])) is None
    assert global_from_args(parser.parse_args(["--global", "rigid", "--global-similarity", "mi"])) == \
        GlobalConfig("rigid", similarity="mi")
    with pytest.raises(ConfigError, match="--global rigid"):
        global_from_args(parser.parse_args(["--global-similarity", "mi"]))


@pytest.mark.parametrize("mode", ["rigid", "affine"])
def test_a_pair_aligned_from_the_start_stays_aligned(mode):
    """Identical images: the steps can only jitter about the start; the result is the identity, not an error."""
    fixed = Volume(_image(FIXED), FIXED.affine)
    res = global_align(fixed, Volume(_image(FIXED), FIXED.affine), GlobalConfig(mode))
    assert _error(res.matrix, np.eye(4)) < 0.1 and res.score_end >= res.score_start - 1e-9
