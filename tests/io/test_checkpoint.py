"""Checkpoints: the model loads from the file alone, trainer state round-trips, writes are atomic."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from medreg.config import load_config, preset_path
from medreg.errors import InputError
from medreg.inference.bundle import load_model
from medreg.io import checkpoint as ckpt
from medreg.registration.build import build_model


def _config(*overrides):
    return load_config(preset_path("demo-brain"), ["model.unet_channels=[4, 8, 8]", *overrides])


def _trained_model(config, seed=0):
    torch.manual_seed(seed)
    model = build_model(config.model, len(config.channels))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("shared", [False, True])
def test_model_loads_from_the_file_alone(tmp_path, shared):
    config = _config(f"model.share_weights={str(shared).lower()}", "train.seed=5")
    model = _trained_model(config)
    ckpt.save_checkpoint(tmp_path / "run" / "checkpoints" / "last", model, config.to_json(), step=7)
    file = tmp_path / "run" / "checkpoints" / "last" / "model.safetensors"
    loaded, loaded_config = load_model(file)
    assert loaded_config == config
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    x = torch.rand(1, 2, 16, 16, 16)
    y = torch.rand(1, 2, 16, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x, y).on_grid((16, 16, 16)), loaded(x, y).on_grid((16, 16, 16)))
    # a run folder and a checkpoint folder resolve to the same file
    assert ckpt.resolve_checkpoint(tmp_path / "run") == file
    assert ckpt.resolve_checkpoint(file.parent) == file
    assert ckpt.read_metadata(file)["step"] == "7"


def test_not_a_medreg_checkpoint(tmp_path):
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(InputError, match="medreg checkpoint"):
        load_model(other)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(InputError, match="unreadable"):
        load_model(junk)
    with pytest.raises(InputError, match="found nothing"):
        load_model(tmp_path / "missing")


def test_trainer_state_round_trip_is_exact(tmp_path):
    config = _config()
    model = _trained_model(config)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = sum((p ** 2).sum() for p in model.parameters())
    loss.backward()
    opt.step()
    np.random.seed(3)
    random.seed(4)
    state = {"step": 11, "optimizer": opt.state_dict(), "rng": {"torch": torch.get_rng_state(),
             "numpy": np.random.get_state(), "python": random.getstate()}, "best": {"tre_mm": 1.5}}
    ckpt.save_checkpoint(tmp_path / "last", model, config.to_json(), step=11, trainer_state=state)
    back = ckpt.load_trainer_state(tmp_path / "last")
    assert back["step"] == 11 and back["best"] == {"tre_mm": 1.5}
    for k, v in opt.state_dict()["state"].items():
        for name, t in v.items():
            assert torch.equal(back["optimizer"]["state"][k][name], t)
    assert back["optimizer"]["param_groups"] == opt.state_dict()["param_groups"]
    assert torch.equal(back["rng"]["torch"], state["rng"]["torch"])
    np.random.set_state(back["rng"]["numpy"])
    random.setstate(back["rng"]["python"])
    a = (np.random.rand(), random.random())
    np.random.seed(3)
    random.seed(4)
    assert a == (np.random.rand(), random.random())
    # loadable into a fresh optimiser
    fresh = torch.optim.Adam(build_model(config.model, 2).parameters(), lr=1e-3)
    fresh.load_state_dict(back["optimizer"])
    assert not list((tmp_path / "last").glob("*.pt")) and json.loads((tmp_path / "last" / "trainer_state.json").read_text())


def test_a_write_killed_midway_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    import safetensors.torch

    config = _config()
    first = _trained_model(config, seed=1)
    ckpt.save_checkpoint(tmp_path / "last", first, config.to_json(), step=5, trainer_state={"step": 5})
    real_save_file = safetensors.torch.save_file

    def dying_save_file(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:  # the temporary file exists, half written ...
            fh.write(b"\x00" * 17)
        raise KeyboardInterrupt("killed")  # ... when the process dies

    monkeypatch.setattr(safetensors.torch, "save_file", dying_save_file)
    second = _trained_model(config, seed=2)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(tmp_path / "last", second, config.to_json(), step=10, trainer_state={"step": 10})
    monkeypatch.setattr(safetensors.torch, "save_file", real_save_file)
    loaded, _ = load_model(tmp_path / "last")
    for a, b in zip(first.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    assert ckpt.load_trainer_state(tmp_path / "last")["step"] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]  # no temporary folder left behind


def test_killed_between_the_two_renames_falls_back_to_the_old_checkpoint(tmp_path):
    config = _config()
    model = _trained_model(config)
    ckpt.save_checkpoint(tmp_path / "checkpoints" / "last", model, config.to_json(), step=3, trainer_state={"step": 3})
    (tmp_path / "checkpoints" / "last").rename(tmp_path / "checkpoints" / ".last.old")
    assert ckpt.resolve_checkpoint(tmp_path).parent.name == ".last.old"
    assert ckpt.load_trainer_state(tmp_path / "checkpoints" / "last")["step"] == 3
    ckpt.save_checkpoint(tmp_path / "checkpoints" / "last", model, config.to_json(), step=4, trainer_state={"step": 4})
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last"]
    assert ckpt.load_trainer_state(tmp_path / "checkpoints" / "last")["step"] == 4
