"""Every evaluated method behind one interface: medreg's model and the baselines.

An :class:`EvalMethod` has a ``name`` (the row label in ``metrics.csv``), a ``device``
and ``register(inputs, *, threads, seed, workdir) -> BaselineResult``: the transform
``phi`` (fixed -> moving) as a displacement in LPS mm on the fixed grid. Every method
gets the same :class:`PairInputs` (the preprocessed files listed in the manifest) and
the same thread count.

- :class:`BaselineMethod` wraps a :class:`medreg.baselines.Baseline`; classical tools
  register one image, the ``channel`` (default: the first channel of the manifest).
- :class:`MedregMethod` loads a trained model once (``medreg.inference.bundle.load_bundle``)
  and calls ``medreg.inference.register.register_pair`` for each pair, with all channels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from medreg.baselines.base import BaselineResult
from medreg.errors import ConfigError, InputError
from medreg.inference.global_stage import GlobalConfig
from medreg.inference.io_config import NO_IO, IOConfig


@dataclass(frozen=True)
class PairInputs:
    """The preprocessed files of one pair: ``{channel: path}`` for fixed and moving.

    ``manifest``: the ``medreg preprocess`` manifest the files come from (its config and the
    input-pipeline stages they passed), or None for raw files.
    """

    pair_id: str
    fixed: dict[str, Path]
    moving: dict[str, Path]
    channel: str
    manifest: Any = None

    @property
    def fixed_path(self) -> Path:
        """The single-image input of classical methods (``channel``)."""
        return self.fixed[self.channel]

    @property
    def moving_path(self) -> Path:
        return self.moving[self.channel]


@runtime_checkable
class EvalMethod(Protocol):
    """A method evaluated by ``medreg evaluate``."""

    name: str
    device: str

    def register(self, inputs: PairInputs, *, threads: int, seed: int = 0, workdir: Path | None = None) -> BaselineResult:
        """Register ``inputs.moving`` to ``inputs.fixed``; return ``phi`` on the fixed grid."""
        ...

    def describe(self) -> dict[str, Any]:
        """What the method is (for ``evaluation.json``)."""
        ...


class BaselineMethod:
    """A baseline spec (``none``, ``ants[:PRESET]``, ``elastix``, ...) as an evaluated method."""

    device = "cpu"

    def __init__(self, spec: str):
        from medreg.baselines import get_baseline

        self.spec = spec
        self.baseline = get_baseline(spec)
        self.name = str(self.baseline.name)

    def __repr__(self) -> str:
        return f"BaselineMethod({self.baseline!r})"

    def register(self, inputs: PairInputs, *, threads: int, seed: int = 0, workdir: Path | None = None) -> BaselineResult:
        return self.baseline.register(inputs.fixed_path, inputs.moving_path, threads=threads, seed=seed, workdir=workdir)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": "baseline", "spec": self.spec, "repr": repr(self.baseline), "device": self.device}


class MedregMethod:
    """A trained medreg model, loaded once, registering each pair with ``register_pair``.

    Args:
        run: a run folder, checkpoint folder or ``model.safetensors`` (see ``load_bundle``).
        io: instance optimisation per pair (default none); the method's name is ``io.method_name()``.
        device: torch device string (``cpu``, ``cuda``, ``cuda:1``; ``auto``: CUDA when present).
    """

    def __init__(self, run: str | Path, *, io: IOConfig = NO_IO, device: str = "cpu",
                 share_model_of: "MedregMethod | None" = None, global_stage: GlobalConfig | None = None):
        self.run = Path(run)
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = str(device)
        self._warm = False
        self._loaded: Any = None
        self._share = share_model_of
        if global_stage is None:  # the model's own (its config's global_stage.mode)
            from medreg.inference.register import model_global_stage

            global_stage = model_global_stage(self.load().config)
        self.global_stage = global_stage
        self.io = io.for_model(self.load().config)  # a named preset: the model's anatomy's table
        self.name = global_stage.named(io.method_name())  # medreg+affine+io15

    def __repr__(self) -> str:
        return f"MedregMethod(run={str(self.run)!r}, io={self.io.method_name()!r}, device={self.device!r})"

    def load(self) -> Any:
        """The :class:`~medreg.inference.bundle.ModelBundle`, loaded on first use and kept."""
        if self._share is not None:
            return self._share.load()
        if self._loaded is None:
            from medreg.inference.bundle import load_bundle

            self._loaded = load_bundle(self.run, self.device)
        return self._loaded

    def register(self, inputs: PairInputs, *, threads: int, seed: int = 0, workdir: Path | None = None) -> BaselineResult:
        import torch

        from medreg.inference.register import register_pair

        torch.set_num_threads(int(threads))
        torch.manual_seed(int(seed))
        bundle = self.load()
        pipeline = bundle.pipeline_for(inputs.manifest, inputs.fixed_path)
        if bundle.config.data.contrasts:  # one channel, any contrast: the one being evaluated (--channel)
            fixed_files, moving_files = [inputs.fixed_path], [inputs.moving_path]
        else:
            channels = bundle.channels
            missing = [c for c in channels if c not in inputs.fixed or c not in inputs.moving]
            if missing:
                raise InputError(inputs.fixed_path, f"pair {inputs.pair_id}: the model takes channels {channels}; "
                                                    f"expected them in the manifest, found {sorted(inputs.fixed)}")
            fixed_files = [inputs.fixed[c] for c in channels]
            moving_files = [inputs.moving[c] for c in channels]

        def run() -> Any:
            return register_pair(bundle.model, bundle.config, fixed_files, moving_files, io=self.io,
                                 device=self.device, pipeline=pipeline, global_stage=self.global_stage)

        if not self._warm:  # one untimed run: thread pools, oneDNN kernels and caches are set up once per process
            run()
            self._warm = True
            torch.manual_seed(int(seed))
        result = run()
        result.threads = int(threads)
        result.extra["method"] = self.name
        return result

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": "medreg", "run": str(self.run), "io": self.io.describe(), "global": self.global_stage.mode,
                "device": self.device, "timing": "after one untimed warm-up registration per process"}


class AtContrast:
    """A method evaluated on one contrast of the pairs (``medreg evaluate --contrasts``): named ``NAME@contrast``,
    it registers that contrast's files (classical methods and single-channel medreg models alike)."""

    def __init__(self, method: EvalMethod, contrast: str):
        self.method, self.contrast = method, str(contrast)
        self.name = f"{method.name}@{self.contrast}"
        self.device = method.device
        if hasattr(method, "global_stage"):
            self.global_stage = method.global_stage

    def register(self, inputs: PairInputs, *, threads: int, seed: int = 0, workdir: Path | None = None) -> BaselineResult:
        if self.contrast not in inputs.fixed or self.contrast not in inputs.moving:
            raise InputError(inputs.fixed_path, f"pair {inputs.pair_id}: expected contrast {self.contrast!r}, "
                                                f"found {sorted(inputs.fixed)}")
        at = PairInputs(inputs.pair_id, inputs.fixed, inputs.moving, self.contrast, inputs.manifest)
        result = self.method.register(at, threads=threads, seed=seed, workdir=workdir)
        result.extra["method"] = self.name
        return result

    def describe(self) -> dict[str, Any]:
        return {**self.method.describe(), "name": self.name, "contrast": self.contrast}


def per_contrast(methods: list[EvalMethod], contrasts: list[str]) -> list[EvalMethod]:
    """Every method once per contrast (contrast-major order). A medreg model with several channels reads all of
    them whatever the contrast, so it is refused here: ``--contrasts`` is for single-channel models."""
    for m in methods:
        if isinstance(m, MedregMethod) and not m.load().config.data.contrasts:
            raise ConfigError(f"--contrasts: the model {m.run} takes the channels {m.load().channels} together; "
                              f"--contrasts evaluates single-channel any-contrast models (data.contrasts); "
                              f"use --channel for the baselines' image instead")
    return [AtContrast(m, c) for c in contrasts for m in methods]


def build_methods(
    model: str | Path | None,
    baselines: list[str],
    *,
    io: IOConfig = NO_IO,
    device: str = "cpu",
    global_stage: GlobalConfig | None = None,
) -> list[EvalMethod]:
    """The methods of one evaluation, in report order: medreg (and medreg+ioN), then the baselines.

    With instance optimisation (``io.enabled``) the model is evaluated both without and with instance optimisation.
    Duplicate names (e.g. ``ants`` and ``ants:syn-quick``) are an error.
    """
    methods: list[EvalMethod] = []
    if model is not None:
        methods.append(MedregMethod(model, device=device, global_stage=global_stage))
        if io.enabled:
            methods.append(MedregMethod(model, io=io, device=device, share_model_of=methods[0],  # type: ignore[arg-type]
                                        global_stage=global_stage))
    methods.extend(BaselineMethod(spec) for spec in baselines)
    if not methods:
        raise ConfigError("expected a model (--model RUN) or at least one --baseline, found neither")
    names = [m.name for m in methods]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"expected each method once, found {', '.join(dupes)} more than once (ants = ants:syn-quick)")
    return methods
