"""Training pairs as the network meets them at test time: a random world motion, then the global stage.

For each sample (``train.augmentation.motion``) a random affine world map ``M`` (LPS mm, about
the image centre: a rotation by up to ``rotate_deg`` about a random axis, per-axis scales,
shears, a translation) moves the moving image, ``moving'(q) = moving(M^-1 q)``, as a patient
moves between scans (its landmarks would move to ``M(x)``). The global stage
(``global_stage.mode``, :func:`medreg.inference.global_stage.global_align`) then finds ``A`` on
the moved pair, and the network is given ``moving'(A(p)) = moving(M^-1 A p)`` on the fixed grid,
resampled once from the original moving image: what :func:`medreg.inference.register.register_pair`
hands the network after its global stage (the residual of ``A`` included).

:func:`align_validation_item` runs the global stage once on a validation pair as it is (no
motion): the network sees the aligned moving image and the landmark error goes through
``A ∘ phi``, as in ``medreg register``.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from medreg.errors import InputError
from medreg.geometry import Grid, warp_image
from medreg.inference.global_stage import GlobalConfig, global_align
from medreg.io.nifti import Volume


# The global stage in training: a lighter pyramid than inference's (8 / 4 mm, 40 / 20 rigid and 0 / 20 affine
# steps, 20,000 points a level). On the validation motions of the global stage's docstring it leaves 0.3-0.5 mm
# mean error (inference's pyramid: 0.04-0.35 mm), about a quarter of the 2 mm network grid's voxel, at a third of
# the cost (about 0.3 s a sample on the 2 mm demo-brain grid, 2 CPU cores).
TRAINING_STAGE = dict(levels_mm=(8.0, 4.0), steps=(40, 20), affine_steps=(0, 20), max_points=20000)


def random_motion(rng: np.random.Generator, cfg: Any, centre: np.ndarray) -> np.ndarray:
    """A 4x4 LPS world map: ``L (p - c) + c + t`` with ``L = R S H`` (rotation, scale, shear) drawn from ``cfg``."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis) + 1e-12
    angle = np.deg2rad(rng.uniform(-cfg.rotate_deg, cfg.rotate_deg))
    rot = Rotation.from_rotvec(angle * axis).as_matrix()
    scale = np.diag(1.0 + rng.uniform(-cfg.scale, cfg.scale, size=3))
    shear = np.eye(3)
    off = ~np.eye(3, dtype=bool)
    shear[off] = rng.uniform(-cfg.shear, cfg.shear, size=6)
    lin = rot @ scale @ shear
    m = np.eye(4)
    m[:3, :3] = lin
    m[:3, 3] = centre - lin @ centre + rng.uniform(-cfg.translate_mm, cfg.translate_mm, size=3)
    return m


def _volume(image: torch.Tensor, affine: np.ndarray, name: str) -> Volume:
    return Volume(np.asarray(image[0], dtype=np.float32), np.asarray(affine, dtype=np.float64), name)


class MotionThenGlobal:
    """``(fixed, moving, affine, seed) -> moving``: the moving image after a random motion and the global stage.

    ``affine`` is the shared network grid's voxel -> RAS matrix. With ``mode`` none the network
    gets the moved image as it is (it learns the motion itself). A pair the stage cannot align
    (it raises) is given without motion, and :attr:`failures` counts it.
    """

    def __init__(self, motion_cfg: Any, mode: str, stage: GlobalConfig | None = None, similarity: str = "ncc"):
        self.motion = motion_cfg
        self.stage = stage if stage is not None else GlobalConfig(mode, similarity=similarity, **TRAINING_STAGE)
        self.failures = 0

    def __call__(self, fixed: torch.Tensor, moving: torch.Tensor, affine: np.ndarray, seed: int) -> torch.Tensor:
        grid = Grid(np.asarray(affine, dtype=np.float64), tuple(int(n) for n in fixed.shape[1:]))
        centre = grid.index_to_lps((np.asarray(grid.shape, float)[None] - 1) / 2)[0]
        m = random_motion(np.random.default_rng([int(seed), 11]), self.motion, centre) if self.motion.enabled \
            else np.eye(4)
        if not self.stage.enabled:
            return torch.from_numpy(warp_image(moving, grid, grid, grid.affine_displacement(np.linalg.inv(m))))
        moved = warp_image(moving[:1], grid, grid, grid.affine_displacement(np.linalg.inv(m)))
        try:
            a = global_align(_volume(fixed, affine, "training fixed"), _volume(torch.from_numpy(moved), affine,
                                                                               "training moving"), self.stage).matrix
        except InputError as err:
            self.failures += 1
            if self.failures == 1:  # said once per process (a DataLoader worker counts its own)
                print(f"medreg train: warning: the global stage could not align a training sample ({err}); such "
                      f"samples are used without the motion", file=sys.stderr)
            return moving
        return torch.from_numpy(warp_image(moving, grid, grid, grid.affine_displacement(np.linalg.inv(m) @ a)))


def align_validation_item(item: dict[str, Any], stage: GlobalConfig) -> dict[str, Any]:
    """A loaded validation pair with the global stage applied: ``moving`` aligned, ``global_lps`` = ``A``."""
    if not stage.enabled:
        return item
    grid = Grid(np.asarray(item["affine"], dtype=np.float64), tuple(int(n) for n in item["fixed"].shape[1:]))
    fixed, moving = torch.as_tensor(item["fixed"]), torch.as_tensor(item["moving"])
    a = global_align(_volume(fixed, item["affine"], f"validation pair {item['id']} (fixed)"),
                     _volume(moving, item["affine"], f"validation pair {item['id']} (moving)"), stage).matrix
    aligned = torch.from_numpy(warp_image(moving, grid, grid, grid.affine_displacement(a)))
    return {**item, "moving": aligned, "global_lps": a}


__all__ = ["MotionThenGlobal", "align_validation_item", "random_motion"]
