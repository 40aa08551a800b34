"""``medreg probe`` on a tiny trained 3-D model: its validation pairs, the training loss, TRE per step, OOD inputs."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from medreg.cli.main import main
from medreg.config import load_config, preset_path
from medreg.evaluation.probe import ood_variant, probe_model, validation_items
from medreg.inference.bundle import load_bundle
from medreg.registration.objective import objective_from_config
from medreg.train import train
from medreg.training.synthetic import write_synthetic_dataset

TINY = ["model.unet_channels=[4, 8, 8]", "data.val_split=train", "data.val_pairs=2", "train.lr=3e-3", "train.steps=6",
        "train.val_every=3",
        "global_stage.mode=none", "train.augmentation.motion.enabled=false", "train.augmentation.enabled=false"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    data = root / "data"
    write_synthetic_dataset(data, n_train=4, n_test=1, shape=(16, 16, 16), spacing=2.0)
    config = load_config(preset_path("demo-brain"), TINY)
    train(config, data, root / "run", device="cpu", progress=False, tensorboard=False)
    return data, root / "run"


def test_the_probe_runs_on_the_validation_pairs_and_measures_the_training_loss(trained):
    data, run = trained
    bundle = load_bundle(run)
    items = validation_items(bundle.config, data)
    # the pairs medreg train validated on: the last two training pairs, never a test pair
    manifest = json.loads((data / "manifest.json").read_text())
    train_ids = [p["id"] for p in manifest["pairs"] if p["split"] == "train"]
    assert [i["id"] for i in items] == train_ids[-2:]
    rows = probe_model(bundle.model, bundle.config, items, unroll=2)
    steps = 2 * 3  # three levels, unrolled twice
    assert len(rows) == 2 * (steps + 1)
    item = items[0]
    first = [r for r in rows if r["pair"] == item["id"]]
    assert [r["step"] for r in first] == list(range(steps + 1))
    assert [r["beyond_training"] for r in first] == [0] * 4 + [1] * 3
    # after the model's own steps the probe's loss is the training objective's loss on that pair
    fixed = torch.as_tensor(item["fixed"])[None]
    moving = torch.as_tensor(item["moving"])[None]
    with torch.no_grad():
        res = objective_from_config(bundle.model, bundle.config.loss)(moving, fixed)
    assert first[3]["loss"] == pytest.approx(float(res.total), rel=1e-4, abs=1e-6)
    # step 0 is no registration: its TRE is the distance between the landmark sets
    before = np.linalg.norm(item["fixed_points"] - item["moving_points"], axis=1).mean()
    assert first[0]["tre_mm"] == pytest.approx(before, rel=1e-6)
    assert first[0]["update_rms_vox"] == 0 and np.isnan(first[0]["cos_loss"])
    assert all(-1 <= r["cos_loss"] <= 1 for r in first[1:])


def test_ood_variants_change_the_input_as_stated():
    image = torch.rand(2, 4, 4, 4)
    assert torch.equal(ood_variant(image, "swap-channels"), image.flip(0))
    assert torch.allclose(ood_variant(image, "invert"), 1 - image)
    from medreg.errors import ConfigError

    with pytest.raises(ConfigError, match="two or more channels"):
        ood_variant(image[:1], "swap-channels")


def test_medreg_probe_writes_curves_and_refuses_a_used_folder(trained, tmp_path, capsys):
    data, run = trained
    out = tmp_path / "probe"
    code = main(["probe", "--model", str(run), "--data", str(data), "--out", str(out), "--unroll", "2",
                 "--ood", "swap-channels", "--pairs", "1", "--threads", "2"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "as trained" in printed and "swap-channels" in printed
    with open(out / "summary.csv") as f:
        summary = list(csv.DictReader(f))
    assert {r["condition"] for r in summary} == {"as trained", "swap-channels"}
    assert len(summary) == 2 * 7
    info = json.loads((out / "probe.json").read_text())
    assert info["model_steps"] == 3 and info["unroll"] == 2 and len(info["pairs"]) == 1
    assert (out / "steps.png").stat().st_size > 1000
    assert main(["probe", "--model", str(run), "--data", str(data), "--out", str(out)]) == 2
    assert "output folder" in capsys.readouterr().err
    assert main(["probe", "--model", str(run), "--data", str(data), "--out", str(tmp_path / "x"),
                 "--unroll", "0"]) == 2
    assert not (tmp_path / "x").exists()
