"""Training images made from label maps alone (label-map synthesis, as SynthMorph does).

With ``train.augmentation.synth.prob`` > 0, a training pair whose manifest entry has label maps
(``fixed_labels`` / ``moving_labels``, as demo-brain's CSF/GM/WM/lesion maps) is, with that
probability, replaced by two images of a contrast no scanner made:

1. every class gets a random intensity per channel (the background stays 0), the same in the
   fixed and the moving image, so the similarity still compares like with like;
2. the image is the class fractions on the network grid (the one-hot labels block-averaged like
   the images, so partial volumes are kept) times those intensities;
3. then, per image: Gaussian noise inside the head (a texture within each class), a Gaussian blur,
   a smooth multiplicative bias field and a gamma, and a rescale to [0, 1].

The images are functions of the labels only, so the network has to register the anatomy's
structure rather than one template's intensities; the geometry is untouched (the labels are the
dataset's exact ones, and the random affine, world motion and global stage come after, as for
real images). Every draw comes from the sample's seed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medreg.transforms.network_grid import network_grid


def label_fractions(labels: np.ndarray, affine: np.ndarray, preprocess: Any, classes: int) -> torch.Tensor:
    """``(X, Y, Z)`` integer labels on the preprocessed grid -> ``(classes, x, y, z)`` float16 fractions on the
    network's grid (:func:`medreg.transforms.network_grid.network_grid`: block averages, zero padding)."""
    lab = torch.from_numpy(np.asarray(labels).astype(np.int64, copy=False))
    if int(lab.min()) < 0 or int(lab.max()) >= classes:
        raise ValueError(f"labels must lie in 0..{classes - 1}, found {int(lab.min())}..{int(lab.max())}")
    one_hot = F.one_hot(lab, classes).permute(3, 0, 1, 2).to(torch.float32)
    out, _ = network_grid(one_hot, affine, preprocess)
    return out.to(torch.float16).contiguous()


def _blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(C, X, Y, Z)`` with ``sigma`` voxels (replicated borders)."""
    if sigma <= 0.05:
        return image
    r = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-r, r + 1, dtype=image.dtype)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    out = image[:, None]  # (C, 1, X, Y, Z)
    for axis in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = k.numel()
        pad = [0] * 6
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = r
        out = F.conv3d(F.pad(out, pad, mode="replicate"), k.view(shape))
    return out[:, 0]


class LabelSynth:
    """``synth(fixed_fractions, moving_fractions, channels, seed) -> (fixed, moving)`` or None (not drawn).

    ``cfg`` is :class:`medreg.config.SynthAugConfig`.
    """

    def __init__(self, cfg: Any):
        self.cfg = cfg

    def contrast(self, rng: np.random.Generator, classes: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
        """Class intensities ``(channels, classes)`` (background 0) and a gamma per channel."""
        means = rng.uniform(0.05, 1.0, size=(channels, classes))
        means[:, 0] = 0.0
        gammas = np.exp(rng.uniform(-self.cfg.gamma, self.cfg.gamma, size=channels))
        return means, gammas

    def image(self, fractions: torch.Tensor, means: np.ndarray, gammas: np.ndarray,
              rng: np.random.Generator) -> torch.Tensor:
        """One image ``(channels, x, y, z)`` in [0, 1] from its class fractions."""
        cfg = self.cfg
        frac = fractions.to(torch.float32)
        img = torch.einsum("ck,kxyz->cxyz", torch.as_tensor(means, dtype=torch.float32), frac)
        head = (1.0 - frac[0]) * (frac.sum(0) > 0)  # 0 in the background and in the zero padding (no class)
        if cfg.noise > 0:
            sd = rng.uniform(0, cfg.noise)
            img = img + sd * torch.from_numpy(rng.standard_normal(img.shape).astype(np.float32)) * head
        img = _blur(img, float(rng.uniform(0, cfg.blur)))
        if cfg.bias > 0:
            nodes = rng.standard_normal((img.shape[0], 1, 4, 4, 4)).astype(np.float32) * cfg.bias
            field = F.interpolate(torch.from_numpy(nodes), size=tuple(img.shape[1:]), mode="trilinear",
                                  align_corners=True)[:, 0]
            img = img * torch.exp(field)
        img = img.clamp_min(0) * head
        img = img / img.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)  # [0, 1] per channel, so is its gamma
        return (img ** torch.as_tensor(gammas, dtype=img.dtype).view(-1, 1, 1, 1)).contiguous()

    def __call__(self, fixed_fractions: torch.Tensor, moving_fractions: torch.Tensor, channels: int, seed: int
                 ) -> tuple[torch.Tensor, torch.Tensor] | None:
        rng = np.random.default_rng([int(seed), 11])
        if rng.random() >= self.cfg.prob:
            return None
        classes = fixed_fractions.shape[0]
        if moving_fractions.shape[0] != classes:
            raise ValueError(f"fixed and moving fractions have {classes} and {moving_fractions.shape[0]} classes")
        means, gammas = self.contrast(rng, classes, channels)
        return self.image(fixed_fractions, means, gammas, rng), self.image(moving_fractions, means, gammas, rng)
