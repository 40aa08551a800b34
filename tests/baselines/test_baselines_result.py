"""BaselineResult, the identity baseline, get_baseline and the worker process (no ANTs needed)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from medreg.baselines import BASELINE_SPECS, BaselineResult, FireantsBaseline, get_baseline
from medreg.baselines.base import itk_ras_affine, run_worker
from medreg.errors import ConfigError, InputError, MedregError
from medreg.geometry.frames import voxel_to_lps


def test_map_points_interpolates_u_at_the_fixed_position_on_an_oblique_anisotropic_grid(oblique_affine):
    affine = oblique_affine
    shape = (6, 5, 4)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    world = voxel_to_lps(affine, idx.astype(float)).reshape(shape + (3,))
    a_mat = np.array([[0.1, 0.02, 0.0], [0.0, -0.05, 0.03], [0.01, 0.0, 0.08]])
    u = world @ a_mat.T + np.array([1.0, -2.0, 0.5])  # linear in x: trilinear interpolation is exact
    result = BaselineResult(u, affine, seconds=0.0, threads=1, peak_rss_mb=0.0)
    pts = voxel_to_lps(affine, np.array([[1.3, 2.7, 0.4], [4.9, 0.1, 2.5], [2.0, 2.0, 2.0]]))
    expected = pts + pts @ a_mat.T + np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(result.map_points(pts), expected, atol=1e-4)
    assert result.displacement_lps.dtype == np.float32
    np.testing.assert_allclose(result.jacobian_determinant(), np.linalg.det(np.eye(3) + a_mat), rtol=1e-4)


def test_map_points_outside_the_grid_uses_the_border_value():
    u = np.zeros((4, 4, 4, 3), np.float32)
    u[-1, :, :, 0] = 2.0
    result = BaselineResult(u, np.diag([-1.0, -1.0, 1.0, 1.0]), seconds=0.0, threads=1, peak_rss_mb=0.0)
    # LPS identity grid: index = LPS mm
    np.testing.assert_allclose(result.map_points(np.array([[10.0, 1.0, 1.0]])), [[12.0, 1.0, 1.0]])
    np.testing.assert_allclose(result.map_points(np.array([2.5, 1.0, 1.0])), [[3.5, 1.0, 1.0]])


def test_result_rejects_a_field_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"\(X, Y, Z, 3\)"):
        BaselineResult(np.zeros((4, 4, 4)), np.eye(4), seconds=0.0, threads=1, peak_rss_mb=0.0)


def test_itk_ras_affine_matches_a_nibabel_affine(oblique_affine):
    affine = oblique_affine
    lps = np.diag([-1.0, -1.0, 1.0]) @ affine[:3, :3]
    spacing = np.linalg.norm(lps, axis=0)
    origin = np.diag([-1.0, -1.0, 1.0]) @ affine[:3, 3]
    np.testing.assert_allclose(itk_ras_affine(origin, spacing, lps / spacing), affine, atol=1e-12)


def test_identity_baseline(tmp_path, make_pair, oblique_affine):
    affine = oblique_affine
    fixed, moving = make_pair(tmp_path, affine, (1.0, 0.0, 0.0), shape=(8, 9, 10))
    result = get_baseline("none").register(fixed, moving, threads=2)
    assert result.displacement_lps.shape == (8, 9, 10, 3)
    assert not result.displacement_lps.any()
    np.testing.assert_allclose(result.fixed_affine, affine)
    pts = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_array_equal(result.map_points(pts), pts)
    assert result.threads == 2
    with pytest.raises(InputError, match="missing.nii.gz"):
        get_baseline("none").register(tmp_path / "missing.nii.gz", moving, threads=1)


def test_get_baseline_specs():
    assert get_baseline("ants").name == "ants:syn-quick"
    assert get_baseline("ants").options["type_of_transform"] == "antsRegistrationSyNQuick[s]"
    assert get_baseline("ants:syn").options["type_of_transform"] == "antsRegistrationSyN[s]"
    assert get_baseline("ants:affine").options["type_of_transform"] == "antsRegistrationSyNQuick[a]"
    assert get_baseline("ants:syn-cc").options["type_of_transform"] == "antsRegistrationSyN[s,2]"
    for spec in BASELINE_SPECS:
        assert get_baseline(spec).name == (spec if spec != "ants" else "ants:syn-quick")
    for bad in ("ants:bogus", "simpleelastix", ""):
        with pytest.raises(ConfigError, match="expected one of"):
            get_baseline(bad)


def test_fireants_missing_says_how_to_install(tmp_path, monkeypatch, make_pair):
    monkeypatch.setitem(sys.modules, "fireants", None)  # as if not installed, even where it is
    fixed, moving = make_pair(tmp_path, np.eye(4), (0.0, 0.0, 0.0), shape=(4, 4, 4))
    with pytest.raises(MedregError, match=r"not installed.*pip install fireants --no-deps"):
        FireantsBaseline().register(fixed, moving, threads=1)


def test_elastix_missing_gives_an_install_message(tmp_path, monkeypatch, make_pair):
    monkeypatch.setitem(sys.modules, "itk", None)  # makes `import itk` raise ImportError
    fixed, moving = make_pair(tmp_path, np.eye(4), (0.0, 0.0, 0.0), shape=(4, 4, 4))
    with pytest.raises(MedregError, match=r"pip install 'medreg\[baselines\]'"):
        get_baseline("elastix").register(fixed, moving, threads=1)


def test_worker_reports_errors_and_crashes(tmp_path):
    with pytest.raises(MedregError, match="failed: JSONDecodeError"):
        run_worker("json:loads", {"s": "{"}, threads=1, seed=0, workdir=tmp_path)
    with pytest.raises(MedregError, match="crashed: worker process exited with code"):
        run_worker("os:abort", {}, threads=1, seed=0, workdir=tmp_path)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux)")
def test_worker_peak_memory_is_its_own_not_the_callers(tmp_path):
    """A worker started by a large process reports its own peak (ru_maxrss would carry the caller's over)."""
    import numpy as np

    from medreg.baselines.base import own_peak_rss_mb

    ballast = np.ones(96 << 20)  # 768 MB resident in the caller
    assert own_peak_rss_mb() > 700
    payload = run_worker("builtins:dict", {"answer": 1}, threads=1, seed=0, workdir=tmp_path)
    assert payload["answer"] == 1 and "VmHWM" in payload["peak_rss_source"]
    assert 10 < payload["peak_rss_mb"] < 400, payload["peak_rss_mb"]
    del ballast
