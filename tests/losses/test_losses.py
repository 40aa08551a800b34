import pytest
import torch

from medreg.losses import (LNCC, bending_energy_loss, diffusion_loss, gradicon_loss, lncc_loss, ncc_loss,
                           ssd_loss)
from medreg.spatial import Affine, DisplacementField


def _smooth_image(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 1, *[s // 2 for s in shape], generator=g)
    mode = "trilinear" if len(shape) == 3 else "bilinear"
    return torch.nn.functional.interpolate(x, size=shape, mode=mode, align_corners=False)


@pytest.mark.parametrize("shape", [(32, 32), (16, 18, 20)])
def test_lncc_self_is_best_and_finite_on_constant(shape):
    img = _smooth_image(shape)
    shifted = torch.roll(img, 3, dims=2)
    noise = torch.rand_like(img)
    self_loss = lncc_loss(img, img, window=5)
    assert self_loss < lncc_loss(img, shifted, window=5)
    assert self_loss < lncc_loss(img, noise, window=5)
    assert self_loss < 0.05
    const = torch.full_like(img, 0.3, requires_grad=True)
    val = lncc_loss(const, const.detach().clone(), window=5)
    val.backward()
    assert torch.isfinite(val) and torch.isfinite(const.grad).all()
    assert torch.isfinite(LNCC(window=3)(torch.zeros_like(img), img))


def test_lncc_rejects_even_window():
    with pytest.raises(ValueError, match="odd"):
        lncc_loss(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8), window=4)


def test_ssd_and_ncc_values():
    a = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    assert ssd_loss(a, a + 2).item() == pytest.approx(4.0)
    assert ncc_loss(a, 2 * a + 1).item() == pytest.approx(0.0, abs=1e-6)
    assert ncc_loss(a, -a).item() == pytest.approx(2.0, abs=1e-6)


def test_diffusion_is_zero_for_translation_and_resolution_consistent():
    shape = (16, 16, 16)
    disp = torch.zeros(1, 3, *shape)
    disp[:, 0] = 0.2
    assert diffusion_loss(disp).item() == 0.0
    assert bending_energy_loss(disp).item() == 0.0
    # a linear field u = 0.1 * x (voxel units) has du/dx = 0.1 at every resolution
    for n in (8, 16, 32):
        idx = torch.arange(n, dtype=torch.float64)
        field = torch.zeros(1, 2, n, n, dtype=torch.float64)
        field[:, 0] = (0.1 * idx * 2 / n).view(n, 1)  # 0.1 voxel per voxel, in normalized units
        assert diffusion_loss(field).item() == pytest.approx(0.01, rel=1e-9)
        assert bending_energy_loss(field).item() == pytest.approx(0.0, abs=1e-18)


def test_gradicon_zero_for_exact_inverses_positive_otherwise():
    shape = (10, 12)
    a = torch.tensor([[1.1, 0.2, 0.05], [0.0, 0.9, -0.1]], dtype=torch.float64)
    full = torch.cat([a, torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)])
    inv = torch.linalg.inv(full)[:2]
    val = gradicon_loss(Affine(a), Affine(inv), shape, dtype=torch.float64)
    assert val.item() == pytest.approx(0.0, abs=1e-12)
    bad = gradicon_loss(Affine(a), Affine(a), shape, dtype=torch.float64)
    assert bad.item() > 1e-3
    disp = torch.zeros(1, 2, *shape, dtype=torch.float64)
    disp[:, 1, :, 4:8] = 0.3
    assert gradicon_loss(DisplacementField(disp), DisplacementField(disp), shape, dtype=torch.float64) > 0


def _box_reference(x, window):
    """The separable avg_pool box mean (count_include_pad=False) the fast filter replaced."""
    import torch.nn.functional as F

    ndim = x.dim() - 2
    pool = F.avg_pool3d if ndim == 3 else F.avg_pool2d
    for axis in range(ndim):
        kernel, padding = [1] * ndim, [0] * ndim
        kernel[axis], padding[axis] = window, window // 2
        x = pool(x, kernel_size=tuple(kernel), stride=1, padding=tuple(padding), count_include_pad=False)
    return x


@pytest.mark.parametrize("shape", [(2, 3, 9, 7, 8), (1, 2, 11, 7)])
@pytest.mark.parametrize("window", [3, 5, 7])
def test_box_filter_equals_avg_pool_and_has_exact_gradient(shape, window):
    from medreg.losses.similarity import box_filter

    torch.manual_seed(0)
    x = torch.rand(shape, dtype=torch.float64, requires_grad=True)
    assert torch.allclose(box_filter(x, window), _box_reference(x, window), atol=1e-12)
    assert torch.autograd.gradcheck(lambda t: box_filter(t, window), (x,))


def test_box_filter_handles_axes_shorter_than_the_window():
    from medreg.losses.similarity import box_filter

    x = torch.arange(2 * 3 * 4, dtype=torch.float64).reshape(1, 1, 2, 3, 4)
    y = box_filter(x, 7)  # every window covers the whole (short) axis: the global mean
    assert torch.allclose(y, torch.full_like(x, float(x.mean())))


@pytest.mark.parametrize("shape, window", [((1, 2, 10, 12, 8), 5), ((1, 1, 10, 12, 8), 3), ((1, 1, 13, 9), 3),
                                           ((2, 1, 6, 7, 5), 3)])
def test_fixed_lncc_equals_lncc_and_its_gradient(shape, window):
    """FixedLNCC's hand-written backward against autograd through lncc_loss, flat regions included."""
    from medreg.losses.similarity import FixedLNCC

    torch.manual_seed(1)
    b = torch.rand(shape)
    a = torch.rand(shape)
    a[..., :3] = 0.5  # a flat patch: var_a is 0 there (clamped), as in the air around a body
    b[..., -2:] = 0.25
    a1 = a.clone().requires_grad_(True)
    a2 = a.clone().requires_grad_(True)
    weight = 3.0  # the incoming gradient is not 1
    ref = lncc_loss(a1, b, window=window)
    got = FixedLNCC(b, window=window)(a2)
    (weight * ref).backward()
    (weight * got).backward()
    assert torch.allclose(got, ref, atol=1e-6)
    assert float(a1.grad.abs().max()) > 1e-3
    assert torch.allclose(a2.grad, a1.grad, atol=1e-6, rtol=1e-4)
