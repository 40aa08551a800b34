"""GradICON: penalise the Jacobian of ``phi_ab ∘ phi_ba`` for differing from the identity."""

from __future__ import annotations

from typing import Sequence

import torch

from medreg.spatial.grid import identity_grid, voxel_scale
from medreg.spatial.transforms import Transform


def gradicon_loss(phi_ab: Transform, phi_ba: Transform, shape: Sequence[int], delta: float = 1e-3,
                  jitter: bool = True, device=None, dtype=torch.float32) -> torch.Tensor:
    """Mean squared Frobenius norm of ``J(phi_ab ∘ phi_ba) - I`` (voxel units).

    The Jacobian is a forward difference with step ``delta`` (normalized units) at
    the voxel centres, jittered by up to half a voxel when ``jitter`` so that the
    penalty is not only enforced on the grid points.
    """
    grid = identity_grid(shape, device, dtype)
    if jitter:
        half_voxel = 1.0 / voxel_scale(shape, grid)
        grid = grid + (torch.rand_like(grid) - 0.5) * half_voxel
    ndim = len(shape)
    base = phi_ab(phi_ba(grid))
    scale = voxel_scale(shape, grid)  # normalized -> voxels, per output channel
    total = 0.0
    for d in range(ndim):
        step = torch.zeros(1, ndim, *([1] * ndim), device=grid.device, dtype=grid.dtype)
        step[:, d] = delta
        col = (phi_ab(phi_ba(grid + step)) - base) * scale / (delta * scale[:, d:d + 1])
        eye = torch.zeros_like(step)
        eye[:, d] = 1.0
        total = total + (col - eye).pow(2).sum(1).mean()
    return total
