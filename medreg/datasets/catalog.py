"""One entry point for every dataset layout: ``dataset_pairs(name, root)``.

Names: ``brats``, ``dirlab``, ``copd``, ``learn2reg`` (read from a folder the
user points to) and ``demo-brain``, ``demo-lung`` (built by medreg from
registry-shipped images into the BraTS-Reg / DIR-Lab layouts, then read by the
same readers).
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

from medreg.datasets.base import PairSpec, check_safe_relpath
from medreg.datasets.names import DATASETS
from medreg.errors import ConfigError, InputError

DEMO_BRAIN_MODALITIES = ("t1", "t2")

__all__ = ["DATASETS", "dataset_pairs", "check_safe_relpath"]


def _call(reader, name: str, root, opts: dict) -> list[PairSpec]:
    params = inspect.signature(reader).parameters
    allowed = [p for p in params if p != "root"]
    unknown = sorted(set(opts) - set(allowed))
    if unknown:
        raise ConfigError(f"dataset {name!r}: unknown option(s) {unknown}; expected some of {allowed}")
    return reader(root, **opts)


def dataset_pairs(name: str, root: str | Path | None = None, **opts) -> list[PairSpec]:
    """List the pairs of dataset ``name`` found under ``root``.

    ``opts`` go to the reader: ``modalities`` (brats, demo-brain), ``cases``
    (brats), ``json_name`` / ``splits`` (learn2reg), ``require_landmarks``
    (dirlab, copd). For the demo datasets ``root`` is where they are built
    (default: the medreg cache).
    """
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}: expected one of {', '.join(DATASETS)}")
    if name == "demo-brain":
        demo = importlib.import_module("medreg.datasets.demo_brain")
        folder = demo.ensure_demo_brain(root=root)
        from medreg.datasets.brats import brats_pairs

        return _call(brats_pairs, name, folder, {"modalities": DEMO_BRAIN_MODALITIES, **opts})
    if name == "demo-lung":
        demo = importlib.import_module("medreg.datasets.demo_lung")
        folder = demo.ensure_demo_lung(root=root)
        from medreg.datasets.dirlab import dirlab_pairs

        return _call(dirlab_pairs, name, folder, opts)
    if root is None:
        raise InputError(None, f"dataset {name!r} is read from a folder: expected a data folder (--data DIR), found none")
    if name == "brats":
        from medreg.datasets.brats import brats_pairs

        return _call(brats_pairs, name, root, opts)
    if name in ("dirlab", "copd"):
        from medreg.datasets.dirlab import copd_pairs, dirlab_pairs

        return _call(dirlab_pairs if name == "dirlab" else copd_pairs, name, root, opts)
    from medreg.datasets.learn2reg import learn2reg_pairs

    return _call(learn2reg_pairs, name, root, opts)
