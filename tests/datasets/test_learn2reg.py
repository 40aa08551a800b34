"""Learn2Reg dataset JSON (NLST-style) on a tiny synthetic folder in the real layout."""

import json

import numpy as np
import pytest

from medreg.datasets.base import load_pair_landmarks
from medreg.datasets.learn2reg import learn2reg_pairs
from medreg.errors import InputError
from medreg.geometry.frames import voxel_to_lps
from medreg.io.nifti import save_volume

SHAPE = (12, 10, 8)
AFFINE = np.array([[1.5, 0, 0, -10.0], [0, 1.5, 0, 20.0], [0, 0, 1.5, 5.0], [0, 0, 0, 1]])


def _img(seed):
    return np.random.default_rng(seed).normal(size=SHAPE).astype(np.float32)


def make_nlst(root, cases=(1, 2, 3), val=(3,), keypoints=True, training_list=False):
    for sub in ("imagesTr", "keypointsTr", "masksTr"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for c in cases:
        for t in ("0000", "0001"):
            save_volume(root / "imagesTr" / f"NLST_{c:04d}_{t}.nii.gz", _img(c * 10 + int(t)), AFFINE)
            save_volume(root / "masksTr" / f"NLST_{c:04d}_{t}.nii.gz", np.ones(SHAPE, np.uint8), AFFINE)
            if keypoints:
                shift = 0.0 if t == "0000" else 1.0
                rows = [[0, 0, 0], [3 + shift, 4, 5], [11, 9, 7 - shift]]
                (root / "keypointsTr" / f"NLST_{c:04d}_{t}.csv").write_text("".join(f"{x},{y},{z}\n" for x, y, z in rows))

    def entry(c):
        return {"fixed": f"./imagesTr/NLST_{c:04d}_0000.nii.gz", "moving": f"./imagesTr/NLST_{c:04d}_0001.nii.gz"}

    data = {
        "name": "NLST",
        "training_paired_images": [entry(c) for c in cases if c not in val],
        "registration_val": [entry(c) for c in val],
        "registration_test": [{"fixed": "./imagesTs/NLST_0300_0000.nii.gz", "moving": "./imagesTs/NLST_0300_0001.nii.gz"}],
    }
    if training_list:
        data["training"] = [{"image": f"./imagesTr/NLST_{c:04d}_{t}.nii.gz", "keypoints": f"./keypointsTr/NLST_{c:04d}_{t}.csv"} for c in cases for t in ("0000", "0001")]
    (root / "NLST_dataset.json").write_text(json.dumps(data))
    return root


def test_pairs_splits_and_files(tmp_path):
    pairs = learn2reg_pairs(make_nlst(tmp_path))
    assert [(p.id, p.split) for p in pairs] == [("NLST_0001", "train"), ("NLST_0002", "train"), ("NLST_0003", "val")]
    p = pairs[0]
    assert p.fixed["image"].name == "NLST_0001_0000.nii.gz" and p.moving["image"].name == "NLST_0001_0001.nii.gz"
    assert p.fixed_landmarks == tmp_path / "keypointsTr" / "NLST_0001_0000.csv"
    assert p.landmark_format == "learn2reg"
    assert p.meta["fixed_mask"].endswith("masksTr/NLST_0001_0000.nii.gz")


def test_keypoints_zero_based(tmp_path):
    pair = learn2reg_pairs(make_nlst(tmp_path, training_list=True))[0]
    fixed, moving = load_pair_landmarks(pair)
    np.testing.assert_allclose(fixed.points[1], voxel_to_lps(AFFINE, np.array([3.0, 4, 5]))[0])
    # RAS (-10 + 1.5*3, 20 + 1.5*4, 5 + 1.5*5) -> LPS
    np.testing.assert_allclose(fixed.points[1], [10 - 4.5, -26.0, 12.5])
    np.testing.assert_allclose(np.linalg.norm(fixed.points - moving.points, axis=1), [0, 1.5, 1.5])


def test_test_split_only_when_asked(tmp_path):
    make_nlst(tmp_path)
    with pytest.raises(InputError, match="NLST_0300_0000.nii.gz: expected the image listed in NLST_dataset.json"):
        learn2reg_pairs(tmp_path, splits=("test",))


@pytest.mark.parametrize("bad", ["../outside/NLST_0001_0000.nii.gz", "/etc/passwd", "imagesTr/../../x.nii.gz"])
def test_paths_escaping_root(tmp_path, bad):
    root = make_nlst(tmp_path / "data")
    data = json.loads((root / "NLST_dataset.json").read_text())
    data["registration_val"][0]["moving"] = bad
    (root / "NLST_dataset.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="escapes the root") as e:
        learn2reg_pairs(root)
    assert "NLST_dataset.json" in str(e.value) and bad in str(e.value)


def test_missing_image_and_bad_json(tmp_path):
    root = make_nlst(tmp_path)
    (root / "imagesTr" / "NLST_0002_0001.nii.gz").unlink()
    with pytest.raises(InputError, match="NLST_0002_0001.nii.gz: expected the image listed"):
        learn2reg_pairs(root)
    (root / "NLST_dataset.json").write_text("{broken")
    with pytest.raises(InputError, match="invalid JSON") as e:
        learn2reg_pairs(root)
    assert "NLST_dataset.json" in str(e.value)
    (root / "NLST_dataset.json").write_text(json.dumps({"name": "x"}))
    with pytest.raises(InputError, match="expected pair lists"):
        learn2reg_pairs(root)


def test_json_choice(tmp_path):
    with pytest.raises(InputError, match="exactly one \\*_dataset.json"):
        learn2reg_pairs(tmp_path)
    root = make_nlst(tmp_path)
    (root / "OTHER_dataset.json").write_text((root / "NLST_dataset.json").read_text())
    with pytest.raises(InputError, match="OTHER_dataset.json"):
        learn2reg_pairs(root)
    assert len(learn2reg_pairs(root, json_name="NLST_dataset.json")) == 3
    with pytest.raises(InputError, match="escapes"):
        learn2reg_pairs(root, json_name="../NLST_dataset.json")


def test_no_keypoints_is_fine(tmp_path):
    root = make_nlst(tmp_path, keypoints=False)
    pair = learn2reg_pairs(root)[0]
    assert pair.fixed_landmarks is None and pair.landmark_format is None
    assert load_pair_landmarks(pair) == (None, None)
