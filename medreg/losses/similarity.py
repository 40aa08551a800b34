"""Similarity losses (lower is better), functional form plus thin modules.

All take ``(B, C, *S)`` images (2D or 3D) and return a scalar (mean over the batch)
unless ``reduction="none"`` asks for one value per batch item. Multi-channel
images are compared channel by channel and averaged.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _reduce(per_item: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_item.mean()
    if reduction == "none":
        return per_item
    raise ValueError(f"reduction {reduction!r}; expected 'mean' or 'none'")


def ssd_loss(a: torch.Tensor, b: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Mean squared difference per voxel."""
    return _reduce((a - b).pow(2).flatten(1).mean(1), reduction)


def ncc_loss(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8, reduction: str = "mean") -> torch.Tensor:
    """``1 - NCC`` over the whole image, per channel then averaged."""
    a = a.flatten(2).float()
    b = b.flatten(2).float()
    a = a - a.mean(-1, keepdim=True)
    b = b - b.mean(-1, keepdim=True)
    num = (a * b).mean(-1)
    den = torch.sqrt(a.pow(2).mean(-1) * b.pow(2).mean(-1) + eps)
    return _reduce(1 - (num / den).mean(1), reduction)


def box_filter(x: torch.Tensor, window: int) -> torch.Tensor:
    """Local mean over a ``window``-voxel cube (separable, zero padded, stride 1, same size)."""
    ndim = x.dim() - 2
    pad = window // 2
    pool = F.avg_pool3d if ndim == 3 else F.avg_pool2d
    for axis in range(ndim):
        kernel = [1] * ndim
        padding = [0] * ndim
        kernel[axis] = window
        padding[axis] = pad
        x = pool(x, kernel_size=tuple(kernel), stride=1, padding=tuple(padding), count_include_pad=False)
    return x


def lncc_loss(a: torch.Tensor, b: torch.Tensor, window: int = 5, eps: float = 1e-5,
              reduction: str = "mean") -> torch.Tensor:
    """``1 - LNCC`` with a cubic window of ``window`` voxels (odd).

    LNCC is the local covariance divided by ``sqrt(var_a * var_b + eps)``, averaged
    over voxels and channels; it is computed in float32 and is finite (0) on
    constant regions, so it never returns NaN.
    """
    if window % 2 != 1:
        raise ValueError(f"LNCC window must be odd, got {window}")
    a = a.float()
    b = b.float()
    c = a.shape[1]
    stats = box_filter(torch.cat([a, b, a * a, b * b, a * b], dim=1), window)
    ma, mb, maa, mbb, mab = stats.split(c, dim=1)
    var_a = (maa - ma * ma).clamp_min(0)
    var_b = (mbb - mb * mb).clamp_min(0)
    cross = mab - ma * mb
    lncc = cross / torch.sqrt(var_a * var_b + eps)
    return _reduce(1 - lncc.flatten(1).mean(1), reduction)


class SSD(nn.Module):
    def forward(self, a, b):
        return ssd_loss(a, b)


class NCC(nn.Module):
    def forward(self, a, b):
        return ncc_loss(a, b)


class LNCC(nn.Module):
    def __init__(self, window: int = 5, eps: float = 1e-5):
        super().__init__()
        self.window = window
        self.eps = eps

    def forward(self, a, b):
        return lncc_loss(a, b, self.window, self.eps)

    def extra_repr(self) -> str:
        return f"window={self.window}, eps={self.eps}"
