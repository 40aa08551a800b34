"""Identity grids, unit conversions and the single ``grid_sample`` adapter."""

from __future__ import annotations

import functools
from typing import Sequence

import torch
import torch.nn.functional as F

_MODES = {"linear": "bilinear", "bilinear": "bilinear", "nearest": "nearest"}
_SPLIT_MIN = 32768  # output voxels below which one thread is as fast


@functools.lru_cache(maxsize=64)
def _identity_cached(shape: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    axes = [(2 * torch.arange(n, device=device, dtype=torch.float64) + 1) / n - 1 for n in shape]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=0).unsqueeze(0)
    return grid.to(dtype)


def identity_grid(shape: Sequence[int], device: torch.device | str | None = None,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Voxel-centre coordinates ``(1, D, *shape)`` in normalized units.

    Built lazily and cached by (shape, device, dtype). The returned tensor is
    shared: never modify it in place.
    """
    device = torch.device("cpu" if device is None else device)
    return _identity_cached(tuple(int(n) for n in shape), device, dtype)


def voxel_scale(shape: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    """Per-channel factor ``n / 2`` that turns normalized displacements into voxels, shaped to broadcast."""
    ndim = like.dim() - 2
    scale = torch.tensor([n / 2 for n in shape], device=like.device, dtype=like.dtype)
    return scale.view(1, -1, *([1] * ndim))


def voxel_to_normalized(index: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """0-based voxel indices ``(B, D, ...)`` to normalized coordinates."""
    n = voxel_scale(shape, index)
    return (index + 0.5) / n - 1


def normalized_to_voxel(coords: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Normalized coordinates ``(B, D, ...)`` to 0-based voxel indices."""
    n = voxel_scale(shape, coords)
    return (coords + 1) * n - 0.5


def to_grid_sample(coords: torch.Tensor) -> torch.Tensor:
    """The one adapter: ``(B, D, *S)`` array-order coordinates to grid_sample's ``(B, *S, D)`` xyz order."""
    d = coords.shape[1]
    return torch.stack([coords[:, i] for i in range(d - 1, -1, -1)], dim=-1)  # one copy; faster than flip


def sample(image: torch.Tensor, coords: torch.Tensor, mode: str = "linear",
           padding_mode: str = "border") -> torch.Tensor:
    """Interpolate ``image (B, C, *S_in)`` at ``coords (B|1, D, *S_out)`` -> ``(B, C, *S_out)``.

    ``coords`` may have any trailing shape (a grid of another size, or ``(B, D, N)``
    points); it is reshaped to what grid_sample needs and back.
    """
    ndim = image.dim() - 2
    if coords.shape[1] != ndim:
        raise ValueError(f"coordinates have {coords.shape[1]} channels, image has {ndim} spatial axes "
                         f"(image {tuple(image.shape)}, coords {tuple(coords.shape)})")
    if mode not in _MODES:
        raise ValueError(f"interpolation mode {mode!r}; expected one of {sorted(_MODES)}")
    out_shape = coords.shape[2:]
    if len(out_shape) != ndim:
        coords = coords.reshape(coords.shape[0], ndim, -1, *([1] * (ndim - 1)))
    if coords.shape[0] != image.shape[0]:
        if coords.shape[0] == 1:
            coords = coords.expand(image.shape[0], *coords.shape[1:])
        elif image.shape[0] == 1:
            image = image.expand(coords.shape[0], *image.shape[1:])
        else:
            raise ValueError(f"batch sizes differ: image {image.shape[0]}, coords {coords.shape[0]}")
    if coords.dtype != image.dtype:
        coords = coords.to(image.dtype)
    out = grid_sample(image, to_grid_sample(coords), mode=_MODES[mode], padding_mode=padding_mode)
    return out.reshape(*out.shape[:2], *out_shape)


def grid_sample(image: torch.Tensor, grid: torch.Tensor, mode: str = "bilinear",
                padding_mode: str = "border") -> torch.Tensor:
    """``F.grid_sample(..., align_corners=False)`` that keeps every CPU thread busy.

    PyTorch's CPU sampler for 3-D images works through the batch one item per thread,
    so a single pair (batch 1) runs on one core. Here a batch-1 3-D grid on a CPU is cut
    along its first axis into one batch item per thread (the image is shared, not copied):
    the same values, about 1.7x faster on 2 threads.
    """
    threads = torch.get_num_threads()
    if (image.device.type != "cpu" or grid.dim() != 5 or grid.shape[0] != 1 or image.shape[0] != 1
            or threads < 2 or grid.shape[1] < 2 or grid[0, ..., 0].numel() < _SPLIT_MIN):
        return F.grid_sample(image, grid, mode=mode, padding_mode=padding_mode, align_corners=False)
    k = min(threads, int(grid.shape[1]))
    d = int(grid.shape[1])
    pad = (-d) % k
    if pad:
        grid = F.pad(grid, (0, 0, 0, 0, 0, 0, 0, pad))
    parts = grid.reshape(k, (d + pad) // k, *grid.shape[2:])
    out = F.grid_sample(image.expand(k, *image.shape[1:]), parts, mode=mode, padding_mode=padding_mode,
                        align_corners=False)  # (k, C, d', H, W)
    out = out.transpose(0, 1).reshape(1, image.shape[1], d + pad, *out.shape[3:])
    return out[:, :, :d] if pad else out
