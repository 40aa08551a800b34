"""What each step of a multistep model does: the seed experiment's question, as numbers.

A multistep model (nested :class:`TwoStep` around one or several inner steps) applies its
steps one after another, each to the moving image warped by the steps before it. If the
trained network were an optimiser of its training loss ``L(u) = sim(moving ∘ (x + u), fixed)
+ lam * reg(u)``, every step's update of the total displacement ``u`` would be a descent
direction of ``L``. :func:`probe_steps` measures, after each step ``k``:

- the loss, its similarity and regularity terms, and the share of folded voxels;
- the step's update ``du_k = u_k - u_{k-1}`` (RMS, voxels) and its cosine with ``-grad L(u_{k-1})``
  (``1``: exactly a gradient step; ``> 0``: a descent direction; ``< 0``: an ascent direction),
  also against the similarity alone and against any other loss given as a *target* (for the
  MNIST seed: the distance to the mean five, i.e. "is the step turning the digit into a five?");
- the loss change the step causes.

Cosines and norms are in voxel units (``u`` scaled by ``n / 2`` per axis, the gradient by its
inverse), so they do not depend on the grid's aspect ratio. Per-pair values are kept, so that
spreads over pairs (and, by the callers, over training seeds) can be shown.

:func:`model_steps` splits a model into its steps (the cumulative map after each leaf step of
the ``TwoStep``/``Downsample`` tree; the last one is ``model(moving, fixed)``);
:func:`unrolled_steps` applies the whole trained model again and again to its own output (2x,
4x the steps it was trained with) to see whether it keeps lowering the loss, stalls or diverges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from medreg.losses import REGULARIZERS, SIMILARITIES
from medreg.registration.wrappers import Downsample, RegistrationModule, TwoStep, compose_maps
from medreg.spatial.grid import identity_grid, sample, voxel_scale
from medreg.spatial.jacobian import folding_fraction, jacobian_determinant
from medreg.spatial.transforms import Identity, Transform, warp

# a target: (warped moving image, displacement in normalized units) -> one differentiable value per pair
Target = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# a measure: warped moving image -> one value per pair (no gradient needed)
Measure = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class StepLoss:
    """The training loss per pair: ``similarity(warped, fixed) + lam * regularizer(u)``."""

    similarity: Callable = SIMILARITIES["lncc"]
    regularizer: Callable = REGULARIZERS["diffusion"]
    lam: float = 1.0
    similarity_kwargs: dict = field(default_factory=dict)

    @classmethod
    def from_objective(cls, objective) -> "StepLoss":
        """The loss of a :class:`medreg.registration.RegistrationObjective` (GradICON is not part of it)."""
        return cls(objective.similarity, objective.regularizer, float(objective.lam), dict(objective.similarity_kwargs))

    def terms(self, moving: torch.Tensor, fixed: torch.Tensor,
              disp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(total, similarity, regularity, warped)``, the first three ``(B,)``."""
        grid = identity_grid(fixed.shape[2:], fixed.device, fixed.dtype)
        warped = sample(moving, grid + disp)
        sim = self.similarity(warped, fixed, reduction="none", **self.similarity_kwargs)
        reg = self.regularizer(disp, reduction="none")
        return sim + self.lam * reg, sim, reg, warped


def model_steps(model: RegistrationModule, moving: torch.Tensor, fixed: torch.Tensor,
                base: Transform | None = None, compose: str = "lazy") -> list[Transform]:
    """The cumulative map after each step of ``model`` (its ``TwoStep`` / ``Downsample`` tree, leaves in order).

    Without ``base`` this is exactly what ``model(moving, fixed)`` computes, step by step (the last
    map is the model's). With ``base``, the model continues from the map ``base``: every step sees
    the original moving image warped by the whole map before it (one interpolation, as a
    multistep model's own steps do), and every map returned starts with ``base`` (composed by
    ``compose``, or by each ``TwoStep``'s own rule inside it).
    """
    shape = fixed.shape[2:]
    if isinstance(model, TwoStep):
        first = model_steps(model.a, moving, fixed, base, model.compose)
        phi_a = first[-1]
        if base is not None:
            return first + model_steps(model.b, moving, fixed, phi_a, model.compose)
        second = model_steps(model.b, warp(moving, phi_a, shape), fixed)
        return first + [compose_maps(phi_a, s, shape, model.compose, fixed.device, fixed.dtype) for s in second]
    if base is not None:  # a leaf or a Downsample: run it on the warped pair, then put base first
        inner = model_steps(model, warp(moving, base, shape), fixed)
        return [compose_maps(base, s, shape, compose, fixed.device, fixed.dtype) for s in inner]
    if isinstance(model, Downsample):
        return model_steps(model.a, *model.pooled(moving, fixed))
    return [model(moving, fixed)]


def count_steps(model: RegistrationModule) -> int:
    """How many steps :func:`model_steps` finds in ``model``."""
    if isinstance(model, TwoStep):
        return count_steps(model.a) + count_steps(model.b)
    if isinstance(model, Downsample):
        return count_steps(model.a)
    return 1


def unrolled_steps(model: RegistrationModule, moving: torch.Tensor, fixed: torch.Tensor,
                   repeats: int) -> list[Transform]:
    """The steps of ``model`` applied ``repeats`` times, each repeat continuing from the map before it.

    With ``repeats=1`` this is :func:`model_steps`; every further repeat is ``model_steps(...,
    base=the map so far)``, so a model of ``n`` applications of one shared step unrolled twice is
    ``2n`` applications of it. The maps compose the way the model's outer ``TwoStep`` does.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    compose = model.compose if isinstance(model, TwoStep) else "lazy"
    maps = model_steps(model, moving, fixed)
    for _ in range(repeats - 1):
        maps += model_steps(model, moving, fixed, base=maps[-1], compose=compose)
    return maps


@dataclass
class StepProbe:
    """Per-step, per-pair figures: every tensor is ``(K + 1, B)``, row ``k`` after ``k`` steps (row 0: before).

    ``cosine[name][k]`` and ``loss_change[k]`` describe step ``k`` (row 0 is NaN).
    """

    loss: torch.Tensor
    similarity: torch.Tensor
    regularity: torch.Tensor
    folding: torch.Tensor
    update_rms: torch.Tensor
    loss_change: torch.Tensor
    cosine: dict[str, torch.Tensor]
    values: dict[str, torch.Tensor]
    trained_steps: int | None = None

    @property
    def steps(self) -> int:
        return self.loss.shape[0] - 1

    def rows(self) -> list[dict[str, float]]:
        """One row per step with the mean and standard deviation over pairs of every figure."""
        out = []
        series = {"loss": self.loss, "similarity": self.similarity, "regularity": self.regularity,
                  "folding": self.folding, "update_rms_vox": self.update_rms, "loss_change": self.loss_change,
                  **{f"cos_{k}": v for k, v in self.cosine.items()}, **self.values}
        for k in range(self.steps + 1):
            row: dict[str, float] = {"step": k}
            if self.trained_steps is not None:
                row["beyond_training"] = int(k > self.trained_steps)
            for name, t in series.items():
                v = t[k].double()
                row[f"{name}_mean"] = float(v.mean()) if not torch.isnan(v).all() else math.nan
                row[f"{name}_sd"] = float(v.std(unbiased=False)) if not torch.isnan(v).all() else math.nan
            row["descent_share"] = float((self.loss_change[k] < 0).double().mean()) if k else math.nan
            out.append(row)
        return out


def _cosine(update: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    a, b = update.flatten(1).double(), direction.flatten(1).double()
    den = a.norm(dim=1) * b.norm(dim=1)
    cos = (a * b).sum(1) / den.clamp_min(1e-300)
    return torch.where(den > 0, cos, torch.full_like(cos, math.nan))


def probe_steps(maps: list[Transform], moving: torch.Tensor, fixed: torch.Tensor, loss: StepLoss,
                targets: dict[str, Target] | None = None, measures: dict[str, Measure] | None = None,
                trained_steps: int | None = None) -> StepProbe:
    """Measure every step of the map sequence ``maps`` (``maps[k-1]`` = the map after ``k`` steps).

    ``targets`` are further losses whose descent cosine is reported (``cos_<name>``) beside
    ``loss`` (the training loss) and ``similarity``; ``measures`` are values recorded per step.
    """
    targets = dict(targets or {})
    measures = dict(measures or {})
    shape = fixed.shape[2:]
    grid = identity_grid(shape, fixed.device, fixed.dtype)
    scale = voxel_scale(shape, grid)
    all_maps = [Identity()] + list(maps)
    rec: dict[str, list[torch.Tensor]] = {k: [] for k in ("loss", "similarity", "regularity", "folding", "update")}
    grads: dict[str, list[torch.Tensor]] = {k: [] for k in ("loss", "similarity", *targets)}
    values: dict[str, list[torch.Tensor]] = {k: [] for k in (*targets, *measures)}
    disps = []
    for phi in all_maps:
        with torch.no_grad():
            coords = phi(grid).expand(fixed.shape[0], *grid.shape[1:]).to(fixed.dtype)
        disp = (coords - grid).detach().requires_grad_(True)
        with torch.enable_grad():
            total, sim, reg, warped = loss.terms(moving, fixed, disp)
            named = {"loss": total, "similarity": sim}
            for name, fn in targets.items():
                named[name] = fn(warped, disp)
            for i, (name, value) in enumerate(named.items()):
                g, = torch.autograd.grad(value.sum(), disp, retain_graph=i < len(named) - 1)
                grads[name].append((g / scale).detach())  # the gradient with respect to u in voxels
        with torch.no_grad():
            for name in targets:
                values[name].append(named[name].detach())
            for name, fn in measures.items():
                values[name].append(fn(warped.detach()).detach())
            rec["loss"].append(total.detach())
            rec["similarity"].append(sim.detach())
            rec["regularity"].append(reg.detach())
            rec["folding"].append(folding_fraction(jacobian_determinant(coords.float())))
        disps.append(disp.detach() * scale)
    n = len(all_maps)
    nan = torch.full((fixed.shape[0],), math.nan, dtype=torch.float64)
    update_rms = [torch.zeros_like(nan)]
    cosine = {name: [nan] for name in grads}
    for k in range(1, n):
        du = disps[k] - disps[k - 1]
        update_rms.append(du.pow(2).sum(1).flatten(1).mean(1).sqrt().double())
        for name in grads:
            cosine[name].append(_cosine(du, -grads[name][k - 1]))
    loss_t = torch.stack(rec["loss"]).double()
    change = torch.cat([nan.unsqueeze(0), loss_t[1:] - loss_t[:-1]])
    return StepProbe(loss=loss_t, similarity=torch.stack(rec["similarity"]).double(),
                     regularity=torch.stack(rec["regularity"]).double(), folding=torch.stack(rec["folding"]).double(),
                     update_rms=torch.stack(update_rms), loss_change=change,
                     cosine={k: torch.stack(v) for k, v in cosine.items()},
                     values={k: torch.stack(v).double() for k, v in values.items()}, trained_steps=trained_steps)


__all__ = ["StepLoss", "StepProbe", "count_steps", "model_steps", "probe_steps", "unrolled_steps"]
