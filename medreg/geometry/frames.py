"""Conversions between voxel indices, RAS world mm (nibabel) and LPS physical mm (ITK/ANTs).

Conventions (the README's coordinate convention):

- Voxel indices ``ijk`` are 0-based, in array order, as continuous coordinates
  (voxel centres at integers).
- ``affine`` is a NIfTI 4x4 voxel -> RAS mm matrix, as nibabel returns it.
- World points handed around in medreg (``Landmarks.points``, registration APIs)
  are **LPS mm** (ITK, ANTs, BraTS-Reg CSV). ``LPS = diag(-1, -1, 1) * RAS``.

Every function takes and returns ``(N, 3)`` float64 arrays (a single point of
shape ``(3,)`` is accepted and returned as ``(1, 3)``). Nothing here hard-codes
an offset: BraTS-Reg's 239 comes out of the header's affine.
"""

from __future__ import annotations

import numpy as np

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])  # the one flip (its own inverse): LPS = RAS_TO_LPS @ RAS
_FLIP = np.diag(RAS_TO_LPS)[:3]


def _points(xyz: np.ndarray) -> np.ndarray:
    pts = np.asarray(xyz, dtype=np.float64)
    if pts.ndim == 1:
        pts = pts[None, :]
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"expected points of shape (N, 3), found {pts.shape}")
    return pts


def _affine(affine: np.ndarray) -> np.ndarray:
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4):
        raise ValueError(f"expected a 4x4 affine, found shape {a.shape}")
    return a


def lps_matrix(affine: np.ndarray) -> np.ndarray:
    """The 4x4 voxel -> LPS mm matrix of a voxel -> RAS ``affine`` (and back: the flip is its own inverse)."""
    return RAS_TO_LPS @ _affine(affine)


def voxel_to_ras(affine: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    """0-based voxel indices -> RAS mm."""
    a, p = _affine(affine), _points(ijk)
    return p @ a[:3, :3].T + a[:3, 3]


def ras_to_voxel(affine: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """RAS mm -> continuous 0-based voxel indices."""
    a, p = _affine(affine), _points(xyz)
    return np.linalg.solve(a[:3, :3], (p - a[:3, 3]).T).T


def ras_to_lps(xyz: np.ndarray) -> np.ndarray:
    """RAS mm -> LPS mm (negate the first two axes)."""
    return _points(xyz) * _FLIP


def lps_to_ras(xyz: np.ndarray) -> np.ndarray:
    """LPS mm -> RAS mm (negate the first two axes)."""
    return _points(xyz) * _FLIP


def voxel_to_lps(affine: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    """0-based voxel indices -> LPS mm."""
    return ras_to_lps(voxel_to_ras(affine, ijk))


def lps_to_voxel(affine: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """LPS mm -> continuous 0-based voxel indices."""
    return ras_to_voxel(affine, lps_to_ras(xyz))


def index_to_normalized(shape) -> np.ndarray:
    """4x4: 0-based voxel index -> normalized coordinate in [-1, 1] (``align_corners=False``), array order."""
    n = np.asarray(shape, dtype=np.float64)
    m = np.eye(4)
    m[:3, :3] = np.diag(2.0 / n)
    m[:3, 3] = 1.0 / n - 1.0
    return m
