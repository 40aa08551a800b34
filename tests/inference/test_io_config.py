"""Instance optimisation as a typed object: presets, step counts, names, flags, and what each preset does."""

import numpy as np
import pytest

from medreg.inference.io_config import NO_IO, IOConfig, Stage, io_from_flags, io_preset


@pytest.mark.parametrize("name", ["field", "finer", "data"])
@pytest.mark.parametrize("steps", [0, 1, 2, 5, 9, 15, 36, 45, 100])
def test_stage_steps_add_up_and_follow_the_shares(name, steps):
    io = io_preset(name, steps)
    n = io.stage_steps()
    assert sum(n) == steps and all(k >= 0 for k in n)
    for stage, k in zip(io.stages, n):
        if stage.fraction is not None:
            assert k == int(np.floor(stage.fraction * steps + 1e-9))


def test_the_presets_step_counts_are_the_documented_ones():
    assert io_preset("field", 15).stage_steps() == [10, 5]
    assert io_preset("data", 36).stage_steps() == [21, 9, 6]
    assert io_preset("finer", 45, 2).stage_steps() == [15, 15, 15]
    assert [s.grid for s in io_preset("data", 36).stages] == ["half", "network", "data"]


def test_flags_map_onto_presets_and_names():
    assert io_from_flags(0).method_name() == "medreg" and not io_from_flags(0).enabled
    assert io_from_flags(15).method_name() == "medreg+io15" and io_from_flags(15).preset == "field"
    assert io_from_flags(45, upsample=2).method_name() == "medreg+io45x2"
    assert io_from_flags(36, upsample="data").method_name() == "medreg+io36-data"
    assert io_from_flags(4, "network").method_name() == "medreg+netio4"
    assert io_from_flags(6, lr=0.05).stages[0].lr == 0.05 and all(s.lr == 0.05 for s in io_from_flags(6, lr=0.05).stages)
    assert io_from_flags(6, "network", lr=1e-4).lr == 1e-4
    assert NO_IO.describe()["mode"] is None and io_from_flags(9).describe()["stages"][0]["steps"] == 6


@pytest.mark.parametrize("kwargs, match", [
    ({"steps": -1}, "io-steps"),
    ({"steps": 3, "mode": "weights"}, "io-mode"),
    ({"steps": 3, "upsample": "datum"}, "io-upsample"),
    ({"steps": 3, "upsample": 0}, "io-upsample"),
    ({"steps": 3, "mode": "network", "upsample": 2}, "io-upsample"),
    ({"steps": 3, "lr": -0.1}, "io-lr"),
])
def test_bad_flags_are_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        io_from_flags(**kwargs)


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="stage grid"):
        Stage("coarse", 0.5, 0.1)
    with pytest.raises(ValueError, match="fraction None"):
        IOConfig(steps=4, stages=(Stage("half", None, 0.1), Stage("network", None, 0.1)))
    with pytest.raises(ValueError, match="at least one stage"):
        IOConfig(steps=4, mode="field", stages=())


@pytest.mark.parametrize("name", ["field", "finer", "data"])
def test_each_preset_lowers_its_own_loss_on_a_small_pair(name):
    """Every stage of every preset ends below where it started (losses of one stage share a grid)."""
    import torch

    from medreg.config import Config
    from medreg.inference.prepare import prepare_pair
    from medreg.inference.refine import refine_field
    from medreg.io.nifti import Volume
    from medreg.spatial import Identity
    from medreg.transforms.input_pipeline import InputPipeline

    cfg = Config.model_validate({
        "data": {"dataset": "brats"},
        "preprocess": {"modalities": ["t1"], "spacing": [4.0, 4.0, 4.0], "intensity": {"kind": "mri_percentile"},
                       "crop_foreground": False, "shape_multiple": 4},
        "model": {"levels": 1, "unet_channels": [4, 8]}, "loss": {"lam": 0.05, "window": 5},
    })
    idx = np.stack(np.meshgrid(*[np.arange(32.0)] * 3, indexing="ij"), -1)
    def blob(c):
        return sum(np.exp(-(((idx - c - o) / s) ** 2).sum(-1)) for o, s in (((0, 0, 0), 6.0), ((5, -4, 3), 3.0)))
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    fixed = Volume(blob(np.array([15.0, 16.0, 15.5])).astype(np.float32), aff)
    moving = Volume(blob(np.array([17.0, 14.5, 16.0])).astype(np.float32), aff)
    pair = prepare_pair([fixed], [moving], InputPipeline.for_model(cfg))
    io = io_preset(name, 12, 2)
    _, losses = refine_field(Identity(), io, cfg.loss, pair, torch.device("cpu"))
    assert len(losses) == 12
    start = 0
    for n in io.stage_steps():
        part = losses[start:start + n]
        start += n
        assert part[-1] < part[0], (name, losses)
