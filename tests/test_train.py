"""The training loop on a tiny synthetic manifest: learning, exact resume, DDP, validation, bad input."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from medreg.config import load_config, preset_path
from medreg.errors import ConfigError, InputError
from medreg.inference.bundle import load_bundle, load_model
from medreg.io.checkpoint import load_trainer_state
from medreg.train import train
from medreg.training.data import LoadPaird, StepSampler
from medreg.transforms.network_grid import network_grid, resample_to_spacing
from medreg.training.synthetic import write_synthetic_dataset

TINY = ["model.unet_channels=[4, 8, 8]", "train.log_every=1", "data.val_split=train", "data.val_pairs=2",
        "train.lr=3e-3", "global_stage.mode=none", "train.augmentation.motion.enabled=false"]  # the loop alone (see test_train_global)


def _config(*overrides):
    return load_config(preset_path("demo-brain"), [*TINY, *overrides])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_dataset(root, n_train=3, n_test=2, shape=(16, 16, 16), spacing=2.0)
    return root


def _run(config, data, out, **kw):
    return train(config, data, out, device="cpu", progress=False, tensorboard=kw.pop("tensorboard", False), **kw)


def test_short_run_lowers_the_loss_and_the_landmark_error(data, tmp_path):
    from medreg.train import make_objective
    from medreg.training.validation import validate
    from medreg.registration.build import build_model

    config = _config("train.steps=30", "train.val_every=10", "train.augmentation.enabled=false")
    loader = LoadPaird(config.channels, config.preprocess, 16, "")
    from medreg.training.data import split_records
    from medreg.datasets.manifest import read_manifest

    items = [loader(r) for r in split_records(read_manifest(data), data, "test")]
    before, _ = validate(make_objective(build_model(config.model, 2), config), items, torch.device("cpu"))
    result = _run(config, data, tmp_path / "run", tensorboard=True)
    assert result.step == 30
    assert result.last_val["total"] < before["total"] - 0.01
    assert result.last_val["tre_mm"] < 0.8 * result.last_val["tre_none_mm"]
    assert before["tre_mm"] == pytest.approx(before["tre_none_mm"], abs=1e-4)  # identity at initialisation
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert [r["step"] for r in rows if r["phase"] == "val"] == ["10", "20", "30"]
    assert (tmp_path / "run" / "config.yaml").is_file() and list((tmp_path / "run" / "tensorboard").iterdir())
    model, cfg = load_model(tmp_path / "run")  # the best checkpoint, from the file alone
    assert cfg == config and not model.training
    from medreg.datasets.manifest import read_manifest
    bundle = load_bundle(tmp_path / "run")  # the whole input pipeline is in the checkpoint
    assert bundle.pipeline.data == read_manifest(data).config.model_copy(update={"modalities": cfg.channels})
    assert bundle.pipeline.network == cfg.preprocess and bundle.pipeline.stages()[-1] == "network_grid"


def test_ten_steps_equal_five_plus_resume_plus_five(data, tmp_path):
    config = _config("train.steps=10", "train.val_every=5", "train.batch_size=2")  # augmentation on
    one = _run(config, data, tmp_path / "one")
    _run(config, data, tmp_path / "two", max_steps=5)
    assert load_trainer_state(tmp_path / "two" / "checkpoints" / "last")["step"] == 5
    two = _run(None, data, tmp_path / "two", resume=True)
    assert two.step == one.step == 10
    for (name, a), b in zip(one.model.state_dict().items(), two.model.state_dict().values()):
        assert torch.equal(a, b), name
    s1 = load_trainer_state(tmp_path / "one" / "checkpoints" / "last")["optimizer"]["state"]
    s2 = load_trainer_state(tmp_path / "two" / "checkpoints" / "last")["optimizer"]["state"]
    for k in s1:
        for name in s1[k]:
            assert torch.equal(s1[k][name], s2[k][name])

    def losses(run):
        rows = csv.DictReader((tmp_path / run / "metrics.csv").open())
        return [(r["step"], r["phase"], r["total"], r["tre_mm"]) for r in rows]

    assert losses("one") == losses("two")


def test_sampler_covers_each_epoch_across_ranks_and_resumes():
    n, b, world = 5, 2, 2
    ranks = [list(StepSampler(n, b, 3, 0, 4, rank, world)) for rank in range(world)]
    by_number = {}
    for rank in range(world):
        for j, item in enumerate(ranks[rank]):
            step, i = divmod(j, b)
            by_number[(step * world + rank) * b + i] = item
    epoch0 = [by_number[g][0] for g in range(n)]
    assert sorted(epoch0) == list(range(n))
    assert len({by_number[g][1] for g in by_number}) == len(by_number)  # distinct augmentation seeds
    assert list(StepSampler(n, b, 3, 2, 4, 1, world)) == ranks[1][2 * b:]


def test_augmentation_is_deterministic_given_the_seed():
    from medreg.training.augment import PairAugmenter

    aug = PairAugmenter(_config().train.augmentation)
    x = torch.rand(2, 16, 16, 16)
    a = aug(x, x, 11)
    b = aug(x, x, 11)
    c = aug(x, x, 12)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert not torch.equal(a[0], a[1])  # fixed and moving get independent draws


def _centroid_lps(image, affine):
    from medreg.geometry.frames import voxel_to_lps

    arr = image[0].double().numpy()
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in arr.shape], indexing="ij"), -1).reshape(-1, 3)
    w = arr.reshape(-1)
    return voxel_to_lps(affine, (ijk * w[:, None]).sum(0, keepdims=True) / w.sum())[0]


@pytest.mark.parametrize("target", [[2.0, 2.0, 2.0], [1.5, 2.0, 3.0]])
def test_resampling_to_the_network_grid_keeps_world_positions(target):
    affine = np.array([[-1.0, 0, 0, 30], [0, 1, 0, -20], [0, 0, 1, 5], [0, 0, 0, 1]])
    grids = np.meshgrid(*[np.arange(40.0)] * 3, indexing="ij")
    blob = np.exp(-sum((g - c) ** 2 for g, c in zip(grids, (17.3, 21.0, 15.6))) / (2 * 4.0**2))
    image = torch.from_numpy(blob[None].astype(np.float32))
    out, new_affine = resample_to_spacing(image, affine, target)
    assert np.allclose(np.linalg.norm(new_affine[:3, :3], axis=0), target)
    assert np.allclose(_centroid_lps(out, new_affine), _centroid_lps(image, affine), atol=0.05)


def test_odd_shapes_are_padded_for_the_model(tmp_path):
    pre = _config().preprocess
    out, aff = network_grid(torch.rand(2, 18, 16, 20), np.diag([2.0, 2.0, 2.0, 1.0]), pre)
    assert tuple(out.shape) == (2, 32, 16, 32) and np.allclose(aff, np.diag([2.0, 2.0, 2.0, 1.0]))


def test_a_shape_the_model_cannot_take_says_what_to_change(data):
    from medreg.datasets.manifest import read_manifest
    from medreg.training.data import split_records

    record = split_records(read_manifest(data), data, "train")[0]
    with pytest.raises(InputError) as err:
        LoadPaird(["t1", "t2"], _config().preprocess, 64, "levels=3, unet_channels=[4, 8, 8, 8, 8]")(record)
    assert "divisible by 64" in str(err.value) and "shape_multiple" in str(err.value)


def test_landmark_error_of_a_known_translation():
    from medreg.geometry.frames import voxel_to_lps
    from medreg.spatial.transforms import DisplacementField
    from medreg.training.validation import landmark_errors, map_points

    shape = (16, 20, 12)
    affine = np.array([[-2.0, 0, 0, 10], [0, 1.5, 0, -4], [0, 0, 3.0, 2], [0, 0, 0, 1]])
    u = torch.zeros(1, 3, *shape)
    u[:, 0] = 1.5 * 2 / shape[0]  # 1.5 voxels along axis 0 (normalized units)
    u[:, 2] = -1.0 * 2 / shape[2]
    phi = DisplacementField(u)
    vox = np.array([[3.0, 4.0, 5.0], [7.5, 10.2, 2.0]])
    fixed = voxel_to_lps(affine, vox)
    moving = voxel_to_lps(affine, vox + [1.5, 0, -1.0])
    assert np.allclose(map_points(phi, fixed, affine, shape), moving, atol=1e-4)
    assert np.allclose(landmark_errors(phi, fixed, moving, affine, shape), 0, atol=1e-4)
    assert np.allclose(landmark_errors(phi, fixed, fixed, affine, shape), np.hypot(3.0, 3.0), atol=1e-4)


# --------------------------------------------------------------------------- bad input
def test_missing_and_empty_manifest(tmp_path):
    with pytest.raises(InputError, match="medreg preprocess"):
        _run(_config(), tmp_path / "nothing", tmp_path / "run")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "manifest.json").write_text("")
    with pytest.raises(InputError, match="empty file"):
        _run(_config(), tmp_path / "empty", tmp_path / "run")


def test_manifest_of_another_dataset(tmp_path):
    write_synthetic_dataset(tmp_path / "lung", dataset="demo-lung", channels=("ct",), n_train=1, n_test=0)
    with pytest.raises(InputError, match="dataset 'demo-brain'.*'demo-lung'"):
        _run(_config(), tmp_path / "lung", tmp_path / "run")


def test_missing_channel_and_missing_split(data, tmp_path):
    write_synthetic_dataset(tmp_path / "t1only", channels=("t1",), n_train=1, n_test=0)
    with pytest.raises(InputError, match="preprocess.modalities"):
        _run(_config(), tmp_path / "t1only", tmp_path / "run")
    with pytest.raises(InputError, match="data.train_split"):
        _run(_config("data.train_split=training"), data, tmp_path / "run")


def test_run_folder_rules(data, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="--resume"):
        _run(_config(), data, tmp_path / "busy")
    with pytest.raises(InputError, match="resume from"):
        _run(None, data, tmp_path / "busy", resume=True)
    config = _config("train.steps=2", "train.val_every=2")
    _run(config, data, tmp_path / "run")
    with pytest.raises(ConfigError, match="train.lr"):
        _run(_config("train.steps=4", "train.val_every=2", "train.lr=1e-2"), data, tmp_path / "run", resume=True)
    more = _run(_config("train.steps=4", "train.val_every=2"), data, tmp_path / "run", resume=True)
    assert more.step == 4


# --------------------------------------------------------------------------- DDP
_WORKER = textwrap.dedent("""
    import sys
    from safetensors.torch import save_model
    from medreg.config import load_config
    from medreg.train import train
    config = load_config(sys.argv[1])
    result = train(config, sys.argv[2], sys.argv[3], device="cpu", progress=False, tensorboard=False)
    save_model(result.model, sys.argv[4])
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_cpu_processes_with_gloo_end_with_identical_weights(data, tmp_path):
    from safetensors.torch import load_file

    config = _config("train.steps=3", "train.val_every=3", "train.batch_size=1")
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(config.to_yaml())
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    port = str(_free_port())
    procs = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=port, OMP_NUM_THREADS="1")
        procs.append(subprocess.Popen([sys.executable, str(script), str(cfg_path), str(data), str(tmp_path / "run"),
                                       str(tmp_path / f"rank{rank}.safetensors")], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    w0 = load_file(str(tmp_path / "rank0.safetensors"))
    w1 = load_file(str(tmp_path / "rank1.safetensors"))
    assert w0.keys() == w1.keys()
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    assert any(w0[k].abs().sum() > 0 for k in w0 if k.endswith("head.weight"))  # it trained
    single, _ = load_model(tmp_path / "run" / "checkpoints" / "last")  # rank 0 wrote the checkpoint
    assert all(torch.equal(single.state_dict()[k], w0[k]) for k in w0)


def test_out_of_memory_says_what_to_change(data, tmp_path, monkeypatch):
    from medreg.errors import MedregError
    from medreg.registration.objective import RegistrationObjective

    def oom(self, moving, fixed):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(RegistrationObjective, "forward", oom)
    with pytest.raises(MedregError) as err:
        _run(_config("train.steps=2"), data, tmp_path / "run")
    text = str(err.value)
    assert "out of memory" in text and "train.batch_size" in text and "preprocess.spacing" in text


def test_prepare_pair_puts_a_new_pair_on_the_network_grid_with_its_geometry():
    from medreg.geometry.frames import lps_to_voxel, voxel_to_lps
    from medreg.io.nifti import Volume
    from medreg.inference.prepare import prepare_pair

    config = _config()  # network grid 2 mm; data preprocessed at 1 mm as in the demo
    data_pre = config.preprocess.model_copy(update={"spacing": [1.0, 1.0, 1.0]})
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    affine[:3, 3] = [20.0, 25.0, -10.0]
    grids = np.meshgrid(*[np.arange(40.0)] * 3, indexing="ij")
    centre_vox = np.array([17.0, 21.0, 15.0])
    img = np.exp(-sum((g - c) ** 2 for g, c in zip(grids, centre_vox)) / 50.0).astype(np.float32)
    vol = Volume(img, affine)
    from medreg.transforms.input_pipeline import InputPipeline

    pair = prepare_pair([vol, vol], [vol, vol], InputPipeline.for_model(config, data_pre))
    assert pair.fixed.shape[:2] == (1, 2) and all(s % 16 == 0 for s in pair.fixed.shape[2:])
    assert np.allclose(np.linalg.norm(pair.geometry.affine[:3, :3], axis=0), 2.0)
    # the blob's centre on the network grid sits at the same world point as in the input
    world = _centroid_lps(pair.fixed[0], pair.geometry.affine)[None]
    assert np.allclose(world, voxel_to_lps(affine, centre_vox[None]), atol=0.05)
    back = pair.geometry.voxel_to_original(lps_to_voxel(pair.geometry.affine, world))
    assert np.allclose(voxel_to_lps(affine, back), world)


def test_validation_from_the_training_split_is_held_out_of_training():
    from types import SimpleNamespace

    import pytest

    from medreg.errors import ConfigError
    from medreg.training.data import hold_out

    train = [{"id": f"p{i}"} for i in range(5)]
    test = [{"id": "t0"}]
    cfg = SimpleNamespace(train_split="train", val_split="train", val_pairs=2)
    tr, va = hold_out(train, train[:2], cfg)
    assert [r["id"] for r in tr] == ["p0", "p1", "p2"] and [r["id"] for r in va] == ["p3", "p4"]
    assert not {r["id"] for r in tr} & {r["id"] for r in va}
    other = SimpleNamespace(train_split="train", val_split="test", val_pairs=2)
    assert hold_out(train, test, other) == (train, test)
    with pytest.raises(ConfigError, match="val_pairs=5 would leave no training pairs"):
        hold_out(train, train, SimpleNamespace(train_split="train", val_split="train", val_pairs=5))


def test_training_never_sees_its_validation_pairs(data, tmp_path, monkeypatch):
    """The validation pairs held out of the training split are held out of the training set itself
    (before 2026-12-01 the training set was built before the hold-out and still held them)."""
    import medreg.train as train_module

    seen = []
    real = train_module.make_dataset

    def spy(records, loader, cache):
        seen.append([r["id"] for r in records])
        return real(records, loader, cache)

    monkeypatch.setattr(train_module, "make_dataset", spy)
    config = _config("train.steps=2", "train.val_every=2", "train.augmentation.enabled=false")
    _run(config, data, tmp_path / "run")
    import json

    manifest = json.loads((data / "manifest.json").read_text())
    train_ids = [p["id"] for p in manifest["pairs"] if p["split"] == "train"]
    assert seen == [train_ids[:-2]]  # the last two (data.val_pairs) validate only
    logged = (tmp_path / "run" / "metrics.csv").read_text()
    assert ",val," in logged  # and validation still ran on them
