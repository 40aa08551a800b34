"""Transforms as small callable objects on normalized coordinates.

A :class:`Transform` maps coordinates ``(B|1, D, *S)`` of the fixed space to
coordinates of the moving space. Transforms compose (``a @ b`` is ``x -> a(b(x))``),
evaluate on any coordinates (grids or point sets), and sample to dense fields.
"""

from __future__ import annotations

from typing import Sequence

import torch

from medreg.spatial.grid import identity_grid, sample


class Transform:
    """Base class: subclasses implement ``__call__(coords) -> coords``."""

    def __call__(self, coords: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __matmul__(self, inner: "Transform") -> "Compose":
        return Compose(self, inner)

    def on_grid(self, shape: Sequence[int], device=None, dtype=torch.float32) -> torch.Tensor:
        """Evaluate on the voxel centres of a grid: ``(B, D, *shape)`` coordinates."""
        return self(identity_grid(shape, device, dtype))

    def displacement(self, shape: Sequence[int], device=None, dtype=torch.float32) -> torch.Tensor:
        """Dense displacement ``phi(x) - x`` on a grid, normalized units."""
        grid = identity_grid(shape, device, dtype)
        return self(grid) - grid


class Identity(Transform):
    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        return coords

    def __repr__(self) -> str:
        return "Identity()"


class DisplacementField(Transform):
    """``phi(x) = x + u(x)`` with ``u`` a dense field ``(B, D, *S)`` on the fixed grid, interpolated linearly.

    Outside the grid the field is extended by its border value.
    """

    def __init__(self, displacement: torch.Tensor):
        self.u = displacement

    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        shape = self.u.shape[2:]
        if coords.shape[2:] == shape and coords is identity_grid(shape, coords.device, coords.dtype):
            return coords + self.u.to(coords.dtype)  # at its own voxel centres the field needs no interpolation
        return coords + sample(self.u, coords, mode="linear", padding_mode="border")

    def displacement(self, shape=None, device=None, dtype=torch.float32) -> torch.Tensor:
        if shape is None or tuple(shape) == tuple(self.u.shape[2:]):
            return self.u
        return super().displacement(shape, self.u.device, self.u.dtype)

    def __repr__(self) -> str:
        return f"DisplacementField(shape={tuple(self.u.shape)})"


class ResidualField(Transform):
    """``phi(x) = base(x) + r(x)``: a map plus a displacement ``r (B, D, *S)`` on a grid of the same box.

    ``r`` is interpolated linearly (border value outside), like :class:`DisplacementField`'s
    ``u``; it may be coarser than anything ``base`` holds (the control points of instance
    optimisation), so nothing is resampled until the map is used.
    """

    def __init__(self, base: Transform, residual: torch.Tensor):
        self.base, self.r = base, residual

    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        return self.base(coords) + sample(self.r, coords, mode="linear", padding_mode="border")

    def __repr__(self) -> str:
        return f"ResidualField({self.base!r}, shape={tuple(self.r.shape)})"


class Affine(Transform):
    """``phi(x) = A x + t`` with ``matrix (B, D, D+1)`` acting on normalized coordinates."""

    def __init__(self, matrix: torch.Tensor):
        if matrix.dim() == 2:
            matrix = matrix.unsqueeze(0)
        d = matrix.shape[1]
        if matrix.shape[2] != d + 1:
            raise ValueError(f"affine matrix must be (B, D, D+1), got {tuple(matrix.shape)}")
        self.matrix = matrix

    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        a = self.matrix[:, :, :-1].to(coords.dtype)
        t = self.matrix[:, :, -1].to(coords.dtype)
        flat = coords.reshape(coords.shape[0], coords.shape[1], -1)
        out = torch.einsum("bij,bjn->bin", a, flat) + t.unsqueeze(-1)
        return out.reshape(out.shape[0], *coords.shape[1:])

    def __repr__(self) -> str:
        return f"Affine(batch={self.matrix.shape[0]}, dim={self.matrix.shape[1]})"


class Compose(Transform):
    """``x -> outer(inner(x))``: apply ``inner`` first."""

    def __init__(self, outer: Transform, inner: Transform):
        self.outer = outer
        self.inner = inner

    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        return self.outer(self.inner(coords))

    def __repr__(self) -> str:
        return f"Compose({self.outer!r}, {self.inner!r})"


def warp(image: torch.Tensor, phi: Transform, shape: Sequence[int] | None = None,
         mode: str = "linear", padding_mode: str = "border") -> torch.Tensor:
    """``moving ∘ phi`` sampled on a grid of ``shape`` (default: the image's own)."""
    shape = tuple(image.shape[2:]) if shape is None else tuple(shape)
    coords = phi(identity_grid(shape, image.device, image.dtype))
    return sample(image, coords, mode=mode, padding_mode=padding_mode)


def integrate_velocity(velocity: torch.Tensor, steps: int = 7) -> torch.Tensor:
    """Scaling and squaring: displacement of ``exp(v)`` for a stationary velocity ``v (B, D, *S)``."""
    shape = velocity.shape[2:]
    grid = identity_grid(shape, velocity.device, velocity.dtype)
    disp = velocity / (2 ** steps)
    for _ in range(steps):
        disp = disp + sample(disp, grid + disp, mode="linear", padding_mode="border")
    return disp
