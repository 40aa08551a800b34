"""elastix baseline through itk-elastix (optional extra: ``pip install medreg[baselines]``).

Affine then B-spline, each with elastix's default parameter map
(``GetDefaultParameterMap('affine')`` and ``('bspline')``), the classic recipe for lung CT.

Threads: ITK's *global* default thread count is set (and the environment variable,
before the worker process starts). ``number_of_threads=`` / ``SetNumberOfThreads`` on
the registration object crashed in the B-spline stage with itk-elastix 0.25.4, so it is
deliberately not used.

Direction: elastix's transform maps fixed-space points to moving-space points
(``warped = moving ∘ T``), like ANTs' forward transform. ``transformix``'s deformation
field is sampled on the fixed grid and holds ``T(x) - x`` in ITK physical (LPS) mm;
ITK's array view is (z, y, x, 3), so it is transposed to (X, Y, Z, 3) here. The
vector components need no change.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
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
from medreg.errors import MedregError

INSTALL_HINT = (
    "the 'elastix' baseline needs itk-elastix, which is not installed; "
    "install it with: pip install 'medreg[baselines]' (or pip install itk-elastix==0.25.4)"
)


def require_itk_elastix(*, load: bool = False) -> Any:
    """Import ``itk`` and check that elastix is there, or raise :class:`MedregError` saying how to install it.

    With ``load=False`` (the caller's side) only the module is located: touching
    ``itk.ElastixRegistrationMethod`` makes ITK load all its wrapped modules
    (about 12 s and 1 GB here), which only the worker process should pay for.
    """
    try:
        itk = importlib.import_module("itk")
        if importlib.util.find_spec("itk.ElastixPython") is None:
            raise ImportError("itk is installed without elastix (module itk.ElastixPython not found)")
        if load:
            itk.ElastixRegistrationMethod  # noqa: B018  (lazy attribute: loads the wrapped modules)
    except (ImportError, AttributeError) as exc:
        raise MedregError(f"{INSTALL_HINT} ({type(exc).__name__}: {exc})") from exc
    return itk


def elastix_worker(
    fixed_path: str,
    moving_path: str,
    workdir: str,
    threads: int,
    seed: int,
    maps: list[str],
    overrides: dict[str, list[str]],
) -> dict[str, Any]:
    """Run elastix with default ``maps`` (plus ``overrides``) and save the deformation field (in the worker)."""
    itk = require_itk_elastix(load=True)
    rss_before = own_peak_rss_mb()
    itk.MultiThreaderBase.SetGlobalDefaultNumberOfThreads(int(threads))
    itk.MultiThreaderBase.SetGlobalMaximumNumberOfThreads(max(int(threads), 1))
    itk.MersenneTwisterRandomVariateGenerator.GetInstance().SetSeed(int(seed))

    fixed = itk.imread(fixed_path, itk.F)
    moving = itk.imread(moving_path, itk.F)
    params = itk.ParameterObject.New()
    for name in maps:
        pmap = params.GetDefaultParameterMap(name)
        for key, value in overrides.items():
            pmap[key] = [str(v) for v in value]
        params.AddParameterMap(pmap)

    t0 = time.perf_counter()
    _, transform = itk.elastix_registration_method(
        fixed, moving, parameter_object=params, log_to_console=False, output_directory=workdir
    )
    t1 = time.perf_counter()
    cwd = os.getcwd()
    os.chdir(workdir)  # transformix writes deformationField.nii into the working folder
    try:
        field = itk.transformix_deformation_field(moving, transform)
    finally:
        os.chdir(cwd)
    t2 = time.perf_counter()
    u = np.asarray(itk.array_from_image(field), dtype=np.float32).transpose(2, 1, 0, 3)
    shape = tuple(int(s) for s in itk.size(fixed))
    if u.shape != shape + (3,):
        raise RuntimeError(f"expected a deformation field of shape {shape + (3,)}, found {u.shape}")
    np.save(Path(workdir) / DISPLACEMENT_FILE, u)
    return {
        "register_seconds": t1 - t0,
        "compose_seconds": t2 - t1,
        "fixed_affine_itk": itk_ras_affine(
            np.asarray(fixed.GetOrigin()), np.asarray(fixed.GetSpacing()), itk.array_from_matrix(fixed.GetDirection())
        ).tolist(),
        "parameter_maps": list(maps),
        "parameter_overrides": dict(overrides),
        "itk_version": itk.Version.GetITKVersion(),
        "itk_threads": int(itk.MultiThreaderBase.GetGlobalDefaultNumberOfThreads()),
        "rss_before_register_mb": rss_before,
    }


class ElastixBaseline:
    """elastix with default parameter maps (itk-elastix): affine then B-spline unless told otherwise.

    Args:
        maps: names of elastix's default parameter maps, run in order.
        overrides: parameters set in every map, e.g. ``{"MaximumNumberOfIterations": ["64"]}``
            (for quick tests; the benchmark uses the defaults).
        isolate: run in a fresh worker process (default).
    """

    name = "elastix"

    def __init__(
        self,
        maps: tuple[str, ...] = ("affine", "bspline"),
        overrides: dict[str, list[str]] | None = None,
        *,
        isolate: bool = True,
    ):
        self.maps = tuple(maps)
        self.overrides = {k: [str(v) for v in vs] for k, vs in (overrides or {}).items()}
        self.isolate = isolate

    def __repr__(self) -> str:
        return f"ElastixBaseline(maps={list(self.maps)!r}, overrides={self.overrides!r})"

    def register(
        self,
        fixed_path: str | Path,
        moving_path: str | Path,
        *,
        threads: int,
        seed: int = 0,
        workdir: Path | None = None,
    ) -> BaselineResult:
        """Register ``moving`` to ``fixed``; elastix's logs and parameter files go to ``workdir`` if given."""
        require_itk_elastix()
        run = run_tool("medreg.baselines.elastix:elastix_worker",
                       {"threads": int(threads), "maps": list(self.maps), "overrides": self.overrides},
                       fixed_path, moving_path, threads=threads, seed=seed, workdir=workdir, isolate=self.isolate,
                       prefix="medreg_elastix_", patterns=("TransformParameters.*",),
                       what=f"elastix registration of {moving_path} to {fixed_path}")
        payload = run.payload
        extra = {"method": self.name, "seed": int(seed), **payload}
        return run.result(extra, seconds=payload["register_seconds"] + payload["compose_seconds"], threads=threads)
