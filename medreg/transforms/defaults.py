"""Default preprocessing per dataset.

Kept in code so an installed package works without the repository's
``configs/preprocess/<dataset>.yaml`` files; a test checks that those YAML files
say exactly the same thing.

- Brains (``brats``, ``demo-brain``): RAS, 1 mm, percentile scaling (0.5/99.5) to
  [0, 1], crop to the foreground with a 4-voxel margin, pad to a multiple of 16.
- Lungs (``dirlab``, ``copd``, ``demo-lung``, ``learn2reg``): RAS, native
  spacing, HU window [-1000, 200] -> [0, 1] clipped; crop the surrounding air
  (not for Learn2Reg, whose NLST volumes are already cropped), pad to 16.
"""

from __future__ import annotations

from medreg.errors import InputError
from medreg.transforms.config import PreprocessConfig, config_from_dict

_BRAIN = {
    "orientation": "RAS",
    "spacing": [1.0, 1.0, 1.0],
    "intensity": {"kind": "mri_percentile", "lower": 0.5, "upper": 99.5},
    "crop_foreground": True,
    "crop_margin": 4,
    "shape_multiple": 16,
}
_LUNG = {
    "modalities": ["ct"],
    "orientation": "RAS",
    "spacing": None,
    "intensity": {"kind": "ct_window", "hu_min": -1000.0, "hu_max": 200.0},
    "crop_foreground": True,
    "crop_margin": 4,
    "shape_multiple": 16,
}

DEFAULTS: dict[str, dict] = {
    "brats": {**_BRAIN, "modalities": ["t1ce"]},
    "demo-brain": {**_BRAIN, "modalities": ["t1", "t2"]},
    "dirlab": dict(_LUNG),
    "copd": dict(_LUNG),
    "demo-lung": dict(_LUNG),
    "learn2reg": {**_LUNG, "crop_foreground": False},
}


def default_config(dataset: str) -> PreprocessConfig:
    """The default ``PreprocessConfig`` of a dataset name."""
    if dataset not in DEFAULTS:
        raise InputError(None, f"expected a dataset name in {sorted(DEFAULTS)}, found {dataset!r}")
    return config_from_dict(DEFAULTS[dataset], f"<default config of {dataset}>")
