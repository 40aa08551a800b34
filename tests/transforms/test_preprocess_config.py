"""PreprocessConfig: strict typed YAML config, errors naming file and key, shipped presets."""

from __future__ import annotations

from pathlib import Path

import pytest

from medreg.datasets.names import DATASETS
from medreg.errors import ConfigError, InputError
from medreg.presets import config_dir
from medreg.transforms.config import CtWindow, MriPercentile, PreprocessConfig, load_preprocess_config
from medreg.transforms.defaults import DEFAULTS, default_config

CONFIGS = config_dir() / "preprocess"

GOOD = """\
modalities: [t1ce, t1]
orientation: ras
spacing: [1, 1, 1.5]
intensity: {kind: mri_percentile, lower: 1, upper: 99}
crop_foreground: true
crop_margin: 2
shape_multiple: 8
max_shape: [160, 192, 160]
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pre.yaml"
    path.write_text(text)
    return path


def test_good_config_loads_with_types(tmp_path):
    cfg = load_preprocess_config(_write(tmp_path, GOOD))
    assert cfg.modalities == ["t1ce", "t1"]
    assert cfg.orientation == "RAS"
    assert cfg.spacing == [1.0, 1.0, 1.5]
    assert isinstance(cfg.intensity, MriPercentile) and cfg.intensity.lower == 1.0
    assert cfg.max_shape == [160, 192, 160]
    ct = load_preprocess_config(_write(tmp_path, "modalities: [ct]\nintensity: {kind: ct_window}\n"))
    assert isinstance(ct.intensity, CtWindow) and (ct.intensity.hu_min, ct.intensity.hu_max) == (-1000.0, 200.0)
    assert ct.spacing is None and ct.shape_multiple == 16


@pytest.mark.parametrize(
    "text, key",
    [
        (GOOD + "resample: yes\n", "resample"),  # unknown key
        (GOOD.replace("shape_multiple: 8", "shape_multiple: '8'"), "shape_multiple"),  # string, not int
        (GOOD.replace("crop_foreground: true", "crop_foreground: 'yes'"), "crop_foreground"),
        (GOOD.replace("spacing: [1, 1, 1.5]", "spacing: [1, 1]"), "spacing"),
        (GOOD.replace("spacing: [1, 1, 1.5]", "spacing: [1, 0, 1]"), "spacing"),
        (GOOD.replace("orientation: ras", "orientation: RRS"), "orientation"),
        (GOOD.replace("kind: mri_percentile", "kind: zscore"), "intensity"),
        (GOOD.replace("lower: 1, upper: 99", "lower: 99, upper: 1"), "intensity"),
        (GOOD.replace("lower: 1,", "lower: 1, hu_min: 3,"), "intensity.mri_percentile.hu_min"),
        (GOOD.replace("max_shape: [160, 192, 160]", "max_shape: [160, 190, 160]"), "max_shape"),
        (GOOD.replace("modalities: [t1ce, t1]", "modalities: [t1, t1]"), "modalities"),
        (GOOD + "target_shape: [160, 192, 160]\n", "at most one of max_shape and target_shape"),
        (GOOD.replace("modalities: [t1ce, t1]", "modalities: []"), "modalities"),
    ],
)
def test_bad_configs_name_file_and_key(tmp_path, text, key):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_preprocess_config(path)
    message = str(info.value)
    assert str(path) in message
    assert key in message


def test_yaml_is_never_evaluated(tmp_path):
    path = _write(tmp_path, "modalities: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError, match="expected valid YAML"):
        load_preprocess_config(path)


def test_missing_empty_and_non_mapping_files(tmp_path):
    with pytest.raises(InputError, match="found nothing"):
        load_preprocess_config(tmp_path / "nope.yaml")
    with pytest.raises(InputError, match="directory"):
        load_preprocess_config(tmp_path)
    with pytest.raises(ConfigError, match="empty file"):
        load_preprocess_config(_write(tmp_path, ""))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_preprocess_config(_write(tmp_path, "- a\n- b\n"))


def test_config_hash_tracks_settings():
    a = default_config("brats")
    b = PreprocessConfig.model_validate({**a.model_dump(), "crop_margin": 5})
    assert a.config_hash() == default_config("brats").config_hash()
    assert a.config_hash() != b.config_hash()


def test_defaults_are_the_shipped_yaml_presets():
    files = {p.stem: p for p in CONFIGS.glob("*.yaml")}
    assert set(files) == set(DEFAULTS) == set(DATASETS)
    for name, path in files.items():
        assert load_preprocess_config(path) == default_config(name), name
        assert DEFAULTS[name] == default_config(name).model_dump(mode="json"), name
    assert default_config("brats").modalities == ["t1ce"]
    assert default_config("demo-brain").modalities == ["t1", "t2", "flair"]
    assert default_config("demo-brain").spacing == [1.0, 1.0, 1.0]
    assert default_config("demo-lung").spacing is None
    assert default_config("demo-lung").intensity.kind == "ct_window"
    assert default_config("copd") == default_config("dirlab")
    assert default_config("learn2reg").crop_foreground is False
    DEFAULTS["brats"]["modalities"].append("t2")  # each access is a new dict
    assert DEFAULTS["brats"]["modalities"] == ["t1ce"]
    assert "mnist" not in DEFAULTS
    with pytest.raises(KeyError):
        DEFAULTS["mnist"]
    with pytest.raises(ConfigError, match="unknown dataset 'mnist'"):
        default_config("mnist")
