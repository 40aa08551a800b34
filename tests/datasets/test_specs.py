"""The dataset registry: complete built-in specs, clear errors for unknown and half-registered names, a toy dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medreg.config import load_config, preset_path
from medreg.datasets.base import PairSpec
from medreg.datasets.catalog import dataset_pairs
from medreg.datasets.names import DATASETS
from medreg.datasets.specs import DatasetSpec, dataset_names, get_spec, is_registered, register, unregister
from medreg.errors import ConfigError
from medreg.presets import config_dir
from medreg.transforms.defaults import DEFAULTS, default_config

TOY_TRAIN = """\
defaults: [{defaults}]
data: {{dataset: toy, val_split: null}}
preprocess: {{modalities: [ct], intensity: {{kind: ct_window}}, spacing: null, crop_foreground: false}}
model: {{levels: 1, unet_channels: [4, 8]}}
"""
TOY_PREPROCESS = "modalities: [ct]\nintensity: {kind: ct_window}\ncrop_foreground: false\nshape_multiple: 8\n"


def toy_pairs(root, *, prefix: str = "toy", scale: float = 1.0) -> list[PairSpec]:
    """A toy layout: ``root/<id>_fixed.nii.gz`` and ``root/<id>_moving.nii.gz``."""
    ids = sorted(p.name.removesuffix("_fixed.nii.gz") for p in Path(root).glob("*_fixed.nii.gz"))
    return [PairSpec(id=f"{prefix}{i}", split="train", fixed={"ct": Path(root) / f"{i}_fixed.nii.gz"},
                     moving={"ct": Path(root) / f"{i}_moving.nii.gz"}) for i in ids]


def _presets(folder: Path, train: bool = True, preprocess: bool = True) -> Path:
    (folder / "preprocess").mkdir(parents=True, exist_ok=True)
    if train:
        (folder / "toy.yaml").write_text(TOY_TRAIN.format(defaults=config_dir() / "defaults.yaml"))
    if preprocess:
        (folder / "preprocess" / "toy.yaml").write_text(TOY_PREPROCESS)
    return folder


@pytest.fixture
def toy():
    """Register specs named 'toy' (one at a time) and remove them afterwards."""
    def add(**fields) -> DatasetSpec:
        return register(DatasetSpec("toy", **fields), replace=True)

    yield add
    unregister("toy")
    assert not is_registered("toy")


@pytest.mark.parametrize("name", DATASETS)
def test_every_registered_dataset_has_its_reader_and_both_presets(name):
    spec = get_spec(name)
    assert callable(spec.load_reader())
    assert spec.train_preset_path() == config_dir() / f"{name}.yaml" and spec.train_preset_path().is_file()
    assert spec.preprocess_preset_path() == config_dir() / "preprocess" / f"{name}.yaml"
    assert spec.preprocess_preset_path().is_file()
    assert load_config(spec.train_preset_path()).data.dataset == name
    assert set(spec.options) <= set(spec.reader_options())
    assert spec.builtin == name.startswith("demo-")
    assert spec.builtin == callable(spec.load_builder())


def test_names_in_one_place():
    assert DATASETS == dataset_names() == ("brats", "dirlab", "copd", "learn2reg", "demo-brain", "demo-lung")
    assert get_spec("demo-brain").options == {"modalities": ("t1", "t2")}


@pytest.mark.parametrize("use", [get_spec, dataset_pairs, preset_path, default_config])
def test_unknown_name_is_a_config_error_listing_the_known_ones(use):
    with pytest.raises(ConfigError, match="unknown dataset 'oasis'") as info:
        use("oasis")
    assert all(n in str(info.value) for n in DATASETS)


def test_half_registered_specs_name_what_is_missing(toy, tmp_path):
    toy(reader="medreg.datasets.nope:toy_pairs", config_dir=_presets(tmp_path, preprocess=False))
    with pytest.raises(ConfigError) as info:
        dataset_pairs("toy", tmp_path)
    msg = str(info.value)
    assert "'toy' is only half registered" in msg
    assert "reader" in msg and "medreg.datasets.nope" in msg
    assert f"preprocessing preset: expected the YAML file {tmp_path / 'preprocess' / 'toy.yaml'}, found none" in msg
    assert "training preset" not in msg  # that one is there

    toy(reader=toy_pairs, config_dir=_presets(tmp_path / "b", train=False))
    for use in (dataset_pairs, preset_path, default_config, DEFAULTS.__getitem__):
        with pytest.raises(ConfigError, match=r"training preset: expected the YAML file .*b/toy\.yaml, found none"):
            use("toy")

    toy(reader="medreg.datasets.brats:no_such_reader", config_dir=_presets(tmp_path / "c"))
    with pytest.raises(ConfigError, match="expected a function 'no_such_reader' in medreg.datasets.brats"):
        get_spec("toy")

    toy(reader=toy_pairs, options={"modality": "ct"}, config_dir=_presets(tmp_path / "d"))
    with pytest.raises(ConfigError, match=r"default option\(s\) \['modality'\]: expected some of \['prefix', 'scale'\]"):
        dataset_pairs("toy", tmp_path)


def test_register_refuses_a_spec_without_reader_a_bad_name_or_a_taken_name():
    with pytest.raises(ConfigError, match="'toy': expected a reader"):
        register(DatasetSpec("toy", None))
    with pytest.raises(ConfigError, match="found 'Toy Data'"):
        register(DatasetSpec("Toy Data", toy_pairs))
    with pytest.raises(ConfigError, match="'brats': expected a new name, found it already registered"):
        register(DatasetSpec("brats", toy_pairs))
    assert not is_registered("toy") and get_spec("brats").reader == "medreg.datasets.brats:brats_pairs"


def test_a_toy_dataset_works_end_to_end(toy, tmp_path):
    from medreg.datasets.preprocess import preprocess_dataset
    from medreg.io.nifti import save_volume

    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in ("a", "b"):
        for role in ("fixed", "moving"):
            save_volume(data / f"{i}_{role}.nii.gz", rng.uniform(-1000, 200, (8, 10, 6)).astype(np.float32), np.eye(4))
    toy(reader=toy_pairs, options={"prefix": "case-"}, config_dir=_presets(tmp_path / "cfg"))

    assert [p.id for p in dataset_pairs("toy", data)] == ["case-a", "case-b"]
    assert [p.id for p in dataset_pairs("toy", data, prefix="p")] == ["pa", "pb"]  # the caller's options win
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['modalities'\]"):
        dataset_pairs("toy", data, modalities=("ct",))
    assert "toy" in DEFAULTS and default_config("toy").shape_multiple == 8
    config = load_config(preset_path("toy"))
    assert config.data.dataset == "toy" and config.model.levels == 1

    summary = preprocess_dataset("toy", data, tmp_path / "pp", progress=False)
    assert summary.ok and summary.done == ["case-a", "case-b"]


def test_a_toy_builtin_dataset_is_built_then_read(toy, tmp_path):
    built = []

    def ensure_toy(root=None):
        built.append(root)
        folder = tmp_path / "built"
        folder.mkdir(exist_ok=True)
        (folder / "x_fixed.nii.gz").touch()
        return folder

    toy(reader=toy_pairs, builder=ensure_toy, config_dir=_presets(tmp_path / "cfg"))
    assert get_spec("toy").builtin
    assert [p.id for p in dataset_pairs("toy")] == ["toyx"]
    assert [p.fixed["ct"].parent for p in dataset_pairs("toy", tmp_path / "here")] == [tmp_path / "built"]
    assert built == [None, tmp_path / "here"]
