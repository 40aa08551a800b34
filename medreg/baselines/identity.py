"""The 'none' baseline: no registration (``phi`` is the identity, ``u = 0``)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from medreg.baselines.base import BaselineResult
from medreg.io.nifti import volume_geometry


class IdentityBaseline:
    """Zero displacement on the fixed grid: the reference for robustness and ratios."""

    name = "none"

    def __repr__(self) -> str:
        return "IdentityBaseline()"

    def register(
        self,
        fixed_path: str | Path,
        moving_path: str | Path,
        *,
        threads: int = 1,
        seed: int = 0,
        workdir: Path | None = None,
    ) -> BaselineResult:
        """Validate both headers and return ``u = 0`` on the fixed grid."""
        start = time.perf_counter()
        shape, affine = volume_geometry(fixed_path)
        volume_geometry(moving_path)
        u = np.zeros(tuple(shape) + (3,), dtype=np.float32)
        return BaselineResult(
            displacement_lps=u,
            fixed_affine=affine,
            seconds=time.perf_counter() - start,
            threads=int(threads),
            peak_rss_mb=0.0,
            extra={"method": "none", "peak_rss_source": "not measured (no registration)"},
        )
