"""FireANTs baseline: affine then greedy diffeomorphic registration in PyTorch (Jena et al., 2024).

FireANTs is optional and not a medreg extra: the metadata of ``fireants==1.5.0`` pins
``simpleitk==2.2.1``, which would replace medreg's ``SimpleITK>=2.3``. Install it without
its dependencies (its registration modules need only torch, numpy, scipy, SimpleITK and
tqdm, which medreg already has)::

    pip install --no-deps fireants==1.5.0

Pipeline: FireANTs' quickstart (``docs/quickstart.md`` of the 1.5.0 release), see
:data:`FIREANTS_DEFAULTS`: ``AffineRegistration`` (scales 4, 2, 1; 200, 100, 50 Adam steps,
lr 3e-3; local CC with a 5-voxel window) then ``GreedyRegistration`` (compositive
warp; 200, 100, 25 steps, lr 0.5, gradient smoothing sigma 1; local CC, window 5)
started from the affine matrix. FireANTs never downsamples below 32 voxels per axis.

Direction and units: ``fireants.io.Image`` reads the files with SimpleITK, so its
physical space is ITK's LPS mm. The affine matrix maps fixed physical points to moving
physical points, and ``GreedyRegistration.get_warped_coordinates(fixed, moving)`` is,
for every fixed voxel (array order z, y, x), the moving point it maps to, in the moving
image's normalized ``[-1, 1]`` coordinates (x, y, z order, ``align_corners=True``) that
``grid_sample`` reads: ``warped = moving ∘ phi``. Mapping those through the moving
image's ``torch2phy`` matrix gives ``phi(p)`` in LPS mm; ``u = phi(p) - p`` with ``p``
the fixed voxel centres, transposed to (X, Y, Z, 3). The test checks this against
FireANTs' own ANTs-format export (``save_as_ants_transforms``), written to ``workdir``
when one is given.

Device and threads: CUDA when present (else CPU) unless ``device`` is given;
``torch.set_num_threads(threads)`` in a fresh worker process (see ``base``), which also
sets ``OMP_NUM_THREADS``. ``seconds`` is affine + greedy registration + computing the
dense field, not reading the images or starting the worker (``extra`` has each part,
and on CUDA the peak GPU memory).
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
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
from medreg.errors import ConfigError, MedregError

INSTALL_HINT = (
    "the 'fireants' baseline needs FireANTs, which is not installed; install it with "
    "'pip install fireants --no-deps' (its metadata pins an old SimpleITK that would "
    "replace medreg's; fireants==1.5.0 is the tested version and its registration code "
    "needs nothing beyond medreg's own dependencies)"
)

FIREANTS_DEFAULTS: dict[str, dict[str, Any]] = {
    "affine": {
        "scales": [4, 2, 1],
        "iterations": [200, 100, 50],
        "optimizer": "Adam",
        "optimizer_lr": 3e-3,
        "cc_kernel_size": 5,
    },
    "greedy": {
        "scales": [4, 2, 1],
        "iterations": [200, 100, 25],
        "deformation_type": "compositive",
        "optimizer": "Adam",
        "optimizer_lr": 0.5,
        "smooth_grad_sigma": 1.0,
        "cc_kernel_size": 5,
    },
}
WARP_FILE = "fireants_fwd_warp.nii.gz"
AFFINE_FILE = "fireants_affine_lps.txt"


def require_fireants(*, load: bool = False) -> Any:
    """Locate FireANTs (``load``: import its registration modules) or raise :class:`MedregError`.

    The caller's side only locates the package; importing the registration modules
    (which import torch and print FireANTs' banner) is left to the worker process.
    """
    try:
        if importlib.util.find_spec("fireants") is None:
            raise ImportError("no module named 'fireants'")
        if load:
            for name in ("fireants.io.image", "fireants.registration.affine", "fireants.registration.greedy"):
                importlib.import_module(name)
    except (ImportError, ValueError) as exc:
        raise MedregError(f"{INSTALL_HINT} ({type(exc).__name__}: {exc})") from exc
    return importlib.import_module("fireants")


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def displacement_lps(reg: Any, fixed: Any, moving: Any) -> np.ndarray:
    """``u = phi(p) - p`` in LPS mm on the fixed grid, (X, Y, Z, 3), from a fitted FireANTs registration.

    ``fixed`` and ``moving`` are the ``BatchedImages`` the registration was fitted on (batch of one).
    """
    import torch

    with torch.no_grad():
        coords = reg.get_warped_coordinates(fixed, moving)[0]  # (Z, Y, X, 3): normalized moving (x, y, z)
        m = moving.get_torch2phy()[0].to(torch.float64)
        f = fixed.get_torch2phy()[0].to(torch.float64)
        size_zyx = coords.shape[:3]
        # normalized fixed coordinates of the voxel centres (align_corners=True), same layout as coords
        axes = [torch.linspace(-1.0, 1.0, n, dtype=torch.float64, device=coords.device) if n > 1
                else torch.zeros(1, dtype=torch.float64, device=coords.device) for n in size_zyx]
        u = torch.empty(coords.shape, dtype=torch.float32)
        for z0 in range(0, size_zyx[0], 16):  # slabs: a double-precision copy of the whole grid is large
            zz, yy, xx = torch.meshgrid(axes[0][z0:z0 + 16], axes[1], axes[2], indexing="ij")
            ident = torch.stack([xx, yy, zz], dim=-1)
            phi = coords[z0:z0 + 16].to(torch.float64) @ m[:3, :3].T + m[:3, 3]
            u[z0:z0 + 16] = (phi - (ident @ f[:3, :3].T + f[:3, 3])).to(torch.float32).cpu()
        u = u.permute(2, 1, 0, 3).numpy()
    return np.ascontiguousarray(u)


def fireants_worker(
    fixed_path: str,
    moving_path: str,
    workdir: str,
    threads: int,
    seed: int,
    device: str | None,
    affine_options: dict[str, Any],
    greedy_options: dict[str, Any],
    save_transforms: bool,
) -> dict[str, Any]:
    """Affine then greedy FireANTs registration; saves ``u`` to ``workdir`` (runs in the worker)."""
    import torch

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    torch.manual_seed(int(seed))
    try:
        require_fireants(load=True)
        from fireants.io.image import BatchedImages, Image
        from fireants.registration.affine import AffineRegistration
        from fireants.registration.greedy import GreedyRegistration

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats(device)
        rss_before = own_peak_rss_mb()

        t_load = time.perf_counter()
        fixed_image = Image.load_file(fixed_path, device=device)
        moving_image = Image.load_file(moving_path, device=device)
        fixed = BatchedImages([fixed_image])
        moving = BatchedImages([moving_image])
        _sync(device)
        t0 = time.perf_counter()
        aff_opts = dict(affine_options)
        affine = AffineRegistration(
            aff_opts.pop("scales"), aff_opts.pop("iterations"), fixed, moving, progress_bar=False, **aff_opts
        )
        affine.optimize()
        affine_matrix = affine.get_affine_matrix().detach()
        _sync(device)
        t1 = time.perf_counter()
        greedy_opts = dict(greedy_options)
        greedy = GreedyRegistration(
            scales=greedy_opts.pop("scales"),
            iterations=greedy_opts.pop("iterations"),
            fixed_images=fixed,
            moving_images=moving,
            init_affine=affine_matrix,
            progress_bar=False,
            **greedy_opts,
        )
        greedy.optimize()
        _sync(device)
        t2 = time.perf_counter()
        u = displacement_lps(greedy, fixed, moving)
        _sync(device)
        t3 = time.perf_counter()

        expected = tuple(int(s) for s in fixed_image.itk_image.GetSize())
        if u.shape != expected + (3,):
            raise RuntimeError(f"expected a displacement of shape {expected + (3,)}, found {u.shape}")
        work = Path(workdir)
        np.save(work / DISPLACEMENT_FILE, u)
        files: dict[str, str] = {}
        if save_transforms:  # FireANTs' own exports, outside the timed part
            greedy.save_as_ants_transforms(str(work / WARP_FILE))
            np.savetxt(work / AFFINE_FILE, affine_matrix[0].cpu().numpy().astype(np.float64))
            files = {"warp_file": str(work / WARP_FILE), "affine_file": str(work / AFFINE_FILE)}

        itk = fixed_image.itk_image
        payload: dict[str, Any] = {
            "load_seconds": t0 - t_load,
            "affine_seconds": t1 - t0,
            "greedy_seconds": t2 - t1,
            "compose_seconds": t3 - t2,
            "fixed_affine_itk": itk_ras_affine(itk.GetOrigin(), itk.GetSpacing(), itk.GetDirection()).tolist(),
            "affine_lps": affine_matrix[0].cpu().numpy().astype(np.float64).tolist(),
            "device": str(device),
            "torch_threads": int(torch.get_num_threads()),
            "torch_version": torch.__version__,
            "fireants_version": _fireants_version(),
            "rss_before_register_mb": rss_before,
            **files,
        }
        if device.startswith("cuda"):
            payload["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        return payload
    finally:
        torch.set_num_threads(previous_threads)


def _fireants_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fireants")
    except PackageNotFoundError:
        return "unknown"


class FireantsBaseline:
    """FireANTs affine + greedy diffeomorphic registration with :data:`FIREANTS_DEFAULTS`.

    Args:
        affine: options replacing those of the affine stage (keyword arguments of
            ``AffineRegistration``, plus ``scales`` and ``iterations``), e.g. fewer
            iterations for quick tests; the benchmark uses the defaults.
        greedy: the same for ``GreedyRegistration``.
        device: torch device (``cpu``, ``cuda``, ``cuda:1``); None: CUDA when present.
        isolate: run in a fresh worker process (default).
    """

    name = "fireants"

    def __init__(
        self,
        affine: dict[str, Any] | None = None,
        greedy: dict[str, Any] | None = None,
        *,
        device: str | None = None,
        isolate: bool = True,
    ):
        self.affine_options = {**copy.deepcopy(FIREANTS_DEFAULTS["affine"]), **(affine or {})}
        self.greedy_options = {**copy.deepcopy(FIREANTS_DEFAULTS["greedy"]), **(greedy or {})}
        for stage, opts in (("affine", self.affine_options), ("greedy", self.greedy_options)):
            if len(opts["scales"]) != len(opts["iterations"]):
                raise ConfigError(
                    f"fireants {stage}: expected as many iterations as scales, "
                    f"found {len(opts['iterations'])} iterations for {len(opts['scales'])} scales"
                )
        self.device = device
        self.isolate = isolate

    def __repr__(self) -> str:
        return (
            f"FireantsBaseline(affine={self.affine_options!r}, greedy={self.greedy_options!r}, "
            f"device={self.device or 'auto'!r})"
        )

    def register(
        self,
        fixed_path: str | Path,
        moving_path: str | Path,
        *,
        threads: int,
        seed: int = 0,
        workdir: Path | None = None,
    ) -> BaselineResult:
        """Register ``moving`` to ``fixed``; FireANTs' warp and affine files stay in ``workdir`` if given."""
        require_fireants()
        run = run_tool(
            "medreg.baselines.fireants:fireants_worker",
            {"threads": int(threads), "device": self.device, "affine_options": self.affine_options,
             "greedy_options": self.greedy_options, "save_transforms": workdir is not None},
            fixed_path, moving_path, threads=threads, seed=seed, workdir=workdir, isolate=self.isolate,
            prefix="medreg_fireants_", patterns=("fireants_*",),
            what=f"FireANTs registration of {moving_path} to {fixed_path}")
        payload = run.payload
        extra = {
            "method": self.name,
            "affine_options": dict(self.affine_options),
            "greedy_options": dict(self.greedy_options),
            "seed": int(seed),
            **payload,
        }
        seconds = payload["affine_seconds"] + payload["greedy_seconds"] + payload["compose_seconds"]
        return run.result(extra, seconds=seconds, threads=threads)
