"""medreg.apply: saved transforms applied to images and landmark files, checked against SimpleITK."""

from __future__ import annotations

import numpy as np
import pytest

from medreg.errors import InputError
from medreg.geometry.frames import voxel_to_lps
from medreg.io.itk_transform import write_displacement_nifti, write_transform_h5
from medreg.io.landmarks import Landmarks, read_brats_csv, write_brats_csv, write_dirlab_txt
from medreg.io.nifti import save_volume


def field_on(shape) -> np.ndarray:
    """A smooth, non-uniform displacement (LPS mm)."""
    i, j, k = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    return np.stack([2.0 + 0.05 * i, -1.5 + np.sin(j / 4.0), 0.7 + 0.03 * k * i / shape[0]], -1).astype(np.float32)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("apply")
    fa = np.diag([1.2, 1.0, 1.5, 1.0])
    fa[:3, 3] = [-14, -12, -15]
    ma = np.diag([-1.0, -1.1, 1.3, 1.0])
    ma[:3, 3] = [18, 16, -18]
    fshape, mshape = (24, 26, 20), (36, 32, 28)
    rng = np.random.default_rng(0)
    from scipy.ndimage import gaussian_filter

    moving = gaussian_filter(rng.random(mshape), 2).astype(np.float32) * 100
    labels = (moving > np.median(moving)).astype(np.int16) + (moving > np.percentile(moving, 90)).astype(np.int16)
    u = field_on(fshape)
    return {
        "dir": d, "fa": fa, "ma": ma, "fshape": fshape, "u": u,
        "fixed": save_volume(d / "fixed.nii.gz", rng.random(fshape).astype(np.float32), fa),
        "moving": save_volume(d / "moving.nii.gz", moving, ma),
        "labels": save_volume(d / "labels.nii.gz", labels, ma),
        "field": write_displacement_nifti(d / "field.nii.gz", u, fa),
        "h5": write_transform_h5(d / "transform.h5", u, fa),
    }


def sitk_resample(setup, image_key, interp, reference=None):
    import SimpleITK as sitk

    ref = sitk.ReadImage(str(reference or setup["fixed"]))
    img = sitk.ReadImage(str(setup[image_key]), sitk.sitkFloat64)
    tx = sitk.DisplacementFieldTransform(sitk.ReadImage(str(setup["field"]), sitk.sitkVectorFloat64))
    mode = sitk.sitkLinear if interp == "linear" else sitk.sitkNearestNeighbor
    return sitk.GetArrayFromImage(sitk.Resample(img, ref, tx, mode, 0.0)).transpose(2, 1, 0)


@pytest.mark.parametrize("transform", ["field", "h5"])
def test_image_warp_matches_simpleitk(setup, transform, tmp_path):
    import nibabel as nib

    from medreg.inference.apply import apply_to_image

    out = apply_to_image(setup[transform], setup["moving"], tmp_path / "w.nii.gz")
    ours = np.asarray(nib.load(str(out)).dataobj)
    ref = sitk_resample(setup, "moving", "linear")
    assert ours.shape == setup["fshape"] and ours.dtype == np.float32
    assert np.abs(ours - ref).max() < 1e-3
    assert np.abs(ours).max() > 1.0  # not all outside
    np.testing.assert_allclose(nib.load(str(out)).affine, setup["fa"], atol=1e-5)


def test_labels_nearest_keep_dtype_and_values(setup, tmp_path):
    import nibabel as nib

    from medreg.inference.apply import apply_to_image

    out = apply_to_image(setup["field"], setup["labels"], tmp_path / "l.nii.gz", interp="nearest")
    img = nib.load(str(out))
    ours = np.asarray(img.dataobj)
    assert ours.dtype == np.int16 and set(np.unique(ours)) <= {0, 1, 2}
    ref = sitk_resample(setup, "labels", "nearest")
    assert np.mean(ours == ref) > 0.995  # ties at exact half-voxel positions may round differently


def test_reference_grid(setup, tmp_path):
    import nibabel as nib

    from medreg.inference.apply import apply_to_image

    ra = np.diag([2.0, 2.0, 2.0, 1.0])
    ra[:3, 3] = [-10, -8, -12]
    ref = save_volume(tmp_path / "ref.nii.gz", np.random.default_rng(1).random((10, 11, 12)).astype(np.float32), ra)
    out = apply_to_image(setup["field"], setup["moving"], tmp_path / "w.nii.gz", reference=ref)
    ours = np.asarray(nib.load(str(out)).dataobj)
    assert ours.shape == (10, 11, 12)
    assert np.abs(ours - sitk_resample(setup, "moving", "linear", reference=ref)).max() < 1e-3


def test_existing_output_refused(setup, tmp_path):
    from medreg.inference.apply import apply_to_image

    (tmp_path / "w.nii.gz").write_text("keep")
    with pytest.raises(InputError, match="refusing to overwrite"):
        apply_to_image(setup["field"], setup["moving"], tmp_path / "w.nii.gz")
    assert (tmp_path / "w.nii.gz").read_text() == "keep"


def test_brats_points_map_like_simpleitk(setup, tmp_path):
    import SimpleITK as sitk

    from medreg.inference.apply import apply_to_points

    pts = voxel_to_lps(setup["fa"], np.array([[3.0, 4.0, 5.0], [10.5, 12.25, 8.0], [20.0, 2.0, 15.0]]))
    write_brats_csv(tmp_path / "in.csv", Landmarks(["x", "y", "z"], pts))
    for key in ("field", "h5"):
        out = apply_to_points(setup[key], tmp_path / "in.csv", tmp_path / f"out_{key}.csv")
        got = read_brats_csv(out)
        assert got.names == ["x", "y", "z"]
        tx = sitk.ReadTransform(str(setup["h5"]))
        expected = np.array([tx.TransformPoint(tuple(p)) for p in pts])
        np.testing.assert_allclose(got.points, expected, atol=1e-3)


def test_dirlab_points_need_the_moving_image(setup, tmp_path):
    from medreg.inference.apply import apply_to_points, map_points
    from medreg.io.point_files import read_points

    ijk = np.array([[3.0, 4.0, 5.0], [12.0, 10.0, 8.0]])
    write_dirlab_txt(tmp_path / "in.txt", Landmarks(["1", "2"], voxel_to_lps(setup["fa"], ijk)), setup["fa"])
    with pytest.raises(InputError, match="moving-image"):
        apply_to_points(setup["field"], tmp_path / "in.txt", tmp_path / "out.txt")
    out = apply_to_points(setup["field"], tmp_path / "in.txt", tmp_path / "out.txt", moving_image=setup["moving"])
    got, fmt = read_points(out, setup["ma"])
    assert fmt == "dirlab"
    from medreg.io.itk_transform import read_transform

    expected = map_points(read_transform(setup["field"]), voxel_to_lps(setup["fa"], ijk))
    np.testing.assert_allclose(got.points, expected, atol=2e-3)  # written with 3 decimals


def test_point_format_detection(tmp_path):
    from medreg.io.point_files import point_format

    (tmp_path / "a.csv").write_text("Landmark,X,Y,Z\n1,0,0,0\n")
    (tmp_path / "b.csv").write_text("10,20,30\n")
    (tmp_path / "c.txt").write_text("10 20 30\n")
    (tmp_path / "d.json").write_text("{}")
    assert [point_format(tmp_path / n) for n in ("a.csv", "b.csv", "c.txt")] == ["brats", "learn2reg", "dirlab"]
    with pytest.raises(InputError, match="d.json.*ending in .csv"):
        point_format(tmp_path / "d.json")
