"""One pair through a trained model, mapped back to the original physical spaces.

1. The pair goes through the model's input pipeline (:func:`medreg.inference.prepare.prepare_pair`):
   any orientation, spacing and size in; both images end on the fixed image's network
   grid, world coordinates preserved exactly.
2. ``phi = model(moving, fixed)`` maps normalized coordinates of that grid from fixed to
   moving; instance optimisation (an :class:`~medreg.inference.io_config.IOConfig`) may
   refine it (:mod:`medreg.inference.refine`).
3. ``phi`` becomes a :class:`medreg.geometry.WorldTransform` between the network grids,
   and ``u = phi(p) - p`` (LPS mm) is written for every voxel ``p`` of the **original**
   fixed grid: ``phi`` is evaluated at the voxels of the network grid (or of the
   preprocessed data's grid, after instance optimisation there) and interpolated
   trilinearly at the original voxels. Outside the preprocessed crop ``u`` takes its
   border value (smooth, not registered there); fixed landmarks are added to the crop.
4. ``warped`` is the **original** moving image sampled at ``p + u(p)`` with ITK's rule.

The result is a :class:`RegistrationResult`, a :class:`~medreg.baselines.base.BaselineResult`
whose ``u`` is the one written to ``field.nii.gz``/``transform.h5``: the landmarks it maps
(``landmarks.csv``) and the TRE that ``medreg evaluate`` reports are those of the written
transform, so ``medreg apply --points`` reproduces them. The model passed in is never changed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from medreg.baselines.base import BaselineResult
from medreg.errors import InputError
from medreg.geometry import Grid, WorldTransform, warp_image
from medreg.inference.global_stage import GlobalConfig, global_align, moved_header, ras_grid_after
from medreg.inference.io_config import NO_IO, IOConfig
from medreg.inference.prepare import prepare_pair
from medreg.inference.refine import fine_tune_network, refine_field
from medreg.io.landmarks import Landmarks, check_inside
from medreg.io.nifti import Volume, check_input_file, load_volume
from medreg.io.point_files import read_points
from medreg.memory import own_peak_rss_mb, reset_peak_rss
from medreg.transforms.input_pipeline import InputPipeline

Source = str | Path | Volume


def model_global_stage(config: Any) -> GlobalConfig:
    """The global stage a model was trained with (``global_stage.mode`` of its config; none for older models)."""
    section = getattr(config, "global_stage", None)
    if section is None:
        return GlobalConfig("none")
    return GlobalConfig(section.mode, similarity=section.similarity)


@dataclass
class RegistrationResult(BaselineResult):
    """A medreg registration: the common result (``u`` in LPS mm on the original fixed grid) plus images.

    Attributes (beyond :class:`BaselineResult`):
        warped: the first moving channel resampled onto the original fixed grid.
        warped_channels: every moving channel by name (``config.preprocess.modalities``).
        fixed_header: the fixed NIfTI header (outputs are written with it), or None.
        moving_affine: voxel -> RAS affine of the original moving image.
        landmarks: the fixed-space landmarks given, if any; ``mapped_landmarks`` their images
            in moving space through the written ``u``; ``landmark_format`` the input file format.
    """

    warped: Volume | None = None
    warped_channels: dict[str, Volume] = field(default_factory=dict)
    fixed_header: Any = None
    moving_affine: np.ndarray | None = None
    landmarks: Landmarks | None = None
    mapped_landmarks: Landmarks | None = None
    landmark_format: str | None = None
    global_matrix: np.ndarray | None = None  # the global stage's A (LPS, fixed -> moving); u includes it

    def deformable_displacement(self) -> np.ndarray:
        """The displacement after the global stage, ``A^-1(p + u(p)) - p`` (``u`` itself without one)."""
        if self.global_matrix is None:
            return self.displacement_lps
        a_inv = np.linalg.inv(self.global_matrix)
        return self.grid.affine_displacement(a_inv) + self.displacement_lps @ a_inv[:3, :3].T.astype(np.float32)


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` (CUDA when present), ``cpu``, ``cuda`` or a torch device."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(None, "--device cuda was asked for, but no CUDA device is available; use --device cpu or auto")
    if device != "cpu" and not device.startswith("cuda"):
        raise InputError(None, f"expected device auto, cpu or cuda, found {device!r}")
    return torch.device(device)


def _sources(value: Source | Sequence[Source], channels: Sequence[str], role: str) -> list[Source]:
    items = [value] if isinstance(value, (str, Path, Volume)) else list(value)
    if len(items) != len(channels):
        raise InputError(None, f"the model takes {len(channels)} channel(s) {list(channels)}; expected {len(channels)} "
                               f"{role} image(s) in that order, found {len(items)}")
    return items


def _load(source: Source) -> Volume:
    return source if isinstance(source, Volume) else load_volume(source, dtype=np.float32)


def _header(source: Source) -> Any:
    if isinstance(source, Volume) and source.path is None:
        return None
    import nibabel as nib

    path = source.path if isinstance(source, Volume) else Path(source)
    try:
        return nib.load(str(path)).header.copy()
    except Exception:
        return None


def _config_hash(config: Any) -> str | None:
    fn = getattr(config, "config_hash", None)
    return fn() if callable(fn) else None


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def register_pair(model: torch.nn.Module, config: Any, fixed_path: Source | Sequence[Source],
                  moving_path: Source | Sequence[Source], *, io: IOConfig = NO_IO, device: str | torch.device = "cpu",
                  landmarks: str | Path | None = None, pipeline: InputPipeline | None = None,
                  global_stage: GlobalConfig | None = None) -> RegistrationResult:
    """Register ``moving`` to ``fixed`` with ``model`` and map the result to the original grids.

    Args:
        model: a registration module, ``model(moving, fixed) -> phi`` (normalized coordinates).
        config: the model's config (``.preprocess``; ``.loss`` and ``.train.lr`` for instance optimisation).
        fixed_path, moving_path: one NIfTI path (or Volume) per channel, in
            ``config.preprocess.modalities`` order (a single path for one channel).
        io: instance optimisation (:mod:`medreg.inference.io_config`; default none).
        device: ``cpu``, ``cuda`` or ``auto``.
        landmarks: fixed-space landmark file (BraTS-Reg CSV, DIR-Lab txt, Learn2Reg csv).
        global_stage: a rigid or affine stage before the network (:mod:`medreg.inference.global_stage`;
            default None: the model's, :func:`model_global_stage`): the network then registers the
            pre-aligned pair, and ``u`` is the total map.
        pipeline: the model's input pipeline (the bundle's, :mod:`medreg.inference.bundle`; default
            ``InputPipeline.for_model(config)``: ``config.preprocess`` for both stages).
    """
    t_start = time.perf_counter()
    peak_reset = reset_peak_rss()
    io = io.for_model(config)  # a named preset: the model's anatomy's table
    global_stage = global_stage if global_stage is not None else model_global_stage(config)
    dev = resolve_device(device)
    channels = list(config.preprocess.modalities)
    fixed_src = _sources(fixed_path, channels, "fixed")
    moving_src = _sources(moving_path, channels, "moving")
    for s in [*fixed_src, *moving_src] + ([landmarks] if landmarks is not None else []):
        if not isinstance(s, Volume):
            check_input_file(s, "a landmark file" if s is landmarks else "a NIfTI image")
    timings: dict[str, float] = {}

    t = time.perf_counter()
    fixed_vols = [_load(s) for s in fixed_src]
    moving_vols = [_load(s) for s in moving_src]
    fixed0, moving0 = fixed_vols[0], moving_vols[0]
    lm = fmt = None
    if landmarks is not None:
        lm, fmt = read_points(landmarks, fixed0.affine)
        check_inside(lm, fixed0.shape, fixed0.affine)
    timings["load"] = time.perf_counter() - t

    glob = None
    original_moving = moving_vols
    if global_stage.enabled:
        t = time.perf_counter()
        glob = global_align(fixed0, moving0, global_stage)
        moving_vols = [Volume(v.array, moved_header(v.affine, glob.matrix), v.path) for v in moving_vols]
        timings["global"] = time.perf_counter() - t

    t = time.perf_counter()
    pipeline = pipeline if pipeline is not None else InputPipeline.for_model(config)
    pair = prepare_pair(fixed_vols, moving_vols, pipeline, fixed_points=None if lm is None else lm.points)
    timings["preprocess"] = time.perf_counter() - t
    fixed_t, moving_t = pair.fixed.to(dev), pair.moving.to(dev)

    net, io_losses, io_levels = model, [], []
    if io.enabled and io.mode == "network":
        t = time.perf_counter()
        lr = io.lr if io.lr is not None else float(config.train.lr)
        net, io_losses = fine_tune_network(model, config.loss, moving_t, fixed_t, io.steps, lr)
        timings["instance_optimization"] = time.perf_counter() - t

    t = time.perf_counter()
    with torch.no_grad():
        phi = net(moving_t, fixed_t)
    _sync(dev)
    timings["predict"] = time.perf_counter() - t

    if io.enabled and io.mode == "field":
        t = time.perf_counter()
        phi, io_losses = refine_field(phi, io, config.loss, pair, dev, levels=io_levels)
        _sync(dev)
        timings["instance_optimization"] = time.perf_counter() - t

    t = time.perf_counter()
    moving_side = pair.network_grid if glob is None else ras_grid_after(pair.network_grid, glob.matrix)
    world = WorldTransform(phi, pair.network_grid, moving_side, device=dev)
    fixed_grid, moving_grid = Grid.of(fixed0), Grid.of(moving0)
    on_data = io.enabled and io.mode == "field" and any(s.grid == "data" for s in io.stages)
    u = world.displacement_on(fixed_grid, via=pair.fixed_data_grid if on_data else None)
    moving_orig = np.stack([np.asarray(v.array, dtype=np.float32) for v in original_moving])
    warped = warp_image(moving_orig, moving_grid, fixed_grid, u, device=dev)
    _sync(dev)
    timings["map_to_original"] = time.perf_counter() - t

    result = RegistrationResult(
        displacement_lps=u, fixed_affine=fixed0.affine, seconds=0.0, threads=torch.get_num_threads(),
        peak_rss_mb=0.0, extra={},
        warped=Volume(warped[0], fixed0.affine.copy()),
        warped_channels={c: Volume(warped[i], fixed0.affine.copy()) for i, c in enumerate(channels)},
        fixed_header=_header(fixed_src[0]), moving_affine=moving0.affine.copy(),
        landmarks=lm, landmark_format=fmt, global_matrix=None if glob is None else glob.matrix,
    )
    if lm is not None:
        result.mapped_landmarks = Landmarks(list(lm.names), result.map_points(lm.points))
    result.seconds = time.perf_counter() - t_start
    result.peak_rss_mb = own_peak_rss_mb()
    result.extra = {
        "method": io.method_name(),
        "io": io.describe(),
        "io_steps": int(io.steps),
        "io_mode": io.mode if io.enabled else None,
        "io_preset": io.preset if io.enabled else None,
        "io_losses": io_losses,
        "io_levels": io_levels,
        "device": str(dev),
        "config_hash": _config_hash(config),
        "timings": {k: round(v, 4) for k, v in timings.items()},
        "seconds_includes": "reading the images, preprocessing, instance optimisation, the network, the map back "
                            "to the original grids and warping the moving image (not writing outputs)",
        "preprocessed_shape": list(pair.geometry.shape),
        "preprocessed_spacing": list(pair.geometry.spacing),
        "input_stages": pipeline.stages(),
        "global": {"mode": "none"} if glob is None else glob.describe(),
        "peak_rss_source": "VmHWM of this process since this registration started" if peak_reset
                           else "VmHWM of this process (lifetime peak, an upper bound)",
    }
    if dev.type == "cuda":
        result.extra["cuda_peak_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return result


__all__ = ["RegistrationResult", "register_pair", "resolve_device"]
