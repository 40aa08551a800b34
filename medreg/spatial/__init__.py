"""Pure-torch spatial core: grids, transforms, warping, composition, Jacobians.

The coordinate convention (written once, here and in the README)
----------------------------------------------------------------
* Image tensors are ``(B, C, *spatial)`` with the spatial axes in array order
  (2D ``(B, C, H, W)``, 3D ``(B, C, D, H, W)``).
* Coordinate and displacement tensors are ``(B, D, *spatial)`` (or ``(B, D, N)``
  for point sets): channel ``c`` is spatial axis ``c`` in array order. Only
  :func:`medreg.spatial.grid.to_grid_sample` reverses the order for
  ``torch.nn.functional.grid_sample``; nothing else does.
* Units are *normalized* with ``align_corners=False``: along an axis of ``n``
  voxels, the centre of voxel ``i`` sits at ``(2 i + 1) / n - 1``, so the image
  covers ``[-1, 1]`` edge to edge. With this choice 2x average pooling and
  upsampling line up exactly (a coarse voxel centre is the centre of its fine
  block), so a transform predicted at half resolution is evaluated unchanged at
  full resolution.
* Direction: every registration call is ``model(moving, fixed)`` and returns
  ``phi``, a callable that maps points of the fixed image's space to points of
  the moving image's space (a pull-back): ``warped = moving ∘ phi ≈ fixed``.
  This is ITK's and ANTs' direction for a registration's forward transform.
* Regularizers and Jacobians work in voxel units (displacement in voxels,
  derivatives per voxel), so a weight means the same at every pyramid level.
* World space (mm, affines) never enters this package: ``medreg.io``,
  ``medreg.metrics`` and ``medreg.baselines`` handle it.
"""

from medreg.spatial.grid import (
    identity_grid,
    normalized_to_voxel,
    sample,
    to_grid_sample,
    voxel_to_normalized,
    voxel_scale,
)
from medreg.spatial.transforms import (
    Affine,
    Compose,
    DisplacementField,
    Identity,
    Transform,
    integrate_velocity,
    warp,
)
from medreg.spatial.jacobian import folding_fraction, jacobian_determinant

__all__ = [
    "Affine", "Compose", "DisplacementField", "Identity", "Transform", "folding_fraction",
    "identity_grid", "integrate_velocity", "jacobian_determinant", "normalized_to_voxel",
    "sample", "to_grid_sample", "voxel_scale", "voxel_to_normalized", "warp",
]
