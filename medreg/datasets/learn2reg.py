"""Learn2Reg layout: a dataset JSON (e.g. ``NLST_dataset.json``) listing pairs.

Accepted layout::

    root/
      NLST_dataset.json
      imagesTr/NLST_0001_0000.nii.gz          fixed  (..._0000)
      imagesTr/NLST_0001_0001.nii.gz          moving (..._0001)
      keypointsTr/NLST_0001_0000.csv          optional; 'x,y,z' per row, 0-based voxel indices
      masksTr/, labelsTr/                     optional

The JSON's pair lists map to splits: ``training_paired_images`` -> "train",
``registration_val`` -> "val", ``registration_test`` / ``test_paired_images`` ->
"test" (read only when asked: the test images are usually withheld). Each entry
is ``{"fixed": "./imagesTr/...", "moving": "./imagesTr/..."}``. Keypoints, label
maps and masks come from the JSON's ``training`` entries (``keypoints``,
``label``, ``mask``) when given, else from sibling folders
``keypointsTr/<name>.csv``, ``labelsTr/<name>.nii.gz``, ``masksTr/<name>.nii.gz``.
Every path must stay inside the root (no ``../``, no absolute paths).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from medreg.datasets.base import PairSpec, check_root, check_safe_relpath
from medreg.errors import InputError

PAIR_LISTS = {
    "training_paired_images": "train",
    "registration_val": "val",
    "registration_test": "test",
    "test_paired_images": "test",
}


def _stem(path: Path) -> str:
    name = path.name
    for ext in (".nii.gz", ".nii", ".csv"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return path.stem


def _find_json(root: Path, json_name: str | None) -> Path:
    if json_name is not None:
        path = check_safe_relpath(root, json_name)
        if not path.is_file():
            raise InputError(path, "expected a Learn2Reg dataset JSON, found no such file")
        return path
    found = sorted(root.glob("*_dataset.json")) or sorted(root.glob("dataset.json"))
    if len(found) != 1:
        raise InputError(root, f"expected exactly one *_dataset.json (pass json_name to choose), found {[p.name for p in found] or 'none'}")
    return found[0]


def _sidecars(root: Path, data: dict, source: Path) -> dict[Path, dict[str, Path]]:
    """Image path -> {'keypoints'|'label'|'mask': path} from the JSON's per-image lists."""
    out: dict[Path, dict[str, Path]] = {}
    for key in ("training", "validation", "test"):
        entries = data.get(key)
        if not isinstance(entries, list):
            continue
        for entry in entries:
            if isinstance(entry, dict) and isinstance(entry.get("image"), str):
                image = check_safe_relpath(root, entry["image"], source=source)
                out[image] = {
                    kind: check_safe_relpath(root, entry[kind], source=source)
                    for kind in ("keypoints", "label", "mask")
                    if isinstance(entry.get(kind), str)
                }
    return out


def _conventional(image: Path, folder_prefix: str, ext: str) -> Path | None:
    parent = image.parent
    if not parent.name.startswith("images"):
        return None
    candidate = parent.parent / (folder_prefix + parent.name[len("images"):]) / (_stem(image) + ext)
    return candidate if candidate.is_file() else None


def _extras(image: Path, side: dict[Path, dict[str, Path]]) -> tuple[Path | None, Path | None, Path | None]:
    known = side.get(image, {})
    keypoints = known.get("keypoints") or _conventional(image, "keypoints", ".csv")
    label = known.get("label") or _conventional(image, "labels", ".nii.gz")
    mask = known.get("mask") or _conventional(image, "masks", ".nii.gz")
    for p in (keypoints, label, mask):
        if p is not None and not p.is_file():
            raise InputError(p, f"expected a file listed for image {image.name}, found no such file")
    return keypoints, label, mask


def _pair_id(fixed: Path, moving: Path) -> str:
    fs, ms = _stem(fixed), _stem(moving)
    fbase, _, fsuffix = fs.rpartition("_")
    mbase, _, msuffix = ms.rpartition("_")
    if fbase and fbase == mbase and fsuffix.isdigit() and msuffix.isdigit():
        return fbase
    return f"{fs}__{ms}"


def learn2reg_pairs(
    root: str | Path,
    json_name: str | None = None,
    *,
    splits: Sequence[str] = ("train", "val"),
) -> list[PairSpec]:
    """List the pairs of a Learn2Reg dataset JSON (keypoints are 0-based voxel indices)."""
    root = check_root(root, "a Learn2Reg dataset folder holding *_dataset.json")
    source = _find_json(root, json_name)
    try:
        data = json.loads(source.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(source, f"expected a Learn2Reg dataset JSON, found invalid JSON ({exc})") from exc
    if not isinstance(data, dict) or not any(k in data for k in PAIR_LISTS):
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise InputError(source, f"expected pair lists {sorted(PAIR_LISTS)}, found keys {keys}")
    side = _sidecars(root, data, source)
    pairs: list[PairSpec] = []
    seen: dict[str, int] = {}
    for key, split in PAIR_LISTS.items():
        if split not in splits or key not in data:
            continue
        entries = data[key]
        if not isinstance(entries, list):
            raise InputError(source, f"expected '{key}' to be a list of {{\"fixed\": ..., \"moving\": ...}}, found {type(entries).__name__}")
        for n, entry in enumerate(entries):
            if not (isinstance(entry, dict) and isinstance(entry.get("fixed"), str) and isinstance(entry.get("moving"), str)):
                raise InputError(source, f"'{key}'[{n}]: expected {{\"fixed\": path, \"moving\": path}}, found {entry!r}")
            fixed = check_safe_relpath(root, entry["fixed"], source=source)
            moving = check_safe_relpath(root, entry["moving"], source=source)
            for p in (fixed, moving):
                if not p.is_file():
                    raise InputError(p, f"expected the image listed in {source.name} ('{key}'[{n}]), found no such file")
            fkp, flab, fmask = _extras(fixed, side)
            mkp, mlab, mmask = _extras(moving, side)
            pid = _pair_id(fixed, moving)
            if pid in seen:
                seen[pid] += 1
                pid = f"{pid}_{split}{seen[pid]}"
            else:
                seen[pid] = 0
            pairs.append(PairSpec(
                id=pid,
                split=split,
                fixed={"image": fixed},
                moving={"image": moving},
                fixed_landmarks=fkp,
                moving_landmarks=mkp,
                landmark_format="learn2reg" if fkp is not None or mkp is not None else None,
                fixed_labels=flab,
                moving_labels=mlab,
                meta={"dataset": "learn2reg", "json": source.name, "list": key, "fixed_mask": None if fmask is None else str(fmask),
                      "moving_mask": None if mmask is None else str(mmask)},
            ))
    if not pairs:
        raise InputError(source, f"expected at least one pair in splits {tuple(splits)}, found none")
    return pairs
