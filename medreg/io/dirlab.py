"""DIR-Lab / COPDGene raw ``.img`` volumes (int16, little-endian, no header).

The files hold ``x * y * z`` int16 values with x varying fastest; the array
returned is in ``(x, y, z)`` order, matching the 1-based ``x y z`` landmark
indices of the same dataset (index 1 is array index 0).

Geometry is not in the file: :data:`DIRLAB_CASES` holds the published size and
spacing of DIR-Lab 4DCT cases ``case1..case10`` and COPDGene cases
``copd1..copd10`` (docs/reference.md §3). Other data in this layout (medreg's demo lung)
carries a small JSON sidecar read by :func:`read_geometry_file`.

World convention: :func:`dirlab_affine` puts voxel 0 at the origin with LPS axes
along x, y, z, so ``LPS mm = 0-based index * spacing`` and, for a 1-based
landmark index, ``mm = (index - 1) * spacing`` as the dataset documents.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medreg.errors import InputError
from medreg.io.atomic import atomic_path, write_text_atomic
from medreg.io.nifti import Volume, check_input_file


@dataclass(frozen=True)
class RawGeometry:
    """Size ``(x, y, z)`` in voxels and spacing in mm of a headerless volume."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]

    @property
    def nbytes(self) -> int:
        """Size of the int16 file in bytes."""
        return 2 * int(np.prod(self.shape))


def _table() -> dict[str, RawGeometry]:
    cases: dict[str, RawGeometry] = {}
    four_d = [  # (in-plane size, in-plane spacing, slices); slices are 2.5 mm
        (256, 0.97, 94), (256, 1.16, 112), (256, 1.15, 104), (256, 1.13, 99), (256, 1.10, 106),
        (512, 0.97, 128), (512, 0.97, 136), (512, 0.97, 128), (512, 0.97, 128), (512, 0.97, 120),
    ]
    for n, (size, sp, slices) in enumerate(four_d, start=1):
        cases[f"case{n}"] = RawGeometry((size, size, slices), (sp, sp, 2.5))
    copd_slices = [121, 102, 126, 126, 131, 119, 112, 115, 116, 135]
    copd_spacing = [0.625, 0.645, 0.652, 0.590, 0.647, 0.633, 0.625, 0.586, 0.664, 0.742]
    for n, (slices, sp) in enumerate(zip(copd_slices, copd_spacing), start=1):
        cases[f"copd{n}"] = RawGeometry((512, 512, slices), (sp, sp, 2.5))
    return cases


DIRLAB_CASES: dict[str, RawGeometry] = _table()


def dirlab_affine(geometry: RawGeometry) -> np.ndarray:
    """Voxel -> RAS affine with ``LPS mm = 0-based index * spacing``."""
    sx, sy, sz = (float(s) for s in geometry.spacing)
    return np.diag([-sx, -sy, sz, 1.0])


def read_dirlab_img(path: str | Path, geometry: RawGeometry, *, dtype: np.dtype | type | None = None) -> Volume:
    """Read a raw int16 ``.img``; InputError if its byte size does not match ``geometry``.

    ``dtype=None`` keeps int16 (half the memory of float32).
    """
    path = check_input_file(path, "a raw int16 DIR-Lab .img volume")
    actual = path.stat().st_size
    if actual != geometry.nbytes:
        x, y, z = geometry.shape
        raise InputError(
            path,
            f"expected {geometry.nbytes} bytes (int16, {x}x{y}x{z} voxels), found {actual} bytes"
            + (f" ({actual / 2 / (x * y):.2f} slices of {x}x{y})" if actual % 2 == 0 else ""),
        )
    flat = np.fromfile(path, dtype="<i2")
    array = flat.reshape(geometry.shape[::-1]).transpose(2, 1, 0)  # file is x fastest
    array = np.ascontiguousarray(array, dtype=dtype if dtype is not None else np.int16)
    return Volume(array=array, affine=dirlab_affine(geometry), path=path)


def write_dirlab_img(path: str | Path, array_int16_xyz: np.ndarray, *, overwrite: bool = False) -> Path:
    """Write an ``(x, y, z)`` integer array as a raw little-endian int16 ``.img`` (atomically)."""
    arr = np.asarray(array_int16_xyz)
    if arr.ndim != 3:
        raise ValueError(f"expected a 3D (x, y, z) array, found shape {arr.shape}")
    as16 = arr.astype("<i2")
    if not np.array_equal(as16, arr):
        raise ValueError(f"expected values representable as int16, found dtype {arr.dtype} with range [{arr.min()}, {arr.max()}]")
    with atomic_path(path, overwrite) as tmp:
        tmp.write_bytes(np.ascontiguousarray(as16.transpose(2, 1, 0)).tobytes())
    return Path(path)


def read_geometry_file(path: str | Path) -> RawGeometry:
    """Read a JSON sidecar ``{"shape": [x, y, z], "spacing": [sx, sy, sz]}``."""
    path = check_input_file(path, "a geometry JSON file")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(path, f"expected JSON {{\"shape\": [x, y, z], \"spacing\": [sx, sy, sz]}}, found invalid JSON ({exc})") from exc
    if not isinstance(data, dict) or set(data) - {"shape", "spacing"} or not {"shape", "spacing"} <= set(data):
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise InputError(path, f"expected exactly the keys 'shape' and 'spacing', found {found}")
    shape, spacing = data["shape"], data["spacing"]
    if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)):
        raise InputError(path, f"expected 'shape' to be 3 positive integers, found {shape!r}")
    if not (
        isinstance(spacing, list) and len(spacing) == 3
        and all(isinstance(s, (int, float)) and not isinstance(s, bool) and np.isfinite(s) and s > 0 for s in spacing)
    ):
        raise InputError(path, f"expected 'spacing' to be 3 positive finite numbers (mm), found {spacing!r}")
    return RawGeometry(tuple(shape), tuple(float(s) for s in spacing))


def write_geometry_file(path: str | Path, geometry: RawGeometry, *, overwrite: bool = False) -> Path:
    """Write the JSON sidecar read by :func:`read_geometry_file` (atomically)."""
    data = {"shape": [int(s) for s in geometry.shape], "spacing": [float(s) for s in geometry.spacing]}
    return write_text_atomic(path, json.dumps(data) + "\n", overwrite)
