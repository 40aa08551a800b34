"""Training-step benchmark: steps per second, where the time goes, peak memory, the machine.

Runs the real model, objective and optimiser of a config on a synthetic pair of
the network input shape (smooth random images, the moving one shifted), so it
needs no data. Used by ``medreg bench train``.
"""

from __future__ import annotations

import os
import platform
import resource
import time
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F


def machine() -> dict[str, Any]:
    """What ran the benchmark (CPU model, cores, threads, torch, GPU)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def default_shape(config: Any, fov_mm: Sequence[float] = (160.0, 192.0, 160.0)) -> tuple[int, int, int]:
    """A brain-sized network input at the config's spacing (1 mm if native), padded to the shape multiple."""
    spacing = config.preprocess.spacing or [1.0, 1.0, 1.0]
    m = config.preprocess.shape_multiple
    return tuple(int(np.ceil(np.ceil(f / s) / m) * m) for f, s in zip(fov_mm, spacing))  # type: ignore[return-value]


def synthetic_pair(shape: Sequence[int], channels: int, batch: int, device: torch.device, seed: int = 0):
    """Smooth random images in [0, 1] and a copy shifted by a few voxels."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, channels, *[max(2, s // 8) for s in shape], generator=g)
    fixed = F.interpolate(coarse, size=tuple(shape), mode="trilinear", align_corners=False)
    moving = torch.roll(fixed, shifts=(2, -1, 1), dims=(2, 3, 4))
    return fixed.to(device), moving.to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_train(config: Any, *, shape: Sequence[int] | None = None, steps: int = 10, warmup: int = 2,
                device: str = "auto", profile: bool = False) -> dict[str, Any]:
    """Time ``steps`` optimiser steps (after ``warmup``); returns the figures as a dict."""
    from medreg.registration.build import build_model, count_parameters, required_multiple
    from medreg.train import autocast_for, make_objective, make_optimizer
    from medreg.training.distributed import pick_device

    dev = pick_device(device)
    shape = tuple(shape) if shape else default_shape(config)
    need = required_multiple(config.model)
    if any(s % need for s in shape):
        raise ValueError(f"shape {shape}: every size must be divisible by {need} for this model")
    torch.manual_seed(config.train.seed)
    model = build_model(config.model, len(config.channels)).to(dev)
    objective = make_objective(model, config)
    optimizer = make_optimizer(config, model.parameters())
    autocast = autocast_for(config, dev)
    fixed, moving = synthetic_pair(shape, len(config.channels), config.train.batch_size, dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    parts = {"forward": 0.0, "backward": 0.0, "optimizer": 0.0}

    def one_step(timed: bool) -> float:
        t0 = time.perf_counter()
        with autocast():
            res = objective(moving, fixed)
        _sync(dev)
        t1 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        res.total.backward()
        _sync(dev)
        t2 = time.perf_counter()
        optimizer.step()
        _sync(dev)
        t3 = time.perf_counter()
        if timed:
            parts["forward"] += t1 - t0
            parts["backward"] += t2 - t1
            parts["optimizer"] += t3 - t2
        return float(res.total.detach())

    for _ in range(warmup):
        one_step(False)
    start = time.perf_counter()
    losses = [one_step(True) for _ in range(steps)]
    seconds = time.perf_counter() - start
    out: dict[str, Any] = {
        "device": str(dev), "amp": config.train.amp and dev.type == "cuda", "shape": list(shape),
        "channels": len(config.channels), "batch_size": config.train.batch_size,
        "parameters": count_parameters(model), "steps": steps, "seconds": seconds,
        "steps_per_s": steps / seconds, "seconds_per_step": seconds / steps,
        "breakdown_s_per_step": {k: v / steps for k, v in parts.items()},
        "loss_first": losses[0], "loss_last": losses[-1],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "machine": machine(),
    }
    if dev.type == "cuda":
        out["peak_gpu_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
    if profile:
        from torch.profiler import ProfilerActivity, profile as torch_profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
        with torch_profile(activities=acts) as prof:
            for _ in range(2):
                one_step(False)
        averages = prof.key_averages()
        try:
            out["profile"] = averages.table(sort_by="self_device_time_total" if dev.type == "cuda"
                                            else "self_cpu_time_total", row_limit=15)
        except (KeyError, AttributeError, ValueError):
            out["profile"] = averages.table(sort_by="self_cpu_time_total", row_limit=15)
    return out


def format_report(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"machine: {m['cpu']} ({m['cores']} cores, torch threads {m['torch_threads']}), torch {m['torch']}"
        + (f", GPU {m['gpu']}" if "gpu" in m else ""),
        f"device {r['device']}, amp {r['amp']}, input {r['batch_size']}x{r['channels']}x{'x'.join(map(str, r['shape']))}, "
        f"{r['parameters']:,} parameters",
        f"steps/s: {r['steps_per_s']:.3f} ({r['seconds_per_step'] * 1000:.0f} ms/step over {r['steps']} steps)",
        "per step: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in r["breakdown_s_per_step"].items()),
        f"peak memory: RSS {r['peak_rss_mib']:.0f} MiB" + (f", GPU {r['peak_gpu_mib']:.0f} MiB" if "peak_gpu_mib" in r else ""),
        f"loss {r['loss_first']:.4f} -> {r['loss_last']:.4f}",
    ]
    if "profile" in r:
        lines += ["", r["profile"]]
    return "\n".join(lines)
