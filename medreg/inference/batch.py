"""Batch mode: many pairs with one loaded model, resumable, one folder a pair; the pair lists it reads.

A pair list is a CSV (:func:`read_pairs_csv`) or a ``medreg preprocess`` manifest
(:func:`manifest_jobs`). A pair folder that already holds ``run.json`` is skipped
(resume); a failing pair is recorded with its reason and does not stop the batch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from medreg.errors import InputError
from medreg.inference.global_stage import GlobalConfig
from medreg.inference.io_config import NO_IO, IOConfig
from medreg.inference.outputs import check_out_dir, write_outputs
from medreg.inference.register import register_pair
from medreg.io.nifti import check_input_file


@dataclass
class PairJob:
    """One pair of a batch: channel files in model order, optional fixed landmarks, an id (the sub-folder)."""

    id: str
    fixed: list[Path]
    moving: list[Path]
    landmarks: Path | None = None


def _safe_id(value: str, source: Path, row: int) -> str:
    import re

    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", value):
        raise InputError(source, f"row {row}: expected an id of letters, digits, '_', '-', '.', found {value!r}")
    return value


def read_pairs_csv(path: str | Path, channels: Sequence[str]) -> list[PairJob]:
    """A CSV of pairs: columns ``fixed,moving[,landmarks,id]`` (relative paths are relative to the CSV).

    For several channels, ``fixed``/``moving`` hold the files separated by ``;`` in
    model order, or the CSV has ``fixed_<channel>``/``moving_<channel>`` columns.
    """
    import csv

    path = check_input_file(path, "a CSV of pairs (columns fixed,moving[,landmarks,id])")
    root = path.parent
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise InputError(path, "expected a header and at least one pair, found none")
    cols = set(rows[0])
    per_channel = all(f"fixed_{c}" in cols and f"moving_{c}" in cols for c in channels)
    if not per_channel and not {"fixed", "moving"} <= cols:
        raise InputError(path, f"expected columns fixed,moving (or fixed_<channel>,moving_<channel> for {list(channels)}), "
                               f"found {sorted(c for c in cols if c)}")

    def files(value: str, row: int, role: str) -> list[Path]:
        parts = [v.strip() for v in (value or "").split(";") if v.strip()]
        if len(parts) != len(channels):
            raise InputError(path, f"row {row}: expected {len(channels)} {role} file(s) for channels {list(channels)} "
                                   f"(separated by ';'), found {len(parts)}")
        return [p if p.is_absolute() else root / p for p in map(Path, parts)]

    jobs, seen = [], set()
    for i, row in enumerate(rows, start=2):
        if per_channel:
            fixed = files(";".join(row[f"fixed_{c}"] or "" for c in channels), i, "fixed")
            moving = files(";".join(row[f"moving_{c}"] or "" for c in channels), i, "moving")
        else:
            fixed, moving = files(row["fixed"], i, "fixed"), files(row["moving"], i, "moving")
        lm = (row.get("landmarks") or "").strip()
        lm_path = None if not lm else (Path(lm) if Path(lm).is_absolute() else root / lm)
        pid = _safe_id((row.get("id") or "").strip() or f"pair_{i - 1:04d}", path, i)
        if pid in seen:
            raise InputError(path, f"row {i}: expected unique ids, found {pid!r} twice")
        seen.add(pid)
        jobs.append(PairJob(pid, fixed, moving, lm_path))
    return jobs


def manifest_jobs(manifest_path: str | Path, channels: Sequence[str], split: str | None = None) -> list[PairJob]:
    """The pairs of a ``medreg preprocess`` manifest (one split, or all), as jobs in the manifest's own grid."""
    from medreg.datasets.manifest import read_manifest, resolve

    mpath = Path(manifest_path)
    manifest = read_manifest(mpath)
    mpath = mpath / "manifest.json" if mpath.is_dir() else mpath
    root = mpath.parent
    entries = manifest.pairs if split is None else manifest.split(split)
    if not entries:
        have = sorted({str(e.split) for e in manifest.pairs})
        raise InputError(mpath, f"expected pairs in split {split!r}, found none (splits: {', '.join(have)})")
    jobs = []
    for e in entries:
        missing = [c for c in channels if c not in e.fixed or c not in e.moving]
        if missing:
            raise InputError(mpath, f"pair {e.id!r}: expected channels {list(channels)}, found {sorted(e.fixed)}")
        lm = None if e.fixed_landmarks is None else resolve(root, e.fixed_landmarks)
        jobs.append(PairJob(e.id, [resolve(root, e.fixed[c]) for c in channels],
                            [resolve(root, e.moving[c]) for c in channels], lm))
    return jobs


@dataclass
class BatchSummary:
    """What a batch did: finished, skipped (already complete) and failed pairs (id -> reason)."""

    out: Path
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed

    def text(self) -> str:
        lines = [f"{len(self.done)} registered, {len(self.skipped)} already done, {len(self.failed)} failed -> {self.out}"]
        if self.seconds:
            lines.append(f"seconds per pair: mean {np.mean(list(self.seconds.values())):.2f}")
        lines += [f"  FAILED {k}: {v}" for k, v in self.failed.items()]
        return "\n".join(lines)


def register_batch(model: torch.nn.Module, config: Any, jobs: Sequence[PairJob], out_dir: str | Path, *,
                   io: IOConfig = NO_IO, device: str | torch.device = "cpu", global_stage: GlobalConfig | None = None,
                   overwrite: bool = False, info: dict[str, Any] | None = None, progress: bool = False,
                   write_h5: bool = True, pipeline: Any = None) -> BatchSummary:
    """Register every job with one loaded model into ``out_dir/<id>/``; record ``out_dir/batch.json``.

    A pair folder that already holds ``run.json`` is skipped (resume) unless
    ``overwrite``. A failing pair is recorded with its reason and does not stop the batch.
    """
    from medreg.errors import MedregError
    from medreg.io.atomic import write_text_atomic

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(out, "expected an output folder, found a file")
    summary = BatchSummary(out)
    iterator: Any = jobs
    if progress:
        from tqdm import tqdm

        iterator = tqdm(jobs, desc="register", unit="pair")
    for job in iterator:
        folder = out / job.id
        if (folder / "run.json").is_file() and not overwrite:
            summary.skipped.append(job.id)
            continue
        try:
            check_out_dir(folder, overwrite)
            res = register_pair(model, config, job.fixed, job.moving, io=io, device=device,
                                landmarks=job.landmarks, pipeline=pipeline,
                                global_stage=global_stage)
            write_outputs(res, folder, overwrite=overwrite, write_h5=write_h5,
                          info={**(info or {}), "id": job.id, "fixed": [str(p) for p in job.fixed],
                                "moving": [str(p) for p in job.moving],
                                "landmarks": None if job.landmarks is None else str(job.landmarks)})
            summary.done.append(job.id)
            summary.seconds[job.id] = round(res.seconds, 4)
        except (MedregError, ValueError, RuntimeError) as err:
            summary.failed[job.id] = f"{type(err).__name__}: {err}"
    record = {"out": str(out), "done": summary.done, "skipped": summary.skipped, "failed": summary.failed,
              "seconds": summary.seconds, **(info or {})}
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "batch.json", json.dumps(record, indent=1, default=str) + "\n", overwrite=True)
    return summary
