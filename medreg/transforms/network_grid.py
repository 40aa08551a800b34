"""The network-grid stage of the input pipeline: preprocessed data -> the grid the network runs on.

The network's grid is the config's ``preprocess.spacing``: when the data were
preprocessed at another spacing (say 1 mm data and a 2 mm model), :func:`network_grid`
resamples (block averages for integer factors) and pads to
``preprocess.shape_multiple``; affines follow (:meth:`medreg.geometry.Grid.resampled`),
so world coordinates (landmarks) stay exact. Training (:mod:`medreg.training.data`) and
inference (:mod:`medreg.inference.prepare`) both use it.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from medreg.geometry import Grid
from medreg.spatial.grid import sample, voxel_to_normalized


def resample_to_spacing(image: torch.Tensor, affine: np.ndarray, spacing: Sequence[float] | None,
                        ) -> tuple[torch.Tensor, np.ndarray]:
    """Bring ``image (C, X, Y, Z)`` with voxel->RAS ``affine`` to ``spacing`` mm (same orientation).

    The target grid is :meth:`medreg.geometry.Grid.resampled` (new voxel ``j`` covers old
    voxels ``j f .. j f + f - 1``). Integer coarsening factors use block averages (no
    aliasing); other factors sample trilinearly at the new voxel centres.
    """
    src = Grid(affine, tuple(image.shape[1:]))
    if spacing is None:
        return image, src.affine
    factors = np.asarray(spacing, dtype=np.float64) / np.asarray(src.spacing)
    if np.allclose(factors, 1.0, atol=1e-4):
        return image, src.affine
    rounded = np.round(factors)
    if np.allclose(factors, rounded, atol=1e-4) and (rounded >= 1).all():
        k = rounded.astype(int)
        target = src.resampled(np.asarray(src.spacing) * k)
        pad = np.asarray(target.shape) * k - np.asarray(src.shape)
        x = F.pad(image[None], [p for a in reversed(range(3)) for p in (0, int(pad[a]))])
        out = F.avg_pool3d(x, kernel_size=tuple(int(v) for v in k), stride=tuple(int(v) for v in k))[0]
    else:
        target = src.resampled(spacing, shape=np.maximum(1, np.round(np.asarray(src.shape) / factors)).astype(int))
        m = src.index_from(target)  # axis-aligned: new index -> old index, per axis
        axes = [torch.arange(n, dtype=torch.float64) * m[a, a] + m[a, 3] for a, n in enumerate(target.shape)]
        idx = torch.stack(torch.meshgrid(*axes, indexing="ij"))[None]
        coords = voxel_to_normalized(idx, src.shape).to(image.dtype)
        out = sample(image[None], coords, mode="linear", padding_mode="zeros")[0]
    return out.contiguous(), target.affine


def pad_to_multiple(image: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad ``(C, X, Y, Z)`` at the end of each axis to :meth:`Grid.padded`'s shape (the affine is unchanged)."""
    target = Grid(np.eye(4), tuple(image.shape[1:])).padded(multiple)
    pad = [t - s for t, s in zip(target.shape, image.shape[1:])]
    if not any(pad):
        return image
    return F.pad(image[None], [p for a in reversed(range(3)) for p in (0, pad[a])])[0]


def network_grid(image: torch.Tensor, affine: np.ndarray, preprocess: Any) -> tuple[torch.Tensor, np.ndarray]:
    """An image on its preprocessed grid -> the network's grid (``preprocess.spacing``).

    Then zero-padded at the end of each axis to a multiple of ``preprocess.shape_multiple``
    (which the config guarantees the model can take); the affine is unchanged by padding.
    """
    out, new_affine = resample_to_spacing(image, affine, preprocess.spacing)
    return pad_to_multiple(out, preprocess.shape_multiple), new_affine
