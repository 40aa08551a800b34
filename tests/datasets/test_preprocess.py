"""preprocess_dataset: records, resumability, parallel workers, failures, output-folder checks."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from medreg.datasets.manifest import MARKER_NAME, PairEntry, load_entry_arrays, read_manifest
from medreg.datasets.preprocess import check_output_folder, preprocess_dataset
from medreg.errors import InputError
from medreg.geometry.frames import voxel_to_lps
from medreg.io.landmarks import Landmarks, write_brats_csv
from medreg.io.nifti import save_volume
from medreg.transforms.config import config_from_dict
from medreg.transforms.defaults import default_config

SHAPE = (20, 24, 16)
AFFINE = np.array([[-1.0, 0, 0, 0], [0, -1, 0, SHAPE[1] - 1], [0, 0, 1, 0], [0, 0, 0, 1]])  # BraTS-Reg style


def _image(centre, seed):
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in SHAPE], indexing="ij"), -1).astype(float)
    inside = (((idx - centre) / (np.array(SHAPE) * 0.3)) ** 2).sum(-1) < 1
    return (inside * (50 + 10 * np.sin(idx.sum(-1) + seed))).astype(np.float32)


def make_brats(root, n_cases=3):
    centre = np.array(SHAPE) / 2
    pts = centre + np.array([[0.0, 0, 0], [2, 3, -1]])
    for n in range(1, n_cases + 1):
        case = f"BraTSReg_{n:03d}"
        d = root / case
        d.mkdir(parents=True)
        save_volume(d / f"{case}_01_0050_t1ce.nii.gz", _image(centre, n), AFFINE, brats_header=True)
        save_volume(d / f"{case}_00_0000_t1ce.nii.gz", _image(centre + [1, 0, 0], n), AFFINE, brats_header=True)
        write_brats_csv(d / f"{case}_01_0050_landmarks.csv", Landmarks(["a", "b"], voxel_to_lps(AFFINE, pts)))
        write_brats_csv(d / f"{case}_00_0000_landmarks.csv", Landmarks(["b", "a"], voxel_to_lps(AFFINE, pts[::-1] + [1, 0, 0])))
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_brats(tmp_path_factory.mktemp("brats"))


def test_records_hold_sources_geometry_and_tre(data, tmp_path):
    out = tmp_path / "out"
    summary = preprocess_dataset("brats", data, out, progress=False)
    assert summary.ok and summary.done == ["BraTSReg_001", "BraTSReg_002", "BraTSReg_003"]
    assert summary.no_registration_tre_mm == pytest.approx(1.0)
    assert json.loads((out / MARKER_NAME).read_text())["dataset"] == "brats"
    m = read_manifest(out)
    entry = m.pairs[0]
    record = PairEntry.model_validate_json((out / "pairs" / "BraTSReg_001" / "record.json").read_text())
    assert record == entry
    src = data / "BraTSReg_001" / "BraTSReg_001_01_0050_t1ce.nii.gz"
    assert entry.sources["BraTSReg_001/BraTSReg_001_01_0050_t1ce.nii.gz"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert len(entry.sources) == 4
    assert entry.no_registration_tre.model_dump() == pytest.approx({"n": 2, "mean": 1.0, "median": 1.0, "max": 1.0})
    assert m.config == default_config("brats") and m.data_root == str(data)
    # the preprocessed files carry the preprocessed affine
    import nibabel as nib

    img = nib.load(out / entry.fixed["t1ce"])
    np.testing.assert_allclose(img.affine, entry.fixed_geometry().affine, atol=1e-5)
    assert img.get_data_dtype() == np.float32


def test_config_change_redoes_every_case(data, tmp_path):
    out = tmp_path / "out"
    preprocess_dataset("brats", data, out, progress=False)
    again = preprocess_dataset("brats", data, out, progress=False)
    assert again.done == [] and len(again.skipped) == 3
    cfg = config_from_dict({**default_config("brats").model_dump(), "shape_multiple": 8})
    changed = preprocess_dataset("brats", data, out, config=cfg, progress=False)
    assert len(changed.done) == 3
    shape = read_manifest(out).pairs[0].fixed_geometry().shape
    assert all(s % 8 == 0 for s in shape) and any(s % 16 for s in shape)
    assert "3 cases: 0 done, 3 skipped" in again.text()


def test_parallel_workers_give_the_same_result(data, tmp_path):
    serial = preprocess_dataset("brats", data, tmp_path / "a", progress=False)
    parallel = preprocess_dataset("brats", data, tmp_path / "b", workers=2, progress=False)
    assert serial.done == parallel.done
    ma, mb = read_manifest(tmp_path / "a"), read_manifest(tmp_path / "b")
    for ea, eb in zip(ma.pairs, mb.pairs):
        fa, mva = load_entry_arrays(tmp_path / "a", ea)
        fb, mvb = load_entry_arrays(tmp_path / "b", eb)
        np.testing.assert_array_equal(fa, fb)
        np.testing.assert_array_equal(mva, mvb)


def test_unexpected_exception_fails_one_case_only(data, tmp_path, monkeypatch):
    import medreg.datasets.preprocess as pre

    real = pre._write_case

    def flaky(pair, *args, **kw):
        if pair.id == "BraTSReg_002":
            raise ZeroDivisionError("boom")
        return real(pair, *args, **kw)

    monkeypatch.setattr(pre, "_write_case", flaky)
    summary = preprocess_dataset("brats", data, tmp_path / "out", progress=False)
    assert summary.done == ["BraTSReg_001", "BraTSReg_003"]
    assert summary.failed["BraTSReg_002"].startswith("ZeroDivisionError: boom")
    assert "BraTSReg_002: ZeroDivisionError: boom" in summary.text()
    assert not (tmp_path / "out" / "pairs" / "BraTSReg_002").exists()
    assert not list((tmp_path / "out" / "pairs").glob(".*"))


def test_landmark_cropped_away_fails_that_case_with_a_reason(tmp_path):
    data = make_brats(tmp_path / "brats", n_cases=2)
    d = data / "BraTSReg_001"
    edge = np.array([[10.0, 1.0, 8.0], [10.0, 12.0, 8.0]])  # y=1 lies outside a centred 16-voxel crop of 24
    write_brats_csv(d / "BraTSReg_001_01_0050_landmarks.csv", Landmarks(["a", "b"], voxel_to_lps(AFFINE, edge)), overwrite=True)
    write_brats_csv(d / "BraTSReg_001_00_0000_landmarks.csv", Landmarks(["a", "b"], voxel_to_lps(AFFINE, edge)), overwrite=True)
    cfg = config_from_dict({**default_config("brats").model_dump(), "max_shape": [16, 16, 16], "crop_foreground": False})
    summary = preprocess_dataset("brats", data, tmp_path / "out", config=cfg, progress=False)
    assert summary.done == ["BraTSReg_002"]
    reason = summary.failed["BraTSReg_001"]
    assert "landmarks inside the image" in reason and "BraTSReg_001_01_0050_landmarks.csv" in reason
    assert read_manifest(tmp_path / "out").pairs[0].fixed_geometry().shape == (16, 16, 16)


def test_output_folder_checks(tmp_path):
    assert check_output_folder(tmp_path / "new", "brats") is False
    assert check_output_folder(tmp_path, "brats") is False  # empty
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="found a file"):
        check_output_folder(tmp_path / "file", "brats")
    with pytest.raises(InputError, match="found other data"):
        check_output_folder(tmp_path, "brats")
    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / MARKER_NAME).write_text('{"format": "medreg-preprocess", "dataset": "brats"}')
    assert check_output_folder(ours, "brats") is True
    with pytest.raises(InputError, match="found one of 'brats'"):
        check_output_folder(ours, "copd")
    (ours / MARKER_NAME).write_text("garbage")
    with pytest.raises(InputError, match="marker"):
        check_output_folder(ours, "brats")


def test_bad_arguments(data, tmp_path):
    with pytest.raises(InputError, match="dataset name"):
        preprocess_dataset("imagenet", data, tmp_path / "o", progress=False)
    with pytest.raises(InputError, match="workers"):
        preprocess_dataset("brats", data, tmp_path / "o", workers=0, progress=False)
    cfg = config_from_dict({**default_config("brats").model_dump(), "modalities": ["flair"]})
    with pytest.raises(InputError, match="flair"):
        preprocess_dataset("brats", data, tmp_path / "o", config=cfg, progress=False)
    assert not (tmp_path / "o").exists()  # nothing written when the dataset is unusable
