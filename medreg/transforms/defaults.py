"""Default preprocessing per dataset: its preprocessing preset, read from the package.

Each registered dataset (:mod:`medreg.datasets.specs`) names a YAML preset,
``medreg/configs/preprocess/<dataset>.yaml`` for the shipped ones (package data,
so an installed wheel has them). What they say today:

- Brains (``brats``, ``demo-brain``): RAS, 1 mm, percentile scaling (0.5/99.5) to
  [0, 1], crop to the foreground with a 4-voxel margin, pad to a multiple of 16.
- Lungs (``dirlab``, ``copd``, ``demo-lung``, ``learn2reg``): RAS, native
  spacing, HU window [-1000, 200] -> [0, 1] clipped; crop the surrounding air
  (not for Learn2Reg, whose NLST volumes are already cropped), pad to 16.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from medreg.datasets.specs import dataset_names, get_spec, is_registered
from medreg.transforms.config import PreprocessConfig, load_preprocess_config


def default_config(dataset: str) -> PreprocessConfig:
    """The preprocessing preset of a dataset name; ConfigError for an unknown or half-registered name."""
    return load_preprocess_config(get_spec(dataset).preprocess_preset_path())


class _Presets(Mapping):
    """Dataset name -> its preprocessing preset as a new plain dict (read from its YAML file each time)."""

    def __getitem__(self, dataset: str) -> dict:
        if not is_registered(dataset):
            raise KeyError(dataset)
        return default_config(dataset).model_dump(mode="json")

    def __contains__(self, dataset: object) -> bool:
        return isinstance(dataset, str) and is_registered(dataset)

    def __iter__(self) -> Iterator[str]:
        return iter(dataset_names())

    def __len__(self) -> int:
        return len(dataset_names())


DEFAULTS: Mapping[str, dict] = _Presets()
