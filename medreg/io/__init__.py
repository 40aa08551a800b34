"""File I/O at medreg's edges: NIfTI volumes, landmarks, DIR-Lab raw volumes.

World convention: voxel indices are 0-based in array order; NIfTI affines are
nibabel's voxel -> RAS mm; every world point medreg hands around (``Landmarks``)
is LPS mm (ITK/ANTs), ``LPS = diag(-1, -1, 1) * RAS``. See ``medreg.geometry.frames``.

Names are re-exported lazily so ``import medreg.io.atomic`` stays cheap.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Volume": "nifti", "load_volume": "nifti", "save_volume": "nifti", "volume_geometry": "nifti",
    "check_input_file": "nifti",
    "voxel_to_ras": "geometry", "ras_to_voxel": "geometry", "ras_to_lps": "geometry", "lps_to_ras": "geometry",
    "voxel_to_lps": "geometry", "lps_to_voxel": "geometry",
    "Landmarks": "landmarks", "read_brats_csv": "landmarks", "write_brats_csv": "landmarks",
    "match_landmarks": "landmarks", "read_dirlab_txt": "landmarks", "write_dirlab_txt": "landmarks",
    "read_learn2reg_csv": "landmarks", "check_inside": "landmarks",
    "RawGeometry": "dirlab", "DIRLAB_CASES": "dirlab", "dirlab_affine": "dirlab", "read_dirlab_img": "dirlab",
    "write_dirlab_img": "dirlab", "read_geometry_file": "dirlab", "write_geometry_file": "dirlab",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f"medreg.io.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'medreg.io' has no attribute {name!r}")
