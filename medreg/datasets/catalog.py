"""One entry point for every dataset layout: ``dataset_pairs(name, root)``.

Each name is a :class:`~medreg.datasets.specs.DatasetSpec` in the registry of
:mod:`medreg.datasets.specs`: ``brats``, ``dirlab``, ``copd``, ``learn2reg`` are
read from a folder the user points to; ``demo-brain``, ``demo-lung`` are built
by medreg from registry-shipped images into the BraTS-Reg / DIR-Lab layouts,
then read by the same readers.
"""

from __future__ import annotations

from pathlib import Path

from medreg.datasets.base import PairSpec, check_safe_relpath
from medreg.datasets.names import DATASETS
from medreg.datasets.specs import DatasetSpec, get_spec
from medreg.errors import ConfigError, InputError

__all__ = ["DATASETS", "dataset_pairs", "check_safe_relpath"]


def _call(spec: DatasetSpec, root, opts: dict) -> list[PairSpec]:
    allowed = spec.reader_options()
    unknown = sorted(set(opts) - set(allowed))
    if unknown:
        raise ConfigError(f"dataset {spec.name!r}: unknown option(s) {unknown}; expected some of {allowed}")
    return spec.load_reader()(root, **opts)


def dataset_pairs(name: str, root: str | Path | None = None, **opts) -> list[PairSpec]:
    """List the pairs of dataset ``name`` found under ``root``.

    ``opts`` go to the reader, over the spec's default options: ``modalities``
    (brats, demo-brain), ``cases`` (brats), ``json_name`` / ``splits`` (learn2reg),
    ``require_landmarks`` (dirlab, copd). For a built-in (demo) dataset ``root`` is
    where it is built (default: the medreg cache).
    """
    spec = get_spec(name)
    if spec.builtin:
        root = spec.load_builder()(root=root)
    elif root is None:
        raise InputError(None, f"dataset {name!r} is read from a folder: expected a data folder (--data DIR), found none")
    return _call(spec, root, {**spec.options, **opts})
