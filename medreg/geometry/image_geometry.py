"""The exact map between a preprocessed image and its original (input) image.

Preprocessing (reorientation, resampling, cropping, padding) changes the voxel
grid but never the world: MONAI's MetaTensor carries the voxel -> RAS mm affine
through every step, so a physical point has the same world coordinates in the
original and in the preprocessed image. ``ImageGeometry`` records both grids
(affine and shape); everything else follows from them:

- world points (LPS mm, the medreg convention) <-> preprocessed voxel indices;
- original voxel indices <-> preprocessed voxel indices;
- resampling an array on the preprocessed grid back onto the original grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from medreg.geometry.frames import lps_to_voxel, voxel_to_lps
from medreg.geometry.grid import Grid


def _affine(value: Any) -> np.ndarray:
    a = np.asarray(value, dtype=np.float64)
    if a.shape != (4, 4) or not np.all(np.isfinite(a)):
        raise ValueError(f"expected a finite 4x4 affine, found {a.shape}")
    return a


def _shape(value: Any) -> tuple[int, int, int]:
    s = tuple(int(v) for v in value)
    if len(s) != 3 or min(s) < 1:
        raise ValueError(f"expected a 3D shape of positive sizes, found {s}")
    return s  # type: ignore[return-value]


@dataclass(frozen=True)
class ImageGeometry:
    """Original grid (``original_affine``, ``original_shape``) and preprocessed grid (``affine``, ``shape``).

    Affines are NIfTI voxel -> RAS mm (4x4 float64); shapes are spatial, array order.
    """

    original_affine: np.ndarray
    original_shape: tuple[int, int, int]
    affine: np.ndarray
    shape: tuple[int, int, int]

    def __post_init__(self) -> None:
        object.__setattr__(self, "original_affine", _affine(self.original_affine))
        object.__setattr__(self, "affine", _affine(self.affine))
        object.__setattr__(self, "original_shape", _shape(self.original_shape))
        object.__setattr__(self, "shape", _shape(self.shape))

    @property
    def grid(self) -> Grid:
        """The preprocessed grid."""
        return Grid(self.affine, self.shape)

    @property
    def original_grid(self) -> Grid:
        """The original (input file's) grid."""
        return Grid(self.original_affine, self.original_shape)

    # -- points ----------------------------------------------------------------
    def lps_to_voxel(self, points_lps: np.ndarray) -> np.ndarray:
        """World points (LPS mm, (N, 3)) -> continuous 0-based voxel indices of the preprocessed grid."""
        return lps_to_voxel(self.affine, points_lps)

    def voxel_to_lps(self, ijk: np.ndarray) -> np.ndarray:
        """Preprocessed voxel indices ((N, 3)) -> world points in LPS mm."""
        return voxel_to_lps(self.affine, ijk)

    def original_to_voxel(self, ijk_original: np.ndarray) -> np.ndarray:
        """Original voxel indices -> preprocessed voxel indices (same physical points)."""
        return lps_to_voxel(self.affine, voxel_to_lps(self.original_affine, ijk_original))

    def voxel_to_original(self, ijk: np.ndarray) -> np.ndarray:
        """Preprocessed voxel indices -> original voxel indices (same physical points)."""
        return lps_to_voxel(self.original_affine, voxel_to_lps(self.affine, ijk))

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Preprocessed voxel size in mm per axis."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    def original_to_preprocessed_matrix(self) -> np.ndarray:
        """4x4 matrix taking original voxel indices to preprocessed voxel indices."""
        return self.grid.index_from(self.original_grid)

    # -- images ----------------------------------------------------------------
    def resample_to_original(self, array: np.ndarray, *, order: int = 1, cval: float = 0.0) -> np.ndarray:
        """Resample an array on the preprocessed grid onto the original grid.

        ``array`` has shape ``self.shape`` or ``(C, *self.shape)``; ``order`` 1 is
        trilinear, 0 nearest neighbour (labels). Points outside the preprocessed
        grid get ``cval``. Values are sampled, not transformed: a displacement
        field in mm can be resampled component by component.
        """
        from scipy.ndimage import affine_transform

        arr = np.asarray(array)
        squeeze = arr.ndim == 3
        if squeeze:
            arr = arr[None]
        if arr.ndim != 4 or tuple(arr.shape[1:]) != self.shape:
            raise ValueError(f"expected an array of shape {self.shape} or (C, {self.shape}), found {array.shape}")
        m = self.original_to_preprocessed_matrix()  # output (original) index -> input (preprocessed) index
        out_dtype = arr.dtype if order == 0 else np.result_type(arr.dtype, np.float32)
        out = np.empty((arr.shape[0], *self.original_shape), dtype=out_dtype)
        for c in range(arr.shape[0]):
            out[c] = affine_transform(
                arr[c], m[:3, :3], offset=m[:3, 3], output_shape=self.original_shape,
                order=order, mode="constant", cval=cval,
            )
        return out[0] if squeeze else out

    # -- serialisation ---------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists of floats/ints)."""
        return {
            "original_affine": self.original_affine.tolist(),
            "original_shape": list(self.original_shape),
            "affine": self.affine.tolist(),
            "shape": list(self.shape),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ImageGeometry":
        return cls(
            original_affine=data["original_affine"],
            original_shape=data["original_shape"],
            affine=data["affine"],
            shape=data["shape"],
        )
