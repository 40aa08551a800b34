"""``preprocess_dataset``: every pair of a dataset through the MONAI pipeline, into ``OUT``.

- Resumable: each finished case leaves ``OUT/pairs/<id>/record.json`` (its manifest
  entry, holding the sha256 of every source file and the config hash). A rerun
  skips a case whose record matches; anything else is redone.
- Atomic per case: outputs are written to ``OUT/pairs/.<id>.tmp-*`` and renamed
  into place when complete, so killing the run loses at most the cases in flight
  (their temp folders are removed on the next run).
- Parallel: ``workers`` > 1 runs cases in worker processes.
- A failing case is recorded with its reason and does not stop the others.
- ``OUT/manifest.json`` (see :mod:`medreg.datasets.manifest`) is rewritten at the end.

An ``OUT`` that holds anything other than a medreg preprocess output of the same
dataset is refused (InputError), and nothing is written into it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import time
import traceback
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medreg.datasets.base import PairSpec, load_pair_landmarks
from medreg.datasets.manifest import (
    MANIFEST_FORMAT,
    MARKER_NAME,
    FailedEntry,
    Manifest,
    PairEntry,
    write_manifest,
)
from medreg.datasets.specs import get_spec
from medreg.errors import InputError, MedregError
from medreg.io.atomic import write_text_atomic
from medreg.transforms.config import PreprocessConfig
from medreg.transforms.defaults import DEFAULTS, default_config

PIPELINE_VERSION = 1  # bump when the pipeline's output changes for the same config
PAIRS_DIR = "pairs"
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _reader_takes_modalities(dataset: str) -> bool:
    return "modalities" in get_spec(dataset).reader_options()


@dataclass
class Summary:
    """What a preprocess run did."""

    dataset: str
    out: Path
    manifest: Path
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    no_registration_tre_mm: float | None = None  # mean over pairs of the per-pair mean

    @property
    def ok(self) -> bool:
        return not self.failed

    def text(self) -> str:
        """A one-screen summary."""
        total = len(self.done) + len(self.skipped) + len(self.failed)
        lines = [
            f"medreg preprocess {self.dataset} -> {self.out}",
            f"  {total} case{'' if total == 1 else 's'}: {len(self.done)} done, {len(self.skipped)} skipped (up to date), "
            f"{len(self.failed)} failed, in {self.seconds:.1f} s",
        ]
        if self.no_registration_tre_mm is not None:
            lines.append(f"  landmark error without registration: {self.no_registration_tre_mm:.2f} mm (mean over pairs)")
        if self.failed:
            lines.append("  failed:")
            for pid, reason in list(self.failed.items())[:15]:
                first = reason.strip().splitlines()[0] if reason.strip() else "unknown error"
                lines.append(f"    {pid}: {first[:300]}")
            if len(self.failed) > 15:
                lines.append(f"    ... and {len(self.failed) - 15} more (see {self.manifest})")
        lines.append(f"  manifest: {self.manifest}")
        return "\n".join(lines)


# -- output folder ------------------------------------------------------------------
def check_output_folder(out: Path, dataset: str) -> bool:
    """Check ``out`` is empty/missing or a preprocess output of ``dataset``; True if it is ours already."""
    if out.exists() and not out.is_dir():
        raise InputError(out, "expected an output folder, found a file")
    if not out.exists():
        return False
    marker = out / MARKER_NAME
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return False
    if not marker.is_file():
        shown = ", ".join(entries[:5]) + (" ..." if len(entries) > 5 else "")
        raise InputError(
            out,
            f"expected an empty folder or a previous `medreg preprocess --dataset {dataset}` output, "
            f"found other data ({len(entries)} entries: {shown}); choose another --out",
        )
    try:
        info = json.loads(marker.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        info = None
    if not isinstance(info, dict) or info.get("format") != MANIFEST_FORMAT:
        raise InputError(marker, f"expected a medreg preprocess marker, found unreadable content; choose another --out")
    if info.get("dataset") != dataset:
        raise InputError(
            out,
            f"expected a preprocess output of dataset {dataset!r}, found one of {info.get('dataset')!r}; choose another --out",
        )
    return True


# -- one case -----------------------------------------------------------------------
def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _source_files(pair: PairSpec) -> list[Path]:
    files = list(pair.fixed.values()) + list(pair.moving.values())
    files += [p for p in (pair.fixed_landmarks, pair.moving_landmarks, pair.fixed_labels, pair.moving_labels) if p is not None]
    return [Path(p) for p in files]


def _source_key(path: Path, data_root: Path | None) -> str:
    if data_root is not None:
        try:
            return Path(os.path.abspath(path)).relative_to(os.path.abspath(data_root)).as_posix()
        except ValueError:
            pass
    return str(Path(os.path.abspath(path)))


def _channels(pair: PairSpec, config: PreprocessConfig, dataset: str) -> tuple[list[Path], list[Path]]:
    """Pick the configured channels; single-channel readers (CT) map their one image to the one modality."""
    fixed, moving = [], []
    for role, images, target in (("fixed", pair.fixed, fixed), ("moving", pair.moving, moving)):
        if not _reader_takes_modalities(dataset) and len(images) == 1 and len(config.modalities) == 1:
            target.append(Path(next(iter(images.values()))))
            continue
        missing = [m for m in config.modalities if m not in images]
        if missing:
            raise InputError(
                next(iter(images.values()), None),
                f"case {pair.id}: expected {role} modalities {config.modalities}, found {sorted(images)} (missing {missing})",
            )
        target.extend(Path(images[m]) for m in config.modalities)
    return fixed, moving


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _tre(fixed_lm, moving_lm) -> dict | None:
    if fixed_lm is None or moving_lm is None or len(fixed_lm) == 0:
        return None
    d = np.linalg.norm(np.asarray(fixed_lm.points) - np.asarray(moving_lm.points), axis=1)
    return {"n": int(len(d)), "mean": float(d.mean()), "median": float(np.median(d)), "max": float(d.max())}


def _read_record(path: Path) -> PairEntry | None:
    try:
        return PairEntry.model_validate_json(path.read_text())
    except Exception:
        return None


def _replace_dir(tmp: Path, final: Path) -> None:
    """Move a finished temp folder into place (an older version of the case is removed)."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}-{time.monotonic_ns()}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_case(pair: PairSpec, config: PreprocessConfig, dataset: str, case_dir: Path, rel: str) -> dict:
    """Preprocess one pair into ``case_dir`` (a fresh temp folder); return the entry's file fields."""
    from medreg.io.landmarks import check_inside, write_brats_csv
    from medreg.io.nifti import save_volume
    from medreg.transforms.pipeline import preprocess_pair

    fixed_lm, moving_lm = load_pair_landmarks(pair)
    fixed_src, moving_src = _channels(pair, config, dataset)
    result = preprocess_pair(
        fixed_src, moving_src, config,
        fixed_label=pair.fixed_labels, moving_label=pair.moving_labels,
        fixed_points=None if fixed_lm is None else fixed_lm.points,
        moving_points=None if moving_lm is None else moving_lm.points,
        raw_geometry=pair.raw_geometry,
    )
    fields: dict[str, Any] = {"fixed": {}, "moving": {}}
    for role, arr, geo in (("fixed", result.fixed, result.fixed_geometry), ("moving", result.moving, result.moving_geometry)):
        for c, name in enumerate(config.modalities):
            fname = f"{role}_{name}.nii.gz"
            save_volume(case_dir / fname, arr[c], geo.affine, dtype=np.float32)
            fields[role][name] = f"{rel}/{fname}"
    for role, label, geo in (("fixed", result.fixed_label, result.fixed_geometry), ("moving", result.moving_label, result.moving_geometry)):
        if label is not None:
            save_volume(case_dir / f"{role}_labels.nii.gz", label, geo.affine, dtype=np.int16)
            fields[f"{role}_labels"] = f"{rel}/{role}_labels.nii.gz"
    for role, lm, geo in (("fixed", fixed_lm, result.fixed_geometry), ("moving", moving_lm, result.moving_geometry)):
        if lm is not None:
            check_inside(lm, geo.shape, geo.affine)  # max_shape may have cropped a landmark away
            write_brats_csv(case_dir / f"{role}_landmarks.csv", lm)
            fields[f"{role}_landmarks"] = f"{rel}/{role}_landmarks.csv"
    fields["geometry"] = {"fixed": result.fixed_geometry.to_dict(), "moving": result.moving_geometry.to_dict()}
    fields["no_registration_tre"] = _tre(fixed_lm, moving_lm)
    return fields


def process_case(
    pair: PairSpec, out: str, dataset: str, config: PreprocessConfig, config_hash: str,
    data_root: str | None, overwrite: bool,
) -> tuple[str, str, dict | str]:
    """Run one case; returns ``(id, status, record-or-reason)`` with status done/skipped/failed."""
    out_dir = Path(out)
    pairs_dir = out_dir / PAIRS_DIR
    try:
        if not _SAFE_ID.match(pair.id):
            raise InputError(None, f"expected a case id of letters, digits, '_', '-', '.', found {pair.id!r}")
        root = Path(data_root) if data_root else None
        sources = {_source_key(p, root): sha256_file(p) for p in _source_files(pair) if Path(p).is_file()}
        final = pairs_dir / pair.id
        for stale in pairs_dir.glob(f".{pair.id}.tmp-*"):  # a half-finished earlier run
            shutil.rmtree(stale, ignore_errors=True)
        record = _read_record(final / "record.json") if final.is_dir() else None
        if (
            not overwrite and record is not None and record.config_hash == config_hash and record.sources == sources
            and all((out_dir / r).is_file() for r in record.relpaths().values())
        ):
            return pair.id, "skipped", record.model_dump(mode="json")
        tmp = pairs_dir / f".{pair.id}.tmp-{os.getpid()}-{time.monotonic_ns()}"
        tmp.mkdir(parents=True)
        try:
            fields = _write_case(pair, config, dataset, tmp, f"{PAIRS_DIR}/{pair.id}")
            entry = PairEntry(
                id=pair.id, split=pair.split, sources=sources, config_hash=config_hash,
                meta=_jsonable(pair.meta or {}), **fields,
            )
            write_text_atomic(tmp / "record.json", json.dumps(entry.model_dump(mode="json"), indent=1) + "\n")
            _replace_dir(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return pair.id, "done", entry.model_dump(mode="json")
    except MedregError as err:
        return pair.id, "failed", f"{type(err).__name__}: {err}"
    except Exception as err:  # noqa: BLE001 - a failed case must not stop the others
        tb = traceback.extract_tb(err.__traceback__)[-1]
        return pair.id, "failed", f"{type(err).__name__}: {err} (at {Path(tb.filename).name}:{tb.lineno})"


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, threads))


# -- the dataset --------------------------------------------------------------------
def _list_pairs(name: str, data_root: Path | None, config: PreprocessConfig) -> list[PairSpec]:
    from medreg.datasets.catalog import dataset_pairs

    opts: dict[str, Any] = {}
    if _reader_takes_modalities(name):
        opts["modalities"] = tuple(config.modalities)
    pairs = dataset_pairs(name, data_root, **opts)
    ids = [p.id for p in pairs]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise InputError(data_root, f"expected unique case ids, found duplicates {dup}")
    if not pairs:
        raise InputError(data_root, f"expected at least one {name} case, found none")
    return pairs


def preprocess_dataset(
    name: str,
    data_root: str | Path | None,
    out: str | Path,
    config: PreprocessConfig | None = None,
    workers: int = 1,
    overwrite: bool = False,
    *,
    progress: bool = True,
) -> Summary:
    """Preprocess every pair of dataset ``name`` from ``data_root`` into ``out`` (see module docstring).

    ``config`` defaults to :func:`medreg.transforms.defaults.default_config`. ``overwrite``
    redoes finished cases instead of skipping them (it never touches other data).
    """
    from tqdm.auto import tqdm

    if name not in DEFAULTS:
        raise InputError(None, f"expected a dataset name in {sorted(DEFAULTS)}, found {name!r}")
    if workers < 1:
        raise InputError(None, f"expected --workers >= 1, found {workers}")
    start = time.perf_counter()
    config = config or default_config(name)
    out = Path(out)
    root = None if data_root is None else Path(data_root)
    config_hash = hashlib.sha256(
        f"{PIPELINE_VERSION}:{name}:{json.dumps(config.model_dump(mode='json'), sort_keys=True)}".encode()
    ).hexdigest()[:16]
    ours = check_output_folder(out, name)
    pairs = _list_pairs(name, root, config)
    if not ours:
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / MARKER_NAME, json.dumps({"format": MANIFEST_FORMAT, "dataset": name}) + "\n", overwrite=True)
    (out / PAIRS_DIR).mkdir(exist_ok=True)

    args = [(p, str(out), name, config, config_hash, None if root is None else str(root), overwrite) for p in pairs]
    results: dict[str, tuple[str, dict | str]] = {}
    bar = tqdm(total=len(pairs), desc=f"preprocess {name}", unit="case", disable=not progress, file=sys.stderr)
    if workers == 1 or len(pairs) == 1:
        for a in args:
            pid, status, payload = process_case(*a)
            results[pid] = (status, payload)
            bar.update(1)
    else:
        import multiprocessing as mp

        threads = max(1, (os.cpu_count() or 1) // workers)
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker, initargs=(threads,)) as pool:
            futures: dict[Future, str] = {pool.submit(process_case, *a): a[0].id for a in args}
            for fut in as_completed(futures):
                try:
                    pid, status, payload = fut.result()
                except Exception as err:  # a crashed worker process
                    pid, status, payload = futures[fut], "failed", f"{type(err).__name__}: {err}"
                results[pid] = (status, payload)
                bar.update(1)
    bar.close()

    summary = Summary(dataset=name, out=out, manifest=out / "manifest.json")
    entries, failed = [], []
    for p in pairs:  # dataset order
        status, payload = results[p.id]
        if status == "failed":
            summary.failed[p.id] = str(payload)
            failed.append(FailedEntry(id=p.id, reason=str(payload)))
            continue
        (summary.done if status == "done" else summary.skipped).append(p.id)
        entries.append(PairEntry.model_validate(payload))
    manifest = Manifest(
        dataset=name, config=config, config_hash=config_hash,
        data_root=None if root is None else str(Path(os.path.abspath(root))),
        pairs=entries, failed=failed,
    )
    write_manifest(summary.manifest, manifest, overwrite=True)
    tres = [e.no_registration_tre.mean for e in entries if e.no_registration_tre is not None]
    summary.no_registration_tre_mm = float(np.mean(tres)) if tres else None
    summary.seconds = time.perf_counter() - start
    return summary
