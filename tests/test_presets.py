"""The presets ship inside the package: an installed wheel, used from another folder, finds and runs them."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

from medreg.datasets.names import DATASETS
from medreg.presets import config_dir

ROOT = Path(__file__).resolve().parents[1]
PY = f"python{sys.version_info.major}.{sys.version_info.minor}"

CHECK = """\
import json, sys
import medreg
from medreg.config import load_config, preset_path
from medreg.presets import config_dir
from medreg.transforms.defaults import default_config
train = load_config(preset_path("demo-brain"))
pre = default_config("demo-brain")
print(json.dumps({"medreg": medreg.__file__, "configs": str(config_dir()), "path": sys.path,
                  "train_dataset": train.data.dataset, "train_spacing": train.preprocess.spacing,
                  "pre_modalities": pre.modalities, "pre_spacing": pre.spacing}))
"""


def test_repository_configs_is_a_relative_link_to_the_package_presets():
    link = ROOT / "configs"
    assert link.is_symlink() and os.readlink(link) == "medreg/configs"
    assert link.resolve() == (ROOT / "medreg" / "configs").resolve()
    assert config_dir().resolve() == (ROOT / "medreg" / "configs").resolve()


def _run(venv: Path, args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONNOUSERSITE"] = "1"
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A new venv holding the medreg wheel built from this tree (dependencies: this interpreter's site-packages)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "medreg", src / "medreg", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp / "dist"),
                    str(src)], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp / "dist").glob("medreg-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    # torch, monai, ... come from this interpreter's site-packages, added as plain paths: their .pth files (an
    # editable install of medreg among them) are not run, so the only medreg the venv can import is the wheel's
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (venv / "lib" / PY / "site-packages" / "_medreg_test_deps.pth").write_text("\n".join(deps) + "\n")
    subprocess.run([*pip, "--python", str(venv / "bin" / "python"), "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True, timeout=300)
    return venv


def test_the_wheel_ships_every_preset(installed):
    presets = installed / "lib" / PY / "site-packages" / "medreg" / "configs"
    assert (presets / "defaults.yaml").is_file()
    for name in DATASETS:
        assert (presets / f"{name}.yaml").is_file(), name
        assert (presets / "preprocess" / f"{name}.yaml").is_file(), name


def test_the_installed_package_loads_its_presets_from_another_folder(installed, tmp_path):
    proc = _run(installed, [str(installed / "bin" / "python"), "-c", CHECK], tmp_path, 300)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(found["medreg"]).is_relative_to(installed), found["medreg"]
    assert Path(found["configs"]) == installed / "lib" / PY / "site-packages" / "medreg" / "configs"
    assert not any((tmp_path / p).resolve() == ROOT for p in found["path"]), found["path"]  # "": the cwd
    assert found["train_dataset"] == "demo-brain" and found["train_spacing"] == [2.0, 2.0, 2.0]
    assert found["pre_modalities"] == ["t1", "t2", "flair"] and found["pre_spacing"] == [1.0, 1.0, 1.0]
    helped = _run(installed, [str(installed / "bin" / "medreg"), "train", "--help"], tmp_path, 120)
    assert helped.returncode == 0 and "demo-brain" in helped.stdout and "medreg/configs/" in helped.stdout


@pytest.mark.slow
def test_the_installed_command_preprocesses_and_trains_demo_brain(installed, tmp_path):
    """About 2 min on 2 cores: all 18 demo-brain pairs are preprocessed, then one training step."""
    medreg = str(installed / "bin" / "medreg")
    pre = _run(installed, [medreg, "preprocess", "--dataset", "demo-brain", "--out", "pp", "--workers", "2",
                           "--no-progress"], tmp_path, 1200)
    if pre.returncode != 0 and "could not fetch" in pre.stderr:
        pytest.skip("demo-brain is not cached under $MEDREG_CACHE (default ~/.cache/medreg) and the package "
                    f"registry cannot be reached from here: {pre.stderr.strip()[-400:]}")
    assert pre.returncode == 0, pre.stdout + pre.stderr
    assert json.loads((tmp_path / "pp" / "manifest.json").read_text())["dataset"] == "demo-brain"
    trained = _run(installed, [medreg, "train", "--dataset", "demo-brain", "--data", "pp", "--out", "run",
                               "--max-steps", "1", "--device", "cpu", "--no-progress"], tmp_path, 600)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert "trained to step 1" in trained.stdout
    assert (tmp_path / "run" / "checkpoints" / "last" / "model.safetensors").is_file()
    assert "dataset: demo-brain" in (tmp_path / "run" / "config.yaml").read_text()
