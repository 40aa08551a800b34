"""Training data: manifest pairs on the network's grid, a step-indexed sampler, batching.

The manifest written by ``medreg preprocess`` holds pairs on the *preprocessed*
grid (fixed and moving on the same grid). The network's grid is the config's
``preprocess.spacing``: :func:`medreg.transforms.network_grid.network_grid` resamples
and pads, the same stage inference uses (:mod:`medreg.inference.prepare`).

Data order and augmentation are functions of ``(seed, sample number)`` only
(:class:`StepSampler`), so a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import Transform

from medreg.errors import ConfigError, InputError
from medreg.transforms.network_grid import network_grid


# --------------------------------------------------------------------------- manifest checks
def check_manifest(manifest: Any, manifest_path: Path, config: Any) -> None:
    """Raise InputError naming the manifest and the config key to change if the data cannot feed this model."""
    have = list(manifest.config.modalities)
    missing_contrasts = [c for c in config.data.contrasts if c not in have]
    if missing_contrasts:
        raise InputError(manifest_path, f"expected contrasts {config.data.contrasts} (data.contrasts), found only "
                                        f"{have}; set data.contrasts to a subset of {have} or preprocess the data "
                                        f"with those modalities")
    missing = [] if config.data.contrasts else [c for c in config.channels if c not in have]
    if missing:
        raise InputError(manifest_path, f"expected channels {config.channels} (preprocess.modalities), found only "
                                        f"{have}; set preprocess.modalities to a subset of {have} or preprocess "
                                        f"the data with those modalities")
    if manifest.config.orientation != config.preprocess.orientation:
        raise InputError(manifest_path, f"expected data in orientation {config.preprocess.orientation} "
                                        f"(preprocess.orientation), found {manifest.config.orientation}")
    if manifest.config.intensity.kind != config.preprocess.intensity.kind:
        raise InputError(manifest_path, f"expected intensities normalised with {config.preprocess.intensity.kind!r} "
                                        f"(preprocess.intensity), found {manifest.config.intensity.kind!r}")
    if not manifest.pairs:
        raise InputError(manifest_path, "expected at least one preprocessed pair, found none (every case failed?)")


def hold_out(train_records: list[dict[str, Any]], val_records: list[dict[str, Any]],
             data_cfg: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """When validation draws from the training split, keep those pairs out of training.

    With ``data.val_split == data.train_split`` the last ``val_pairs`` training pairs
    (default 2 when unset) are validation only, so the best checkpoint is chosen on
    pairs the model never trained on and the test split stays untouched.
    """
    if data_cfg.val_split is None or data_cfg.val_split != data_cfg.train_split:
        return train_records, val_records
    n = data_cfg.val_pairs or 2
    if n >= len(train_records):
        raise ConfigError(f"data.val_pairs={n} would leave no training pairs (split {data_cfg.train_split!r} "
                         f"has {len(train_records)}); lower data.val_pairs")
    return train_records[:-n], train_records[-n:]


def train_val_records(manifest: Any, manifest_path: Path, data_cfg: Any, channels: Sequence[str] | None = None
                      ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The training and validation records of a run (``data.train_split`` / ``val_split`` / ``val_pairs``), after
    :func:`hold_out`: what ``medreg train`` trains and validates on, and what ``medreg probe`` probes.

    InputError naming the manifest when the training split has no pairs.
    """
    root = Path(manifest_path).parent
    train_records = split_records(manifest, root, data_cfg.train_split)
    if not train_records:
        splits = sorted({str(p.split) for p in manifest.pairs})
        raise InputError(manifest_path, f"expected pairs of split {data_cfg.train_split!r} (data.train_split), "
                                        f"found splits {splits}")
    val_records = split_records(manifest, root, data_cfg.val_split, data_cfg.val_pairs)
    train_records, val_records = hold_out(train_records, val_records, data_cfg)
    contrasts = list(getattr(data_cfg, "contrasts", []) or [])
    slot = channels[0] if channels else None
    return expand_contrasts(train_records, contrasts, slot), expand_contrasts(val_records, contrasts, slot)


def expand_contrasts(records: list[dict[str, Any]], contrasts: Sequence[str], channel: str | None = None
                     ) -> list[dict[str, Any]]:
    """One record per pair and contrast (``id@contrast``), its files keyed by the model's one ``channel``.

    For a single-channel any-contrast model (``data.contrasts``); the hold-out has already been made
    per pair, so no pair is in training under one contrast and in validation under another.
    ``channel`` (the config's one ``preprocess.modalities`` entry, a name for the slot) defaults to
    the first contrast.
    """
    if not contrasts:
        return records
    slot = channel or contrasts[0]
    out = []
    for r in records:
        for c in contrasts:
            out.append({**r, "id": f"{r['id']}@{c}", "contrast": c,
                        "fixed": {slot: r["fixed"][c]}, "moving": {slot: r["moving"][c]}})
    return out


def split_records(manifest: Any, root: Path, split: str | None, limit: int | None = None) -> list[dict[str, Any]]:
    """Manifest entries of ``split`` as records of absolute paths (MONAI dataset items)."""
    from medreg.datasets.manifest import resolve

    if split is None:
        return []
    entries = manifest.split(split)
    if limit is not None:
        entries = entries[:limit]
    out = []
    for e in entries:
        out.append({
            "id": e.id,
            "fixed": {k: str(resolve(root, v)) for k, v in e.fixed.items()},
            "moving": {k: str(resolve(root, v)) for k, v in e.moving.items()},
            "fixed_landmarks": None if e.fixed_landmarks is None else str(resolve(root, e.fixed_landmarks)),
            "moving_landmarks": None if e.moving_landmarks is None else str(resolve(root, e.moving_landmarks)),
            "fixed_labels": None if e.fixed_labels is None else str(resolve(root, e.fixed_labels)),
            "moving_labels": None if e.moving_labels is None else str(resolve(root, e.moving_labels)),
        })
    return out


class LoadPaird(Transform):
    """MONAI dictionary transform (deterministic, so ``CacheDataset`` caches its output): a pair record -> network-grid tensors, affine, landmarks.

    Output keys: ``id``, ``fixed``/``moving`` (C, X, Y, Z) float32, ``affine`` (4, 4) voxel->RAS
    of the network grid (shared by both images), ``fixed_points``/``moving_points`` (N, 3) LPS mm
    matched by name (empty when the pair has none). With ``labels``, also ``fixed_fractions`` /
    ``moving_fractions``: (K, X, Y, Z) float16 class fractions of the label maps on the network grid
    (:func:`medreg.training.label_synth.label_fractions`, K = the larger label + 1 of the pair), for
    label-map synthesis; a record without label maps is an InputError.
    """

    def __init__(self, channels: Sequence[str], preprocess: Any, multiple: int, model_hint: str,
                 labels: bool = False):
        self.channels = list(channels)
        self.preprocess = preprocess
        self.multiple = multiple
        self.model_hint = model_hint
        self.labels = labels

    def _fractions(self, record: dict[str, Any], shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        from medreg.io.nifti import load_volume
        from medreg.training.label_synth import label_fractions

        if not record.get("fixed_labels") or not record.get("moving_labels"):
            raise InputError(record["fixed"][self.channels[0]], f"pair {record['id']!r} has no label maps "
                                                                f"(fixed_labels / moving_labels in the manifest), "
                                                                f"which train.augmentation.synth needs; set its "
                                                                f"prob to 0 or preprocess data that has labels")
        vols = [load_volume(record[k], allow_constant=True) for k in ("fixed_labels", "moving_labels")]
        arrays = [np.rint(np.asarray(v.array)).astype(np.int64) for v in vols]
        classes = int(max(a.max() for a in arrays)) + 1
        out = []
        for v, a in zip(vols, arrays):
            try:
                out.append(label_fractions(a, v.affine, self.preprocess, classes))
            except ValueError as err:  # a negative label
                raise InputError(v.path, f"expected non-negative integer labels: {err}") from None
        for v, frac in zip(vols, out):
            if tuple(frac.shape[1:]) != shape:
                raise InputError(v.path, f"expected the label map on the image grid of pair {record['id']!r} "
                                         f"(network grid {shape}), found {tuple(frac.shape[1:])}")
        return out[0], out[1]

    def _stack(self, files: dict[str, str]) -> tuple[torch.Tensor, np.ndarray, Path]:
        from medreg.io.nifti import load_volume

        vols = [load_volume(files[c], allow_constant=True) for c in self.channels]
        first = vols[0]
        for v in vols[1:]:
            if v.shape != first.shape or not np.allclose(v.affine, first.affine, atol=1e-4):
                raise InputError(v.path, f"expected every channel on the grid of {first.path}, found shape {v.shape}")
        arr = np.stack([np.asarray(v.array, dtype=np.float32) for v in vols])
        return torch.from_numpy(arr), first.affine, Path(first.path)

    def __call__(self, record: dict[str, Any]) -> dict[str, Any]:
        from medreg.io.landmarks import match_landmarks, read_brats_csv

        fixed, f_aff, f_path = self._stack(record["fixed"])
        moving, m_aff, m_path = self._stack(record["moving"])
        if fixed.shape != moving.shape or not np.allclose(f_aff, m_aff, atol=1e-4):
            raise InputError(m_path, f"expected the moving image on the fixed grid of {f_path} "
                                     f"(shape {tuple(fixed.shape[1:])}), found shape {tuple(moving.shape[1:])}")
        fixed, affine = network_grid(fixed, f_aff, self.preprocess)
        moving, _ = network_grid(moving, m_aff, self.preprocess)
        shape = tuple(fixed.shape[1:])
        if any(s % self.multiple for s in shape):
            raise InputError(f_path, f"pair {record['id']!r}: the network input has shape {shape}, but the model "
                                     f"({self.model_hint}) needs every size divisible by {self.multiple}; preprocess "
                                     f"the data with shape_multiple: {self.multiple} (or a multiple of it), or set "
                                     f"preprocess.spacing so the data is resampled, or use fewer model.levels / "
                                     f"model.unet_channels")
        fp = mp = np.zeros((0, 3))
        if record.get("fixed_landmarks") and record.get("moving_landmarks"):
            fl, ml = match_landmarks(read_brats_csv(record["fixed_landmarks"]), read_brats_csv(record["moving_landmarks"]))
            fp, mp = fl.points, ml.points
        item = {"id": record["id"], "fixed": fixed, "moving": moving, "affine": affine,
                "fixed_points": fp, "moving_points": mp}
        if self.labels:
            item["fixed_fractions"], item["moving_fractions"] = self._fractions(record, shape)
        return item


def make_dataset(records: list[dict[str, Any]], loader: LoadPaird, cache: bool):
    """A MONAI ``CacheDataset`` (or plain ``Dataset``) of loaded pairs."""
    from monai.data import CacheDataset, Dataset

    if cache:
        try:
            return CacheDataset(records, transform=loader, cache_rate=1.0, num_workers=0, progress=False,
                                copy_cache=False)
        except RuntimeError as err:  # MONAI wraps the loader's errors; the user needs the file and what was wrong
            if isinstance(err.__cause__, InputError):
                raise err.__cause__ from None
            raise
    return Dataset(records, transform=loader)


# --------------------------------------------------------------------------- sampling and batching
def sample_seed(seed: int, number: int) -> int:
    """A 32-bit seed for the ``number``-th sample drawn in a run (independent of process and resume)."""
    return int(np.random.SeedSequence([int(seed), int(number)]).generate_state(1)[0])


class StepSampler(torch.utils.data.Sampler):
    """Yields ``(pair index, augmentation seed)`` for steps ``start_step .. stop_step - 1``.

    Sample number ``g = (step * world + rank) * batch + i``: epoch ``g // n`` is a
    permutation seeded by ``(seed, epoch)``, so every rank reads different pairs,
    all ranks together cover each epoch once, and a resumed run continues exactly.
    """

    def __init__(self, n: int, batch_size: int, seed: int, start_step: int, stop_step: int,
                 rank: int = 0, world: int = 1):
        self.n, self.batch, self.seed = n, batch_size, seed
        self.start, self.stop, self.rank, self.world = start_step, stop_step, rank, world

    def _perm(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch, 7]).permutation(self.n)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        cache: tuple[int, np.ndarray] | None = None
        for step in range(self.start, self.stop):
            for i in range(self.batch):
                g = (step * self.world + self.rank) * self.batch + i
                epoch, pos = divmod(g, self.n)
                if cache is None or cache[0] != epoch:
                    cache = (epoch, self._perm(epoch))
                yield int(cache[1][pos]), sample_seed(self.seed, g)

    def __len__(self) -> int:
        return max(0, self.stop - self.start) * self.batch


class TrainPairs(torch.utils.data.Dataset):
    """Indexed by ``(index, seed)``: the cached pair (``synth``: a :class:`medreg.training.label_synth.LabelSynth`,
    replaced, when it draws so, by images made from its label maps), augmented with that seed, then (``prealign``: a
    :class:`medreg.training.motion.MotionThenGlobal`) moved and aligned by the global stage."""

    def __init__(self, base, augment=None, prealign=None, synth=None):
        self.base = base
        self.augment = augment
        self.prealign = prealign
        self.synth = synth

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        index, seed = key
        item = self.base[index]
        fixed, moving = item["fixed"], item["moving"]
        if self.synth is not None:
            made = self.synth(item["fixed_fractions"], item["moving_fractions"], fixed.shape[0], seed)
            if made is not None:
                fixed, moving = made
        if self.augment is not None:
            fixed, moving = self.augment(fixed, moving, seed)
        if self.prealign is not None:
            moving = self.prealign(fixed, moving, item["affine"], seed)
        return {"id": item["id"], "fixed": fixed, "moving": moving}


def collate_pairs(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack a batch, zero-padding each image at the end to the largest shape in the batch."""
    shape = [max(it["fixed"].shape[a] for it in items) for a in range(1, 4)]

    def pad(t: torch.Tensor) -> torch.Tensor:
        extra = [shape[a - 1] - t.shape[a] for a in range(1, 4)]
        if not any(extra):
            return t
        return F.pad(t[None], [p for a in reversed(range(3)) for p in (0, extra[a])])[0]

    return {
        "id": [it["id"] for it in items],
        "fixed": torch.stack([pad(torch.as_tensor(it["fixed"])) for it in items]),
        "moving": torch.stack([pad(torch.as_tensor(it["moving"])) for it in items]),
    }


