"""ANTs baselines through antspyx (docs/reference.md §5).

Presets (``ants:PRESET``; ``ants`` alone means ``syn-quick``):

=============  ====================================  =====================================
preset         antspyx ``type_of_transform``         stages (from antspyx 0.6.3's code)
=============  ====================================  =====================================
``affine``     ``antsRegistrationSyNQuick[a]``       rigid + affine, MI
``syn-quick``  ``antsRegistrationSyNQuick[s]``       rigid + affine + SyN, MI, 100x70x50x0
``syn``        ``antsRegistrationSyN[s]``            rigid + affine + SyN, CC radius 2, 100x70x50x20
``syn-cc``     ``antsRegistrationSyN[s,2]``          as the ANTsX BraTS-Reg22 entry (CC radius 2)
=============  ====================================  =====================================

Note: antspyx's re-implementation of ``antsRegistrationSyN[s]`` already uses CC
with radius 2 (the shell script's default is 4), so with antspyx 0.6.3 ``syn`` and
``syn-cc`` run the same command; ``syn-cc`` names the BraTS-Reg recipe explicitly.

Direction: ``ants.registration(fixed, moving)['fwdtransforms']`` map fixed points to
moving points (and resample the moving image onto the fixed grid). They are composed
into one displacement field on the fixed grid with ``ants.apply_transforms(...,
compose=prefix)``; ITK writes and reads it in LPS mm, so it is ``u`` directly.

The registration runs in a fresh Python process (see ``base``) with
``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` and ``ANTS_RANDOM_SEED`` set (the seed is also
passed as ``--random-seed``). ``seconds`` is registration plus composition into the
dense field, not reading the images or starting the worker (``extra`` has each part).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from medreg.baselines.base import (
    DISPLACEMENT_FILE,
    BaselineResult,
    itk_ras_affine,
    own_peak_rss_mb,
    run_tool,
)
from medreg.errors import ConfigError

ANTS_PRESETS: dict[str, dict[str, Any]] = {
    "affine": {"type_of_transform": "antsRegistrationSyNQuick[a]"},
    "syn-quick": {"type_of_transform": "antsRegistrationSyNQuick[s]"},
    "syn": {"type_of_transform": "antsRegistrationSyN[s]"},
    "syn-cc": {"type_of_transform": "antsRegistrationSyN[s,2]"},
}
DEFAULT_PRESET = "syn-quick"


def ants_worker(fixed_path: str, moving_path: str, options: dict[str, Any], workdir: str, seed: int) -> dict[str, Any]:
    """Run one antspyx registration and save the composed forward field (runs in the worker)."""
    import ants

    ants.config._random_seed = int(seed)  # antspyx adds --random-seed when this is set
    # the options crossed a JSON file: antspyx expects tuples (e.g. aff_shrink_factors), not lists
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
    fixed = ants.image_read(fixed_path)
    moving = ants.image_read(moving_path)
    rss_before = own_peak_rss_mb()
    prefix = str(Path(workdir) / "ants_")
    t0 = time.perf_counter()
    reg = ants.registration(fixed, moving, outprefix=prefix, **options)
    t1 = time.perf_counter()
    field_path = ants.apply_transforms(fixed, moving, reg["fwdtransforms"], compose=prefix + "fwd_")
    t2 = time.perf_counter()
    if not field_path:
        raise RuntimeError("antsApplyTransforms did not write the composed displacement field")
    field = ants.image_read(field_path)
    u = np.asarray(field.numpy(), dtype=np.float32)
    if u.shape != tuple(fixed.shape) + (3,):
        raise RuntimeError(f"expected a composed field of shape {tuple(fixed.shape) + (3,)}, found {u.shape}")
    np.save(Path(workdir) / DISPLACEMENT_FILE, u)
    return {
        "register_seconds": t1 - t0,
        "compose_seconds": t2 - t1,
        "fixed_affine_itk": itk_ras_affine(fixed.origin, fixed.spacing, fixed.direction).tolist(),
        "fwdtransforms": list(reg["fwdtransforms"]),
        "composed_field": str(field_path),
        "antspyx_version": getattr(ants, "__version__", "unknown"),
        "rss_before_register_mb": rss_before,
    }


class AntsBaseline:
    """ANTs registration with one of :data:`ANTS_PRESETS`.

    Args:
        preset: a key of :data:`ANTS_PRESETS`.
        isolate: run in a fresh worker process (default; needed for a reliable thread
            count and per-registration peak memory).
        **overrides: extra keyword arguments for ``ants.registration`` (e.g. ``verbose=True``).
    """

    def __init__(self, preset: str = DEFAULT_PRESET, *, isolate: bool = True, **overrides: Any):
        if preset not in ANTS_PRESETS:
            raise ConfigError(f"unknown ANTs preset {preset!r}; expected one of {sorted(ANTS_PRESETS)}")
        self.preset = preset
        self.isolate = isolate
        self.options = {**ANTS_PRESETS[preset], **overrides}
        self.name = f"ants:{preset}"

    def __repr__(self) -> str:
        return f"AntsBaseline(preset={self.preset!r}, options={self.options!r})"

    def register(
        self,
        fixed_path: str | Path,
        moving_path: str | Path,
        *,
        threads: int,
        seed: int = 0,
        workdir: Path | None = None,
    ) -> BaselineResult:
        """Register ``moving`` to ``fixed``; the transform files stay in ``workdir`` if given."""
        run = run_tool("medreg.baselines.ants:ants_worker", {"options": self.options}, fixed_path, moving_path,
                       threads=threads, seed=seed, workdir=workdir, isolate=self.isolate, prefix="medreg_ants_",
                       patterns=("ants_*",),
                       what=f"ANTs registration ({self.name}) of {moving_path} to {fixed_path}")
        payload = run.payload
        extra = {"method": self.name, "options": dict(self.options), "seed": int(seed), **payload}
        if workdir is None:  # the files went away with the temporary folder
            extra.pop("fwdtransforms")
            extra.pop("composed_field")
        return run.result(extra, seconds=payload["register_seconds"] + payload["compose_seconds"], threads=threads)
