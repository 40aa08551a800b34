"""`medreg preprocess` end to end on tiny synthetic BraTS-Reg, DIR-Lab and Learn2Reg folders (in-process)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from medreg.cli.main import main
from medreg.datasets.manifest import load_entry_arrays, read_manifest
from medreg.io.dirlab import RawGeometry, write_dirlab_img, write_geometry_file
from medreg.geometry.frames import voxel_to_lps
from medreg.io.landmarks import Landmarks, read_brats_csv, write_brats_csv
from medreg.io.nifti import save_volume

SHAPE = (24, 28, 20)
SHIFT_VOX = np.array([2, -1, 1])  # moving anatomy = fixed anatomy shifted by this many voxels


def brats_affine(shape=SHAPE) -> np.ndarray:
    """The real BraTS-Reg header: sform rows [-1,0,0,0], [0,-1,0,Y-1], [0,0,1,0]."""
    return np.array([[-1.0, 0, 0, 0], [0, -1, 0, shape[1] - 1], [0, 0, 1, 0], [0, 0, 0, 1]])


def anatomy(shape, centre, seed=0) -> np.ndarray:
    """An ellipsoid 'organ' with smooth texture, zero background."""
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).astype(float)
    r = np.array(shape) * 0.3
    inside = (((idx - centre) / r) ** 2).sum(-1) < 1
    tex = np.sin(idx[..., 0] * 0.9) + np.cos(idx[..., 1] * 0.7) + np.sin(idx[..., 2] * 1.1 + seed)
    return (inside * (100 + 20 * tex)).astype(np.float32)


def make_brats(root: Path, n_cases=3, mods=("t1ce", "t1")) -> Path:
    aff = brats_affine()
    centre = np.array(SHAPE) / 2 - 0.5
    fixed_pts = centre + np.array([[0.0, 0, 0], [3, 2, -1], [-4, 1, 2]])
    for n in range(1, n_cases + 1):
        case = f"BraTSReg_{n:03d}"
        d = root / case
        d.mkdir(parents=True)
        for m in mods:
            save_volume(d / f"{case}_01_0100_{m}.nii.gz", anatomy(SHAPE, centre, n), aff, brats_header=True)
            save_volume(d / f"{case}_00_0000_{m}.nii.gz", anatomy(SHAPE, centre + SHIFT_VOX, n), aff, brats_header=True)
        names = ["1", "2", "3"]
        write_brats_csv(d / f"{case}_01_0100_landmarks.csv", Landmarks(names, voxel_to_lps(aff, fixed_pts)))
        write_brats_csv(d / f"{case}_00_0000_landmarks.csv", Landmarks(names, voxel_to_lps(aff, fixed_pts + SHIFT_VOX)))
    return root


def make_dirlab(root: Path) -> Path:
    geom = RawGeometry((24, 20, 12), (1.1, 1.1, 2.5))
    pack = root / "Case1Pack"
    centre = np.array(geom.shape) / 2 - 0.5
    for phase, shift in (("T50", 0), ("T00", 2)):  # inhale (T00, moving) moved 2 slices
        hu = np.full(geom.shape, -1000, dtype=np.int16)
        hu[anatomy(geom.shape, centre + [0, 0, shift]) > 0] = 40
        hu[3:6, 3:6, 4 + shift : 7 + shift] = -850
        write_dirlab_img(pack / "Images" / f"case1_{phase}_s.img", hu)
        pts = np.array([[12, 10, 5 + shift], [8, 9, 6 + shift], [14, 12, 7 + shift]])  # 1-based x y z
        (pack / "ExtremePhases").mkdir(parents=True, exist_ok=True)
        (pack / "ExtremePhases" / f"Case1_300_{phase}_xyz.txt").write_text("".join(f"{x}\t{y}\t{z}\n" for x, y, z in pts))
    write_geometry_file(pack / "geometry.json", geom)
    return root


def make_learn2reg(root: Path) -> Path:
    aff = np.diag([1.5, 1.5, 1.5, 1.0])
    shape = (20, 16, 20)
    centre = np.array(shape) / 2 - 0.5
    (root / "imagesTr").mkdir(parents=True)
    (root / "keypointsTr").mkdir()
    entries = []
    for c in (1, 2):
        for t, shift in (("0000", 0), ("0001", 1)):
            ct = np.where(anatomy(shape, centre + shift, c) > 0, 0.0, -1000.0).astype(np.float32)
            save_volume(root / "imagesTr" / f"NLST_{c:04d}_{t}.nii.gz", ct, aff)
            pts = np.array([[10, 8, 10], [7, 8, 11]]) + shift
            (root / "keypointsTr" / f"NLST_{c:04d}_{t}.csv").write_text("".join(f"{x},{y},{z}\n" for x, y, z in pts))
        entries.append({"fixed": f"./imagesTr/NLST_{c:04d}_0000.nii.gz", "moving": f"./imagesTr/NLST_{c:04d}_0001.nii.gz"})
    (root / "NLST_dataset.json").write_text(json.dumps({"training_paired_images": entries[:1], "registration_val": entries[1:]}))
    return root


def run_cli(*args) -> int:
    return main(["preprocess", "--no-progress", *map(str, args)])


def test_brats_end_to_end(tmp_path, capsys):
    data = make_brats(tmp_path / "brats")
    out = tmp_path / "out"
    assert run_cli("--dataset", "brats", "--data", data, "--out", out) == 0
    text = capsys.readouterr().out
    assert "3 cases: 3 done, 0 skipped" in text and "manifest.json" in text
    m = read_manifest(out / "manifest.json", dataset="brats")
    assert [p.id for p in m.pairs] == ["BraTSReg_001", "BraTSReg_002", "BraTSReg_003"]
    entry = m.pairs[0]
    assert list(entry.fixed) == ["t1ce"] and entry.split == "train"
    fixed, moving = load_entry_arrays(out, entry)
    assert fixed.shape == moving.shape and all(s % 16 == 0 for s in fixed.shape[1:])
    assert 0.0 <= fixed.min() and fixed.max() <= 1.0
    # no-registration error = |shift| in mm (1 mm voxels)
    assert entry.no_registration_tre.mean == pytest.approx(np.linalg.norm(SHIFT_VOX), abs=1e-6)
    # landmarks are world points: unchanged, and on the same anatomy in the preprocessed grid
    lm = read_brats_csv(out / entry.fixed_landmarks)
    src = read_brats_csv(data / "BraTSReg_001" / "BraTSReg_001_01_0100_landmarks.csv")
    np.testing.assert_allclose(lm.points, src.points, atol=1e-9)
    geo = entry.fixed_geometry()
    assert geo.original_shape == SHAPE
    np.testing.assert_allclose(geo.original_affine, brats_affine())
    ijk_orig = geo.voxel_to_original(geo.lps_to_voxel(lm.points))
    np.testing.assert_allclose(ijk_orig, np.array(SHAPE) / 2 - 0.5 + np.array([[0.0, 0, 0], [3, 2, -1], [-4, 1, 2]]), atol=1e-6)
    # sources are recorded with their sha256
    assert set(entry.sources) >= {"BraTSReg_001/BraTSReg_001_01_0100_t1ce.nii.gz", "BraTSReg_001/BraTSReg_001_00_0000_landmarks.csv"}


def test_brats_two_channels_with_a_config_file(tmp_path):
    data = make_brats(tmp_path / "brats", n_cases=1)
    cfg = tmp_path / "pre.yaml"
    cfg.write_text("modalities: [t1ce, t1]\nintensity: {kind: mri_percentile}\nspacing: [2.0, 2.0, 2.0]\nshape_multiple: 8\n")
    out = tmp_path / "out"
    assert run_cli("--dataset", "brats", "--data", data, "--out", out, "--config", cfg) == 0
    entry = read_manifest(out).pairs[0]
    assert list(entry.fixed) == ["t1ce", "t1"] and list(entry.moving) == ["t1ce", "t1"]
    fixed, _ = load_entry_arrays(out, entry)
    assert fixed.shape[0] == 2
    assert entry.fixed_geometry().spacing == pytest.approx((2.0, 2.0, 2.0))


def test_dirlab_end_to_end(tmp_path):
    data = make_dirlab(tmp_path / "dirlab")
    out = tmp_path / "out"
    assert run_cli("--dataset", "dirlab", "--data", data, "--out", out) == 0
    m = read_manifest(out)
    (entry,) = m.pairs
    assert entry.id == "case1" and list(entry.fixed) == ["ct"]
    # exhale (T50) is fixed, inhale (T00) moving: 2 slices of 2.5 mm apart
    assert entry.no_registration_tre.mean == pytest.approx(5.0, abs=1e-6)
    geo = entry.fixed_geometry()
    assert geo.spacing == pytest.approx((1.1, 1.1, 2.5))  # native spacing kept
    fixed, moving = load_entry_arrays(out, entry)
    allowed = np.array([0.0, 150 / 1200, 1040 / 1200])  # HU -1000, -850, 40 in the [-1000, 200] window
    assert np.abs(np.unique(fixed)[:, None] - allowed[None]).min(axis=1).max() < 1e-5
    # the landmark sits on the same voxel of anatomy in the preprocessed grid as in the raw file
    lm = read_brats_csv(out / entry.fixed_landmarks)
    ijk = np.rint(geo.voxel_to_original(geo.lps_to_voxel(lm.points))).astype(int)
    np.testing.assert_array_equal(ijk[0], [11, 9, 4])


def test_learn2reg_end_to_end(tmp_path):
    data = make_learn2reg(tmp_path / "nlst")
    out = tmp_path / "out"
    assert run_cli("--dataset", "learn2reg", "--data", data, "--out", out) == 0
    m = read_manifest(out)
    assert [(p.id, p.split) for p in m.pairs] == [("NLST_0001", "train"), ("NLST_0002", "val")]
    assert m.pairs[0].no_registration_tre.mean == pytest.approx(1.5 * np.sqrt(3), abs=1e-6)
    assert m.pairs[0].fixed_geometry().shape == (32, 16, 32)  # no crop for NLST; padded to 16


def test_resume_skips_finished_and_redoes_half_finished(tmp_path, capsys):
    data = make_brats(tmp_path / "brats")
    out = tmp_path / "out"
    assert run_cli("--dataset", "brats", "--data", data, "--out", out) == 0
    case2 = out / "pairs" / "BraTSReg_002" / "fixed_t1ce.nii.gz"
    mtime = case2.stat().st_mtime_ns
    # simulate a run killed while case 1 was being written: its final folder gone, a temp folder left
    import shutil

    shutil.rmtree(out / "pairs" / "BraTSReg_001")
    stale = out / "pairs" / ".BraTSReg_001.tmp-999-1"
    stale.mkdir()
    (stale / "fixed_t1ce.nii.gz").write_bytes(b"half")
    # and case 3's record lost (finished files without record = not finished)
    (out / "pairs" / "BraTSReg_003" / "record.json").unlink()
    capsys.readouterr()
    assert run_cli("--dataset", "brats", "--data", data, "--out", out) == 0
    assert "2 done, 1 skipped" in capsys.readouterr().out
    assert not stale.exists()
    assert case2.stat().st_mtime_ns == mtime  # untouched
    assert [p.id for p in read_manifest(out).pairs] == ["BraTSReg_001", "BraTSReg_002", "BraTSReg_003"]
    # a changed source file makes its case run again
    src = data / "BraTSReg_002" / "BraTSReg_002_00_0000_t1ce.nii.gz"
    save_volume(src, anatomy(SHAPE, np.array(SHAPE) / 2, 7), brats_affine(), overwrite=True, brats_header=True)
    assert run_cli("--dataset", "brats", "--data", data, "--out", out) == 0
    assert "1 done, 2 skipped" in capsys.readouterr().out
    assert run_cli("--dataset", "brats", "--data", data, "--out", out, "--overwrite") == 0
    assert "3 done, 0 skipped" in capsys.readouterr().out


def test_a_failing_case_is_reported_and_exit_code_is_1(tmp_path, capsys):
    data = make_brats(tmp_path / "brats")
    bad = data / "BraTSReg_002" / "BraTSReg_002_00_0000_t1ce.nii.gz"
    save_volume(bad, np.full(SHAPE, 5.0, np.float32), brats_affine(), overwrite=True, brats_header=True)
    out = tmp_path / "out"
    assert run_cli("--dataset", "brats", "--data", data, "--out", out) == 1
    text = capsys.readouterr().out
    assert "2 done, 0 skipped (up to date), 1 failed" in text
    assert "BraTSReg_002: InputError" in text and "constant image" in text
    m = read_manifest(out)
    assert [p.id for p in m.pairs] == ["BraTSReg_001", "BraTSReg_003"]
    assert m.failed[0].id == "BraTSReg_002" and str(bad) in m.failed[0].reason
    assert not list((out / "pairs").glob(".*tmp*"))  # nothing half-written left behind


def test_output_folder_with_other_data_is_rejected(tmp_path, capsys):
    data = make_brats(tmp_path / "brats", n_cases=1)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert run_cli("--dataset", "brats", "--data", data, "--out", out) == 2
    err = capsys.readouterr().err
    assert "other data" in err and "notes.txt" in err and str(out) in err
    assert sorted(os.listdir(out)) == ["notes.txt"]
    # an output of another dataset is refused too
    other = tmp_path / "lung"
    assert run_cli("--dataset", "dirlab", "--data", make_dirlab(tmp_path / "dl"), "--out", other) == 0
    assert run_cli("--dataset", "brats", "--data", data, "--out", other) == 2
    assert "found one of 'dirlab'" in capsys.readouterr().err


def test_bad_arguments_give_clear_errors(tmp_path, capsys):
    assert run_cli("--dataset", "brats", "--data", tmp_path / "missing", "--out", tmp_path / "o") == 2
    assert "no such folder" in capsys.readouterr().err
    assert run_cli("--dataset", "brats", "--out", tmp_path / "o") == 2
    assert "--data" in capsys.readouterr().err
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("modalities: [t1ce]\nintensity: {kind: mri_percentile}\nshape_multiple: 'x'\n")
    assert run_cli("--dataset", "brats", "--data", tmp_path, "--out", tmp_path / "o", "--config", cfg) == 2
    assert "shape_multiple" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_cli("--dataset", "imagenet", "--out", tmp_path / "o")
