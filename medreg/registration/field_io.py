"""Instance optimisation of the displacement field itself (no network weights).

The network's map ``phi`` is sampled on the network grid once; then a residual
displacement, held on a grid ``coarsen`` times coarser and upsampled trilinearly,
is optimised with Adam on the pair's own loss (the training similarity plus
``lam`` times the regularizer of the *total* field, in voxel units)::

    u = u_net + upsample(r),   loss = sim(moving(x + u), fixed) + lam * reg(u)

Each step costs one warp and one loss on the network grid: on a CPU about 30x
less than a step of the network fine-tuning in :func:`medreg.inference.refine.fine_tune_network`
(forward and backward through every UNet of the multistep model). The residual
is in voxel units of the network grid, so ``lr`` is in voxels per step whatever
the image size.

:func:`optimize_on_data` does the same against the preprocessed images on their own
grids (finer than the network's): the moving data are warped at the fixed data's
voxels, and the residual stays on control points of the network grid.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from medreg.losses import REGULARIZERS, SIMILARITIES
from medreg.losses.similarity import FixedLNCC
from medreg.spatial.grid import grid_sample, identity_grid, sample, to_grid_sample, voxel_scale
from medreg.spatial.transforms import DisplacementField, ResidualField, Transform


def _coarse_shape(shape: Sequence[int], coarsen: int) -> tuple[int, ...]:
    return tuple(max(2, -(-int(n) // coarsen)) for n in shape)


class _Upsample:
    """Linear upsampling ``(B, C, *small)`` -> ``(B, C, *size)`` as one small matrix product per axis.

    The same values as ``F.interpolate(mode="(bi|tri)linear", align_corners=False)`` (to
    float rounding), and its backward is again matrix products: on a CPU about 4x faster,
    forward and backward, than ``interpolate``, whose backward is the larger part of a fine
    instance-optimisation step.
    """

    def __init__(self, small: Sequence[int], size: Sequence[int], device: torch.device, dtype: torch.dtype,
                 positions: Sequence[torch.Tensor] | None = None):
        self.mats = []
        if positions is not None:  # the outputs at these normalized coordinates of the small grid's box, per axis
            self.mats = [_interp_matrix(int(n_in), p).to(device=device, dtype=dtype) for n_in, p in zip(small, positions)]
            return
        for n_in, n_out in zip(small, size):
            eye = torch.eye(int(n_in), device=device, dtype=dtype).unsqueeze(0)
            self.mats.append(F.interpolate(eye, size=int(n_out), mode="linear", align_corners=False)[0])  # (in, out)

    def channels_last(self, x: torch.Tensor) -> torch.Tensor:
        """``(*small, C)`` -> ``(*size, C)``: the same interpolation, channels last."""
        ndim = len(self.mats)
        for axis in reversed(range(ndim)):
            rest = x.shape[axis + 1:]
            x = torch.matmul(self.mats[axis].t(), x.flatten(axis + 1)).unflatten(-1, rest)
        return x

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        ndim = len(self.mats)
        x = torch.matmul(x, self.mats[-1])  # the last axis
        for axis in reversed(range(ndim - 1)):  # (..., n_in, *rest) -> (..., n_out, *rest)
            rest = x.shape[axis + 3:]
            x = torch.matmul(self.mats[axis].t(), x.flatten(axis + 3)).unflatten(-1, rest)
        return x


def _similarity_to(fixed: torch.Tensor, similarity: str | Callable,
                   similarity_kwargs: dict | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The loss against ``fixed`` as a function of the warped image alone; for LNCC the fixed
    image's local statistics are computed once, not at every step."""
    kwargs = dict(similarity_kwargs or {})
    if similarity == "lncc":
        return FixedLNCC(fixed, **kwargs)
    fn = SIMILARITIES[similarity] if isinstance(similarity, str) else similarity
    return lambda warped: fn(warped, fixed, **kwargs)


def _interp_matrix(n_in: int, positions: torch.Tensor) -> torch.Tensor:
    """``(n_in, len(positions))``: linear interpolation of ``n_in`` voxel-centred values at normalized positions.

    Border values beyond the outer voxel centres, as ``grid_sample(padding_mode="border",
    align_corners=False)`` and ``interpolate(align_corners=False)`` do.
    """
    pos = positions.detach().to(torch.float64).cpu()
    s = ((pos + 1) * n_in / 2 - 0.5).clamp(0, n_in - 1)
    k0 = s.floor().long().clamp(max=max(n_in - 2, 0))
    w = s - k0
    m = torch.zeros(n_in, len(pos), dtype=torch.float64)
    cols = torch.arange(len(pos))
    m[k0, cols] += 1 - w
    m[(k0 + 1).clamp(max=n_in - 1), cols] += w
    return m


def optimize_on_data(phi: Transform, moving: torch.Tensor, fixed: torch.Tensor, moving_to_net: np.ndarray,
                     fixed_to_net: np.ndarray, net_shape: Sequence[int], *, steps: int, lr: float = 0.4,
                     lam: float = 0.1, similarity: str | Callable = "lncc", regularizer: str | Callable = "diffusion",
                     similarity_kwargs: dict | None = None, coarsen: int = 2) -> tuple[Transform, list[float]]:
    """Refine ``phi`` against the images on their own (preprocessed-data) grids; return ``phi + r``.

    ``phi`` lives in the network grid's normalized coordinates (``net_shape``); ``fixed``
    and ``moving`` ``(1, C, *S)`` are the preprocessed data, and ``fixed_to_net`` /
    ``moving_to_net`` (4x4) map their normalized coordinates into the network grid's. Every
    step warps the moving data at the fixed data's voxels, so no detail is lost to a
    resampling, and costs one warp and one loss on the data grid. The residual ``r`` sits
    on the network grid coarsened ``coarsen`` times (its unit: a fixed-data voxel along
    each axis) and the regularizer is taken there, on the total field (``phi`` sampled at
    the control points plus ``r``), weighted ``lam``. The result is a
    :class:`~medreg.spatial.transforms.ResidualField`: ``r`` is not resampled.
    """
    if steps < 0:
        raise ValueError(f"expected steps >= 0, found {steps}")
    if steps == 0:
        return phi, []
    dev, dtype = fixed.device, torch.float32
    fixed, moving = fixed.float(), moving.float()
    dshape = tuple(int(n) for n in fixed.shape[2:])
    ndim = len(dshape)
    to_net = torch.as_tensor(fixed_to_net, dtype=torch.float64)
    from_net = torch.as_tensor(np.linalg.inv(moving_to_net), dtype=torch.float64)  # network -> moving-data normalized
    linear = to_net[:ndim, :ndim]
    separable = bool(torch.allclose(linear, torch.diag(torch.diagonal(linear)), atol=1e-9))
    axes = [(2 * torch.arange(n, dtype=torch.float64) + 1) / n - 1 for n in dshape]  # fixed-data voxel centres
    cshape = _coarse_shape(net_shape, coarsen)
    positions = [linear[a, a] * axes[a] + to_net[a, ndim] for a in range(ndim)] if separable else None
    with torch.no_grad():
        b = from_net[:ndim, :ndim].to(dev, dtype)
        if separable:
            points = torch.stack(torch.meshgrid(*positions, indexing="ij"))[None].to(dev, dtype)
        else:
            grid = identity_grid(dshape, dev, torch.float64)
            points = (torch.einsum("ij,bj...->bi...", linear.to(dev), grid)
                      + to_net[:ndim, ndim].to(dev).view(1, ndim, *[1] * ndim)).to(dtype)
        at = phi(points)[0].movedim(0, -1)
        # where phi sends each fixed-data voxel, in the moving data's normalized coordinates, channels last
        at = torch.matmul(at, b.t()) + from_net[:ndim, ndim].to(dev, dtype)
        at = at.flip(-1)[None].contiguous()  # grid_sample's layout once, so no step pays the reordering
        u_reg = (phi.on_grid(cshape, dev, dtype) - identity_grid(cshape, dev, dtype)).float()
    # one fixed-data voxel along each data axis, in network normalized units (per network axis)
    voxel = torch.as_tensor([2.0 / n for n in dshape], dtype=torch.float64)
    unit = (linear.abs() @ voxel if not separable else torch.diagonal(linear).abs() * voxel).to(dev, dtype)
    unit = unit.view(1, ndim, *[1] * ndim)
    upsample = _Upsample(cshape, dshape, dev, dtype, positions=positions) if separable else None
    sim_fn = _similarity_to(fixed, similarity, similarity_kwargs)
    reg_fn = REGULARIZERS[regularizer] if isinstance(regularizer, str) else regularizer
    residual = torch.zeros((1, ndim, *cshape), device=dev, dtype=dtype, requires_grad=True)
    opt = torch.optim.Adam([residual], lr=float(lr))
    losses: list[float] = []
    for _ in range(int(steps)):
        opt.zero_grad(set_to_none=True)
        r_net = residual * unit
        r_moving = torch.einsum("ij,bj...->bi...", b, r_net)  # linear maps commute with the interpolation
        if upsample is not None:  # channels last, in grid_sample's order: the upsampled field needs no reordering
            dense = upsample.channels_last(to_grid_sample(r_moving)[0])[None]
        else:
            dense = to_grid_sample(sample(r_moving, points))
        warped = grid_sample(moving, at + dense)
        loss = sim_fn(warped) + lam * reg_fn(u_reg + r_net)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return ResidualField(phi, (residual * unit).detach()), losses


def optimize_field(phi: Transform, moving: torch.Tensor, fixed: torch.Tensor, *, steps: int, lr: float = 0.5,
                   lam: float = 1.0, similarity: str | Callable = "lncc", regularizer: str | Callable = "diffusion",
                   similarity_kwargs: dict | None = None, coarsen: int = 2,
                   downsample: int = 1, reg_coarsen: int = 1) -> tuple[DisplacementField, list[float]]:
    """Refine ``phi`` on this pair; return the refined map (a dense field on ``fixed``'s grid) and the loss per step.

    ``moving`` and ``fixed`` are the network inputs ``(1, C, *S)`` (same grid). With
    ``steps == 0`` the result is ``phi`` sampled on the grid. ``coarsen`` >= 1 is the
    residual grid's subsampling factor (1: one residual vector per voxel). With
    ``reg_coarsen`` > 1 the regularizer is taken on a grid that many times coarser (the
    total field, ``phi`` plus the residual, sampled there): on a fine grid it otherwise
    costs as much as the warp.
    """
    if steps < 0:
        raise ValueError(f"expected steps >= 0, found {steps}")
    if coarsen < 1 or reg_coarsen < 1:
        raise ValueError(f"expected coarsen and reg_coarsen >= 1, found {coarsen} and {reg_coarsen}")
    reg_fn = REGULARIZERS[regularizer] if isinstance(regularizer, str) else regularizer
    full_shape = tuple(int(n) for n in fixed.shape[2:])
    dev, dtype = fixed.device, torch.float32
    with torch.no_grad():
        u_full = (phi.on_grid(full_shape, dev, dtype) - identity_grid(full_shape, dev, dtype)).float()
    if steps == 0:
        return DisplacementField(u_full), []
    moving = moving.float()
    fixed = fixed.float()
    pool = F.avg_pool3d if len(full_shape) == 3 else F.avg_pool2d
    if downsample > 1:
        moving = pool(moving, downsample, ceil_mode=True)
        fixed = pool(fixed, downsample, ceil_mode=True)
    shape = tuple(int(n) for n in fixed.shape[2:])
    grid = identity_grid(shape, dev, dtype)
    with torch.no_grad():
        u_net = (phi.on_grid(shape, dev, dtype) - grid).float()
        at_net = grid + u_net  # phi on the grid: the residual is added to this
        reg_shape = _coarse_shape(shape, reg_coarsen) if reg_coarsen > 1 else shape
        u_reg = u_net if reg_shape == shape else (phi.on_grid(reg_shape, dev, dtype)
                                                   - identity_grid(reg_shape, dev, dtype)).float()
    sim_fn = _similarity_to(fixed, similarity, similarity_kwargs)
    to_norm = 1.0 / voxel_scale(shape, u_net)  # voxels -> normalized units
    residual = torch.zeros((1, len(shape), *_coarse_shape(shape, coarsen)), device=dev, dtype=dtype, requires_grad=True)
    mode = "trilinear" if len(shape) == 3 else "bilinear"
    opt = torch.optim.Adam([residual], lr=float(lr))
    losses: list[float] = []

    upsamplers: dict[tuple[int, ...], _Upsample] = {}

    def upsampled(size: tuple[int, ...]) -> torch.Tensor:
        small = tuple(residual.shape[2:])
        if size == small:
            return residual
        if size not in upsamplers:
            upsamplers[size] = _Upsample(small, size, dev, dtype)
        return upsamplers[size](residual)

    for _ in range(int(steps)):
        opt.zero_grad(set_to_none=True)
        r = upsampled(shape) * to_norm
        warped = sample(moving, at_net + r)
        reg = reg_fn(u_reg + (r if reg_shape == shape else upsampled(reg_shape) * to_norm))
        loss = sim_fn(warped) + lam * reg
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    with torch.no_grad():
        if shape == full_shape:
            return DisplacementField(u_net + upsampled(shape) * to_norm), losses
        r = F.interpolate(residual * to_norm, size=full_shape, mode=mode, align_corners=False)
        return DisplacementField(u_full + r), losses


__all__ = ["optimize_field", "optimize_on_data"]
