"""Random augmentation of a training pair with MONAI, deterministic given a seed.

Fixed and moving each get their own random affine (rotation, scale, translation
on the network grid, zero padding) and intensity scale/shift, so the network
sees more relative motion than the data holds. Every random draw comes from the
seed passed in (``set_random_state``), never from a global generator.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch


class PairAugmenter:
    """``augment(fixed, moving, seed) -> (fixed, moving)`` for ``(C, X, Y, Z)`` tensors."""

    def __init__(self, cfg: Any):
        from monai.transforms import RandAffine, RandScaleIntensity, RandShiftIntensity

        rot = math.radians(cfg.rotate_deg)
        self.affine = RandAffine(
            prob=cfg.prob, rotate_range=(rot, rot, rot), scale_range=(cfg.scale,) * 3,
            translate_range=(cfg.translate,) * 3, mode="bilinear", padding_mode="zeros",
        )
        self.scale = RandScaleIntensity(factors=cfg.intensity_scale, prob=1.0 if cfg.intensity_scale > 0 else 0.0)
        self.shift = RandShiftIntensity(offsets=cfg.intensity_shift, prob=1.0 if cfg.intensity_shift > 0 else 0.0)

    def image(self, image: torch.Tensor, seeds: np.ndarray) -> torch.Tensor:
        out = image
        for transform, seed in zip((self.affine, self.scale, self.shift), seeds):
            transform.set_random_state(seed=int(seed))
            out = transform(out)
        out = out.as_tensor() if hasattr(out, "as_tensor") else torch.as_tensor(out)
        return out.to(torch.float32).contiguous()

    def __call__(self, fixed: torch.Tensor, moving: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        seeds = np.random.SeedSequence(int(seed)).generate_state(6)
        return self.image(fixed, seeds[:3]), self.image(moving, seeds[3:])
