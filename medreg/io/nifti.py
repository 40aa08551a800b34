"""Reading and writing NIfTI volumes with their affine, validated at the edge.

A :class:`Volume` is a 3D array in array order plus nibabel's 4x4 voxel -> RAS mm
affine. Every problem with an input file raises :class:`medreg.errors.InputError`
naming the file and saying what was expected and what was found: a missing file,
a directory, an empty file, a file that is not NIfTI, truncated data, the wrong
number of dimensions, NaN/Inf voxels, a constant image, bad spacing or a singular
affine. Writes are atomic and refuse to overwrite unless asked.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medreg.errors import InputError
from medreg.io.atomic import atomic_path


@dataclass
class Volume:
    """A 3D image: ``array`` in array order and its voxel -> RAS mm ``affine``."""

    array: np.ndarray
    affine: np.ndarray
    path: Path | None = None

    def __post_init__(self) -> None:
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.affine.shape != (4, 4):
            raise ValueError(f"expected a 4x4 affine, found shape {self.affine.shape}")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.array.shape)

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel size in mm per array axis (norms of the affine's columns)."""
        norms = np.linalg.norm(self.affine[:3, :3], axis=0)
        return tuple(float(s) for s in norms[: self.array.ndim])


def check_input_file(path: str | Path, what: str = "a file") -> Path:
    """Return ``path`` as a Path after checking it is an existing, non-empty file."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, f"expected {what}, found no such file")
    if path.is_dir():
        raise InputError(path, f"expected {what}, found a directory")
    size = path.stat().st_size
    if size == 0:
        raise InputError(path, f"expected {what}, found an empty file (0 bytes)")
    return path


def _is_truncation(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, (EOFError, zlib.error, gzip.BadGzipFile)) or any(
        w in text for w in ("ended before", "truncat", "mmap length", "buffer is too small", "cannot reshape")
    )


def _open_nifti(path: Path):
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError
    from nibabel.spatialimages import HeaderDataError

    check_input_file(path, "a NIfTI image (.nii or .nii.gz)")
    try:
        with np.errstate(invalid="ignore", over="ignore"):  # non-finite pixdim is reported below
            img = nib.load(str(path))
    except (ImageFileError, HeaderDataError, OSError, EOFError, ValueError, zlib.error) as exc:
        if _is_truncation(exc):
            raise InputError(path, f"expected a complete NIfTI file, found a truncated file ({exc})") from exc
        raise InputError(path, f"expected a NIfTI image (.nii or .nii.gz), found a file that is not NIfTI ({exc})") from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(path, f"expected a NIfTI image, found a {type(img).__name__}")
    return img


def _raw_pixdim(path: Path, img) -> np.ndarray:
    """pixdim as stored in the file (nibabel's load silently replaces negative values by their abs)."""
    from nibabel.openers import ImageOpener

    try:
        with ImageOpener(str(path), "rb") as f:
            raw = type(img.header).from_fileobj(f, check=False)
        return np.asarray(raw["pixdim"], dtype=np.float64)
    except Exception:  # header already parsed once; fall back to nibabel's copy
        return np.asarray(img.header["pixdim"], dtype=np.float64)


def _check_geometry(path: Path, img) -> np.ndarray:
    """Validate spacing and affine of an opened NIfTI image; return the affine."""
    nspatial = min(len(img.shape), 3)
    pixdim = _raw_pixdim(path, img)[1 : 1 + nspatial]
    if not np.all(np.isfinite(pixdim)) or np.any(pixdim <= 0):
        raise InputError(path, f"expected positive, finite voxel spacing, found pixdim {tuple(float(p) for p in pixdim)} mm")
    try:
        affine = np.asarray(img.affine, dtype=np.float64)
    except Exception as exc:  # nibabel refuses some malformed qforms
        raise InputError(path, f"expected a valid voxel-to-world affine, found an unreadable one ({exc})") from exc
    if not np.all(np.isfinite(affine)):
        raise InputError(path, f"expected a finite voxel-to-world affine, found non-finite entries:\n{affine}")
    norms = np.linalg.norm(affine[:3, :3], axis=0)
    if np.any(norms[:nspatial] <= 0):
        raise InputError(path, f"expected positive voxel spacing, found affine column norms {tuple(float(n) for n in norms)} mm")
    det = float(np.linalg.det(affine[:3, :3]))
    if abs(det) <= 1e-9 * float(np.prod(np.maximum(norms, 1e-300))):
        raise InputError(path, f"expected an invertible voxel-to-world affine, found a singular one (determinant {det:g}):\n{affine}")
    return affine


def _spatial_shape(path: Path, shape: tuple[int, ...], require_3d: bool) -> tuple[int, ...]:
    if len(shape) < 2 or (require_3d and len(shape) < 3):
        raise InputError(path, f"expected a 3D image, found a {len(shape)}D image of shape {shape}")
    if len(shape) > 3:
        extra = int(np.prod(shape[3:]))
        if extra != 1:
            raise InputError(path, f"expected a single 3D volume, found a {len(shape)}D image with {extra} volumes (shape {shape})")
        return tuple(shape[:3])
    return tuple(shape)


def volume_geometry(path: str | Path, *, require_3d: bool = True) -> tuple[tuple[int, ...], np.ndarray]:
    """Validated ``(shape, affine)`` of a NIfTI file, reading only its header."""
    path = Path(path)
    img = _open_nifti(path)
    shape = _spatial_shape(path, tuple(int(s) for s in img.shape), require_3d)
    return shape, _check_geometry(path, img)


def load_volume(
    path: str | Path,
    *,
    dtype: np.dtype | type | None = np.float32,
    allow_constant: bool = False,
    require_3d: bool = True,
) -> Volume:
    """Load and validate a NIfTI volume.

    ``dtype=None`` keeps the stored data type. A 4D image holding one volume is
    squeezed to 3D; with ``require_3d=False`` a 2D image is accepted too.
    """
    path = Path(path)
    img = _open_nifti(path)
    shape = _spatial_shape(path, tuple(int(s) for s in img.shape), require_3d)
    affine = _check_geometry(path, img)
    try:
        if dtype is not None and np.issubdtype(np.dtype(dtype), np.floating):
            array = img.get_fdata(dtype=np.dtype(dtype))
        else:
            array = np.asanyarray(img.dataobj)
            if dtype is not None:
                array = array.astype(dtype, copy=False)
    except Exception as exc:
        n = int(np.prod(img.shape))
        raise InputError(path, f"expected {n} voxels of image data, found truncated or corrupt data ({type(exc).__name__}: {exc})") from exc
    array = np.asarray(array).reshape(shape)
    if np.issubdtype(array.dtype, np.floating):
        nan, inf = int(np.isnan(array).sum()), int(np.isinf(array).sum())
        if nan or inf:
            raise InputError(path, f"expected finite voxel values, found {nan} NaN and {inf} Inf voxels")
    if not allow_constant and array.size and array.min() == array.max():
        raise InputError(path, f"expected an image with varying intensities, found a constant image (every voxel is {array.flat[0]!r})")
    return Volume(array=array, affine=affine, path=path)


def save_volume(
    path: str | Path,
    array: np.ndarray,
    affine: np.ndarray,
    *,
    overwrite: bool = False,
    dtype: np.dtype | type | None = None,
    brats_header: bool = False,
) -> Path:
    """Write ``array`` with ``affine`` as NIfTI (atomically; ``.nii`` or ``.nii.gz`` by suffix).

    The sform holds the affine with sform_code 1. With ``brats_header=True`` the
    qform is left empty (qform_code 0), as in the real BraTS-Reg files; otherwise
    the qform carries the same affine (code 1) where a qform can represent it.
    """
    import nibabel as nib

    arr = np.asarray(array)
    if dtype is not None:
        arr = arr.astype(dtype)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise ValueError(f"expected a finite, invertible 4x4 affine, found:\n{affine}")
    img = nib.Nifti1Image(arr, affine)
    header = img.header
    header.set_sform(affine, code=1)
    if brats_header:
        header.set_qform(None)
    else:
        try:
            header.set_qform(affine, code=1, strip_shears=False)
        except Exception:
            header.set_qform(None)
    with atomic_path(path, overwrite) as tmp:
        nib.save(img, str(tmp))
    return Path(path)
