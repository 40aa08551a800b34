"""``medreg.spatial.grid.grid_sample``: the per-thread split gives F.grid_sample's values and gradients."""

import pytest
import torch
import torch.nn.functional as F

from medreg.spatial import grid as grid_module
from medreg.spatial.grid import grid_sample, identity_grid


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield lambda n: torch.set_num_threads(n)
    torch.set_num_threads(before)


@pytest.mark.parametrize("depth", [32, 33])  # divisible by the thread count, and not (the grid is padded)
@pytest.mark.parametrize("channels", [1, 3])
def test_split_matches_grid_sample(threads, monkeypatch, depth, channels):
    threads(3)
    monkeypatch.setattr(grid_module, "_SPLIT_MIN", 1)  # small test grids still take the split path
    torch.manual_seed(0)
    shape = (depth, 12, 10)
    image = torch.rand(1, channels, 20, 14, 11, requires_grad=True)
    coords = (identity_grid(shape).movedim(1, -1).flip(-1) + 0.3 * torch.randn(1, *shape, 3)).requires_grad_(True)
    weights = torch.rand(1, channels, *shape)

    want = F.grid_sample(image, coords, mode="bilinear", padding_mode="border", align_corners=False)
    want_image_grad, want_coords_grad = torch.autograd.grad((want * weights).sum(), (image, coords))
    got = grid_sample(image, coords)
    got_image_grad, got_coords_grad = torch.autograd.grad((got * weights).sum(), (image, coords))

    assert got.shape == want.shape
    assert torch.equal(got, want)
    assert torch.equal(got_coords_grad, want_coords_grad)
    torch.testing.assert_close(got_image_grad, want_image_grad, rtol=1e-5, atol=1e-6)  # summed in another order


def test_split_uses_batch_items(threads, monkeypatch):
    """The split path really runs (one batch item per thread), so the speed-up is not silently lost."""
    threads(2)
    monkeypatch.setattr(grid_module, "_SPLIT_MIN", 1)
    seen = []
    real = F.grid_sample

    def spy(image, grid, **kwargs):
        seen.append(grid.shape[0])
        return real(image, grid, **kwargs)

    monkeypatch.setattr(grid_module.F, "grid_sample", spy)
    grid_sample(torch.rand(1, 1, 8, 8, 8), identity_grid((8, 8, 8)).movedim(1, -1).flip(-1))
    assert seen == [2]
