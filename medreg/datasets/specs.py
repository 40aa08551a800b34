"""The dataset registry: one :class:`DatasetSpec` per dataset name, all registered at the end of this file.

A spec says how medreg finds the pairs of a dataset and which presets it ships:

- ``reader``: ``"module:function"`` (imported on first use, so listing the names
  stays instant) or a callable; ``reader(root, **options) -> list[PairSpec]``;
- ``options``: default reader options (options given by the caller win);
- ``builder``: for a built-in (demo) dataset, the ``ensure_*(root=None) -> folder``
  function that builds it, after which ``reader`` reads that folder; ``None``: the
  dataset is read from a folder the user gives (``--data DIR``);
- ``train_preset`` / ``preprocess_preset``: its two YAML files, relative to
  ``config_dir`` (default: the shipped ``medreg/configs/``, see :mod:`medreg.presets`);
  ``<name>.yaml`` and ``preprocess/<name>.yaml`` unless given.

Adding a dataset is a reader, its two YAML presets and one ``register`` line below.
An unknown name is a :class:`~medreg.errors.ConfigError` listing the known ones; a
spec with a piece missing (a reader that does not import, a missing preset file,
a default option its reader does not take) is a ConfigError naming each missing
piece when the dataset is used (:func:`get_spec`), never a fall-through to another
reader. Imports only the standard library (the CLI lists the names at ``--help`` time).
"""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from medreg.errors import ConfigError
from medreg.presets import config_dir

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_REGISTRY: dict[str, "DatasetSpec"] = {}


@dataclass(frozen=True)
class DatasetSpec:
    """How one dataset is read and which presets it has (see the module docstring)."""

    name: str
    reader: str | Callable[..., list]
    options: dict[str, Any] = field(default_factory=dict)
    builder: str | Callable[..., Path] | None = None
    train_preset: str | None = None       # default "<name>.yaml"
    preprocess_preset: str | None = None  # default "preprocess/<name>.yaml"
    config_dir: Path | None = None        # default: medreg's shipped presets

    @property
    def builtin(self) -> bool:
        """Built by medreg (an ``ensure_*`` builder) rather than read from a user folder."""
        return self.builder is not None

    def train_preset_path(self) -> Path:
        return Path(self.config_dir or config_dir()) / (self.train_preset or f"{self.name}.yaml")

    def preprocess_preset_path(self) -> Path:
        return Path(self.config_dir or config_dir()) / (self.preprocess_preset or f"preprocess/{self.name}.yaml")

    def load_reader(self) -> Callable[..., list]:
        return _resolve(self.reader)

    def load_builder(self) -> Callable[..., Path] | None:
        return None if self.builder is None else _resolve(self.builder)

    def reader_options(self) -> list[str]:
        """The options the reader takes (its keyword parameters other than ``root``)."""
        params = inspect.signature(self.load_reader()).parameters.values()
        return [p.name for p in params if p.name != "root" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def problems(self) -> list[str]:
        """What is missing from this spec (empty when it is complete)."""
        found = []
        for role, target in (("reader", self.reader), ("builder", self.builder)):
            if target is not None:
                try:
                    _resolve(target)
                except ConfigError as err:
                    found.append(f"{role}: {err}")
        if not found and self.options:
            unknown = sorted(set(self.options) - set(self.reader_options()))
            if unknown:
                found.append(f"default option(s) {unknown}: expected some of {self.reader_options()}")
        for role, path in (("training preset", self.train_preset_path()),
                           ("preprocessing preset", self.preprocess_preset_path())):
            if not path.is_file():
                found.append(f"{role}: expected the YAML file {path}, found {'a folder' if path.is_dir() else 'none'}")
        return found

    def check(self) -> "DatasetSpec":
        """This spec, or a ConfigError naming every missing piece."""
        found = self.problems()
        if found:
            raise ConfigError(f"dataset {self.name!r} is only half registered:\n  " + "\n  ".join(found))
        return self


def _resolve(target: str | Callable) -> Callable:
    if callable(target):
        return target
    if not isinstance(target, str) or target.count(":") != 1:
        raise ConfigError(f"expected 'module:function' or a callable, found {target!r}")
    module_name, attr = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"{target!r}: expected an importable module {module_name!r}, found {err}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"{target!r}: expected a function {attr!r} in {module_name}, found {fn!r}")
    return fn


def register(spec: DatasetSpec, *, replace: bool = False) -> DatasetSpec:
    """Add ``spec`` to the registry (``replace=True`` swaps a spec of the same name)."""
    if not isinstance(spec.name, str) or not _NAME.match(spec.name):
        raise ConfigError(f"dataset name: expected lower-case letters, digits, '-' or '_', found {spec.name!r}")
    if spec.reader is None:
        raise ConfigError(f"dataset {spec.name!r}: expected a reader ('module:function' or a callable), found none")
    if spec.name in _REGISTRY and not replace:
        raise ConfigError(f"dataset {spec.name!r}: expected a new name, found it already registered")
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a dataset (tests register toy datasets and remove them again)."""
    _REGISTRY.pop(name, None)


def dataset_names() -> tuple[str, ...]:
    """Registered names, in registration order."""
    return tuple(_REGISTRY)


def is_registered(name: str) -> bool:
    return name in _REGISTRY


def get_spec(name: str) -> DatasetSpec:
    """The complete spec of ``name``; ConfigError for an unknown name or a half-registered spec."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown dataset {name!r}: expected one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name].check()


# -- the registered datasets: one line each ---------------------------------------------------------------------
register(DatasetSpec("brats", "medreg.datasets.brats:brats_pairs"))
register(DatasetSpec("dirlab", "medreg.datasets.dirlab:dirlab_pairs"))
register(DatasetSpec("copd", "medreg.datasets.dirlab:copd_pairs"))
register(DatasetSpec("learn2reg", "medreg.datasets.learn2reg:learn2reg_pairs"))
register(DatasetSpec("demo-brain", "medreg.datasets.brats:brats_pairs", {"modalities": ("t1", "t2")},
                     builder="medreg.datasets.demo_brain:ensure_demo_brain"))
register(DatasetSpec("demo-lung", "medreg.datasets.dirlab:dirlab_pairs",
                     builder="medreg.datasets.demo_lung:ensure_demo_lung"))
