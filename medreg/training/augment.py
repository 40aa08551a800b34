"""Random augmentation of a training pair with MONAI, deterministic given a seed.

Fixed and moving each get their own random affine (rotation, scale, translation
on the network grid, zero padding) and intensity scale/shift, so the network
sees more relative motion than the data holds. With ``contrast.prob`` > 0 both
then go through one random intensity curve (:func:`random_contrast`): a
contrast no scanner made, the same in both images so the similarity still
compares like with like. Every random draw comes from the seed passed in
(``set_random_state``), never from a global generator.
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
        self.contrast = cfg.contrast

    def image(self, image: torch.Tensor, seeds: np.ndarray) -> torch.Tensor:
        out = image
        for transform, seed in zip((self.affine, self.scale, self.shift), seeds):
            transform.set_random_state(seed=int(seed))
            out = transform(out)
        out = out.as_tensor() if hasattr(out, "as_tensor") else torch.as_tensor(out)
        return out.to(torch.float32).contiguous()

    def __call__(self, fixed: torch.Tensor, moving: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        seeds = np.random.SeedSequence(int(seed)).generate_state(7)  # the first 6 as before the contrast draw
        fixed, moving = self.image(fixed, seeds[:3]), self.image(moving, seeds[3:6])
        if self.contrast.prob > 0:
            rng = np.random.default_rng(int(seeds[6]))
            if rng.random() < self.contrast.prob:
                curves = [random_curve(rng, self.contrast.nodes, self.contrast.gamma) for _ in range(fixed.shape[0])]
                fixed, moving = random_contrast(fixed, curves), random_contrast(moving, curves)
        return fixed, moving


def random_curve(rng: np.random.Generator, nodes: int, gamma: float) -> tuple[np.ndarray, float]:
    """Knot values of a random piecewise-linear curve on [0, 1] (0 stays 0: the background) and a gamma."""
    values = np.concatenate([[0.0], rng.uniform(0.05, 1.0, nodes - 1)])
    return values, float(np.exp(rng.uniform(-gamma, gamma)))


def random_contrast(image: torch.Tensor, curves: list[tuple[np.ndarray, float]]) -> torch.Tensor:
    """``(C, ...)`` intensities in [0, 1] through one curve per channel (:func:`random_curve`), rescaled to [0, 1]."""
    out = torch.empty_like(image)
    for c, (values, gamma) in enumerate(curves):
        x = image[c].clamp(0, 1) * (len(values) - 1)
        lo = x.floor().clamp(max=len(values) - 2)
        t = x - lo
        v = torch.as_tensor(values, dtype=image.dtype)
        y = torch.lerp(v[lo.long()], v[lo.long() + 1], t).clamp_min(0) ** gamma
        out[c] = y / y.max().clamp_min(1e-6)
    return out
