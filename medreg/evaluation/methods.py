"""Every evaluated method behind one interface: medreg's model and the baselines.

An :class:`EvalMethod` has a ``name`` (the row label in ``metrics.csv``), a ``device``
and ``register(inputs, *, threads, seed, workdir) -> BaselineResult``: the transform
``phi`` (fixed -> moving) as a displacement in LPS mm on the fixed grid. Every method
gets the same :class:`PairInputs` (the preprocessed files listed in the manifest) and
the same thread count.

- :class:`BaselineMethod` wraps a :class:`medreg.baselines.Baseline`; classical tools
  register one image, the ``channel`` (default: the first channel of the manifest).
- :class:`MedregMethod` loads a trained model once (``medreg.io.checkpoint.load_model``)
  and calls ``medreg.register.register_pair`` for each pair, with all channels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from medreg.baselines.base import BaselineResult
from medreg.errors import ConfigError, InputError


@dataclass(frozen=True)
class PairInputs:
    """The preprocessed files of one pair: ``{channel: path}`` for fixed and moving.

    ``preprocess``: the manifest's ``PreprocessConfig`` the files were written with
    (their intensities are normalised already), or None for raw files.
    """

    pair_id: str
    fixed: dict[str, Path]
    moving: dict[str, Path]
    channel: str
    preprocess: Any = None

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
        run: a run folder, checkpoint folder or ``model.safetensors`` (see ``load_model``).
        io_steps: instance-optimisation steps per pair (0: the network alone).
        io_mode: ``field`` (refine the displacement; named ``medreg+ioN``, ``medreg+ioNxK`` with
            ``io_upsample=K > 1``, ``medreg+ioN-data`` with ``io_upsample="data"``) or ``network``
            (fine-tune a copy of the model; named ``medreg+netioN``).
        device: torch device string (``cpu``, ``cuda``, ``cuda:1``; ``auto``: CUDA when present).
    """

    def __init__(self, run: str | Path, *, io_steps: int = 0, io_mode: str = "field", device: str = "cpu",
                 share_model_of: "MedregMethod | None" = None, io_upsample: int | str = 1):
        if io_steps < 0:
            raise ConfigError(f"--io-steps: expected >= 0, found {io_steps}")
        if io_mode not in ("field", "network"):
            raise ConfigError(f"--io-mode: expected field or network, found {io_mode!r}")
        from medreg.register import parse_io_upsample

        try:
            io_upsample = parse_io_upsample(io_upsample)
        except ValueError as exc:
            raise ConfigError(f"--io-upsample: {exc}") from None
        if io_upsample != 1 and io_mode != "field":
            raise ConfigError(f"--io-upsample: {io_upsample} needs --io-mode field, found --io-mode {io_mode}")
        self.io_mode = io_mode
        self.io_upsample = io_upsample if io_steps else 1
        self.run = Path(run)
        self.io_steps = int(io_steps)
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = str(device)
        self.name = ("medreg" if self.io_steps == 0 else
                     f"medreg+netio{self.io_steps}" if io_mode == "network" else
                     f"medreg+io{self.io_steps}" + ("" if self.io_upsample == 1 else
                                                     "-data" if self.io_upsample == "data" else f"x{self.io_upsample}"))
        self._warm = False
        self._loaded: tuple[Any, Any] | None = None
        self._share = share_model_of

    def __repr__(self) -> str:
        return f"MedregMethod(run={str(self.run)!r}, io_steps={self.io_steps}, device={self.device!r})"

    def load(self) -> tuple[Any, Any]:
        """``(model, config, data_preprocess)``, loaded on first use and kept."""
        if self._share is not None:
            return self._share.load()
        if self._loaded is None:
            from medreg.io.checkpoint import load_data_preprocess, load_model, resolve_checkpoint

            model, config = load_model(self.run, self.device)
            self._loaded = (model, config, load_data_preprocess(resolve_checkpoint(self.run)))
        return self._loaded

    def register(self, inputs: PairInputs, *, threads: int, seed: int = 0, workdir: Path | None = None) -> BaselineResult:
        import torch

        from medreg.register import register_pair

        torch.set_num_threads(int(threads))
        torch.manual_seed(int(seed))
        model, config, data_preprocess = self.load()
        if inputs.preprocess is not None:
            from medreg.register import for_preprocessed_files

            data_preprocess = for_preprocessed_files(data_preprocess or config.preprocess, inputs.preprocess,
                                                     inputs.fixed_path)
        channels = list(config.preprocess.modalities)
        missing = [c for c in channels if c not in inputs.fixed or c not in inputs.moving]
        if missing:
            raise InputError(inputs.fixed_path, f"pair {inputs.pair_id}: the model takes channels {channels}; "
                                                f"expected them in the manifest, found {sorted(inputs.fixed)}")

        def run() -> Any:
            return register_pair(model, config, [inputs.fixed[c] for c in channels], [inputs.moving[c] for c in channels],
                                 io_steps=self.io_steps, io_mode=self.io_mode, device=self.device,
                                 data_preprocess=data_preprocess, io_upsample=self.io_upsample)

        if not self._warm:  # one untimed run: thread pools, oneDNN kernels and caches are set up once per process
            run()
            self._warm = True
            torch.manual_seed(int(seed))
        result = run()
        result.threads = int(threads)
        result.extra["method"] = self.name
        return result

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": "medreg", "run": str(self.run), "io_steps": self.io_steps,
                "io_mode": self.io_mode if self.io_steps else None, "io_upsample": self.io_upsample,
                "device": self.device,
                "timing": "after one untimed warm-up registration per process"}


def build_methods(
    model: str | Path | None,
    baselines: list[str],
    *,
    io_steps: int = 0,
    io_mode: str = "field",
    device: str = "cpu",
    io_upsample: int | str = 1,
) -> list[EvalMethod]:
    """The methods of one evaluation, in report order: medreg (and medreg+ioN), then the baselines.

    With ``io_steps > 0`` the model is evaluated both without and with instance optimisation.
    Duplicate names (e.g. ``ants`` and ``ants:syn-quick``) are an error.
    """
    methods: list[EvalMethod] = []
    if model is not None:
        methods.append(MedregMethod(model, io_steps=0, device=device))
        if io_steps > 0:
            methods.append(MedregMethod(model, io_steps=io_steps, io_mode=io_mode, device=device,
                                        share_model_of=methods[0], io_upsample=io_upsample))  # type: ignore[arg-type]
    methods.extend(BaselineMethod(spec) for spec in baselines)
    if not methods:
        raise ConfigError("expected a model (--model RUN) or at least one --baseline, found neither")
    names = [m.name for m in methods]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"expected each method once, found {', '.join(dupes)} more than once (ants = ants:syn-quick)")
    return methods
