"""Training objective: similarity + lambda * regularity (+ GradICON), read by field name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn

from medreg.losses import REGULARIZERS, SIMILARITIES, gradicon_loss
from medreg.spatial.jacobian import folding_fraction, jacobian_determinant
from medreg.spatial.grid import identity_grid, sample
from medreg.spatial.transforms import Transform


@dataclass
class ObjectiveResult:
    total: torch.Tensor
    similarity: torch.Tensor
    regularity: torch.Tensor
    inverse_consistency: torch.Tensor
    folding_fraction: torch.Tensor  # mean share of voxels with det J <= 0 (no gradient)
    warped: torch.Tensor
    phi: Transform

    def scalars(self) -> dict[str, float]:
        return {k: float(getattr(self, k).detach()) for k in
                ("total", "similarity", "regularity", "inverse_consistency", "folding_fraction")}


class RegistrationObjective(nn.Module):
    """Wraps a registration module; ``forward(moving, fixed)`` returns an :class:`ObjectiveResult`.

    ``similarity`` and ``regularizer`` are names from ``medreg.losses`` or callables.
    The regularizer acts on the displacement of ``phi`` sampled on the fixed grid.
    With ``gradicon > 0`` the model also registers fixed to moving and the GradICON
    penalty of the pair of maps is added with that weight.
    """

    def __init__(self, model: nn.Module, similarity: str | Callable = "lncc", regularizer: str | Callable = "diffusion",
                 lam: float = 1.0, gradicon: float = 0.0, similarity_kwargs: dict | None = None):
        super().__init__()
        self.model = model
        self.similarity = SIMILARITIES[similarity] if isinstance(similarity, str) else similarity
        self.regularizer = REGULARIZERS[regularizer] if isinstance(regularizer, str) else regularizer
        self.similarity_kwargs = dict(similarity_kwargs or {})
        self.lam = lam
        self.gradicon = gradicon

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> ObjectiveResult:
        shape = fixed.shape[2:]
        phi = self.model(moving, fixed)
        coords = phi.on_grid(shape, fixed.device, fixed.dtype)
        warped = sample(moving, coords)
        sim = self.similarity(warped, fixed, **self.similarity_kwargs)
        disp = coords - identity_grid(shape, fixed.device, fixed.dtype)
        reg = self.regularizer(disp)
        total = sim + self.lam * reg
        ic = torch.zeros((), device=fixed.device)
        if self.gradicon > 0:
            phi_back = self.model(fixed, moving)
            ic = gradicon_loss(phi, phi_back, shape, device=fixed.device, dtype=fixed.dtype)
            total = total + self.gradicon * ic
        with torch.no_grad():
            fold = folding_fraction(jacobian_determinant(coords.detach().float())).mean()
        return ObjectiveResult(total=total, similarity=sim, regularity=reg, inverse_consistency=ic,
                               folding_fraction=fold, warped=warped, phi=phi)



def objective_from_config(model: nn.Module, loss) -> RegistrationObjective:
    """The training objective of a config's ``loss`` section (similarity, regularizer, lam, GradICON, window)."""
    kwargs = {"window": loss.window} if loss.similarity == "lncc" else {}
    return RegistrationObjective(model, loss.similarity, loss.regularizer, lam=loss.lam, gradicon=loss.gradicon,
                                 similarity_kwargs=kwargs)
