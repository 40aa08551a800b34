"""Regularity terms on displacement fields, in voxel units.

Fields are ``(B, D, *S)`` in normalized units (see :mod:`medreg.spatial`); they are
converted to voxels and differentiated per voxel, so the Jacobian-like quantities
are unit-free and a weight means the same at every pyramid level.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from medreg.spatial.grid import voxel_scale


def _to_voxels(disp: torch.Tensor) -> torch.Tensor:
    return disp * voxel_scale(disp.shape[2:], disp)


def _diff(x: torch.Tensor, axis: int) -> torch.Tensor:
    dim = axis + 2
    n = x.shape[dim]
    return x.narrow(dim, 1, n - 1) - x.narrow(dim, 0, n - 1)


def _mean(x: torch.Tensor, reduction: str) -> torch.Tensor:
    """Mean over voxels (and channels summed before): over the batch too, or one value per item."""
    if reduction == "mean":
        return x.mean()
    if reduction == "none":
        return x.flatten(1).mean(1)
    raise ValueError(f"reduction {reduction!r}; expected 'mean' or 'none'")


def diffusion_loss(disp: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Mean over voxels of ``sum_{c,d} (du_c/dx_d)^2`` (forward differences, voxel units).

    ``reduction="none"`` gives one value per batch item (their mean is the ``"mean"`` value).
    """
    u = _to_voxels(disp)
    ndim = u.dim() - 2
    return sum(_mean(_diff(u, d).pow(2).sum(1), reduction) for d in range(ndim))


def bending_energy_loss(disp: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Mean over voxels of the squared second derivatives ``sum_{c,d,e} (d2 u_c / dx_d dx_e)^2``."""
    u = _to_voxels(disp)
    ndim = u.dim() - 2
    total = 0.0
    for d in range(ndim):
        du = _diff(u, d)
        for e in range(ndim):  # mixed terms counted for (d, e) and (e, d)
            total = total + _mean(_diff(du, e).pow(2).sum(1), reduction)
    return total


class Diffusion(nn.Module):
    def forward(self, disp):
        return diffusion_loss(disp)


class BendingEnergy(nn.Module):
    def forward(self, disp):
        return bending_energy_loss(disp)
