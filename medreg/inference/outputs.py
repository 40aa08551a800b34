"""Writing a registration: every output into a staging folder, moved in file by file, ``run.json`` last.

Outputs: ``warped.nii.gz`` (first channel; ``warped_<channel>.nii.gz`` for the others),
``field.nii.gz`` (the total ``u``) and ``transform.h5`` (the same map; with a global stage an ITK
composite: the affine, then the deformable field), ``affine.mat`` (the global stage's affine alone,
ITK/ANTs format; only with a global stage; see :mod:`medreg.io.itk_transform`),
``jacobian_det.nii.gz``, ``landmarks.csv``/``.txt`` (the input's format, mapped through
the written ``u``) and ``run.json``. A folder with ``run.json`` is complete.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medreg.errors import InputError
from medreg.inference.register import RegistrationResult
from medreg.io.point_files import points_output_name, write_points

KNOWN_OUTPUTS = ("warped.nii.gz", "field.nii.gz", "transform.h5", "affine.mat", "jacobian_det.nii.gz", "landmarks.csv",
                 "landmarks.txt", "run.json")


def check_out_dir(out_dir: str | Path, overwrite: bool = False) -> Path:
    """``out_dir`` may be new or empty; a non-empty folder only with ``overwrite``."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(out, "expected an output folder, found a file")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        n = len(list(out.iterdir()))
        raise InputError(out, f"expected a new or empty output folder, found {n} entries; refusing to overwrite "
                              f"(pass --overwrite)")
    return out


def run_info(result: RegistrationResult, **more: Any) -> dict[str, Any]:
    """What ``run.json`` records: model, config hash, device, threads, seconds, peak memory, inputs."""
    from medreg import __version__

    info = {
        "medreg_version": __version__,
        "torch_version": torch.__version__,
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count()},
        "config_hash": result.extra.get("config_hash"),
        "device": result.extra.get("device"),
        "threads": result.threads,
        "seconds": round(result.seconds, 4),
        "peak_rss_mb": round(result.peak_rss_mb, 1),
        "io_steps": result.extra.get("io_steps", 0),
        "io_mode": result.extra.get("io_mode"),
        "io": result.extra.get("io"),
        "global": result.extra.get("global"),
        "timings": result.extra.get("timings", {}),
        "preprocessed_shape": result.extra.get("preprocessed_shape"),
        "convention": "phi(x) = x + u(x) maps fixed points to moving points; u in LPS mm on the fixed grid",
    }
    for key in ("cuda_peak_mb", "io_losses"):
        if key in result.extra:
            info[key] = result.extra[key]
    info.update(more)
    return info


def _write_all(result: RegistrationResult, tmp: Path, write_h5: bool) -> list[str]:
    from medreg.io.itk_transform import (save_nifti_like, write_affine_mat, write_composite_h5, write_displacement_nifti,
                                         write_transform_h5)

    affine, header = result.fixed_affine, result.fixed_header
    names = []
    for i, (name, vol) in enumerate(result.warped_channels.items()):
        fname = "warped.nii.gz" if i == 0 else f"warped_{name}.nii.gz"
        save_nifti_like(tmp / fname, vol.array.astype(np.float32), affine, header)
        names.append(fname)
    write_displacement_nifti(tmp / "field.nii.gz", result.displacement_lps, affine, header=header)
    names.append("field.nii.gz")
    if write_h5 and result.global_matrix is not None:  # the global stage's affine, then the deformable field
        write_composite_h5(tmp / "transform.h5", result.global_matrix, result.deformable_displacement(), affine)
        names.append("transform.h5")
    elif write_h5:
        write_transform_h5(tmp / "transform.h5", result.displacement_lps, affine)
        names.append("transform.h5")
    if result.global_matrix is not None:
        write_affine_mat(tmp / "affine.mat", result.global_matrix)
        names.append("affine.mat")
    save_nifti_like(tmp / "jacobian_det.nii.gz", result.jacobian_determinant().astype(np.float32), affine, header)
    names.append("jacobian_det.nii.gz")
    if result.mapped_landmarks is not None and result.landmark_format is not None:
        fname = points_output_name(result.landmark_format)  # type: ignore[arg-type]
        write_points(tmp / fname, result.mapped_landmarks, result.landmark_format, result.moving_affine)  # type: ignore[arg-type]
        names.append(fname)
    return names


def write_outputs(result: RegistrationResult, out_dir: str | Path, *, info: dict[str, Any] | None = None,
                  overwrite: bool = False, write_h5: bool = True) -> dict[str, Path]:
    """Write every output of a registration into ``out_dir``; return them by file name.

    Files are written into a staging folder beside ``out_dir``, then moved in one
    by one (each move atomic), ``run.json`` last. A non-empty ``out_dir`` is refused
    unless ``overwrite``; then known medreg outputs not written this time are removed.
    """
    out = check_out_dir(out_dir, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        names = _write_all(result, tmp, write_h5)
        write_seconds = time.perf_counter() - t
        record = run_info(result, write_seconds=round(write_seconds, 4), outputs=names + ["run.json"], **(info or {}))
        (tmp / "run.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
        from medreg.io.atomic import default_file_mode

        mode = default_file_mode()
        for name in names + ["run.json"]:
            os.chmod(tmp / name, mode)  # temporary files are private (0600); outputs follow the umask
        out.mkdir(parents=True, exist_ok=True)
        (out / "run.json").unlink(missing_ok=True)  # the folder is incomplete until run.json is back
        for name in names:
            os.replace(tmp / name, out / name)
        for stale in KNOWN_OUTPUTS:
            if stale not in names and stale != "run.json":
                (out / stale).unlink(missing_ok=True)
        os.replace(tmp / "run.json", out / "run.json")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {name: out / name for name in names + ["run.json"]}


__all__ = ["KNOWN_OUTPUTS", "check_out_dir", "run_info", "write_outputs"]
