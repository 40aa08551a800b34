"""Where the shipped YAML presets live: ``medreg/configs/`` inside the package.

The presets are package data (``pyproject.toml``), found with
``importlib.resources`` so an installed wheel has them; the repository's
top-level ``configs`` is a symlink to the same folder. Layout::

    medreg/configs/<dataset>.yaml             training preset (``medreg train --dataset``)
    medreg/configs/defaults.yaml              shared training defaults the presets include
    medreg/configs/preprocess/<dataset>.yaml  preprocessing preset (``medreg preprocess --dataset``)

Imports only the standard library, so the CLI can use it at ``--help`` time.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from medreg.errors import ConfigError


def config_dir() -> Path:
    """The folder of the shipped presets, as a real path (presets include each other by relative path)."""
    root = files("medreg") / "configs"
    if not isinstance(root, Path):
        raise ConfigError(f"medreg's presets: expected a folder on disk, found {type(root).__name__} {root} "
                          "(install medreg unzipped, e.g. pip install medreg)")
    return root
