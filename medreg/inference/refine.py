"""Instance optimisation of one registration, as an :class:`~medreg.inference.io_config.IOConfig` says.

- :func:`refine_field` (``mode="field"``): the stages in order, each refining the
  displacement with :mod:`medreg.registration.field_io` on its grid (half or full
  network resolution, a finer resampling of the data, or the data's own voxels).
- :func:`fine_tune_network` (``mode="network"``): a deep copy of the model is
  fine-tuned on the pair with the training loss; the model passed in is never changed.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch

from medreg.inference.io_config import IOConfig, Stage
from medreg.inference.prepare import PreparedPair
from medreg.registration.field_io import optimize_field, optimize_on_data
from medreg.registration.objective import objective_from_config
from medreg.spatial.transforms import Transform


def fine_tune_network(model: torch.nn.Module, loss: Any, moving: torch.Tensor, fixed: torch.Tensor, steps: int,
                      lr: float) -> tuple[torch.nn.Module, list[float]]:
    """Fine-tune a deep copy of ``model`` on one pair with the ``loss`` config; return (copy, loss per step)."""
    net = copy.deepcopy(model)
    for p in net.parameters():
        p.requires_grad_(True)
    objective = objective_from_config(net, loss)
    opt = torch.optim.Adam(list(net.parameters()), lr=float(lr))
    losses: list[float] = []
    for _ in range(int(steps)):
        opt.zero_grad(set_to_none=True)
        out = objective(moving, fixed)
        out.total.backward()
        opt.step()
        losses.append(float(out.total.detach()))
    net.eval()
    return net, losses


def _options(stage: Stage, loss: Any) -> dict[str, Any]:
    sim_kwargs = {}
    if loss.similarity == "lncc":
        window = int(loss.window) if stage.window is None else min(int(stage.window), int(loss.window))
        sim_kwargs = {"window": window}
    return dict(lam=stage.reg_scale * float(loss.lam), similarity=loss.similarity, regularizer=loss.regularizer,
                similarity_kwargs=sim_kwargs, coarsen=stage.coarsen, lr=stage.lr, lr_end=stage.lr_end,
                patience=stage.patience)


def refine_field(phi: Transform, io: IOConfig, loss: Any, pair: PreparedPair, device: torch.device,
                 levels: list[dict[str, Any]] | None = None) -> tuple[Transform, list[float]]:
    """Run ``io``'s stages on ``pair`` (network inputs on ``device``); return the refined ``phi`` and the losses.

    ``levels``, when given, gets one entry per stage run: its grid, the steps planned and
    run (a stage with ``patience`` may stop early), the seconds, and the first and last loss.
    """
    moving, fixed = pair.moving.to(device), pair.fixed.to(device)
    losses: list[float] = []
    for stage, n in zip(io.stages, io.stage_steps()):
        if n <= 0:
            continue
        t0 = time.perf_counter()
        options = _options(stage, loss)
        options["diffeomorphic"] = bool(io.diffeomorphic)
        if stage.grid in ("half", "network"):
            phi, part = optimize_field(phi, moving, fixed, steps=n, downsample=2 if stage.grid == "half" else 1,
                                       **options)
        elif stage.grid == "finer":
            m, f = pair.finer(stage.factor, device)
            phi, part = optimize_field(phi, m, f, steps=n, downsample=1,
                                       reg_coarsen=stage.coarsen if stage.reg_on_control_points else 1, **options)
            del m, f
        else:
            moving_to_net, fixed_to_net = pair.data_to_network()
            phi, part = optimize_on_data(phi, pair.moving_data.to(device), pair.fixed_data.to(device), moving_to_net,
                                         fixed_to_net, tuple(fixed.shape[2:]), steps=n, **options)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if levels is not None:
            levels.append({"grid": stage.grid, "steps": n, "steps_run": len(part),
                           "seconds": round(time.perf_counter() - t0, 4),
                           "loss_first": part[0] if part else None, "loss_last": part[-1] if part else None})
        losses += part
    return phi, losses


__all__ = ["fine_tune_network", "refine_field"]
