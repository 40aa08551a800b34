"""``medreg apply``: a saved transform applied to an image or to a landmark file.

The transform is ``phi(x) = x + u(x)`` with ``u`` in LPS mm on the fixed grid
(``field.nii.gz`` or ``transform.h5`` from ``medreg register``, or any ITK/ANTs
displacement field). It maps fixed-space points to moving-space points, so:

- an image given in *moving* space is pulled back onto the fixed grid (or onto
  a ``reference`` grid): ``out(x) = image(phi(x))``;
- landmarks given in *fixed* space are pushed to moving space: ``p -> phi(p)``.

Sampling follows ITK (what ``antsApplyTransforms`` does): linear or nearest
neighbour at the continuous index of ``phi(x)`` in the image, the border value
within half a voxel outside the image, 0 beyond. ``u`` itself is interpolated
trilinearly and extended by its border value outside its grid.

Landmark formats (by file): BraTS-Reg CSV (``Landmark,X,Y,Z`` in LPS mm),
DIR-Lab text (``.txt``, 1-based voxel indices) and Learn2Reg CSV (0-based voxel
indices, no ``Landmark`` header). The voxel formats need an image affine:
points are read with the fixed grid's (the transform's grid) and written with
the moving image's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from medreg.errors import InputError
from medreg.io.itk_transform import DisplacementFile, read_transform, save_nifti_like
from medreg.io.landmarks import (Landmarks, read_brats_csv, read_dirlab_txt, read_learn2reg_csv, write_brats_csv,
                                 write_dirlab_txt)
from medreg.io.nifti import Volume, check_input_file, load_volume, volume_geometry
from medreg.spatial.grid import sample, voxel_to_normalized

PointFormat = Literal["brats", "dirlab", "learn2reg"]
_FLIP = np.diag([-1.0, -1.0, 1.0])
SLAB_VOXELS = 1 << 20  # points per slab when sampling on a grid (bounds memory)


# --------------------------------------------------------------------------- geometry helpers
def lps_matrix(affine: np.ndarray) -> np.ndarray:
    """The 4x4 voxel -> LPS mm matrix of a voxel -> RAS affine."""
    out = np.asarray(affine, dtype=np.float64).copy()
    out[:3] = np.diag([-1.0, -1.0, 1.0, 1.0])[:3] @ out
    return out


def slab_indices(shape: tuple[int, ...], x0: int, x1: int, device: torch.device) -> torch.Tensor:
    """Voxel indices ``(3, N)`` float64 of the slab ``x0 <= i < x1`` of a grid (C order over i, j, k)."""
    axes = [torch.arange(x0, x1, dtype=torch.float64, device=device),
            torch.arange(shape[1], dtype=torch.float64, device=device),
            torch.arange(shape[2], dtype=torch.float64, device=device)]
    return torch.stack(torch.meshgrid(*axes, indexing="ij")).reshape(3, -1)


def slabs(shape: tuple[int, ...], max_points: int = SLAB_VOXELS):
    """``(x0, x1)`` ranges over the first axis with about ``max_points`` voxels each."""
    per = max(1, max_points // max(1, shape[1] * shape[2]))
    for x0 in range(0, shape[0], per):
        yield x0, min(shape[0], x0 + per)


def apply_matrix(m: np.ndarray, pts: torch.Tensor) -> torch.Tensor:
    """``m[:3, :3] @ pts + m[:3, 3]`` for points ``(3, N)``."""
    mt = torch.as_tensor(m, dtype=pts.dtype, device=pts.device)
    return mt[:3, :3] @ pts + mt[:3, 3:4]


def sample_image_lps(image: torch.Tensor, affine: np.ndarray, points_lps: torch.Tensor, mode: str = "linear",
                     ) -> torch.Tensor:
    """Sample ``image (1, C, X, Y, Z)`` (voxel -> RAS ``affine``) at LPS points ``(3, N)`` -> ``(C, N)``.

    ITK semantics: points within half a voxel outside the image take the border
    value (interpolation clamps to the border); points beyond get 0.
    """
    shape = tuple(int(s) for s in image.shape[2:])
    to_vox = np.linalg.inv(lps_matrix(affine))
    idx = apply_matrix(to_vox, points_lps.to(torch.float64))
    size = torch.tensor(shape, dtype=torch.float64, device=idx.device).view(3, 1)
    inside = ((idx >= -0.5 - 1e-6) & (idx <= size - 0.5 + 1e-6)).all(dim=0)
    norm = voxel_to_normalized(idx[None], shape).to(image.dtype)
    out = sample(image, norm, mode=mode, padding_mode="border")[0]
    return out * inside.to(out.dtype)


def field_tensor(u: np.ndarray, device: torch.device) -> torch.Tensor:
    """``(X, Y, Z, 3)`` displacement -> ``(1, 3, X, Y, Z)`` float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(np.asarray(u, dtype=np.float32), -1, 0)))[None].to(device)


def displacement_at(field: DisplacementFile, points_lps: np.ndarray | torch.Tensor) -> np.ndarray:
    """``u`` (LPS mm) at fixed-space points ``(N, 3)``: trilinear, border value outside the grid."""
    pts = torch.as_tensor(np.asarray(points_lps, dtype=np.float64)).reshape(-1, 3).T
    u = field_tensor(field.displacement_lps, torch.device("cpu"))
    idx = apply_matrix(np.linalg.inv(lps_matrix(field.affine)), pts)
    norm = voxel_to_normalized(idx[None], field.shape).to(torch.float32)
    return sample(u, norm, mode="linear", padding_mode="border")[0].T.double().numpy()


def map_points(field: DisplacementFile, points_lps: np.ndarray) -> np.ndarray:
    """``phi(p) = p + u(p)`` for fixed-space points ``(N, 3)`` LPS mm -> moving-space points."""
    pts = np.asarray(points_lps, dtype=np.float64).reshape(-1, 3)
    return pts + displacement_at(field, pts)


# --------------------------------------------------------------------------- landmark files
def point_format(path: str | Path) -> PointFormat:
    """The landmark format of a file: ``.txt`` DIR-Lab; ``.csv`` BraTS-Reg if its header names ``Landmark``, else Learn2Reg."""
    path = check_input_file(path, "a landmark file (.csv or .txt)")
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return "dirlab"
    if suffix != ".csv":
        raise InputError(path, f"expected a landmark file ending in .csv (BraTS-Reg, Learn2Reg) or .txt (DIR-Lab), "
                               f"found {path.suffix or 'no suffix'!r}")
    try:
        with open(path, encoding="utf-8-sig") as fh:
            first = next((line for line in fh if line.strip()), "")
    except UnicodeDecodeError:
        raise InputError(path, "expected a landmark CSV (text), found binary data") from None
    return "brats" if first.strip().lower().startswith("landmark") else "learn2reg"


def read_points(path: str | Path, fixed_affine: np.ndarray | None) -> tuple[Landmarks, PointFormat]:
    """Read a fixed-space landmark file in any supported format -> (Landmarks in LPS mm, format)."""
    fmt = point_format(path)
    if fmt == "brats":
        return read_brats_csv(path), fmt
    if fixed_affine is None:
        raise InputError(path, f"expected a fixed image to read {fmt} voxel indices, found none")
    reader = read_dirlab_txt if fmt == "dirlab" else read_learn2reg_csv
    return reader(path, fixed_affine), fmt


def write_points(path: str | Path, landmarks: Landmarks, fmt: PointFormat, moving_affine: np.ndarray | None, *,
                 overwrite: bool = False) -> Path:
    """Write moving-space landmarks in ``fmt`` (voxel formats use ``moving_affine``)."""
    if fmt == "brats":
        return write_brats_csv(path, landmarks, overwrite=overwrite)
    if moving_affine is None:
        raise InputError(path, f"expected the moving image to write {fmt} voxel indices, found none")
    if fmt == "dirlab":
        return write_dirlab_txt(path, landmarks, moving_affine, overwrite=overwrite)
    from medreg.io.atomic import write_text_atomic
    from medreg.io.geometry import lps_to_voxel

    index = lps_to_voxel(moving_affine, landmarks.points)
    lines = [",".join(f"{v:.4f}" for v in row) for row in index]
    return write_text_atomic(path, "\n".join(lines) + "\n", overwrite)


def points_output_name(fmt: PointFormat) -> str:
    """``landmarks.csv`` (BraTS-Reg, Learn2Reg) or ``landmarks.txt`` (DIR-Lab)."""
    return "landmarks.txt" if fmt == "dirlab" else "landmarks.csv"


# --------------------------------------------------------------------------- images
@dataclass
class Grid:
    """An output grid: voxel -> RAS ``affine``, ``shape`` and the NIfTI header to write it with."""

    affine: np.ndarray
    shape: tuple[int, int, int]
    header: Any = None


def reference_grid(path: str | Path) -> Grid:
    """The grid (and header) of a reference NIfTI image, reading only its header."""
    import nibabel as nib

    shape, affine = volume_geometry(path)
    return Grid(affine, tuple(int(s) for s in shape[:3]), nib.load(str(path)).header.copy())  # type: ignore[arg-type]


def warp_array(field: DisplacementFile, image: np.ndarray, image_affine: np.ndarray, *, interp: str = "linear",
               grid: Grid | None = None, device: str | torch.device = "cpu") -> np.ndarray:
    """``image ∘ phi`` on ``grid`` (default: the field's grid). ``image`` is (X, Y, Z) or (C, X, Y, Z)."""
    if interp not in ("linear", "nearest"):
        raise ValueError(f"expected interp 'linear' or 'nearest', found {interp!r}")
    device = torch.device(device)
    arr = np.asarray(image)
    squeeze = arr.ndim == 3
    img = torch.from_numpy(np.ascontiguousarray(arr[None] if squeeze else arr, dtype=np.float32))[None].to(device)
    grid = grid or Grid(field.affine, field.shape)
    same = grid.shape == field.shape and np.allclose(grid.affine, field.affine, atol=1e-6)
    u = field_tensor(field.displacement_lps, device)
    to_field = np.linalg.inv(lps_matrix(field.affine))
    out = torch.empty((img.shape[1], int(np.prod(grid.shape))), dtype=torch.float32, device=device)
    start = 0
    for x0, x1 in slabs(grid.shape):
        idx = slab_indices(grid.shape, x0, x1, device)
        p = apply_matrix(lps_matrix(grid.affine), idx)
        if same:
            disp = u[0, :, x0:x1].reshape(3, -1).double()
        else:
            fidx = apply_matrix(to_field, p)
            disp = sample(u, voxel_to_normalized(fidx[None], field.shape).float(), padding_mode="border")[0].double()
        vals = sample_image_lps(img, image_affine, p + disp, mode=interp)
        out[:, start:start + vals.shape[1]] = vals
        start += vals.shape[1]
    res = out.reshape(img.shape[1], *grid.shape).cpu().numpy()
    return res[0] if squeeze else res


def apply_to_image(transform: str | Path, image: str | Path, out: str | Path, *, interp: str = "linear",
                   reference: str | Path | None = None, overwrite: bool = False) -> Path:
    """Warp a moving-space image onto the fixed grid (or ``reference``) and write it atomically.

    ``interp='nearest'`` keeps the image's data type (label maps); ``'linear'`` writes float32.
    """
    from medreg.io.atomic import check_writable

    check_writable(out, overwrite)
    grid = reference_grid(reference) if reference is not None else None
    field = read_transform(transform, None if grid is None else (grid.affine, grid.shape))
    vol: Volume = load_volume(image, dtype=None, allow_constant=True)
    if grid is None:
        grid = Grid(field.affine, field.shape, field.header)
    warped = warp_array(field, np.asarray(vol.array, dtype=np.float32), vol.affine, interp=interp, grid=grid)
    if interp == "nearest":
        warped = np.rint(warped).astype(vol.array.dtype) if np.issubdtype(vol.array.dtype, np.integer) \
            else warped.astype(vol.array.dtype)
    else:
        warped = warped.astype(np.float32)
    return save_nifti_like(out, warped, grid.affine, grid.header, overwrite=overwrite)


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
