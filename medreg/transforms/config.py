"""Preprocessing configuration: a strict, typed object loaded from YAML.

``PreprocessConfig`` is self-contained so that the training config can embed it
as its ``preprocess`` section. Unknown keys and wrong types are errors (pydantic
strict mode: ``"16"`` is not an int, ``"yes"`` is not a bool); YAML is read with
``yaml.safe_load`` and never evaluated.

Example (``medreg/configs/preprocess/brats.yaml``)::

    modalities: [t1ce]
    orientation: RAS
    spacing: [1.0, 1.0, 1.0]   # mm, or null to keep each image's own spacing
    intensity: {kind: mri_percentile, lower: 0.5, upper: 99.5}
    crop_foreground: true
    crop_margin: 4
    shape_multiple: 16
    max_shape: null            # or [X, Y, Z]: centre-crop larger images
    target_shape: null         # or [X, Y, Z]: pad/crop every pair to exactly this shape
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medreg.errors import ConfigError, InputError

_STRICT = ConfigDict(extra="forbid", strict=True, frozen=True)
_AXES = {"L": 0, "R": 0, "P": 1, "A": 1, "I": 2, "S": 2}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class MriPercentile(BaseModel):
    """Map the ``lower``/``upper`` intensity percentiles (per channel) to 0/1, clipped to [0, 1]."""

    model_config = _STRICT
    kind: Literal["mri_percentile"]
    lower: float = Field(0.5, ge=0.0, le=100.0)
    upper: float = Field(99.5, ge=0.0, le=100.0)

    @model_validator(mode="after")
    def _ordered(self) -> "MriPercentile":
        if not self.lower < self.upper:
            raise ValueError(f"expected lower < upper, found lower={self.lower}, upper={self.upper}")
        return self


class CtWindow(BaseModel):
    """Map Hounsfield units ``hu_min``/``hu_max`` to 0/1, clipped to [0, 1]."""

    model_config = _STRICT
    kind: Literal["ct_window"]
    hu_min: float = -1000.0
    hu_max: float = 200.0

    @model_validator(mode="after")
    def _ordered(self) -> "CtWindow":
        if not self.hu_min < self.hu_max:
            raise ValueError(f"expected hu_min < hu_max, found {self.hu_min} >= {self.hu_max}")
        return self


Intensity = Annotated[Union[MriPercentile, CtWindow], Field(discriminator="kind")]


class PreprocessConfig(BaseModel):
    """How one dataset's images are turned into network inputs.

    Steps (see ``medreg.transforms.pipeline``): stack ``modalities`` as channels,
    reorient to ``orientation``, resample to ``spacing`` (None keeps the native
    spacing), normalise intensities, put the moving image on the fixed image's
    grid (``pair_grid="fixed"``; world coordinates are preserved), crop to the
    foreground of both images (plus ``crop_margin`` voxels), centre-crop to
    ``max_shape`` if given, then pad each axis to a multiple of ``shape_multiple``.
    ``target_shape`` instead pads/crops (centred) to exactly that shape, so every
    pair of a dataset has one shape (batching).
    """

    model_config = _STRICT
    modalities: list[str] = Field(min_length=1)
    orientation: str = "RAS"
    spacing: list[float] | None = Field(None, min_length=3, max_length=3)
    intensity: Intensity
    crop_foreground: bool = True
    crop_margin: int = Field(4, ge=0)
    foreground_threshold: float = 0.0
    shape_multiple: int = Field(16, ge=1, le=256)
    max_shape: list[int] | None = Field(None, min_length=3, max_length=3)
    target_shape: list[int] | None = Field(None, min_length=3, max_length=3)
    pair_grid: Literal["fixed"] = "fixed"

    @field_validator("modalities")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(f"expected channel names of letters, digits, '_', '-', '.', found {name!r}")
        if len(set(value)) != len(value):
            raise ValueError(f"expected distinct channel names, found {value}")
        return value

    @field_validator("orientation")
    @classmethod
    def _orientation(cls, value: str) -> str:
        code = value.upper()
        if len(code) != 3 or any(c not in _AXES for c in code) or len({_AXES[c] for c in code}) != 3:
            raise ValueError(f"expected three axis codes, one each of L/R, P/A, I/S (e.g. 'RAS'), found {value!r}")
        return code

    @field_validator("spacing")
    @classmethod
    def _spacing(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and not all(0 < s < 1e4 for s in value):
            raise ValueError(f"expected three positive spacings in mm, found {value}")
        return None if value is None else [float(s) for s in value]

    @model_validator(mode="after")
    def _shapes(self) -> "PreprocessConfig":
        for name in ("max_shape", "target_shape"):
            shape = getattr(self, name)
            if shape is not None and any(s < 1 or s % self.shape_multiple for s in shape):
                raise ValueError(
                    f"expected {name} entries that are positive multiples of shape_multiple="
                    f"{self.shape_multiple}, found {shape}"
                )
        if self.max_shape is not None and self.target_shape is not None:
            raise ValueError("expected at most one of max_shape and target_shape, found both")
        return self

    def config_hash(self) -> str:
        """A stable short hash of the resolved settings (used to decide whether a case is up to date)."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _format_errors(err: ValidationError, source: str) -> str:
    parts = []
    for item in err.errors():
        key = ".".join(str(p) for p in item["loc"]) or "<top level>"
        found = item.get("input")
        found_text = "" if item["type"] == "missing" else f" (found {found!r})"
        parts.append(f"key '{key}': {item['msg']}{found_text}")
    return f"{source}: invalid preprocessing config: " + "; ".join(parts)


def config_from_dict(data: Any, source: str = "<config>") -> PreprocessConfig:
    """Validate a plain mapping into a ``PreprocessConfig``; ConfigError names ``source`` and the key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of preprocessing settings, found {type(data).__name__}")
    try:
        return PreprocessConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None


def load_preprocess_config(path: str | Path) -> PreprocessConfig:
    """Read a preprocessing YAML file (``yaml.safe_load``; no code is ever evaluated)."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise InputError(path, "expected a preprocessing config file (YAML), found nothing")
    if path.is_dir():
        raise InputError(path, "expected a preprocessing config file (YAML), found a directory")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: expected valid YAML, found a parse error: {err}") from None
    if data is None:
        raise ConfigError(f"{path}: expected preprocessing settings, found an empty file")
    return config_from_dict(data, str(path))
