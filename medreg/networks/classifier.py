"""A small MLP digit classifier, used to score what a warped image looks like."""

from __future__ import annotations

import torch
import torch.nn as nn


class DigitClassifier(nn.Module):
    def __init__(self, pixels: int = 784, hidden: int = 128, classes: int = 10):
        super().__init__()
        self.layers = nn.Sequential(nn.Flatten(), nn.Linear(pixels, hidden), nn.ReLU(), nn.Linear(hidden, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
