"""Classical registration methods behind one interface (see ``base``).

Every baseline returns a :class:`BaselineResult`: a displacement in LPS mm on the
fixed grid with ``phi(x) = x + u(x)`` mapping fixed points to moving points.

Specs for :func:`get_baseline`:

- ``none``: no registration (zero field);
- ``ants`` (= ``ants:syn-quick``), ``ants:affine``, ``ants:syn-quick``, ``ants:syn``,
  ``ants:syn-cc``: antspyx presets (``medreg.baselines.ants``);
- ``elastix``: itk-elastix affine + B-spline (optional extra ``medreg[baselines]``);
- ``fireants``: FireANTs affine + greedy diffeomorphic registration (PyTorch; CUDA when
  present), FireANTs' quickstart settings (``medreg.baselines.fireants``). Not an extra: its
  metadata pins ``simpleitk==2.2.1``, so install it with ``pip install --no-deps fireants==1.5.0``
  (medreg's own dependencies cover what it needs); without it, registering raises a clear
  "not installed" error.
"""

from __future__ import annotations

from medreg.baselines.base import Baseline, BaselineResult
from medreg.errors import ConfigError

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


def __getattr__(name: str):
    """``FireantsBaseline`` on first use (``medreg.baselines.fireants`` never imports FireANTs itself)."""
    if name == "FireantsBaseline":
        from medreg.baselines.fireants import FireantsBaseline

        return FireantsBaseline
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
        from medreg.baselines.fireants import FireantsBaseline

        return FireantsBaseline()
    raise ConfigError(f"unknown baseline {spec!r}; expected one of {', '.join(BASELINE_SPECS)}")


__all__ = ["BASELINE_SPECS", "Baseline", "BaselineResult", "FireantsBaseline", "get_baseline"]
