"""pipelines/set_global_stage.py: a model file with another default global stage, the weights unchanged."""

import runpy
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from medreg.config import load_config, preset_path
from medreg.inference.bundle import load_bundle
from medreg.io.checkpoint import read_metadata, save_model_file
from medreg.registration.build import build_model

SCRIPT = Path(__file__).resolve().parents[2] / "pipelines" / "set_global_stage.py"


def test_the_stage_changes_and_nothing_else(tmp_path, monkeypatch):
    config = load_config(preset_path("demo-lung"), ["model.unet_channels=[4, 8, 8]"])
    assert config.global_stage.mode == "none"
    src = save_model_file(tmp_path / "m.safetensors", build_model(config.model, 1), config.model_dump_json(), step=7)
    out = tmp_path / "m-affine.safetensors"
    monkeypatch.setattr(sys, "argv", ["set", str(src), "affine", str(out)])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    assert done.value.code == 0
    assert load_bundle(out).config.global_stage.mode == "affine"
    a, b = load_file(str(src)), load_file(str(out))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    ma, mb = read_metadata(src), read_metadata(out)
    assert {k for k in ma if ma[k] != mb.get(k)} == {"config"}
    monkeypatch.setattr(sys, "argv", ["set", str(src), "rigid", str(out)])  # never overwrites
    with pytest.raises(SystemExit) as again:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    assert again.value.code == 2 and load_bundle(out).config.global_stage.mode == "affine"
