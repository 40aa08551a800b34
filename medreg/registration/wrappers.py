"""Composable registration modules: ``module(moving, fixed) -> phi``.

``phi`` maps fixed-space points to moving-space points (see :mod:`medreg.spatial`).
No module holds state about input shapes; identity grids are built lazily.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from medreg.spatial.transforms import Affine, Compose, DisplacementField, Transform, integrate_velocity, warp


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

    Stacking ``TwoStep`` around the same module reuses its weights.
    """

    def __init__(self, a: RegistrationModule, b: RegistrationModule):
        super().__init__()
        self.a = a
        self.b = b

    def forward(self, moving, fixed):
        phi_a = self.a(moving, fixed)
        warped = warp(moving, phi_a, fixed.shape[2:])
        phi_b = self.b(warped, fixed)
        return Compose(phi_a, phi_b)


class Downsample(RegistrationModule):
    """Runs ``a`` on both images average-pooled by 2.

    With ``align_corners=False`` normalized coordinates, the coarse transform is
    valid unchanged at full resolution.
    """

    def __init__(self, a: RegistrationModule):
        super().__init__()
        self.a = a

    def forward(self, moving, fixed):
        for name, img in (("moving", moving), ("fixed", fixed)):
            if any(s % 2 for s in img.shape[2:]):
                raise ValueError(f"Downsample needs even spatial sizes; {name} image has shape {tuple(img.shape)}")
        pool = F.avg_pool3d if moving.dim() == 5 else F.avg_pool2d
        return self.a(pool(moving, 2), pool(fixed, 2))


def multistep_steps(inner: RegistrationModule, moving: torch.Tensor, fixed: torch.Tensor,
                    n: int) -> list[Transform]:
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
            phi = Compose(phi, inner(warp(moving, phi, fixed.shape[2:]), fixed))
        out.append(phi)
    return out


def stack_two_step(inner: RegistrationModule, n: int) -> RegistrationModule:
    """``n`` applications of ``inner`` as nested ``TwoStep`` (weights shared)."""
    if n < 1:
        raise ValueError(f"need at least one step, got {n}")
    model: RegistrationModule = inner
    for _ in range(n - 1):
        model = TwoStep(model, inner)
    return model
