"""Label-map synthesis (``train.augmentation.synth``): class fractions on the network grid, images made from the
labels alone (exact per class, shared contrast, deterministic), the loader and a short training run with it."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from medreg.config import load_config, preset_path
from medreg.errors import InputError
from medreg.training.data import LoadPaird, TrainPairs, split_records
from medreg.training.label_synth import LabelSynth, label_fractions
from medreg.training.synthetic import LABEL_EDGES, write_synthetic_dataset

TINY = ["model.unet_channels=[4, 8, 8]", "train.log_every=1", "train.lr=3e-3", "global_stage.mode=none",
        "train.augmentation.motion.enabled=false", "data.val_split=train", "data.val_pairs=1"]
PLAIN = SimpleNamespace(prob=1.0, noise=0.0, blur=0.0, bias=0.0, gamma=0.0)


def _pre(spacing, multiple=1):
    return SimpleNamespace(spacing=spacing, shape_multiple=multiple)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("labelled")
    write_synthetic_dataset(root, n_train=3, n_test=1, shape=(16, 16, 16), spacing=1.0, labels=True)
    return root


def test_fractions_are_block_averages_of_the_one_hot_labels():
    labels = np.zeros((6, 4, 4), dtype=np.int64)
    labels[:2] = 1
    labels[2, :2] = 2  # block (1, 0, z): half class 2, half class 0
    labels[4:] = 3
    frac = label_fractions(labels, np.eye(4), _pre([2.0, 2.0, 2.0]), classes=4)
    assert frac.dtype == torch.float16 and tuple(frac.shape) == (4, 3, 2, 2)
    assert torch.equal(frac[:, 0], torch.tensor([0.0, 1.0, 0.0, 0.0])[:, None, None].expand(4, 2, 2).half())
    assert torch.allclose(frac[:, 1, 0].float(), torch.tensor([0.5, 0.0, 0.5, 0.0])[:, None].expand(4, 2))
    assert torch.allclose(frac[:, 1, 1].float(), torch.tensor([1.0, 0.0, 0.0, 0.0])[:, None].expand(4, 2))
    assert torch.allclose(frac.float().sum(0), torch.ones(3, 2, 2))
    padded = label_fractions(labels, np.eye(4), _pre(None, 8), classes=4)  # 1 mm: padded from 6x4x4 to 8x8x8
    assert tuple(padded.shape) == (4, 8, 8, 8) and not padded[:, 6:].any() and not padded[:, :, 4:].any()
    with pytest.raises(ValueError, match="0..3"):
        label_fractions(labels + 1, np.eye(4), _pre(None), classes=4)


def test_plain_synthesis_gives_one_intensity_per_class_shared_by_fixed_and_moving():
    rng = np.random.default_rng(0)
    fixed = rng.integers(0, 4, size=(8, 8, 8))
    moving = np.roll(fixed, 2, axis=0)
    ff = label_fractions(fixed, np.eye(4), _pre(None), 4)
    mf = label_fractions(moving, np.eye(4), _pre(None), 4)
    f, m = LabelSynth(PLAIN)(ff, mf, channels=2, seed=3)
    assert f.shape == (2, 8, 8, 8) and float(f.min()) >= 0 and float(f.max()) == pytest.approx(1.0)
    for c in range(2):
        values = {k: torch.unique(f[c][torch.from_numpy(fixed == k)]) for k in range(4)}
        assert all(v.numel() == 1 for v in values.values())  # exact: one intensity per class ...
        assert float(values[0]) == 0.0  # ... the background stays 0 ...
        for k in range(4):  # ... and the moving image has the same contrast
            assert torch.allclose(torch.unique(m[c][torch.from_numpy(moving == k)]), values[k])
        # the labels can be read back from the image: distinct classes, distinct intensities
        assert len({round(float(v), 6) for v in values.values()}) == 4
    assert not torch.allclose(f[0], f[1])  # each channel its own contrast


def test_synthesis_is_deterministic_and_drawn_with_its_probability():
    rng = np.random.default_rng(1)
    frac = label_fractions(rng.integers(0, 5, size=(12, 12, 12)), np.eye(4), _pre(None), 5)
    cfg = SimpleNamespace(prob=1.0, noise=0.1, blur=1.5, bias=0.3, gamma=0.4)
    a, b = LabelSynth(cfg)(frac, frac, 1, seed=7), LabelSynth(cfg)(frac, frac, 1, seed=7)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], a[1])  # noise and bias are drawn per image
    other = LabelSynth(cfg)(frac, frac, 1, seed=8)
    assert not torch.allclose(a[0], other[0])
    assert float(a[0].min()) >= 0 and float(a[0].max()) == pytest.approx(1.0)
    assert not a[0][0][frac[0] == 1].any()  # the background stays 0 through noise, blur and bias
    drawn = [LabelSynth(SimpleNamespace(**{**vars(cfg), "prob": 0.3}))(frac, frac, 1, seed=s) is not None
             for s in range(200)]
    assert 0.2 < np.mean(drawn) < 0.4
    assert LabelSynth(SimpleNamespace(**{**vars(cfg), "prob": 0.0}))(frac, frac, 1, seed=7) is None


def test_the_loader_reads_the_label_maps_and_training_pairs_use_them(data):
    from medreg.datasets.manifest import read_manifest

    config = load_config(preset_path("demo-brain"), [*TINY, "preprocess.spacing=null"])
    records = split_records(read_manifest(data / "manifest.json"), data, "train")
    loader = LoadPaird(config.channels, config.preprocess, 16, "", labels=True)
    item = loader(records[0])
    fixed_labels = np.digitize(item["fixed"][0].numpy(), LABEL_EDGES)
    assert torch.equal(item["fixed_fractions"].argmax(0), torch.from_numpy(fixed_labels))
    assert "fixed_fractions" not in LoadPaird(config.channels, config.preprocess, 16, "")(records[0])
    pairs = TrainPairs([item], synth=LabelSynth(PLAIN))
    made = pairs[(0, 5)]
    assert not torch.allclose(made["fixed"], item["fixed"])
    assert len(torch.unique(made["fixed"][0])) == 4  # the labels' four classes, one intensity each
    assert torch.equal(pairs[(0, 5)]["moving"], made["moving"])
    with pytest.raises(InputError, match="no label maps.*synth"):
        loader({**records[0], "fixed_labels": None})


def test_training_with_label_synthesis_runs_and_a_pair_without_labels_is_named(data, tmp_path):
    from medreg.train import train

    config = load_config(preset_path("demo-brain"), [*TINY, "train.steps=4", "train.val_every=2",
                                                     "train.augmentation.synth.prob=1.0"])
    result = train(config, data, tmp_path / "run", device="cpu", progress=False, tensorboard=False)
    assert result.step == 4 and np.isfinite(result.last_val["total"])
    bare = tmp_path / "bare"
    write_synthetic_dataset(bare, n_train=3, n_test=1, shape=(16, 16, 16), spacing=1.0)
    with pytest.raises(InputError, match="pair000.*no label maps"):
        train(config, bare, tmp_path / "run2", device="cpu", progress=False, tensorboard=False)
