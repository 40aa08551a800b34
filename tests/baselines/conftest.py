"""Synthetic image pairs with a known translation, for the baseline tests."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

# Gaussian blobs (centre in voxels, sigma in voxels, amplitude): an asymmetric pattern
# that rigid/affine registration can lock onto without ambiguity.
BLOBS = [
    ((12.0, 10.0, 14.0), 3.0, 1.0),
    ((20.0, 18.0, 12.0), 2.5, 0.8),
    ((16.0, 22.0, 20.0), 3.5, 0.6),
    ((9.0, 16.0, 22.0), 2.0, 0.9),
    ((22.0, 9.0, 18.0), 2.0, 0.7),
]


def blob_image(shape: tuple[int, int, int], shift_vox=(0.0, 0.0, 0.0), blobs=BLOBS) -> np.ndarray:
    """float32 image whose features sit at ``centre + shift_vox`` (voxel units, array order)."""
    grid = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    out = np.zeros(shape)
    for centre, sigma, amp in blobs:
        r2 = sum((grid[d] - centre[d] - shift_vox[d]) ** 2 for d in range(3))
        out += amp * np.exp(-r2 / (2.0 * sigma**2))
    return (1000.0 * out).astype(np.float32)


def write_pair(folder: Path, affine: np.ndarray, shift_vox, shape=(32, 32, 32), blobs=BLOBS) -> tuple[Path, Path]:
    """fixed.nii.gz and moving.nii.gz on the same grid; a fixed feature at v is at v + shift_vox in moving."""
    fixed = folder / "fixed.nii.gz"
    moving = folder / "moving.nii.gz"
    nib.save(nib.Nifti1Image(blob_image(shape, (0.0, 0.0, 0.0), blobs), affine), str(fixed))
    nib.save(nib.Nifti1Image(blob_image(shape, shift_vox, blobs), affine), str(moving))
    return fixed, moving


def oblique_anisotropic_affine() -> np.ndarray:
    """voxel -> RAS affine: spacing (1.0, 1.5, 2.0) mm, x and y flipped (LPS-like), rotated 0.2 rad about z."""
    c, s = np.cos(0.2), np.sin(0.2)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    a = np.eye(4)
    a[:3, :3] = rot @ np.diag([-1.0, -1.0, 1.0]) @ np.diag([1.0, 1.5, 2.0])
    a[:3, 3] = [12.0, 40.0, -7.0]
    return a


@pytest.fixture
def make_pair():
    """``write_pair(folder, affine, shift_vox, shape=..., blobs=...)`` as a fixture."""
    return write_pair


@pytest.fixture
def oblique_affine() -> np.ndarray:
    """See :func:`oblique_anisotropic_affine`."""
    return oblique_anisotropic_affine()


@pytest.fixture
def anisotropic_pair(tmp_path):
    """A pair on an oblique, anisotropic, flipped grid shifted by (3, 2, 0) voxels."""
    affine = oblique_anisotropic_affine()
    shift = np.array([3.0, 2.0, 0.0])
    fixed, moving = write_pair(tmp_path, affine, shift)
    return fixed, moving, affine, shift
