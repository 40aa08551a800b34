"""`medreg evaluate` (and `merge`, `report`) from the command line, after `medreg preprocess`, in-process."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from medreg.cli.main import main
from medreg.geometry.frames import voxel_to_lps
from medreg.io.landmarks import Landmarks, write_brats_csv
from medreg.io.nifti import save_volume

SHAPE = (20, 24, 16)


@pytest.fixture(scope="module")
def prep(tmp_path_factory):
    """A BraTS-Reg folder of 3 cases (2 in the test split), preprocessed with `medreg preprocess`."""
    root = tmp_path_factory.mktemp("cli")
    aff = np.array([[-1.0, 0, 0, 0], [0, -1, 0, SHAPE[1] - 1], [0, 0, 1, 0], [0, 0, 0, 1]])
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in SHAPE], indexing="ij"), -1).astype(float)
    centre = np.array(SHAPE) / 2 - 0.5
    pts = centre + np.array([[0.0, 0, 0], [2, 2, -1], [-3, 1, 2]])
    for n in (1, 2, 3):
        case = f"BraTSReg_{n:03d}"
        d = root / "raw" / case
        d.mkdir(parents=True)
        for tp, shift in (("01_0100", 0), ("00_0000", 1)):
            c = centre + [shift, 0, shift]
            img = ((((idx - c) / (np.array(SHAPE) * 0.3)) ** 2).sum(-1) < 1) * (100 + 10 * np.sin(idx[..., 0] + n))
            save_volume(d / f"{case}_{tp}_t1ce.nii.gz", img.astype(np.float32), aff, brats_header=True)
            write_brats_csv(d / f"{case}_{tp}_landmarks.csv", Landmarks(["1", "2", "3"], voxel_to_lps(aff, pts + [shift, 0, shift])))
    (root / "raw" / "splits.json").write_text(json.dumps({"BraTSReg_001": "train", "BraTSReg_002": "test", "BraTSReg_003": "test"}))
    assert main(["preprocess", "--no-progress", "--dataset", "brats", "--data", str(root / "raw"), "--out", str(root / "prep")]) == 0
    return root / "prep"


def _evaluate(prep, out, *extra):
    return main(["evaluate", "--no-progress", "--dataset", "brats", "--data", str(prep), "--baseline", "none",
                 "--threads", "1", "--out", str(out), *map(str, extra)])


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_evaluate_prints_the_summary_and_writes_the_report(prep, tmp_path, capsys):
    out = tmp_path / "eval"
    assert _evaluate(prep, out, "--submission") == 0
    text = capsys.readouterr().out
    assert "2 registered, 0 already done" in text and "| none | 2/2 |" in text and str(out / "report.html") in text
    for name in ("metrics.csv", "summary.json", "report.md", "report.html", "evaluation.json"):
        assert (out / name).is_file(), name
    assert all(float(r["tre_mean"]) == pytest.approx(np.sqrt(2)) for r in _rows(out / "metrics.csv"))
    info = json.loads((out / "evaluation.json").read_text())
    assert info["command"].startswith("medreg evaluate --dataset brats") and "--threads 1" in info["command"]
    assert (out / "submission" / "none" / "BraTSReg_003_detj.nii.gz").is_file()

    assert _evaluate(prep, out) == 0  # resume: nothing left to do
    assert "0 registered, 2 already done" in capsys.readouterr().out


def test_shards_merge_and_report(prep, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    assert _evaluate(prep, tmp_path / "s1", "--shard", "slurm") == 0
    assert _evaluate(prep, tmp_path / "s0", "--shard", "0/2") == 0
    assert [r["pair"] for r in _rows(tmp_path / "s1" / "metrics.csv")] == ["BraTSReg_003"]
    capsys.readouterr()
    assert main(["evaluate", "merge", str(tmp_path / "s0"), str(tmp_path / "s1"), "--out", str(tmp_path / "all")]) == 0
    assert "| none | 2/2 |" in capsys.readouterr().out
    assert sorted(r["pair"] for r in _rows(tmp_path / "all" / "metrics.csv")) == ["BraTSReg_002", "BraTSReg_003"]
    (tmp_path / "all" / "report.html").unlink()
    assert main(["evaluate", "report", str(tmp_path / "all")]) == 0
    assert (tmp_path / "all" / "report.html").is_file()
    (tmp_path / "all" / "report.md").unlink()
    assert main(["report", str(tmp_path / "all")]) == 0  # the top-level alias
    assert "| none | 2/2 |" in (tmp_path / "all" / "report.md").read_text()


def test_usage_errors_exit_2(prep, tmp_path, capsys):
    assert main(["evaluate", "--dataset", "brats", "--data", str(prep), "--out", str(tmp_path / "e")]) == 2
    assert "--model RUN and/or at least one --baseline" in capsys.readouterr().err
    assert main(["evaluate", "--baseline", "none", "--out", str(tmp_path / "e")]) == 2
    assert "--dataset, --data" in capsys.readouterr().err
    assert main(["evaluate", "bogus"]) == 2
    assert _evaluate(prep, tmp_path / "e", "--shard", "2/2") == 2
    assert "0 <= I < N" in capsys.readouterr().err
    assert main(["evaluate", "--no-progress", "--dataset", "brats", "--data", str(prep), "--baseline", "ants:nope",
                 "--out", str(tmp_path / "e")]) == 2
    assert "unknown baseline" in capsys.readouterr().err
    assert _evaluate(prep, tmp_path / "e", "--split", "val") == 2
    assert "split 'val'" in capsys.readouterr().err
