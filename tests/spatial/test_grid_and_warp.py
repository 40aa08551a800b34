import pytest
import torch

from medreg.spatial import (Affine, DisplacementField, Identity, identity_grid, normalized_to_voxel, sample,
                            to_grid_sample, voxel_to_normalized, warp)


def _shift_field(shape, shift_vox):
    """Constant displacement of ``shift_vox`` voxels (array order) as a normalized field."""
    disp = torch.zeros(1, len(shape), *shape, dtype=torch.float64)
    for c, s in enumerate(shift_vox):
        disp[:, c] = 2.0 * s / shape[c]
    return DisplacementField(disp)


@pytest.mark.parametrize("shape", [(7, 11), (5, 9, 6), (13, 4, 8)])
def test_identity_warp_is_exact(shape):
    img = torch.rand(2, 3, *shape, dtype=torch.float64)
    assert torch.equal(identity_grid(shape, dtype=torch.float64), identity_grid(shape, dtype=torch.float64))
    out = warp(img, Identity())
    torch.testing.assert_close(out, img, rtol=0, atol=1e-12)
    zero = DisplacementField(torch.zeros(1, len(shape), *shape, dtype=torch.float64))
    torch.testing.assert_close(warp(img, zero), img, rtol=0, atol=1e-12)


def test_identity_grid_is_cached_and_voxel_centred():
    g = identity_grid((4, 3))
    assert g is identity_grid((4, 3))
    assert g.shape == (1, 2, 4, 3)
    # axis 0 has 4 voxels: centres at -0.75, -0.25, 0.25, 0.75; channel 0 varies along axis 0 only
    torch.testing.assert_close(g[0, 0, :, 0], torch.tensor([-0.75, -0.25, 0.25, 0.75]))
    torch.testing.assert_close(g[0, 1, 0, :], torch.tensor([-2 / 3, 0.0, 2 / 3]))
    vox = normalized_to_voxel(g, (4, 3))
    torch.testing.assert_close(vox[0, 0, :, 0], torch.arange(4.0))
    torch.testing.assert_close(voxel_to_normalized(vox, (4, 3)), g)


def test_grid_sample_adapter_reverses_channels():
    coords = torch.arange(3.0).view(1, 3, 1, 1, 1)
    assert to_grid_sample(coords).flatten().tolist() == [2.0, 1.0, 0.0]


@pytest.mark.parametrize("shape", [(9, 12), (7, 10, 5), (11, 6, 9)])
def test_translation_moves_image_by_exact_voxels_along_every_axis(shape):
    """phi(x) = x + s: warped(i) = moving(i + s), so a feature at moving index p appears at p - s."""
    ndim = len(shape)
    for axis in range(ndim):
        moving = torch.zeros(1, 1, *shape, dtype=torch.float64)
        p = [n // 2 for n in shape]
        moving[(0, 0, *p)] = 1.0
        shift = [0] * ndim
        shift[axis] = 2
        warped = warp(moving, _shift_field(shape, shift))
        expected = list(p)
        expected[axis] -= 2
        assert warped[(0, 0, *expected)].item() == pytest.approx(1.0, abs=1e-9)
        assert warped.sum().item() == pytest.approx(1.0, abs=1e-9)


def test_translations_compose_by_addition():
    shape = (10, 8, 6)
    a, b = _shift_field(shape, (1.0, -2.0, 0.5)), _shift_field(shape, (0.5, 1.0, 1.0))
    grid = identity_grid(shape, dtype=torch.float64)
    got = normalized_to_voxel((a @ b)(grid), shape) - normalized_to_voxel(grid, shape)
    for c, s in enumerate((1.5, -1.0, 1.5)):
        torch.testing.assert_close(got[0, c], torch.full(shape, s, dtype=torch.float64))


def test_affine_transform_on_points_and_sample_of_points():
    m = torch.tensor([[[2.0, 0.0, 0.1], [0.0, 0.5, -0.2]]])
    pts = torch.tensor([[[0.0, 1.0], [0.0, 2.0]]])  # (B=1, D=2, N=2)
    out = Affine(m)(pts)
    torch.testing.assert_close(out, torch.tensor([[[0.1, 2.1], [-0.2, 0.8]]]))
    img = torch.arange(12.0).view(1, 1, 3, 4)
    centres = voxel_to_normalized(torch.tensor([[[0.0, 2.0], [1.0, 3.0]]]), (3, 4))
    vals = sample(img, centres)
    torch.testing.assert_close(vals, torch.tensor([[[1.0, 11.0]]]))


def test_nearest_interpolation_keeps_labels():
    labels = torch.randint(0, 4, (1, 1, 8, 8)).double()
    field = _shift_field((8, 8), (0.4, -0.3))
    out = warp(labels, field, mode="nearest")
    assert set(out.unique().tolist()) <= set(labels.unique().tolist())
