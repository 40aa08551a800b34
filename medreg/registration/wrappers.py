"""Composable registration modules: ``module(moving, fixed) -> phi``.

``phi`` maps fixed-space points to moving-space points (see :mod:`medreg.spatial`).
No module holds state about input shapes; identity grids are built lazily.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from medreg.spatial.grid import identity_grid
from medreg.spatial.transforms import Affine, Compose, DisplacementField, Transform, integrate_velocity, warp

COMPOSITIONS = ("lazy", "dense")


def compose_maps(phi_a: Transform, phi_b: Transform, shape, compose: str = "lazy", device=None,
                 dtype=torch.float32) -> Transform:
    """``phi_a ∘ phi_b``: kept as the exact composition (``lazy``) or resampled once on the grid (``dense``).

    ``lazy`` evaluates every step's field at the exact point each time the map is used, so a chain
    of ``k`` steps costs ``k`` interpolations per use and a ``k``-step model about ``k²/2`` in all.
    ``dense`` stores ``phi_a(phi_b(x)) - x`` at the voxel centres ``x`` of ``shape`` (one interpolation
    of ``phi_a``'s field), so each step costs two interpolations (its warp and its composition),
    at the price of interpolating the composed map between voxel centres, as VoxelMorph-style
    compositions do.
    """
    if compose not in COMPOSITIONS:
        raise ValueError(f"composition {compose!r}; expected one of {COMPOSITIONS}")
    phi = Compose(phi_a, phi_b)
    if compose == "lazy":
        return phi
    grid = identity_grid(shape, device, dtype)
    return DisplacementField(phi(grid) - grid)


class RegistrationModule(nn.Module):
    """Base class. Subclasses implement ``forward(moving, fixed) -> Transform``."""

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> Transform:  # pragma: no cover
        raise NotImplementedError


class FromVectorField(RegistrationModule):
    """The inner network's output (a displacement in normalized units) becomes ``x -> x + u(x)``."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, moving, fixed):
        return DisplacementField(self.net(torch.cat([moving, fixed], dim=1)))


class VelocityField(RegistrationModule):
    """Stationary velocity field integrated by scaling and squaring (diffeomorphic step)."""

    def __init__(self, net: nn.Module, steps: int = 7):
        super().__init__()
        self.net = net
        self.steps = steps

    def forward(self, moving, fixed):
        velocity = self.net(torch.cat([moving, fixed], dim=1))
        return DisplacementField(integrate_velocity(velocity, self.steps))


class AffineStep(RegistrationModule):
    """An affine network: its output is added to the identity matrix."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, moving, fixed):
        offset = self.net(torch.cat([moving, fixed], dim=1))
        d = offset.shape[1]
        eye = torch.eye(d, d + 1, device=offset.device, dtype=offset.dtype).unsqueeze(0)
        return Affine(eye + offset)


class TwoStep(RegistrationModule):
    """``a`` registers moving to fixed; ``b`` registers (moving ∘ phi_a) to fixed; returns ``phi_a ∘ phi_b``.

    Stacking ``TwoStep`` around the same module reuses its weights. ``compose`` is how the two
    maps are combined (:func:`compose_maps`: the exact ``lazy`` composition, or ``dense``).
    """

    def __init__(self, a: RegistrationModule, b: RegistrationModule, compose: str = "lazy"):
        super().__init__()
        if compose not in COMPOSITIONS:
            raise ValueError(f"composition {compose!r}; expected one of {COMPOSITIONS}")
        self.a = a
        self.b = b
        self.compose = compose

    def forward(self, moving, fixed):
        phi_a = self.a(moving, fixed)
        warped = warp(moving, phi_a, fixed.shape[2:])
        phi_b = self.b(warped, fixed)
        return compose_maps(phi_a, phi_b, fixed.shape[2:], self.compose, fixed.device, fixed.dtype)


class Downsample(RegistrationModule):
    """Runs ``a`` on both images average-pooled by 2.

    With ``align_corners=False`` normalized coordinates, the coarse transform is
    valid unchanged at full resolution.
    """

    def __init__(self, a: RegistrationModule):
        super().__init__()
        self.a = a

    def pooled(self, moving, fixed) -> tuple[torch.Tensor, torch.Tensor]:
        """The pair ``a`` sees: both images average-pooled by 2."""
        for name, img in (("moving", moving), ("fixed", fixed)):
            if any(s % 2 for s in img.shape[2:]):
                raise ValueError(f"Downsample needs even spatial sizes; {name} image has shape {tuple(img.shape)}")
        pool = F.avg_pool3d if moving.dim() == 5 else F.avg_pool2d
        return pool(moving, 2), pool(fixed, 2)

    def forward(self, moving, fixed):
        return self.a(*self.pooled(moving, fixed))


def multistep_steps(inner: RegistrationModule, moving: torch.Tensor, fixed: torch.Tensor,
                    n: int, compose: str = "lazy") -> list[Transform]:
    """The cumulative transforms after each of ``n`` applications of ``inner`` (a TwoStep chain).

    ``result[k]`` equals ``TwoStep(...TwoStep(inner, inner)..., inner)`` with ``k + 1``
    applications; used to inspect what each step of a multistep model does.
    """
    phi: Transform | None = None
    out = []
    for _ in range(n):
        if phi is None:
            phi = inner(moving, fixed)
        else:
            step = inner(warp(moving, phi, fixed.shape[2:]), fixed)
            phi = compose_maps(phi, step, fixed.shape[2:], compose, fixed.device, fixed.dtype)
        out.append(phi)
    return out


def stack_two_step(inner: RegistrationModule, n: int, compose: str = "lazy") -> RegistrationModule:
    """``n`` applications of ``inner`` as nested ``TwoStep`` (weights shared)."""
    if n < 1:
        raise ValueError(f"need at least one step, got {n}")
    model: RegistrationModule = inner
    for _ in range(n - 1):
        model = TwoStep(model, inner, compose=compose)
    return model
