"""The seed's fully connected network: ``2 x H x W -> hidden -> hidden -> 2 x H x W``."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn


class FCNet(nn.Module):
    """MLP predicting a 2D displacement (normalized units) from a stacked (moving, fixed) pair.

    The last layer is zero-initialised, so the untrained network predicts the identity.
    """

    def __init__(self, shape: Sequence[int] = (28, 28), in_channels: int = 2, hidden: int = 50):
        super().__init__()
        self.shape = tuple(shape)
        self.in_channels = in_channels
        n = 1
        for s in self.shape:
            n *= s
        self.layers = nn.Sequential(
            nn.Linear(in_channels * n, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, len(self.shape) * n),
        )
        nn.init.zeros_(self.layers[-1].weight)
        nn.init.zeros_(self.layers[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expected = (self.in_channels, *self.shape)
        if tuple(x.shape[1:]) != expected:
            raise ValueError(f"FCNet expects inputs (B, {', '.join(map(str, expected))}), got {tuple(x.shape)}")
        out = self.layers(x.flatten(1))
        return out.view(x.shape[0], len(self.shape), *self.shape)
