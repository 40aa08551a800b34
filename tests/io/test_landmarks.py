"""Landmark readers/writers: formats, conventions (LPS mm) and every bad input."""

import numpy as np
import pytest

from medreg.errors import InputError
from medreg.geometry.frames import voxel_to_lps
from medreg.io.landmarks import (
    Landmarks,
    check_inside,
    match_landmarks,
    read_brats_csv,
    read_dirlab_txt,
    read_learn2reg_csv,
    write_brats_csv,
    write_dirlab_txt,
)

BRATS_AFFINE = np.array([[-1.0, 0, 0, 0], [0, -1, 0, 239], [0, 0, 1, 0], [0, 0, 0, 1]])
RAS_AFFINE = np.diag([1.0, 1.0, 1.0, 1.0])  # same grid, RAS+ oriented header


def _write(path, text):
    path.write_text(text)
    return path


# --- BraTS-Reg CSV ---------------------------------------------------------

def test_brats_csv_round_trip_exact(tmp_path):
    lm = Landmarks(["1", "2", "tumour tip"], np.array([[10.25, -200.0, 30.0], [0.1, -0.2, 1e-7], [55.5, -100.125, 77.0]]))
    p = write_brats_csv(tmp_path / "lm.csv", lm)
    assert p.read_text().splitlines()[0] == "Landmark,X,Y,Z"
    back = read_brats_csv(p)
    assert back.names == lm.names and back.path == p
    np.testing.assert_array_equal(back.points, lm.points)
    with pytest.raises(InputError, match="already exists"):
        write_brats_csv(p, lm)


def test_brats_csv_values_are_lps_and_map_to_voxel_y_plus_239(tmp_path):
    p = _write(tmp_path / "BraTSReg_001_01_0106_landmarks.csv", "Landmark,X,Y,Z\n1,120,-100,40\n2,0,-239,0\n")
    lm = read_brats_csv(p)
    ijk = np.linalg.solve(BRATS_AFFINE[:3, :3], (lm.points * [-1, -1, 1] - BRATS_AFFINE[:3, 3]).T).T
    np.testing.assert_allclose(ijk, [[120, 139, 40], [0, 0, 0]])


def test_brats_csv_header_tolerant_of_spaces_and_order(tmp_path):
    p = _write(tmp_path / "a.csv", " Landmark , Z , Y , X\n7, 3, 2, 1\n")
    lm = read_brats_csv(p)
    assert lm.names == ["7"]
    np.testing.assert_array_equal(lm.points, [[1, 2, 3]])


def test_brats_csv_missing_column(tmp_path):
    p = _write(tmp_path / "cols.csv", "Landmark,X,Y\n1,2,3\n")
    with pytest.raises(InputError, match=r"expected columns Landmark,X,Y,Z.*missing Z") as e:
        read_brats_csv(p)
    assert "cols.csv" in str(e.value)


def test_brats_csv_short_row(tmp_path):
    p = _write(tmp_path / "short.csv", "Landmark,X,Y,Z\n1,2,3,4\n2,5,6\n")
    with pytest.raises(InputError, match=r"line 3: expected 4 values.*found 3") as e:
        read_brats_csv(p)
    assert "short.csv" in str(e.value)


@pytest.mark.parametrize("bad", ["abc", "nan", "inf", ""])
def test_brats_csv_non_numeric(tmp_path, bad):
    p = _write(tmp_path / "num.csv", f"Landmark,X,Y,Z\n1,2,3,4\n2,5,{bad},6\n")
    with pytest.raises(InputError, match=r"line 3: expected a (finite )?number in column Y") as e:
        read_brats_csv(p)
    assert "num.csv" in str(e.value)


def test_brats_csv_duplicate_names(tmp_path):
    p = _write(tmp_path / "dup.csv", "Landmark,X,Y,Z\n1,2,3,4\n2,5,6,7\n1,8,9,10\n")
    with pytest.raises(InputError, match=r"duplicate name '1' on lines 2 and 4") as e:
        read_brats_csv(p)
    assert "dup.csv" in str(e.value)


def test_brats_csv_header_only_and_empty(tmp_path):
    with pytest.raises(InputError, match="found none"):
        read_brats_csv(_write(tmp_path / "h.csv", "Landmark,X,Y,Z\n"))
    with pytest.raises(InputError, match="empty file") as e:
        read_brats_csv(_write(tmp_path / "e.csv", ""))
    assert "e.csv" in str(e.value)
    with pytest.raises(InputError, match="no such file"):
        read_brats_csv(tmp_path / "missing.csv")
    (tmp_path / "d.csv").mkdir()
    with pytest.raises(InputError, match="directory"):
        read_brats_csv(tmp_path / "d.csv")


# --- matching --------------------------------------------------------------

def test_match_joins_on_names_not_row_order():
    f = Landmarks(["a", "b", "c"], np.array([[1.0, 0, 0], [2, 0, 0], [3, 0, 0]]))
    m = Landmarks(["c", "a", "b"], np.array([[30.0, 0, 0], [10, 0, 0], [20, 0, 0]]))
    f2, m2 = match_landmarks(f, m)
    assert f2.names == m2.names == ["a", "b", "c"]
    np.testing.assert_array_equal(m2.points[:, 0], [10, 20, 30])


def test_match_names_in_one_file_only(tmp_path):
    fp = _write(tmp_path / "fixed.csv", "Landmark,X,Y,Z\n1,0,0,0\n2,1,1,1\n")
    mp = _write(tmp_path / "moving.csv", "Landmark,X,Y,Z\n1,0,0,0\n3,1,1,1\n")
    with pytest.raises(InputError) as e:
        match_landmarks(read_brats_csv(fp), read_brats_csv(mp))
    msg = str(e.value)
    assert "only in" in msg and "fixed.csv" in msg and "moving.csv" in msg and "'2'" in msg and "'3'" in msg


# --- DIR-Lab text (1-based) ------------------------------------------------

def test_dirlab_txt_one_based_mm(tmp_path):
    spacing = (0.97, 0.97, 2.5)
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])  # dirlab_affine convention
    p = _write(tmp_path / "Case1_300_T00_xyz.txt", "1\t1\t1\n101\t51\t11\t\n\n")
    lm = read_dirlab_txt(p, affine)
    assert lm.names == ["1", "2"]
    # mm = (index - 1) * spacing
    np.testing.assert_allclose(lm.points, [[0, 0, 0], [100 * 0.97, 50 * 0.97, 10 * 2.5]])


def test_dirlab_txt_round_trip(tmp_path):
    affine = np.diag([-1.16, -1.16, 2.5, 1.0])
    lm = Landmarks(["1", "2"], voxel_to_lps(affine, np.array([[3.0, 4.0, 5.0], [10.25, 0.5, 2.0]])))
    p = write_dirlab_txt(tmp_path / "x.txt", lm, affine)
    assert p.read_text().splitlines()[0] == "4\t5\t6"
    np.testing.assert_allclose(read_dirlab_txt(p, affine).points, lm.points, atol=1e-9)


def test_dirlab_txt_missing_column_and_non_numeric(tmp_path):
    with pytest.raises(InputError, match=r"line 2: expected 3 values \(x y z\), found 2") as e:
        read_dirlab_txt(_write(tmp_path / "two.txt", "1 2 3\n4 5\n"), np.eye(4))
    assert "two.txt" in str(e.value)
    with pytest.raises(InputError, match=r"line 1: expected a number in column z, found 'q'") as e:
        read_dirlab_txt(_write(tmp_path / "q.txt", "1 2 q\n"), np.eye(4))
    assert "q.txt" in str(e.value)


# --- Learn2Reg CSV (0-based) -----------------------------------------------

def test_learn2reg_zero_based(tmp_path):
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    affine[:3, 3] = [-10, 20, 5]
    p = _write(tmp_path / "NLST_0001_0000.csv", "0,0,0\n2.5,4,6\n")
    lm = read_learn2reg_csv(p, affine)
    ras = np.array([[-10, 20, 5], [-10 + 3.75, 26, 14]])
    np.testing.assert_allclose(lm.points, ras * [-1, -1, 1])
    assert lm.names == ["1", "2"]
    with_header = read_learn2reg_csv(_write(tmp_path / "h.csv", "x,y,z\n0,0,0\n2.5,4,6\n"), affine)
    np.testing.assert_allclose(with_header.points, lm.points)


def test_learn2reg_bad_rows(tmp_path):
    with pytest.raises(InputError, match=r"line 2: expected 3 values") as e:
        read_learn2reg_csv(_write(tmp_path / "k.csv", "1,2,3\n1,2\n"), np.eye(4))
    assert "k.csv" in str(e.value)
    with pytest.raises(InputError, match=r"line 2: expected a number in column x"):
        read_learn2reg_csv(_write(tmp_path / "k2.csv", "1,2,3\nfoo,2,3\n"), np.eye(4))


# --- inside the image, LPS vs RAS headers -----------------------------------

def test_check_inside_names_file_and_landmark(tmp_path):
    lm = Landmarks(["in", "out"], np.array([[5.0, -230.0, 3.0], [5.0, -250.0, 3.0]]), tmp_path / "lm.csv")
    with pytest.raises(InputError, match=r"found 1 outside: 'out'") as e:
        check_inside(lm, (12, 10, 8), BRATS_AFFINE)
    assert "lm.csv" in str(e.value)
    check_inside(Landmarks(["in"], lm.points[:1]), (12, 10, 8), BRATS_AFFINE)


def test_lps_vs_ras_header_same_csv_different_voxels(tmp_path):
    # A CSV point is an LPS world position: with an LPS-style header (-1,-1,1)
    # and a RAS-style header (+1,+1,1) it lands on mirrored voxels.
    lm = read_brats_csv(_write(tmp_path / "p.csv", "Landmark,X,Y,Z\n1,-3,-4,5\n"))
    lps_hdr = np.diag([-1.0, -1.0, 1.0, 1.0])
    from medreg.geometry.frames import lps_to_voxel

    np.testing.assert_allclose(lps_to_voxel(RAS_AFFINE, lm.points), [[3, 4, 5]])
    np.testing.assert_allclose(lps_to_voxel(lps_hdr, lm.points), [[-3, -4, 5]])
    check_inside(lm, (12, 10, 8), RAS_AFFINE)
    with pytest.raises(InputError, match="outside"):
        check_inside(lm, (12, 10, 8), lps_hdr)
