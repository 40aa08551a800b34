"""DIR-Lab 4DCT and COPDGene layouts on tiny synthetic cases in the real folder layout."""

import numpy as np
import pytest

from medreg.datasets.base import load_pair_landmarks
from medreg.datasets.dirlab import copd_pairs, dirlab_pairs
from medreg.errors import InputError
from medreg.io.dirlab import DIRLAB_CASES, RawGeometry, read_dirlab_img, write_dirlab_img, write_geometry_file

GEOM = RawGeometry((12, 10, 8), (0.97, 0.97, 2.5))
INHALE = np.array([[1, 1, 1], [6, 5, 4], [12, 10, 8]])  # 1-based
EXHALE = np.array([[1, 1, 1], [6, 5, 6], [11, 10, 8]])


def _vol(seed):
    return np.random.default_rng(seed).integers(-1000, 500, GEOM.shape).astype(np.int16)


def _txt(path, idx):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{x}\t{y}\t{z}\t\n" for x, y, z in idx))


def make_4dct(root, n, *, new_style=False, geometry=GEOM, sidecar=True):
    pack = root / f"Case{n}Pack"
    (pack / "Images").mkdir(parents=True)
    suffix = "" if new_style else "_s"
    for phase, seed in (("T00", 1), ("T50", 2), ("T10", 3)):
        write_dirlab_img(pack / "Images" / f"case{n}_{phase}{suffix}.img", _vol(seed) if geometry is GEOM else np.zeros(geometry.shape, np.int16))
    if new_style:  # cases 6-10: lower-case folder, dirLab300 names
        _txt(pack / "extremePhases" / f"case{n}_dirLab300_T00_xyz.txt", INHALE)
        _txt(pack / "extremePhases" / f"case{n}_dirLab300_T50_xyz.txt", EXHALE)
    else:
        _txt(pack / "ExtremePhases" / f"Case{n}_300_T00_xyz.txt", INHALE)
        _txt(pack / "ExtremePhases" / f"Case{n}_300_T50_xyz.txt", EXHALE)
    if sidecar:
        write_geometry_file(pack / "geometry.json", geometry)
    return pack


def make_copd(root, n):
    d = root / f"copd{n}"
    d.mkdir(parents=True)
    write_dirlab_img(d / f"copd{n}_iBHCT.img", _vol(4))
    write_dirlab_img(d / f"copd{n}_eBHCT.img", _vol(5))
    _txt(d / f"copd{n}_300_iBH_xyz_r1.txt", INHALE)
    _txt(d / f"copd{n}_300_eBH_xyz_r1.txt", EXHALE)
    write_geometry_file(d / "geometry.json", RawGeometry(GEOM.shape, (0.625, 0.625, 2.5)))
    return d


def test_4dct_roles_and_landmarks_mm(tmp_path):
    make_4dct(tmp_path, 1)
    make_4dct(tmp_path, 7, new_style=True)
    pairs = dirlab_pairs(tmp_path)
    assert [p.id for p in pairs] == ["case1", "case7"]
    p = pairs[0]
    assert p.fixed["ct"].name == "case1_T50_s.img" and p.moving["ct"].name == "case1_T00_s.img"
    assert p.fixed_landmarks.name == "Case1_300_T50_xyz.txt"
    assert p.moving_landmarks.name == "Case1_300_T00_xyz.txt"
    assert p.raw_geometry == GEOM and p.landmark_format == "dirlab"
    assert pairs[1].fixed["ct"].name == "case7_T50.img"
    assert pairs[1].fixed_landmarks.name == "case7_dirLab300_T50_xyz.txt"
    fixed, moving = load_pair_landmarks(p)
    # mm = (index - 1) * spacing
    np.testing.assert_allclose(fixed.points, (EXHALE - 1) * np.array(GEOM.spacing))
    np.testing.assert_allclose(moving.points, (INHALE - 1) * np.array(GEOM.spacing))
    # no-registration error in mm, with anisotropic spacing: only landmark 2 (z, 2 slices) and 3 (x, 1 voxel) moved
    err = np.linalg.norm(fixed.points - moving.points, axis=1)
    np.testing.assert_allclose(err, [0.0, 5.0, 0.97])
    vol = read_dirlab_img(p.fixed["ct"], p.raw_geometry)
    assert vol.shape == GEOM.shape


def test_4dct_table_geometry_by_case_name_and_size_mismatch(tmp_path):
    pack = make_4dct(tmp_path, 2, sidecar=False)  # tiny files, but case2 is 256x256x112 in the table
    with pytest.raises(InputError) as e:
        dirlab_pairs(tmp_path)
    expected = DIRLAB_CASES["case2"].nbytes
    msg = str(e.value)
    assert "case2_T" in msg and f"expected {expected} bytes" in msg and f"found {2 * 12 * 10 * 8} bytes" in msg
    assert str(pack) in msg


def test_4dct_real_size_uses_table(tmp_path):
    make_4dct(tmp_path, 1, geometry=DIRLAB_CASES["case1"], sidecar=False)
    (pair,) = dirlab_pairs(tmp_path)
    assert pair.raw_geometry == RawGeometry((256, 256, 94), (0.97, 0.97, 2.5))
    fixed, _ = load_pair_landmarks(pair)
    np.testing.assert_allclose(fixed.points[1], [5 * 0.97, 4 * 0.97, 5 * 2.5])


def test_4dct_missing_phase_and_landmarks(tmp_path):
    pack = make_4dct(tmp_path, 3)
    (pack / "Images" / "case3_T50_s.img").unlink()
    (pack / "ExtremePhases" / "Case3_300_T00_xyz.txt").unlink()
    with pytest.raises(InputError, match=r"case case3: missing T50 image, T00 landmarks") as e:
        dirlab_pairs(tmp_path)
    assert "Case3Pack" in str(e.value)
    (pack / "Images" / "case3_T10_s.img").rename(pack / "Images" / "case3_T50_s.img")
    with pytest.raises(InputError, match="T00 landmarks"):
        dirlab_pairs(tmp_path)
    (pair,) = dirlab_pairs(tmp_path, require_landmarks=False)
    assert pair.moving_landmarks is None and pair.fixed_landmarks is not None


def test_unknown_case_without_sidecar(tmp_path):
    make_4dct(tmp_path, 11, sidecar=False)
    with pytest.raises(InputError, match="geometry.json sidecar, found case 'case11' with neither") as e:
        dirlab_pairs(tmp_path)
    assert "Case11Pack" in str(e.value)


def test_empty_root(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="case folders like Case1Pack, found none"):
        dirlab_pairs(tmp_path)
    with pytest.raises(InputError, match="case folders like copd1, found none"):
        copd_pairs(tmp_path)


def test_landmark_outside_image(tmp_path):
    pack = make_4dct(tmp_path, 4)
    _txt(pack / "ExtremePhases" / "Case4_300_T50_xyz.txt", [[1, 1, 1], [6, 5, 4], [13, 10, 8]])
    with pytest.raises(InputError, match="found 1 outside: '3'") as e:
        load_pair_landmarks(dirlab_pairs(tmp_path)[0])
    assert "Case4_300_T50_xyz.txt" in str(e.value)


def test_landmark_count_differs(tmp_path):
    pack = make_4dct(tmp_path, 5)
    _txt(pack / "ExtremePhases" / "Case5_300_T50_xyz.txt", EXHALE[:2])
    with pytest.raises(InputError, match="only in .*Case5_300_T00_xyz.txt: '3'"):
        load_pair_landmarks(dirlab_pairs(tmp_path)[0])


def test_copd_layout(tmp_path):
    make_copd(tmp_path, 1)
    (pair,) = copd_pairs(tmp_path)
    assert pair.id == "copd1" and pair.split == "test"
    assert pair.fixed["ct"].name == "copd1_eBHCT.img" and pair.moving["ct"].name == "copd1_iBHCT.img"
    assert pair.fixed_landmarks.name == "copd1_300_eBH_xyz_r1.txt"
    fixed, moving = load_pair_landmarks(pair)
    np.testing.assert_allclose(moving.points, (INHALE - 1) * np.array([0.625, 0.625, 2.5]))
    np.testing.assert_allclose(np.linalg.norm(fixed.points - moving.points, axis=1), [0, 5.0, 0.625])


def test_copd_size_mismatch_uses_table(tmp_path):
    d = make_copd(tmp_path, 2)
    (d / "geometry.json").unlink()
    with pytest.raises(InputError, match=rf"copd2_eBHCT.img: expected {DIRLAB_CASES['copd2'].nbytes} bytes"):
        copd_pairs(tmp_path)


def test_dirlab_split_from_splits_json(tmp_path):
    import json

    from medreg.io.dirlab import RawGeometry, write_dirlab_img, write_geometry_file
    import numpy as np

    case = tmp_path / "Case1Pack"
    (case / "Images").mkdir(parents=True)
    (case / "ExtremePhases").mkdir()
    geom = RawGeometry((6, 5, 4), (1.0, 1.0, 2.5))
    write_geometry_file(case / "geometry.json", geom)
    for phase in ("T00", "T50"):
        write_dirlab_img(case / "Images" / f"case1_{phase}_s.img", np.ones((6, 5, 4), np.int16))
        (case / "ExtremePhases" / f"Case1_300_{phase}_xyz.txt").write_text("1 1 1\n2 2 2\n")
    from medreg.datasets.dirlab import dirlab_pairs

    assert dirlab_pairs(tmp_path)[0].split == "test"
    (tmp_path / "splits.json").write_text(json.dumps({"Case1Pack": "train"}))
    assert dirlab_pairs(tmp_path)[0].split == "train"
