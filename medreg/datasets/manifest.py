"""``OUT/manifest.json``: what ``medreg preprocess`` wrote, and how to map it back.

Layout of a preprocess output folder ``OUT``::

    OUT/
      .medreg-preprocess              marker: {"format": "medreg-preprocess", "dataset": NAME}
      manifest.json                   this file (written last, atomically)
      pairs/<id>/
        fixed_<channel>.nii.gz        one 3D float32 NIfTI per channel (config.modalities order)
        moving_<channel>.nii.gz       on the fixed image's preprocessed grid (pair_grid="fixed")
        fixed_labels.nii.gz           int16 label maps, when the dataset has them
        moving_labels.nii.gz
        fixed_landmarks.csv           BraTS-Reg style CSV (Landmark,X,Y,Z) in LPS mm, when present
        moving_landmarks.csv
        record.json                   this pair's manifest entry (written last: the case is finished)

Landmarks are world points, so they are the same in the original and in the
preprocessed images. Each entry's ``geometry`` holds, per image, the original
grid (``original_affine``, ``original_shape``) and the preprocessed grid
(``affine``, ``shape``); affines are NIfTI voxel -> RAS mm.
See :class:`medreg.geometry.image_geometry.ImageGeometry` to map points and images back.

Every path in the manifest is relative to the manifest's folder; paths that
escape it (``../``, absolute) are rejected by :func:`read_manifest`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from medreg.datasets.base import check_safe_relpath
from medreg.errors import InputError
from medreg.geometry.image_geometry import ImageGeometry
from medreg.io.atomic import write_text_atomic
from medreg.transforms.config import PreprocessConfig
from medreg.transforms.input_pipeline import stages_of
from medreg.transforms.defaults import DEFAULTS

MANIFEST_FORMAT = "medreg-preprocess"
MARKER_NAME = ".medreg-preprocess"
_MODEL = ConfigDict(extra="forbid")


class GeometryEntry(BaseModel):
    """Original and preprocessed grid of one image (affines voxel -> RAS mm)."""

    model_config = _MODEL
    original_affine: list[list[float]] = Field(min_length=4, max_length=4)
    original_shape: list[int] = Field(min_length=3, max_length=3)
    affine: list[list[float]] = Field(min_length=4, max_length=4)
    shape: list[int] = Field(min_length=3, max_length=3)

    def to_geometry(self) -> ImageGeometry:
        return ImageGeometry.from_dict(self.model_dump())


class TreStats(BaseModel):
    """Landmark error in mm over the pair's ``n`` matched landmarks."""

    model_config = _MODEL
    n: int
    mean: float
    median: float
    max: float


class PairEntry(BaseModel):
    """One preprocessed pair; every path is relative to the manifest's folder."""

    model_config = _MODEL
    id: str
    split: str | None
    fixed: dict[str, str]
    moving: dict[str, str]
    fixed_landmarks: str | None = None
    moving_landmarks: str | None = None
    fixed_labels: str | None = None
    moving_labels: str | None = None
    geometry: dict[Literal["fixed", "moving"], GeometryEntry]
    sources: dict[str, str]  # source file (relative to the data folder, else absolute) -> sha256
    config_hash: str
    no_registration_tre: TreStats | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    def relpaths(self) -> dict[str, str]:
        """Every output path of this entry, keyed like ``fixed.t1`` or ``fixed_landmarks``."""
        out = {f"fixed.{k}": v for k, v in self.fixed.items()}
        out.update({f"moving.{k}": v for k, v in self.moving.items()})
        for key in ("fixed_landmarks", "moving_landmarks", "fixed_labels", "moving_labels"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    def fixed_geometry(self) -> ImageGeometry:
        return self.geometry["fixed"].to_geometry()

    def moving_geometry(self) -> ImageGeometry:
        return self.geometry["moving"].to_geometry()


class FailedEntry(BaseModel):
    model_config = _MODEL
    id: str
    reason: str


class Manifest(BaseModel):
    """The preprocessed dataset: resolved config and one entry per finished pair."""

    model_config = _MODEL
    format: Literal["medreg-preprocess"] = MANIFEST_FORMAT
    version: Literal[1] = 1
    dataset: str
    config: PreprocessConfig
    config_hash: str
    data_root: str | None = None
    pairs: list[PairEntry]
    failed: list[FailedEntry] = Field(default_factory=list)
    stages: list[str] = Field(default_factory=list)  # the input-pipeline stages the files passed (in order)

    @model_validator(mode="after")
    def _stages(self) -> "Manifest":
        if not self.stages:  # every stage of its config (manifests written before stages were recorded, too)
            self.stages = stages_of(self.config)
        return self

    def pair(self, pair_id: str) -> PairEntry:
        for entry in self.pairs:
            if entry.id == pair_id:
                return entry
        raise KeyError(f"no pair {pair_id!r} in the manifest of {self.dataset}")

    def split(self, name: str) -> list[PairEntry]:
        """The entries of one split (e.g. 'train', 'test')."""
        return [p for p in self.pairs if p.split == name]


def resolve(root: str | Path, rel: str) -> Path:
    """A manifest path resolved inside ``root`` (InputError if it escapes)."""
    return check_safe_relpath(root, rel)


def _check_paths(path: Path, manifest: Manifest) -> None:
    root = path.parent
    seen: set[str] = set()
    for entry in manifest.pairs:
        if entry.id in seen:
            raise InputError(path, f"expected unique pair ids, found {entry.id!r} twice")
        seen.add(entry.id)
        for key, rel in entry.relpaths().items():
            try:
                check_safe_relpath(root, rel, source=path)
            except InputError as err:
                raise InputError(path, f"pair {entry.id!r}, key '{key}': {err.problem}") from None


def read_manifest(path: str | Path, *, dataset: str | None = None) -> Manifest:
    """Read and validate ``manifest.json``; InputError names the manifest and the offending entry.

    ``dataset`` (optional) is the name the caller expects.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.json"
    if not path.exists():
        raise InputError(path, "expected a preprocess manifest (run `medreg preprocess`), found no such file")
    text = path.read_text(errors="replace")
    if not text.strip():
        raise InputError(path, "expected a preprocess manifest (JSON), found an empty file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(path, f"expected JSON, found invalid JSON at line {err.lineno} column {err.colno}: {err.msg}") from None
    if not isinstance(data, dict):
        raise InputError(path, f"expected a JSON object with 'dataset' and 'pairs', found {type(data).__name__}")
    if data.get("format") != MANIFEST_FORMAT:
        raise InputError(path, f"expected \"format\": \"{MANIFEST_FORMAT}\", found {data.get('format')!r}")
    if data.get("dataset") not in DEFAULTS:
        raise InputError(path, f"expected a dataset name in {sorted(DEFAULTS)}, found unknown dataset {data.get('dataset')!r}")
    if dataset is not None and data["dataset"] != dataset:
        raise InputError(path, f"expected a manifest of dataset {dataset!r}, found one of {data['dataset']!r}")
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = first["loc"]
        where = ""
        if len(loc) >= 2 and loc[0] == "pairs" and isinstance(loc[1], int) and loc[1] < len(data.get("pairs", [])):
            pid = data["pairs"][loc[1]].get("id") if isinstance(data["pairs"][loc[1]], dict) else None
            where = f"pair {pid!r}, " if pid is not None else f"pair #{loc[1]}, "
        key = ".".join(str(p) for p in loc)
        raise InputError(path, f"{where}key '{key}': {first['msg']} ({err.error_count()} problem(s))") from None
    _check_paths(path, manifest)
    return manifest


def manifest_to_json(manifest: Manifest) -> str:
    return json.dumps(manifest.model_dump(mode="json"), indent=1, allow_nan=False) + "\n"


def write_manifest(path: str | Path, manifest: Manifest, *, overwrite: bool = False) -> Path:
    """Write ``manifest`` atomically (temp file then rename); refuses to replace unless ``overwrite``."""
    return write_text_atomic(path, manifest_to_json(manifest), overwrite=overwrite)


def load_entry_arrays(root: str | Path, entry: PairEntry) -> tuple[np.ndarray, np.ndarray]:
    """Load a pair's preprocessed images as channel-first float32 arrays ``(C, X, Y, Z)``."""
    from medreg.io.nifti import load_volume

    def stack(paths: dict[str, str]) -> np.ndarray:
        return np.stack([load_volume(resolve(root, rel), allow_constant=True).array for rel in paths.values()])

    return stack(entry.fixed), stack(entry.moving)
