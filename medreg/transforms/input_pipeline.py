"""A model's whole input pipeline: raw files -> preprocessed pair -> the network grid, as one object.

Stages, in order (:data:`STAGES`): ``orientation``, ``spacing`` (when the data
preprocessing sets one), ``intensity``, ``pair_grid`` (the moving image onto the fixed
image's grid), ``crop`` (when ``crop_foreground``), ``pad``, then ``network_grid``
(:func:`medreg.transforms.network_grid.network_grid`: the network's spacing and shape
multiple). The first six are the MONAI pipeline of :mod:`medreg.transforms.pipeline`
with the data preprocessing :attr:`InputPipeline.data`; the last uses
:attr:`InputPipeline.network` (the model config's ``preprocess``).

Files written by ``medreg preprocess`` record the stages they passed (the manifest's
``stages``). :meth:`InputPipeline.for_files` returns the pipeline for such files: a
normalisation they passed is not run again (a CT window maps [0, 1] to a constant);
the geometric stages repeat exactly (they skip, as they find the files on their grid).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from medreg.errors import InputError
from medreg.transforms.config import PreprocessConfig
from medreg.transforms.network_grid import network_grid
from medreg.transforms.pipeline import PreprocessedPair, preprocess_pair

STAGES = ("orientation", "spacing", "intensity", "pair_grid", "crop", "pad", "network_grid")
SKIPPABLE = ("intensity",)  # stages not repeated on files that passed them (the others are exact no-ops then)


def stages_of(config: PreprocessConfig) -> list[str]:
    """The stages a preprocessing config runs (without ``network_grid``), in order."""
    out = ["orientation"] + (["spacing"] if config.spacing is not None else []) + ["intensity", "pair_grid"]
    return out + (["crop"] if config.crop_foreground else []) + ["pad"]


@dataclass(frozen=True)
class InputPipeline:
    """``data``: the preprocessing of raw files; ``network``: the network-grid stage; ``passed``: stages to skip."""

    data: PreprocessConfig
    network: PreprocessConfig
    passed: tuple[str, ...] = ()

    @classmethod
    def for_model(cls, config: Any, data_preprocess: PreprocessConfig | None = None) -> "InputPipeline":
        """The pipeline of a model config (its ``preprocess``) trained on data preprocessed with ``data_preprocess``."""
        net = config.preprocess
        data = data_preprocess if data_preprocess is not None else net
        return cls(data.model_copy(update={"modalities": list(net.modalities)}), net)

    @property
    def channels(self) -> list[str]:
        return list(self.network.modalities)

    def stages(self) -> list[str]:
        """The stages this pipeline runs on its inputs, in order."""
        return [s for s in stages_of(self.data) if s not in self.passed] + ["network_grid"]

    def for_files(self, files: PreprocessConfig, passed: Sequence[str], source: str | Path | None) -> "InputPipeline":
        """The pipeline for files that went through ``files`` (stages ``passed``); InputError naming ``source`` if
        they were normalised otherwise than the model's training data."""
        unknown = sorted(set(passed) - set(STAGES))
        if unknown:
            raise InputError(source, f"expected stages among {list(STAGES)}, found {unknown}")
        if "intensity" in passed and files.intensity != self.data.intensity:
            raise InputError(source, f"the model was trained on intensities normalised as "
                                     f"{self.data.intensity.model_dump()}; these files were preprocessed with "
                                     f"{files.intensity.model_dump()}: preprocess the data with the model's config")
        return replace(self, passed=tuple(s for s in passed if s in SKIPPABLE))

    def preprocess(self, fixed: Sequence[Any], moving: Sequence[Any], **options: Any) -> PreprocessedPair:
        """The MONAI stages on one pair (``options`` go to ``preprocess_pair``, e.g. ``fixed_points``)."""
        return preprocess_pair(list(fixed), list(moving), self.data, normalize="intensity" not in self.passed,
                               **options)

    def to_network(self, image: torch.Tensor, affine: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """The ``network_grid`` stage on one preprocessed image ``(C, X, Y, Z)``."""
        return network_grid(image, affine, self.network)

    def to_json(self) -> str:
        return json.dumps({"data": self.data.model_dump(mode="json"), "network": self.network.model_dump(mode="json"),
                           "passed": list(self.passed)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str | Path | None = None) -> "InputPipeline":
        try:
            d = json.loads(text)
            return cls(PreprocessConfig.model_validate(d["data"]), PreprocessConfig.model_validate(d["network"]),
                       tuple(d.get("passed", ())))
        except (ValueError, KeyError, TypeError) as err:
            raise InputError(source, f"expected an input pipeline (data, network, passed), found: {err}") from None


__all__ = ["InputPipeline", "SKIPPABLE", "STAGES", "stages_of"]
