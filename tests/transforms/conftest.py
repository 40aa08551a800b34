"""Synthetic volumes with known world geometry for the preprocessing tests.

Tests get the helpers through the ``h`` fixture (pytest runs with
``--import-mode=importlib``, so test modules cannot import this file).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from medreg.geometry.frames import voxel_to_lps
from medreg.io.nifti import Volume


def world_grid(affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """LPS mm of every voxel centre, shape (X*Y*Z, 3)."""
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).reshape(-1, 3)
    return voxel_to_lps(affine, ijk)


def blob(points_lps: np.ndarray, centre_lps, sigma: float = 6.0) -> np.ndarray:
    """A smooth Gaussian blob (peak 1) centred at ``centre_lps``."""
    d2 = ((points_lps - np.asarray(centre_lps, dtype=np.float64)) ** 2).sum(-1)
    return np.exp(-d2 / (2 * sigma**2))


def make_volume(affine: np.ndarray, shape: tuple[int, int, int], centre_lps, sigma: float = 6.0, scale: float = 100.0) -> Volume:
    values = scale * blob(world_grid(affine, shape), centre_lps, sigma)
    return Volume(array=values.reshape(shape).astype(np.float32), affine=np.asarray(affine, dtype=np.float64))


def lps_header(spacing, origin_lps) -> np.ndarray:
    """A header whose voxel axes run along L, P, S (what ITK writes): RAS affine diag(-sx, -sy, sz)."""
    a = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    a[:3, 3] = [-origin_lps[0], -origin_lps[1], origin_lps[2]]
    return a


def permuted_ras_header(spacing, origin_ras) -> np.ndarray:
    """Axes permuted: voxel i runs along S, j along R, k along A (an oblique-free but reordered grid)."""
    a = np.zeros((4, 4))
    a[2, 0], a[0, 1], a[1, 2] = spacing
    a[:3, 3] = origin_ras
    a[3, 3] = 1.0
    return a


def centroid_lps(array: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Intensity-weighted centroid of a (C, X, Y, Z) or (X, Y, Z) array, as LPS mm via ``affine``."""
    arr = np.asarray(array, dtype=np.float64)
    if arr.ndim == 4:
        arr = arr[0]
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in arr.shape], indexing="ij"), -1).reshape(-1, 3)
    w = np.clip(arr.reshape(-1), 0, None)
    c = (ijk * w[:, None]).sum(0) / w.sum()
    return voxel_to_lps(affine, c)[0]


@pytest.fixture(scope="session")
def h() -> SimpleNamespace:
    """The helpers above, for test modules."""
    return SimpleNamespace(
        world_grid=world_grid, blob=blob, make_volume=make_volume, lps_header=lps_header,
        permuted_ras_header=permuted_ras_header, centroid_lps=centroid_lps,
    )
