"""DIR-Lab lung CT layouts: 4DCT (``dirlab``) and COPDGene (``copd``), docs/reference.md §3.

Accepted 4DCT layout (DIR-Lab's download packs; folder and file names are
matched case-insensitively, files are searched anywhere below the case folder)::

    root/
      Case1Pack/                          also Case1, case1pack, case1 ...
        Images/case1_T00_s.img            inhale (moving); '_s' optional (cases 6-10 lack it)
        Images/case1_T50_s.img            exhale (fixed)
        ExtremePhases/Case1_300_T00_xyz.txt
        ExtremePhases/Case1_300_T50_xyz.txt      (cases 6-10: case6_dirLab300_T50_xyz.txt)
        geometry.json                     optional {"shape": [x, y, z], "spacing": [..]}

Accepted COPDGene layout::

    root/
      copd1/
        copd1_iBHCT.img                   inhale (moving)
        copd1_eBHCT.img                   exhale (fixed)
        copd1_300_iBH_xyz_r1.txt
        copd1_300_eBH_xyz_r1.txt
        geometry.json                     optional

Volumes are raw int16 without header; their geometry comes from
``geometry.json`` in the case folder if present (medreg's demo lung uses the
4DCT layout with its own geometry), else from ``DIRLAB_CASES`` by case name.
Landmarks are 1-based ``x y z`` voxel indices. Fixed = exhale, moving = inhale.
Other phases (T10..T90), ``.hdr`` files and masks are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from medreg.datasets.base import PairSpec, check_root, read_splits
from medreg.errors import InputError
from medreg.io.dirlab import DIRLAB_CASES, RawGeometry, read_geometry_file

GEOMETRY_FILE = "geometry.json"


@dataclass(frozen=True)
class _Layout:
    dataset: str
    prefix: str  # case key prefix in DIRLAB_CASES: 'case' / 'copd'
    folder: re.Pattern
    image: re.Pattern  # groups: case number, phase
    landmarks: re.Pattern  # groups: case number, phase
    fixed_phase: str
    moving_phase: str
    example: str


_4DCT = _Layout(
    "dirlab", "case",
    re.compile(r"^case(\d+)(?:pack)?$", re.I),
    re.compile(r"^case(\d+)_(T00|T50)(?:_s)?\.img$", re.I),
    re.compile(r"^case(\d+)_(?:dirlab)?300_(T00|T50)_xyz\.txt$", re.I),
    "T50", "T00",
    "Case1Pack/Images/case1_T00_s.img, Case1Pack/ExtremePhases/Case1_300_T00_xyz.txt",
)
_COPD = _Layout(
    "copd", "copd",
    re.compile(r"^copd(\d+)$", re.I),
    re.compile(r"^copd(\d+)_(iBH|eBH)CT\.img$", re.I),
    re.compile(r"^copd(\d+)_300_(iBH|eBH)_xyz_r1\.txt$", re.I),
    "eBH", "iBH",
    "copd1/copd1_iBHCT.img, copd1/copd1_300_iBH_xyz_r1.txt",
)


def _find(case_dir: Path, number: str, pattern: re.Pattern) -> dict[str, list[Path]]:
    """Files below ``case_dir`` matching ``pattern`` for this case number, by phase (upper case)."""
    found: dict[str, list[Path]] = {}
    for p in sorted(case_dir.rglob("*")):
        m = pattern.match(p.name)
        if m and p.is_file() and int(m.group(1)) == int(number):
            found.setdefault(m.group(2).upper(), []).append(p)
    return found


def _geometry(case_dir: Path, key: str) -> RawGeometry:
    sidecar = case_dir / GEOMETRY_FILE
    if sidecar.exists():
        return read_geometry_file(sidecar)
    if key in DIRLAB_CASES:
        return DIRLAB_CASES[key]
    raise InputError(case_dir, f"expected a known case ({', '.join(k for k in DIRLAB_CASES if k.startswith(key.rstrip('0123456789')))}) or a {GEOMETRY_FILE} sidecar, found case {key!r} with neither")


def _one_case(case_dir: Path, number: str, layout: _Layout, require_landmarks: bool,
              split_of: dict[str, str]) -> PairSpec:
    key = f"{layout.prefix}{int(number)}"
    images = _find(case_dir, number, layout.image)
    marks = _find(case_dir, number, layout.landmarks)
    picked: dict[tuple[str, str], Path | None] = {}
    missing = []
    for kind, found, required in (("image", images, True), ("landmarks", marks, require_landmarks)):
        for phase in (layout.fixed_phase, layout.moving_phase):
            paths = found.get(phase.upper(), [])
            if len(paths) > 1:
                raise InputError(case_dir, f"case {key}: expected one {phase} {kind} file, found {len(paths)}: {[str(p.relative_to(case_dir)) for p in paths]}")
            if not paths and required:
                missing.append(f"{phase} {kind}")
            picked[(kind, phase)] = paths[0] if paths else None
    if missing:
        raise InputError(case_dir, f"case {key}: missing {', '.join(missing)} (expected files like {layout.example})")
    geometry = _geometry(case_dir, key)
    for phase in (layout.fixed_phase, layout.moving_phase):
        img = picked[("image", phase)]
        size = img.stat().st_size
        if size != geometry.nbytes:
            x, y, z = geometry.shape
            raise InputError(img, f"expected {geometry.nbytes} bytes (int16, {x}x{y}x{z} voxels for {key}), found {size} bytes")
    fixed_lm, moving_lm = picked[("landmarks", layout.fixed_phase)], picked[("landmarks", layout.moving_phase)]
    return PairSpec(
        id=key,
        split=split_of.get(case_dir.name, "test"),
        fixed={"ct": picked[("image", layout.fixed_phase)]},
        moving={"ct": picked[("image", layout.moving_phase)]},
        fixed_landmarks=fixed_lm,
        moving_landmarks=moving_lm,
        landmark_format="dirlab" if fixed_lm is not None or moving_lm is not None else None,
        raw_geometry=geometry,
        meta={"dataset": layout.dataset, "case": key, "fixed_phase": layout.fixed_phase, "moving_phase": layout.moving_phase},
    )


def _pairs(root: str | Path, layout: _Layout, require_landmarks: bool) -> list[PairSpec]:
    root = check_root(root, f"a {layout.dataset} folder holding case folders ({layout.example.split('/')[0]}, ...)")
    cases = []
    for d in root.iterdir():
        m = layout.folder.match(d.name)
        if m and d.is_dir():
            cases.append((int(m.group(1)), m.group(1), d))
    if not cases:
        entries = sorted(p.name for p in root.iterdir())[:10]
        raise InputError(root, f"expected {layout.dataset} case folders like {layout.example.split('/')[0]}, found none (entries: {entries or 'empty folder'})")
    numbers = [n for n, _, _ in cases]
    dupes = sorted({n for n in numbers if numbers.count(n) > 1})
    if dupes:
        raise InputError(root, f"expected one folder per case, found several for case(s) {dupes}")
    split_of = read_splits(root)
    return [_one_case(d, num, layout, require_landmarks, split_of) for _, num, d in sorted(cases)]


def dirlab_pairs(root: str | Path, *, require_landmarks: bool = True) -> list[PairSpec]:
    """DIR-Lab 4DCT pairs: fixed = T50 (exhale), moving = T00 (inhale)."""
    return _pairs(root, _4DCT, require_landmarks)


def copd_pairs(root: str | Path, *, require_landmarks: bool = True) -> list[PairSpec]:
    """DIR-Lab COPDGene pairs: fixed = eBH (exhale), moving = iBH (inhale)."""
    return _pairs(root, _COPD, require_landmarks)
