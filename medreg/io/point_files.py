"""Landmark files in any supported format, read in fixed space and written in moving space.

Formats (by file): BraTS-Reg CSV (``Landmark,X,Y,Z`` in LPS mm), DIR-Lab text
(``.txt``, 1-based voxel indices) and Learn2Reg CSV (0-based voxel indices, no
``Landmark`` header). The voxel formats need an image affine: points are read with
the fixed grid's and written with the moving image's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from medreg.errors import InputError
from medreg.geometry.frames import lps_to_voxel
from medreg.io.landmarks import (Landmarks, read_brats_csv, read_dirlab_txt, read_learn2reg_csv, write_brats_csv,
                                 write_dirlab_txt)
from medreg.io.nifti import check_input_file

PointFormat = Literal["brats", "dirlab", "learn2reg"]


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

    index = lps_to_voxel(moving_affine, landmarks.points)
    lines = [",".join(f"{v:.4f}" for v in row) for row in index]
    return write_text_atomic(path, "\n".join(lines) + "\n", overwrite)


def points_output_name(fmt: PointFormat) -> str:
    """``landmarks.csv`` (BraTS-Reg, Learn2Reg) or ``landmarks.txt`` (DIR-Lab)."""
    return "landmarks.txt" if fmt == "dirlab" else "landmarks.csv"
