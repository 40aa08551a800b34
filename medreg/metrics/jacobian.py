"""Jacobian-based regularity metrics of a dense transform, in world millimetres.

A method's output is a displacement ``u`` on the fixed voxel grid, in LPS mm,
such that ``phi(x) = x + u(x)`` maps fixed points to moving points. Its
Jacobian determinant is taken with respect to world position ``x`` (not the
voxel index), so anisotropic spacing and oblique or flipped directions are
handled through the affine:

    x = M v + t          (v: voxel index, M: the voxel -> LPS part of the affine)
    dphi/dx = I + (du/dv) M^-1

``du/dv`` uses central differences inside and one-sided differences at the
borders (``numpy.gradient``). The determinant does not depend on whether the
world frame is LPS or RAS as long as ``u`` and ``x`` share it; the affine is
nibabel's voxel -> RAS and ``u`` is LPS, so the RAS affine is converted first.

The torch module ``medreg.spatial`` has its own Jacobian in normalized
coordinates for training; this one scores any method's output.
"""

from __future__ import annotations

import numpy as np

from medreg.geometry.frames import RAS_TO_LPS

_RAS_TO_LPS = RAS_TO_LPS[:3, :3]


def _det3(j: np.ndarray) -> np.ndarray:
    """Determinant of (..., 3, 3) matrices by the cofactor formula (no large temporaries)."""
    return (
        j[..., 0, 0] * (j[..., 1, 1] * j[..., 2, 2] - j[..., 1, 2] * j[..., 2, 1])
        - j[..., 0, 1] * (j[..., 1, 0] * j[..., 2, 2] - j[..., 1, 2] * j[..., 2, 0])
        + j[..., 0, 2] * (j[..., 1, 0] * j[..., 2, 1] - j[..., 1, 1] * j[..., 2, 0])
    )


def jacobian_determinant_mm(
    displacement_lps_mm: np.ndarray, affine: np.ndarray, *, slab: int = 16
) -> np.ndarray:
    """Determinant of the Jacobian of ``x -> x + u(x)`` at every voxel of the grid.

    Args:
        displacement_lps_mm: (X, Y, Z, 3) displacement in LPS mm on the voxel grid.
        affine: 4x4 voxel -> RAS mm affine of that grid (nibabel convention).
        slab: number of x-slices processed at once (bounds memory on large volumes).

    Returns:
        (X, Y, Z) float64 determinants (1 everywhere for the zero field).
    """
    u = np.asarray(displacement_lps_mm)
    if u.ndim != 4 or u.shape[-1] != 3:
        raise ValueError(f"expected a displacement of shape (X, Y, Z, 3), found {u.shape}")
    if min(u.shape[:3]) < 2:
        raise ValueError(f"expected at least 2 voxels along each axis, found {u.shape[:3]}")
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4):
        raise ValueError(f"expected a 4x4 affine, found {a.shape}")
    m_lps = _RAS_TO_LPS @ a[:3, :3]
    m_inv = np.linalg.inv(m_lps)

    nx = u.shape[0]
    out = np.empty(u.shape[:3], dtype=np.float64)
    for start in range(0, nx, slab):
        stop = min(start + slab, nx)
        lo, hi = max(start - 1, 0), min(stop + 1, nx)  # one-voxel halo for central differences
        block = u[lo:hi].astype(np.float64, copy=False)
        grad = np.empty(block.shape[:3] + (3, 3), dtype=np.float64)  # [..., component, voxel axis]
        for c in range(3):
            for ax, g in enumerate(np.gradient(block[..., c], axis=(0, 1, 2))):
                grad[..., c, ax] = g
        jac = grad[start - lo : start - lo + (stop - start)] @ m_inv
        jac[..., 0, 0] += 1.0
        jac[..., 1, 1] += 1.0
        jac[..., 2, 2] += 1.0
        out[start:stop] = _det3(jac)
    return out


def folding_fraction(detj: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Share of voxels (inside ``mask`` if given) with ``det J <= 0``, as a fraction in [0, 1].

    Reports show it as a percentage (multiply by 100).
    """
    d = np.asarray(detj)
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape != d.shape:
            raise ValueError(f"expected a mask of shape {d.shape}, found {m.shape}")
        d = d[m]
    if d.size == 0:
        return float("nan")
    return float(np.mean(d <= 0))


def sdlogj(
    detj: np.ndarray,
    *,
    crop: int = 2,
    variant: str = "clip",
    eps: float = 1e-9,
    mask: np.ndarray | None = None,
) -> float:
    """Standard deviation of the log Jacobian determinant, after cropping ``crop`` border voxels.

    Variants:
        ``'plus3'``: Learn2Reg's score, ``std(log(clip(detJ + 3, eps, 1e9)))``. The +3
            keeps folded voxels (det in (-3, 0]) finite, so it penalises folding mildly;
            reproduce it only to compare with Learn2Reg numbers.
        ``'clip'``: the plain score, ``std(log(clip(detJ, eps, 1e9)))``: folded voxels are
            clipped to ``eps`` (default 1e-9, log = -20.7), so any folding inflates it.

    Args:
        detj: (X, Y, Z) determinants, e.g. from :func:`jacobian_determinant_mm`.
        crop: voxels dropped at each border (border Jacobians use one-sided differences).
        variant: ``'clip'`` or ``'plus3'``.
        eps: lower clip value.
        mask: optional boolean mask on the uncropped grid; only voxels inside count.
    """
    d = np.asarray(detj, dtype=np.float64)
    if variant == "plus3":
        d = d + 3.0
    elif variant != "clip":
        raise ValueError(f"expected variant 'clip' or 'plus3', found {variant!r}")
    if crop > 0:
        inner = tuple(slice(crop, -crop) for _ in range(d.ndim))
        d = d[inner]
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)[inner]
    values = np.log(np.clip(d, eps, 1e9))
    if mask is not None:
        values = values[np.asarray(mask, dtype=bool)]
    if values.size == 0:
        return float("nan")
    return float(values.std())
