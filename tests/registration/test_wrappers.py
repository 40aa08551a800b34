import math

import pytest
import torch

from medreg.networks import FCNet, UNet
from medreg.registration import (AffineStep, Downsample, FromVectorField, RegistrationModule,
                                 RegistrationObjective, TwoStep, VelocityField, multistep_steps, stack_two_step)
from medreg.networks import AffineNet
from medreg.spatial import Affine, DisplacementField, identity_grid, warp


class Fixed(RegistrationModule):
    """Returns a fixed transform; remembers the moving image it was shown."""

    def __init__(self, transform):
        super().__init__()
        self.transform = transform
        self.seen = None

    def forward(self, moving, fixed):
        self.seen = moving
        return self.transform


def test_two_step_composes_in_documented_order():
    a = Affine(torch.tensor([[[1.0, 0.3, 0.1], [0.0, 1.0, 0.0]]], dtype=torch.float64))
    b = Affine(torch.tensor([[[0.8, 0.0, 0.0], [0.2, 1.0, -0.2]]], dtype=torch.float64))
    sa, sb = Fixed(a), Fixed(b)
    moving = torch.rand(1, 1, 9, 10, dtype=torch.float64)
    phi = TwoStep(sa, sb)(moving, moving)
    grid = identity_grid((9, 10), dtype=torch.float64)
    torch.testing.assert_close(phi(grid), a(b(grid)))
    assert not torch.allclose(phi(grid), b(a(grid)))  # order matters for these two
    torch.testing.assert_close(sb.seen, warp(moving, a))  # b saw moving warped by phi_a


def _smooth_field_module():
    class Smooth(RegistrationModule):
        def forward(self, moving, fixed):
            shape = fixed.shape[2:]
            g = identity_grid(shape, dtype=fixed.dtype)
            u = torch.stack([0.05 * torch.sin(math.pi * g[:, 1]), 0.04 * torch.cos(math.pi * g[:, 0])], 1)
            return DisplacementField(u)
    return Smooth()


def test_downsample_coarse_and_fine_agree_on_smooth_field():
    m = _smooth_field_module()
    img = torch.rand(1, 1, 64, 64, dtype=torch.float64)
    fine = m(img, img).displacement((64, 64))
    coarse = Downsample(m)(img, img).displacement((64, 64))
    interior = (slice(None), slice(None), slice(2, -2), slice(2, -2))
    assert (fine - coarse)[interior].abs().max().item() < 2e-3  # normalized units (~0.06 voxel)
    with pytest.raises(ValueError, match="even spatial sizes"):
        Downsample(m)(torch.rand(1, 1, 9, 8), torch.rand(1, 1, 9, 8))


def test_stacked_two_step_shares_weights_and_matches_manual_steps():
    inner = FromVectorField(FCNet((12, 12), hidden=8))
    with torch.no_grad():
        inner.net.layers[-1].weight.normal_(0, 1e-3)
    model = stack_two_step(inner, 4)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in inner.parameters())
    m, f = torch.rand(2, 1, 12, 12), torch.rand(2, 1, 12, 12)
    grid = identity_grid((12, 12))
    steps = multistep_steps(inner, m, f, 4)
    torch.testing.assert_close(model(m, f)(grid), steps[-1](grid))


def _blob(shape, centre, sigma=3.0):
    idx = torch.stack(torch.meshgrid(*[torch.arange(n, dtype=torch.float32) for n in shape], indexing="ij"))
    d2 = sum((idx[i] - c) ** 2 for i, c in enumerate(centre))
    return torch.exp(-d2 / (2 * sigma ** 2)).view(1, 1, *shape)


def test_short_cpu_training_lowers_the_loss():
    torch.manual_seed(0)
    shape = (16, 16, 16)
    fixed = _blob(shape, (8, 8, 8))
    moving = _blob(shape, (9.5, 7, 8.5))
    model = TwoStep(Downsample(FromVectorField(UNet(3, 2, channels=(8, 8, 8)))),
                    FromVectorField(UNet(3, 2, channels=(8, 8, 8))))
    objective = RegistrationObjective(model, "lncc", "diffusion", lam=0.5, similarity_kwargs={"window": 5})
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    first = objective(moving, fixed).similarity.item()
    for _ in range(40):
        opt.zero_grad()
        res = objective(moving, fixed)
        res.total.backward()
        opt.step()
    last = objective(moving, fixed)
    assert last.similarity.item() < 0.7 * first
    assert last.folding_fraction.item() == 0.0


def test_affine_and_velocity_steps_start_at_identity():
    m = torch.rand(1, 1, 16, 16, 16)
    grid = identity_grid((16, 16, 16))
    for module in (AffineStep(AffineNet(3, 2, channels=(4, 4))), VelocityField(UNet(3, 2, channels=(4, 4)))):
        torch.testing.assert_close(module(m, m)(grid), grid.expand(1, -1, -1, -1, -1), atol=1e-6, rtol=0)


def test_objective_result_fields_and_gradicon():
    model = FromVectorField(UNet(2, 2, channels=(4, 4)))
    res = RegistrationObjective(model, "ssd", "diffusion", lam=0.1, gradicon=1.0)(torch.rand(2, 1, 8, 8),
                                                                                    torch.rand(2, 1, 8, 8))
    assert set(res.scalars()) == {"total", "similarity", "regularity", "inverse_consistency", "folding_fraction"}
    assert res.warped.shape == (2, 1, 8, 8)
    assert res.total.requires_grad
