"""Classical registration methods behind one interface (see ``base``).

Every baseline returns a :class:`BaselineResult`: a displacement in LPS mm on the
fixed grid with ``phi(x) = x + u(x)`` mapping fixed points to moving points.

Specs for :func:`get_baseline`:

- ``none``: no registration (zero field);
- ``ants`` (= ``ants:syn-quick``), ``ants:affine``, ``ants:syn-quick``, ``ants:syn``,
  ``ants:syn-cc``: antspyx presets (``medreg.baselines.ants``);
- ``elastix``: itk-elastix affine + B-spline (optional extra ``medreg[baselines]``);
- ``fireants``: not implemented in medreg yet; raises a clear error.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from medreg.baselines.base import Baseline, BaselineResult
from medreg.errors import ConfigError, MedregError

BASELINE_SPECS = (
    "none",
    "ants",
    "ants:affine",
    "ants:syn-quick",
    "ants:syn",
    "ants:syn-cc",
    "elastix",
    "fireants",
)


class FireantsBaseline:
    """Placeholder for FireANTs (affine + greedy diffeomorphic registration in PyTorch).

    Not implemented in medreg yet: registering always raises :class:`MedregError`,
    saying whether the package is missing or only the adapter is.
    """

    name = "fireants"

    def __repr__(self) -> str:
        return "FireantsBaseline(not implemented)"

    def register(
        self,
        fixed_path: str | Path,
        moving_path: str | Path,
        *,
        threads: int,
        seed: int = 0,
        workdir: Path | None = None,
    ) -> BaselineResult:
        if importlib.util.find_spec("fireants") is None:
            raise MedregError(
                "the 'fireants' baseline needs FireANTs, which is not installed; install it with "
                "'pip install fireants --no-deps' (its metadata pins an old SimpleITK that would "
                "replace medreg's), then its remaining dependencies by hand"
            )
        raise MedregError("the 'fireants' baseline is not implemented in this version of medreg")


def get_baseline(spec: str) -> Baseline:
    """The baseline named by ``spec`` (one of :data:`BASELINE_SPECS`).

    Raises:
        ConfigError: for an unknown spec, listing the valid ones.
    """
    key = spec.strip().lower()
    if key == "none":
        from medreg.baselines.identity import IdentityBaseline

        return IdentityBaseline()
    if key == "ants" or key.startswith("ants:"):
        from medreg.baselines.ants import ANTS_PRESETS, DEFAULT_PRESET, AntsBaseline

        preset = key.partition(":")[2] or DEFAULT_PRESET
        if preset not in ANTS_PRESETS:
            raise ConfigError(f"unknown baseline {spec!r}; expected one of {', '.join(BASELINE_SPECS)}")
        return AntsBaseline(preset)
    if key == "elastix":
        from medreg.baselines.elastix import ElastixBaseline

        return ElastixBaseline()
    if key == "fireants":
        return FireantsBaseline()
    raise ConfigError(f"unknown baseline {spec!r}; expected one of {', '.join(BASELINE_SPECS)}")


__all__ = ["BASELINE_SPECS", "Baseline", "BaselineResult", "FireantsBaseline", "get_baseline"]
