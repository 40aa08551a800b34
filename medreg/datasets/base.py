"""What a dataset reader returns: one :class:`PairSpec` per registration pair.

A pair names its files only (nothing is loaded). ``fixed``/``moving`` map a
channel or modality name to an image path (NIfTI, or a headerless DIR-Lab
``.img`` described by ``raw_geometry``). Landmarks are read on demand by
:func:`load_pair_landmarks`, which returns LPS mm points joined by name.
Registration direction (README, Conventions): ``phi`` maps fixed points to moving points.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

from medreg.errors import InputError
from medreg.io.dirlab import RawGeometry, dirlab_affine
from medreg.io.landmarks import Landmarks, check_inside, match_landmarks, read_brats_csv, read_dirlab_txt, read_learn2reg_csv
from medreg.io.nifti import check_input_file, volume_geometry

LANDMARK_FORMATS = ("brats", "dirlab", "learn2reg")


@dataclass
class PairSpec:
    """Files of one fixed/moving pair (fixed = reference grid, moving = image warped onto it)."""

    id: str
    split: str | None
    fixed: dict[str, Path]
    moving: dict[str, Path]
    fixed_landmarks: Path | None = None
    moving_landmarks: Path | None = None
    landmark_format: str | None = None  # 'brats' | 'dirlab' | 'learn2reg'
    fixed_labels: Path | None = None
    moving_labels: Path | None = None
    raw_geometry: RawGeometry | None = None  # for headerless .img volumes
    meta: dict = field(default_factory=dict)


def check_root(root: str | Path, what: str) -> Path:
    """Return ``root`` as a Path after checking it is an existing folder."""
    root = Path(root)
    if not root.exists():
        raise InputError(root, f"expected {what}, found no such folder")
    if not root.is_dir():
        raise InputError(root, f"expected {what}, found a file")
    return root


def check_safe_relpath(root: str | Path, rel: str | os.PathLike, *, source: str | Path | None = None) -> Path:
    """Resolve a manifest path ``rel`` inside ``root``; InputError if it escapes the root.

    Absolute paths (POSIX or Windows) and paths whose ``..`` parts leave the root
    are rejected. The check is lexical (symlinks inside the root are allowed).
    ``source`` names the manifest file in the error message.
    """
    root = Path(root)
    text = os.fspath(rel)
    where = source if source is not None else root
    if not isinstance(text, str) or not text.strip():
        raise InputError(where, f"expected a path relative to {root}, found {rel!r}")
    if PurePosixPath(text).is_absolute() or PureWindowsPath(text).is_absolute() or PureWindowsPath(text).drive:
        raise InputError(where, f"expected a path relative to {root}, found absolute path {text!r} (escapes the root)")
    norm = os.path.normpath(text.replace("\\", "/"))
    if norm == ".." or norm.startswith("../"):
        raise InputError(where, f"expected a path inside {root}, found {text!r}, which escapes the root")
    return root / norm


def _grid(image: Path, raw: RawGeometry | None) -> tuple[tuple[int, ...], np.ndarray]:
    if raw is not None and image.suffix.lower() == ".img":
        return tuple(raw.shape), dirlab_affine(raw)
    return volume_geometry(image)


def _read_one(path: Path, fmt: str, image: Path, raw: RawGeometry | None) -> Landmarks:
    shape, affine = _grid(image, raw)
    if fmt == "brats":
        lm = read_brats_csv(path)
    elif fmt == "dirlab":
        lm = read_dirlab_txt(path, affine)
    else:
        lm = read_learn2reg_csv(path, affine)
    check_inside(lm, shape, affine)
    return lm


def load_pair_landmarks(pair: PairSpec) -> tuple[Landmarks | None, Landmarks | None]:
    """Read the pair's landmark files (LPS mm), check they lie inside their images.

    When both exist they are joined by name (InputError on names in one file only),
    so row ``i`` of the fixed set corresponds to row ``i`` of the moving set.
    """
    if pair.fixed_landmarks is None and pair.moving_landmarks is None:
        return None, None
    fmt = pair.landmark_format
    if fmt not in LANDMARK_FORMATS:
        raise InputError(pair.fixed_landmarks or pair.moving_landmarks, f"expected landmark format one of {LANDMARK_FORMATS}, found {fmt!r} (pair {pair.id})")
    fixed_img = next(iter(pair.fixed.values()))
    moving_img = next(iter(pair.moving.values()))
    fixed = None if pair.fixed_landmarks is None else _read_one(check_input_file(pair.fixed_landmarks, "a landmark file"), fmt, fixed_img, pair.raw_geometry)
    moving = None if pair.moving_landmarks is None else _read_one(check_input_file(pair.moving_landmarks, "a landmark file"), fmt, moving_img, pair.raw_geometry)
    if fixed is not None and moving is not None:
        fixed, moving = match_landmarks(fixed, moving)
    return fixed, moving


def read_splits(root: Path) -> dict[str, str]:
    """The optional ``splits.json`` of a dataset root: case folder name -> split name."""
    path = root / "splits.json"
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(path, f"expected JSON {{\"<case folder>\": \"train\", ...}}, found invalid JSON ({exc})") from exc
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise InputError(path, f"expected an object mapping case names to split names, found {type(data).__name__}: {str(data)[:80]}")
    return data
