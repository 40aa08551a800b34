"""Instance optimisation as data: one typed object, named presets, the numbers written once.

An :class:`IOConfig` says how a registration is refined on its own pair:

- ``mode="field"``: the displacement itself is refined, stage by stage
  (:class:`Stage`: on which grid, which share of the steps, the Adam rate in voxels
  a step, the regularizer's weight relative to the training ``lam``, the LNCC window);
- ``mode="network"``: a copy of the network is fine-tuned for ``steps`` Adam steps
  (``lr`` defaults to the training rate); no stages.

Grids of a stage: ``half`` (half the network resolution), ``network``, ``finer``
(``factor`` times finer than the network grid, resampled from the preprocessed data)
and ``data`` (the preprocessed data's own voxels). Step counts: every stage gets
``floor(fraction * steps)``, and the stage with ``fraction=None`` gets the rest.

The presets (:data:`PRESETS`) are what the CLI's ``--io-upsample`` chose before:
``field`` (1), ``finer`` (K) and ``data``. How they were chosen, and what else was
tried, is in ``docs/instance-optimisation.md``. The CLI maps its flags onto this object
at the edge (:func:`io_from_flags`); the evaluation's method names come from
:meth:`IOConfig.method_name`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

GridName = Literal["half", "network", "finer", "data"]
MODES = ("field", "network")


@dataclass(frozen=True)
class Stage:
    """One level of field instance optimisation.

    Attributes:
        grid: where the similarity is computed (see the module doc).
        fraction: share of the steps (``None``: whatever the other stages leave).
        lr: Adam rate, voxels of the network grid a step.
        reg_scale: the regularizer's weight is ``reg_scale * loss.lam``.
        window: LNCC window (``None``: the training window); capped at the training window.
        coarsen: the residual's control points every ``coarsen`` voxels of the stage grid
            (for ``finer``: ``2 * factor``; for ``data``: voxels of the network grid).
        reg_on_control_points: the regularizer on the control points (total field sampled
            there) instead of every voxel of the stage grid.
        factor: ``finer`` only: how many times finer than the network grid.
    """

    grid: GridName
    fraction: float | None
    lr: float
    reg_scale: float = 1.0
    window: int | None = None
    coarsen: int = 2
    reg_on_control_points: bool = False
    factor: int = 1

    def __post_init__(self) -> None:
        if self.grid not in ("half", "network", "finer", "data"):
            raise ValueError(f"expected a stage grid half, network, finer or data, found {self.grid!r}")
        if self.fraction is not None and not 0 <= self.fraction <= 1:
            raise ValueError(f"expected a stage fraction in [0, 1], found {self.fraction}")
        if self.lr <= 0 or self.reg_scale < 0 or self.coarsen < 1 or self.factor < 1:
            raise ValueError(f"expected lr > 0, reg_scale >= 0, coarsen >= 1, factor >= 1; found {self}")


@dataclass(frozen=True)
class IOConfig:
    """How a registration is refined on its own pair (see the module doc)."""

    steps: int = 0
    mode: str = "field"
    stages: tuple[Stage, ...] = ()
    lr: float | None = None  # network mode: the fine-tuning rate (None: config.train.lr)
    preset: str | None = None  # the preset this came from (for the method name)

    def __post_init__(self) -> None:
        if int(self.steps) != self.steps or self.steps < 0:
            raise ValueError(f"expected --io-steps >= 0, found {self.steps}")
        if self.mode not in MODES:
            raise ValueError(f"expected --io-mode to be one of {list(MODES)}, found {self.mode!r}")
        if self.mode == "field" and self.steps and not self.stages:
            raise ValueError("expected at least one stage for field instance optimisation, found none")
        rest = [s for s in self.stages if s.fraction is None]
        if len(rest) > 1:
            raise ValueError(f"expected at most one stage with fraction None (the rest), found {len(rest)}")

    @property
    def enabled(self) -> bool:
        return self.steps > 0

    def stage_steps(self) -> list[int]:
        """The number of steps of every stage, in order (they add up to ``steps``)."""
        n = [0 if s.fraction is None else int(math.floor(s.fraction * self.steps + 1e-9)) for s in self.stages]
        for i, s in enumerate(self.stages):
            if s.fraction is None:
                n[i] = self.steps - sum(n)
        return n

    def with_lr(self, lr: float | None) -> "IOConfig":
        """Every stage (field) or the fine-tuning (network) at rate ``lr``; None leaves the preset's rates."""
        if lr is None:
            return self
        if lr <= 0:
            raise ValueError(f"expected --io-lr > 0, found {lr}")
        if self.mode == "network":
            return replace(self, lr=float(lr))
        return replace(self, stages=tuple(replace(s, lr=float(lr)) for s in self.stages))

    def method_name(self) -> str:
        """The evaluation's row label: ``medreg``, ``medreg+ioN``, ``medreg+ioNxK``, ``medreg+ioN-data``, ``medreg+netioN``."""
        if not self.enabled:
            return "medreg"
        if self.mode == "network":
            return f"medreg+netio{self.steps}"
        suffix = {"field": "", "data": "-data"}.get(self.preset or "", None)
        if suffix is None:
            finer = [s.factor for s in self.stages if s.grid == "finer"]
            suffix = f"x{finer[0]}" if self.preset == "finer" and finer else f"-{self.preset or 'custom'}"
        return f"medreg+io{self.steps}{suffix}"

    def describe(self) -> dict[str, Any]:
        """JSON-ready: mode, steps, preset and the stages with their step counts."""
        out: dict[str, Any] = {"mode": self.mode if self.enabled else None, "steps": self.steps, "preset": self.preset}
        if self.mode == "network":
            out["lr"] = self.lr
        else:
            out["stages"] = [{"grid": s.grid, "steps": n, "lr": s.lr, "reg_scale": s.reg_scale, "window": s.window,
                              "coarsen": s.coarsen, "factor": s.factor} for s, n in zip(self.stages, self.stage_steps())]
        return out


# --------------------------------------------------------------------------- presets (numbers written once)
def _field_stages() -> tuple[Stage, ...]:
    return (Stage("half", 2 / 3, 0.3), Stage("network", None, 0.2))


def _finer_stages(k: int) -> tuple[Stage, ...]:
    return (Stage("half", 1 / 3, 0.3), Stage("network", 1 / 3, 0.2),
            Stage("finer", None, 0.3, reg_scale=0.2, window=3, coarsen=2 * k, reg_on_control_points=True, factor=k))


def _data_stages() -> tuple[Stage, ...]:
    return (Stage("half", None, 0.3), Stage("network", 1 / 4, 0.2),
            Stage("data", 1 / 6, 0.45, reg_scale=0.4, window=3, coarsen=2))


PRESETS = {"field": _field_stages, "data": _data_stages}


def io_preset(name: str, steps: int, factor: int = 2) -> IOConfig:
    """The named preset with ``steps`` steps: ``field``, ``finer`` (``factor`` times finer) or ``data``."""
    if name == "finer":
        if int(factor) != factor or factor < 2:
            raise ValueError(f"expected the finer preset's factor to be an integer >= 2, found {factor!r}")
        return IOConfig(steps=int(steps), mode="field", stages=_finer_stages(int(factor)), preset="finer")
    if name not in PRESETS:
        raise ValueError(f"expected an instance-optimisation preset {', '.join([*PRESETS, 'finer'])}, found {name!r}")
    return IOConfig(steps=int(steps), mode="field", stages=PRESETS[name](), preset=name)


def parse_io_upsample(value: Any) -> int | str:
    """``--io-upsample``: an integer ``K >= 1`` or ``data`` (the last IO steps on the data's own grid)."""
    if isinstance(value, str) and value.strip().lower() == "data":
        return "data"
    try:
        k = int(value)
        ok = k == float(value) and k >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"expected --io-upsample to be an integer >= 1 or 'data', found {value!r}")
    return k


def io_from_flags(steps: int = 0, mode: str = "field", lr: float | None = None, upsample: Any = 1) -> IOConfig:
    """The CLI's ``--io-steps/--io-mode/--io-lr/--io-upsample`` as one :class:`IOConfig` (ValueError if they clash)."""
    up = parse_io_upsample(upsample)
    if mode not in MODES:
        raise ValueError(f"expected --io-mode to be one of {list(MODES)}, found {mode!r}")
    if int(steps) != steps or steps < 0:
        raise ValueError(f"expected --io-steps >= 0, found {steps}")
    if up != 1 and mode != "field":
        raise ValueError(f"--io-upsample {up} needs --io-mode field, found {mode!r}")
    if mode == "network":
        return IOConfig(steps=int(steps), mode="network").with_lr(lr)
    preset = io_preset("data", steps) if up == "data" else io_preset("finer", steps, up) if up > 1 \
        else io_preset("field", steps)
    return preset.with_lr(lr)


NO_IO = IOConfig()

__all__ = ["IOConfig", "MODES", "NO_IO", "PRESETS", "Stage", "io_from_flags", "io_preset", "parse_io_upsample"]
