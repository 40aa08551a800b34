"""medreg.evaluate end to end on a tiny preprocessed BraTS-Reg-style dataset.

The dataset: 4 cases (1 train, 3 test); in each, the baseline (moving) anatomy and
landmarks are the follow-up (fixed) ones shifted by a whole number of voxels, with
label maps. A fake method returning that exact translation must score TRE 0, robustness
1, no folding and Dice 1; 'none' must score the manifest's no-registration error.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from medreg.baselines.base import BaselineResult
from medreg.errors import InputError
from medreg.evaluate import EvaluationOptions, evaluate, merge_evaluations, rebuild_report
from medreg.evaluation.methods import BaselineMethod, MedregMethod
from medreg.evaluation.shard import Shard, parse_shard
from medreg.geometry.frames import voxel_to_lps
from medreg.io.landmarks import Landmarks, read_brats_csv, write_brats_csv
from medreg.io.nifti import load_volume, save_volume, volume_geometry

SHAPE = (24, 28, 20)
SHIFT_VOX = np.array([2, -1, 1])
TEST_PAIRS = ["BraTSReg_002", "BraTSReg_003", "BraTSReg_004"]
NONDETERMINISTIC = {"seconds", "wall_seconds", "peak_rss_mb", "field", "landmarks", "qc", "fixed_files", "moving_files"}


def _anatomy(centre, seed):
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in SHAPE], indexing="ij"), -1).astype(float)
    inside = (((idx - centre) / (np.array(SHAPE) * 0.3)) ** 2).sum(-1) < 1
    # a few smooth, distinct structures that move with the centre (no periodic texture: periodic
    # patterns give ANTs' MI affine spurious optima, even reflections, on images this small)
    tex = sum(w * np.exp(-(((idx - centre - off) / sd) ** 2).sum(-1))
              for w, off, sd in ((60.0, (3.0, 2.0, -1.0), 2.5), (-40.0, (-3.0, -2.0, 2.0), 3.0),
                                 (30.0 + seed, (0.0, 4.0, 2.0), 2.0)))
    return (inside * (100 + tex)).astype(np.float32), inside


@pytest.fixture(scope="module")
def prep(tmp_path_factory) -> Path:
    """A preprocessed BraTS-Reg folder (medreg preprocess) with splits, landmarks and label maps."""
    from medreg.datasets.preprocess import preprocess_dataset

    root = tmp_path_factory.mktemp("brats")
    aff = np.array([[-1.0, 0, 0, 0], [0, -1, 0, SHAPE[1] - 1], [0, 0, 1, 0], [0, 0, 0, 1]])
    centre = np.array(SHAPE) / 2 - 0.5
    pts = centre + np.array([[0.0, 0, 0], [3, 2, -1], [-4, 1, 2], [2, -3, 1]])
    for n in range(1, 5):
        case = f"BraTSReg_{n:03d}"
        d = root / "raw" / case
        d.mkdir(parents=True)
        for tp, c in (("01_0100", centre), ("00_0000", centre + SHIFT_VOX)):
            img, inside = _anatomy(c, n)
            save_volume(d / f"{case}_{tp}_t1ce.nii.gz", img, aff, brats_header=True)
            save_volume(d / f"{case}_{tp}_labels.nii.gz", inside.astype(np.int16) * 3, aff, brats_header=True)
        names = ["1", "2", "3", "4"]
        write_brats_csv(d / f"{case}_01_0100_landmarks.csv", Landmarks(names, voxel_to_lps(aff, pts)))
        write_brats_csv(d / f"{case}_00_0000_landmarks.csv", Landmarks(names, voxel_to_lps(aff, pts + SHIFT_VOX)))
    (root / "raw" / "splits.json").write_text(json.dumps({"BraTSReg_001": "train", **{p: "test" for p in TEST_PAIRS}}))
    summary = preprocess_dataset("brats", root / "raw", root / "prep", progress=False)
    assert summary.ok
    return root / "prep"


@pytest.fixture(scope="module")
def true_shift(prep) -> np.ndarray:
    """The moving - fixed landmark offset in LPS mm (the same for every landmark and pair)."""
    fixed = read_brats_csv(prep / "pairs" / "BraTSReg_002" / "fixed_landmarks.csv").points
    moving = read_brats_csv(prep / "pairs" / "BraTSReg_002" / "moving_landmarks.csv").points
    d = moving - fixed
    assert np.allclose(d, d[0]) and np.linalg.norm(d[0]) > 2
    return d[0]


class Translation:
    """A fake method: phi(x) = x + shift everywhere (counts its calls; can fail on chosen pairs)."""

    device = "cpu"

    def __init__(self, shift, name="fake", fail_on=()):
        self.shift = np.asarray(shift, dtype=np.float32)
        self.name = name
        self.fail_on = set(fail_on)
        self.calls: list[str] = []

    def register(self, inputs, *, threads, seed=0, workdir=None):
        self.calls.append(inputs.pair_id)
        if inputs.pair_id in self.fail_on:
            raise RuntimeError(f"boom on {inputs.pair_id}")
        shape, affine = volume_geometry(inputs.fixed_path)
        u = np.broadcast_to(self.shift, (*shape, 3)).copy()
        return BaselineResult(u, affine, seconds=0.01, threads=threads, peak_rss_mb=1.0, extra={"method": self.name})

    def describe(self):
        return {"name": self.name, "kind": "baseline", "device": self.device}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A medreg checkpoint (tiny random UNet, one channel t1ce) written like a training run."""
    import torch

    from medreg.config import Config
    from medreg.io.checkpoint import save_checkpoint
    from medreg.registration.build import build_model

    cfg = Config.model_validate({
        "data": {"dataset": "brats"},
        "preprocess": {"modalities": ["t1ce"], "spacing": [1.0, 1.0, 1.0], "intensity": {"kind": "mri_percentile"},
                       "crop_foreground": False, "shape_multiple": 8},
        "model": {"levels": 1, "unet_channels": [4, 8]}, "loss": {"lam": 0.1}, "train": {"lr": 1e-2},
    })
    torch.manual_seed(0)
    model = build_model(cfg.model, 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    run = tmp_path_factory.mktemp("run")
    save_checkpoint(run / "checkpoints" / "last", model, cfg.to_json(), step=1)
    return run


def _opts(prep, out, methods, **kw):
    return EvaluationOptions(dataset="brats", data=prep, out=out, methods=methods, threads=1, progress=False, **kw)


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _comparable(rows):
    return sorted(({k: v for k, v in r.items() if k not in NONDETERMINISTIC} for r in rows), key=lambda r: (r["pair"], r["method"]))


def test_end_to_end_with_medreg_fake_and_none(prep, true_shift, tiny_run, tmp_path):
    from medreg.datasets.manifest import read_manifest
    from medreg.io.itk_transform import read_displacement_nifti

    out = tmp_path / "eval"
    methods = [MedregMethod(tiny_run), Translation(true_shift), BaselineMethod("none")]
    result = evaluate(_opts(prep, out, methods, submission=True))
    assert result.ok and result.done == 9 and result.skipped == 0

    rows = {(r["pair"], r["method"]): r for r in _csv(out / "metrics.csv")}
    assert set(rows) == {(p, m) for p in TEST_PAIRS for m in ("medreg", "fake", "none")}
    assert all(r["status"] == "ok" and r["reason"] == "" for r in rows.values())
    manifest = read_manifest(prep)
    for p in TEST_PAIRS:
        fake, none, med = rows[(p, "fake")], rows[(p, "none")], rows[(p, "medreg")]
        assert float(fake["tre_mean"]) == pytest.approx(0.0, abs=1e-4) and float(fake["tre_max"]) < 1e-4
        assert float(fake["robustness"]) == 1.0 and float(fake["folding_pct"]) == 0.0
        assert float(fake["dice_mean"]) > 0.99 > float(fake["dice_before"])
        assert float(none["tre_mean"]) == pytest.approx(manifest.pair(p).no_registration_tre.mean, abs=1e-6)
        assert float(none["tre_mean"]) == pytest.approx(np.linalg.norm(true_shift), abs=1e-6)
        assert float(none["robustness"]) == 0.0 and float(none["sdlogj"]) == 0.0 and float(none["sdlogj_plus3"]) < 1e-12
        assert int(fake["n_landmarks"]) == 4 and fake["threads"] == "1" and fake["shape"] == none["shape"]
        assert np.isfinite(float(med["tre_mean"])) and med["device"] == "cpu" and float(med["seconds"]) > 0

    # per-pair outputs: the transform on the fixed grid and the mapped landmarks phi(fixed landmarks)
    field = read_displacement_nifti(out / rows[("BraTSReg_003", "fake")]["field"])
    assert np.allclose(field.displacement_lps, true_shift, atol=1e-5)
    mapped = read_brats_csv(out / rows[("BraTSReg_003", "fake")]["landmarks"])
    np.testing.assert_allclose(mapped.points, read_brats_csv(prep / "pairs" / "BraTSReg_003" / "moving_landmarks.csv").points, atol=1e-4)

    # medreg's TRE is the TRE of the field it wrote: medreg apply on that file reproduces it
    from medreg.inference.apply import apply_to_points

    med = rows[("BraTSReg_003", "medreg")]
    fixed_lm = prep / "pairs" / "BraTSReg_003" / "fixed_landmarks.csv"
    applied = apply_to_points(out / med["field"], fixed_lm, tmp_path / "applied.csv")
    moving_pts = read_brats_csv(prep / "pairs" / "BraTSReg_003" / "moving_landmarks.csv").points
    tre_applied = np.linalg.norm(read_brats_csv(applied).points - moving_pts, axis=1)
    assert float(med["tre_mean"]) == pytest.approx(float(tre_applied.mean()), abs=1e-4)
    np.testing.assert_allclose(read_brats_csv(out / med["landmarks"]).points, read_brats_csv(applied).points, atol=1e-3)

    # BraTS-Reg submission: mapped landmarks and det J on the original fixed grid
    sub = out / "submission" / "fake"
    assert sorted(p.name for p in sub.iterdir()) == sorted([f"{p}.csv" for p in TEST_PAIRS] + [f"{p}_detj.nii.gz" for p in TEST_PAIRS])
    detj = load_volume(sub / "BraTSReg_002_detj.nii.gz", allow_constant=True)
    assert detj.shape == SHAPE and np.allclose(detj.array, 1.0, atol=1e-5)
    assert read_brats_csv(sub / "BraTSReg_002.csv").names == ["1", "2", "3", "4"]

    summary = json.loads((out / "summary.json").read_text())
    assert summary["reference"] == "fake"
    assert summary["methods"]["none"]["metrics"]["tre_mean"]["mean"] == pytest.approx(np.linalg.norm(true_shift), abs=1e-6)
    assert summary["methods"]["fake"]["vs_reference"]["time_ratio"] == pytest.approx(1.0)
    assert summary["methods"]["none"]["vs_reference"]["tre_ratio"] is None  # the reference's error is 0: undefined
    assert summary["methods"]["none"]["vs_reference"]["speedup"] > 0
    assert summary["methods"]["medreg"]["ok"] == 3

    info = json.loads((out / "evaluation.json").read_text())
    assert info["threads"] == 1 and info["split"] == "test" and info["channel"] == "t1ce" and info["machine"]["cpu_count"] >= 1
    html = (out / "report.html").read_text()
    assert "<table" in html and html.count('src="data:image/png;base64,') >= 3 + 9
    assert 'src="figures' not in html and 'src="pairs' not in html and "http" not in html.split("<body>")[1]
    md = (out / "report.md").read_text()
    assert "| fake | 3/3 |" in md and "figures/tre_boxplot.png" in md


def test_resume_skips_finished_pairs(prep, true_shift, tmp_path):
    out = tmp_path / "eval"
    first = Translation(true_shift)
    evaluate(_opts(prep, out, [first]))
    assert first.calls == TEST_PAIRS
    stamp = (out / "rows" / "BraTSReg_002__fake.json").stat().st_mtime_ns

    again = Translation(true_shift)
    extra = BaselineMethod("none")
    result = evaluate(_opts(prep, out, [again, extra]))
    assert again.calls == [] and result.skipped == 3 and result.done == 3  # only the new method ran
    assert (out / "rows" / "BraTSReg_002__fake.json").stat().st_mtime_ns == stamp

    (out / "rows" / "BraTSReg_003__fake.json").unlink()  # as if interrupted before this row was written
    third = Translation(true_shift)
    evaluate(_opts(prep, out, [third, extra]))
    assert third.calls == ["BraTSReg_003"]
    assert len(_csv(out / "metrics.csv")) == 6


def test_row_device_is_where_the_method_ran(prep, true_shift, tmp_path):
    class OnCuda(Translation):  # a tool that picked the GPU itself (FireANTs does) reports it in extra
        def register(self, inputs, **kw):
            result = super().register(inputs, **kw)
            result.extra["device"] = "cuda:0"
            return result

    out = tmp_path / "eval"
    evaluate(_opts(prep, out, [OnCuda(true_shift), Translation(true_shift, name="plain")]))
    devices = {(r["method"], r["device"]) for r in _csv(out / "metrics.csv")}
    assert devices == {("fake", "cuda:0"), ("plain", "cpu")}


def test_resume_refuses_a_different_evaluation(prep, true_shift, tmp_path):
    out = tmp_path / "eval"
    evaluate(_opts(prep, out, [Translation(true_shift)]))
    with pytest.raises(InputError, match="threads"):
        evaluate(EvaluationOptions(dataset="brats", data=prep, out=out, methods=[Translation(true_shift)], threads=2, progress=False))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="empty folder"):
        evaluate(_opts(prep, tmp_path / "other", [Translation(true_shift)]))


def test_a_failing_method_is_recorded_and_the_run_goes_on(prep, true_shift, tmp_path):
    out = tmp_path / "eval"
    flaky = Translation(true_shift, name="flaky", fail_on={"BraTSReg_003"})
    result = evaluate(_opts(prep, out, [flaky, BaselineMethod("none")]))
    assert not result.ok and result.failed[0][:2] == ("BraTSReg_003", "flaky") and "boom" in result.failed[0][2]
    rows = {(r["pair"], r["method"]): r for r in _csv(out / "metrics.csv")}
    assert rows[("BraTSReg_003", "flaky")]["status"] == "failed"
    assert "RuntimeError: boom on BraTSReg_003" in rows[("BraTSReg_003", "flaky")]["reason"]
    assert rows[("BraTSReg_004", "flaky")]["status"] == "ok" and rows[("BraTSReg_003", "none")]["status"] == "ok"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["methods"]["flaky"]["failed"] == 1 and summary["methods"]["flaky"]["ok"] == 2
    assert "boom on BraTSReg_003" in (out / "report.html").read_text()

    fixed = Translation(true_shift, name="flaky")  # a rerun tries the failed pair again, and only it
    assert evaluate(_opts(prep, out, [fixed, BaselineMethod("none")])).ok
    assert fixed.calls == ["BraTSReg_003"]


def test_shard_and_merge_equal_the_unsharded_run(prep, true_shift, tmp_path):
    whole = tmp_path / "whole"
    evaluate(_opts(prep, whole, [Translation(true_shift), BaselineMethod("none")]))
    shards = []
    for i in range(2):
        d = tmp_path / f"shard{i}"
        evaluate(_opts(prep, d, [Translation(true_shift), BaselineMethod("none")], shard=Shard(i, 2)))
        shards.append(d)
    assert [r["pair"] for r in _csv(shards[1] / "metrics.csv")] == ["BraTSReg_003", "BraTSReg_003"]
    merged = merge_evaluations(shards, tmp_path / "merged")
    assert merged.ok
    a, b = _csv(whole / "metrics.csv"), _csv(tmp_path / "merged" / "metrics.csv")
    assert _comparable(a) == _comparable(b)
    sa = json.loads((whole / "summary.json").read_text())
    sb = json.loads((tmp_path / "merged" / "summary.json").read_text())
    for m in ("fake", "none"):
        assert sa["methods"][m]["metrics"]["tre_mean"] == sb["methods"][m]["metrics"]["tre_mean"]
    # merged rows point at the shards' files, and the merged report embeds their QC strips
    row = next(r for r in b if r["pair"] == "BraTSReg_003")
    assert (tmp_path / "merged" / row["qc"]).is_file()
    assert (tmp_path / "merged" / "report.html").read_text().count("data:image/png;base64,") >= 3 + 6
    with pytest.raises(InputError, match="finished in"):
        merge_evaluations([shards[0], whole], tmp_path / "bad")


def test_rebuild_report_from_metrics_csv(prep, true_shift, tmp_path):
    out = tmp_path / "eval"
    evaluate(_opts(prep, out, [Translation(true_shift)]))
    shutil.rmtree(out / "rows")
    (out / "report.html").unlink()
    result = rebuild_report(out)
    assert (out / "report.html").is_file() and result.summary["methods"]["fake"]["ok"] == 3


def test_split_without_pairs_names_the_splits(prep, true_shift, tmp_path):
    with pytest.raises(InputError, match=r"split 'val'.*\['test', 'train'\]"):
        evaluate(_opts(prep, tmp_path / "e", [Translation(true_shift)], split="val"))


def test_shard_parsing():
    assert parse_shard(None) == Shard(0, 1) and parse_shard("2/5") == Shard(2, 5)
    assert Shard(1, 3).select(list(range(8))) == [1, 4, 7]
    assert parse_shard("slurm", {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"}) == Shard(3, 4)
    from medreg.errors import ConfigError

    for bad in ("3/3", "1-2", "x"):
        with pytest.raises(ConfigError):
            parse_shard(bad)
    with pytest.raises(ConfigError, match="SLURM_ARRAY_TASK_ID"):
        parse_shard("slurm", {})
    with pytest.raises(ConfigError, match="0..3"):
        parse_shard("slurm", {"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "4",
                              "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "4"})


@pytest.mark.ants
def test_ants_affine_end_to_end(prep, tmp_path):
    pytest.importorskip("ants")
    out = tmp_path / "eval"
    start = time.perf_counter()
    from medreg.baselines.ants import AntsBaseline

    ants_method = BaselineMethod("ants:affine")
    # the preset's pyramid (shrink 8-4-2-1) and random MI sampling are made for real scans; on 24-voxel
    # toy images they sometimes diverge (even to a reflection), so the test uses a pyramid that fits them
    ants_method.baseline = AntsBaseline("affine", type_of_transform="Affine", aff_shrink_factors=(2, 1),
                                        aff_smoothing_sigmas=(1, 0), aff_iterations=(100, 50),
                                        aff_random_sampling_rate=1.0)
    result = evaluate(_opts(prep, out, [ants_method, BaselineMethod("none")]))
    assert result.ok, result.failed
    rows = {(r["pair"], r["method"]): r for r in _csv(out / "metrics.csv")}
    for p in TEST_PAIRS:  # an affine map: no folding, constant det J
        ants_row = rows[(p, "ants:affine")]
        assert float(ants_row["folding_pct"]) == 0.0 and float(ants_row["sdlogj"]) < 1e-3 and float(ants_row["peak_rss_mb"]) > 0
    summary = json.loads((out / "summary.json").read_text())
    # accuracy is not asserted: MI affine on 32^3 toy images is erratic here (TRE 0.2-8 mm from run to run,
    # even with one thread and a fixed seed); this test checks that ANTs runs through the whole protocol
    assert summary["methods"]["ants:affine"]["ok"] == 3 and 0 <= summary["methods"]["ants:affine"]["metrics"]["tre_mean"]["mean"] < 20
    assert summary["reference"] == "ants:affine" and summary["methods"]["none"]["vs_reference"]["speedup"] > 1
    assert time.perf_counter() - start < 120


def test_warp_volume_pulls_the_moving_image_through_phi_on_another_grid():
    """Moving on a flipped, anisotropic grid; phi = x + t (LPS mm) -> warped(x) = moving's value at x + t."""
    from medreg.evaluation.pair_metrics import warp_volume
    from medreg.geometry.frames import lps_to_voxel

    fixed_aff = np.diag([1.0, 1.0, 1.0, 1.0])
    moving_aff = np.array([[-2.0, 0, 0, 30], [0, 1.0, 0, -5], [0, 0, 1.5, 2], [0, 0, 0, 1]])
    labels = np.zeros((20, 30, 20), np.int16)
    labels[5:12, 8:20, 4:10] = 7
    t = np.array([-3.0, 4.0, 1.5])
    shape = (16, 18, 14)
    u = np.broadcast_to(t.astype(np.float32), (*shape, 3)).copy()
    warped = warp_volume(labels, moving_aff, BaselineResult(u, fixed_aff, 0.0, 1, 0.0), order=0)
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).reshape(-1, 3)
    idx = np.rint(lps_to_voxel(moving_aff, voxel_to_lps(fixed_aff, ijk) + t)).astype(int)
    inside = np.all((idx >= 0) & (idx < labels.shape), axis=1)
    expected = np.zeros(len(ijk), np.int16)
    expected[inside] = labels[tuple(idx[inside].T)]
    assert warped.dtype == np.int16 and (expected == 7).sum() > 50
    np.testing.assert_array_equal(warped.reshape(-1), expected)


def test_medreg_method_names_and_the_io_upsample_option(tiny_run):
    import argparse

    from medreg.cli import evaluate as cli_evaluate
    from medreg.inference.io_config import io_from_flags

    assert MedregMethod(tiny_run, io=io_from_flags(30, upsample="data")).name == "medreg+io30-data"
    assert MedregMethod(tiny_run, io=io_from_flags(30, upsample=2)).name == "medreg+io30x2"
    assert MedregMethod(tiny_run, io=io_from_flags(30)).name == "medreg+io30"
    assert MedregMethod(tiny_run, io=io_from_flags(4, "network")).name == "medreg+netio4"
    assert MedregMethod(tiny_run).name == "medreg"
    with pytest.raises(ValueError, match="io-upsample"):
        io_from_flags(3, "network", upsample="data")
    parser = argparse.ArgumentParser()
    cli_evaluate.add_parser(parser.add_subparsers())
    args = parser.parse_args(["evaluate", "--dataset", "brats", "--data", "d", "--out", "o", "--io-upsample", "data"])
    assert args.io_upsample == "data"
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate", "--dataset", "brats", "--data", "d", "--out", "o", "--io-upsample", "fine"])


def test_bench_io_runs_each_preset_beside_a_baseline_and_resumes(prep, tiny_run, tmp_path):
    """medreg bench io's measurement: one pass, fast additive and diffeomorphic, and 'none' on the first
    two test pairs: one io.csv row per method, the pyramid's levels with their seconds, the plot; a rerun
    redoes nothing."""
    from medreg.evaluation.bench_io import bench_io
    from medreg.evaluation.rows import read_rows

    out = tmp_path / "io"
    table, levels = bench_io(model=tiny_run, dataset="brats", data=prep, out=out, presets=["fast"],
                             diffeomorphic=(False, True), baselines=["none"], threads=1, pairs=2, progress=False,
                             log=lambda s: None)
    assert [r["method"] for r in table] == ["medreg", "medreg+io-fast-additive", "medreg+io-fast", "none"]
    assert all(r["pairs"] == 2 and np.isfinite(r["tre_mean"]) for r in table)
    assert {r["pair"] for r in read_rows(out / "evaluation")} == set(TEST_PAIRS[:2])
    io_rows = {r["method"]: r for r in table}
    assert io_rows["medreg"]["io_seconds"] == 0 and io_rows["medreg+io-fast"]["io_seconds"] > 0
    mine = [lv for lv in levels if lv["method"] == "medreg+io-fast"]
    assert [lv["grid"] for lv in mine] == ["half", "network", "data"] and [lv["steps"] for lv in mine] == [10, 5, 1]
    assert (out / "io.png").stat().st_size > 1000
    with open(out / "io.csv") as f:
        assert [r["method"] for r in csv.DictReader(f)] == [r["method"] for r in table]
    stamp = {p.name: p.stat().st_mtime_ns for p in (out / "evaluation" / "rows").glob("*.json")}
    bench_io(model=tiny_run, dataset="brats", data=prep, out=out, presets=["fast"], diffeomorphic=(False, True),
             baselines=["none"], threads=1, pairs=2, progress=False, log=lambda s: None)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "evaluation" / "rows").glob("*.json")} == stamp


def test_split_val_is_the_models_held_out_validation_pairs_when_the_manifest_has_none(prep):
    from types import SimpleNamespace

    from medreg.datasets.manifest import read_manifest
    from medreg.evaluate import _select_pairs

    manifest = read_manifest(prep / "manifest.json", dataset="brats")
    config = SimpleNamespace(data=SimpleNamespace(train_split="test", val_split="test", val_pairs=1, contrasts=[]))
    assert [p.id for p in _select_pairs(manifest, "val", prep / "manifest.json", config)] == [TEST_PAIRS[-1]]
    with pytest.raises(InputError, match="split 'val'"):
        _select_pairs(manifest, "val", prep / "manifest.json", None)
