"""The training config: presets load, strict keys and types, errors name key and file, overrides, includes."""

from __future__ import annotations

from pathlib import Path

import pytest

from medreg.config import CONFIG_DIR, DATASETS, Config, changed_keys, load_config, preset_path
from medreg.errors import ConfigError
from medreg.registration.build import required_multiple

PRESETS = DATASETS  # every registered dataset has a training preset (copd: the DIR-Lab one)


@pytest.mark.parametrize("name", PRESETS)
def test_presets_load_and_fit_their_model(name):
    config = load_config(preset_path(name))
    assert isinstance(config, Config)
    assert config.data.dataset == name
    assert config.preprocess.shape_multiple % required_multiple(config.model) == 0


def test_demo_brain_is_small_enough_for_a_cpu():
    config = load_config(preset_path("demo-brain"))
    assert config.preprocess.spacing == [2.0, 2.0, 2.0]
    assert config.channels == ["t1", "t2"]
    assert max(config.model.unet_channels) <= 16


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def _base(tmp_path):
    return _write(tmp_path, "base.yaml", f"defaults: [{CONFIG_DIR / 'demo-brain.yaml'}]\n")


def test_unknown_key_names_key_and_file(tmp_path):
    path = _write(tmp_path, "bad.yaml", f"defaults: [{CONFIG_DIR / 'demo-brain.yaml'}]\ntrain:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "train.lrr" in str(err.value) and str(path) in str(err.value) and "unknown key" in str(err.value)


def test_wrong_type_names_key_and_file(tmp_path):
    path = _write(tmp_path, "bad.yaml", f"defaults: [{CONFIG_DIR / 'demo-brain.yaml'}]\ntrain:\n  steps: many\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "train.steps" in str(err.value) and str(path) in str(err.value) and "many" in str(err.value)


def test_string_number_is_not_an_int(tmp_path):
    path = _write(tmp_path, "bad.yaml", f"defaults: [{CONFIG_DIR / 'demo-brain.yaml'}]\ntrain:\n  batch_size: '2'\n")
    with pytest.raises(ConfigError, match="train.batch_size"):
        load_config(path)


def test_error_in_an_included_file_names_that_file(tmp_path):
    inner = _write(tmp_path, "inner.yaml", "loss:\n  window: 4\n")
    outer = _write(tmp_path, "outer.yaml", f"defaults: [{CONFIG_DIR / 'demo-brain.yaml'}, inner.yaml]\n")
    with pytest.raises(ConfigError) as err:
        load_config(outer)
    assert "loss.window" in str(err.value) and str(inner) in str(err.value)


def test_override_sets_values_and_beats_files():
    config = load_config(preset_path("demo-brain"), ["train.lr=1e-4", "model.unet_channels=[4, 8, 8]",
                                                     "train.augmentation.enabled=false"])
    assert config.train.lr == pytest.approx(1e-4) and isinstance(config.train.lr, float)
    assert config.model.unet_channels == [4, 8, 8]
    assert config.train.augmentation.enabled is False
    assert changed_keys(load_config(preset_path("demo-brain")), config) == [
        "model.unet_channels", "train.augmentation.enabled", "train.lr"]


@pytest.mark.parametrize("override, key", [("train.lrr=1", "train.lrr"), ("train.lr=fast", "train.lr"),
                                           ("model.levels=2.5", "model.levels")])
def test_bad_override_names_key_and_override(override, key):
    with pytest.raises(ConfigError) as err:
        load_config(preset_path("demo-brain"), [override])
    assert key in str(err.value) and f"--set {override}" in str(err.value)


def test_override_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(preset_path("demo-brain"), ["train.lr"])


def test_shape_multiple_the_model_cannot_take_says_what_to_change():
    with pytest.raises(ConfigError) as err:
        load_config(preset_path("demo-brain"), ["preprocess.shape_multiple=8"])
    text = str(err.value)
    assert "preprocess.shape_multiple" in text and "16" in text and "--set preprocess.shape_multiple=8" in text


def test_yaml_code_is_never_evaluated(tmp_path):
    marker = tmp_path / "pwned"
    path = _write(tmp_path, "evil.yaml", f"train: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match="YAML"):
        load_config(path)
    assert not marker.exists()


def test_include_cycle_and_missing_file(tmp_path):
    a = _write(tmp_path, "a.yaml", "defaults: [b.yaml]\n")
    _write(tmp_path, "b.yaml", "defaults: [a.yaml]\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(a)
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.yaml")


def test_unknown_dataset_and_preset():
    with pytest.raises(ConfigError, match="data.dataset"):
        load_config(preset_path("demo-brain"), ["data.dataset=mnist"])
    with pytest.raises(ConfigError, match="unknown dataset"):
        preset_path("mnist")


def test_presets_are_package_data():
    import medreg

    assert CONFIG_DIR == Path(medreg.__file__).parent / "configs"
    assert preset_path("copd").parent == CONFIG_DIR and (CONFIG_DIR / "defaults.yaml").is_file()


def test_config_round_trips_through_yaml_and_json(tmp_path):
    from medreg.config import config_from_json

    config = load_config(preset_path("brats"), ["train.seed=3"])
    path = _write(tmp_path, "resolved.yaml", config.to_yaml())
    assert load_config(path) == config
    assert config_from_json(config.to_json(), "x") == config
    assert config.config_hash() == load_config(path).config_hash()
