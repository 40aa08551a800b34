"""The one seam between voxel grids and world millimetres.

- :mod:`~medreg.geometry.frames`: the one RAS <-> LPS flip and the point
  conversions between 0-based voxel indices, RAS mm (nibabel) and LPS mm (ITK,
  ANTs, BraTS-Reg CSV).
- :class:`~medreg.geometry.grid.Grid`: a voxel grid (voxel -> RAS affine and a
  shape) with its index / normalized / LPS maps and the grids derived from it
  (resampled, cropped, padded, one slice).
- :class:`~medreg.geometry.image_geometry.ImageGeometry`: an input file's grid and its
  preprocessed grid (what preprocessing did to one image, exactly invertible).
- :class:`~medreg.geometry.world.WorldTransform`: a :mod:`medreg.spatial`
  transform between the normalized coordinates of a fixed and a moving grid, as a
  map of LPS mm points; it samples its displacement on any grid and warps images
  with ITK's border rule (linear or nearest; the border value within half a voxel
  outside the image, 0 beyond).

Every caller that needs world coordinates (``medreg register``/``apply``, the
evaluation metrics, Dice, QC figures, validation TRE, the baselines' results)
goes through here. This room knows affines and torch; it reads no files.
"""

from medreg.geometry.frames import (RAS_TO_LPS, index_to_normalized, lps_matrix, lps_to_ras, lps_to_voxel,
                                    ras_to_lps, ras_to_voxel, voxel_to_lps, voxel_to_ras)
from medreg.geometry.grid import Grid
from medreg.geometry.image_geometry import ImageGeometry
from medreg.geometry.world import WorldTransform, warp_image

__all__ = ["Grid", "ImageGeometry", "RAS_TO_LPS", "WorldTransform", "index_to_normalized", "lps_matrix", "lps_to_ras", "lps_to_voxel",
           "ras_to_lps", "ras_to_voxel", "voxel_to_lps", "voxel_to_ras", "warp_image"]
