"""A voxel grid in world space: a voxel -> RAS affine and a shape, and every map between its frames.

Frames of a grid (array order everywhere):

- *index*: 0-based continuous voxel indices (voxel centres at integers);
- *normalized*: ``[-1, 1]`` edge to edge, ``align_corners=False`` (what the
  networks and :mod:`medreg.spatial` use);
- *LPS*: physical mm as ITK and ANTs see them (``RAS_TO_LPS @ affine``).

All maps are 4x4 float64 matrices (``a_from_b`` takes ``b`` coordinates to ``a``).
Derived grids (:meth:`Grid.resampled`, :meth:`Grid.cropped`, :meth:`Grid.padded`,
:meth:`Grid.slice`) cover the same world points, so coordinates survive every step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from medreg.geometry.frames import index_to_normalized, lps_matrix, lps_to_voxel, voxel_to_lps


def _affine(value: Any) -> np.ndarray:
    a = np.asarray(value, dtype=np.float64)
    if a.shape != (4, 4) or not np.all(np.isfinite(a)):
        raise ValueError(f"expected a finite 4x4 affine, found shape {a.shape}")
    if abs(np.linalg.det(a[:3, :3])) < 1e-12:
        raise ValueError("expected an invertible affine, found a singular one")
    return a


@dataclass(frozen=True, eq=False)
class Grid:
    """A 3D voxel grid: ``affine`` (voxel -> RAS mm, nibabel's convention) and ``shape`` (X, Y, Z)."""

    affine: np.ndarray
    shape: tuple[int, int, int]

    def __post_init__(self) -> None:
        object.__setattr__(self, "affine", _affine(self.affine))
        shape = tuple(int(s) for s in self.shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"expected a 3D shape of positive sizes, found {tuple(self.shape)}")
        object.__setattr__(self, "shape", shape)

    @classmethod
    def of(cls, image: Any) -> "Grid":
        """The grid of anything with ``.affine`` and ``.shape`` (a Volume, a nibabel image; extra axes dropped)."""
        return cls(image.affine, tuple(image.shape[:3]))

    def __repr__(self) -> str:
        return f"Grid(shape={self.shape}, spacing={tuple(round(s, 4) for s in self.spacing)})"

    def same_as(self, other: "Grid", atol: float = 1e-6) -> bool:
        return self.shape == other.shape and bool(np.allclose(self.affine, other.affine, atol=atol))

    # -- frames ----------------------------------------------------------------
    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm per axis."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def lps_from_index(self) -> np.ndarray:
        return lps_matrix(self.affine)

    @property
    def index_from_lps(self) -> np.ndarray:
        return np.linalg.inv(self.lps_from_index)

    @property
    def normalized_from_index(self) -> np.ndarray:
        return index_to_normalized(self.shape)

    @property
    def normalized_from_lps(self) -> np.ndarray:
        return self.normalized_from_index @ self.index_from_lps

    @property
    def lps_from_normalized(self) -> np.ndarray:
        return np.linalg.inv(self.normalized_from_lps)

    def index_from(self, other: "Grid") -> np.ndarray:
        """4x4: ``other``'s voxel indices -> this grid's voxel indices (the same world points)."""
        return self.index_from_lps @ other.lps_from_index

    def index_to_lps(self, ijk: np.ndarray) -> np.ndarray:
        """Voxel indices (N, 3) -> LPS mm (N, 3)."""
        return voxel_to_lps(self.affine, ijk)

    def lps_to_index(self, points_lps: np.ndarray) -> np.ndarray:
        """LPS mm (N, 3) -> continuous voxel indices (N, 3)."""
        return lps_to_voxel(self.affine, points_lps)

    def voxel_points(self) -> np.ndarray:
        """LPS mm of every voxel centre, ``(*shape, 3)`` float64 (C order)."""
        idx = np.indices(self.shape).reshape(3, -1).T.astype(np.float64)
        return self.index_to_lps(idx).reshape(*self.shape, 3)

    def affine_displacement(self, matrix_lps: np.ndarray) -> np.ndarray:
        """``M(p) - p`` (LPS mm) at every voxel ``p`` for a 4x4 LPS map ``M``, ``(*shape, 3)`` float32."""
        m = np.asarray(matrix_lps, dtype=np.float64)
        p = self.voxel_points()
        return (p @ (m[:3, :3] - np.eye(3)).T + m[:3, 3]).astype(np.float32)

    # -- derived grids ---------------------------------------------------------
    def resampled(self, spacing: Sequence[float], shape: Sequence[int] | None = None) -> "Grid":
        """The grid with voxels ``spacing / self.spacing`` times larger, block-aligned at the first corner.

        New voxel ``j`` covers old voxels ``j f .. j f + f - 1`` (its centre at old index
        ``j f + (f - 1) / 2``), as 2x average pooling does. ``shape`` defaults to
        ``ceil(self.shape / f)``.
        """
        f = np.asarray(spacing, dtype=np.float64) / np.asarray(self.spacing)
        step = np.eye(4)
        step[:3, :3] = np.diag(f)
        step[:3, 3] = (f - 1) / 2
        if shape is None:
            shape = tuple(int(v) for v in np.maximum(1, np.ceil(np.asarray(self.shape) / f - 1e-6)))
        return Grid(self.affine @ step, tuple(shape))  # type: ignore[arg-type]

    def cropped(self, start: Sequence[int], stop: Sequence[int]) -> "Grid":
        """The sub-grid of indices ``start <= i < stop`` (may reach outside: a padded crop)."""
        start = np.asarray(start, dtype=np.int64)
        stop = np.asarray(stop, dtype=np.int64)
        shift = np.eye(4)
        shift[:3, 3] = start
        return Grid(self.affine @ shift, tuple(int(v) for v in stop - start))  # type: ignore[arg-type]

    def padded(self, multiple: int) -> "Grid":
        """The grid grown at the end of each axis to a multiple of ``multiple`` (same affine)."""
        return Grid(self.affine, tuple(int(s + (-s) % multiple) for s in self.shape))  # type: ignore[arg-type]

    def slice(self, k: int, axis: int = 2) -> "Grid":
        """The one-voxel-thick grid of index ``k`` along ``axis``."""
        start, stop = [0, 0, 0], list(self.shape)
        start[axis], stop[axis] = int(k), int(k) + 1
        return self.cropped(start, stop)
