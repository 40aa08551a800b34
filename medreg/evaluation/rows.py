"""One result row per (pair, method): ``DIR/rows/<pair>__<method-slug>.json`` and ``DIR/metrics.csv``.

Each row is written atomically when its (pair, method) is finished, so an interrupted
evaluation resumes by skipping the pairs whose row says ``status: ok`` (failed rows are
tried again). ``metrics.csv`` is rebuilt from the rows; its columns are :data:`COLUMNS`
(NaN where a metric does not apply, e.g. TRE without landmarks; paths are relative to
``DIR``).
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from medreg.errors import InputError
from medreg.evaluation.outputs import method_slug
from medreg.io.atomic import write_text_atomic

ROWS_DIR = "rows"

#: metrics.csv columns, in order; the type of each is given for reading the CSV back.
COLUMN_TYPES: dict[str, type] = {
    "pair": str, "method": str, "status": str, "reason": str, "split": str,
    "n_landmarks": int, "tre_mean": float, "tre_median": float, "tre_p90": float, "tre_max": float,
    "mee": float, "robustness": float, "tre0_mean": float, "tre0_median": float,
    "folding_pct": float, "sdlogj": float, "sdlogj_plus3": float, "dice_mean": float, "dice_before": float,
    "seconds": float, "wall_seconds": float, "threads": int, "device": str, "peak_rss_mb": float,
    "shape": str, "spacing": str, "fixed_files": str, "moving_files": str,
    "field": str, "landmarks": str, "qc": str, "dice_labels": str,
}
COLUMNS = list(COLUMN_TYPES)
NUMERIC = [c for c, t in COLUMN_TYPES.items() if t in (int, float) and c not in ("threads", "n_landmarks")]
PATH_COLUMNS = ("field", "landmarks", "qc")


def row_path(out: Path, pair_id: str, method: str) -> Path:
    return Path(out) / ROWS_DIR / f"{pair_id}__{method_slug(method)}.json"


def write_row(out: Path, row: dict[str, Any]) -> Path:
    """Write one row atomically (replacing an earlier *failed* or unfinished attempt)."""
    clean = {k: _jsonable(row.get(k)) for k in COLUMNS}
    clean.update({k: _jsonable(v) for k, v in row.items() if k not in COLUMN_TYPES})
    return write_text_atomic(row_path(out, row["pair"], row["method"]), json.dumps(clean, indent=1) + "\n", overwrite=True)


def read_row(path: Path) -> dict[str, Any] | None:
    """A row, or None if the file is missing or unreadable (then the pair is redone)."""
    try:
        row = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(row, dict) or "pair" not in row or "method" not in row:
        return None
    return {k: (float("nan") if v is None and COLUMN_TYPES.get(k) is float else v) for k, v in row.items()}


def finished(out: Path, pair_id: str, method: str) -> bool:
    """Whether (pair, method) has an ``ok`` row (resume skips it)."""
    row = read_row(row_path(out, pair_id, method))
    return row is not None and row.get("status") == "ok"


def read_rows(out: Path) -> list[dict[str, Any]]:
    """Every row under ``DIR/rows/`` (sorted by file name)."""
    folder = Path(out) / ROWS_DIR
    rows = [read_row(p) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    return [r for r in rows if r is not None]


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _jsonable(value.item())
    return value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def metrics_csv_text(rows: list[dict[str, Any]]) -> str:
    """``metrics.csv`` content: :data:`COLUMNS`, one line per row."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in COLUMNS])
    return buf.getvalue()


def rows_csv_text(rows: list[dict[str, Any]]) -> str:
    """Rows of equal keys as CSV text, the header from the first row (curves, sweeps: any table of dicts)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def read_metrics_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``metrics.csv`` with typed values (``nan`` for empty numbers)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "expected an evaluation's metrics.csv, found no such file")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("pair", "method", "status") if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(path, f"expected columns {COLUMNS[:3]} ..., found {reader.fieldnames} (missing {missing})")
        rows = []
        for line in reader:
            row: dict[str, Any] = {}
            for k, v in line.items():
                kind = COLUMN_TYPES.get(k, str)
                if kind is float:
                    row[k] = float(v) if v not in ("", None) else float("nan")
                elif kind is int:
                    row[k] = int(float(v)) if v not in ("", None, "nan") else 0
                else:
                    row[k] = v or ""
            rows.append(row)
    return rows
