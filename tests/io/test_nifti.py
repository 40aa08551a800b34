"""NIfTI round trip and every bad input listed in issue 3."""

import gzip

import nibabel as nib
import numpy as np
import pytest

from medreg.errors import InputError
from medreg.io.nifti import Volume, load_volume, save_volume, volume_geometry

AFFINE = np.array([[-0.8, 0, 0, 30.0], [0, 1.2, 0, -40.0], [0, 0, 2.5, 12.0], [0, 0, 0, 1]])


def _data(shape=(12, 10, 8)):
    return np.random.default_rng(0).normal(size=shape).astype(np.float32)


def _raw_nifti(path, data, affine=AFFINE):
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def test_round_trip_keeps_affine_and_data(tmp_path):
    data = _data()
    p = save_volume(tmp_path / "a.nii.gz", data, AFFINE)
    v = load_volume(p)
    assert isinstance(v, Volume) and v.path == p
    np.testing.assert_array_equal(v.array, data)
    np.testing.assert_allclose(v.affine, AFFINE)
    assert v.shape == (12, 10, 8)
    np.testing.assert_allclose(v.spacing, (0.8, 1.2, 2.5))
    hdr = nib.load(p).header
    assert int(hdr["sform_code"]) == 1 and int(hdr["qform_code"]) == 1


def test_uncompressed_and_dtype_kept(tmp_path):
    labels = np.arange(12 * 10 * 8, dtype=np.int16).reshape(12, 10, 8) % 5
    p = save_volume(tmp_path / "l.nii", labels, AFFINE)
    v = load_volume(p, dtype=None)
    assert v.array.dtype == np.int16
    np.testing.assert_array_equal(v.array, labels)


def test_brats_header_written_like_real_files(tmp_path):
    affine = np.array([[-1.0, 0, 0, 0], [0, -1, 0, 239], [0, 0, 1, 0], [0, 0, 0, 1]])
    p = save_volume(tmp_path / "b.nii.gz", _data(), affine, brats_header=True)
    hdr = nib.load(p).header
    assert int(hdr["sform_code"]) == 1 and int(hdr["qform_code"]) == 0
    np.testing.assert_allclose(hdr.get_sform(), affine)
    np.testing.assert_allclose(load_volume(p).affine, affine)


def test_refuses_overwrite_and_leaves_no_temp(tmp_path):
    p = save_volume(tmp_path / "a.nii.gz", _data(), AFFINE)
    before = p.read_bytes()
    with pytest.raises(InputError, match="already exists"):
        save_volume(p, _data() + 1, AFFINE)
    assert p.read_bytes() == before
    save_volume(p, _data() + 1, AFFINE, overwrite=True)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.nii.gz"]


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file") as e:
        load_volume(tmp_path / "nope.nii.gz")
    assert "nope.nii.gz" in str(e.value)


def test_directory_instead_of_file(tmp_path):
    d = tmp_path / "dir.nii.gz"
    d.mkdir()
    with pytest.raises(InputError, match="found a directory") as e:
        load_volume(d)
    assert "dir.nii.gz" in str(e.value)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.nii.gz"
    p.write_bytes(b"")
    with pytest.raises(InputError, match="empty file") as e:
        load_volume(p)
    assert "empty.nii.gz" in str(e.value)


@pytest.mark.parametrize("name,payload", [("text.nii", b"hello, I am not an image" * 30), ("text.nii.gz", None), ("notes.txt", b"x,y,z\n")])
def test_not_nifti(tmp_path, name, payload):
    p = tmp_path / name
    if payload is None:
        p.write_bytes(gzip.compress(b"not a nifti header at all" * 40))
    else:
        p.write_bytes(payload)
    with pytest.raises(InputError, match="not NIfTI") as e:
        load_volume(p)
    assert name in str(e.value)


def test_truncated_nii_gz(tmp_path):
    good = _raw_nifti(tmp_path / "good.nii.gz", _data((40, 40, 40)))
    raw = good.read_bytes()
    p = tmp_path / "cut.nii.gz"
    p.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match="truncated") as e:
        load_volume(p)
    assert "cut.nii.gz" in str(e.value)


def test_truncated_nii_gz_inside_header(tmp_path):
    good = _raw_nifti(tmp_path / "good.nii.gz", _data())
    p = tmp_path / "tiny.nii.gz"
    p.write_bytes(good.read_bytes()[:60])
    with pytest.raises(InputError, match="truncated") as e:
        load_volume(p)
    assert "tiny.nii.gz" in str(e.value)


def test_2d_where_3d_needed(tmp_path):
    p = _raw_nifti(tmp_path / "flat.nii.gz", _data((12, 10)))
    with pytest.raises(InputError, match=r"expected a 3D image, found a 2D image of shape \(12, 10\)") as e:
        load_volume(p)
    assert "flat.nii.gz" in str(e.value)
    assert load_volume(p, require_3d=False).shape == (12, 10)


def test_4d_with_several_volumes(tmp_path):
    p = _raw_nifti(tmp_path / "series.nii.gz", _data((12, 10, 8, 3)))
    with pytest.raises(InputError, match="4D image with 3 volumes") as e:
        load_volume(p)
    assert "series.nii.gz" in str(e.value)


def test_4d_with_one_volume_is_squeezed(tmp_path):
    data = _data((12, 10, 8, 1))
    p = _raw_nifti(tmp_path / "one.nii.gz", data)
    v = load_volume(p)
    assert v.shape == (12, 10, 8)
    np.testing.assert_array_equal(v.array, data[..., 0])
    assert volume_geometry(p)[0] == (12, 10, 8)


@pytest.mark.parametrize("bad,word", [(np.nan, "1 NaN and 0 Inf"), (np.inf, "0 NaN and 1 Inf")])
def test_nan_inf(tmp_path, bad, word):
    data = _data()
    data[3, 4, 5] = bad
    p = _raw_nifti(tmp_path / "nan.nii.gz", data)
    with pytest.raises(InputError, match=word) as e:
        load_volume(p)
    assert "nan.nii.gz" in str(e.value) and "finite" in str(e.value)


def test_constant_image(tmp_path):
    p = _raw_nifti(tmp_path / "flat.nii.gz", np.full((12, 10, 8), 7.0, np.float32))
    with pytest.raises(InputError, match="constant image") as e:
        load_volume(p)
    assert "flat.nii.gz" in str(e.value)
    assert load_volume(p, allow_constant=True).array.max() == 7.0


@pytest.mark.parametrize("value", [0.0, -1.5, np.nan, np.inf])
def test_bad_spacing(tmp_path, value):
    img = nib.Nifti1Image(_data(), None)
    img.header.set_qform(np.diag([1.0, 1.0, 1.0, 1.0]), code=1)
    img.header.set_sform(None, code=0)
    plain = tmp_path / "plain.nii"
    nib.save(img, str(plain))
    raw = bytearray(plain.read_bytes())
    raw[76 + 4 * 2 : 76 + 4 * 3] = np.float32(value).tobytes()  # pixdim[2], little-endian header
    p = tmp_path / "spacing.nii.gz"
    p.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(InputError, match="positive, finite voxel spacing") as e:
        load_volume(p)
    assert "spacing.nii.gz" in str(e.value) and "pixdim" in str(e.value)


def test_singular_affine(tmp_path):
    affine = np.array([[1.0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    img = nib.Nifti1Image(_data(), None)
    img.header.set_sform(affine, code=1)
    p = tmp_path / "singular.nii.gz"
    nib.save(img, str(p))
    with pytest.raises(InputError, match="singular") as e:
        load_volume(p)
    assert "singular.nii.gz" in str(e.value) and "invertible" in str(e.value)


def test_zero_column_affine_is_zero_spacing(tmp_path):
    affine = np.diag([1.0, 0.0, 1.0, 1.0])
    img = nib.Nifti1Image(_data(), None)
    img.header.set_sform(affine, code=1)
    p = tmp_path / "zero.nii.gz"
    nib.save(img, str(p))
    with pytest.raises(InputError, match="spacing") as e:
        load_volume(p)
    assert "zero.nii.gz" in str(e.value)
