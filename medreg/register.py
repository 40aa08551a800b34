"""``medreg register``: one pair through a trained model, mapped back to the original physical spaces.

Geometry (the whole point of this module)
-----------------------------------------
1. The pair goes through the checkpoint's preprocessing (``config.preprocess``):
   any orientation, spacing and size in; the moving image is resampled onto the
   fixed image's *preprocessed* grid (``pair_grid: fixed``). World coordinates
   are preserved exactly (:class:`~medreg.transforms.geometry.ImageGeometry`).
2. ``phi = model(moving, fixed)`` maps normalized coordinates of that grid
   (``align_corners=False``) from fixed to moving.
3. For every voxel of the **original** fixed grid, with world point ``p`` (LPS mm):
   ``p`` -> preprocessed voxel -> normalized ``x`` -> ``phi(x)``; the
   displacement is ``u(p) = L (n / 2) (phi(x) - x)`` with ``L`` the preprocessed
   grid's voxel -> LPS matrix, i.e. exactly ``q - p`` where ``q`` is ``phi(x)``
   taken back to LPS mm. For speed ``phi(x) - x`` is sampled once on the
   preprocessed grid and interpolated trilinearly at the original voxels
   (:func:`map_to_original`); landmarks use ``phi`` itself. Voxels outside the
   preprocessed crop take the displacement of the nearest border voxel of that
   grid (smooth, but not registered there). Fixed landmarks given to
   :func:`register_pair` are added to the foreground crop, so they are always inside.
4. ``warped`` is the **original** moving image (not the normalized network input)
   sampled at ``q = p + u(p)`` with its own affine (ITK semantics: linear, border
   value within half a voxel outside, 0 beyond) and written with the fixed header.

The result is a :class:`RegistrationResult`, a
:class:`~medreg.baselines.base.BaselineResult` (``u`` in LPS mm on the fixed grid),
so evaluation treats medreg like any baseline. Its ``map_points`` evaluates
``phi`` exactly at the points (no resampling of ``u``).

Instance optimisation (``io_steps > 0``) refines the result on this pair with the
training loss (``config.loss``), in one of two modes (``io_mode``):

- ``field`` (default): the network's displacement is refined directly
  (:func:`medreg.registration.field_io.optimize_field`): two thirds of the steps at
  half the network resolution, the rest at the network resolution, each step one
  warp and one loss (about 0.05 / 0.15 s on 2 CPU cores for a 2 mm brain). With
  ``io_upsample=K`` the last third of the steps run on a ``K`` times finer grid; with
  ``io_upsample="data"`` the last sixth runs on the preprocessed data's own grid.
- ``network``: a *deep copy* of the model is fine-tuned for ``io_steps`` Adam steps
  (forward and backward through every UNet: about 2.5 s a step on the same CPU).

The model passed in is never changed.

Outputs (:func:`write_outputs`), written into a staging folder and moved into
``DIR`` file by file, ``run.json`` last (a folder with ``run.json`` is complete):
``warped.nii.gz`` (first channel; ``warped_<channel>.nii.gz`` for the others),
``field.nii.gz`` and ``transform.h5`` (see :mod:`medreg.io.itk_transform`),
``jacobian_det.nii.gz``, ``landmarks.csv``/``.txt`` (same format as the input)
and ``run.json``.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from medreg.apply import apply_matrix, lps_matrix, points_output_name, read_points, slabs, write_points
from medreg.baselines.base import BaselineResult
from medreg.errors import ConfigError, InputError
from medreg.io.geometry import index_to_normalized
from medreg.io.landmarks import Landmarks, check_inside
from medreg.io.nifti import Volume, check_input_file, load_volume
from medreg.memory import own_peak_rss_mb
from medreg.spatial.grid import voxel_to_normalized
from medreg.spatial.transforms import Transform

Source = str | Path | Volume
KNOWN_OUTPUTS = ("warped.nii.gz", "field.nii.gz", "transform.h5", "jacobian_det.nii.gz", "landmarks.csv",
                 "landmarks.txt", "run.json")


@dataclass
class RegistrationResult(BaselineResult):
    """A medreg registration: the common result (``u`` in LPS mm on the original fixed grid) plus images.

    Attributes (beyond :class:`BaselineResult`):
        warped: the first moving channel resampled onto the original fixed grid.
        warped_channels: every moving channel by name (``config.preprocess.modalities``).
        fixed_header: the fixed NIfTI header (outputs are written with it), or None.
        moving_affine: voxel -> RAS affine of the original moving image.
        landmarks: the fixed-space landmarks given, if any; ``mapped_landmarks`` their images
            in moving space (``phi`` evaluated exactly); ``landmark_format`` the input file format.
    """

    warped: Volume | None = None
    warped_channels: dict[str, Volume] = field(default_factory=dict)
    fixed_header: Any = None
    moving_affine: np.ndarray | None = None
    landmarks: Landmarks | None = None
    mapped_landmarks: Landmarks | None = None
    landmark_format: str | None = None
    point_map: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False, compare=False)

    def map_points(self, points_lps: np.ndarray) -> np.ndarray:
        """``phi(p)`` for fixed-space points (N, 3) LPS mm: exact when the model's ``phi`` is kept, else via ``u``."""
        if self.point_map is None:
            return super().map_points(points_lps)
        pts = np.asarray(points_lps, dtype=np.float64).reshape(-1, 3)
        return self.point_map(pts)


# --------------------------------------------------------------------------- small pieces
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
    if isinstance(source, Volume):
        return source
    return load_volume(source, dtype=np.float32)


def _header(source: Source) -> Any:
    if isinstance(source, Volume) and source.path is None:
        return None
    import nibabel as nib

    path = source.path if isinstance(source, Volume) else Path(source)
    try:
        return nib.load(str(path)).header.copy()
    except Exception:
        return None


def _check_config(config: Any) -> None:
    if getattr(config.preprocess, "pair_grid", "fixed") != "fixed":
        raise ConfigError(f"preprocess.pair_grid={config.preprocess.pair_grid!r}: medreg register needs the moving "
                          f"image on the fixed grid (pair_grid: fixed)")


def _config_hash(config: Any) -> str | None:
    fn = getattr(config, "config_hash", None)
    return fn() if callable(fn) else None


# --------------------------------------------------------------------------- instance optimisation
def instance_optimize(model: torch.nn.Module, config: Any, moving: torch.Tensor, fixed: torch.Tensor, steps: int,
                      lr: float | None = None) -> tuple[torch.nn.Module, list[float]]:
    """Fine-tune a deep copy of ``model`` on one pair with the training loss; return (copy, loss per step).

    ``model`` itself is never modified. The copy stays in ``model``'s mode (eval:
    no dropout or batch statistics). ``lr`` defaults to ``config.train.lr``.
    """
    from medreg.train import make_objective

    net = copy.deepcopy(model)
    for p in net.parameters():
        p.requires_grad_(True)
    objective = make_objective(net, config)
    rate = float(lr if lr is not None else config.train.lr)
    opt = torch.optim.Adam([p for p in net.parameters()], lr=rate)
    losses: list[float] = []
    for _ in range(int(steps)):
        opt.zero_grad(set_to_none=True)
        out = objective(moving, fixed)
        out.total.backward()
        opt.step()
        losses.append(float(out.total.detach()))
    net.eval()
    return net, losses


IO_MODES = ("field", "network")


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


def refine_field(phi: Transform, config: Any, moving: torch.Tensor, fixed: torch.Tensor, steps: int,
                 lr: float | None = None,
                 finer: tuple[torch.Tensor, torch.Tensor] | None = None,
                 on_data: Any = None) -> tuple[Transform, list[float]]:
    """``io_mode="field"``: two thirds of ``steps`` at half the network resolution, then the rest at full.

    With ``finer`` (``(moving, fixed)`` on a grid ``K`` times finer of the same box, see
    :meth:`medreg.training.data.PreparedPair.finer`): a third at half the network
    resolution, a third at the network resolution, the rest on the finer grid, where the
    residual keeps the network stage's control points (coarsened ``2 K`` times), the LNCC
    window is 3 voxels, and the regularizer, weighted ``lam / 5``, is taken on the control
    points (the total field sampled there) rather than on every fine voxel. Chosen on
    demo-lung's 2 held-out training pairs, K = 2, 45 steps: median / mean TRE 0.62 / 0.74 mm
    and 1 s a fine step, against 0.67 / 0.94 mm and 1.6 s a step with the network stage's
    window, ``lam`` and a regularizer on every fine voxel.

    With ``on_data`` (the :class:`~medreg.training.data.PreparedPair`): a sixth of the steps
    on the preprocessed data's own grid, last (:func:`~medreg.registration.field_io.optimize_on_data`:
    control points every 2 network voxels, window 3, ``0.4 lam``, 0.45 voxels a step), after
    a quarter at the network resolution and the rest at half of it. Chosen on the same 2
    held-out lung pairs: 36 steps (21 + 9 + 6) gave median / mean TRE 0.534 / 0.73 mm in
    5.3 s a pair, against 0.61 / 0.74 mm in 7.5 s for 45 steps with K = 2 (one run); in
    trials, 20 + 5 + 8 steps gave 0.547 / 0.71 mm and 20 + 10 + 4 steps 0.62 / 0.84 mm. A
    data step costs about a third of a second on 2 CPU cores for the 256 x 208 x 128 lung CT.
    """
    from medreg.registration.field_io import optimize_field, optimize_on_data

    loss = config.loss
    common = dict(lam=float(loss.lam), similarity=loss.similarity, regularizer=loss.regularizer,
                  similarity_kwargs={"window": int(loss.window)} if loss.similarity == "lncc" else {}, coarsen=2)
    steps = int(steps)

    def fine_options(lam: float, **options: Any) -> dict[str, Any]:  # the stage beyond the network grid
        out = {**common, "lam": lam, **options}
        if loss.similarity == "lncc":
            out["similarity_kwargs"] = {"window": min(3, int(loss.window))}
        return out

    n_data = 0
    if on_data is not None:
        n_data, n_net = steps // 6, steps // 4
        stages = [(steps - n_data - n_net, 2, 0.3, moving, fixed, common), (n_net, 1, 0.2, moving, fixed, common)]
    elif finer is None:
        coarse = (2 * steps) // 3
        stages = [(coarse, 2, 0.3, moving, fixed, common), (steps - coarse, 1, 0.2, moving, fixed, common)]
    else:
        third = steps // 3
        k = max(1, int(finer[1].shape[2]) // int(fixed.shape[2]))
        fine = fine_options(float(loss.lam) / 5, coarsen=2 * k, reg_coarsen=2 * k)
        stages = [(third, 2, 0.3, moving, fixed, common), (third, 1, 0.2, moving, fixed, common),
                  (steps - 2 * third, 1, 0.3, finer[0], finer[1], fine)]
    losses: list[float] = []
    for n, down, rate, m, f, options in stages:
        if n > 0:
            phi, part = optimize_field(phi, m, f, steps=n, downsample=down,
                                       lr=float(lr) if lr is not None else rate, **options)
            losses += part
    if n_data > 0:
        moving_to_net, fixed_to_net = on_data.data_to_network()
        phi, part = optimize_on_data(phi, on_data.moving_data.to(fixed.device), on_data.fixed_data.to(fixed.device),
                                     moving_to_net, fixed_to_net, tuple(fixed.shape[2:]), steps=n_data,
                                     lr=float(lr) if lr is not None else 0.45, **fine_options(0.4 * float(loss.lam)))
        losses += part
    return phi, losses


# --------------------------------------------------------------------------- the map back to world space
class PhiInWorld:
    """``phi`` (normalized coords of the preprocessed grid) as a map of LPS mm points."""

    def __init__(self, phi: Transform, pp_affine: np.ndarray, pp_shape: tuple[int, ...], device: torch.device):
        self.phi, self.shape, self.device = phi, tuple(int(s) for s in pp_shape), device
        self.to_pp = np.linalg.inv(lps_matrix(pp_affine))
        # normalized displacement -> LPS mm: L @ diag(n / 2)
        self.scale = torch.as_tensor(lps_matrix(pp_affine)[:3, :3] @ np.diag(np.asarray(self.shape) / 2.0),
                                     dtype=torch.float64, device=device)

    @torch.no_grad()
    def displacement(self, points_lps: torch.Tensor) -> torch.Tensor:
        """``u = phi(p) - p`` in LPS mm for points ``(3, N)`` float64."""
        idx = apply_matrix(self.to_pp, points_lps)
        x = voxel_to_normalized(idx[None], self.shape).to(torch.float32)
        d = (self.phi(x) - x)[0].to(torch.float64)
        return self.scale @ d

    def __call__(self, points_lps: np.ndarray) -> np.ndarray:
        pts = torch.as_tensor(np.asarray(points_lps, dtype=np.float64).reshape(-1, 3).T, device=self.device)
        return (pts + self.displacement(pts)).T.cpu().numpy()


_REVERSE = np.eye(4)[[2, 1, 0, 3]]  # array order <-> grid_sample's (x, y, z) order


def _index_grid(theta: np.ndarray, shape: Sequence[int], offset: int, device: torch.device) -> torch.Tensor:
    """``theta[:3, :3] @ (i + offset, j, k) + theta[:3, 3]`` for every index of a ``shape`` slab: ``(1, *shape, 3)``.

    ``theta`` (4x4) maps array-order voxel indices to any 3-vector (here grid_sample's
    (x, y, z) normalized coordinates); built by broadcasting three outer products,
    which is exact and cheaper than ``affine_grid``'s batched matrix product.
    """
    t = torch.as_tensor(theta[:3], dtype=torch.float32, device=device)
    axes = [torch.arange(n, dtype=torch.float32, device=device) + (offset if a == 0 else 0) for a, n in enumerate(shape)]
    grid = t[:, 3].view(1, 1, 1, 3).expand(*shape, 3).clone()
    grid += axes[0].view(-1, 1, 1, 1) * t[:, 0]
    grid += axes[1].view(1, -1, 1, 1) * t[:, 1]
    grid += axes[2].view(1, 1, -1, 1) * t[:, 2]
    return grid[None]


def _axis_aligned(m: np.ndarray, tol: float = 1e-6) -> list[int] | None:
    """For a 4x4 index -> index map, ``src[r]`` = the output axis feeding axis ``r``, if the map is axis-aligned."""
    a = np.abs(np.asarray(m, dtype=np.float64)[:3, :3])
    big = a > tol * max(1.0, float(a.max()))
    if not (big.sum(axis=0) == 1).all() or not (big.sum(axis=1) == 1).all():
        return None
    return [int(np.argmax(big[r])) for r in range(3)]


def _lerp_axis(x: torch.Tensor, dim: int, coords: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of ``x`` along ``dim`` at index coordinates ``coords`` (clamped: border values).

    As a product with the (out x in) interpolation matrix, two non-zeros a row: BLAS
    does this far faster on a CPU than gathering along an inner axis.
    """
    n = x.shape[dim]
    c = coords.to(torch.float64).clamp(0, n - 1)
    weights = torch.zeros((c.numel(), n), dtype=torch.float64, device=x.device)
    rows = torch.arange(c.numel(), device=x.device)
    if n == 1:
        weights[:, 0] = 1.0
    else:
        i0 = c.floor().long().clamp(max=n - 2)
        w = c - i0.to(c.dtype)
        weights[rows, i0] = 1.0 - w
        weights[rows, i0 + 1] += w
    out = torch.tensordot(x, weights.to(x.dtype), dims=([dim], [1]))  # interpolated axis moves last
    return out.movedim(-1, dim)


def _resample_separable(dense: torch.Tensor, index_map: np.ndarray, out_shape: Sequence[int]) -> torch.Tensor | None:
    """``dense (1, C, *P)`` sampled trilinearly (border) at ``index_map @ i`` for every index ``i`` of ``out_shape``.

    Only when ``index_map`` (output index -> input index, 4x4) is axis-aligned (scaling,
    flips, permutation, shift): then trilinear interpolation separates into three 1D
    passes, identical to ``grid_sample`` (linear, border padding, align_corners=False)
    and about 10x faster on a CPU. Returns None otherwise (the caller uses grid_sample).
    """
    src = _axis_aligned(index_map)
    if src is None:
        return None
    x = dense
    for r in range(3):  # input axis r of dense (dim r + 2) becomes output axis src[r]
        i = torch.arange(int(out_shape[src[r]]), dtype=torch.float64, device=dense.device)
        x = _lerp_axis(x, r + 2, index_map[r, src[r]] * i + index_map[r, 3]).contiguous()
    order = [0, 1] + [2 + src.index(c) for c in range(3)]  # output axis c sits at dim 2 + (r with src[r] == c)
    return x.permute(order).contiguous()


def map_to_original(world_phi: PhiInWorld, fixed_affine: np.ndarray, fixed_shape: tuple[int, ...],
                    moving: torch.Tensor | None, moving_affine: np.ndarray | None,
                    slab_voxels: int = 1 << 21) -> tuple[np.ndarray, np.ndarray | None]:
    """``u`` (X, Y, Z, 3) float32 LPS mm on the original fixed grid, and ``moving ∘ phi`` (C, X, Y, Z) there.

    ``phi``'s displacement is sampled once on the preprocessed grid, then interpolated
    (trilinear; border value outside the preprocessed grid) at every original voxel:
    one interpolation at 1 mm instead of one per step of a multistep model (the
    difference from evaluating the composition at each point is second order in the
    field's curvature). Landmarks use the exact ``phi`` (:class:`PhiInWorld`).
    When the two grids are axis-aligned (the usual case: the preprocessed grid is a
    reoriented, resampled crop of the original) the interpolation runs as three 1D
    passes; otherwise as ``grid_sample`` in slabs along the first axis. The moving
    image is warped in slabs, so memory stays bounded at 1 mm.
    """
    from medreg.spatial.grid import grid_sample, identity_grid

    shape = tuple(int(s) for s in fixed_shape)
    device = world_phi.device
    pp_shape = world_phi.shape
    with torch.no_grad():
        dense = world_phi.phi.on_grid(pp_shape, device) - identity_grid(pp_shape, device)  # (1, 3, *pp) normalized
    pp_index_from_index = world_phi.to_pp @ lps_matrix(fixed_affine)
    pp_from_index = index_to_normalized(pp_shape) @ pp_index_from_index
    scale = world_phi.scale.to(torch.float32)  # normalized displacement -> LPS mm
    whole = _resample_separable(dense, pp_index_from_index, shape)  # (1, 3, *shape) or None
    u = torch.empty((*shape, 3), dtype=torch.float32)
    warped = None
    if moving is not None and moving_affine is not None:
        m_shape = tuple(int(s) for s in moving.shape[2:])
        to_moving = index_to_normalized(m_shape) @ np.linalg.inv(lps_matrix(moving_affine))
        moving_from_index = _REVERSE @ to_moving @ lps_matrix(fixed_affine)  # -> grid_sample's (x, y, z)
        # moving normalized (x, y, z order) per unit of normalized displacement (array-order channels)
        gain = torch.as_tensor(_REVERSE[:3, :3] @ to_moving[:3, :3], dtype=torch.float32, device=device) @ scale
        warped = torch.empty((moving.shape[1], *shape), dtype=torch.float32)
    for x0, x1 in slabs(shape, slab_voxels):
        slab = (x1 - x0, shape[1], shape[2])
        if whole is not None:
            d = whole[0, :, x0:x1]
        else:
            grid = _index_grid(_REVERSE @ pp_from_index, slab, x0, device)
            d = grid_sample(dense, grid)[0]
        u[x0:x1] = torch.einsum("ij,jxyz->xyzi", scale, d).cpu()
        if warped is not None:
            grid = _index_grid(moving_from_index, slab, x0, device)
            grid += torch.einsum("kc,cxyz->xyzk", gain, d)[None]
            vals = grid_sample(moving, grid)[0]
            vals *= (grid.abs() <= 1.0 + 1e-6).all(dim=-1).to(vals.dtype)  # ITK: 0 beyond half a voxel outside
            warped[:, x0:x1] = vals.cpu()
    return u.numpy(), None if warped is None else warped.numpy()


# --------------------------------------------------------------------------- registration
def register_pair(model: torch.nn.Module, config: Any, fixed_path: Source | Sequence[Source],
                  moving_path: Source | Sequence[Source], *, io_steps: int = 0, device: str | torch.device = "cpu",
                  landmarks: str | Path | None = None, io_lr: float | None = None, io_mode: str = "field",
                  data_preprocess: Any = None, io_upsample: int | str = 1) -> RegistrationResult:
    """Register ``moving`` to ``fixed`` with ``model`` and map the result to the original grids.

    Args:
        model: a registration module, ``model(moving, fixed) -> phi`` (normalized coordinates).
        config: the model's config (``.preprocess``; ``.loss`` and ``.train.lr`` for instance optimisation).
        fixed_path, moving_path: one NIfTI path (or Volume) per channel, in
            ``config.preprocess.modalities`` order (a single path for one channel).
        io_steps: instance-optimisation steps (0: none).
        device: ``cpu``, ``cuda`` or ``auto``.
        landmarks: fixed-space landmark file (BraTS-Reg CSV, DIR-Lab txt, Learn2Reg csv).
        io_lr: instance-optimisation learning rate (default: ``config.train.lr`` for ``network``;
            0.3 then 0.2 voxels a step for ``field``).
        io_mode: ``field`` (refine the displacement) or ``network`` (fine-tune the weights); see the module doc.
        io_upsample: with ``field``, ``K > 1`` runs the last third of the steps on a grid ``K`` times
            finer than the network's (the pair resampled from the preprocessed data), for detail
            the network grid cannot hold; each of those steps costs about ``K**3`` times more.
            ``"data"``: the last sixth on the preprocessed data's own grid (see :func:`refine_field`).
        data_preprocess: the preprocessing of the data the model was trained on
            (``medreg.io.checkpoint.load_data_preprocess``); the pair goes through it and then
            onto the network grid, exactly as the training pairs did (default: ``config.preprocess``).
    """
    _check_config(config)
    if io_steps < 0:
        raise InputError(None, f"expected --io-steps >= 0, found {io_steps}")
    if io_mode not in IO_MODES:
        raise InputError(None, f"expected --io-mode to be one of {list(IO_MODES)}, found {io_mode!r}")
    try:
        io_upsample = parse_io_upsample(io_upsample)
    except ValueError as exc:
        raise InputError(None, str(exc)) from None
    if io_upsample != 1 and io_mode != "field":
        raise InputError(None, f"--io-upsample {io_upsample} needs --io-mode field, found {io_mode!r}")
    t_start = time.perf_counter()
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

    from medreg.training.data import prepare_pair

    t = time.perf_counter()
    pair = prepare_pair(fixed_vols, moving_vols, config, data_preprocess,
                        fixed_points=None if lm is None else lm.points)
    timings["preprocess"] = time.perf_counter() - t
    geo = pair.geometry
    fixed_t = pair.fixed.to(dev)
    moving_t = pair.moving.to(dev)

    net, io_losses = model, []
    if io_steps > 0 and io_mode == "network":
        t = time.perf_counter()
        net, io_losses = instance_optimize(model, config, moving_t, fixed_t, io_steps, io_lr)
        timings["instance_optimization"] = time.perf_counter() - t

    t = time.perf_counter()
    with torch.no_grad():
        phi = net(moving_t, fixed_t)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    timings["predict"] = time.perf_counter() - t

    if io_steps > 0 and io_mode == "field":
        t = time.perf_counter()
        finer = pair.finer(io_upsample, dev) if isinstance(io_upsample, int) and io_upsample > 1 else None
        phi, io_losses = refine_field(phi, config, moving_t, fixed_t, io_steps, io_lr, finer=finer,
                                      on_data=pair if io_upsample == "data" else None)
        del finer
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        timings["instance_optimization"] = time.perf_counter() - t

    t = time.perf_counter()
    world_phi = PhiInWorld(phi, geo.affine, geo.shape, dev)
    moving_orig = torch.from_numpy(np.stack([np.asarray(v.array, dtype=np.float32) for v in moving_vols]))[None].to(dev)
    u, warped = map_to_original(world_phi, fixed0.affine, fixed0.shape, moving_orig, moving0.affine)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    timings["map_to_original"] = time.perf_counter() - t

    mapped = None
    if lm is not None:
        mapped = Landmarks(list(lm.names), world_phi(lm.points))
    seconds = time.perf_counter() - t_start
    extra: dict[str, Any] = {
        "method": "medreg",
        "io_steps": int(io_steps),
        "io_mode": io_mode if io_steps > 0 else None,
        "io_upsample": io_upsample if io_steps > 0 else None,
        "io_losses": io_losses,
        "device": str(dev),
        "config_hash": _config_hash(config),
        "timings": {k: round(v, 4) for k, v in timings.items()},
        "seconds_includes": "reading the images, preprocessing, instance optimisation, the network, the map back "
                            "to the original grids and warping the moving image (not writing outputs)",
        "preprocessed_shape": list(geo.shape),
        "preprocessed_spacing": list(geo.spacing),
        "peak_rss_source": "VmHWM of this process (lifetime peak, an upper bound)",
    }
    if dev.type == "cuda":
        extra["cuda_peak_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    warped_channels = {c: Volume(warped[i], fixed0.affine.copy()) for i, c in enumerate(channels)}
    return RegistrationResult(
        displacement_lps=u, fixed_affine=fixed0.affine, seconds=seconds, threads=torch.get_num_threads(),
        peak_rss_mb=own_peak_rss_mb(), extra=extra,
        warped=warped_channels[channels[0]], warped_channels=warped_channels,
        fixed_header=_header(fixed_src[0]), moving_affine=moving0.affine.copy(),
        landmarks=lm, mapped_landmarks=mapped, landmark_format=fmt, point_map=world_phi,
    )


# --------------------------------------------------------------------------- outputs
def check_out_dir(out_dir: str | Path, overwrite: bool = False) -> Path:
    """``out_dir`` may be new or empty; a non-empty folder only with ``overwrite``."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(out, "expected an output folder, found a file")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        n = len(list(out.iterdir()))
        raise InputError(out, f"expected a new or empty output folder, found {n} entries; refusing to overwrite "
                              f"(pass --overwrite)")
    return out


def run_info(result: RegistrationResult, **more: Any) -> dict[str, Any]:
    """What ``run.json`` records: model, config hash, device, threads, seconds, peak memory, inputs."""
    from medreg import __version__

    info = {
        "medreg_version": __version__,
        "torch_version": torch.__version__,
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count()},
        "config_hash": result.extra.get("config_hash"),
        "device": result.extra.get("device"),
        "threads": result.threads,
        "seconds": round(result.seconds, 4),
        "peak_rss_mb": round(result.peak_rss_mb, 1),
        "io_steps": result.extra.get("io_steps", 0),
        "io_mode": result.extra.get("io_mode"),
        "io_upsample": result.extra.get("io_upsample"),
        "timings": result.extra.get("timings", {}),
        "preprocessed_shape": result.extra.get("preprocessed_shape"),
        "convention": "phi(x) = x + u(x) maps fixed points to moving points; u in LPS mm on the fixed grid",
    }
    for key in ("cuda_peak_mb", "io_losses"):
        if key in result.extra:
            info[key] = result.extra[key]
    info.update(more)
    return info


def _write_all(result: RegistrationResult, tmp: Path, write_h5: bool) -> list[str]:
    from medreg.io.itk_transform import save_nifti_like, write_displacement_nifti, write_transform_h5

    affine, header = result.fixed_affine, result.fixed_header
    names = []
    for i, (name, vol) in enumerate(result.warped_channels.items()):
        fname = "warped.nii.gz" if i == 0 else f"warped_{name}.nii.gz"
        save_nifti_like(tmp / fname, vol.array.astype(np.float32), affine, header)
        names.append(fname)
    write_displacement_nifti(tmp / "field.nii.gz", result.displacement_lps, affine, header=header)
    names.append("field.nii.gz")
    if write_h5:
        write_transform_h5(tmp / "transform.h5", result.displacement_lps, affine)
        names.append("transform.h5")
    save_nifti_like(tmp / "jacobian_det.nii.gz", result.jacobian_determinant().astype(np.float32), affine, header)
    names.append("jacobian_det.nii.gz")
    if result.mapped_landmarks is not None and result.landmark_format is not None:
        fname = points_output_name(result.landmark_format)  # type: ignore[arg-type]
        write_points(tmp / fname, result.mapped_landmarks, result.landmark_format, result.moving_affine)  # type: ignore[arg-type]
        names.append(fname)
    return names


def write_outputs(result: RegistrationResult, out_dir: str | Path, *, info: dict[str, Any] | None = None,
                  overwrite: bool = False, write_h5: bool = True) -> dict[str, Path]:
    """Write every output of a registration into ``out_dir``; return them by file name.

    Files are written into a staging folder beside ``out_dir``, then moved in one
    by one (each move atomic), ``run.json`` last. A non-empty ``out_dir`` is refused
    unless ``overwrite``; then known medreg outputs not written this time are removed.
    """
    out = check_out_dir(out_dir, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        names = _write_all(result, tmp, write_h5)
        write_seconds = time.perf_counter() - t
        record = run_info(result, write_seconds=round(write_seconds, 4), outputs=names + ["run.json"], **(info or {}))
        (tmp / "run.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
        from medreg.io.atomic import default_file_mode

        mode = default_file_mode()
        for name in names + ["run.json"]:
            os.chmod(tmp / name, mode)  # temporary files are private (0600); outputs follow the umask
        out.mkdir(parents=True, exist_ok=True)
        (out / "run.json").unlink(missing_ok=True)  # the folder is incomplete until run.json is back
        for name in names:
            os.replace(tmp / name, out / name)
        for stale in KNOWN_OUTPUTS:
            if stale not in names and stale != "run.json":
                (out / stale).unlink(missing_ok=True)
        os.replace(tmp / "run.json", out / "run.json")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {name: out / name for name in names + ["run.json"]}


# --------------------------------------------------------------------------- batch mode
@dataclass
class PairJob:
    """One pair of a batch: channel files in model order, optional fixed landmarks, an id (the sub-folder)."""

    id: str
    fixed: list[Path]
    moving: list[Path]
    landmarks: Path | None = None


def _safe_id(value: str, source: Path, row: int) -> str:
    import re

    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", value):
        raise InputError(source, f"row {row}: expected an id of letters, digits, '_', '-', '.', found {value!r}")
    return value


def read_pairs_csv(path: str | Path, channels: Sequence[str]) -> list[PairJob]:
    """A CSV of pairs: columns ``fixed,moving[,landmarks,id]`` (relative paths are relative to the CSV).

    For several channels, ``fixed``/``moving`` hold the files separated by ``;`` in
    model order, or the CSV has ``fixed_<channel>``/``moving_<channel>`` columns.
    """
    import csv

    path = check_input_file(path, "a CSV of pairs (columns fixed,moving[,landmarks,id])")
    root = path.parent
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise InputError(path, "expected a header and at least one pair, found none")
    cols = set(rows[0])
    per_channel = all(f"fixed_{c}" in cols and f"moving_{c}" in cols for c in channels)
    if not per_channel and not {"fixed", "moving"} <= cols:
        raise InputError(path, f"expected columns fixed,moving (or fixed_<channel>,moving_<channel> for {list(channels)}), "
                               f"found {sorted(c for c in cols if c)}")

    def files(value: str, row: int, role: str) -> list[Path]:
        parts = [v.strip() for v in (value or "").split(";") if v.strip()]
        if len(parts) != len(channels):
            raise InputError(path, f"row {row}: expected {len(channels)} {role} file(s) for channels {list(channels)} "
                                   f"(separated by ';'), found {len(parts)}")
        return [p if p.is_absolute() else root / p for p in map(Path, parts)]

    jobs, seen = [], set()
    for i, row in enumerate(rows, start=2):
        if per_channel:
            fixed = files(";".join(row[f"fixed_{c}"] or "" for c in channels), i, "fixed")
            moving = files(";".join(row[f"moving_{c}"] or "" for c in channels), i, "moving")
        else:
            fixed, moving = files(row["fixed"], i, "fixed"), files(row["moving"], i, "moving")
        lm = (row.get("landmarks") or "").strip()
        lm_path = None if not lm else (Path(lm) if Path(lm).is_absolute() else root / lm)
        pid = _safe_id((row.get("id") or "").strip() or f"pair_{i - 1:04d}", path, i)
        if pid in seen:
            raise InputError(path, f"row {i}: expected unique ids, found {pid!r} twice")
        seen.add(pid)
        jobs.append(PairJob(pid, fixed, moving, lm_path))
    return jobs


def for_preprocessed_files(model_preprocess: Any, files_preprocess: Any, source: str | Path | None) -> Any:
    """The preprocessing to give ``register_pair`` for files that ``medreg preprocess`` already wrote.

    ``model_preprocess`` is what the model's training data went through
    (``load_data_preprocess``, or ``config.preprocess``); ``files_preprocess`` the
    manifest's config of the files. Their intensities are already normalised, so they
    are kept (a second CT window maps [0, 1] to a constant; a second percentile scaling
    shifts MRI slightly); the geometric steps repeat harmlessly. The two
    normalisations must agree, else the network would see other intensities than in
    training: that is an error naming ``source``.
    """
    from medreg.transforms.config import KeepIntensity

    if model_preprocess.intensity != files_preprocess.intensity:
        raise InputError(source, f"the model was trained on intensities normalised as "
                                 f"{model_preprocess.intensity.model_dump()}; these files were preprocessed with "
                                 f"{files_preprocess.intensity.model_dump()}: preprocess the data with the model's config")
    return model_preprocess.model_copy(update={"intensity": KeepIntensity(kind="none")})


def manifest_config(manifest_path: str | Path) -> Any:
    """The ``PreprocessConfig`` a ``medreg preprocess`` manifest's files were written with."""
    from medreg.datasets.manifest import read_manifest

    return read_manifest(Path(manifest_path)).config


def manifest_jobs(manifest_path: str | Path, channels: Sequence[str], split: str | None = None) -> list[PairJob]:
    """The pairs of a ``medreg preprocess`` manifest (one split, or all), as jobs in the manifest's own grid."""
    from medreg.datasets.manifest import read_manifest, resolve

    mpath = Path(manifest_path)
    manifest = read_manifest(mpath)
    mpath = mpath / "manifest.json" if mpath.is_dir() else mpath
    root = mpath.parent
    entries = manifest.pairs if split is None else manifest.split(split)
    if not entries:
        have = sorted({str(e.split) for e in manifest.pairs})
        raise InputError(mpath, f"expected pairs in split {split!r}, found none (splits: {', '.join(have)})")
    jobs = []
    for e in entries:
        missing = [c for c in channels if c not in e.fixed or c not in e.moving]
        if missing:
            raise InputError(mpath, f"pair {e.id!r}: expected channels {list(channels)}, found {sorted(e.fixed)}")
        lm = None if e.fixed_landmarks is None else resolve(root, e.fixed_landmarks)
        jobs.append(PairJob(e.id, [resolve(root, e.fixed[c]) for c in channels],
                            [resolve(root, e.moving[c]) for c in channels], lm))
    return jobs


@dataclass
class BatchSummary:
    """What a batch did: finished, skipped (already complete) and failed pairs (id -> reason)."""

    out: Path
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed

    def text(self) -> str:
        lines = [f"{len(self.done)} registered, {len(self.skipped)} already done, {len(self.failed)} failed -> {self.out}"]
        if self.seconds:
            lines.append(f"seconds per pair: mean {np.mean(list(self.seconds.values())):.2f}")
        lines += [f"  FAILED {k}: {v}" for k, v in self.failed.items()]
        return "\n".join(lines)


def register_batch(model: torch.nn.Module, config: Any, jobs: Sequence[PairJob], out_dir: str | Path, *,
                   io_steps: int = 0, device: str | torch.device = "cpu", io_lr: float | None = None,
                   io_mode: str = "field", io_upsample: int | str = 1,
                   overwrite: bool = False, info: dict[str, Any] | None = None, progress: bool = False,
                   write_h5: bool = True, data_preprocess: Any = None) -> BatchSummary:
    """Register every job with one loaded model into ``out_dir/<id>/``; record ``out_dir/batch.json``.

    A pair folder that already holds ``run.json`` is skipped (resume) unless
    ``overwrite``. A failing pair is recorded with its reason and does not stop the batch.
    """
    from medreg.errors import MedregError
    from medreg.io.atomic import write_text_atomic

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(out, "expected an output folder, found a file")
    summary = BatchSummary(out)
    iterator: Any = jobs
    if progress:
        from tqdm import tqdm

        iterator = tqdm(jobs, desc="register", unit="pair")
    for job in iterator:
        folder = out / job.id
        if (folder / "run.json").is_file() and not overwrite:
            summary.skipped.append(job.id)
            continue
        try:
            check_out_dir(folder, overwrite)
            res = register_pair(model, config, job.fixed, job.moving, io_steps=io_steps, device=device,
                                landmarks=job.landmarks, io_lr=io_lr, io_mode=io_mode, data_preprocess=data_preprocess,
                                io_upsample=io_upsample)
            write_outputs(res, folder, overwrite=overwrite, write_h5=write_h5,
                          info={**(info or {}), "id": job.id, "fixed": [str(p) for p in job.fixed],
                                "moving": [str(p) for p in job.moving],
                                "landmarks": None if job.landmarks is None else str(job.landmarks)})
            summary.done.append(job.id)
            summary.seconds[job.id] = round(res.seconds, 4)
        except (MedregError, ValueError, RuntimeError) as err:
            summary.failed[job.id] = f"{type(err).__name__}: {err}"
    record = {"out": str(out), "done": summary.done, "skipped": summary.skipped, "failed": summary.failed,
              "seconds": summary.seconds, **(info or {})}
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "batch.json", json.dumps(record, indent=1, default=str) + "\n", overwrite=True)
    return summary


__all__ = ["IO_MODES", "BatchSummary", "PairJob", "for_preprocessed_files", "manifest_config", "PhiInWorld", "RegistrationResult", "check_out_dir", "instance_optimize",
           "parse_io_upsample", "refine_field",
           "manifest_jobs", "map_to_original", "read_pairs_csv", "register_batch", "register_pair",
           "resolve_device", "run_info", "write_outputs"]
