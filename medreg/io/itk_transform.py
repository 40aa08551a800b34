"""Dense transforms in the files ITK, ANTs and 3D Slicer read.

A medreg transform on disk is a displacement ``u`` on the fixed image's voxel
grid, in **LPS physical mm**, with ``phi(x) = x + u(x)`` mapping fixed-space
points to moving-space points (ITK's and ANTs' forward direction). Two files
hold it:

- ``field.nii.gz``: a NIfTI vector image exactly as ITK writes one: 5D array
  ``(X, Y, Z, 1, 3)``, ``intent_code`` 1007 (``NIFTI_INTENT_VECTOR``), vector
  components stored as LPS mm *without* any RAS conversion (ITK reads them back
  unchanged; ``antsApplyTransforms`` / ``ants.apply_transforms`` take the file
  as a displacement-field transform). The header is the fixed image's (same
  sform/qform and codes), so the field lies on the fixed grid for every reader.
- ``transform.h5``: an ITK HDF5 transform file holding a
  ``DisplacementFieldTransform`` (written and read with SimpleITK; float64).

Conversions between nibabel's voxel -> RAS affine and ITK's LPS
``(origin, spacing, direction)`` live here too (:func:`affine_to_itk`,
:func:`itk_to_affine`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medreg.errors import InputError
from medreg.geometry.frames import RAS_TO_LPS
from medreg.io.atomic import atomic_path
from medreg.io.nifti import check_input_file

NIFTI_INTENT_VECTOR = 1007
_FLIP = RAS_TO_LPS[:3, :3]
_NIFTI_SUFFIXES = (".nii", ".nii.gz")
_ITK_SUFFIXES = (".h5", ".hdf5", ".tfm", ".txt", ".mat")


@dataclass
class DisplacementFile:
    """A displacement field read from disk: ``u`` (X, Y, Z, 3) LPS mm on a grid with voxel -> RAS ``affine``."""

    displacement_lps: np.ndarray
    affine: np.ndarray
    header: Any = None  # the NIfTI header when read from a NIfTI file (reused for outputs on this grid)
    path: Path | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.displacement_lps.shape[:3])  # type: ignore[return-value]


# --------------------------------------------------------------------------- geometry
def affine_to_itk(affine: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """nibabel voxel -> RAS affine -> ITK ``(origin, spacing, direction)`` in LPS (direction row-major, 9 values).

    Raises ValueError for a sheared affine (ITK directions must be orthonormal).
    """
    a = np.asarray(affine, dtype=np.float64)
    m = _FLIP @ a[:3, :3]
    spacing = np.linalg.norm(m, axis=0)
    direction = m / spacing
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
        raise ValueError(f"expected an affine without shear (ITK needs an orthonormal direction), found\n{a}")
    origin = _FLIP @ a[:3, 3]
    return tuple(origin.tolist()), tuple(spacing.tolist()), tuple(direction.ravel().tolist())


def itk_to_affine(origin: Any, spacing: Any, direction: Any) -> np.ndarray:
    """ITK LPS ``(origin, spacing, direction)`` -> nibabel voxel -> RAS affine."""
    d = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    out = np.eye(4)
    out[:3, :3] = _FLIP @ d @ np.diag(np.asarray(spacing, dtype=np.float64))
    out[:3, 3] = _FLIP @ np.asarray(origin, dtype=np.float64)
    return out


def _check_field(displacement_lps: np.ndarray) -> np.ndarray:
    u = np.asarray(displacement_lps)
    if u.ndim != 4 or u.shape[-1] != 3:
        raise ValueError(f"expected a displacement of shape (X, Y, Z, 3), found {u.shape}")
    return u


# --------------------------------------------------------------------------- NIfTI
def nifti_like(array: np.ndarray, affine: np.ndarray, header: Any = None):
    """A ``Nifti1Image`` of ``array`` carrying ``header``'s sform/qform (matrices and codes) and units.

    Without ``header`` the affine goes into both sform and qform with code 1.
    The data type is the array's; scaling is reset (slope 1, intercept 0).
    """
    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(array), np.asarray(affine, dtype=np.float64))
    h = img.header
    if header is None:
        h.set_sform(affine, code=1)
        try:
            h.set_qform(affine, code=1, strip_shears=False)
        except Exception:
            h.set_qform(None)
        return img
    sform, scode = header.get_sform(coded=True)
    qform, qcode = header.get_qform(coded=True)
    h.set_sform(sform if scode else None, code=int(scode or 0))
    h.set_qform(qform if qcode else None, code=int(qcode or 0))
    h.set_xyzt_units(*header.get_xyzt_units())
    if not scode and not qcode:  # no coded affine: the grid is in pixdim alone
        h["pixdim"][1:4] = header["pixdim"][1:4]
    return img


def save_nifti_like(path: str | Path, array: np.ndarray, affine: np.ndarray, header: Any = None, *,
                    overwrite: bool = False) -> Path:
    """Write ``array`` atomically with ``header``'s geometry (see :func:`nifti_like`)."""
    import nibabel as nib

    img = nifti_like(array, affine, header)
    with atomic_path(path, overwrite) as tmp:
        nib.save(img, str(tmp))
    return Path(path)


def write_displacement_nifti(path: str | Path, displacement_lps: np.ndarray, affine: np.ndarray, *,
                             header: Any = None, overwrite: bool = False) -> Path:
    """Write ``u`` (X, Y, Z, 3) LPS mm as an ITK/ANTs displacement field NIfTI (5D, intent vector), float32."""
    u = _check_field(displacement_lps).astype(np.float32, copy=False)
    img = nifti_like(u[:, :, :, None, :], affine, header)
    img.header.set_intent("vector")
    img.header.set_data_dtype(np.float32)
    import nibabel as nib

    with atomic_path(path, overwrite) as tmp:
        nib.save(img, str(tmp))
    return Path(path)


def read_displacement_nifti(path: str | Path) -> DisplacementFile:
    """Read a displacement field NIfTI written by medreg, ITK or ANTs (5D ``(X, Y, Z, 1, 3)``, intent vector)."""
    import nibabel as nib

    path = check_input_file(path, "a displacement field NIfTI (.nii.gz)")
    try:
        img = nib.load(str(path))
    except Exception as err:
        raise InputError(path, f"expected a displacement field NIfTI, found an unreadable file ({err})") from None
    if not isinstance(img, nib.Nifti1Image):
        raise InputError(path, f"expected a NIfTI-1 displacement field, found {type(img).__name__}")
    shape = tuple(int(s) for s in img.shape)
    intent = int(img.header["intent_code"])
    if len(shape) != 5 or shape[3] != 1 or shape[4] != 3 or intent != NIFTI_INTENT_VECTOR:
        raise InputError(path, f"expected a 3D displacement field (5D array X,Y,Z,1,3 with intent vector "
                               f"{NIFTI_INTENT_VECTOR}), found shape {shape} with intent code {intent}")
    try:
        u = np.asarray(img.get_fdata(dtype=np.float32))[:, :, :, 0, :]
    except Exception as err:
        raise InputError(path, f"expected {int(np.prod(shape))} field values, found truncated or corrupt data ({err})") from None
    if not np.all(np.isfinite(u)):
        raise InputError(path, "expected finite displacement values, found NaN or Inf")
    return DisplacementFile(np.ascontiguousarray(u), np.asarray(img.affine, dtype=np.float64), img.header.copy(), path)


# --------------------------------------------------------------------------- ITK transform files
def _field_image(displacement_lps: np.ndarray, affine: np.ndarray):
    import SimpleITK as sitk

    u = _check_field(displacement_lps)
    img = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(u, (2, 1, 0, 3)), dtype=np.float64), isVector=True)
    origin, spacing, direction = affine_to_itk(affine)
    img.SetOrigin(origin)
    img.SetSpacing(spacing)
    img.SetDirection(direction)
    return img


def write_transform_h5(path: str | Path, displacement_lps: np.ndarray, affine: np.ndarray, *,
                       overwrite: bool = False) -> Path:
    """Write ``u`` as an ITK ``DisplacementFieldTransform`` (HDF5, float64) readable by ``SimpleITK.ReadTransform``."""
    import SimpleITK as sitk

    tx = sitk.DisplacementFieldTransform(_field_image(displacement_lps, affine))
    with atomic_path(path, overwrite) as tmp:
        sitk.WriteTransform(tx, str(tmp))
    return Path(path)


def _affine_transform(matrix_lps: np.ndarray):
    import SimpleITK as sitk

    m = np.asarray(matrix_lps, dtype=np.float64)
    if m.shape != (4, 4) or not np.all(np.isfinite(m)):
        raise ValueError(f"expected a finite 4x4 matrix, found shape {m.shape}")
    tx = sitk.AffineTransform(3)
    tx.SetMatrix(m[:3, :3].ravel().tolist())
    tx.SetTranslation(m[:3, 3].tolist())
    return tx


def write_affine_mat(path: str | Path, matrix_lps: np.ndarray, *, overwrite: bool = False) -> Path:
    """Write a 4x4 LPS map (fixed points -> moving points) as an ITK/ANTs ``AffineTransform`` file (``.mat``)."""
    import SimpleITK as sitk

    with atomic_path(path, overwrite) as tmp:
        sitk.WriteTransform(_affine_transform(matrix_lps), str(tmp))
    return Path(path)


def write_composite_h5(path: str | Path, matrix_lps: np.ndarray, displacement_lps: np.ndarray, affine: np.ndarray, *,
                       overwrite: bool = False) -> Path:
    """Write ``p -> A(p + d(p))`` as an ITK ``CompositeTransform`` (HDF5): the affine ``A``, then the field ``d``.

    ITK applies a composite's transforms last added first, so ``d`` (on the grid of
    ``affine``) moves a fixed point first and ``A`` takes it on to moving space.
    """
    import SimpleITK as sitk

    comp = sitk.CompositeTransform(3)
    comp.AddTransform(_affine_transform(matrix_lps))
    comp.AddTransform(sitk.DisplacementFieldTransform(_field_image(displacement_lps, affine)))
    with atomic_path(path, overwrite) as tmp:
        sitk.WriteTransform(comp, str(tmp))
    return Path(path)


def _field_grid(tx) -> tuple[np.ndarray, tuple[int, int, int]] | None:
    """The grid of the (first) displacement field inside a composite transform, if any."""
    import SimpleITK as sitk

    if tx.GetTransformEnum() == sitk.sitkComposite:
        comp = sitk.CompositeTransform(tx)
        for i in range(comp.GetNumberOfTransforms()):
            found = _field_grid(comp.GetNthTransform(i))
            if found is not None:
                return found
    if tx.GetTransformEnum() == sitk.sitkDisplacementField:
        img = sitk.DisplacementFieldTransform(tx).GetDisplacementField()
        return itk_to_affine(img.GetOrigin(), img.GetSpacing(), img.GetDirection()), tuple(int(v) for v in img.GetSize())
    return None


def _unwrap_displacement(tx):
    """The DisplacementFieldTransform inside ``tx`` (itself, or a composite holding only that), else None."""
    import SimpleITK as sitk

    if tx.GetTransformEnum() == sitk.sitkDisplacementField:
        return sitk.DisplacementFieldTransform(tx)
    if tx.GetTransformEnum() == sitk.sitkComposite:
        comp = sitk.CompositeTransform(tx)
        if comp.GetNumberOfTransforms() == 1:
            return _unwrap_displacement(comp.GetNthTransform(0))
    return None


def read_itk_transform(path: str | Path, reference: tuple[np.ndarray, tuple[int, int, int]] | None = None
                       ) -> DisplacementFile:
    """Read an ITK transform file (``.h5``, ``.tfm``, ``.mat``) as a displacement on a grid.

    A displacement-field transform gives its own grid. Any other transform (affine,
    composite, ...) is sampled on ``reference = (affine, shape)``, which is then required.
    """
    import SimpleITK as sitk

    path = check_input_file(path, "an ITK transform file (.h5, .tfm, .mat)")
    try:
        tx = sitk.ReadTransform(str(path))
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1] if str(err).strip() else ""
        raise InputError(path, f"expected an ITK transform file, found a file SimpleITK cannot read ({first})") from None
    field = _unwrap_displacement(tx)
    if field is not None:
        img = field.GetDisplacementField()
        u = np.transpose(sitk.GetArrayFromImage(img), (2, 1, 0, 3)).astype(np.float32)
        affine = itk_to_affine(img.GetOrigin(), img.GetSpacing(), img.GetDirection())
        return DisplacementFile(np.ascontiguousarray(u), affine, None, path)
    if reference is None:
        reference = _field_grid(tx)  # a composite with a field (medreg's affine + field): sampled on its grid
    if reference is None:
        raise InputError(path, f"expected a displacement-field transform, found {tx.GetName()}; "
                               f"give a reference image to sample it on")
    ref_affine, ref_shape = reference
    origin, spacing, direction = affine_to_itk(ref_affine)
    img = sitk.TransformToDisplacementField(tx, sitk.sitkVectorFloat64, [int(s) for s in ref_shape],
                                            origin, spacing, direction)
    u = np.transpose(sitk.GetArrayFromImage(img), (2, 1, 0, 3)).astype(np.float32)
    return DisplacementFile(np.ascontiguousarray(u), np.asarray(ref_affine, dtype=np.float64), None, path)


def read_transform(path: str | Path, reference: tuple[np.ndarray, tuple[int, int, int]] | None = None
                   ) -> DisplacementFile:
    """A transform file by its suffix: NIfTI displacement field, or an ITK transform file."""
    p = Path(path)
    name = p.name.lower()
    if name.endswith(_NIFTI_SUFFIXES):
        return read_displacement_nifti(p)
    if name.endswith(_ITK_SUFFIXES):
        return read_itk_transform(p, reference)
    raise InputError(p, f"expected a transform file ({', '.join(_NIFTI_SUFFIXES + _ITK_SUFFIXES)}), "
                        f"found suffix {''.join(p.suffixes) or 'none'!r}")
