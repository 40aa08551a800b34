"""BraTS-Reg layout on tiny synthetic cases with the real header (sform -1,-1, 239 offset)."""

import json

import nibabel as nib
import numpy as np
import pytest

from medreg.datasets.base import load_pair_landmarks
from medreg.datasets.brats import brats_pairs
from medreg.errors import InputError
from medreg.geometry.frames import lps_to_voxel, voxel_to_lps
from medreg.io.landmarks import Landmarks, write_brats_csv
from medreg.io.nifti import load_volume, save_volume

SHAPE = (12, 10, 8)
BRATS_AFFINE = np.array([[-1.0, 0, 0, 0], [0, -1, 0, 239], [0, 0, 1, 0], [0, 0, 0, 1]])
MODS = ("t1", "t1ce", "t2", "flair")


def _image(seed, bright=None):
    a = np.random.default_rng(seed).uniform(0, 100, SHAPE).astype(np.float32)
    if bright is not None:
        a[bright] = 1000.0
    return a


def make_case(root, n, days="0106", both_landmarks=True, labels=False, mods=MODS, followup_points=None):
    case = f"BraTSReg_{n:03d}"
    d = root / case
    d.mkdir(parents=True)
    for m in mods:
        save_volume(d / f"{case}_00_0000_{m}.nii.gz", _image(n), BRATS_AFFINE, brats_header=True)
        save_volume(d / f"{case}_01_{days}_{m}.nii.gz", _image(n + 100, bright=(5, 7, 3)), BRATS_AFFINE, brats_header=True)
    fu = followup_points if followup_points is not None else np.array([[5.0, 7.0, 3.0], [1.0, 2.0, 3.0], [10.0, 0.0, 7.0]])
    names = ["1", "2", "3"][: len(fu)]
    write_brats_csv(d / f"{case}_01_{days}_landmarks.csv", Landmarks(names, voxel_to_lps(BRATS_AFFINE, fu)))
    if both_landmarks:
        base = fu[::-1] + 0.5  # written in another row order: joined by name
        write_brats_csv(d / f"{case}_00_0000_landmarks.csv", Landmarks(names[::-1], voxel_to_lps(BRATS_AFFINE, base)))
    if labels:
        lab = np.zeros(SHAPE, np.uint8)
        lab[2:5, 2:5, 2:5] = 1
        save_volume(d / f"{case}_00_0000_labels.nii.gz", lab, BRATS_AFFINE, brats_header=True)
        save_volume(d / f"{case}_01_{days}_labels.nii.gz", lab, BRATS_AFFINE, brats_header=True)
    return d


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "BraTSReg_Training_Data"
    make_case(r, 1, labels=True)
    make_case(r, 2, days="0231", both_landmarks=False)
    return r


def test_pairs_roles_splits_and_files(root):
    pairs = brats_pairs(root)
    assert [p.id for p in pairs] == ["BraTSReg_001", "BraTSReg_002"]
    p1, p2 = pairs
    assert p1.fixed["t1ce"].name == "BraTSReg_001_01_0106_t1ce.nii.gz"  # fixed = follow-up
    assert p1.moving["t1ce"].name == "BraTSReg_001_00_0000_t1ce.nii.gz"  # moving = baseline
    assert p1.fixed_landmarks.name == "BraTSReg_001_01_0106_landmarks.csv"
    assert p1.moving_landmarks.name == "BraTSReg_001_00_0000_landmarks.csv"
    assert p1.landmark_format == "brats" and p1.split == "train"
    assert p1.fixed_labels.name == "BraTSReg_001_01_0106_labels.nii.gz"
    assert p1.moving_labels.name == "BraTSReg_001_00_0000_labels.nii.gz"
    assert p1.meta["days"] == 106
    assert p2.split == "val" and p2.moving_landmarks is None and p2.fixed_landmarks is not None
    assert p2.fixed_labels is None


def test_landmarks_in_mm_both_ways(root):
    pair = brats_pairs(root)[0]
    # CSV -> voxel: X,Y,Z is voxel (X, Y+239, Z), derived from the header
    text = pair.fixed_landmarks.read_text().splitlines()
    assert text[1] == "1,5,-232,3"
    fixed, moving = load_pair_landmarks(pair)
    assert fixed.names == moving.names == ["1", "2", "3"]
    hdr = nib.load(pair.fixed["t1ce"]).header
    assert int(hdr["sform_code"]) == 1 and int(hdr["qform_code"]) == 0
    vol = load_volume(pair.fixed["t1ce"])
    ijk = lps_to_voxel(vol.affine, fixed.points)
    np.testing.assert_allclose(ijk[0], [5, 7, 3])
    assert vol.array[5, 7, 3] == 1000.0
    # voxel -> CSV mm, and moving joined by name (written in reverse order, +0.5 voxel)
    np.testing.assert_allclose(voxel_to_lps(vol.affine, ijk), fixed.points)
    np.testing.assert_allclose(lps_to_voxel(vol.affine, moving.points), ijk + 0.5)


def test_modalities_selectable(root):
    pairs = brats_pairs(root, modalities=("t1", "t2"))
    assert sorted(pairs[0].fixed) == ["t1", "t2"]
    assert brats_pairs(root, "flair")[0].moving["flair"].name.endswith("_00_0000_flair.nii.gz")


def test_splits_json_overrides(root):
    (root / "splits.json").write_text(json.dumps({"BraTSReg_001": "val", "BraTSReg_002": "test"}))
    assert [p.split for p in brats_pairs(root)] == ["val", "test"]


def test_splits_json_lists_missing_case(root):
    (root / "splits.json").write_text(json.dumps({"BraTSReg_001": "train", "BraTSReg_007": "train"}))
    with pytest.raises(InputError, match=r"missing case folders \['BraTSReg_007'\]") as e:
        brats_pairs(root)
    assert str(root) in str(e.value)


def test_requested_case_missing(root):
    with pytest.raises(InputError, match="BraTSReg_009"):
        brats_pairs(root, cases=["BraTSReg_001", "BraTSReg_009"])
    assert [p.id for p in brats_pairs(root, cases=["BraTSReg_002"])] == ["BraTSReg_002"]


def test_missing_modality_says_case_and_modality(tmp_path):
    make_case(tmp_path, 3, mods=("t1", "t2"))
    with pytest.raises(InputError) as e:
        brats_pairs(tmp_path, modalities=("t1ce",))
    msg = str(e.value)
    assert "BraTSReg_003" in msg and "'t1ce'" in msg and "follow-up" in msg and "baseline" in msg
    assert "found modalities: ['t1', 't2']" in msg


def test_missing_baseline_of_one_modality(tmp_path):
    d = make_case(tmp_path, 4)
    (d / "BraTSReg_004_00_0000_t1ce.nii.gz").unlink()
    with pytest.raises(InputError, match=r"case BraTSReg_004: missing modality 't1ce' at baseline \(expected BraTSReg_004_00_0000_t1ce.nii.gz\)"):
        brats_pairs(tmp_path)


def test_empty_case_folder_and_empty_root(tmp_path):
    (tmp_path / "BraTSReg_005").mkdir()
    with pytest.raises(InputError, match="BraTSReg_005.*found none"):
        brats_pairs(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="expected BraTSReg_XXX case folders, found none") as e:
        brats_pairs(empty)
    assert "empty" in str(e.value)
    with pytest.raises(InputError, match="no such folder"):
        brats_pairs(tmp_path / "nowhere")


def test_landmark_outside_image_is_reported(tmp_path):
    make_case(tmp_path, 6, both_landmarks=False, followup_points=np.array([[5.0, 7.0, 3.0], [5.0, 40.0, 3.0]]))
    pair = brats_pairs(tmp_path)[0]
    with pytest.raises(InputError, match=r"found 1 outside: '2'") as e:
        load_pair_landmarks(pair)
    assert "BraTSReg_006_01_0106_landmarks.csv" in str(e.value)


def test_landmark_names_differ_between_time_points(tmp_path):
    d = make_case(tmp_path, 8)
    p = d / "BraTSReg_008_00_0000_landmarks.csv"
    p.write_text(p.read_text().replace("\n3,", "\n4,"))
    with pytest.raises(InputError, match="only in") as e:
        load_pair_landmarks(brats_pairs(tmp_path)[0])
    assert "BraTSReg_008_00_0000_landmarks.csv" in str(e.value)
