import csv
import json
import runpy
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2] / "pipelines"
PIPELINE = ROOT / "mnist_mesaoptimizer.py"
VS_ICON = ROOT / "mnist_vs_icon.py"


def _run(path, argv, monkeypatch):
    monkeypatch.setattr(sys, "argv", [path.name, *argv])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(path), run_name="__main__")
    return exit_info.value.code


@pytest.mark.network
def test_mnist_pipeline_short_runs_write_the_probe_curves_over_seeds(tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert _run(PIPELINE, ["--out", str(out), "--seeds", "0,1", "--seconds", "2", "--eval-pairs", "40"],
                monkeypatch) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model_steps"] == 9 and metrics["unrolled_to"] == 36
    assert [r["seed"] for r in metrics["runs"]] == [0, 1] and all(r["steps"] > 0 for r in metrics["runs"])
    with open(out / "summary.csv") as f:
        summary = list(csv.DictReader(f))
    assert len(summary) == 2 * 37  # fives and sevens, steps 0..36
    for digit in ("5", "7"):
        rows = [r for r in summary if r["digit"] == digit]
        assert all(r["seeds"] == "2" for r in rows)
        assert float(rows[9]["similarity_mean"]) < float(rows[0]["similarity_mean"])  # even 2 s of training help
        assert [int(r["beyond_training"]) for r in rows] == [0] * 10 + [1] * 27
        assert -1 <= float(rows[1]["cos_loss_mean"]) <= 1 and float(rows[1]["cos_loss_sd"]) >= 0
        assert 0 <= float(rows[5]["p_five_mean"]) <= 1
    with open(out / "steps.csv") as f:
        assert len(list(csv.DictReader(f))) == 2 * 2 * 37
    for name in ("grid_5.png", "grid_7.png", "steps.png"):
        assert (out / name).stat().st_size > 1000
    # refuses to write into a folder that already holds results, and bad lists
    assert _run(PIPELINE, ["--out", str(out), "--seconds", "1"], monkeypatch) == 2
    assert _run(PIPELINE, ["--out", str(tmp_path / "new"), "--seconds", "a"], monkeypatch) == 2


def test_the_medreg_side_of_the_icon_comparison_trains_the_seed_model():
    ns = runpy.run_path(str(VS_ICON))
    torch.manual_seed(0)
    runner = ns["MedregRunner"](0.05)
    moving, fixed = torch.rand(128, 1, 28, 28), torch.rand(128, 1, 28, 28)
    first = float(runner.loss(moving, fixed).detach())
    opt = torch.optim.Adam(runner.params, lr=1e-3)
    for _ in range(5):
        loss = runner.loss(moving, fixed)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(runner.loss(moving, fixed).detach()) < first
    assert runner.warped(moving[:3], fixed[:3]).shape == (3, 1, 28, 28)


def test_the_icon_side_runs_when_icon_registration_is_installed():
    pytest.importorskip("icon_registration", reason="pip install --no-deps icon_registration==1.1.9 to run this")
    ns = runpy.run_path(str(VS_ICON))
    runner = ns["IconRunner"](0.05)
    moving, fixed = torch.rand(128, 1, 28, 28), torch.rand(128, 1, 28, 28)
    assert torch.isfinite(runner.loss(moving, fixed))
    assert runner.warped(moving[:3], fixed[:3]).shape == (3, 1, 28, 28)  # padded to its batch and cut back


def test_the_icon_comparison_says_how_to_install_icon_registration(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "icon_registration", None)  # import fails as if not installed
    assert _run(VS_ICON, ["--out", str(tmp_path / "x")], monkeypatch) == 2
    assert "pip install --no-deps icon_registration==1.1.9" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
