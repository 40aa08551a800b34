"""Jacobian determinant of a dense map by finite differences, in voxel units."""

from __future__ import annotations

import torch

from medreg.spatial.grid import normalized_to_voxel


def jacobian_matrix(coords: torch.Tensor) -> torch.Tensor:
    """Jacobian ``(B, D, D, *S)`` of a dense map given as coordinates ``(B, D, *S)`` (normalized units).

    ``J[:, c, d] = d phi_c / d x_d`` with both in voxel units (central differences
    inside, one-sided at the borders), so the identity has ``J = I`` whatever the shape.
    """
    shape = coords.shape[2:]
    vox = normalized_to_voxel(coords, shape)
    ndim = len(shape)
    rows = []
    for c in range(ndim):
        grads = torch.gradient(vox[:, c], dim=tuple(range(1, ndim + 1)))
        rows.append(torch.stack(grads, dim=1))
    return torch.stack(rows, dim=1)


def jacobian_determinant(coords: torch.Tensor) -> torch.Tensor:
    """Determinant ``(B, *S)`` of the Jacobian of a dense map ``(B, D, *S)`` (normalized coordinates)."""
    j = jacobian_matrix(coords)
    if j.shape[1] == 2:  # closed forms: several times faster than an LU per voxel, same values to rounding
        return j[:, 0, 0] * j[:, 1, 1] - j[:, 0, 1] * j[:, 1, 0]
    if j.shape[1] == 3:
        return (j[:, 0, 0] * (j[:, 1, 1] * j[:, 2, 2] - j[:, 1, 2] * j[:, 2, 1])
                - j[:, 0, 1] * (j[:, 1, 0] * j[:, 2, 2] - j[:, 1, 2] * j[:, 2, 0])
                + j[:, 0, 2] * (j[:, 1, 0] * j[:, 2, 1] - j[:, 1, 1] * j[:, 2, 0]))
    return torch.linalg.det(j.movedim(1, -1).movedim(1, -1))


def folding_fraction(detj: torch.Tensor) -> torch.Tensor:
    """Share of voxels with ``det J <= 0`` (per batch item, ``(B,)``)."""
    return (detj <= 0).flatten(1).float().mean(1)
