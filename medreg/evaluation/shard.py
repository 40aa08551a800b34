"""Sharding an evaluation: ``--shard I/N`` and ``--shard slurm``.

Shard ``I`` of ``N`` (``I`` 0-based, ``0 <= I < N``) takes every ``N``-th pair of the
split in manifest order, starting at pair ``I``: ``pairs[I::N]``. Together the ``N``
shards cover every pair exactly once, and their output folders are combined by
``medreg evaluate merge``.

``--shard slurm`` reads ``SLURM_ARRAY_TASK_ID`` and ``SLURM_ARRAY_TASK_COUNT``
(submit with ``sbatch --array=0-(N-1)``; the task ids must be 0-based and contiguous,
which is checked through ``SLURM_ARRAY_TASK_MIN``/``MAX`` when SLURM sets them).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from medreg.errors import ConfigError

T = TypeVar("T")
_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (0-based) of ``count``."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ConfigError(f"--shard: expected I/N with 0 <= I < N, found {self.index}/{self.count}")

    def select(self, items: Sequence[T]) -> list[T]:
        """Every ``count``-th item starting at ``index``."""
        return list(items[self.index :: self.count])

    @property
    def whole(self) -> bool:
        return self.count == 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str | None, environ: Mapping[str, str] | None = None) -> Shard:
    """``None`` -> the whole split; ``'I/N'`` -> shard I of N; ``'slurm'`` -> from the SLURM array variables."""
    if text is None or text == "":
        return Shard()
    if text.strip().lower() == "slurm":
        env = os.environ if environ is None else environ
        task, count = env.get("SLURM_ARRAY_TASK_ID"), env.get("SLURM_ARRAY_TASK_COUNT")
        if task is None or count is None:
            raise ConfigError(
                "--shard slurm: expected SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT in the environment "
                "(run inside an sbatch --array job), found "
                f"SLURM_ARRAY_TASK_ID={task!r}, SLURM_ARRAY_TASK_COUNT={count!r}"
            )
        lo, hi = env.get("SLURM_ARRAY_TASK_MIN"), env.get("SLURM_ARRAY_TASK_MAX")
        if lo is not None and hi is not None and (lo != "0" or int(hi) != int(count) - 1):
            raise ConfigError(
                f"--shard slurm: expected array ids 0..{int(count) - 1} (sbatch --array=0-{int(count) - 1}), "
                f"found {lo}..{hi}"
            )
        try:
            return Shard(int(task), int(count))
        except ValueError:
            raise ConfigError(f"--shard slurm: expected integer SLURM array variables, found {task!r}/{count!r}") from None
    m = _SHARD.match(text)
    if not m:
        raise ConfigError(f"--shard: expected I/N (e.g. 0/4, I 0-based) or 'slurm', found {text!r}")
    return Shard(int(m.group(1)), int(m.group(2)))
