"""Device choice and torch.distributed setup (torchrun / DDP; nccl on GPUs, gloo on CPUs).

``torchrun --nproc_per_node N -m medreg train ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; with ``WORLD_SIZE > 1`` every
process joins one process group and rank 0 writes the outputs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from medreg.errors import InputError


@dataclass
class DistContext:
    rank: int
    world: int
    local_rank: int
    device: torch.device
    backend: str | None  # None: a single process

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` (CUDA if present), ``cpu`` or ``cuda``; one GPU per local rank."""
    if name not in ("auto", "cpu", "cuda"):
        raise InputError(None, f"expected --device auto, cpu or cuda, found {name!r}")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise InputError(None, "--device cuda was asked for, but no CUDA device is available; use --device cpu or auto")
    return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))


def setup(device: str = "auto") -> DistContext:
    """Join the process group when launched by torchrun (``WORLD_SIZE > 1``)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    dev = pick_device(device, local_rank)
    backend = None
    if world > 1:
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        if not dist.is_initialized():
            dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world)
    return DistContext(rank=rank, world=world, local_rank=local_rank, device=dev, backend=backend)


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def teardown(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_flag(ctx: DistContext, value: bool) -> bool:
    """Rank 0's boolean, on every rank (e.g. 'rank 0 failed, stop')."""
    if not ctx.distributed:
        return value
    t = torch.tensor([1 if value else 0], device=ctx.device if ctx.backend == "nccl" else "cpu")
    dist.broadcast(t, src=0)
    return bool(t.item())
