"""Run logs: ``RUN/metrics.csv`` (one row per logged step and validation) and TensorBoard.

Only rank 0 logs. On resume, rows after the resumed step are dropped so the CSV
reads as one continuous run.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

COLUMNS = ("step", "phase", "total", "similarity", "regularity", "inverse_consistency", "folding_fraction",
           "tre_mm", "tre_none_mm", "lr", "steps_per_s", "seconds")


class RunLogger:
    def __init__(self, out: Path, *, enabled: bool, resume_step: int = 0, tensorboard: bool = True):
        self.enabled = enabled
        self.path = Path(out) / "metrics.csv"
        self.writer = None
        if not enabled:
            return
        if resume_step and self.path.exists():
            self._truncate(resume_step)
        if not self.path.exists():
            self.path.write_text(",".join(COLUMNS) + "\n")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard not installed: CSV only
                SummaryWriter = None
            if SummaryWriter is not None:
                self.writer = SummaryWriter(str(Path(out) / "tensorboard"), purge_step=resume_step or None)

    def _truncate(self, step: int) -> None:
        rows = list(csv.DictReader(io.StringIO(self.path.read_text())))
        keep = [r for r in rows if r.get("step", "").isdigit() and int(r["step"]) <= step]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(keep)
        self.path.write_text(buf.getvalue())

    def log(self, step: int, phase: str, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        row = {c: "" for c in COLUMNS}
        row.update({"step": str(step), "phase": phase})
        for k, v in values.items():
            if k in row:
                row[k] = f"{v:.6g}"
        with self.path.open("a") as fh:
            fh.write(",".join(row[c] for c in COLUMNS) + "\n")
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(f"{phase}/{k}", v, step)

    def image(self, step: int, tag: str, image: np.ndarray) -> None:
        if self.enabled and self.writer is not None and image is not None:
            self.writer.add_image(tag, np.ascontiguousarray(image)[None], step, dataformats="CHW")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
