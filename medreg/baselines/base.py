"""The one interface every baseline follows, and the isolated process they run in.

Convention (README Conventions; docs/reference.md §4-§5): a baseline registers ``moving`` to
``fixed`` and returns a displacement ``u`` on the *fixed* voxel grid, in LPS mm,
such that ``phi(x) = x + u(x)`` maps fixed-space points to moving-space points
(ITK's and ANTs' direction of a forward transform; ``warped = moving ∘ phi``).
Landmarks are scored by evaluating ``phi`` at the fixed landmarks
(:meth:`BaselineResult.map_points`), never by sampling ``u`` at moving ones.

Classical tools run in a fresh Python interpreter (a worker process) so that

- ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` is set before ITK starts (ITK may read
  it only once per process, so changing it later in a long-lived process is unreliable);
- the peak resident memory is that of the registration alone (the worker's own
  high-water mark, ``VmHWM``, which includes Python and the library import; not
  ``ru_maxrss``, which on Linux carries over the caller's resident size through fork and exec);
- a crash in C++ (segfault) becomes a :class:`MedregError` instead of killing the caller.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from medreg.errors import InputError, MedregError
from medreg.geometry import RAS_TO_LPS, Grid, WorldTransform
from medreg.io.nifti import volume_geometry
from medreg.memory import own_peak_rss_mb, ru_maxrss_mb

DISPLACEMENT_FILE = "displacement_lps.npy"


@dataclass
class BaselineResult:
    """A method's transform on the fixed grid and how it was obtained.

    Attributes:
        displacement_lps: (X, Y, Z, 3) float32 displacement in LPS mm on the fixed grid;
            ``phi(x) = x + u(x)`` maps fixed points to moving points.
        fixed_affine: 4x4 voxel -> RAS mm affine of the fixed grid (nibabel convention).
        seconds: wall time of the method (see each baseline for what is included).
        threads: CPU threads the method was allowed.
        peak_rss_mb: peak resident memory in MB (how it was measured: ``extra['peak_rss_source']``).
        extra: method details (preset, command, transform files, timings by stage, ...).
    """

    displacement_lps: np.ndarray
    fixed_affine: np.ndarray
    seconds: float
    threads: int
    peak_rss_mb: float
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        u = np.asarray(self.displacement_lps)
        if u.ndim != 4 or u.shape[-1] != 3:
            raise ValueError(f"expected a displacement of shape (X, Y, Z, 3), found {u.shape}")
        self.displacement_lps = u.astype(np.float32, copy=False)
        self.fixed_affine = np.asarray(self.fixed_affine, dtype=np.float64)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of the fixed grid."""
        return tuple(int(s) for s in self.displacement_lps.shape[:3])  # type: ignore[return-value]

    @property
    def grid(self) -> Grid:
        """The fixed grid the displacement lies on."""
        return Grid(self.fixed_affine, self.shape)

    def world_transform(self) -> WorldTransform:
        """``phi`` as a world transform (``u`` trilinear, its border value outside the grid, as ITK reads the file)."""
        return WorldTransform.from_displacement(self.displacement_lps, self.grid)

    def sample_displacement(self, points_lps: np.ndarray) -> np.ndarray:
        """``u`` at continuous fixed-space positions (trilinear; constant beyond the border)."""
        return self.world_transform().displacement_at(points_lps)

    def map_points(self, points_lps: np.ndarray) -> np.ndarray:
        """``phi(p) = p + u(p)`` for fixed-space points (N, 3) LPS mm -> moving-space points."""
        return self.world_transform().map_points(points_lps)

    def jacobian_determinant(self) -> np.ndarray:
        """Determinant of ``dphi/dx`` in world mm at every fixed voxel."""
        from medreg.metrics.jacobian import jacobian_determinant_mm

        return jacobian_determinant_mm(self.displacement_lps, self.fixed_affine)


@runtime_checkable
class Baseline(Protocol):
    """A registration method evaluated beside medreg."""

    name: str

    def register(
        self,
        fixed_path: str | Path,
        moving_path: str | Path,
        *,
        threads: int,
        seed: int = 0,
        workdir: Path | None = None,
    ) -> BaselineResult:
        """Register ``moving`` to ``fixed``; return ``phi`` (fixed -> moving) on the fixed grid."""
        ...


def itk_ras_affine(origin: Any, spacing: Any, direction: Any) -> np.ndarray:
    """nibabel-style voxel -> RAS affine of an ITK/ANTs image geometry (LPS origin and direction)."""
    d = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = d @ np.diag(np.asarray(spacing, dtype=np.float64))
    lps[:3, 3] = np.asarray(origin, dtype=np.float64)
    return RAS_TO_LPS @ lps


def compare_affines(nibabel_affine: np.ndarray, itk_affine: np.ndarray, tol_mm: float = 1e-3) -> str | None:
    """A warning when nibabel and ITK read different geometries from one header (else None).

    ITK and nibabel choose between qform and sform differently; when they disagree the
    field is kept on ITK's grid (the tool computed it there) and the warning is recorded.
    """
    diff = float(np.abs(np.asarray(nibabel_affine) - np.asarray(itk_affine)).max())
    if diff > tol_mm:
        return f"ITK and nibabel read different affines from the fixed header (max difference {diff:.4g}); ITK's is used"
    return None


def check_fresh_workdir(workdir: Path, patterns: tuple[str, ...]) -> None:
    """Refuse a work folder that already holds a registration's outputs.

    Tools pick up their outputs by file name (antspyx globs ``ants_*``), so stale files
    from an earlier run could be taken for this run's; outputs are never overwritten.
    """
    found = sorted(str(p.name) for pattern in patterns for p in Path(workdir).glob(pattern))
    if found:
        raise InputError(
            workdir,
            f"expected a work folder without earlier registration outputs, found {', '.join(found[:5])}"
            + (" ..." if len(found) > 5 else ""),
        )


# --------------------------------------------------------------------------- isolation

_CHILD_CODE = "import sys; from medreg.baselines.base import _child_main; _child_main(sys.argv[1])"


def _child_main(request_path: str) -> None:
    """Worker entry point (a fresh interpreter): run ``module:function(**kwargs)`` from a JSON request.

    The environment (threads, seed) was set by the parent before this interpreter started.
    The answer is written as JSON next to the request, since libraries print to stdout.
    """
    request = json.loads(Path(request_path).read_text())
    answer_path = Path(request["answer"])
    try:
        module_name, func_name = request["target"].split(":")
        func = getattr(importlib.import_module(module_name), func_name)
        payload = func(**request["kwargs"])
        payload["peak_rss_mb"] = own_peak_rss_mb()
        answer = {"status": "ok", "payload": payload}
    except BaseException as exc:  # report everything, including SystemExit from a library
        answer = {"status": "error", "message": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    answer_path.write_text(json.dumps(answer))


def thread_env(threads: int, seed: int) -> dict[str, str]:
    """Environment that fixes the thread count and seed of ITK/ANTs (and OpenMP/BLAS)."""
    n = str(int(threads))
    return {
        "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": n,
        "OMP_NUM_THREADS": n,
        "OPENBLAS_NUM_THREADS": n,
        "MKL_NUM_THREADS": n,
        "ANTS_RANDOM_SEED": str(int(seed)),
    }


def run_worker(
    target: str,
    kwargs: dict[str, Any],
    *,
    threads: int,
    seed: int,
    workdir: Path,
    isolate: bool = True,
    what: str = "registration",
) -> dict[str, Any]:
    """Run ``module:function(**kwargs)`` (JSON in, small JSON-able dict out) with threads and seed fixed.

    With ``isolate`` (the default) it runs in a fresh Python interpreter (``sys.executable``;
    no ``multiprocessing``, so callers need no ``__main__`` guard) and the result gets
    ``peak_rss_mb`` of that process. Otherwise it runs here after setting the environment
    (ITK may already have fixed its thread count, and ``peak_rss_mb`` is this whole
    process's lifetime peak). ``payload['peak_rss_source']`` says which.
    Failures and crashes raise :class:`MedregError` with the tool's message.
    """
    if threads < 1:
        raise ValueError(f"expected threads >= 1, found {threads}")
    env = thread_env(threads, seed)
    start = time.perf_counter()
    if not isolate:
        os.environ.update(env)
        module_name, func_name = target.split(":")
        try:
            payload = getattr(importlib.import_module(module_name), func_name)(**kwargs)
        except MedregError:
            raise
        except Exception as exc:
            raise MedregError(f"{what} failed: {type(exc).__name__}: {exc}") from exc
        payload["peak_rss_mb"] = ru_maxrss_mb()
        payload["peak_rss_source"] = "ru_maxrss of the calling process (lifetime peak, an upper bound)"
        payload["process_seconds"] = time.perf_counter() - start
        return payload

    request_path = Path(workdir) / "worker_request.json"
    answer_path = Path(workdir) / "worker_answer.json"
    answer_path.unlink(missing_ok=True)
    request_path.write_text(json.dumps({"target": target, "kwargs": kwargs, "answer": str(answer_path)}))
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD_CODE, str(request_path)],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    if not answer_path.exists():
        tail = proc.stdout[-2000:] if proc.stdout else ""
        raise MedregError(f"{what} crashed: worker process exited with code {proc.returncode} without a result\n{tail}")
    answer = json.loads(answer_path.read_text())
    if answer["status"] != "ok":
        raise MedregError(f"{what} failed: {answer['message']}\n{answer['traceback']}")
    payload = answer["payload"]
    payload["peak_rss_source"] = "VmHWM of the isolated worker process (includes Python and library import)"
    payload["process_seconds"] = time.perf_counter() - start
    return payload


@dataclass
class ToolRun:
    """What :func:`run_tool` returns: ``u`` (X, Y, Z, 3) LPS mm, the worker's payload and the fixed grid as ITK read it."""

    displacement_lps: np.ndarray
    payload: dict[str, Any]
    fixed_affine: np.ndarray
    header_warning: str | None

    def result(self, extra: dict[str, Any], *, seconds: float, threads: int) -> BaselineResult:
        """The common result, with the header warning (if any) added to ``extra``."""
        if self.header_warning:
            extra["header_warning"] = self.header_warning
        return BaselineResult(displacement_lps=self.displacement_lps, fixed_affine=self.fixed_affine,
                              seconds=float(seconds), threads=int(threads),
                              peak_rss_mb=float(self.payload["peak_rss_mb"]), extra=extra)


def run_tool(worker: str, arguments: dict[str, Any], fixed_path: str | Path, moving_path: str | Path, *,
             threads: int, seed: int, workdir: Path | None, isolate: bool, what: str, prefix: str,
             patterns: tuple[str, ...]) -> ToolRun:
    """The part every tool baseline shares: check both headers, run ``worker`` on a fresh work folder, read ``u``.

    ``worker`` gets ``fixed_path``, ``moving_path``, ``workdir`` and ``seed`` beside
    ``arguments``, saves ``u`` as :data:`DISPLACEMENT_FILE` and returns a payload with
    ``fixed_affine_itk`` (taken out here). Without ``workdir`` a temporary folder is
    used and removed; with one, files matching ``patterns`` must not be there yet.
    """
    _, nib_affine = volume_geometry(fixed_path)
    volume_geometry(moving_path)
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        work = Path(workdir) if workdir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        check_fresh_workdir(work, (DISPLACEMENT_FILE, *patterns))
        payload = run_worker(
            worker,
            {"fixed_path": str(Path(fixed_path).resolve()), "moving_path": str(Path(moving_path).resolve()),
             "workdir": str(work.resolve()), "seed": int(seed), **arguments},
            threads=threads, seed=seed, workdir=work, isolate=isolate, what=what,
        )
        u = np.load(work / DISPLACEMENT_FILE)
    itk_affine = np.asarray(payload.pop("fixed_affine_itk"))
    return ToolRun(u, payload, itk_affine, compare_affines(nib_affine, itk_affine))
