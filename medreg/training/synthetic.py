"""A tiny synthetic preprocessed dataset (manifest + NIfTI + landmarks), for tests and benchmarks.

Each pair: smooth random blobs as the fixed image, the moving image the same
blobs shifted by a known translation (mm), landmarks at blob centres with the
exact correspondence. Written in the layout of ``medreg preprocess``
(see :mod:`medreg.datasets.manifest`) so the trainer reads it like real data.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np

from medreg.geometry.frames import voxel_to_lps

LABEL_EDGES = (0.15, 0.45, 0.75)  # blob intensity -> label 0 (background) .. 3


def _blobs(shape: Sequence[int], centres: np.ndarray, sigma: float) -> np.ndarray:
    grids = np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij")
    img = np.zeros(tuple(shape))
    for c in centres:
        d2 = sum((g - ci) ** 2 for g, ci in zip(grids, c))
        img += np.exp(-d2 / (2 * sigma**2))
    return np.clip(img / max(img.max(), 1e-6), 0, 1).astype(np.float32)


def write_synthetic_dataset(out: str | Path, *, dataset: str = "demo-brain", n_train: int = 3, n_test: int = 2,
                            shape: Sequence[int] = (16, 16, 16), spacing: float = 2.0,
                            channels: Sequence[str] = ("t1", "t2"), shift_vox: Sequence[float] = (1.5, -1.0, 0.5),
                            seed: int = 0, landmarks: bool = True, manifest_dataset: str | None = None,
                            labels: bool = False) -> Path:
    """Write pairs under ``out`` and ``out/manifest.json``; return the manifest path.

    ``manifest_dataset`` writes another dataset name into the manifest (to test mismatches). ``labels``
    also writes label maps (0 background, 1-3 by the first channel's blob intensity, :data:`LABEL_EDGES`),
    the moving one made from the shifted blobs like the moving image.
    """
    from medreg.datasets.manifest import Manifest, PairEntry, write_manifest
    from medreg.io.landmarks import Landmarks, write_brats_csv
    from medreg.io.nifti import save_volume
    from medreg.transforms.defaults import DEFAULTS

    out = Path(out)
    rng = np.random.default_rng(seed)
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = [-10.0, 5.0, 3.0]
    pre = dict(DEFAULTS[dataset])
    pre.update({"modalities": list(channels), "spacing": [spacing] * 3})
    entries = []
    for i in range(n_train + n_test):
        pid = f"pair{i:03d}"
        rel = Path("pairs") / pid
        (out / rel).mkdir(parents=True, exist_ok=True)
        centres = rng.uniform(3, np.asarray(shape) - 4, size=(6, 3))
        shift = np.asarray(shift_vox) * rng.uniform(0.5, 1.5)
        fixed_files, moving_files = {}, {}
        for c, ch in enumerate(channels):
            sigma = 2.0 + c
            fixed = _blobs(shape, centres, sigma)
            moving = _blobs(shape, centres + shift, sigma)
            save_volume(out / rel / f"fixed_{ch}.nii.gz", fixed, affine, overwrite=True)
            save_volume(out / rel / f"moving_{ch}.nii.gz", moving, affine, overwrite=True)
            fixed_files[ch] = str(rel / f"fixed_{ch}.nii.gz")
            moving_files[ch] = str(rel / f"moving_{ch}.nii.gz")
            if labels and c == 0:
                for role, image in (("fixed", fixed), ("moving", moving)):
                    save_volume(out / rel / f"{role}_labels.nii.gz", np.digitize(image, LABEL_EDGES).astype(np.int16),
                                affine, dtype=np.int16, overwrite=True)
        entry = {"id": pid, "split": "train" if i < n_train else "test", "fixed": fixed_files, "moving": moving_files,
                 "geometry": {k: {"original_affine": affine.tolist(), "original_shape": list(shape),
                                  "affine": affine.tolist(), "shape": list(shape)} for k in ("fixed", "moving")},
                 "sources": {}, "config_hash": "synthetic"}
        if labels:
            entry["fixed_labels"] = str(rel / "fixed_labels.nii.gz")
            entry["moving_labels"] = str(rel / "moving_labels.nii.gz")
        if landmarks:
            names = [str(k + 1) for k in range(len(centres))]
            # phi(p_fixed) = p_moving: the moving image is the fixed one shifted by +shift voxels
            write_brats_csv(out / rel / "fixed_landmarks.csv", Landmarks(names, voxel_to_lps(affine, centres)),
                            overwrite=True)
            write_brats_csv(out / rel / "moving_landmarks.csv",
                            Landmarks(names, voxel_to_lps(affine, centres + shift)), overwrite=True)
            entry["fixed_landmarks"] = str(rel / "fixed_landmarks.csv")
            entry["moving_landmarks"] = str(rel / "moving_landmarks.csv")
        entries.append(PairEntry.model_validate(entry))
    from medreg.transforms.config import config_from_dict

    config = config_from_dict(pre, "<synthetic>")
    name = manifest_dataset or dataset
    manifest = Manifest(dataset=name, config=config,
                        config_hash=hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:16], pairs=entries)
    return write_manifest(out / "manifest.json", manifest, overwrite=True)
