"""Models built from the config: structure, identity at initialisation, shapes, weight sharing."""

from __future__ import annotations

import pytest
import torch

from medreg.config import load_config, preset_path
from medreg.registration import AffineStep, Downsample, FromVectorField, TwoStep, VelocityField
from medreg.registration.build import build_model, count_parameters, required_multiple
from medreg.spatial.grid import identity_grid


def _cfg(*overrides):
    return load_config(preset_path("demo-brain"), ["model.unet_channels=[4, 8, 8]", *overrides]).model


def test_default_is_three_level_multistep():
    model = build_model(_cfg(), channels=2)
    # TwoStep(Downsample(TwoStep(Downsample(a), b)), c)
    assert isinstance(model, TwoStep) and isinstance(model.a, Downsample) and isinstance(model.b, FromVectorField)
    inner = model.a.a
    assert isinstance(inner, TwoStep) and isinstance(inner.a, Downsample) and isinstance(inner.a.a, FromVectorField)
    assert inner.a.a is not inner.b is not model.b
    assert model.b.net.net.in_channels == 4  # cat([moving, fixed]) of 2 channels each
    assert required_multiple(_cfg()) == 16


def test_untrained_model_is_identity_and_shape_is_checked():
    model = build_model(_cfg(), channels=2)
    x = torch.rand(1, 2, 16, 16, 32)
    phi = model(x, torch.rand_like(x))
    grid = identity_grid((16, 16, 32))
    assert torch.equal(phi.on_grid((16, 16, 32)), grid.expand(1, -1, -1, -1, -1))
    with pytest.raises(ValueError, match="divisible|even"):
        model(torch.rand(1, 2, 16, 16, 24), torch.rand(1, 2, 16, 16, 24))


def test_shared_weights_reuse_one_unet():
    shared = build_model(_cfg("model.share_weights=true"), channels=1)
    separate = build_model(_cfg(), channels=1)
    assert shared.b is shared.a.a.b is shared.a.a.a.a
    assert count_parameters(separate) == 3 * count_parameters(shared)


@pytest.mark.parametrize("overrides", [["model.field=velocity"], ["model.affine=true", "model.affine_channels=[4, 8]"],
                                       ["model.levels=1", "preprocess.shape_multiple=16"]])
def test_variants_run_and_train(overrides):
    cfg = _cfg(*overrides)
    model = build_model(cfg, channels=1)
    if cfg.field == "velocity":
        assert any(isinstance(m, VelocityField) for m in model.modules())
    if cfg.affine:
        assert isinstance(model.a, AffineStep)
    fixed = torch.rand(1, 1, 16, 16, 16)
    moving = torch.roll(fixed, 1, dims=2)
    coords = model(moving, fixed).on_grid((16, 16, 16))
    coords.sum().backward()
    assert torch.isfinite(coords).all()
    assert all(p.grad is not None for p in model.parameters())
