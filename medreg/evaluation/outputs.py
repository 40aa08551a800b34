"""Files written per (pair, method): the transform, the mapped landmarks, BraTS-Reg submission files.

Layout under the evaluation folder ``DIR``::

    DIR/pairs/<pair>/<method-slug>/field.nii.gz     displacement u (fixed grid, LPS mm; phi(x) = x + u(x))
    DIR/pairs/<pair>/<method-slug>/landmarks.csv    phi(fixed landmarks): predicted moving positions (LPS mm)
    DIR/pairs/<pair>/<method-slug>/qc.png           QC strip (fixed, warped, difference, checkerboard, grid)
    DIR/submission/<method-slug>/<pair>.csv          --submission: mapped landmarks (Landmark,X,Y,Z)
    DIR/submission/<method-slug>/<pair>_detj.nii.gz  --submission: det J on the original fixed grid

``field.nii.gz`` is an ITK displacement field (5D NIfTI, intent vector, vectors in LPS mm;
see :mod:`medreg.io.itk_transform`), which ``antsApplyTransforms`` and ITK read as the
transform from fixed to moving space.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def method_slug(name: str) -> str:
    """A file-name-safe form of a method name (``ants:syn-quick`` -> ``ants-syn-quick``)."""
    return _UNSAFE.sub("-", name).strip("-") or "method"


def pair_output_dir(out: Path, pair_id: str, method: str) -> Path:
    return Path(out) / "pairs" / pair_id / method_slug(method)


def write_displacement_field(path: Path, displacement_lps: np.ndarray, fixed_affine: np.ndarray, *, overwrite: bool = False) -> Path:
    """Write ``u`` (X, Y, Z, 3) LPS mm on the grid of ``fixed_affine`` (voxel -> RAS) as an ITK displacement field.

    The format of ``medreg register`` (:func:`medreg.io.itk_transform.write_displacement_nifti`);
    read it back with :func:`medreg.io.itk_transform.read_displacement_nifti`.
    """
    from medreg.io.itk_transform import write_displacement_nifti

    return write_displacement_nifti(path, displacement_lps, fixed_affine, overwrite=overwrite)


def write_submission(folder: Path, case: str, mapped, detj: np.ndarray, geometry, *, brats_header: bool, overwrite: bool = False) -> list[Path]:
    """BraTS-Reg submission files of one case: ``<case>.csv`` and ``<case>_detj.nii.gz``.

    ``detj`` lives on the preprocessed fixed grid; it is resampled (trilinear, 1 outside)
    onto the original fixed grid of ``geometry`` (an ``ImageGeometry``), as the challenge
    scores it on the original image. Landmarks are world points, the same in both grids.
    """
    from medreg.io.landmarks import write_brats_csv
    from medreg.io.nifti import save_volume

    written = []
    if mapped is not None:
        written.append(write_brats_csv(Path(folder) / f"{case}.csv", mapped, overwrite=overwrite))
    det_orig = geometry.resample_to_original(np.asarray(detj, dtype=np.float32), order=1, cval=1.0)
    written.append(save_volume(Path(folder) / f"{case}_detj.nii.gz", det_orig.astype(np.float32), geometry.original_affine,
                               overwrite=overwrite, brats_header=brats_header))
    return written
