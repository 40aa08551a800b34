"""Evaluation metrics on numpy arrays: landmark errors, Jacobian regularity, label overlap.

World points are LPS millimetres, shape (N, 3); displacement fields are (X, Y, Z, 3)
LPS mm on the fixed voxel grid with nibabel's voxel -> RAS affine.
"""

from medreg.metrics.jacobian import folding_fraction, jacobian_determinant_mm, sdlogj
from medreg.metrics.landmarks import brats_mee, robustness, tre, tre_summary
from medreg.metrics.overlap import dice, mean_dice

__all__ = [
    "brats_mee",
    "dice",
    "folding_fraction",
    "jacobian_determinant_mm",
    "mean_dice",
    "robustness",
    "sdlogj",
    "tre",
    "tre_summary",
]
