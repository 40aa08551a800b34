"""Checkpoints: safetensors weights carrying their config, plus trainer state for exact resume.

Layout of a training run folder ``RUN``::

    RUN/config.yaml                          the resolved config
    RUN/checkpoints/last/model.safetensors   weights; metadata holds the config JSON and the step
    RUN/checkpoints/last/trainer_state.safetensors   optimiser tensors and RNG states
    RUN/checkpoints/last/trainer_state.json          the rest of the trainer state (step, param groups, ...)
    RUN/checkpoints/best/model.safetensors   best validation weights (+ metrics.json)

``load_model(path)`` rebuilds the model from the ``.safetensors`` file alone
(``path`` may also be a checkpoint folder or a run folder: ``best`` is preferred,
then ``last``). Nothing is ever unpickled: tensors are safetensors, everything
else JSON.

A checkpoint folder is written atomically: its files go into a temporary
sibling folder, which then replaces the old one by two renames (old -> ``.old``,
new -> final). A run killed at any point leaves the previous checkpoint intact
(as ``NAME`` or, between the two renames, ``.NAME.old``, which readers fall back to).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from medreg.errors import InputError

FORMAT = "medreg-checkpoint"
VERSION = "1"
MODEL_FILE = "model.safetensors"
STATE_TENSORS = "trainer_state.safetensors"
STATE_JSON = "trainer_state.json"


# --------------------------------------------------------------------------- nested state <-> (tensors, JSON)
def flatten_state(obj: Any, tensors: dict[str, torch.Tensor], prefix: str = "s") -> Any:
    """Replace every tensor in a nested structure by a reference; collect the tensors (JSON-ready result)."""
    if torch.is_tensor(obj):
        tensors[prefix] = obj.detach().to("cpu").contiguous().clone()
        return {"__tensor__": prefix}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: flatten_state(v, tensors, f"{prefix}.{k}") for k, v in obj.items()}
        return {"__dict__": [[flatten_state(k, tensors, f"{prefix}.k{i}"), flatten_state(v, tensors, f"{prefix}.{i}")]
                             for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, tuple):
        return {"__tuple__": [flatten_state(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [flatten_state(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint (at {prefix})")


def unflatten_state(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`flatten_state`."""
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        if set(obj) == {"__ndarray__", "dtype"}:
            return np.asarray(obj["__ndarray__"], dtype=obj["dtype"])
        if set(obj) == {"__tuple__"}:
            return tuple(unflatten_state(v, tensors) for v in obj["__tuple__"])
        if set(obj) == {"__dict__"}:
            return {unflatten_state(k, tensors): unflatten_state(v, tensors) for k, v in obj["__dict__"]}
        return {k: unflatten_state(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unflatten_state(v, tensors) for v in obj]
    return obj


# --------------------------------------------------------------------------- atomic folder
def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _old_name(final: Path) -> Path:
    return final.with_name(f".{final.name}.old")


def recover_checkpoint_dir(final: str | Path) -> Path:
    """If a save was killed between its two renames, put the previous checkpoint back in place."""
    final = Path(final)
    old = _old_name(final)
    if not final.exists() and old.is_dir():
        os.replace(old, final)
    return final


def existing_checkpoint_dir(final: str | Path) -> Path:
    """``final``, or the previous checkpoint ``.NAME.old`` when a save was killed between its renames."""
    final = Path(final)
    old = _old_name(final)
    return old if not final.exists() and old.is_dir() else final


def write_checkpoint_dir(final: str | Path, write_files) -> Path:
    """Call ``write_files(tmp_dir)`` to fill a temporary folder, then make it ``final`` atomically."""
    final = recover_checkpoint_dir(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        write_files(tmp)
        for f in tmp.iterdir():
            _fsync_file(f)
        old = _old_name(final)
        if old.exists():
            shutil.rmtree(old)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        if old.exists():
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


# --------------------------------------------------------------------------- model files
def save_model_file(path: str | Path, model: nn.Module, config_json: str, *, step: int | None = None,
                    metrics: dict[str, float] | None = None, data_preprocess_json: str | None = None,
                    input_pipeline_json: str | None = None) -> Path:
    """Write ``model``'s weights (shared weights stored once) with the config JSON in the metadata.

    ``input_pipeline_json``: the model's whole input pipeline
    (:class:`medreg.transforms.input_pipeline.InputPipeline`), read back by
    :func:`medreg.inference.bundle.load_bundle`; ``data_preprocess_json`` its first part
    (the manifest's config), kept for readers of older files.
    """
    from safetensors.torch import save_model

    meta = {"format": FORMAT, "version": VERSION, "config": config_json}
    if data_preprocess_json is not None:
        meta["data_preprocess"] = data_preprocess_json
    if input_pipeline_json is not None:
        meta["input_pipeline"] = input_pipeline_json
    if step is not None:
        meta["step"] = str(int(step))
    if metrics:
        meta["metrics"] = json.dumps(metrics, sort_keys=True)
    save_model(model, str(path), metadata=meta)
    return Path(path)


def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder, a checkpoint folder or a ``.safetensors`` file -> the weights file."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.exists():
        raise InputError(path, "expected a checkpoint (.safetensors), a checkpoint folder or a run folder, found nothing")
    candidates = [existing_checkpoint_dir(path) / MODEL_FILE]
    for name in ("best", "last"):
        candidates.append(existing_checkpoint_dir(path / "checkpoints" / name) / MODEL_FILE)
    for cand in candidates:
        if cand.is_file():
            return cand
    raise InputError(path, f"expected {MODEL_FILE} here or under checkpoints/best|last, found none")


def read_metadata(path: str | Path) -> dict[str, str]:
    """The safetensors metadata of a medreg weights file (InputError if it is not one)."""
    from safetensors import safe_open

    path = resolve_checkpoint(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except Exception as err:  # safetensors raises its own error types
        raise InputError(path, f"expected a safetensors checkpoint, found an unreadable file ({err})") from None
    if meta.get("format") != FORMAT or "config" not in meta:
        raise InputError(path, f"expected a medreg checkpoint (metadata format {FORMAT!r} with a config), "
                               f"found metadata keys {sorted(meta)}")
    return meta


# --------------------------------------------------------------------------- trainer state
def save_checkpoint(directory: str | Path, model: nn.Module, config_json: str, *, step: int,
                    trainer_state: dict[str, Any] | None = None, metrics: dict[str, float] | None = None,
                    data_preprocess_json: str | None = None, input_pipeline_json: str | None = None) -> Path:
    """Write ``directory/model.safetensors`` (+ trainer state when given) atomically."""
    from safetensors.torch import save_file

    def write(tmp: Path) -> None:
        save_model_file(tmp / MODEL_FILE, model, config_json, step=step, metrics=metrics,
                        data_preprocess_json=data_preprocess_json, input_pipeline_json=input_pipeline_json)
        if metrics:
            (tmp / "metrics.json").write_text(json.dumps({"step": step, **metrics}, indent=1, sort_keys=True) + "\n")
        if trainer_state is not None:
            tensors: dict[str, torch.Tensor] = {}
            skeleton = flatten_state(trainer_state, tensors)
            save_file(tensors, str(tmp / STATE_TENSORS), metadata={"format": FORMAT, "version": VERSION})
            (tmp / STATE_JSON).write_text(json.dumps({"format": FORMAT, "version": VERSION, "step": step,
                                                      "state": skeleton}) + "\n")

    return write_checkpoint_dir(directory, write)


def load_trainer_state(directory: str | Path) -> dict[str, Any]:
    """Read the trainer state saved by :func:`save_checkpoint` (tensors on the CPU)."""
    from safetensors.torch import load_file

    directory = existing_checkpoint_dir(directory)
    jpath, tpath = directory / STATE_JSON, directory / STATE_TENSORS
    for p in (jpath, tpath):
        if not p.is_file():
            raise InputError(p, "expected trainer state to resume from, found no such file")
    try:
        info = json.loads(jpath.read_text())
    except json.JSONDecodeError as err:
        raise InputError(jpath, f"expected JSON trainer state, found invalid JSON: {err}") from None
    if info.get("format") != FORMAT:
        raise InputError(jpath, f"expected format {FORMAT!r}, found {info.get('format')!r}")
    tensors = load_file(str(tpath))
    return unflatten_state(info["state"], tensors)
