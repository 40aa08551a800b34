"""Instance optimisation of the displacement field (medreg.registration.field_io)."""

import pytest
import torch

from medreg.registration.field_io import optimize_field
from medreg.spatial import Identity
from medreg.spatial.grid import identity_grid, sample, voxel_scale


def _blobs(shape, shift_vox=(0.0, 0.0, 0.0)):
    """A smooth random image, sampled at x + shift (voxels): moving(x + s) = fixed(x)."""
    g = torch.Generator().manual_seed(3)
    coarse = torch.rand(1, 1, *[max(2, n // 4) for n in shape], generator=g)
    img = torch.nn.functional.interpolate(coarse, size=shape, mode="trilinear", align_corners=False)
    grid = identity_grid(shape)
    s = torch.tensor(shift_vox).view(1, 3, 1, 1, 1) / voxel_scale(shape, grid)
    return sample(img, grid + s)


def test_zero_steps_returns_phi_on_the_grid():
    shape = (12, 10, 8)
    f = _blobs(shape)
    out, losses = optimize_field(Identity(), f, f, steps=0)
    assert losses == [] and torch.count_nonzero(out.u) == 0


@pytest.mark.parametrize("downsample, reg_coarsen", [(1, 1), (2, 1), (1, 2)])
def test_recovers_a_translation_from_the_identity(downsample, reg_coarsen):
    shape = (24, 20, 16)
    fixed = _blobs(shape)
    moving = _blobs(shape, shift_vox=(-1.5, 0.0, 1.0))  # moving(x) = img(x - s): phi(x) = x + s maps fixed to moving
    torch.manual_seed(0)
    out, losses = optimize_field(Identity(), moving, fixed, steps=60, lr=0.2, lam=0.05, downsample=downsample,
                                   reg_coarsen=reg_coarsen)
    assert losses[-1] < 0.5 * losses[0]
    u_vox = out.u * voxel_scale(shape, out.u)
    inner = u_vox[:, :, 4:-4, 4:-4, 4:-4].mean(dim=(2, 3, 4))[0]
    assert torch.allclose(inner, torch.tensor([1.5, 0.0, -1.0]), atol=0.3), inner


@pytest.mark.parametrize("reg_coarsen", [1, 2])
def test_the_regularizer_smooths_the_total_field_on_its_grid(reg_coarsen):
    """With no similarity, the steps only lower the diffusion of phi + residual on the regularizer's grid."""
    from medreg.losses.regularizers import diffusion_loss
    from medreg.registration.field_io import _coarse_shape
    from medreg.spatial.transforms import DisplacementField

    shape = (16, 16, 16)
    torch.manual_seed(0)
    rough = torch.nn.functional.interpolate(torch.randn(1, 3, 4, 4, 4), size=shape, mode="trilinear",
                                            align_corners=False) * 0.05
    f = _blobs(shape)
    reg_shape = _coarse_shape(shape, reg_coarsen)

    def roughness(phi):
        return float(diffusion_loss(phi.on_grid(reg_shape) - identity_grid(reg_shape)))

    phi = DisplacementField(rough)
    out, losses = optimize_field(phi, f, f, steps=40, lr=0.2, lam=1.0, coarsen=2, reg_coarsen=reg_coarsen,
                                 similarity=lambda w, fx: 0.0 * w.sum())
    assert losses[-1] < 0.5 * losses[0]
    assert roughness(out) < 0.5 * roughness(phi)
    assert losses[0] == pytest.approx(roughness(phi), rel=1e-4)  # the loss is the diffusion on that grid


def test_rejects_bad_arguments():
    f = _blobs((8, 8, 8))
    with pytest.raises(ValueError, match="steps >= 0"):
        optimize_field(Identity(), f, f, steps=-1)
    with pytest.raises(ValueError, match="coarsen >= 1"):
        optimize_field(Identity(), f, f, steps=1, coarsen=0)
    with pytest.raises(ValueError, match="reg_coarsen >= 1"):
        optimize_field(Identity(), f, f, steps=1, reg_coarsen=0)
