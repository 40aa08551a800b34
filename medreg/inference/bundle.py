"""A model bundle: the network, its config and the input pipeline it was trained with, loaded in one call.

A medreg checkpoint (``model.safetensors``) embeds everything a new pair needs: the
config (architecture, loss, ``preprocess``: the network-grid stage) and the input
pipeline (:class:`~medreg.transforms.input_pipeline.InputPipeline`: the preprocessing its
training data went through, then the network grid). :func:`load_bundle` reads them
together; :meth:`ModelBundle.pipeline_for` adapts the pipeline to files that
``medreg preprocess`` already wrote (their manifest records the stages they passed), so
those files are not normalised twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from medreg.config import config_from_json
from medreg.errors import InputError
from medreg.io.checkpoint import read_metadata, resolve_checkpoint
from medreg.registration.build import build_model
from medreg.transforms.config import PreprocessConfig
from medreg.transforms.input_pipeline import InputPipeline


@dataclass
class ModelBundle:
    """``model`` (eval mode), ``config`` and ``pipeline`` (its whole input pipeline), read from ``path``."""

    model: torch.nn.Module
    config: Any
    pipeline: InputPipeline
    path: Path

    @property
    def channels(self) -> list[str]:
        return self.pipeline.channels

    def pipeline_for(self, manifest: Any | None, source: str | Path | None = None) -> InputPipeline:
        """The pipeline for the files of a ``medreg preprocess`` manifest (None: raw files)."""
        if manifest is None:
            return self.pipeline
        return self.pipeline.for_files(manifest.config, manifest.stages, source)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, Any]:
    """``(model, config)`` from a checkpoint alone (``model`` in eval mode on ``device``)."""
    from safetensors.torch import load_model as st_load

    file = resolve_checkpoint(path)
    meta = read_metadata(file)
    config = config_from_json(meta["config"], f"{file} (embedded config)")
    model = build_model(config.model, len(config.channels))
    try:
        st_load(model, str(file), strict=True, device=str(device))
    except RuntimeError as err:
        raise InputError(file, f"expected weights matching the embedded config, found: {err}") from None
    model.to(device).eval()
    return model, config


def load_pipeline(path: str | Path, config: Any) -> InputPipeline:
    """The input pipeline a checkpoint embeds (older files: its ``data_preprocess`` entry and ``config.preprocess``)."""
    file = resolve_checkpoint(path)
    meta = read_metadata(file)
    if "input_pipeline" in meta:
        return InputPipeline.from_json(meta["input_pipeline"], file)
    data = None
    if "data_preprocess" in meta:
        try:
            data = PreprocessConfig.model_validate_json(meta["data_preprocess"])
        except ValueError as err:
            raise InputError(file, f"expected a valid data_preprocess entry, found: {err}") from None
    return InputPipeline.for_model(config, data)


def load_bundle(path: str | Path, device: str | torch.device = "cpu") -> ModelBundle:
    """A run folder, checkpoint folder or ``.safetensors`` file -> its :class:`ModelBundle` on ``device``."""
    file = resolve_checkpoint(path)
    model, config = load_model(file, device)
    return ModelBundle(model, config, load_pipeline(file, config), file)


__all__ = ["ModelBundle", "load_bundle", "load_model", "load_pipeline"]
