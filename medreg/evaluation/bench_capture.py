"""What ``medreg bench capture`` measures: TRE against a known global offset (the capture range).

A demo-brain test case (the follow-up as fixed, the baseline as moving, exact landmarks), or a
demo-lung one (``dataset="demo-lung"``: exhale as fixed, inhale as moving, 300 exact landmarks;
its DIR-Lab raw volumes and voxel landmarks are first written as NIfTI and LPS-mm CSV with the
same geometry, :func:`case_files`), is registered again after the moving image, all its channels and its landmarks are moved by a
known world map ``M``: ``moving'(q) = moving(M^-1 q)``, ``landmark' = M(landmark)``. The
sweep: pure translations of 0/5/10/15/20/30 mm along a fixed oblique direction, rotations of
0/5/10/15/20/30 degrees about a fixed oblique axis through the image centre, and both
together. For every motion it records the mean and max TRE and the seconds of medreg (one
pass and with instance optimisation, each with and without the global stage) and of each
baseline, on the same files and threads.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from medreg.geometry import Grid, warp_image

DIRECTION = np.array([1.0, -0.6, 0.4]) / np.linalg.norm([1.0, -0.6, 0.4])
AXIS = np.array([0.3, 1.0, 0.5]) / np.linalg.norm([0.3, 1.0, 0.5])
OFFSETS = (0, 5, 10, 15, 20, 30)


def motions() -> list[tuple[str, float, float]]:
    """``(kind, mm, degrees)`` of the sweep."""
    out = [("translation", float(v), 0.0) for v in OFFSETS]
    out += [("rotation", 0.0, float(v)) for v in OFFSETS[1:]]
    out += [("combined", float(v), float(v)) for v in OFFSETS[1:]]
    return out


def motion_matrix(mm: float, degrees: float, centre: np.ndarray) -> np.ndarray:
    """4x4 LPS: a rotation by ``degrees`` about AXIS through ``centre``, then a translation by ``mm`` along DIRECTION."""
    from scipy.spatial.transform import Rotation

    r = Rotation.from_rotvec(np.deg2rad(degrees) * AXIS).as_matrix()
    m = np.eye(4)
    m[:3, :3] = r
    m[:3, 3] = centre - r @ centre + mm * DIRECTION
    return m


def move_case(case: Any, matrix: np.ndarray, out: Path) -> dict[str, Any]:
    """Write the moved moving channels and landmarks into ``out``; return the files of the new pair."""
    from medreg.io.landmarks import Landmarks, read_brats_csv, write_brats_csv
    from medreg.io.nifti import load_volume, save_volume

    out.mkdir(parents=True, exist_ok=True)
    inv = np.linalg.inv(matrix)
    moving = {}
    for channel, path in case.moving.items():
        vol = load_volume(path, dtype=np.float32)
        grid = Grid.of(vol)
        u = grid.affine_displacement(inv)
        moving[channel] = save_volume(out / f"moving_{channel}.nii.gz", warp_image(vol.array, grid, grid, u),
                                      vol.affine, brats_header=True, overwrite=True)
    lm = read_brats_csv(case.moving_landmarks)
    moved = Landmarks(list(lm.names), lm.points @ matrix[:3, :3].T + matrix[:3, 3])
    return {"fixed": dict(case.fixed), "moving": moving, "fixed_landmarks": case.fixed_landmarks,
            "moving_landmarks": write_brats_csv(out / "moving_landmarks.csv", moved, overwrite=True)}


DEFAULT_IO = {"demo-brain": {"preset": "default"}, "demo-lung": {"preset": "default"}}  # as make demo / demo-lung


def case_files(case: Any, out: Path) -> Any:
    """The case as NIfTI images and LPS-mm CSV landmarks (DIR-Lab raw cases are converted into ``out``)."""
    from types import SimpleNamespace

    from medreg.io.dirlab import dirlab_affine, read_dirlab_img
    from medreg.io.landmarks import read_dirlab_txt, write_brats_csv
    from medreg.io.nifti import save_volume

    if case.raw_geometry is None:
        return case
    out.mkdir(parents=True, exist_ok=True)
    affine = dirlab_affine(case.raw_geometry)
    files: dict[str, Any] = {}
    for side in ("fixed", "moving"):
        files[side] = {c: save_volume(out / f"{side}_{c}.nii.gz", read_dirlab_img(p, case.raw_geometry).array, affine,
                                      overwrite=True) for c, p in getattr(case, side).items()}
        files[f"{side}_landmarks"] = write_brats_csv(out / f"{side}_landmarks.csv",
                                                     read_dirlab_txt(getattr(case, f"{side}_landmarks"), affine),
                                                     overwrite=True)
    return SimpleNamespace(id=case.id, **files)


def _tre(result: Any, fixed_lm: Path, moving_lm: Path) -> tuple[float, float]:
    from medreg.io.landmarks import match_landmarks, read_brats_csv

    f, m = match_landmarks(read_brats_csv(fixed_lm), read_brats_csv(moving_lm))
    err = np.linalg.norm(result.map_points(f.points) - m.points, axis=1)
    return float(err.mean()), float(err.max())


def bench_capture(*, model: str, dataset: str = "demo-brain", baselines: list[str], threads: int = 2,
                  io_steps: int | None = None, out: Path, case_index: int = 0, kinds: tuple[str, ...] = ("translation",
                  "rotation", "combined"), log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Run the sweep; write ``out/capture.csv`` and ``out/capture.png``; return the rows.

    The IO rows use the dataset's default instance optimisation (:data:`DEFAULT_IO`: the ``default``
    preset of the model's table; ``io_steps`` changes its number of steps).
    """
    import torch

    from medreg.baselines import get_baseline
    from medreg.datasets.catalog import dataset_pairs
    from medreg.inference.bundle import load_bundle
    from medreg.inference.global_stage import GlobalConfig
    from medreg.inference.io_config import io_from_flags
    from medreg.inference.register import register_pair
    from medreg.io.nifti import load_volume

    torch.set_num_threads(int(threads))
    if dataset not in DEFAULT_IO:
        raise ValueError(f"bench capture runs on {sorted(DEFAULT_IO)}, found {dataset!r}")
    cases = [p for p in dataset_pairs(dataset) if p.split == "test"]
    case = case_files(cases[case_index], out / "case")
    io_opts = dict(DEFAULT_IO[dataset])
    if io_steps is not None:
        io_opts["steps"] = io_steps
    bundle = load_bundle(model)
    centre_grid = Grid.of(load_volume(next(iter(case.moving.values()))))
    centre = centre_grid.index_to_lps((np.asarray(centre_grid.shape, float)[None] - 1) / 2)[0]
    medreg_runs = [(glob.named(io.method_name()), io, glob)
                   for io in (io_from_flags(0), io_from_flags(**io_opts))
                   for glob in (GlobalConfig("none"), GlobalConfig("affine"))]
    rows: list[dict[str, Any]] = []
    warm: set[str] = set()  # every configuration once untimed: the global stage's first call pays a one-off start
    for kind, mm, deg in (m for m in motions() if m[0] in kinds):
        tag = f"{kind}_{mm:g}mm_{deg:g}deg"
        files = move_case(case, motion_matrix(mm, deg, centre), out / "pairs" / tag)
        channels = bundle.channels
        for name, io, glob in medreg_runs:
            def run() -> Any:
                return register_pair(bundle.model, bundle.config, [files["fixed"][c] for c in channels],
                                     [files["moving"][c] for c in channels], io=io, global_stage=glob,
                                     pipeline=bundle.pipeline)
            if name not in warm:
                run()
                warm.add(name)
            res = run()
            mean, worst = _tre(res, files["fixed_landmarks"], files["moving_landmarks"])
            rows.append({"kind": kind, "mm": mm, "degrees": deg, "method": name, "tre_mean": mean, "tre_max": worst,
                         "seconds": res.seconds, "global_seconds": res.extra["timings"].get("global", 0.0)})
            log(f"{kind:11s} {mm:4.0f} mm {deg:4.0f} deg  {name:22s} TRE {mean:6.2f} / {worst:6.2f} mm  {res.seconds:6.1f} s")
        for spec in baselines:
            first = next(iter(files["fixed"]))
            t = time.perf_counter()
            res = get_baseline(spec).register(files["fixed"][first], files["moving"][first], threads=threads,
                                              workdir=out / "work" / f"{tag}_{spec.replace(':', '-')}")
            mean, worst = _tre(res, files["fixed_landmarks"], files["moving_landmarks"])
            rows.append({"kind": kind, "mm": mm, "degrees": deg, "method": spec, "tre_mean": mean, "tre_max": worst,
                         "seconds": res.seconds, "global_seconds": float("nan")})
            log(f"{kind:11s} {mm:4.0f} mm {deg:4.0f} deg  {spec:22s} TRE {mean:6.2f} / {worst:6.2f} mm  "
                f"{res.seconds:6.1f} s (wall {time.perf_counter() - t:.1f} s)")
    write_rows(rows, out)
    return rows


def write_rows(rows: list[dict[str, Any]], out: Path) -> None:
    """``capture.csv`` and ``capture.png`` (mean TRE against the offset, one panel per kind of motion)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from medreg.evaluation.rows import rows_csv_text
    from medreg.io.atomic import write_text_atomic

    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "capture.csv", rows_csv_text(rows), overwrite=True)
    kinds = sorted({r["kind"] for r in rows}, key=["translation", "rotation", "combined"].index)
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.2 * len(kinds), 3.4), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        for method in dict.fromkeys(r["method"] for r in rows):
            pts = [(r["degrees"] if kind == "rotation" else r["mm"], r["tre_mean"]) for r in rows
                   if r["kind"] == kind and r["method"] == method]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=method)
        ax.set_xlabel("degrees" if kind == "rotation" else "mm (and degrees)" if kind == "combined" else "mm")
        ax.set_ylabel("mean TRE (mm)")
        ax.set_title(kind)
        ax.set_yscale("log")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "capture.png", dpi=90)
    plt.close(fig)


__all__ = ["DEFAULT_IO", "bench_capture", "case_files", "motion_matrix", "motions", "move_case", "write_rows"]
