"""The global stage: a rigid or affine world transform of the pair, found before the deformable steps.

``global_align(fixed, moving, GlobalConfig(mode))`` returns ``A`` (4x4, LPS mm), the map of
fixed-space points to moving-space points (the direction of every medreg transform):

1. both images are block-averaged into the pyramid (step 3) and scaled to [0, 1] by the 0.5 / 99.5
   percentiles of their finest level;
2. initialisation by centres of mass: ``A(p) = p + (c_moving - c_fixed)`` (intensity-weighted
   centres of the foreground); a pair whose images do not overlap in world space at all (a
   wrong origin) is brought together here, and the result says so;
3. a pyramid (``levels_mm``: each image block-averaged to about that voxel size, each level
   pooled from the next finer one; a block cut by the image's edge averages the voxels it holds)
   of Adam steps on the similarity of ``moving(A(p))`` and ``fixed(p)`` over the fixed
   foreground (at most ``max_points`` of its voxels per level, a fixed random subset) that ``A``
   maps within the moving image's outer voxel centres (as ITK does: a field of view that cuts the
   anatomy does not pull the result): ``rigid`` (a rotation about the fixed centre and a
   translation) or ``affine`` (rigid first, then the 12 parameters). Rotations and the linear
   part are scaled by a 50 mm lever, so one rate in mm serves all parameters; the rate falls
   linearly to a tenth within each level. The chain fixed index -> LPS -> ``A`` -> moving
   coordinates is one 4x4 product per step.

The similarity (``similarity``) is the normalized cross-correlation (``ncc``, one contrast) or
the mutual information of 32-bin Parzen histograms (``mi``, a Gaussian kernel one bin wide), for
fixed and moving images of different contrasts.

The pyramid was chosen on demo-brain's validation pairs (training split, held out of training;
their fixed t1 images moved by known 15-25 degree / 15-20 mm motions): 8 / 4 / 2 mm with 60 / 30
/ 10 rigid and 0 / 30 / 10 affine steps, at most 60,000 points a level, left 0.04-0.08 mm (rigid)
and 0.25-0.28 mm (affine) mean error (0.5-0.8 s on 2 idle CPU cores). With ``mi`` and the moving image the same pairs' t2 (another
contrast): 0.16-0.24 mm rigid, 1.1 mm affine (NCC fails there, 24-31 mm); for two contrasts use
``rigid`` with ``mi``.

A pair that still cannot be aligned (no overlap after centring, a final similarity more than
0.05 below the start's or below a floor, a linear part that is not invertible) raises :class:`~medreg.errors.InputError` naming both files.

:func:`moved_header` turns ``A`` into the moving image's header seen from the fixed space (the
moving image "moved by A^-1"), so the deformable model runs unchanged on the pre-aligned pair;
the total map is ``A ∘ phi``. A pair aligned at the start (centres of mass) whose steps end a
little worse keeps the start.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from medreg.errors import InputError
from medreg.geometry import RAS_TO_LPS, Grid
from medreg.io.nifti import Volume
from medreg.spatial.grid import sample

GlobalMode = Literal["none", "rigid", "affine"]
Similarity = Literal["ncc", "mi"]
MI_BINS = 32
LEVER_MM = 50.0


@dataclass(frozen=True)
class GlobalConfig:
    """How the global stage runs (``mode`` none, rigid or affine)."""

    mode: GlobalMode = "none"
    similarity: Similarity = "ncc"  # ncc: one contrast; mi: mutual information, for different contrasts
    levels_mm: tuple[float, ...] = (8.0, 4.0, 2.0)
    steps: tuple[int, ...] = (60, 30, 10)
    lr_mm: float = 1.0
    affine_steps: tuple[int, ...] = (0, 30, 10)  # affine refinement steps per level, after the rigid ones
    max_points: int = 60000  # per level: a fixed random subset of at most this many foreground points (0: all)

    def __post_init__(self) -> None:
        if self.mode not in ("none", "rigid", "affine"):
            raise ValueError(f"expected --global none, rigid or affine, found {self.mode!r}")
        if self.similarity not in ("ncc", "mi"):
            raise ValueError(f"expected --global-similarity ncc or mi, found {self.similarity!r}")
        if len(self.levels_mm) != len(self.steps) or len(self.steps) != len(self.affine_steps):
            raise ValueError("expected one step count (rigid and affine) per pyramid level")

    @property
    def enabled(self) -> bool:
        return self.mode != "none"

    @property
    def tag(self) -> str:
        """What a method name adds for this stage: ``""``, ``"+affine"``, ``"+rigid-mi"`` (medreg+affine+io15)."""
        if not self.enabled:
            return ""
        return f"+{self.mode}" + ("-mi" if self.similarity == "mi" else "")

    def named(self, method: str) -> str:
        """A medreg method name with this stage's tag after ``medreg``: ``medreg+io15`` -> ``medreg+affine+io15``."""
        return method.replace("medreg", "medreg" + self.tag, 1)


@dataclass
class GlobalResult:
    """``matrix``: 4x4 LPS fixed -> moving; ``centred_mm``: the translation of the centre-of-mass start;
    ``score_start``/``score_end``: the similarity (NCC, or MI in nats) at the start and the end, finest level."""

    matrix: np.ndarray
    mode: str
    centred_mm: np.ndarray
    initial_overlap: bool
    score_start: float
    score_end: float
    seconds: float
    losses: list[float] = field(default_factory=list)
    similarity: str = "ncc"

    @property
    def message(self) -> str:
        shift = float(np.linalg.norm(self.centred_mm))
        text = f"global {self.mode}: centres of mass {shift:.1f} mm apart"
        if not self.initial_overlap:
            text += " (the images did not overlap in world space: their centres were aligned first)"
        return text + f"; {self.similarity.upper()} {self.score_start:.3f} -> {self.score_end:.3f}"

    def describe(self) -> dict:
        return {"mode": self.mode, "matrix_lps": np.round(self.matrix, 6).tolist(),
                "centre_of_mass_shift_mm": np.round(self.centred_mm, 3).tolist(),
                "initial_overlap": self.initial_overlap, "similarity": self.similarity,
                "score_start": round(self.score_start, 4), "score_end": round(self.score_end, 4), "seconds": round(self.seconds, 4), "message": self.message}


# --------------------------------------------------------------------------- images
def _normalised_pyramid(vol: Volume, levels_mm: tuple[float, ...]) -> list[tuple[torch.Tensor, Grid]]:
    """The image's pyramid, each level scaled to [0, 1] by the finest level's 0.5 / 99.5 percentiles
    (pooled first, so the full-resolution volume is read once and never rescaled)."""
    raw = torch.as_tensor(np.asarray(vol.array, dtype=np.float32))
    pyramid = _pyramid(raw, Grid.of(vol), levels_mm)
    finest = max(pyramid, key=lambda level: level[0].numel())[0]
    lo, hi = np.percentile(finest.numpy().ravel(), [0.5, 99.5])
    hi = hi if hi > lo else lo + 1.0
    return [(((x - float(lo)) / float(hi - lo)).clamp_(0.0, 1.0), g) for x, g in pyramid]


def _pool(image: torch.Tensor, grid: Grid, k: list[int]) -> tuple[torch.Tensor, Grid]:
    """Sums of ``k`` blocks over the block volume, the image zero-padded to whole blocks (these nest exactly)."""
    if all(f == 1 for f in k):
        return image, grid
    target = grid.resampled(np.asarray(grid.spacing) * np.asarray(k))
    pad = [int(t * f - n) for t, f, n in zip(target.shape, k, grid.shape)]
    x = F.pad(image[None, None], [p for a in reversed(range(3)) for p in (0, pad[a])])
    return F.avg_pool3d(x, kernel_size=k, stride=k)[0, 0], target


def _pyramid(image: torch.Tensor, grid: Grid, levels_mm: tuple[float, ...]) -> list[tuple[torch.Tensor, Grid]]:
    """The image block-averaged to about each level's voxel size (integer factors per axis, at least 1), in the
    order given. A block cut by the image's edge is the mean of the voxels it holds, not of zero padding (that
    darkened edge pulled the coarse levels): the zero-padded block mean is divided by the share of the block
    inside the image, a product of one factor per axis. Each level is pooled from the next finer one's
    zero-padded means where its factors are multiples of that one's (zero-padded block sums nest)."""
    factors = [[max(1, int(round(mm / s))) for s in grid.spacing] for mm in levels_mm]
    out: dict[int, tuple[torch.Tensor, Grid]] = {}
    prev: tuple[list[int], tuple[torch.Tensor, Grid]] | None = None
    for i in sorted(range(len(levels_mm)), key=lambda j: np.prod(factors[j])):
        k = factors[i]
        if prev is not None and all(a % b == 0 for a, b in zip(k, prev[0])):
            out[i] = _pool(*prev[1], [a // b for a, b in zip(k, prev[0])])
        else:
            out[i] = _pool(image, grid, k)
        prev = (k, out[i])
    levels = []
    for i in range(len(levels_mm)):
        x, g = out[i]
        share = [torch.clamp(torch.tensor(float(n)) - torch.arange(m) * f, max=float(f)) / f
                 for n, m, f in zip(grid.shape, g.shape, factors[i])]  # voxels of each block inside the image
        levels.append((x / (share[0][:, None, None] * share[1][None, :, None] * share[2][None, None, :]), g))
    return levels


def _centre(image: torch.Tensor, grid: Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intensity-weighted centre of mass of the foreground (LPS) and the foreground's LPS bounding box."""
    w = image.numpy().astype(np.float64)
    w = np.where(w > 0.1, w, 0.0)
    if w.sum() <= 0:
        raise ValueError("empty image")
    idx = np.nonzero(w)
    centre_idx = np.array([(np.asarray(i, np.float64) * w[idx]).sum() / w[idx].sum() for i in idx])
    lo = np.array([i.min() for i in idx], np.float64)
    hi = np.array([i.max() for i in idx], np.float64)
    pts = grid.index_to_lps(np.array(list(itertools.product(*zip(lo, hi)))))
    return grid.index_to_lps(centre_idx[None])[0], pts.min(0), pts.max(0)


# --------------------------------------------------------------------------- the model of A
def _rotation(w: torch.Tensor) -> torch.Tensor:
    """Rodrigues: rotation vector (3,) -> 3x3."""
    theta = torch.sqrt((w * w).sum() + 1e-12)
    k = w / theta
    kx = torch.zeros(3, 3, dtype=w.dtype)
    kx[0, 1], kx[0, 2], kx[1, 2] = -k[2], k[1], -k[0]
    kx = kx - kx.T
    return torch.eye(3, dtype=w.dtype) + torch.sin(theta) * kx + (1 - torch.cos(theta)) * (kx @ kx)


class _Params(torch.nn.Module):
    """``A(p) = L (p - c) + c + t`` with ``L = R(w) (I + B)``; parameters in mm (rotation and B over a lever)."""

    def __init__(self, centre: np.ndarray, shift: np.ndarray):
        super().__init__()
        # copies (torch.tensor, not as_tensor): a parameter sharing the caller's array would be changed by every step
        self.register_buffer("c", torch.tensor(np.asarray(centre), dtype=torch.float64))
        self.t = torch.nn.Parameter(torch.tensor(np.asarray(shift), dtype=torch.float64))
        self.w = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
        self.b = torch.nn.Parameter(torch.zeros(3, 3, dtype=torch.float64))

    def linear(self) -> torch.Tensor:
        return _rotation(self.w / LEVER_MM) @ (torch.eye(3, dtype=torch.float64) + self.b / LEVER_MM)

    def matrix(self) -> torch.Tensor:
        m = torch.eye(4, dtype=torch.float64)
        lin = self.linear()
        m[:3, :3] = lin
        m[:3, 3] = self.c + self.t - lin @ self.c
        return m


def _ncc(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Correlation of ``a`` and ``b`` over the points where ``w`` is 1."""
    n = w.sum().clamp_min(1.0)
    da, db = a - (a * w).sum() / n, b - (b * w).sum() / n
    return (w * da * db).sum() / torch.sqrt((w * da * da).sum() * (w * db * db).sum() + 1e-8)


def _parzen(values: torch.Tensor) -> torch.Tensor:
    """(N,) intensities in [0, 1] -> (N, MI_BINS) soft bin memberships (a Gaussian of one bin's width), rows sum to 1."""
    centres = (torch.arange(MI_BINS, dtype=values.dtype) + 0.5) / MI_BINS
    w = torch.exp(-0.5 * ((values.clamp(0, 1)[:, None] - centres) * MI_BINS) ** 2)
    return w / w.sum(1, keepdim=True)


def _mi(a_bins: torch.Tensor, b: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Mutual information (nats) of the fixed memberships ``a_bins`` and the moving values ``b`` over ``w == 1``."""
    joint = (a_bins * w[:, None]).T @ _parzen(b)
    joint = joint / joint.sum().clamp_min(1e-12)
    pa, pb = joint.sum(1, keepdim=True), joint.sum(0, keepdim=True)
    return (joint * (torch.log(joint + 1e-12) - torch.log(pa @ pb + 1e-12))).sum()


def _similarity(params: _Params, fixed_index: torch.Tensor, fixed_to_lps: torch.Tensor, fixed_vals: torch.Tensor,
                moving: torch.Tensor, moving_to_normalized: torch.Tensor,
                fixed_bins: torch.Tensor | None = None) -> torch.Tensor:
    """NCC of the fixed values and the moving image at ``A`` of the fixed points. The points are a fixed-grid
    index list ``(N, 4)`` (homogeneous, float32); the whole chain index -> LPS -> A -> moving normalized
    coordinates is one 4x4 product, so the per-point work is one small matmul and the sampling."""
    chain = (moving_to_normalized @ params.matrix() @ fixed_to_lps).to(torch.float32)
    coords = (fixed_index @ chain[:3].T).T[None]  # (1, 3, N) normalized, array order
    vals = sample(moving[None, None], coords, padding_mode="zeros")[0, 0]
    limit = torch.tensor([1.0 - 1.0 / n for n in moving.shape], dtype=coords.dtype)[:, None]
    inside = (coords[0].detach().abs() <= limit).all(0).to(vals.dtype)  # within the outer voxel centres  # as ITK: points mapped outside the
    if fixed_bins is not None:  # moving image do not count (a cropped field of view biases nothing)
        return _mi(fixed_bins, vals, inside)
    return _ncc(fixed_vals, vals, inside)


def global_align(fixed: Volume, moving: Volume, config: GlobalConfig) -> GlobalResult:
    """``A`` (LPS, fixed -> moving) of the pair; InputError naming both files if it cannot be found."""
    t0 = time.perf_counter()
    names = f"{fixed.path or 'the fixed image'} and {moving.path or 'the moving image'}"
    f_pyr = _normalised_pyramid(fixed, config.levels_mm)
    m_pyr = _normalised_pyramid(moving, config.levels_mm)
    try:  # on the coarsest level: the same centres to a fraction of its voxel, far cheaper
        cf, f_lo, f_hi = _centre(*f_pyr[0])
        cm, m_lo, m_hi = _centre(*m_pyr[0])
    except ValueError:
        raise InputError(fixed.path, f"the global stage needs a foreground in both images; {names}: one is empty "
                                     f"(constant after intensity scaling)") from None
    overlap = bool(np.all(np.minimum(f_hi, m_hi) > np.maximum(f_lo, m_lo)))
    shift = cm - cf
    params = _Params(cf, shift)
    start_state = {k: v.detach().clone() for k, v in params.state_dict().items()}
    losses: list[float] = []
    for (fl, fgl), (ml, mgl), mm, n_rigid, n_affine in zip(f_pyr, m_pyr, config.levels_mm, config.steps,
                                                           config.affine_steps):
        vals = fl.reshape(-1)
        keep = vals > 0.05  # the fixed foreground: the only points the correlation counts
        if int(keep.sum()) < 10:
            raise InputError(fixed.path, f"the global stage found almost no foreground at {mm} mm in {names}")
        index = torch.cat([torch.nonzero(keep.reshape(fl.shape)).to(torch.float32),
                           torch.ones(int(keep.sum()), 1)], dim=1)  # (N, 4) homogeneous fixed indices
        vals = vals[keep].to(torch.float32)
        if 0 < config.max_points < len(vals):  # the same subset every run: the result is deterministic
            pick = torch.randperm(len(vals), generator=torch.Generator().manual_seed(0))[:config.max_points]
            index, vals = index[pick], vals[pick]
        to_lps = torch.as_tensor(fgl.lps_from_index, dtype=torch.float64)
        to_norm = torch.as_tensor(mgl.normalized_from_lps, dtype=torch.float64)
        ml = ml.to(torch.float32)
        bins = _parzen(vals) if config.similarity == "mi" else None
        for n, which in ((n_rigid, ("t", "w")), (n_affine if config.mode == "affine" else 0, ("t", "w", "b"))):
            if n <= 0:
                continue
            rate = config.lr_mm * mm / 4.0
            opt = torch.optim.Adam([getattr(params, k) for k in which], lr=rate)
            for i in range(n):
                for g in opt.param_groups:  # linear decay to a tenth: Adam settles instead of jittering by ~lr
                    g["lr"] = rate * (1.0 - 0.9 * i / max(1, n - 1))
                opt.zero_grad(set_to_none=True)
                loss = -_similarity(params, index, to_lps, vals, ml, to_norm, bins)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
    with torch.no_grad():  # the start (centres of mass) and the end, both on the finest level
        score_end = float(_similarity(params, index, to_lps, vals, ml, to_norm, bins))
        start = _Params(cf, shift)
        start.load_state_dict(start_state)
        score_start = float(_similarity(start, index, to_lps, vals, ml, to_norm, bins))
    matrix = params.matrix().detach().numpy()
    floor = 0.05 if config.similarity == "ncc" else 0.01
    diverged = not np.all(np.isfinite(matrix)) or score_end < score_start - 0.05 or \
        not 0.5 < abs(np.linalg.det(matrix[:3, :3])) < 2.0
    if not diverged and score_end < score_start:  # already aligned at the start: the steps only jittered about it
        matrix, score_end = start.matrix().detach().numpy(), score_start
    result = GlobalResult(matrix, config.mode, shift, overlap, score_start, score_end, time.perf_counter() - t0, losses,
                          config.similarity)
    if diverged or score_end < floor:
        raise InputError(moving.path, f"the global stage could not align {names} ({result.message}); "
                                      f"check that both headers describe the same anatomy")
    return result


def moved_header(affine_ras: np.ndarray, matrix_lps: np.ndarray) -> np.ndarray:
    """The moving image's voxel -> RAS affine seen from the fixed space: world point ``p`` of the result is the
    moving point ``A(p)`` (``A = matrix_lps``)."""
    return RAS_TO_LPS @ np.linalg.inv(matrix_lps) @ RAS_TO_LPS @ np.asarray(affine_ras, dtype=np.float64)


def ras_grid_after(grid: Grid, matrix_lps: np.ndarray) -> Grid:
    """``grid`` with every world point ``p`` sent to ``A(p)`` (for the moving side of the total map)."""
    return Grid(moved_header(grid.affine, np.linalg.inv(matrix_lps)), grid.shape)


__all__ = ["GlobalConfig", "GlobalResult", "global_align", "moved_header", "ras_grid_after"]
