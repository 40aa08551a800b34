"""A 2D/3D UNet whose zero-initialised output makes the untrained model the identity."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


def _conv(dim: int):
    return nn.Conv3d if dim == 3 else nn.Conv2d


class _Block(nn.Sequential):
    def __init__(self, dim: int, cin: int, cout: int, stride: int = 1):
        conv = _conv(dim)
        super().__init__(conv(cin, cout, 3, stride=stride, padding=1), nn.LeakyReLU(0.2, inplace=True))


class UNet(nn.Module):
    """Encoder-decoder with skip connections.

    ``channels[0]`` is the full-resolution width; each further entry adds a level
    (a stride-2 convolution down, nearest upsampling back, concatenated skips).
    Inputs must have every spatial size divisible by ``2 ** (len(channels) - 1)``.
    """

    def __init__(self, dim: int = 3, in_channels: int = 2, out_channels: int | None = None,
                 channels: Sequence[int] = (16, 32, 32, 64)):
        super().__init__()
        if dim not in (2, 3):
            raise ValueError(f"UNet dim must be 2 or 3, got {dim}")
        self.dim = dim
        self.in_channels = in_channels
        self.out_channels = dim if out_channels is None else out_channels
        self.channels = tuple(channels)
        self.levels = len(self.channels) - 1
        self.stem = _Block(dim, in_channels, self.channels[0])
        self.down = nn.ModuleList(_Block(dim, a, b, stride=2) for a, b in zip(self.channels, self.channels[1:]))
        self.up = nn.ModuleList(
            _Block(dim, b + a, a) for a, b in zip(self.channels[:-1], self.channels[1:])
        )
        self.head = _conv(dim)(self.channels[0], self.out_channels, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def check_shape(self, shape: Sequence[int]) -> None:
        m = 2 ** self.levels
        if len(shape) != self.dim or any(s % m for s in shape):
            raise ValueError(f"UNet with {self.levels} levels needs a {self.dim}D input with every size "
                             f"divisible by {m}; got spatial shape {tuple(shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_shape(x.shape[2:])
        if x.shape[1] != self.in_channels:
            raise ValueError(f"UNet expects {self.in_channels} input channels, got {x.shape[1]}")
        skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(skips[-1]))
        y = skips.pop()
        for block in reversed(self.up):
            skip = skips.pop()
            y = F.interpolate(y, size=skip.shape[2:], mode="nearest")
            y = block(torch.cat([y, skip], dim=1))
        return self.head(y)
