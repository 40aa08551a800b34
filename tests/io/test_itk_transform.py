"""medreg.io.itk_transform: displacement fields that ITK/SimpleITK read exactly as medreg means them."""

from __future__ import annotations

import numpy as np
import pytest

from medreg.errors import InputError
from medreg.geometry.frames import voxel_to_lps
from medreg.io.itk_transform import (affine_to_itk, itk_to_affine, read_displacement_nifti, read_transform,
                                     write_displacement_nifti, write_transform_h5)


def oblique_affine() -> np.ndarray:
    """An LPS-ish oblique affine (rotation about z, flips, anisotropic spacing)."""
    c, s = np.cos(0.3), np.sin(0.3)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    a = np.eye(4)
    a[:3, :3] = rot @ np.diag([-1.2, -0.9, 2.0])
    a[:3, 3] = [40.0, -12.0, 7.5]
    return a


def smooth_field(shape) -> np.ndarray:
    i, j, k = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    return np.stack([1.5 + 0.1 * i, -2.0 + 0.05 * j * k / shape[2], 0.5 * np.sin(i / 3.0)], -1).astype(np.float32)


def test_affine_itk_round_trip_matches_simpleitk_reading(tmp_path):
    import SimpleITK as sitk

    from medreg.io.nifti import save_volume

    a = oblique_affine()
    path = save_volume(tmp_path / "img.nii.gz", np.random.default_rng(0).random((5, 6, 7)).astype(np.float32), a)
    img = sitk.ReadImage(str(path))
    origin, spacing, direction = affine_to_itk(a)
    np.testing.assert_allclose(origin, img.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(spacing, img.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(direction, img.GetDirection(), atol=1e-5)
    np.testing.assert_allclose(itk_to_affine(origin, spacing, direction), a, atol=1e-10)
    # ITK's physical point of a voxel is medreg's LPS point of that voxel
    np.testing.assert_allclose(img.TransformIndexToPhysicalPoint((2, 3, 4)), voxel_to_lps(a, np.array([[2, 3, 4]]))[0],
                               atol=1e-4)


def test_sheared_affine_is_refused():
    a = np.eye(4)
    a[0, 1] = 0.5
    with pytest.raises(ValueError, match="shear"):
        affine_to_itk(a)


def test_field_nifti_is_itk_vector_image_in_lps(tmp_path):
    import nibabel as nib
    import SimpleITK as sitk

    a, shape = oblique_affine(), (6, 5, 4)
    u = smooth_field(shape)
    path = write_displacement_nifti(tmp_path / "field.nii.gz", u, a)
    img = nib.load(str(path))
    assert img.shape == (6, 5, 4, 1, 3) and int(img.header["intent_code"]) == 1007
    back = read_displacement_nifti(path)
    np.testing.assert_array_equal(back.displacement_lps, u)
    np.testing.assert_allclose(back.affine, a, atol=1e-5)
    s = sitk.ReadImage(str(path))
    assert s.GetNumberOfComponentsPerPixel() == 3
    np.testing.assert_allclose(sitk.GetArrayFromImage(s).transpose(2, 1, 0, 3), u)  # components unchanged (LPS)
    np.testing.assert_allclose(s.GetOrigin(), affine_to_itk(a)[0], atol=1e-4)
    with pytest.raises(InputError, match="already exists"):
        write_displacement_nifti(path, u, a)


def test_transform_h5_maps_points_like_medreg(tmp_path):
    import SimpleITK as sitk

    a, shape = oblique_affine(), (6, 5, 4)
    u = smooth_field(shape)
    path = write_transform_h5(tmp_path / "transform.h5", u, a)
    tx = sitk.ReadTransform(str(path))
    for ijk in ([0, 0, 0], [3, 2, 1], [5, 4, 3]):
        p = voxel_to_lps(a, np.array([ijk], dtype=float))[0]
        np.testing.assert_allclose(tx.TransformPoint(tuple(p)), p + u[tuple(ijk)], atol=1e-4)
    back = read_transform(path)
    np.testing.assert_allclose(back.displacement_lps, u, atol=1e-6)
    np.testing.assert_allclose(back.affine, a, atol=1e-6)


def test_affine_itk_transform_sampled_on_reference(tmp_path):
    import SimpleITK as sitk

    tx = sitk.TranslationTransform(3, (1.0, -2.0, 3.0))
    sitk.WriteTransform(tx, str(tmp_path / "t.tfm"))
    with pytest.raises(InputError, match="reference"):
        read_transform(tmp_path / "t.tfm")
    out = read_transform(tmp_path / "t.tfm", (oblique_affine(), (3, 4, 5)))
    np.testing.assert_allclose(out.displacement_lps, np.broadcast_to([1.0, -2.0, 3.0], (3, 4, 5, 3)), atol=1e-6)


def test_bad_transform_files_name_the_file(tmp_path):
    import nibabel as nib

    with pytest.raises(InputError, match="no such file"):
        read_transform(tmp_path / "missing.nii.gz")
    four_d = tmp_path / "four_d.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 3), np.float32), np.eye(4)), str(four_d))
    with pytest.raises(InputError, match="5D array X,Y,Z,1,3"):
        read_transform(four_d)
    junk = tmp_path / "junk.h5"
    junk.write_text("not a transform\n")
    with pytest.raises(InputError, match="junk.h5.*ITK transform"):
        read_transform(junk)
    other = tmp_path / "field.npy"
    other.write_bytes(b"x")
    with pytest.raises(InputError, match="expected a transform file"):
        read_transform(other)
