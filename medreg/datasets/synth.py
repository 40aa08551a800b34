"""Tools for building benchmark pairs with exact ground truth from real scans.

Used by the built-in demo datasets (:mod:`medreg.datasets.demo_brain`,
:mod:`medreg.datasets.demo_lung`). Everything is numpy/scipy, vectorised, with
randomness only from a ``numpy.random.Generator`` passed in.

The central object is :class:`GridMap`: a map from the voxel coordinates of an
output grid to the voxel coordinates of a source image, stored as its values at
coarse nodes that span the output grid corner to corner and defined everywhere
by **trilinear interpolation of those nodes**. The same continuous function is
used to resample images (:meth:`GridMap.dense` at voxel centres) and to map
landmarks (:meth:`GridMap.__call__` at any point), so ground-truth landmark
pairs are exact by construction; :meth:`GridMap.inverse` finds the preimage of
points by Newton's method to well below 0.001 voxel.

Coordinates are 0-based voxel indices in array order, as continuous values
(voxel centres at integers), unless a name says ``_mm``.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from medreg.errors import InputError

# ----------------------------------------------------------------------------- node grids


def node_shape(shape: tuple[int, ...], step: float | tuple[float, ...]) -> tuple[int, ...]:
    """Number of nodes per axis so that nodes span ``[0, n-1]`` at most ``step`` voxels apart."""
    steps = np.broadcast_to(np.asarray(step, dtype=np.float64), (len(shape),))
    return tuple(int(max(2, np.ceil((n - 1) / s) + 1)) for n, s in zip(shape, steps))


def node_positions(shape: tuple[int, ...], nodes: tuple[int, ...]) -> np.ndarray:
    """Fine-grid voxel coordinates of every node, shape ``(3, *nodes)`` float64."""
    axes = [np.linspace(0.0, n - 1.0, m) for n, m in zip(shape, nodes)]
    return np.stack(np.meshgrid(*axes, indexing="ij"))


def _interp_weights(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray]:
    """Lower node index and weight of each output sample for corner-aligned linear interpolation."""
    if n_in == 1 or n_out == 1:
        return np.zeros(n_out, dtype=np.intp), np.zeros(n_out, dtype=np.float32)
    pos = np.arange(n_out, dtype=np.float64) * (n_in - 1) / (n_out - 1)
    lo = np.minimum(np.floor(pos).astype(np.intp), n_in - 2)
    return lo, (pos - lo).astype(np.float32)


def upsample_linear(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Trilinear, corner-aligned upsampling of ``(C, *nodes)`` values to ``(C, *shape)`` float32.

    Output voxel ``x`` takes the value at node coordinate ``x * (m-1)/(n-1)``,
    exactly what :func:`sample_linear` computes at any point (separable, so it
    costs three cheap passes instead of a general interpolation).
    """
    out = np.asarray(values, dtype=np.float32)
    for axis, n in enumerate(shape, start=1):
        lo, w = _interp_weights(n, out.shape[axis])
        wshape = [1] * out.ndim
        wshape[axis] = n
        w = w.reshape(wshape)
        a = np.take(out, lo, axis=axis)
        b = np.take(out, np.minimum(lo + 1, out.shape[axis] - 1), axis=axis)
        b -= a
        b *= w
        a += b
        out = a
    return out


def sample_linear(values: np.ndarray, shape: tuple[int, ...], points: np.ndarray) -> np.ndarray:
    """Evaluate the corner-aligned trilinear function of ``(C, *nodes)`` values at fine points.

    ``points`` are ``(N, 3)`` fine-grid voxel coordinates; returns ``(N, C)`` float64.
    Outside the grid the nearest edge value is used.
    """
    nodes = values.shape[1:]
    pts = np.asarray(points, dtype=np.float64)
    scale = np.array([(m - 1) / max(n - 1, 1) for n, m in zip(shape, nodes)])
    coords = (pts * scale).T
    return np.stack(
        [ndi.map_coordinates(np.asarray(v, dtype=np.float64), coords, order=1, mode="nearest") for v in values], axis=1
    )


# ----------------------------------------------------------------------------- the map


@dataclass
class GridMap:
    """Map output-grid voxel coordinates to source voxel coordinates (trilinear in coarse nodes).

    ``values`` has shape ``(3, *nodes)``: the source coordinates of the nodes,
    which sit at :func:`node_positions` of ``shape``.
    """

    values: np.ndarray
    shape: tuple[int, int, int]
    _disp: np.ndarray | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_function(cls, fn, shape: tuple[int, int, int], step: float | tuple[float, ...]) -> "GridMap":
        """Tabulate ``fn`` (``(N, 3)`` fine coords -> ``(N, 3)`` source coords) at the nodes."""
        nodes = node_shape(shape, step)
        pos = node_positions(shape, nodes).reshape(3, -1).T
        return cls(np.asarray(fn(pos), dtype=np.float64).T.reshape(3, *nodes), tuple(shape))

    @property
    def nodes(self) -> tuple[int, ...]:
        return tuple(self.values.shape[1:])

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """Source coordinates of ``(N, 3)`` output-grid points.

        Inside the grid this is the trilinear interpolation of the nodes; outside,
        the displacement of the nearest edge is continued (keeps Newton's method
        well-posed for points that start outside).
        """
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        if self._disp is None:
            self._disp = self.values - node_positions(self.shape, self.nodes)
        return pts + sample_linear(self._disp, self.shape, pts)

    def dense(self) -> np.ndarray:
        """Source coordinates of every output voxel centre, ``(3, *shape)`` float32."""
        return upsample_linear(self.values, self.shape)

    def jacobian_det_nodes(self) -> np.ndarray:
        """det of d(source)/d(output) at the nodes (finite differences), shape ``nodes``."""
        spacing = [(n - 1) / (m - 1) for n, m in zip(self.shape, self.nodes)]
        j = [np.gradient(self.values[c], *spacing) for c in range(3)]  # j[row][col]
        return (j[0][0] * (j[1][1] * j[2][2] - j[1][2] * j[2][1])
                - j[0][1] * (j[1][0] * j[2][2] - j[1][2] * j[2][0])
                + j[0][2] * (j[1][0] * j[2][1] - j[1][1] * j[2][0]))

    def inverse(self, targets: np.ndarray, x0: np.ndarray | None = None, *, tol: float = 1e-6, max_iter: int = 60) -> np.ndarray:
        """Output-grid points whose image is ``targets`` (Newton's method, see :func:`invert_points`)."""
        return invert_points(self, targets, x0=x0, tol=tol, max_iter=max_iter)


class InversionError(RuntimeError):
    """A numerical inverse did not converge."""


def invert_points(fn, targets: np.ndarray, *, x0: np.ndarray | None = None, tol: float = 1e-6,
                  max_iter: int = 60, h: float = 1e-3) -> np.ndarray:
    """Solve ``fn(x) = y`` for each row ``y`` of ``targets`` (``(N, 3)``) by damped Newton.

    The Jacobian is taken by central differences with step ``h``. Raises
    :class:`InversionError` if some residual stays above ``tol`` (same units as
    the targets) after ``max_iter`` iterations.
    """
    y = np.asarray(targets, dtype=np.float64).reshape(-1, 3)
    x = y.copy() if x0 is None else np.asarray(x0, dtype=np.float64).reshape(-1, 3).copy()
    eye = np.eye(3)
    res = fn(x) - y
    for _ in range(max_iter):
        err = np.linalg.norm(res, axis=1)
        if np.all(err < tol):
            return x
        jac = np.stack([(fn(x + h * eye[k]) - fn(x - h * eye[k])) / (2 * h) for k in range(3)], axis=2)
        jac[np.abs(np.linalg.det(jac)) < 1e-12] = eye  # singular: fall back to a plain fixed-point step
        step = np.linalg.solve(jac, res[..., None])[..., 0]
        step[err < tol] = 0.0
        # damping: halve the step where it does not reduce the residual
        t = np.ones(len(x))
        for _ in range(8):
            cand = x - t[:, None] * step
            new_res = fn(cand) - y
            worse = np.linalg.norm(new_res, axis=1) > err
            if not worse.any():
                break
            t[worse] *= 0.5
        x, res = cand, new_res
    err = np.linalg.norm(res, axis=1)
    if np.any(err >= tol):
        raise InversionError(f"inverse did not converge for {int((err >= tol).sum())} of {len(err)} points (max residual {err.max():.3g})")
    return x


def invert_displacement(disp: np.ndarray, *, iterations: int = 30, tol: float = 1e-4) -> tuple[np.ndarray, float]:
    """Dense inverse of ``T(x) = x + disp(x)`` on the same grid (voxel units).

    ``disp`` is ``(3, *shape)``. Returns ``(inv, residual)`` with
    ``T^-1(y) = y + inv(y)`` found by the fixed-point iteration
    ``inv(y) = -disp(y + inv(y))`` (converges when the displacement gradient
    is below 1), and the largest ``|T(T^-1(y)) - y|`` over points whose
    preimage lies inside the grid.
    """
    disp = np.asarray(disp, dtype=np.float64)
    grid = np.indices(disp.shape[1:], dtype=np.float64)
    hi = (np.array(disp.shape[1:], dtype=np.float64) - 1).reshape(-1, *([1] * (disp.ndim - 1)))

    def residual_of(inv: np.ndarray) -> tuple[np.ndarray, float]:
        pre = grid + inv
        at = np.stack([ndi.map_coordinates(d, pre, order=1, mode="nearest") for d in disp])
        inside = np.all((pre >= 0) & (pre <= hi), axis=0)
        err = np.linalg.norm(pre + at - grid, axis=0)
        return -at, float(err[inside].max()) if inside.any() else 0.0

    inv = -disp.copy()
    for _ in range(iterations):
        new, residual = residual_of(inv)
        if residual < tol:
            break
        inv = new
    return inv, residual_of(inv)[1]


# ----------------------------------------------------------------------------- deformations


def smooth_random_field(rng: np.random.Generator, nodes: tuple[int, ...], sigma_nodes: float | tuple[float, ...],
                        rms: float, channels: int = 3) -> np.ndarray:
    """Smooth Gaussian random field on a node grid, ``(channels, *nodes)``, scaled to RMS ``rms`` per channel."""
    out = np.empty((channels, *nodes), dtype=np.float64)
    for c in range(channels):
        f = ndi.gaussian_filter(rng.standard_normal(nodes), sigma_nodes, mode="reflect")
        f -= f.mean()
        out[c] = f * (rms / max(float(np.sqrt((f ** 2).mean())), 1e-12))
    return out


def random_affine(rng: np.random.Generator, *, max_rot_deg: float, max_shift: float, max_scale: float) -> np.ndarray:
    """4x4 matrix of a random rotation (each axis uniform in +-max_rot_deg), scaling
    (each axis uniform in 1 +- max_scale) and translation (uniform in +-max_shift)."""
    a = np.deg2rad(rng.uniform(-max_rot_deg, max_rot_deg, 3))
    cx, cy, cz = np.cos(a)
    sx, sy, sz = np.sin(a)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    m = np.eye(4)
    m[:3, :3] = rz @ ry @ rx @ np.diag(rng.uniform(1 - max_scale, 1 + max_scale, 3))
    m[:3, 3] = rng.uniform(-max_shift, max_shift, 3)
    return m


def apply_affine_about(matrix: np.ndarray, points: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Apply a 4x4 ``matrix`` to ``(N, 3)`` points with ``center`` as origin."""
    c = np.asarray(center, dtype=np.float64)
    # (3,3) @ (3,N) is much faster than (N,3) @ (3,3) with OpenBLAS
    return (matrix[:3, :3] @ (np.asarray(points, dtype=np.float64) - c).T).T + matrix[:3, 3] + c


def mass_effect_profile_limit(peak_mm: float, radius_mm: float) -> float:
    """Largest radial strain of :func:`mass_effect_pullback` (must stay below 1 for a bijection)."""
    return float(peak_mm * np.sqrt(np.e) / radius_mm)


def mass_effect_pullback(points_mm: np.ndarray, center_mm: np.ndarray, peak_mm: float, radius_mm: float) -> np.ndarray:
    """Pull-back map of a growing mass: points move toward ``center_mm`` by ``d(r)``.

    ``d(r) = peak * (r/r0) * exp((1 - (r/r0)^2) / 2)``: zero at the centre,
    ``peak`` mm at ``r = r0 = radius_mm``, Gaussian decay beyond. Used as
    ``follow_up(x) = baseline(P(x))``, tissue around the centre appears pushed
    outward in the follow-up (mass effect). The radial map ``r -> r - d(r)``
    is strictly increasing iff ``peak * sqrt(e) / r0 < 1`` (checked).
    """
    if mass_effect_profile_limit(peak_mm, radius_mm) >= 1.0:
        raise ValueError(f"mass effect peak {peak_mm} mm at radius {radius_mm} mm folds space (need peak*sqrt(e)/r0 < 1)")
    p = np.asarray(points_mm, dtype=np.float64)
    v = p - np.asarray(center_mm, dtype=np.float64)
    s = np.linalg.norm(v, axis=-1, keepdims=True) / radius_mm
    # d(r)/r = peak/r0 * exp((1 - s^2)/2): no division by r, smooth at the centre
    return p - v * (peak_mm / radius_mm) * np.exp(0.5 * (1.0 - s ** 2))


# ----------------------------------------------------------------------------- intensities


def bias_field(rng: np.random.Generator, shape: tuple[int, ...], *, step: float, sigma_nodes: float, strength: float) -> np.ndarray:
    """Smooth multiplicative bias ``exp(f)`` on ``shape`` (float32), ``f`` with RMS ``strength``."""
    nodes = node_shape(shape, step)
    log = smooth_random_field(rng, nodes, sigma_nodes, strength, channels=1)
    return np.exp(upsample_linear(log, shape)[0])


def rician_noise(rng: np.random.Generator, image: np.ndarray, sigma: float, mask: np.ndarray | None = None) -> np.ndarray:
    """Magnitude-MRI noise ``|I + n1 + i n2|`` (float32); voxels outside ``mask`` are left as they are."""
    out = np.asarray(image, dtype=np.float32).copy()
    idx = np.flatnonzero(mask) if mask is not None else slice(None)
    vals = out.reshape(-1)[idx]
    n = vals.size if mask is not None else out.size
    n1 = rng.standard_normal(n, dtype=np.float32) * sigma
    n2 = rng.standard_normal(n, dtype=np.float32) * sigma
    out.reshape(-1)[idx] = np.sqrt((vals + n1) ** 2 + n2 ** 2)
    return out


def fill_inplane(mask: np.ndarray) -> np.ndarray:
    """``mask`` plus every background region not connected to the x/y faces (fills the lungs, bowel gas)."""
    labels, _ = ndi.label(~mask)
    outside = np.unique(np.concatenate([labels[0].ravel(), labels[-1].ravel(), labels[:, 0].ravel(), labels[:, -1].ravel()]))
    return ~np.isin(labels, outside[outside > 0])


# ----------------------------------------------------------------------------- landmarks


def forstner_measure(image: np.ndarray, spacing: tuple[float, ...], *, sigma_grad_mm: float = 1.0,
                     sigma_int_mm: float = 2.0) -> np.ndarray:
    """Förstner interest measure ``det(M) / trace(M)`` of the 3D structure tensor ``M`` (float32).

    High where the image varies strongly in all three directions (corners,
    junctions, vessel branchings), low on edges and flat regions.
    """
    sp = np.asarray(spacing, dtype=np.float64)
    img = ndi.gaussian_filter(np.asarray(image, dtype=np.float32), sigma_grad_mm / sp)
    grads = [g.astype(np.float32) / s for g, s in zip(np.gradient(img), sp)]
    sig = sigma_int_mm / sp
    m = {}
    for i in range(3):
        for j in range(i, 3):
            m[i, j] = ndi.gaussian_filter(grads[i] * grads[j], sig)
    det = (m[0, 0] * (m[1, 1] * m[2, 2] - m[1, 2] ** 2)
           - m[0, 1] * (m[0, 1] * m[2, 2] - m[1, 2] * m[0, 2])
           + m[0, 2] * (m[0, 1] * m[1, 2] - m[1, 1] * m[0, 2]))
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    return (np.maximum(det, 0) / np.maximum(trace, 1e-12)).astype(np.float32)


def pick_maxima(measure: np.ndarray, mask: np.ndarray, spacing: tuple[float, ...], *, min_distance_mm: float,
                max_points: int, threshold: float = 0.0) -> np.ndarray:
    """Strongest local maxima of ``measure`` inside ``mask``, at least ``min_distance_mm`` apart.

    Returns ``(N, 3)`` integer voxel indices, strongest first (greedy non-maximum suppression).
    """
    sp = np.asarray(spacing, dtype=np.float64)
    size = np.maximum(3, 2 * np.round(min_distance_mm / 2 / sp).astype(int) + 1)
    peaks = (measure == ndi.maximum_filter(measure, size=tuple(size))) & mask & (measure > threshold)
    idx = np.argwhere(peaks)
    if len(idx) == 0:
        return idx.reshape(0, 3)
    idx = idx[np.argsort(-measure[tuple(idx.T)], kind="stable")]
    mm = idx * sp
    keep: list[int] = []
    chosen = np.empty((max_points, 3))
    for i, p in enumerate(mm):
        if keep and np.min(np.sum((chosen[: len(keep)] - p) ** 2, axis=1)) < min_distance_mm ** 2:
            continue
        chosen[len(keep)] = p
        keep.append(i)
        if len(keep) >= max_points:
            break
    return idx[keep]


def block_mean(array: np.ndarray, factors: tuple[int, ...]) -> np.ndarray:
    """Average non-overlapping blocks (crops the end of each axis to a multiple of its factor); float32."""
    a = np.asarray(array)
    crop = tuple(slice(0, (n // f) * f) for n, f in zip(a.shape, factors))
    a = a[crop].astype(np.float32)
    new = []
    for n, f in zip(a.shape, factors):
        new += [n // f, f]
    return a.reshape(new).mean(axis=tuple(range(1, 2 * a.ndim, 2)))


# ----------------------------------------------------------------------------- output folders and workers


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def build_folder(out_dir: str | Path, build: Callable[[Path], None], *, overwrite: bool = False) -> Path:
    """Run ``build(tmp)`` into a temporary sibling folder, then rename it to ``out_dir``.

    A killed run leaves ``out_dir`` untouched (at worst a hidden ``.NAME.part-PID-*``
    folder, removed by the next run once PID is gone). An existing non-empty
    ``out_dir`` is refused unless ``overwrite``.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(out, "expected a folder to write the dataset into, found a file")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(out, "output folder already holds data; refusing to overwrite (pass overwrite=True)")
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.part-*"):
        pid = stale.name.split(".part-", 1)[1].split("-", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.part-{os.getpid()}-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the finished folder gets normal permissions
    try:
        build(tmp)
        if out.is_dir() and any(out.iterdir()):
            if not overwrite:
                raise InputError(out, "output folder appeared while generating; refusing to overwrite")
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-{os.getpid()}-", dir=out.parent))
            os.replace(out, old / "x")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


_WORKER_STATE: dict = {}


def _init_worker(source) -> None:
    _WORKER_STATE["source"] = source


def _call_worker(job: tuple[Callable, tuple]):
    fn, args = job
    return fn(_WORKER_STATE["source"], *args)


def run_jobs(fn: Callable, source, jobs: Sequence[tuple], *, workers: int) -> list:
    """``[fn(source, *args) for args in jobs]``, in ``workers`` processes when > 1.

    Workers are forked where the platform allows it (they inherit ``source``
    without a copy, and a caller's script needs no ``if __name__ == "__main__"``
    guard); elsewhere they are spawned and ``source`` is sent once to each.
    ``fn`` must be a module-level function. Results come back in job order.
    """
    if workers <= 1 or len(jobs) <= 1:
        return [fn(source, *args) for args in jobs]
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    kwargs = {} if method == "fork" else {"initializer": _init_worker, "initargs": (source,)}
    _WORKER_STATE["source"] = source
    try:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx, **kwargs) as pool:
            return list(pool.map(_call_worker, [(fn, tuple(args)) for args in jobs]))
    finally:
        _WORKER_STATE.pop("source", None)


def default_workers(n_jobs: int) -> int:
    """Worker processes for ``n_jobs`` cases: the CPUs this process may use, at most 4 (memory)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 4, n_jobs))


def ensure_folder(root: Path, name: str, is_complete, is_ours, generate, **options) -> Path:
    """Return ``root`` once it holds a complete generated dataset, generating it if needed.

    ``is_complete(root)`` says whether it is finished; ``is_ours(path)`` whether an entry of
    ``root`` can be one of ours (an incomplete folder of ours is rebuilt; anything else is
    refused); ``generate(root, overwrite=..., **options)`` builds it. If another process
    finishes the folder first, its result is used.
    """
    if is_complete(root):
        return root
    overwrite = False
    if root.is_dir() and any(root.iterdir()):
        if not all(is_ours(p) for p in root.iterdir()):
            raise InputError(root, f"expected a {name} folder (or none), found other data; pass another root")
        overwrite = True
    try:
        return generate(root, overwrite=overwrite, **options)
    except InputError:
        if is_complete(root):  # another process finished it first
            return root
        raise
