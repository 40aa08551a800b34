"""manifest.json: round trip, atomic write, and validation of bad manifests."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medreg.datasets.manifest import Manifest, PairEntry, read_manifest, resolve, write_manifest
from medreg.errors import InputError
from medreg.transforms.defaults import default_config


def _entry(pid: str = "BraTSReg_001", **kw) -> PairEntry:
    geo = {"original_affine": np.diag([-1.0, -1.0, 1.0, 1.0]).tolist(), "original_shape": [24, 28, 20],
           "affine": np.eye(4).tolist(), "shape": [32, 32, 32]}
    data = dict(
        id=pid, split="train",
        fixed={"t1ce": f"pairs/{pid}/fixed_t1ce.nii.gz"}, moving={"t1ce": f"pairs/{pid}/moving_t1ce.nii.gz"},
        fixed_landmarks=f"pairs/{pid}/fixed_landmarks.csv", moving_landmarks=f"pairs/{pid}/moving_landmarks.csv",
        geometry={"fixed": geo, "moving": geo}, sources={f"{pid}/x.nii.gz": "ab" * 32}, config_hash="0123",
        no_registration_tre={"n": 3, "mean": 2.0, "median": 1.5, "max": 4.0},
    )
    data.update(kw)
    return PairEntry.model_validate(data)


def _manifest(*entries: PairEntry) -> Manifest:
    return Manifest(dataset="brats", config=default_config("brats"), config_hash="0123", pairs=list(entries))


def test_round_trip(tmp_path):
    path = write_manifest(tmp_path / "manifest.json", _manifest(_entry(), _entry("BraTSReg_002", split="test")))
    m = read_manifest(path)
    assert m.dataset == "brats" and [p.id for p in m.pairs] == ["BraTSReg_001", "BraTSReg_002"]
    assert m.config == default_config("brats")
    assert [p.id for p in m.split("test")] == ["BraTSReg_002"]
    geo = m.pair("BraTSReg_001").fixed_geometry()
    assert geo.original_shape == (24, 28, 20) and geo.shape == (32, 32, 32)
    assert resolve(tmp_path, m.pairs[0].fixed["t1ce"]) == tmp_path / "pairs/BraTSReg_001/fixed_t1ce.nii.gz"
    assert read_manifest(tmp_path).pairs[0].no_registration_tre.median == 1.5  # a folder means its manifest.json


def test_write_refuses_to_overwrite_and_leaves_no_temp(tmp_path):
    path = write_manifest(tmp_path / "manifest.json", _manifest(_entry()))
    with pytest.raises(InputError, match="refusing to overwrite"):
        write_manifest(path, _manifest())
    write_manifest(path, _manifest(), overwrite=True)
    assert read_manifest(path).pairs == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


@pytest.mark.parametrize("bad", ["../outside/fixed.nii.gz", "/etc/passwd", "pairs/../../x.nii.gz", "C:\\data\\x.nii.gz"])
def test_paths_escaping_the_root_are_rejected(tmp_path, bad):
    data = json.loads(_manifest(_entry()).model_dump_json())
    data["pairs"][0]["moving"]["t1ce"] = bad
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError) as info:
        read_manifest(path)
    msg = str(info.value)
    assert str(path) in msg and "BraTSReg_001" in msg and "moving.t1ce" in msg


@pytest.mark.parametrize(
    "content, expected",
    [
        ("", "empty file"),
        ("{not json", "invalid JSON"),
        ("[1, 2]", "JSON object"),
        (json.dumps({"format": "something-else"}), "medreg-preprocess"),
    ],
)
def test_unreadable_manifests(tmp_path, content, expected):
    path = tmp_path / "manifest.json"
    path.write_text(content)
    with pytest.raises(InputError, match=expected) as info:
        read_manifest(path)
    assert str(path) in str(info.value)


def test_missing_manifest_unknown_dataset_wrong_dataset_and_bad_entry(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_manifest(tmp_path / "manifest.json")
    data = json.loads(_manifest(_entry()).model_dump_json())
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({**data, "dataset": "imagenet"}))
    with pytest.raises(InputError, match="unknown dataset 'imagenet'"):
        read_manifest(path)
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="expected a manifest of dataset 'dirlab'"):
        read_manifest(path, dataset="dirlab")
    data["pairs"][0].pop("geometry")
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"pair 'BraTSReg_001', key 'pairs.0.geometry'"):
        read_manifest(path)


def test_duplicate_pair_ids_are_rejected(tmp_path):
    path = write_manifest(tmp_path / "manifest.json", _manifest(_entry(), _entry()))
    with pytest.raises(InputError, match="unique pair ids"):
        read_manifest(path)
