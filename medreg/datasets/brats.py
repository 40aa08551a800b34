"""BraTS-Reg layout (docs/reference.md §2): pre-operative baseline vs follow-up brain MRI.

Accepted layout (root = the folder holding the case folders)::

    root/
      splits.json                              optional {"BraTSReg_001": "train", ...}
      BraTSReg_001/
        BraTSReg_001_00_0000_t1ce.nii.gz       baseline (moving), one file per modality
        BraTSReg_001_01_0106_t1ce.nii.gz       follow-up (fixed); 0106 = days, varies
        BraTSReg_001_01_0106_landmarks.csv     follow-up landmarks (always)
        BraTSReg_001_00_0000_landmarks.csv     baseline landmarks (training cases)
        BraTSReg_001_00_0000_labels.nii.gz     optional label maps
        BraTSReg_001_01_0106_labels.nii.gz

Modalities are t1, t1ce, t2, flair (``.nii.gz`` or ``.nii``). Fixed = follow-up,
moving = baseline, so ``phi(follow-up landmark)`` predicts the baseline position.
Split: from ``splits.json`` if the case is listed, else "train" when both
landmark files exist and "val" otherwise. Landmark CSVs hold LPS mm.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from medreg.datasets.base import PairSpec, check_root, read_splits
from medreg.errors import InputError

_CASE_DIR = re.compile(r"^BraTSReg_\d+$", re.IGNORECASE)
_RESERVED = {"landmarks", "labels"}


def _case_files(case_dir: Path) -> dict[tuple[str, str, str], Path]:
    """Map (time point '00'/'01', days, kind) -> path for the files of one case."""
    pat = re.compile(rf"^{re.escape(case_dir.name)}_(00|01)_(\d+)_(.+?)\.(nii\.gz|nii|csv)$", re.IGNORECASE)
    out: dict[tuple[str, str, str], Path] = {}
    for p in sorted(case_dir.iterdir(), key=lambda q: (not q.name.endswith(".gz"), q.name)):
        m = pat.match(p.name)
        if m and p.is_file():
            out.setdefault((m.group(1), m.group(2), m.group(3).lower()), p)
    return out


def _one_case(case_dir: Path, modalities: Sequence[str], split_of: dict[str, str]) -> PairSpec:
    case = case_dir.name
    files = _case_files(case_dir)
    if not files:
        raise InputError(case_dir, f"case {case}: expected files named {case}_00_0000_<modality>.nii.gz and {case}_01_DDDD_<modality>.nii.gz, found none")
    followups = sorted({days for tp, days, _ in files if tp == "01"})
    if len(followups) > 1:
        raise InputError(case_dir, f"case {case}: expected one follow-up time point, found several: {', '.join(followups)}")
    days = followups[0] if followups else "DDDD"
    base_days = sorted({d for tp, d, _ in files if tp == "00"})
    base_id = base_days[0] if len(base_days) == 1 else "0000"
    missing, fixed, moving = [], {}, {}
    for mod in modalities:
        for tp, d, target, label in (("01", days, fixed, "follow-up"), ("00", base_id, moving, "baseline")):
            path = files.get((tp, d, mod.lower()))
            if path is None:
                missing.append(f"'{mod}' at {label} (expected {case}_{tp}_{d}_{mod}.nii.gz)")
            else:
                target[mod] = path
    if missing:
        present = sorted({k for _, _, k in files if k not in _RESERVED})
        raise InputError(case_dir, f"case {case}: missing modality {'; '.join(missing)}; found modalities: {present or 'none'}")
    fixed_lm = files.get(("01", days, "landmarks"))
    moving_lm = files.get(("00", base_id, "landmarks"))
    split = split_of.get(case) or ("train" if fixed_lm is not None and moving_lm is not None else "val")
    return PairSpec(
        id=case,
        split=split,
        fixed=fixed,
        moving=moving,
        fixed_landmarks=fixed_lm,
        moving_landmarks=moving_lm,
        landmark_format="brats" if fixed_lm is not None or moving_lm is not None else None,
        fixed_labels=files.get(("01", days, "labels")),
        moving_labels=files.get(("00", base_id, "labels")),
        meta={"dataset": "brats", "case": case, "followup": f"01_{days}", "days": int(days)},
    )


def brats_pairs(
    root: str | Path,
    modalities: Sequence[str] | str = ("t1ce",),
    *,
    cases: Iterable[str] | None = None,
) -> list[PairSpec]:
    """List the pairs of a BraTS-Reg folder (fixed = follow-up, moving = baseline).

    ``cases`` restricts to the named cases (each must exist). Raises InputError
    naming the case and the missing modality / files, or an empty root.
    """
    root = check_root(root, "a BraTS-Reg folder holding BraTSReg_XXX case folders")
    mods = (modalities,) if isinstance(modalities, str) else tuple(modalities)
    if not mods:
        raise InputError(root, "expected at least one modality (e.g. t1ce), found none")
    bad = [m for m in mods if m.lower() in _RESERVED or not re.fullmatch(r"\w+", m)]
    if bad:
        raise InputError(root, f"expected modality names like t1, t1ce, t2, flair, found {bad}")
    split_of = read_splits(root)
    dirs = {d.name: d for d in root.iterdir() if d.is_dir() and _CASE_DIR.match(d.name)}
    if not dirs:
        entries = sorted(p.name for p in root.iterdir())[:10]
        raise InputError(root, f"expected BraTSReg_XXX case folders, found none (entries: {entries or 'empty folder'})")
    wanted = list(cases) if cases is not None else sorted(dirs)
    absent = [c for c in wanted if c not in dirs]
    if cases is None:
        absent += [c for c in split_of if c not in dirs]
    if absent:
        where = "requested" if cases is not None else "listed in splits.json"
        raise InputError(root, f"missing case folders {sorted(set(absent))} ({where}); found {len(dirs)} cases")
    return [_one_case(dirs[c], mods, split_of) for c in wanted]
