"""A small convolutional encoder predicting an affine matrix (identity at initialisation)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn


class AffineNet(nn.Module):
    """Strided convolutions, global average pooling, a zero-initialised linear head.

    Returns ``(B, D, D+1)``: the offset from the identity matrix (normalized units).
    """

    def __init__(self, dim: int = 3, in_channels: int = 2, channels: Sequence[int] = (16, 32, 64, 64)):
        super().__init__()
        conv = nn.Conv3d if dim == 3 else nn.Conv2d
        layers: list[nn.Module] = []
        cin = in_channels
        for c in channels:
            layers += [conv(cin, c, 3, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            cin = c
        self.dim = dim
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(cin, dim * (dim + 1))
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x).flatten(2).mean(-1)
        return self.head(f).view(x.shape[0], self.dim, self.dim + 1)
