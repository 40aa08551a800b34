"""medreg.report: QC strips, plots, tables and the self-contained HTML report, from crafted rows."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest

from medreg.evaluation.summary import summarize
from medreg.report.document import write_report
from medreg.report.plots import folding_bars, runtime_bars, tre_boxplot
from medreg.report.qc import checkerboard, displacement_voxels, qc_strip_png, warp_slice
from medreg.report.tables import fmt, summary_table

PNG = b"\x89PNG\r\n\x1a\n"


def _row(pair, method, tre, seconds, status="ok", **kw):
    base = {"pair": pair, "method": method, "status": status, "reason": "" if status == "ok" else "RuntimeError: boom",
            "tre_mean": tre, "tre_median": tre, "tre_p90": tre, "tre_max": tre, "mee": tre, "robustness": 1.0,
            "tre0_mean": 4.0, "tre0_median": 4.0, "folding_pct": 0.0, "sdlogj": 0.01, "sdlogj_plus3": 0.002,
            "dice_mean": float("nan"), "dice_before": float("nan"), "seconds": seconds, "wall_seconds": seconds,
            "threads": 2, "device": "cpu", "peak_rss_mb": 100.0, "shape": "32x32x32", "spacing": "1x1x1"}
    base.update(kw)
    return base


@pytest.fixture
def rows():
    return [
        _row("p1", "medreg", 1.0, 2.0), _row("p2", "medreg", 3.0, 2.0),
        _row("p1", "ants:syn-quick", 2.0, 100.0), _row("p2", "ants:syn-quick", 2.0, 60.0),
        _row("p1", "none", 4.0, 0.01), _row("p2", "none", float("nan"), float("nan"), status="failed"),
    ]


def test_summary_statistics_and_ratios(rows):
    s = summarize(rows, ["medreg", "ants:syn-quick", "none"], "ants:syn-quick")
    med = s["methods"]["medreg"]
    assert med["metrics"]["tre_mean"] == {"mean": 2.0, "median": 2.0, "std": 1.0, "n": 2}
    assert med["vs_reference"]["time_ratio"] == pytest.approx(2.0 / 80.0)
    assert med["vs_reference"]["speedup"] == pytest.approx(40.0)
    assert med["vs_reference"]["tre_ratio"] == pytest.approx(1.0)
    assert s["methods"]["none"]["failed"] == 1 and s["methods"]["none"]["vs_reference"]["pairs"] == 1  # only p1 in common
    assert s["methods"]["none"]["vs_reference"]["tre_ratio"] == pytest.approx(2.0)
    assert s["no_registration"]["tre0_mean"]["mean"] == 4.0


def test_summary_table_has_one_line_per_method_after_no_registration(rows):
    s = summarize(rows, ["medreg", "ants:syn-quick", "none"], "ants:syn-quick")
    header, lines = summary_table(s, ["medreg", "ants:syn-quick", "none"])
    assert [line[0] for line in lines] == ["no registration", "medreg", "ants:syn-quick", "none"]
    assert all(len(line) == len(header) for line in lines)
    assert "Speedup vs ants:syn-quick" in header and lines[1][header.index("Speedup vs ants:syn-quick")] == "40x"
    assert lines[3][header.index("Speedup vs ants:syn-quick")] == "10,000x"
    slower = summary_table(summarize(rows, ["medreg", "none"], "none"), ["medreg", "none"])[1][1]
    assert slower[header.index("Speedup vs ants:syn-quick")] == "200x slower"
    assert lines[1][header.index("TRE mean (mm)")] == "2.00 ± 1.00" and lines[3][1] == "1/2"
    assert fmt(float("nan")) == "-" and fmt(None) == "-" and fmt(0.5) == "0.50"


def test_plots_are_pngs_even_without_data(rows):
    for plot in (tre_boxplot, runtime_bars, folding_bars):
        assert plot(rows, ["medreg", "ants:syn-quick", "none"]).startswith(PNG)
        assert plot([], ["medreg"]).startswith(PNG)


def test_warp_slice_of_a_translation_matches_the_fixed_image():
    """moving = fixed shifted by +3 voxels along x; u = +3 mm (LPS) on a 1 mm LPS-aligned grid -> warped == fixed."""
    rng = np.random.default_rng(0)
    fixed = rng.random((20, 18, 6)).astype(np.float32)
    moving = np.zeros_like(fixed)
    moving[3:] = fixed[:-3]
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])  # voxel -> RAS; LPS = voxel index
    u = np.zeros((20, 18, 3), np.float32)
    u[..., 0] = 3.0
    warped = warp_slice(moving, affine, u, affine, 2)
    np.testing.assert_allclose(warped[:17], fixed[:17, :, 2], atol=1e-5)
    assert np.allclose(displacement_voxels(np.broadcast_to(u[:, :, None], (20, 18, 6, 3)), affine, 2)[..., 0], 3.0)


def test_checkerboard_alternates_tiles():
    a, b = np.zeros((16, 16)), np.ones((16, 16))
    c = checkerboard(a, b, tiles=4)
    assert c[0, 0] == 0 and c[4, 0] == 1 and c[4, 4] == 0 and c.mean() == 0.5


def test_qc_strip_is_a_png():
    vol = np.random.default_rng(1).random((16, 20, 8)).astype(np.float32)
    u = np.zeros((16, 20, 8, 3), np.float32)
    png = qc_strip_png(vol, vol, np.eye(4), u, np.eye(4), title="p1 - none")
    assert png.startswith(PNG) and len(png) > 1000


def test_report_html_is_self_contained(rows, tmp_path):
    (tmp_path / "pairs").mkdir()
    qc = qc_strip_png(np.ones((8, 8, 4), np.float32) * np.arange(8)[:, None, None], np.ones((8, 8, 4), np.float32),
                      np.eye(4), np.zeros((8, 8, 4, 3), np.float32), np.eye(4))
    (tmp_path / "pairs" / "qc.png").write_bytes(qc)
    for r in rows:
        if r["status"] == "ok":
            r["qc"] = "pairs/qc.png"
    info = {"dataset": "demo-brain", "split": "test", "data": "/data/prep", "threads": 2, "channel": "t1", "channels": ["t1", "t2"],
            "methods": [{"name": m} for m in ("medreg", "ants:syn-quick", "none")], "reference": "ants:syn-quick",
            "machine": {"cpu": "Test CPU", "cpu_count": 2}, "split_pairs": 2, "command": "medreg evaluate ..."}
    summary = summarize(rows, ["medreg", "ants:syn-quick", "none"], "ants:syn-quick")
    md, html = write_report(tmp_path, info, rows, summary)
    text = html.read_text()
    assert text.index("demo-brain") < text.index("<h2>Summary</h2>") < text.index("<h2>Plots</h2>") < text.index("<h2>QC</h2>")
    assert "Test CPU, 2 cores" in text and "32x32x32" in text and "RuntimeError: boom" in text
    images = re.findall(r'<img[^>]*src="([^"]+)"', text)
    assert len(images) == 3 + 5 and all(src.startswith("data:image/png;base64,") for src in images)
    assert base64.b64decode(images[0].split(",", 1)[1]).startswith(PNG)
    assert not re.search(r'(src|href)="(?!data:)', text)  # nothing outside the file
    assert "<tr class=\"best\"><td>medreg</td>" in text  # the lowest mean TRE is highlighted
    mdt = md.read_text()
    assert "| medreg | 2/2 | 2.00 ± 1.00 |" in mdt and "(figures/runtime.png)" in mdt and (tmp_path / "figures" / "runtime.png").is_file()
