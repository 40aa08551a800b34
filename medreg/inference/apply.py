"""``medreg apply``: a saved transform applied to an image or to a landmark file.

The transform is ``phi(x) = x + u(x)`` with ``u`` in LPS mm on the fixed grid
(``field.nii.gz`` or ``transform.h5`` from ``medreg register``, or any ITK/ANTs
displacement field). It maps fixed-space points to moving-space points, so:

- an image given in *moving* space is pulled back onto the fixed grid (or onto
  a ``reference`` grid): ``out(x) = image(phi(x))``;
- landmarks given in *fixed* space are pushed to moving space: ``p -> phi(p)``.

Both go through :class:`medreg.geometry.WorldTransform` (``u`` trilinear, its border
value outside its grid; images sampled with ITK's rule, as ``antsApplyTransforms``
does). Landmark formats: :mod:`medreg.io.point_files`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medreg.errors import InputError
from medreg.geometry import Grid, WorldTransform
from medreg.io.itk_transform import DisplacementFile, read_transform, save_nifti_like
from medreg.io.landmarks import Landmarks
from medreg.io.nifti import Volume, load_volume, volume_geometry
from medreg.io.point_files import point_format, read_points, write_points


@dataclass
class OutputGrid:
    """An output grid and the NIfTI header to write it with."""

    grid: Grid
    header: Any = None


def reference_grid(path: str | Path) -> OutputGrid:
    """The grid (and header) of a reference NIfTI image, reading only its header."""
    import nibabel as nib

    shape, affine = volume_geometry(path)
    return OutputGrid(Grid(affine, tuple(int(s) for s in shape[:3])), nib.load(str(path)).header.copy())  # type: ignore[arg-type]


def world_transform(field: DisplacementFile) -> WorldTransform:
    """The displacement file as a world transform."""
    return WorldTransform.from_displacement(field.displacement_lps, Grid(field.affine, field.shape))


def map_points(field: DisplacementFile, points_lps: np.ndarray) -> np.ndarray:
    """``phi(p) = p + u(p)`` for fixed-space points ``(N, 3)`` LPS mm -> moving-space points."""
    return world_transform(field).map_points(points_lps)


def apply_to_image(transform: str | Path, image: str | Path, out: str | Path, *, interp: str = "linear",
                   reference: str | Path | None = None, overwrite: bool = False) -> Path:
    """Warp a moving-space image onto the fixed grid (or ``reference``) and write it atomically.

    ``interp='nearest'`` keeps the image's data type (label maps); ``'linear'`` writes float32.
    """
    from medreg.io.atomic import check_writable

    if interp not in ("linear", "nearest"):
        raise InputError(None, f"expected --interp linear or nearest, found {interp!r}")
    check_writable(out, overwrite)
    target = reference_grid(reference) if reference is not None else None
    field = read_transform(transform, None if target is None else (target.grid.affine, target.grid.shape))
    vol: Volume = load_volume(image, dtype=None, allow_constant=True)
    if target is None:
        target = OutputGrid(Grid(field.affine, field.shape), field.header)
    warped = world_transform(field).warp(np.asarray(vol.array, dtype=np.float32), Grid.of(vol), target.grid, mode=interp)
    if interp == "nearest":
        warped = np.rint(warped).astype(vol.array.dtype) if np.issubdtype(vol.array.dtype, np.integer) \
            else warped.astype(vol.array.dtype)
    return save_nifti_like(out, warped, target.grid.affine, target.header, overwrite=overwrite)


def apply_to_points(transform: str | Path, points: str | Path, out: str | Path, *,
                    fixed_image: str | Path | None = None, moving_image: str | Path | None = None,
                    overwrite: bool = False) -> Path:
    """Map a fixed-space landmark file to moving space; write it in the same format.

    Voxel formats are read with ``fixed_image``'s affine (default: the transform's
    grid, which is the fixed image's) and written with ``moving_image``'s (required).
    """
    from medreg.io.atomic import check_writable

    check_writable(out, overwrite)
    fmt = point_format(points)
    moving_affine = None
    if fmt != "brats":
        if moving_image is None:
            raise InputError(points, f"expected --moving-image to write {fmt} voxel indices in moving space, found none")
        moving_affine = volume_geometry(moving_image)[1]
    fixed_affine = volume_geometry(fixed_image)[1] if fixed_image is not None else None
    reference: Any = None
    if fixed_image is not None:
        shape, _ = volume_geometry(fixed_image)
        reference = (fixed_affine, tuple(shape[:3]))
    field = read_transform(transform, reference)
    landmarks, _ = read_points(points, fixed_affine if fixed_affine is not None else field.affine)
    mapped = Landmarks(list(landmarks.names), map_points(field, landmarks.points))
    return write_points(out, mapped, fmt, moving_affine, overwrite=overwrite)
