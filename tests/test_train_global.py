"""Training with the global stage: random world motions, the stage before the network, validation through A ∘ phi,
fine-tuning from a model (--init), and the model's stage as the default of register and evaluate."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medreg.config import MotionConfig, load_config, preset_path
from medreg.errors import ConfigError
from medreg.geometry import Grid
from medreg.inference.global_stage import GlobalConfig
from medreg.training.motion import MotionThenGlobal, align_validation_item, random_motion
from medreg.training.synthetic import write_synthetic_dataset

GRID = Grid(np.diag([-2.0, -2.0, 2.0, 1.0]) @ np.array([[1, 0, 0, -24], [0, 1, 0, -24], [0, 0, 1, -24], [0, 0, 0, 1.0]]),
            (48, 48, 48))
BLOBS = np.array([[6, 4, -5], [-9, 7, 6], [12, -8, 3], [-4, -10, -7], [0, 0, 0], [13, 11, -4], [-11, -3, 10]], float)


def _image(motion: np.ndarray | None = None) -> torch.Tensor:
    """(1, *shape) of Gaussian blobs in world mm, moved by ``motion`` (``image(M^-1 q)``)."""
    p = GRID.voxel_points().reshape(-1, 3)
    if motion is not None:
        inv = np.linalg.inv(motion)
        p = p @ inv[:3, :3].T + inv[:3, 3]
    vals = sum(np.exp(-np.sum((p - c) ** 2, 1) / (2 * 4.0 ** 2)) * (1 + 0.2 * i) for i, c in enumerate(BLOBS))
    return torch.from_numpy((vals / vals.max()).reshape(1, *GRID.shape).astype(np.float32))


def _centre() -> np.ndarray:
    return GRID.index_to_lps((np.asarray(GRID.shape, float)[None] - 1) / 2)[0]


def test_random_motions_are_seeded_and_within_their_bounds():
    cfg = MotionConfig(enabled=True, translate_mm=20, rotate_deg=20, scale=0.1, shear=0.03)
    c = _centre()
    a = random_motion(np.random.default_rng(3), cfg, c)
    assert np.array_equal(a, random_motion(np.random.default_rng(3), cfg, c))
    assert not np.allclose(a, random_motion(np.random.default_rng(4), cfg, c))
    for seed in range(30):
        m = random_motion(np.random.default_rng(seed), cfg, c)
        t = m[:3, :3] @ c + m[:3, 3] - c  # where the centre goes
        assert np.all(np.abs(t) <= 20.0 + 1e-9)
        s = np.linalg.svd(m[:3, :3], compute_uv=False)
        assert 0.9 * 0.9 < s.min() and s.max() < 1.1 * 1.1
    still = random_motion(np.random.default_rng(0), MotionConfig(enabled=True, translate_mm=0, rotate_deg=0, scale=0,
                                                                  shear=0), c)
    np.testing.assert_allclose(still, np.eye(4), atol=1e-12)


def test_the_global_stage_undoes_the_random_motion_before_the_network():
    """The network gets moving(M^-1 A p): with a stage that finds A = M, the moving image as it was."""
    moving = _image()
    cfg = MotionConfig(enabled=True, translate_mm=8, rotate_deg=10, scale=0.05, shear=0.02)
    stage = GlobalConfig("affine", levels_mm=(8.0, 4.0, 2.0), steps=(60, 30, 20), affine_steps=(0, 30, 20))
    raw = MotionThenGlobal(cfg, "none")(moving, moving, GRID.affine, seed=5)  # the motion alone
    aligned = MotionThenGlobal(cfg, "affine", stage)(moving, moving, GRID.affine, seed=5)
    moved_off = float((raw - moving).abs().mean())
    left = float((aligned - moving).abs().mean())
    assert moved_off > 0.005
    assert left < 0.15 * moved_off, (left, moved_off)
    # the same seed, the same sample
    assert torch.equal(raw, MotionThenGlobal(cfg, "none")(moving, moving, GRID.affine, seed=5))


def test_validation_goes_through_the_global_stage():
    from medreg.spatial import Identity
    from medreg.training.validation import landmark_errors

    truth = np.eye(4)
    truth[:3, 3] = [5.0, -4.0, 3.0]
    item = {"id": "p", "fixed": _image(), "moving": _image(truth), "affine": GRID.affine,
            "fixed_points": np.array([[3.0, 2.0, -1.0], [-6.0, 4.0, 5.0]]), "moving_points": None}
    item["moving_points"] = item["fixed_points"] + truth[:3, 3]
    assert align_validation_item(item, GlobalConfig("none")) is item
    out = align_validation_item(item, GlobalConfig("rigid"))
    assert float((out["moving"] - item["fixed"]).abs().mean()) < 0.2 * float((item["moving"] - item["fixed"]).abs().mean())
    errs = landmark_errors(Identity(), item["fixed_points"], item["moving_points"], GRID.affine, GRID.shape,
                           global_lps=out["global_lps"])
    assert errs.max() < 0.5  # a quarter of the 2 mm voxel
    none = landmark_errors(Identity(), item["fixed_points"], item["moving_points"], GRID.affine, GRID.shape)
    assert none.min() > 6.0


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_dataset(root, n_train=3, n_test=1, shape=(16, 16, 16), spacing=2.0)
    return root


TINY = ["model.unet_channels=[4, 8, 8]", "train.log_every=1", "data.val_split=train", "data.val_pairs=1",
        "train.lr=3e-3", "train.val_every=2"]


def test_training_with_motions_and_the_stage_then_register_uses_it_by_default(data, tmp_path, capsys):
    from medreg.cli.main import main
    from medreg.inference.bundle import load_bundle
    from medreg.train import train

    config = load_config(preset_path("demo-brain"), [*TINY, "train.steps=2", "train.augmentation.motion.enabled=true",
                                                     "train.augmentation.motion.translate_mm=4",
                                                     "global_stage.mode=rigid"])
    run = tmp_path / "run"
    result = train(config, data, run, device="cpu", progress=False, tensorboard=False)
    assert result.step == 2 and np.isfinite(result.last_val["tre_mm"])
    bundle = load_bundle(run)
    assert bundle.config.global_stage.mode == "rigid" and bundle.config.train.augmentation.motion.enabled
    # fine-tuning from it: the weights are the model's at step 0
    from medreg.train import _load_init
    from medreg.registration.build import build_model

    fresh = build_model(config.model, len(config.channels))
    _load_init(fresh, config, run, torch.device("cpu"))
    for (k, a), b in zip(fresh.state_dict().items(), bundle.model.state_dict().values()):
        assert torch.equal(a, b), k
    tuned = train(config, data, tmp_path / "tuned", device="cpu", progress=False, tensorboard=False, init=run,
                  max_steps=1)
    origin = json.loads((tmp_path / "tuned" / "init.json").read_text())
    assert tuned.step == 1 and origin["init"] == str(bundle.path.resolve()) and len(origin["sha256"]) == 64
    other = load_config(preset_path("demo-brain"), [*TINY, "model.unet_channels=[4, 8, 16]"])
    with pytest.raises(ConfigError, match="same model section"):
        _load_init(build_model(other.model, 2), other, run, torch.device("cpu"))
    # register without --global: the model's stage runs; --global none turns it off
    pair = next(p for p in (data / "pairs").iterdir() if p.is_dir())
    fixed = [str(pair / f"fixed_{c}.nii.gz") for c in config.channels]
    moving = [str(pair / f"moving_{c}.nii.gz") for c in config.channels]
    args = ["register", "--model", str(run), "--fixed", *fixed, "--moving", *moving, "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert json.loads((tmp_path / "a" / "run.json").read_text())["global"]["mode"] == "rigid"
    assert (tmp_path / "a" / "affine.mat").is_file()
    assert main([*args, "--global", "none", "--out", str(tmp_path / "b")]) == 0
    assert not (tmp_path / "b" / "affine.mat").exists()
    # evaluate names the method after the model's stage
    from medreg.evaluation.methods import build_methods

    assert [m.name for m in build_methods(run, [])] == ["medreg+rigid"]
    assert [m.name for m in build_methods(run, [], global_stage=GlobalConfig("none"))] == ["medreg"]
