"""Single-channel any-contrast models: config, one record per contrast, the random contrast, init from a
two-channel model, training, and ``medreg evaluate --contrasts``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medreg.config import load_config, preset_path
from medreg.errors import ConfigError, InputError
from medreg.training.augment import PairAugmenter, random_contrast, random_curve
from medreg.training.data import expand_contrasts, train_val_records
from medreg.training.synthetic import write_synthetic_dataset

TINY = ["model.unet_channels=[4, 8, 8]", "train.log_every=1", "train.lr=3e-3", "global_stage.mode=none",
        "train.augmentation.motion.enabled=false"]
ANY = ["data.contrasts=[t1, t2]", "preprocess.modalities=[t1]"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_dataset(root, n_train=4, n_test=2, shape=(16, 16, 16), spacing=2.0)
    return root


def test_config_needs_one_channel_and_distinct_contrasts():
    config = load_config(preset_path("demo-brain"), [*TINY, *ANY])
    assert config.channels == ["t1"] and config.data.contrasts == ["t1", "t2"]
    with pytest.raises(ConfigError, match="single-channel model.*2 channels"):
        load_config(preset_path("demo-brain"), [*TINY, "data.contrasts=[t1, t2]"])
    with pytest.raises(ConfigError, match="twice"):
        load_config(preset_path("demo-brain"), [*TINY, "data.contrasts=[t1, t1]", "preprocess.modalities=[t1]"])
    shipped = load_config("medreg/configs/demo-brain-any.yaml")
    assert shipped.channels == ["t1"] and shipped.data.contrasts == ["t1", "t2", "flair"]


def test_one_record_per_contrast_and_the_hold_out_is_per_pair(data):
    from medreg.datasets.manifest import read_manifest

    config = load_config(preset_path("demo-brain"), [*TINY, *ANY, "data.val_split=train", "data.val_pairs=1"])
    manifest = read_manifest(data / "manifest.json")
    train, val = train_val_records(manifest, data / "manifest.json", config.data, config.channels)
    assert [r["id"] for r in val] == ["pair003@t1", "pair003@t2"]
    assert len(train) == 6 and {r["id"].split("@")[0] for r in train} == {"pair000", "pair001", "pair002"}
    for r in train + val:
        assert list(r["fixed"]) == ["t1"] and r["fixed"]["t1"].endswith(f"fixed_{r['contrast']}.nii.gz")
        assert r["moving"]["t1"].endswith(f"moving_{r['contrast']}.nii.gz")
    assert expand_contrasts(train, []) is train  # off: unchanged


def test_a_missing_contrast_is_named(data):
    from medreg.datasets.manifest import read_manifest
    from medreg.training.data import check_manifest

    config = load_config(preset_path("demo-brain"), [*TINY, "data.contrasts=[t1, flair]", "preprocess.modalities=[t1]"])
    with pytest.raises(InputError, match=r"contrasts \['t1', 'flair'\].*data.contrasts"):
        check_manifest(read_manifest(data / "manifest.json"), data / "manifest.json", config)


def test_random_contrast_keeps_background_and_is_shared_and_deterministic():
    rng = np.random.default_rng(0)
    image = torch.rand(1, 8, 8, 8)
    image[:, :2] = 0
    curves = [random_curve(rng, 6, 0.4)]
    a, b = random_contrast(image, curves), random_contrast(image.clone(), curves)
    assert torch.equal(a, b) and float(a.min()) >= 0 and float(a.max()) == pytest.approx(1.0)
    assert not a[:, :2].any()  # background stays 0
    other = random_contrast(image, [random_curve(np.random.default_rng(1), 6, 0.4)])
    assert not torch.allclose(a, other)
    cfg = load_config(preset_path("demo-brain"), [*TINY, "train.augmentation.contrast.prob=1.0"]).train.augmentation
    off = load_config(preset_path("demo-brain"), TINY).train.augmentation
    f, m = torch.rand(2, 12, 12, 12), torch.rand(2, 12, 12, 12)
    f1, m1 = PairAugmenter(cfg)(f, m, seed=5)
    f2, m2 = PairAugmenter(cfg)(f, m, seed=5)
    assert torch.equal(f1, f2) and torch.equal(m1, m2)
    f0, m0 = PairAugmenter(off)(f, m, seed=5)
    assert not torch.allclose(f0, f1)  # the curve changed the intensities ...
    # ... and with prob 0 the geometric/intensity draws are those of before the contrast option
    g, _ = PairAugmenter(off)(f, m, seed=5)
    assert torch.equal(f0, g)


def test_init_from_a_two_channel_model_sees_one_image_in_both_channels(tmp_path):
    from medreg.registration.build import build_model
    from medreg.train import adapt_input_channels

    two = load_config(preset_path("demo-brain"), TINY)
    one = load_config(preset_path("demo-brain"), [*TINY, *ANY])
    torch.manual_seed(0)
    net2, net1 = build_model(two.model, 2), build_model(one.model, 1)
    with torch.no_grad():
        for p in net2.parameters():  # the last layers start at zero (identity); make the network do something
            p.normal_(0.0, 0.05)
    net1.load_state_dict(adapt_input_channels(net2.state_dict(), net1.state_dict(), 2))
    x, y = torch.rand(1, 1, 32, 32, 32), torch.rand(1, 1, 32, 32, 32)
    with torch.no_grad():
        a = net1(x, y)
        b = net2(x.repeat(1, 2, 1, 1, 1), y.repeat(1, 2, 1, 1, 1))
    grid = torch.rand(1, 3, 4, 4, 4) * 2 - 1
    assert torch.allclose(a(grid), b(grid), atol=1e-5) and not torch.allclose(a(grid), grid, atol=1e-4)
    with pytest.raises(ConfigError, match="cannot adapt"):
        adapt_input_channels({"w": torch.zeros(4, 3, 3)}, {"w": torch.zeros(4, 2, 2)}, 2)


def test_any_contrast_model_trains_and_is_evaluated_per_contrast(data, tmp_path):
    import json

    from medreg.evaluate import EvaluationOptions, evaluate
    from medreg.evaluation.rows import read_rows
    from medreg.train import train

    base = load_config(preset_path("demo-brain"), [*TINY, "train.steps=2", "train.val_every=2"])
    two = train(base, data, tmp_path / "two", device="cpu", progress=False, tensorboard=False)
    config = load_config(preset_path("demo-brain"), [*TINY, *ANY, "train.steps=3", "train.val_every=3",
                                                     "train.augmentation.contrast.prob=1.0"])
    run = train(config, data, tmp_path / "any", device="cpu", progress=False, tensorboard=False,
                init=tmp_path / "two" / "checkpoints" / "last")
    assert run.step == 3
    assert "summed per image" in json.loads((tmp_path / "any" / "init.json").read_text())["adapted"]
    result = evaluate(EvaluationOptions(dataset="demo-brain", data=data, out=tmp_path / "eval",
                                        model=tmp_path / "any" / "checkpoints" / "last", baselines=["none"],
                                        contrasts=["t1", "t2"], threads=1, progress=False))
    assert result.ok
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    rows = read_rows(tmp_path / "eval")
    assert {r["method"] for r in rows} == {"medreg@t1", "none@t1", "medreg@t2", "none@t2"}
    by = {(r["pair"], r["method"]): r for r in rows}
    for pair in ("pair004", "pair005"):
        assert by[(pair, "medreg@t1")]["input_channel"] == "t1" and by[(pair, "medreg@t2")]["input_channel"] == "t2"
        # the model read a different image per contrast, so its results differ
        assert by[(pair, "medreg@t1")]["tre_mean"] != by[(pair, "medreg@t2")]["tre_mean"]
    assert summary  # one summary row per method and contrast
    # a two-channel model is refused: it reads all its channels whatever the contrast
    with pytest.raises(ConfigError, match="--contrasts evaluates single-channel"):
        evaluate(EvaluationOptions(dataset="demo-brain", data=data, out=tmp_path / "eval2",
                                   model=tmp_path / "two" / "checkpoints" / "last", contrasts=["t1", "t2"],
                                   threads=1, progress=False))
