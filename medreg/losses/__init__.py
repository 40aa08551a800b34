"""Similarity and regularity terms (functional form plus thin ``nn.Module`` wrappers)."""

from medreg.losses.inverse_consistency import gradicon_loss
from medreg.losses.regularizers import BendingEnergy, Diffusion, bending_energy_loss, diffusion_loss
from medreg.losses.similarity import LNCC, NCC, SSD, lncc_loss, ncc_loss, ssd_loss

SIMILARITIES = {"ssd": ssd_loss, "ncc": ncc_loss, "lncc": lncc_loss}
REGULARIZERS = {"diffusion": diffusion_loss, "bending": bending_energy_loss}

__all__ = [
    "BendingEnergy", "Diffusion", "LNCC", "NCC", "REGULARIZERS", "SIMILARITIES", "SSD",
    "bending_energy_loss", "diffusion_loss", "gradicon_loss", "lncc_loss", "ncc_loss", "ssd_loss",
]
