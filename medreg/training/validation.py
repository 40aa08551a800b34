"""Validation on held-out pairs: loss terms and landmark error in mm (docs/reference.md §4).

For each fixed landmark ``p`` (LPS mm): world -> voxel of the network grid ->
normalized coordinates -> ``phi`` -> moving voxel (same grid) -> LPS mm, and
``TRE = ||phi(p) - p_moving||``. ``phi`` is evaluated at the fixed landmarks
(never the field sampled at the moving ones).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import numpy as np
import torch

from medreg.geometry import Grid, WorldTransform
from medreg.spatial.grid import sample
from medreg.spatial.transforms import Transform


def map_points(phi: Transform, points_lps: np.ndarray, affine: np.ndarray, shape: tuple[int, ...],
               device: torch.device | str = "cpu") -> np.ndarray:
    """Fixed-space LPS points -> moving-space LPS points through ``phi`` (fixed and moving share ``affine``)."""
    return WorldTransform(phi, Grid(affine, tuple(shape)), device=device).map_points(points_lps)


def landmark_errors(phi: Transform, fixed_lps: np.ndarray, moving_lps: np.ndarray, affine: np.ndarray,
                    shape: tuple[int, ...], device: torch.device | str = "cpu",
                    global_lps: np.ndarray | None = None) -> np.ndarray:
    """``||A(phi(p_fixed)) - p_moving||`` in mm per landmark (``A = global_lps``, the global stage; none: identity)."""
    mapped = map_points(phi, fixed_lps, affine, shape, device)
    if global_lps is not None:
        mapped = mapped @ global_lps[:3, :3].T + global_lps[:3, 3]
    return np.linalg.norm(mapped - np.asarray(moving_lps, dtype=np.float64), axis=1)


def grid_lines(shape: tuple[int, ...], every: int = 6) -> torch.Tensor:
    """An image (1, 1, *shape) of grid lines every ``every`` voxels, to show a deformation."""
    img = torch.zeros(shape)
    for axis, n in enumerate(shape):
        index = [slice(None)] * len(shape)
        index[axis] = slice(0, n, every)
        img[tuple(index)] = 1.0
    return img[None, None]


def panel(fixed: torch.Tensor, moving: torch.Tensor, warped: torch.Tensor, phi_coords: torch.Tensor) -> np.ndarray:
    """A (H, 5W) image of the middle slice along the last axis: fixed, moving, warped, |warped-fixed|, grid."""
    shape = tuple(fixed.shape[2:])
    k = shape[-1] // 2
    grid = sample(grid_lines(shape).to(phi_coords), phi_coords)
    tiles = [fixed[0, 0], moving[0, 0], warped[0, 0], (warped[0, 0] - fixed[0, 0]).abs(), grid[0, 0]]
    sl = [t[..., k].detach().float().cpu().clamp(0, 1).numpy() for t in tiles]
    return np.concatenate([np.rot90(s) for s in sl], axis=1)


@torch.no_grad()
def validate(objective: torch.nn.Module, items: list[dict[str, Any]], device: torch.device,
             autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
             want_panel: bool = False) -> tuple[dict[str, float], np.ndarray | None]:
    """Mean loss terms and landmark errors over ``items`` (loaded pairs); optionally an image panel."""
    sums: dict[str, list[float]] = {}
    tre_all, tre_none = [], []
    image = None
    was_training = objective.training
    objective.eval()
    for n, item in enumerate(items):
        fixed = torch.as_tensor(item["fixed"])[None].to(device)
        moving = torch.as_tensor(item["moving"])[None].to(device)
        with autocast():
            result = objective(moving, fixed)
        for key, value in result.scalars().items():
            sums.setdefault(key, []).append(value)
        shape = tuple(fixed.shape[2:])
        if len(item["fixed_points"]):
            tre_all.append(landmark_errors(result.phi, item["fixed_points"], item["moving_points"],
                                           item["affine"], shape, device, item.get("global_lps")))
            tre_none.append(np.linalg.norm(item["fixed_points"] - item["moving_points"], axis=1))
        if want_panel and n == 0:
            coords = result.phi.on_grid(shape, device, torch.float32)
            image = panel(fixed, moving, result.warped, coords)
        del result
    objective.train(was_training)
    metrics = {k: float(np.mean(v)) for k, v in sums.items()}
    if tre_all:
        # mean over pairs of the per-pair mean error (each pair counts once)
        metrics["tre_mm"] = float(np.mean([e.mean() for e in tre_all]))
        metrics["tre_none_mm"] = float(np.mean([e.mean() for e in tre_none]))
    return metrics, image
