"""A model bundle: the network, its config and the input pipeline it was trained with, loaded in one call.

A medreg checkpoint (``model.safetensors``) embeds everything a new pair needs: the
config (architecture, loss, and ``preprocess``: the network-grid stage, spacing and
shape multiple) and the preprocessing its training data went through
(``data_preprocess``: orientation, crop, intensity). :func:`load_bundle` reads them
together; :meth:`ModelBundle.pipeline_for` adapts the pipeline to files that
``medreg preprocess`` already wrote (their manifest records the steps they passed), so
those files are not normalised twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from medreg.errors import InputError
from medreg.io.checkpoint import load_data_preprocess, load_model, resolve_checkpoint


@dataclass
class ModelBundle:
    """``model`` (eval mode), ``config`` and ``data_preprocess`` (None: ``config.preprocess``), from ``path``."""

    model: torch.nn.Module
    config: Any
    data_preprocess: Any
    path: Path

    @property
    def channels(self) -> list[str]:
        return list(self.config.preprocess.modalities)

    @property
    def pipeline(self) -> Any:
        """The preprocessing a raw pair goes through before the network grid."""
        return self.data_preprocess if self.data_preprocess is not None else self.config.preprocess

    def pipeline_for(self, files_preprocess: Any | None, source: str | Path | None = None) -> Any:
        """The preprocessing for files already written with ``files_preprocess`` (a manifest's), or raw files (None)."""
        if files_preprocess is None:
            return self.data_preprocess
        return for_preprocessed_files(self.pipeline, files_preprocess, source)


def load_bundle(path: str | Path, device: str | torch.device = "cpu") -> ModelBundle:
    """A run folder, checkpoint folder or ``.safetensors`` file -> its :class:`ModelBundle` on ``device``."""
    file = resolve_checkpoint(path)
    model, config = load_model(file, device)
    return ModelBundle(model, config, load_data_preprocess(file), file)


def for_preprocessed_files(model_preprocess: Any, files_preprocess: Any, source: str | Path | None) -> Any:
    """The preprocessing to give ``register_pair`` for files that ``medreg preprocess`` already wrote.

    ``model_preprocess`` is what the model's training data went through
    (``load_data_preprocess``, or ``config.preprocess``); ``files_preprocess`` the
    manifest's config of the files. Their intensities are already normalised, so they
    are kept (a second CT window maps [0, 1] to a constant; a second percentile scaling
    shifts MRI slightly); the geometric steps repeat harmlessly. The two
    normalisations must agree, else the network would see other intensities than in
    training: that is an error naming ``source``.
    """
    from medreg.transforms.config import KeepIntensity

    if model_preprocess.intensity != files_preprocess.intensity:
        raise InputError(source, f"the model was trained on intensities normalised as "
                                 f"{model_preprocess.intensity.model_dump()}; these files were preprocessed with "
                                 f"{files_preprocess.intensity.model_dump()}: preprocess the data with the model's config")
    return model_preprocess.model_copy(update={"intensity": KeepIntensity(kind="none")})


def manifest_config(manifest_path: str | Path) -> Any:
    """The ``PreprocessConfig`` a ``medreg preprocess`` manifest's files were written with."""
    from medreg.datasets.manifest import read_manifest

    return read_manifest(Path(manifest_path)).config


__all__ = ["ModelBundle", "for_preprocessed_files", "load_bundle", "manifest_config"]
