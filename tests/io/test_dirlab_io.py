"""DIR-Lab raw .img volumes, the built-in geometry table and the JSON sidecar."""

import numpy as np
import pytest

from medreg.errors import InputError
from medreg.io.dirlab import (
    DIRLAB_CASES,
    RawGeometry,
    dirlab_affine,
    read_dirlab_img,
    read_geometry_file,
    write_dirlab_img,
    write_geometry_file,
)
from medreg.geometry.frames import voxel_to_lps
from medreg.io.landmarks import read_dirlab_txt

GEOM = RawGeometry((12, 10, 8), (0.97, 0.97, 2.5))


def _array():
    return (np.arange(12 * 10 * 8).reshape(12, 10, 8) - 400).astype(np.int16)


def test_table_matches_reference():
    assert len(DIRLAB_CASES) == 20
    assert DIRLAB_CASES["case1"] == RawGeometry((256, 256, 94), (0.97, 0.97, 2.5))
    assert DIRLAB_CASES["case4"] == RawGeometry((256, 256, 99), (1.13, 1.13, 2.5))
    assert DIRLAB_CASES["case7"] == RawGeometry((512, 512, 136), (0.97, 0.97, 2.5))
    assert DIRLAB_CASES["copd1"] == RawGeometry((512, 512, 121), (0.625, 0.625, 2.5))
    assert DIRLAB_CASES["copd10"] == RawGeometry((512, 512, 135), (0.742, 0.742, 2.5))
    assert DIRLAB_CASES["case10"].nbytes == 512 * 512 * 120 * 2


def test_affine_gives_index_times_spacing_in_lps():
    a = dirlab_affine(GEOM)
    np.testing.assert_allclose(voxel_to_lps(a, np.array([[0, 0, 0], [2, 3, 4]])), [[0, 0, 0], [1.94, 2.91, 10.0]])


def test_img_round_trip_x_fastest(tmp_path):
    arr = _array()
    p = write_dirlab_img(tmp_path / "case1_T00_s.img", arr)
    raw = np.fromfile(p, dtype="<i2")
    assert raw[1] == arr[1, 0, 0]  # x varies fastest in the file
    assert raw[12] == arr[0, 1, 0]
    v = read_dirlab_img(p, GEOM)
    assert v.array.dtype == np.int16 and v.shape == (12, 10, 8)
    np.testing.assert_array_equal(v.array, arr)
    np.testing.assert_allclose(v.spacing, GEOM.spacing)
    assert read_dirlab_img(p, GEOM, dtype=np.float32).array.dtype == np.float32
    with pytest.raises(InputError, match="already exists"):
        write_dirlab_img(p, arr)


def test_img_size_mismatch_names_file_and_sizes(tmp_path):
    p = write_dirlab_img(tmp_path / "case1_T50_s.img", _array()[:, :, :7])
    with pytest.raises(InputError, match=r"expected 1920 bytes \(int16, 12x10x8 voxels\), found 1680 bytes") as e:
        read_dirlab_img(p, GEOM)
    assert "case1_T50_s.img" in str(e.value)


def test_img_missing_empty(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_dirlab_img(tmp_path / "x.img", GEOM)
    (tmp_path / "e.img").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        read_dirlab_img(tmp_path / "e.img", GEOM)


def test_write_rejects_non_int16_values(tmp_path):
    with pytest.raises(ValueError, match="int16"):
        write_dirlab_img(tmp_path / "big.img", np.full((2, 2, 2), 40000, dtype=np.int32))
    assert not (tmp_path / "big.img").exists()


def test_landmark_on_known_voxel_reads_its_value(tmp_path):
    arr = _array()
    arr[4, 6, 2] = 999
    p = write_dirlab_img(tmp_path / "c.img", arr)
    vol = read_dirlab_img(p, GEOM)
    (tmp_path / "lm.txt").write_text("5 7 3\n")  # 1-based
    lm = read_dirlab_txt(tmp_path / "lm.txt", vol.affine)
    np.testing.assert_allclose(lm.points, [[4 * 0.97, 6 * 0.97, 2 * 2.5]])
    ijk = np.round(np.linalg.solve(vol.affine[:3, :3], (lm.points * [-1, -1, 1] - vol.affine[:3, 3]).T).T).astype(int)[0]
    assert vol.array[tuple(ijk)] == 999


def test_geometry_sidecar_round_trip_and_errors(tmp_path):
    p = write_geometry_file(tmp_path / "geometry.json", GEOM)
    assert read_geometry_file(p) == GEOM
    bad = tmp_path / "bad.json"
    bad.write_text('{"shape": [12, 10], "spacing": [1, 1, 1]}')
    with pytest.raises(InputError, match="'shape' to be 3 positive integers") as e:
        read_geometry_file(bad)
    assert "bad.json" in str(e.value)
    bad.write_text('{"shape": [12, 10, 8], "spacing": [1, 0, 1]}')
    with pytest.raises(InputError, match="spacing"):
        read_geometry_file(bad)
    bad.write_text("{not json")
    with pytest.raises(InputError, match="invalid JSON"):
        read_geometry_file(bad)
