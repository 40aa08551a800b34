"""Landmark files: BraTS-Reg CSV, DIR-Lab / COPDGene text, Learn2Reg CSV.

Every reader returns one :class:`Landmarks` object in one world convention:
``points`` are **LPS physical mm** (ITK/ANTs), shape ``(N, 3)`` float64, with a
name per point. How each format maps to it:

- BraTS-Reg ``Landmark,X,Y,Z``: the values already are LPS mm (ITK physical
  points of the image); names come from the ``Landmark`` column. Two files are
  joined on names (:func:`match_landmarks`), never on row order.
- DIR-Lab / COPDGene ``x y z`` per line: **1-based** voxel indices; converted with
  the image affine, ``LPS = voxel_to_lps(affine, index - 1)``. Points are named
  ``'1'..'N'`` by line (the two phases correspond line by line).
- Learn2Reg ``x,y,z`` per row (optional header): **0-based** voxel indices,
  ``LPS = voxel_to_lps(affine, index)``; named ``'1'..'N'`` by row.

Bad files raise :class:`medreg.errors.InputError` naming the file, the line and
what was expected vs found.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medreg.errors import InputError
from medreg.io.atomic import write_text_atomic
from medreg.geometry.frames import lps_to_voxel, voxel_to_lps
from medreg.io.nifti import check_input_file


@dataclass
class Landmarks:
    """Named points in LPS mm. ``points`` has shape (N, 3), float64."""

    names: list[str]
    points: np.ndarray
    path: Path | None = None

    def __post_init__(self) -> None:
        self.names = [str(n) for n in self.names]
        self.points = np.asarray(self.points, dtype=np.float64).reshape(-1, 3)
        if len(self.names) != len(self.points):
            raise ValueError(f"expected one name per point, found {len(self.names)} names and {len(self.points)} points")

    def __len__(self) -> int:
        return len(self.names)


def _read_text(path: str | Path, what: str) -> tuple[Path, str]:
    path = check_input_file(path, what)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(path, f"expected {what} (text), found binary data ({exc})") from exc
    if not text.strip():
        raise InputError(path, f"expected {what}, found a file with no landmarks (only whitespace)")
    return path, text


def _number(path: Path, lineno: int, column: str, value: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise InputError(path, f"line {lineno}: expected a number in column {column}, found {value.strip()!r}") from None
    if not np.isfinite(v):
        raise InputError(path, f"line {lineno}: expected a finite number in column {column}, found {value.strip()!r}")
    return v


def _check_unique(path: Path, names: list[str], linenos: list[int]) -> None:
    first: dict[str, int] = {}
    for name, line in zip(names, linenos):
        if name in first:
            raise InputError(path, f"expected unique landmark names, found duplicate name {name!r} on lines {first[name]} and {line}")
        first[name] = line


def read_brats_csv(path: str | Path) -> Landmarks:
    """Read a BraTS-Reg landmark CSV (header ``Landmark,X,Y,Z``; values LPS mm)."""
    path, text = _read_text(path, "a BraTS-Reg landmark CSV (Landmark,X,Y,Z)")
    rows = [(i, r) for i, r in enumerate(csv.reader(io.StringIO(text)), start=1) if any(c.strip() for c in r)]
    header = [c.strip().lower() for c in rows[0][1]]
    needed = ["landmark", "x", "y", "z"]
    missing = [c for c in needed if c not in header]
    if missing:
        raise InputError(path, f"expected columns Landmark,X,Y,Z, found header {','.join(rows[0][1])!r} (missing {', '.join(m.capitalize() if m == 'landmark' else m.upper() for m in missing)})")
    col = {c: header.index(c) for c in needed}
    names, points, linenos = [], [], []
    for lineno, row in rows[1:]:
        if len(row) < len(header):
            raise InputError(path, f"line {lineno}: expected {len(header)} values ({','.join(rows[0][1])}), found {len(row)}")
        name = row[col["landmark"]].strip()
        if not name:
            raise InputError(path, f"line {lineno}: expected a landmark name, found an empty Landmark column")
        names.append(name)
        points.append([_number(path, lineno, c.upper(), row[col[c]]) for c in "xyz"])
        linenos.append(lineno)
    if not names:
        raise InputError(path, "expected at least one landmark row after the header, found none")
    _check_unique(path, names, linenos)
    return Landmarks(names, np.array(points), path)


def _fmt(v: float) -> str:
    return np.format_float_positional(float(v), trim="-")


def write_brats_csv(path: str | Path, landmarks: Landmarks, *, overwrite: bool = False) -> Path:
    """Write ``Landmark,X,Y,Z`` with LPS mm values (atomically; exact float round trip)."""
    lines = ["Landmark,X,Y,Z"]
    lines += [f"{n},{_fmt(p[0])},{_fmt(p[1])},{_fmt(p[2])}" for n, p in zip(landmarks.names, landmarks.points)]
    return write_text_atomic(path, "\n".join(lines) + "\n", overwrite)


def match_landmarks(fixed: Landmarks, moving: Landmarks) -> tuple[Landmarks, Landmarks]:
    """Join two landmark sets on their names (order of ``fixed``).

    Raises InputError if a name is present in only one of the two sets.
    """
    fset, mset = set(fixed.names), set(moving.names)
    only_f = [n for n in fixed.names if n not in mset]
    only_m = [n for n in moving.names if n not in fset]
    if only_f or only_m:
        def show(names: list[str]) -> str:
            return ", ".join(repr(n) for n in names[:10]) + (f" (+{len(names) - 10} more)" if len(names) > 10 else "")

        parts = []
        if only_f:
            parts.append(f"only in {fixed.path or 'fixed'}: {show(only_f)}")
        if only_m:
            parts.append(f"only in {moving.path or 'moving'}: {show(only_m)}")
        where = moving.path if only_m and moving.path is not None else fixed.path
        raise InputError(where, "expected the same landmark names in the fixed and moving files, found " + "; ".join(parts))
    index = {n: i for i, n in enumerate(moving.names)}
    order = [index[n] for n in fixed.names]
    return (
        Landmarks(list(fixed.names), fixed.points.copy(), fixed.path),
        Landmarks(list(fixed.names), moving.points[order], moving.path),
    )


def _is_numeric(values: list[str]) -> bool:
    try:
        [float(v) for v in values]
    except ValueError:
        return False
    return True


def _read_index_rows(path: Path, text: str, sep: str | None, allow_header: bool) -> np.ndarray:
    """Parse 'x y z' rows (split on ``sep``, or whitespace if None); optional header line."""
    rows: list[list[float]] = []
    header_seen = False
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        values = [v.strip() for v in (line.split(sep) if sep else line.split())]
        if sep is not None and values[-1] == "":
            values = values[:-1]  # trailing separator
        if allow_header and not rows and not header_seen and not _is_numeric(values):
            header_seen = True
            continue
        if len(values) != 3:
            raise InputError(path, f"line {lineno}: expected 3 values (x y z), found {len(values)}: {line.strip()!r}")
        rows.append([_number(path, lineno, "xyz"[i], v) for i, v in enumerate(values)])
    if not rows:
        raise InputError(path, "expected at least one 'x y z' landmark line, found none")
    return np.array(rows, dtype=np.float64)


def read_dirlab_txt(path: str | Path, affine: np.ndarray) -> Landmarks:
    """Read DIR-Lab / COPDGene landmarks: ``x y z`` per line, 1-based voxel indices."""
    path, text = _read_text(path, "a DIR-Lab landmark file ('x y z' per line)")
    index = _read_index_rows(path, text, None, allow_header=False)
    points = voxel_to_lps(affine, index - 1.0)
    return Landmarks([str(i + 1) for i in range(len(points))], points, path)


def write_dirlab_txt(path: str | Path, landmarks: Landmarks, affine: np.ndarray, *, overwrite: bool = False) -> Path:
    """Write ``x y z`` 1-based voxel indices (tab separated; integers if integral, else 3 decimals)."""
    index = lps_to_voxel(affine, landmarks.points) + 1.0

    def fmt(v: float) -> str:
        r = round(v)
        return str(int(r)) if abs(v - r) < 1e-6 else f"{v:.3f}"

    lines = ["\t".join(fmt(v) for v in row) for row in index]
    return write_text_atomic(path, "\n".join(lines) + "\n", overwrite)


def read_learn2reg_csv(path: str | Path, affine: np.ndarray) -> Landmarks:
    """Read Learn2Reg keypoints: ``x,y,z`` per row, 0-based voxel indices (header optional)."""
    path, text = _read_text(path, "a Learn2Reg keypoint CSV ('x,y,z' per row)")
    index = _read_index_rows(path, text, ",", allow_header=True)
    points = voxel_to_lps(affine, index)
    return Landmarks([str(i + 1) for i in range(len(points))], points, path)


def check_inside(landmarks: Landmarks, shape: tuple[int, ...], affine: np.ndarray, *, margin: float = 0.5) -> None:
    """Raise InputError (naming the landmark file) if a point lies outside the image.

    A point is inside when its continuous voxel index is within
    ``[-margin, size - 1 + margin]`` on every axis (the default covers the
    outer half of the border voxels).
    """
    if len(landmarks) == 0:
        return
    ijk = lps_to_voxel(affine, landmarks.points)
    size = np.asarray(shape[:3], dtype=np.float64)
    bad = np.where(np.any((ijk < -margin - 1e-6) | (ijk > size - 1 + margin + 1e-6), axis=1))[0]
    if len(bad):
        shown = "; ".join(
            f"{landmarks.names[i]!r} at voxel ({', '.join(f'{v:.2f}' for v in ijk[i])})" for i in bad[:5]
        )
        more = f" (+{len(bad) - 5} more)" if len(bad) > 5 else ""
        raise InputError(
            landmarks.path,
            f"expected landmarks inside the image of shape {tuple(int(s) for s in shape[:3])}, "
            f"found {len(bad)} outside: {shown}{more}",
        )
