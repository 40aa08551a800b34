"""``medreg register`` / ``medreg apply`` through the command line: outputs, batch mode, bad inputs (exit 2, nothing written)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medreg.cli.main import main
from medreg.geometry.frames import voxel_to_lps
from medreg.io.landmarks import Landmarks, read_brats_csv, write_brats_csv
from medreg.io.nifti import save_volume


def _config():
    from medreg.config import Config

    return Config.model_validate({
        "data": {"dataset": "demo-brain"},
        "preprocess": {"modalities": ["t1"], "spacing": [2.0, 2.0, 2.0], "intensity": {"kind": "mri_percentile"},
                       "crop_foreground": False, "shape_multiple": 8},
        "model": {"levels": 2, "unet_channels": [4, 8]},
    })


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A small model whose output heads are perturbed so that phi is a smooth, non-trivial field."""
    from medreg.io.checkpoint import save_model_file
    from medreg.registration.build import build_model

    cfg = _config()
    torch.manual_seed(0)
    model = build_model(cfg.model, 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "head" in name:
                p.normal_(0.0, 0.02)
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    return save_model_file(path, model, cfg.to_json())


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    from scipy.ndimage import gaussian_filter

    d = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    fa = np.diag([1.5, 1.2, 1.0, 1.0])
    fa[:3, 3] = [-24, -20, -16]
    ma = np.diag([-1.0, -1.3, 1.1, 1.0])
    ma[:3, 3] = [26, 24, -18]
    f = save_volume(d / "fixed.nii.gz", gaussian_filter(rng.random((32, 34, 32)), 2).astype(np.float32), fa)
    m = save_volume(d / "moving.nii.gz", gaussian_filter(rng.random((52, 38, 32)), 2).astype(np.float32), ma)
    pts = voxel_to_lps(fa, np.array([[10.0, 12.0, 14.0], [20.0, 8.0, 25.0]]))
    lm = write_brats_csv(d / "fixed_landmarks.csv", Landmarks(["p1", "p2"], pts))
    return {"dir": d, "fixed": f, "moving": m, "landmarks": lm, "fa": fa}


def _register(checkpoint, pair, out, *extra):
    return main(["register", "--model", str(checkpoint), "--fixed", str(pair["fixed"]), "--moving", str(pair["moving"]),
                 "--out", str(out), "--device", "cpu", *extra])


def test_register_writes_outputs_and_apply_reproduces_them(checkpoint, pair, tmp_path, capsys):
    import nibabel as nib

    out = tmp_path / "out"
    assert _register(checkpoint, pair, out, "--landmarks", str(pair["landmarks"]), "--threads", "1") == 0
    names = {p.name for p in out.iterdir()}
    assert names == {"warped.nii.gz", "field.nii.gz", "transform.h5", "jacobian_det.nii.gz", "landmarks.csv", "run.json"}
    info = json.loads((out / "run.json").read_text())
    assert info["model"] == str(checkpoint.resolve()) and info["threads"] == 1 and info["config_hash"] == _config().config_hash()
    u = np.asarray(nib.load(str(out / "field.nii.gz")).dataobj)
    assert np.abs(u).max() > 0.05  # the perturbed model moves things
    # apply the saved transform: the same warped image and the same landmarks
    for transform in ("field.nii.gz", "transform.h5"):
        w = tmp_path / f"w_{transform}.nii.gz"
        assert main(["apply", "--transform", str(out / transform), "--image", str(pair["moving"]), "--out", str(w)]) == 0
        a = np.asarray(nib.load(str(w)).dataobj)
        b = np.asarray(nib.load(str(out / "warped.nii.gz")).dataobj)
        assert np.abs(a - b).max() < 1e-4 * np.abs(b).max()
    # the landmarks register wrote are those of the transform it wrote (both files), within 0.01 mm
    ref = read_brats_csv(out / "landmarks.csv")
    for transform in ("field.nii.gz", "transform.h5"):
        pts_out = tmp_path / f"pts_{transform}.csv"
        assert main(["apply", "--transform", str(out / transform), "--points", str(pair["landmarks"]),
                     "--out", str(pts_out)]) == 0
        mapped = read_brats_csv(pts_out)
        assert mapped.names == ref.names == ["p1", "p2"]
        np.testing.assert_allclose(mapped.points, ref.points, atol=0.01)
    assert np.abs(ref.points - read_brats_csv(pair["landmarks"]).points).max() > 0.05  # they did move


def test_instance_optimisation_through_the_command(checkpoint, pair, tmp_path):
    out = tmp_path / "io"
    assert _register(checkpoint, pair, out, "--io-steps", "2", "--io-lr", "1e-3") == 0
    info = json.loads((out / "run.json").read_text())
    assert info["io_steps"] == 2 and len(info["io_losses"]) == 2


def _write_2d(path):
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((8, 9)).astype(np.float32), np.eye(4)), str(path))
    return path


@pytest.mark.parametrize("case,message", [
    ("missing", "no such file"),
    ("not_nifti", "NIfTI"),
    ("two_d", "3D"),
])
def test_bad_inputs_exit_2_and_write_nothing(checkpoint, pair, tmp_path, capsys, case, message):
    bad = tmp_path / "bad.nii.gz"
    if case == "not_nifti":
        bad.write_text("this is not an image\n")
    elif case == "two_d":
        _write_2d(bad)
    out = tmp_path / "out"
    rc = main(["register", "--model", str(checkpoint), "--fixed", str(bad), "--moving", str(pair["moving"]),
               "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "bad.nii.gz" in err and message in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_bad_model_and_nonempty_out(checkpoint, pair, tmp_path, capsys):
    assert _register(tmp_path / "nope.safetensors", pair, tmp_path / "o1") == 2
    assert "nope.safetensors" in capsys.readouterr().err and not (tmp_path / "o1").exists()
    out = tmp_path / "o2"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert _register(checkpoint, pair, out) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert main(["register", "--model", str(checkpoint), "--fixed", str(pair["fixed"]), "--out", str(out)]) == 2
    assert "both --fixed and --moving" in capsys.readouterr().err


def test_batch_pairs_csv_resumes_and_records_failures(checkpoint, pair, tmp_path, capsys):
    csv = tmp_path / "pairs.csv"
    d = pair["dir"]
    csv.write_text("fixed,moving,landmarks,id\n"
                   f"{d / 'fixed.nii.gz'},{d / 'moving.nii.gz'},{d / 'fixed_landmarks.csv'},a\n"
                   f"{d / 'moving.nii.gz'},{d / 'fixed.nii.gz'},,b\n"
                   f"{d / 'missing.nii.gz'},{d / 'fixed.nii.gz'},,c\n")
    out = tmp_path / "batch"
    rc = main(["register", "--model", str(checkpoint), "--pairs", str(csv), "--out", str(out), "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 1 and "2 registered" in text and "1 failed" in text and "missing.nii.gz" in text
    assert (out / "a" / "landmarks.csv").is_file() and (out / "b" / "run.json").is_file() and not (out / "c").exists()
    record = json.loads((out / "batch.json").read_text())
    assert record["done"] == ["a", "b"] and "c" in record["failed"]
    before = (out / "a" / "run.json").stat().st_mtime_ns
    rc = main(["register", "--model", str(checkpoint), "--pairs", str(csv), "--out", str(out), "--no-progress"])
    assert rc == 1 and "2 already done" in capsys.readouterr().out
    assert (out / "a" / "run.json").stat().st_mtime_ns == before


def test_batch_from_manifest_split(checkpoint, pair, tmp_path, capsys):
    import shutil

    from medreg.datasets.manifest import GeometryEntry, Manifest, PairEntry, write_manifest
    from medreg.transforms.defaults import DEFAULTS
    from medreg.transforms.config import config_from_dict

    root = tmp_path / "pp"
    (root / "pairs" / "x").mkdir(parents=True)
    shutil.copy(pair["fixed"], root / "pairs" / "x" / "fixed_t1.nii.gz")
    shutil.copy(pair["moving"], root / "pairs" / "x" / "moving_t1.nii.gz")
    pp = config_from_dict({**DEFAULTS["brats"], "modalities": ["t1"]})
    geo = GeometryEntry(original_affine=np.eye(4).tolist(), original_shape=[1, 1, 1], affine=np.eye(4).tolist(),
                        shape=[1, 1, 1])
    entries = [PairEntry(id=i, split=s, fixed={"t1": "pairs/x/fixed_t1.nii.gz"}, moving={"t1": "pairs/x/moving_t1.nii.gz"},
                         geometry={"fixed": geo, "moving": geo}, sources={}, config_hash=pp.config_hash())
               for i, s in (("x", "test"), ("y", "train"))]
    write_manifest(root / "manifest.json", Manifest(dataset="brats", config=pp, config_hash=pp.config_hash(), pairs=entries))
    out = tmp_path / "mout"
    rc = main(["register", "--model", str(checkpoint), "--manifest", str(root / "manifest.json"), "--split", "test",
               "--out", str(out), "--no-progress"])
    assert rc == 0, capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["batch.json", "x"]


def test_bench_register_times_medreg_on_a_demo_style_pair(tmp_path):
    """A tiny BraTS-Reg-layout folder; no ANTs (``--baselines none``); the untrained demo-brain model."""
    import argparse

    from scipy.ndimage import gaussian_filter

    from medreg.cli.bench_register import add_register
    from medreg.evaluation.bench_register import bench_register, format_report
    from medreg.datasets.demo_brain import case_files

    root = tmp_path / "demo"
    files = case_files(root, "BraTSReg_001", 100)
    root.joinpath("BraTSReg_001").mkdir(parents=True)
    (root / "summary.json").write_text(json.dumps({"cases": {"BraTSReg_001": {"split": "test", "followup": "01_0100"}}}))
    a = np.diag([-1.0, -1.0, 1.0, 1.0])
    a[1, 3] = 39.0
    rng = np.random.default_rng(0)
    for channel in ("t1", "t2"):  # the same image at both time points: the global stage must find the identity
        image = gaussian_filter(rng.random((36, 40, 32)), 2).astype(np.float32)
        for t in ("00", "01"):
            save_volume(files[f"{t}_{channel}"], image, a, brats_header=True)
    pts = voxel_to_lps(a, np.array([[10.0, 12.0, 14.0], [20.0, 18.0, 16.0]]))
    for key in ("00_landmarks", "01_landmarks"):
        write_brats_csv(files[key], Landmarks(["1", "2"], pts))
    report = bench_register(data=str(root), threads=1, baselines=[], repeats=2, log=lambda m: None, global_mode="none")
    assert report["reference"] == "medreg"
    med = report["methods"]["medreg"]
    assert med["seconds"][0] > 0 and med["peak_rss_mb"][0] > 50 and med["tre_mm"][0] == pytest.approx(0.0, abs=1e-3)
    assert report["pairs"][0]["shape"] == [36, 40, 32] and "untrained" in report["model"]
    text = format_report(report)
    assert "medreg" in text and "threads: 1" in text
    # without --global: the model's stage (the demo-brain preset's affine), timed with the rest
    staged = bench_register(data=str(root), threads=1, baselines=[], repeats=1, log=lambda m: None)
    assert staged["reference"] == "medreg+affine"
    assert "global" in staged["methods"]["medreg+affine"]["timings"]
    assert staged["methods"]["medreg+affine"]["tre_mm"][0] < 0.3
    assert "medreg+affine: first call" in format_report(staged)
    parser = argparse.ArgumentParser()
    add_register(parser.add_subparsers())
    args = parser.parse_args(["register", "--baselines", "syn-quick,bogus"])
    from medreg.errors import ConfigError

    with pytest.raises(ConfigError, match="bogus"):
        args.run(args)
