import json
import runpy
import sys
from pathlib import Path

import pytest

PIPELINE = Path(__file__).resolve().parents[2] / "pipelines" / "mnist_mesaoptimizer.py"


@pytest.mark.network
def test_mnist_pipeline_short_run_writes_metrics_and_figures(tmp_path, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", ["mnist", "--out", str(out), "--steps", "30", "--eval-pairs", "40"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(PIPELINE), run_name="__main__")
    assert exit_info.value.code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 30 and metrics["train_seconds"] > 0
    for digit in ("5", "7"):
        r = metrics[digit]
        assert len(r["per_step"]["similarity"]) == 10 and len(r["per_step"]["p_five"]) == 10
        assert r["similarity_after"] < r["similarity_before"]  # even 30 steps help
        assert 0.0 <= r["folding_fraction"] <= 1.0
    for name in ("grid_5.png", "grid_7.png", "steps.png"):
        assert (out / name).stat().st_size > 1000
    # refuses to write into a folder that already holds results
    monkeypatch.setattr(sys, "argv", ["mnist", "--out", str(out), "--steps", "1"])
    with pytest.raises(SystemExit) as again:
        runpy.run_path(str(PIPELINE), run_name="__main__")
    assert again.value.code == 2
