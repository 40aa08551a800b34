"""The step probe: descent cosines, unrolling, splitting a model into its steps, dense composition."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from medreg.losses import bending_energy_loss, diffusion_loss, ssd_loss
from medreg.networks import FCNet
from medreg.registration import FromVectorField, RegistrationModule, TwoStep, multistep_steps, stack_two_step
from medreg.registration.probe import StepLoss, count_steps, model_steps, probe_steps, unrolled_steps
from medreg.registration.wrappers import Downsample
from medreg.spatial import identity_grid
from medreg.spatial.grid import sample, voxel_scale
from medreg.spatial.transforms import DisplacementField


def _blob_pair(shape=(12, 16), shift=(1.5, -2.0)):
    """A smooth blob and the same blob shifted by ``shift`` voxels."""
    axes = [torch.arange(n, dtype=torch.float32) for n in shape]
    yy, xx = torch.meshgrid(*axes, indexing="ij")
    c = [n / 2 for n in shape]

    def blob(dy, dx):
        return torch.exp(-((yy - c[0] - dy) ** 2 + (xx - c[1] - dx) ** 2) / 8.0)[None, None]

    moving = torch.cat([blob(*shift), blob(shift[0] * 0.5, shift[1])])
    fixed = torch.cat([blob(0, 0), blob(0, 0)])
    return moving, fixed


class GradientStep(RegistrationModule):
    """A 'network' whose step is exactly ``-eta * grad L`` (in voxel units) at the identity."""

    def __init__(self, loss: StepLoss, eta: float):
        super().__init__()
        self.loss, self.eta = loss, eta

    def forward(self, moving, fixed):
        shape = fixed.shape[2:]
        u = torch.zeros(fixed.shape[0], len(shape), *shape, requires_grad=True)
        with torch.enable_grad():
            total = self.loss.terms(moving, fixed, u)[0]
            g, = torch.autograd.grad(total.sum(), u)
        s = voxel_scale(shape, u)
        return DisplacementField(-self.eta * g / s ** 2)  # u_vox = -eta * dL/du_vox


def test_a_gradient_step_has_descent_cosine_one_and_lowers_the_loss():
    moving, fixed = _blob_pair()
    loss = StepLoss(ssd_loss, diffusion_loss, lam=0.05)
    model = stack_two_step(GradientStep(loss, eta=20.0), 3)
    res = probe_steps(model_steps(model, moving, fixed), moving, fixed, loss)
    assert res.steps == 3
    assert torch.allclose(res.cosine["loss"][1], torch.ones(2, dtype=torch.float64), atol=1e-5)
    assert (res.loss_change[1:] < 0).all()
    assert (res.cosine["loss"][2:] > 0.5).all()  # later steps: a gradient step of the warped image, still descent
    assert math.isnan(res.cosine["loss"][0, 0])


def test_an_ascent_step_has_negative_cosine():
    moving, fixed = _blob_pair()
    loss = StepLoss(ssd_loss, diffusion_loss, lam=0.05)
    res = probe_steps([GradientStep(loss, eta=-5.0)(moving, fixed)], moving, fixed, loss)
    assert torch.allclose(res.cosine["loss"][1], -torch.ones(2, dtype=torch.float64), atol=1e-5)
    assert (res.loss_change[1] > 0).all()


def test_unrolling_a_zero_network_changes_nothing():
    moving, fixed = _blob_pair()
    model = stack_two_step(FromVectorField(FCNet((12, 16), in_channels=2, hidden=8)), 3)  # zero last layer
    maps = unrolled_steps(model, moving, fixed, 4)
    assert len(maps) == 12
    res = probe_steps(maps, moving, fixed, StepLoss(ssd_loss, diffusion_loss, lam=0.05), trained_steps=3)
    assert torch.equal(res.loss, res.loss[:1].expand_as(res.loss))
    assert (res.update_rms == 0).all() and (res.loss_change[1:] == 0).all()
    assert torch.isnan(res.cosine["loss"]).all()  # no update, no direction
    rows = res.rows()
    assert [r["beyond_training"] for r in rows] == [0, 0, 0, 0] + [1] * 9


class _Conv(nn.Module):
    def __init__(self, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        nn.init.normal_(self.conv.weight, std=0.02)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x):
        return self.conv(x)


def test_model_steps_end_at_the_model_and_follow_its_tree():
    moving, fixed = _blob_pair((16, 16))
    model = TwoStep(Downsample(TwoStep(Downsample(FromVectorField(_Conv(0))), FromVectorField(_Conv(1)))),
                    FromVectorField(_Conv(2)))
    steps = model_steps(model, moving, fixed)
    assert len(steps) == count_steps(model) == 3
    full = model(moving, fixed).on_grid((16, 16))
    assert torch.allclose(steps[-1].on_grid((16, 16)), full, atol=1e-6)
    first = model.a.a.a.a(*model.a.a.a.pooled(*model.a.pooled(moving, fixed)))
    assert torch.allclose(steps[0].on_grid((16, 16)), first.on_grid((16, 16)), atol=1e-6)
    # repeating the model: repeats=1 is the model's own steps, repeats=2 continues from its output
    assert len(unrolled_steps(model, moving, fixed, 2)) == 6


def test_unrolling_a_shared_step_model_is_more_applications_of_it():
    moving, fixed = _blob_pair((16, 16))
    inner = FromVectorField(_Conv(3))
    twice = unrolled_steps(stack_two_step(inner, 3), moving, fixed, 2)
    direct = multistep_steps(inner, moving, fixed, 6)
    for a, b in zip(twice, direct):
        assert torch.allclose(a.on_grid((16, 16)), b.on_grid((16, 16)), atol=1e-5)


def test_dense_composition_equals_lazy_for_two_steps_and_stays_close_for_more():
    moving, fixed = _blob_pair((16, 16))
    inner = FromVectorField(_Conv(4))
    lazy = stack_two_step(inner, 2)(moving, fixed).on_grid((16, 16))
    dense = stack_two_step(inner, 2, compose="dense")(moving, fixed).on_grid((16, 16))
    assert torch.allclose(lazy, dense, atol=1e-6)
    lazy5 = stack_two_step(inner, 5)(moving, fixed).on_grid((16, 16))
    dense5 = stack_two_step(inner, 5, compose="dense")(moving, fixed).on_grid((16, 16))
    assert 0 < (lazy5 - dense5).abs().max() < 0.1 * (lazy5 - identity_grid((16, 16))).abs().max()


def test_a_field_at_its_own_voxel_centres_is_read_without_interpolation():
    u = torch.randn(3, 2, 9, 7) * 0.2
    grid = identity_grid((9, 7))
    field = DisplacementField(u)
    assert torch.allclose(field(grid), grid + u, atol=0)
    assert torch.allclose(field(grid), grid + sample(u, grid.expand(3, -1, -1, -1)), atol=1e-6)
    off = grid + 0.01
    assert not torch.allclose(field(off), off + u, atol=1e-4)  # elsewhere it interpolates


def test_regularizers_per_pair_average_to_the_batch_value():
    u = torch.randn(4, 3, 6, 7, 5) * 0.1
    for fn in (diffusion_loss, bending_energy_loss):
        per = fn(u, reduction="none")
        assert per.shape == (4,)
        assert torch.allclose(per.mean(), fn(u), rtol=1e-6)
        assert torch.allclose(per[1], fn(u[1:2]), rtol=1e-6)
