"""The dataset catalogue: names, dispatch, demo datasets, safe manifest paths."""

import importlib.util
import sys
import types
from pathlib import Path

import pytest

from medreg.datasets.catalog import DATASETS, check_safe_relpath, dataset_pairs
from medreg.errors import ConfigError, InputError


def _builders(name):
    """Load a sibling test module (for its synthetic-layout builders) without touching sys.path."""
    spec = importlib.util.spec_from_file_location(f"_catalog_{name}", Path(__file__).parent / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_known_names():
    assert DATASETS == ("brats", "dirlab", "copd", "learn2reg", "demo-brain", "demo-lung")


def test_unknown_name_lists_known():
    with pytest.raises(ConfigError) as e:
        dataset_pairs("oasis", "/tmp")
    msg = str(e.value)
    assert "'oasis'" in msg and all(n in msg for n in DATASETS)


def test_real_dataset_needs_root():
    with pytest.raises(InputError, match="expected a data folder"):
        dataset_pairs("brats")


def test_unknown_option_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['modality'\]"):
        dataset_pairs("brats", tmp_path, modality="t1")


def test_dispatch_to_readers(tmp_path):
    make_case = _builders("test_brats").make_case
    make_4dct, make_copd = _builders("test_dirlab").make_4dct, _builders("test_dirlab").make_copd
    make_nlst = _builders("test_learn2reg").make_nlst
    make_case(tmp_path / "b", 1)
    make_4dct(tmp_path / "d", 1)
    make_copd(tmp_path / "c", 2)
    make_nlst(tmp_path / "l")
    assert [p.id for p in dataset_pairs("brats", tmp_path / "b", modalities=("t2",))] == ["BraTSReg_001"]
    assert [p.id for p in dataset_pairs("dirlab", tmp_path / "d")] == ["case1"]
    assert [p.id for p in dataset_pairs("copd", tmp_path / "c")] == ["copd2"]
    assert len(dataset_pairs("learn2reg", tmp_path / "l", json_name="NLST_dataset.json")) == 3


def test_demo_datasets_read_through_layout_readers(tmp_path, monkeypatch):
    make_case = _builders("test_brats").make_case
    make_4dct = _builders("test_dirlab").make_4dct
    calls = []

    def ensure_brain(root=None):
        calls.append(("brain", root))
        make_case(tmp_path / "brain", 1, mods=("t1", "t2"))
        return tmp_path / "brain"

    def ensure_lung(root=None):
        calls.append(("lung", root))
        make_4dct(tmp_path / "lung", 1)
        return tmp_path / "lung"

    monkeypatch.setitem(sys.modules, "medreg.datasets.demo_brain", types.SimpleNamespace(ensure_demo_brain=ensure_brain))
    monkeypatch.setitem(sys.modules, "medreg.datasets.demo_lung", types.SimpleNamespace(ensure_demo_lung=ensure_lung))
    (brain,) = dataset_pairs("demo-brain", tmp_path / "cache")
    assert sorted(brain.fixed) == ["t1", "t2"]
    (lung,) = dataset_pairs("demo-lung")
    assert lung.fixed["ct"].name == "case1_T50_s.img"
    assert calls == [("brain", tmp_path / "cache"), ("lung", None)]


@pytest.mark.parametrize("rel", ["../x.nii.gz", "a/../../x.nii.gz", "/abs/x.nii.gz", "C:\\data\\x.nii.gz", ".."])
def test_check_safe_relpath_rejects_escapes(tmp_path, rel):
    with pytest.raises(InputError, match="escapes the root") as e:
        check_safe_relpath(tmp_path, rel, source=tmp_path / "manifest.json")
    assert "manifest.json" in str(e.value)


def test_check_safe_relpath_accepts_inside(tmp_path):
    assert check_safe_relpath(tmp_path, "./imagesTr/a.nii.gz") == tmp_path / "imagesTr" / "a.nii.gz"
    assert check_safe_relpath(tmp_path, "a/../b.csv") == tmp_path / "b.csv"
    with pytest.raises(InputError, match="expected a path relative"):
        check_safe_relpath(tmp_path, "")
