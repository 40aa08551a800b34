"""medreg.inference.register: geometry of the map back to the original grids, outputs, instance optimisation.

The pair is a smooth blob pattern defined in world (LPS mm) coordinates and sampled
on two different grids (spacings, orientations, sizes); the moving image is the
pattern translated by a known vector ``t`` so the true map is ``phi(x) = x + t``.
The model searches integer voxel shifts of the network grid (no answer given to it),
so a sign or axis error anywhere in the geometry shows up as a wrong field or a
warped image that does not match the fixed one.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medreg.baselines.base import BaselineResult
from medreg.errors import InputError
from medreg.geometry.frames import lps_to_voxel, voxel_to_lps
from medreg.io.landmarks import Landmarks, read_brats_csv, write_brats_csv, write_dirlab_txt
from medreg.io.nifti import load_volume, save_volume
from medreg.registration import RegistrationModule
from medreg.spatial import Affine, warp

CENTRES = np.array([[5, 3, -4], [-8, 6, 5], [10, -7, 2], [-3, -9, -6], [0, 0, 0], [12, 10, -3]], dtype=float)
T_LPS = np.array([4.0, -6.0, 2.0])  # mm; 2 mm network voxels: (2, -3, 1)


def blob_image(affine: np.ndarray, shape: tuple[int, int, int], shift_lps=(0.0, 0.0, 0.0), floor: float = 0.0):
    """Sum of Gaussians at CENTRES (LPS mm), translated by ``shift_lps``, sampled at the voxel centres."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    p = voxel_to_lps(affine, idx) - np.asarray(shift_lps, dtype=float)
    v = sum(np.exp(-np.sum((p - c) ** 2, 1) / (2 * 4.0 ** 2)) * (1 + 0.2 * i) for i, c in enumerate(CENTRES))
    return np.clip(v - floor, 0, None).reshape(shape).astype(np.float32)


class SearchTranslation(RegistrationModule):
    """Finds the integer voxel shift (network grid) maximising NCC, by coordinate search; returns it as an Affine."""

    def __init__(self, radius: int = 4):
        super().__init__()
        self.radius = radius

    def _matrix(self, shift: torch.Tensor, shape) -> torch.Tensor:
        m = torch.eye(3, 4)
        m[:, 3] = shift * 2 / torch.tensor(shape, dtype=torch.float32)
        return m

    def forward(self, moving, fixed):
        shape = tuple(fixed.shape[2:])
        best = torch.zeros(3)

        def score(s):
            w = warp(moving, Affine(self._matrix(s, shape)))
            a, b = w - w.mean(), fixed - fixed.mean()
            return float((a * b).sum() / (a.norm() * b.norm() + 1e-8))

        for _ in range(2):
            for ax in range(3):
                cands = []
                for d in range(-self.radius, self.radius + 1):
                    s = best.clone()
                    s[ax] = d
                    cands.append((score(s), d))
                best[ax] = max(cands)[1]
        return Affine(self._matrix(best, shape))


def make_config(crop: bool = False, spacing=(2.0, 2.0, 2.0)):
    from medreg.config import Config

    return Config.model_validate({
        "data": {"dataset": "demo-brain"},
        "preprocess": {"modalities": ["t1"], "spacing": list(spacing), "intensity": {"kind": "mri_percentile"},
                       "crop_foreground": crop, "crop_margin": 2, "shape_multiple": 8},
        "model": {"levels": 1, "unet_channels": [4, 8]},
        "loss": {"lam": 0.1},
        "train": {"lr": 1e-2},
    })


@pytest.fixture(scope="module")
def translated_pair(tmp_path_factory):
    """Fixed: RAS header, spacing (1.5, 1.2, 1.0). Moving: LPS-style header (i -> left, j -> posterior), other spacing and size."""
    d = tmp_path_factory.mktemp("pair")
    fa = np.diag([1.5, 1.2, 1.0, 1.0])
    fa[:3, 3] = [-30, -25, -20]
    ma = np.diag([-1.0, -1.3, 1.1, 1.0])
    ma[:3, 3] = [36, 36, -21]
    fixed = save_volume(d / "fixed.nii.gz", blob_image(fa, (40, 42, 40)), fa)
    moving = save_volume(d / "moving.nii.gz", blob_image(ma, (72, 56, 40), T_LPS), ma)
    return {"dir": d, "fixed": fixed, "moving": moving, "fixed_affine": fa, "moving_affine": ma}


@pytest.fixture(scope="module")
def translated_result(translated_pair):
    from medreg.inference.register import register_pair

    return register_pair(SearchTranslation(), make_config(), translated_pair["fixed"], translated_pair["moving"])


def test_translation_recovered_in_mm_across_spacings_and_ras_vs_lps_headers(translated_pair, translated_result):
    res = translated_result
    assert isinstance(res, BaselineResult)
    assert res.displacement_lps.shape == (40, 42, 40, 3)
    np.testing.assert_allclose(res.displacement_lps.reshape(-1, 3), np.broadcast_to(T_LPS, (40 * 42 * 40, 3)), atol=1e-3)
    # the warped moving image is the fixed pattern again (inside the moving field of view)
    fixed = load_volume(translated_pair["fixed"]).array
    inner = (slice(4, -4),) * 3
    assert np.abs(res.warped.array[inner] - fixed[inner]).max() < 0.03 * fixed.max()
    pts = np.array([[0.0, 0.0, 0.0], [7.3, -4.1, 3.3]])
    np.testing.assert_allclose(res.map_points(pts), pts + T_LPS, atol=1e-3)
    np.testing.assert_allclose(BaselineResult.map_points(res, pts), pts + T_LPS, atol=1e-3)  # via the field too
    np.testing.assert_allclose(res.jacobian_determinant(), 1.0, atol=1e-4)
    assert res.extra["method"] == "medreg" and res.seconds > 0 and res.threads >= 1


def _outputs(translated_result, tmp_path):
    from medreg.inference.outputs import write_outputs

    return write_outputs(translated_result, tmp_path / "out", info={"model": "search-translation"})


def test_outputs_written_with_fixed_header_and_run_json(translated_pair, translated_result, tmp_path):
    import nibabel as nib

    files = _outputs(translated_result, tmp_path)
    assert set(files) == {"warped.nii.gz", "field.nii.gz", "transform.h5", "jacobian_det.nii.gz", "run.json"}
    for name in ("warped.nii.gz", "jacobian_det.nii.gz", "field.nii.gz"):
        img = nib.load(str(files[name]))
        np.testing.assert_allclose(img.affine, translated_pair["fixed_affine"], atol=1e-5)
        assert img.shape[:3] == (40, 42, 40)
    info = json.loads(files["run.json"].read_text())
    for key in ("config_hash", "device", "threads", "seconds", "peak_rss_mb", "model", "outputs"):
        assert key in info, key
    assert info["model"] == "search-translation" and info["device"] == "cpu"
    assert not [p for p in (tmp_path).iterdir() if p.name.startswith(".")]  # staging folder removed


def test_out_dir_refused_when_not_empty_unless_overwrite(translated_result, tmp_path):
    from medreg.inference.outputs import write_outputs

    out = tmp_path / "out"
    out.mkdir()
    (out / "landmarks.csv").write_text("stale\n")
    (out / "notes.txt").write_text("mine\n")
    with pytest.raises(InputError, match="refusing to overwrite"):
        write_outputs(translated_result, out)
    assert sorted(p.name for p in out.iterdir()) == ["landmarks.csv", "notes.txt"]
    write_outputs(translated_result, out, overwrite=True)
    names = {p.name for p in out.iterdir()}
    assert "run.json" in names and "notes.txt" in names and "landmarks.csv" not in names  # stale medreg output removed


def test_field_reproduces_warped_with_simpleitk(translated_pair, translated_result, tmp_path):
    import nibabel as nib
    import SimpleITK as sitk

    files = _outputs(translated_result, tmp_path)
    warped = np.asarray(nib.load(str(files["warped.nii.gz"])).dataobj)
    fixed = sitk.ReadImage(str(translated_pair["fixed"]))
    moving = sitk.ReadImage(str(translated_pair["moving"]), sitk.sitkFloat64)
    field = sitk.ReadImage(str(files["field.nii.gz"]), sitk.sitkVectorFloat64)
    for tx in (sitk.DisplacementFieldTransform(field), sitk.ReadTransform(str(files["transform.h5"]))):
        out = sitk.GetArrayFromImage(sitk.Resample(moving, fixed, tx, sitk.sitkLinear, 0.0)).transpose(2, 1, 0)
        assert np.abs(out - warped).max() < 1e-3 * warped.max()


@pytest.mark.ants
def test_field_reproduces_warped_with_ants(translated_pair, translated_result, tmp_path):
    ants = pytest.importorskip("ants")
    import nibabel as nib

    files = _outputs(translated_result, tmp_path)
    warped = np.asarray(nib.load(str(files["warped.nii.gz"])).dataobj)
    fixed = ants.image_read(str(translated_pair["fixed"]))
    moving = ants.image_read(str(translated_pair["moving"]))
    out = ants.apply_transforms(fixed, moving, [str(files["field.nii.gz"])]).numpy()
    assert np.abs(out - warped).max() < 1e-3 * warped.max()
    pts = np.array([[1.0, 2.0, 3.0]])
    import pandas as pd

    mapped = ants.apply_transforms_to_points(3, pd.DataFrame(pts, columns=["x", "y", "z"]), [str(files["field.nii.gz"])])
    np.testing.assert_allclose(mapped.to_numpy(), pts + T_LPS, atol=1e-3)


def _brats_affine() -> np.ndarray:
    a = np.eye(4)
    a[0, 0], a[1, 1], a[1, 3] = -1.0, -1.0, 239.0
    return a


def test_brats_header_landmarks_map_in_the_right_direction(tmp_path):
    """BraTS-Reg header (sform -1,-1, offset 239, qform 0); moving = fixed shifted by +6 voxels along j."""
    from medreg.inference.outputs import write_outputs
    from medreg.inference.register import register_pair

    a = _brats_affine()
    shape = (56, 60, 48)
    centre = voxel_to_lps(a, np.array([[28.0, 30.0, 24.0]]))[0]
    fixed_img = blob_image(a, shape, centre, floor=0.3)
    moving_img = blob_image(a, shape, centre + np.array([0.0, 6.0, 0.0]), floor=0.3)  # feature at j + 6 -> LPS Y + 6
    f = save_volume(tmp_path / "f.nii.gz", fixed_img, a, brats_header=True)
    m = save_volume(tmp_path / "m.nii.gz", moving_img, a, brats_header=True)
    ijk = np.array([[28.0, 30.0, 24.0], [22.0, 36.0, 20.0], [24.0, 26.0, 22.0]])
    pts = voxel_to_lps(a, ijk)
    np.testing.assert_allclose(pts[0], [28.0, 30.0 - 239.0, 24.0])  # CSV values: X=i, Y=j-239, Z=k
    write_brats_csv(tmp_path / "fixed_landmarks.csv", Landmarks(["a", "b", "c"], pts))
    res = register_pair(SearchTranslation(), make_config(crop=True), f, m, landmarks=tmp_path / "fixed_landmarks.csv")
    pp = res.extra["preprocessed_shape"]
    assert np.prod(pp) < 32 * 32 * 24  # the foreground crop (landmarks included) is smaller than the padded 2 mm grid
    expected = pts + np.array([0.0, 6.0, 0.0])
    np.testing.assert_allclose(res.mapped_landmarks.points, expected, atol=1e-3)
    # the mapped point shows the same intensity in the moving image as the fixed point in the fixed image
    mi = lps_to_voxel(a, res.mapped_landmarks.points[:2]).round().astype(int)
    for k in range(2):
        assert moving_img[tuple(mi[k])] == pytest.approx(fixed_img[tuple(ijk[k].astype(int))], rel=1e-5)
    files = write_outputs(res, tmp_path / "out")
    out = read_brats_csv(files["landmarks.csv"])
    assert out.names == ["a", "b", "c"]
    np.testing.assert_allclose(out.points, expected, atol=1e-3)
    import nibabel as nib

    hdr = nib.load(str(files["warped.nii.gz"])).header
    assert int(hdr["sform_code"]) == 1 and int(hdr["qform_code"]) == 0  # the fixed header, BraTS style
    # whole-voxel shift: exact everywhere the moving image covers, outside the crop too (phi's extension)
    assert np.abs(res.warped.array - fixed_img)[:, :-6].max() < 1e-4


def test_dirlab_landmarks_read_with_fixed_affine_written_with_moving_affine(translated_pair, tmp_path):
    from medreg.inference.outputs import write_outputs
    from medreg.inference.register import register_pair

    fa, ma = translated_pair["fixed_affine"], translated_pair["moving_affine"]
    ijk0 = np.array([[20.0, 21.0, 20.0], [10.0, 30.0, 25.0]])
    write_dirlab_txt(tmp_path / "fixed.txt", Landmarks(["1", "2"], voxel_to_lps(fa, ijk0)), fa)
    res = register_pair(SearchTranslation(), make_config(), translated_pair["fixed"], translated_pair["moving"],
                        landmarks=tmp_path / "fixed.txt")
    files = write_outputs(res, tmp_path / "out")
    rows = np.loadtxt(files["landmarks.txt"])
    expected = lps_to_voxel(ma, voxel_to_lps(fa, ijk0) + T_LPS) + 1.0  # 1-based indices of the moving image
    np.testing.assert_allclose(rows, expected, atol=2e-3)


@pytest.mark.parametrize("io_mode", ["field", "network"])
def test_instance_optimisation_never_changes_the_loaded_model(translated_pair, tmp_path, io_mode):
    from medreg.inference.io_config import io_from_flags
    from medreg.inference.register import register_pair
    from medreg.registration.build import build_model

    cfg = make_config()
    torch.manual_seed(0)
    model = build_model(cfg.model, 1).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a = (translated_pair["fixed"], translated_pair["moving"])
    b = (translated_pair["moving"], translated_pair["fixed"])  # another pair: the roles swapped
    fresh_b = register_pair(model, cfg, *b)
    a_io = register_pair(model, cfg, *a, io=io_from_flags(6, io_mode))
    a_plain = register_pair(model, cfg, *a)
    after_b = register_pair(model, cfg, *b)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert np.array_equal(after_b.displacement_lps, fresh_b.displacement_lps)
    assert np.abs(a_io.displacement_lps - a_plain.displacement_lps).max() > 1e-3  # IO did change A's result
    losses = a_io.extra["io_losses"]
    assert len(losses) == 6 and a_io.extra["io_mode"] == io_mode and a_io.extra["io"]["mode"] == io_mode
    # field: the first stage's losses share a grid (the next stage's are on another): compare within it
    first = io_from_flags(6, io_mode).stage_steps()[0] if io_mode == "field" else 6
    assert losses[first - 1] < losses[0]


def test_finer_images_sample_the_preprocessed_data_on_the_network_box(translated_pair):
    from scipy.ndimage import map_coordinates

    from medreg.inference.prepare import prepare_pair

    cfg = make_config(spacing=(3.0, 3.0, 3.0))
    from medreg.transforms.input_pipeline import InputPipeline

    pair = prepare_pair([load_volume(translated_pair["fixed"])], [load_volume(translated_pair["moving"])],
                        InputPipeline.for_model(cfg))
    k = 2
    moving_f, fixed_f = pair.finer(k)
    net = np.array(pair.geometry.shape)
    assert tuple(fixed_f.shape) == tuple(moving_f.shape) == (1, 1, *(net * k))
    # fine voxel i lies at network index (i + 0.5) / k - 0.5: the same box, k times the voxels
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in net * k], indexing="ij"), -1).reshape(-1, 3)
    ras = (pair.geometry.affine @ np.c_[(idx + 0.5) / k - 0.5, np.ones(len(idx))].T)
    for image, data, affine in ((fixed_f, pair.fixed_data, pair.fixed_data_affine),
                                (moving_f, pair.moving_data, pair.moving_data_affine)):
        data_idx = (np.linalg.inv(affine) @ ras)[:3]
        inside = np.all((data_idx >= 0) & (data_idx <= np.array(data.shape[2:])[:, None] - 1), axis=0)
        assert inside.mean() > 0.3
        expected = map_coordinates(data[0, 0].numpy().astype(np.float64), data_idx[:, inside], order=1)
        got = image[0, 0].numpy().reshape(-1)[inside]
        np.testing.assert_allclose(got, expected, atol=1e-4)
        assert float(data.abs().max()) > 0.5  # not a trivially empty image
    with pytest.raises(ValueError, match="integer factor"):
        pair.finer(1.5)


def test_io_upsample_runs_the_last_third_on_a_finer_grid(translated_pair):
    from medreg.inference.io_config import io_from_flags
    from medreg.inference.register import register_pair
    from medreg.registration.build import build_model

    cfg = make_config()
    torch.manual_seed(0)
    model = build_model(cfg.model, 1).eval()
    a = (translated_pair["fixed"], translated_pair["moving"])
    plain = register_pair(model, cfg, *a, io=io_from_flags(9))
    fine = register_pair(model, cfg, *a, io=io_from_flags(9, upsample=2))
    losses = fine.extra["io_losses"]
    assert len(losses) == 9 and fine.extra["io_preset"] == "finer" and plain.extra["io_preset"] == "field"
    n = io_from_flags(9, upsample=2).stage_steps()
    assert losses[:n[0]] == pytest.approx(plain.extra["io_losses"][:n[0]])  # the same first stage
    assert losses[-1] < losses[-n[-1]]  # the fine stage improves its own loss
    assert np.abs(fine.displacement_lps - plain.displacement_lps).max() > 1e-3
    for bad, mode in ((0, "field"), (2, "network")):
        with pytest.raises(ValueError, match="io-upsample"):
            io_from_flags(3, mode, upsample=bad)


def test_io_upsample_data_runs_the_last_steps_on_the_data_grid(translated_pair):
    from medreg.inference.io_config import io_from_flags
    from medreg.inference.register import register_pair
    from medreg.registration.build import build_model

    cfg = make_config(spacing=(3.0, 3.0, 3.0))  # the data (2 mm) are finer than the network grid
    torch.manual_seed(0)
    model = build_model(cfg.model, 1).eval()
    a = (translated_pair["fixed"], translated_pair["moving"])
    plain = register_pair(model, cfg, *a, io=io_from_flags(12))
    on_data = register_pair(model, cfg, *a, io=io_from_flags(12, upsample="data"))
    losses = on_data.extra["io_losses"]
    assert len(losses) == 12 and on_data.extra["io_preset"] == "data"
    # the first stage at half the network resolution runs as in plain (only its length differs)
    n = min(io_from_flags(12, upsample="data").stage_steps()[0], io_from_flags(12).stage_steps()[0])
    assert losses[:n] == pytest.approx(plain.extra["io_losses"][:n])
    assert on_data.extra["io"]["stages"][-1]["grid"] == "data"
    assert np.isfinite(losses).all()  # (its recovery of a shift is tested in tests/registration/test_field_io.py)
    assert np.abs(on_data.displacement_lps - plain.displacement_lps).max() > 1e-3
    for bad, mode in (("datum", "field"), ("data", "network"), ("1.5", "field")):
        with pytest.raises(ValueError, match="io-upsample"):
            io_from_flags(3, mode, upsample=bad)


def test_parse_io_upsample():
    from medreg.inference.io_config import parse_io_upsample

    assert parse_io_upsample("data") == "data" and parse_io_upsample("DATA") == "data"
    assert parse_io_upsample("2") == 2 and parse_io_upsample(3) == 3 and parse_io_upsample(1) == 1
    for bad in ("0", "-1", "1.5", "fine", None):
        with pytest.raises(ValueError, match="io-upsample"):
            parse_io_upsample(bad)


def test_unknown_io_mode_is_a_clear_error(translated_pair):
    from medreg.inference.io_config import io_from_flags

    with pytest.raises(ValueError, match="io-mode"):
        io_from_flags(2, "weights")


def test_channel_count_mismatch_is_a_clear_error(translated_pair):
    from medreg.inference.register import register_pair

    with pytest.raises(InputError, match=r"model takes 1 channel\(s\) \['t1'\]; expected 1 fixed image"):
        register_pair(SearchTranslation(), make_config(), [translated_pair["fixed"]] * 2, translated_pair["moving"])


def test_translation_recovered_with_permuted_axes_header(tmp_path):
    """Fixed array axes rotated 90 degrees about z (i -> anterior, j -> left): the field is still t in LPS mm."""
    from medreg.inference.register import register_pair

    fa = np.array([[0.0, -1.2, 0.0, 25.0], [1.5, 0.0, 0.0, -30.0], [0.0, 0.0, 1.0, -20.0], [0, 0, 0, 1]])
    ma = np.diag([1.1, 1.0, 1.3, 1.0])
    ma[:3, 3] = [-36, -36, -24]
    f = save_volume(tmp_path / "f.nii.gz", blob_image(fa, (40, 42, 40)), fa)
    m = save_volume(tmp_path / "m.nii.gz", blob_image(ma, (66, 72, 36), T_LPS), ma)
    res = register_pair(SearchTranslation(), make_config(), f, m)
    np.testing.assert_allclose(res.displacement_lps.reshape(-1, 3).mean(0), T_LPS, atol=1e-3)
    assert np.abs(res.displacement_lps - T_LPS).max() < 1e-3
    fixed = load_volume(f).array
    inner = (slice(4, -4),) * 3
    assert np.abs(res.warped.array[inner] - fixed[inner]).max() < 0.03 * fixed.max()


def test_dense_field_equals_exact_map_for_a_varying_field_in_several_slabs():
    """The field written on the original grid must agree with phi evaluated exactly, slab by slab."""
    from medreg.geometry import Grid, WorldTransform
    from medreg.spatial import DisplacementField, identity_grid

    pp_shape = (16, 20, 12)
    g = identity_grid(pp_shape)
    u = torch.stack([0.1 * torch.sin(torch.pi * g[:, 1]), 0.05 * torch.cos(torch.pi * g[:, 0]),
                     0.08 * g[:, 0] * g[:, 2]], 1)
    pp_affine = np.diag([-2.0, -2.0, 2.0, 1.0])
    pp_affine[:3, 3] = [10.0, 20.0, -5.0]
    world = WorldTransform(DisplacementField(u), Grid(pp_affine, pp_shape))
    fixed_shape = (30, 38, 22)
    fixed_affine = np.diag([1.0, 1.0, 1.0, 1.0])
    fixed_affine[:3, 3] = [-20.0, -17.0, -6.0]
    whole = world.displacement_on(Grid(fixed_affine, fixed_shape))
    sliced = world.displacement_on(Grid(fixed_affine, fixed_shape), slab_voxels=38 * 22 * 4)
    exact_on_grid = world.displacement_on(Grid(fixed_affine, fixed_shape), via=Grid(fixed_affine, fixed_shape),
                                          slab_voxels=38 * 22 * 4)
    np.testing.assert_allclose(sliced, whole, atol=1e-5)
    idx = np.stack(np.meshgrid(*[np.arange(2, s - 2, 3) for s in fixed_shape], indexing="ij"), -1).reshape(-1, 3)
    pts = voxel_to_lps(fixed_affine, idx.astype(float))
    exact = world.map_points(pts) - pts
    dense = sliced[idx[:, 0], idx[:, 1], idx[:, 2]]
    np.testing.assert_allclose(exact_on_grid[idx[:, 0], idx[:, 1], idx[:, 2]], exact, atol=1e-4)
    assert np.abs(exact).max() > 1.0  # the field really varies
    np.testing.assert_allclose(dense, exact, atol=0.15)  # trilinear interpolation of a smooth field


@pytest.mark.parametrize("matrix", [
    [[0.5, 0, 0, -0.25], [0, 0.5, 0, 3.0], [0, 0, 0.5, -0.75]],    # 1 mm -> 2 mm, shifted crop
    [[0, -0.8, 0, 20.0], [0, 0, 0.45, -1.0], [1.1, 0, 0, 2.5]],    # permuted, flipped, any scale
])
def test_separable_resampling_equals_grid_sample(matrix):
    """The axis-aligned fast path of map_to_original is trilinear grid_sample (border) exactly."""
    import torch.nn.functional as F

    from medreg.geometry.frames import index_to_normalized
    from medreg.geometry.world import REVERSE, index_grid, resample_dense

    torch.manual_seed(0)
    dense = torch.randn(1, 3, 9, 11, 7)
    m = np.eye(4)
    m[:3] = np.asarray(matrix)
    out_shape = (15, 20, 18)
    got = resample_dense(dense, m, out_shape)
    theta = REVERSE @ index_to_normalized(dense.shape[2:]) @ m
    ref = F.grid_sample(dense, index_grid(theta, out_shape, 0, torch.device("cpu")), mode="bilinear",
                        padding_mode="border", align_corners=False)
    assert got.shape == ref.shape
    assert torch.allclose(got, ref, atol=1e-5)


def test_oblique_resampling_equals_grid_sample():
    import torch.nn.functional as F

    from medreg.geometry.frames import index_to_normalized
    from medreg.geometry.world import REVERSE, index_grid, resample_dense

    c, s = np.cos(0.3), np.sin(0.3)
    m = np.eye(4)
    m[:2, :2] = [[c, -s], [s, c]]
    dense = torch.randn(1, 3, 6, 5, 4)
    got = resample_dense(dense, m, (7, 6, 5), slab_voxels=60)
    theta = REVERSE @ index_to_normalized(dense.shape[2:]) @ m
    ref = F.grid_sample(dense, index_grid(theta, (7, 6, 5), 0, torch.device("cpu")), mode="bilinear",
                        padding_mode="border", align_corners=False)
    assert torch.allclose(got, ref, atol=1e-5)


def test_files_written_by_preprocess_are_not_normalised_twice(tmp_path):
    """A CT model evaluated on `medreg preprocess` output: the [0, 1] files must reach the network as they are.

    (A second CT window mapped every voxel to about 0.83: the lung model then saw a blank pair.)
    """
    from medreg.config import Config
    from medreg.inference.prepare import prepare_pair
    from medreg.transforms.input_pipeline import InputPipeline, stages_of

    cfg = Config.model_validate({
        "data": {"dataset": "demo-lung"},
        "preprocess": {"modalities": ["ct"], "spacing": None, "intensity": {"kind": "ct_window"},
                       "crop_foreground": False, "shape_multiple": 4},
        "model": {"levels": 1, "unet_channels": [4, 8]},
    })
    rng = np.random.default_rng(0)
    img = rng.random((16, 12, 8)).astype(np.float32)  # already windowed to [0, 1]
    path = save_volume(tmp_path / "fixed_ct.nii.gz", img, np.eye(4))
    model = InputPipeline.for_model(cfg)
    files = model.for_files(cfg.preprocess, stages_of(cfg.preprocess), path)
    assert "intensity" in model.stages() and "intensity" not in files.stages()
    assert files.stages()[-1] == "network_grid" and files.data == model.data
    pair = prepare_pair([path], [path], files)
    np.testing.assert_allclose(pair.fixed[0, 0].numpy(), img, atol=1e-6)
    twice = prepare_pair([path], [path], model)  # what happened before: the window again
    assert float(twice.fixed.std()) < 1e-3
    assert InputPipeline.from_json(files.to_json()) == files


def test_files_normalised_otherwise_than_the_training_data_are_an_error(tmp_path):
    from medreg.config import Config
    from medreg.transforms.config import PreprocessConfig
    from medreg.transforms.input_pipeline import InputPipeline

    cfg = Config.model_validate({"data": {"dataset": "demo-lung"},
                                 "preprocess": {"modalities": ["ct"], "intensity": {"kind": "ct_window"}},
                                 "model": {"levels": 1, "unet_channels": [4, 8]}})
    files_pre = PreprocessConfig(modalities=["ct"], intensity={"kind": "ct_window", "hu_min": -1200.0})
    with pytest.raises(InputError, match=r"manifest\.json.*trained on intensities normalised as"):
        InputPipeline.for_model(cfg).for_files(files_pre, ["intensity"], tmp_path / "manifest.json")
