"""Inner networks: the seed's FCNet, a 2D/3D UNet, an affine regressor."""

from medreg.networks.affine_net import AffineNet
from medreg.networks.fcnet import FCNet
from medreg.networks.unet import UNet

__all__ = ["AffineNet", "FCNet", "UNet"]
