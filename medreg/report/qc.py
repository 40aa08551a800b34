"""QC strip of one (pair, method): moving, fixed, warped, difference, checkerboard, deformed grid.

One axial slice (the middle of the fixed grid along the last array axis) is shown, with the
first array axis to the right and the second upwards (``imshow(slice.T, origin='lower')``).
The warped image is ``moving(phi(x))`` evaluated on that slice only, so it is cheap for any
volume size. The deformed grid draws the in-plane part of ``phi`` (in voxels of the fixed
grid) over the fixed image: straight lines where the method did not move anything.
"""

from __future__ import annotations

import io

import numpy as np

from medreg.geometry import Grid, lps_matrix, warp_image


def warp_slice(moving: np.ndarray, moving_affine: np.ndarray, slice_displacement_lps: np.ndarray,
               fixed_affine: np.ndarray, k: int) -> np.ndarray:
    """``moving(x + u(x))`` on the fixed slice ``[:, :, k]`` (:func:`medreg.geometry.warp_image`: ITK's rule).

    ``slice_displacement_lps`` is ``u[:, :, k]``, shape (X, Y, 3), LPS mm.
    """
    u = np.asarray(slice_displacement_lps, np.float32)
    fixed_slice = Grid(fixed_affine, (u.shape[0], u.shape[1], k + 1)).slice(k)
    out = warp_image(np.asarray(moving, np.float32), Grid(moving_affine, moving.shape[:3]), fixed_slice, u[:, :, None])
    return out[:, :, 0]


def displacement_voxels(displacement_lps: np.ndarray, fixed_affine: np.ndarray, k: int) -> np.ndarray:
    """The displacement on slice ``k`` in voxel units of the fixed grid, (X, Y, 3)."""
    m_lps = lps_matrix(fixed_affine)[:3, :3]
    return displacement_lps[:, :, k].astype(np.float64) @ np.linalg.inv(m_lps).T


def checkerboard(a: np.ndarray, b: np.ndarray, tiles: int = 8) -> np.ndarray:
    """``a`` and ``b`` in alternating square tiles (about ``tiles`` across the longer side)."""
    size = max(1, max(a.shape) // tiles)
    ii, jj = np.meshgrid(np.arange(a.shape[0]) // size, np.arange(a.shape[1]) // size, indexing="ij")
    return np.where((ii + jj) % 2 == 0, a, b)


def qc_strip_png(fixed: np.ndarray, moving: np.ndarray, moving_affine: np.ndarray, displacement_lps: np.ndarray,
                 fixed_affine: np.ndarray, *, title: str = "", k: int | None = None, dpi: int = 80) -> bytes:
    """PNG bytes of the QC strip (see the module docstring) for 3D ``fixed``/``moving`` (moving on any grid)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    k = fixed.shape[2] // 2 if k is None else int(k)
    f = np.asarray(fixed[:, :, k], np.float32)
    u_k = np.asarray(displacement_lps[:, :, k])
    warped = warp_slice(moving, moving_affine, u_k, fixed_affine, k)
    before = warp_slice(moving, moving_affine, np.zeros_like(u_k), fixed_affine, k)
    lo, hi = np.percentile(np.concatenate([f.ravel(), warped.ravel()]), [1, 99.5])
    hi = hi if hi > lo else lo + 1.0
    diff = f - warped
    dmax = float(np.percentile(np.abs(diff), 99.5)) or 1.0
    disp = displacement_voxels(displacement_lps, fixed_affine, k)

    aspect = f.shape[1] / f.shape[0]
    width, top = 1.7, (0.45 if title else 0.25)  # inches: panel width, space above the panels for titles
    height = width * aspect + top + 0.04
    fig, axes = plt.subplots(1, 6, figsize=(6 * width + 0.1, height), dpi=dpi)
    fig.subplots_adjust(left=0.005, right=0.995, bottom=0.04 / height, top=1 - top / height, wspace=0.04)
    panels = [("moving", before, "gray", (lo, hi)), ("fixed", f, "gray", (lo, hi)), ("warped", warped, "gray", (lo, hi)),
              ("fixed - warped", diff, "RdBu_r", (-dmax, dmax)), ("checkerboard", checkerboard(f, warped), "gray", (lo, hi))]
    for ax, (name, img, cmap, (vmin, vmax)) in zip(axes, panels):
        ax.imshow(img.T, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(name, fontsize=8)
    ax = axes[5]
    ax.imshow(f.T, origin="lower", cmap="gray", vmin=lo, vmax=hi * 2.5, interpolation="nearest")
    step = max(2, max(f.shape) // 16)
    ii, jj = np.meshgrid(np.arange(f.shape[0]), np.arange(f.shape[1]), indexing="ij")
    x, y = ii + disp[..., 0], jj + disp[..., 1]
    for j in range(0, f.shape[1], step):
        ax.plot(x[:, j], y[:, j], color="#e8a100", lw=0.6)
    for i in range(0, f.shape[0], step):
        ax.plot(x[i, :], y[i, :], color="#e8a100", lw=0.6)
    ax.set_xlim(-0.5, f.shape[0] - 0.5)
    ax.set_ylim(-0.5, f.shape[1] - 0.5)
    ax.set_title("deformed grid", fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.text(0.005, 1 - 0.06 / height, title, fontsize=9, ha="left", va="top", fontweight="bold")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()
