"""Instance optimisation as a typed object: presets, step counts, names, flags, and what each preset does."""

import numpy as np
import pytest

from medreg.inference.io_config import (NAMED, NO_IO, TABLES, IOConfig, Stage, io_from_flags, io_preset,
                                       named_preset)


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


def test_named_presets_end_on_the_data_grid_and_have_their_names():
    for name in NAMED:
        steps = sum(TABLES["mri"][name])
        io = named_preset(name)
        assert io.steps == steps and io.stages[-1].grid == "data" and sum(io.stage_steps()) == steps
        assert io.diffeomorphic and io.describe()["diffeomorphic"] is True
        assert io.method_name() == f"medreg+io-{name}"
        assert named_preset(name, diffeomorphic=False).method_name() == f"medreg+io-{name}-additive"
        assert named_preset(name, steps + 3).method_name() == f"medreg+io-{name}{steps + 3}"
        assert io_from_flags(preset=name) == io and not io_from_flags(preset=name, diffeomorphic=False).diffeomorphic
    assert io_from_flags(15, diffeomorphic=True).method_name() == "medreg+io15-diffeo"
    assert not io_from_flags(15).diffeomorphic
    for table in TABLES:
        data_steps = [named_preset(n, table=table).stage_steps()[-1] for n in ("fast", "default", "accurate")]
        assert data_steps == sorted(data_steps) and data_steps[0] >= 1


def test_a_named_preset_takes_the_table_of_the_models_anatomy():
    from types import SimpleNamespace

    def model(kind):
        return SimpleNamespace(preprocess=SimpleNamespace(intensity=SimpleNamespace(kind=kind)))

    io = io_from_flags(preset="default", lr=0.1)
    ct = io.for_model(model("ct_window"))
    assert io.stage_steps() == list(TABLES["mri"]["default"]) and ct.stage_steps() == list(TABLES["ct"]["default"])
    assert ct.method_name() == io.method_name() == "medreg+io-default" and ct.describe()["table"] == "ct"
    assert all(s.lr == 0.1 for s in ct.stages) and ct.diffeomorphic
    assert io.for_model(model("mri_percentile")) == io and ct.for_model(model("ct_window")) == ct
    assert io_from_flags(20, preset="default").for_model(model("ct_window")).steps == 20  # --io-steps stays
    assert io_from_flags(15).for_model(model("ct_window")) == io_from_flags(15)  # not a named preset


@pytest.mark.parametrize("kwargs, match", [
    ({"preset": "quick"}, "io-preset"),
    ({"preset": "fast", "upsample": 2}, "io-preset"),
    ({"preset": "fast", "mode": "network"}, "io-preset"),
    ({"steps": 4, "mode": "network", "diffeomorphic": True}, "io-diffeomorphic"),
    ({"diffeomorphic": True}, "io-diffeomorphic"),
])
def test_preset_flags_that_clash_are_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        io_from_flags(**kwargs)


def _small_pair_and_loss():
    from medreg.config import Config
    from medreg.inference.prepare import prepare_pair
    from medreg.io.nifti import Volume
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
    return prepare_pair([fixed], [moving], InputPipeline.for_model(cfg)), cfg


@pytest.mark.parametrize("diffeomorphic", [False, True])
@pytest.mark.parametrize("name", list(NAMED))
def test_each_named_preset_lowers_its_own_loss_on_a_small_pair(name, diffeomorphic):
    """fast / default / accurate (additive and diffeomorphic): the loss of its last level (the data grid's)
    is lower at the refined map than at the start, every level of three or more steps ends below where it
    started (Adam's first steps move every control point by the full rate, so a level of one or two steps
    may end a little above its start on a pair this small: the data-grid check covers those), and the
    levels record the grid, the steps run and the seconds."""
    import torch

    from medreg.inference.refine import _options, refine_field
    from medreg.registration.field_io import optimize_on_data
    from medreg.spatial import Identity

    pair, cfg = _small_pair_and_loss()
    io = named_preset(name, diffeomorphic=diffeomorphic)
    levels = []
    phi, losses = refine_field(Identity(), io, cfg.loss, pair, torch.device("cpu"), levels=levels)
    assert len(losses) == io.steps and [lv["grid"] for lv in levels] == [s.grid for s in io.stages]
    for lv in levels:
        assert lv["steps_run"] == lv["steps"] and lv["seconds"] >= 0
        if lv["steps"] >= 3:
            assert lv["loss_last"] < lv["loss_first"], (name, diffeomorphic, levels)
    options = {**_options(io.stages[-1], cfg.loss), "steps": 1}
    moving_to_net, fixed_to_net = pair.data_to_network()

    def data_loss(transform):  # the data level's objective at a map: the loss of its first step
        return optimize_on_data(transform, pair.moving_data, pair.fixed_data, moving_to_net, fixed_to_net,
                                tuple(pair.fixed.shape[2:]), **options)[1][0]
    assert data_loss(phi) < 0.95 * data_loss(Identity()), (name, diffeomorphic)


@pytest.mark.parametrize("name", ["field", "finer", "data"])
def test_each_preset_lowers_its_own_loss_on_a_small_pair(name):
    """Every stage of every preset ends below where it started (losses of one stage share a grid)."""
    import torch

    from medreg.inference.refine import refine_field
    from medreg.spatial import Identity

    pair, cfg = _small_pair_and_loss()
    io = io_preset(name, 12, 2)
    _, losses = refine_field(Identity(), io, cfg.loss, pair, torch.device("cpu"))
    assert len(losses) == 12
    start = 0
    for n in io.stage_steps():
        part = losses[start:start + n]
        start += n
        assert part[-1] < part[0], (name, losses)
