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

from medreg.spatial.grid import sample, voxel_to_normalized


def _spacing(affine: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)


def resample_to_spacing(image: torch.Tensor, affine: np.ndarray, spacing: Sequence[float] | None,
                        ) -> tuple[torch.Tensor, np.ndarray]:
    """Bring ``image (C, X, Y, Z)`` with voxel->RAS ``affine`` to ``spacing`` mm (same orientation).

    Integer coarsening factors use block averages (no aliasing); other factors use
    trilinear sampling. The new voxel ``j`` covers old voxels ``j*f .. j*f + f - 1``,
    its centre at old index ``j*f + (f - 1) / 2``; the affine says exactly that.
    """
    affine = np.asarray(affine, dtype=np.float64)
    if spacing is None:
        return image, affine
    factors = np.asarray(spacing, dtype=np.float64) / _spacing(affine)
    if np.allclose(factors, 1.0, atol=1e-4):
        return image, affine
    shape = np.asarray(image.shape[1:])
    rounded = np.round(factors)
    if np.allclose(factors, rounded, atol=1e-4) and (rounded >= 1).all():
        k = rounded.astype(int)
        pad = (-shape) % k
        x = F.pad(image[None], [p for a in reversed(range(3)) for p in (0, int(pad[a]))])
        out = F.avg_pool3d(x, kernel_size=tuple(int(v) for v in k), stride=tuple(int(v) for v in k))[0]
        factors = k.astype(np.float64)
    else:
        new_shape = np.maximum(1, np.round(shape / factors)).astype(int)
        axes = [torch.arange(n, dtype=torch.float64) * f + (f - 1) / 2 for n, f in zip(new_shape, factors)]
        idx = torch.stack(torch.meshgrid(*axes, indexing="ij"))[None]
        coords = voxel_to_normalized(idx, tuple(int(s) for s in shape)).to(image.dtype)
        out = sample(image[None], coords, mode="linear", padding_mode="zeros")[0]
    step = np.eye(4)
    step[:3, :3] = np.diag(factors)
    step[:3, 3] = (factors - 1) / 2
    return out.contiguous(), affine @ step


def pad_to_multiple(image: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad ``(C, X, Y, Z)`` at the end of each axis to a multiple (the affine is unchanged)."""
    pad = [(-s) % multiple for s in image.shape[1:]]
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
