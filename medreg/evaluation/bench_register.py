"""What ``medreg bench register`` measures: seconds per pair and peak memory of ``medreg register`` beside ANTs, on a 1 mm brain.

The pair is a demo-brain test case (MNI152's 1 mm grid, 197x233x189, BraTS-Reg
layout; fixed = follow-up, moving = baseline). medreg and every ANTs preset run
in their own fresh worker process with the same thread count
(``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS``/``OMP_NUM_THREADS`` and
``torch.set_num_threads``), so peak memory is that of one method alone.

What the seconds include:

- medreg: reading the images, preprocessing, the network, mapping the field back
  onto the original 1 mm grid and warping the moving image (``register_pair``),
  per pair with the model already loaded (``warm``); the first call of a fresh
  process (``cold``) and writing every output file are reported beside it.
- ANTs: ``ants.registration`` plus composing its transforms into one field
  (see :mod:`medreg.baselines.ants`), not reading the images.

The model is a checkpoint (``--model``) or, without one, the untrained model of
``medreg/configs/demo-brain.yaml`` (the same architecture and cost; its field is the
identity, so its TRE is that of no registration).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any



# --------------------------------------------------------------------------- the medreg worker (fresh process)
def medreg_worker(model: str | None, fixed: list[str], moving: list[str], landmarks: str | None, device: str,
                  threads: int, repeats: int, out_dir: str, global_mode: str | None = None) -> dict[str, Any]:
    """Load the model, register the pair ``repeats`` times, write the outputs once; figures as JSON."""
    import torch

    from medreg.memory import own_peak_rss_mb
    from medreg.inference.outputs import write_outputs
    from medreg.inference.global_stage import GlobalConfig
    from medreg.inference.register import model_global_stage, register_pair, resolve_device

    torch.set_num_threads(int(threads))
    t0 = time.perf_counter()
    dev = resolve_device(device)
    if model:
        from medreg.inference.bundle import load_bundle

        bundle = load_bundle(model, dev)
        net, config, pipeline = bundle.model, bundle.config, bundle.pipeline
        what = f"checkpoint {bundle.path}"
    else:
        from medreg.config import load_config, preset_path
        from medreg.registration.build import build_model

        config = load_config(preset_path("demo-brain"))
        net = build_model(config.model, len(config.channels)).to(dev).eval()
        pipeline = None
        what = "untrained model of medreg/configs/demo-brain.yaml (timing only; its field is the identity)"
    load_seconds = time.perf_counter() - t0
    stage = GlobalConfig(global_mode) if global_mode is not None else model_global_stage(config)
    runs = []
    res = None
    for _ in range(max(1, int(repeats))):
        res = register_pair(net, config, fixed, moving, device=dev, landmarks=landmarks,
                            pipeline=pipeline, global_stage=stage)
        runs.append({"seconds": res.seconds, "timings": res.extra["timings"]})
    assert res is not None
    rss_register = own_peak_rss_mb()
    t1 = time.perf_counter()
    write_outputs(res, Path(out_dir) / "outputs", info={"model": what})
    out = {
        "model": what,
        "name": stage.named("medreg"),
        "channels": list(config.channels),
        "network_shape": res.extra["preprocessed_shape"],
        "network_spacing": res.extra["preprocessed_spacing"],
        "load_model_seconds": load_seconds,
        "runs": runs,
        "write_seconds": time.perf_counter() - t1,
        "peak_rss_register_mb": rss_register,
        "torch_threads": torch.get_num_threads(),
        "device": str(dev),
        "mapped": None if res.mapped_landmarks is None else res.mapped_landmarks.points.tolist(),
    }
    if dev.type == "cuda":
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return out


# --------------------------------------------------------------------------- the benchmark
def demo_pair(root: Path, case: str | None, index: int) -> dict[str, Any]:
    """Files of one demo-brain test case (``case`` or the ``index``-th test case)."""
    from medreg.datasets.demo_brain import case_files
    from medreg.errors import InputError

    summary = json.loads((root / "summary.json").read_text())
    cases = summary["cases"]
    if case is None:
        tests = [c for c, info in cases.items() if info.get("split") == "test"] or list(cases)
        if index >= len(tests):
            raise InputError(root, f"expected at least {index + 1} test cases, found {len(tests)}")
        case = tests[index]
    if case not in cases:
        raise InputError(root, f"expected case {case!r} in summary.json, found {', '.join(list(cases)[:5])} ...")
    days = int(str(cases[case]["followup"]).split("_")[1])
    return {"id": case, "files": case_files(root, case, days)}


def _tre(mapped: Any, target: Any) -> float:
    import numpy as np

    return float(np.linalg.norm(np.asarray(mapped) - target, axis=1).mean())


def bench_register(*, model: str | None = None, data: str | None = None, pairs: int = 1, case: str | None = None,
                   threads: int = 2, baselines: list[str] | None = None, device: str = "cpu", repeats: int = 3,
                   global_mode: str | None = None, log=print) -> dict[str, Any]:
    """Time medreg and the ANTs ``baselines`` (preset names) on demo-brain pairs; return every figure."""
    import numpy as np

    from medreg.baselines import get_baseline
    from medreg.baselines.base import run_worker
    from medreg.datasets.demo_brain import ensure_demo_brain
    from medreg.io.landmarks import match_landmarks, read_brats_csv
    from medreg.io.nifti import volume_geometry
    from medreg.training.benchmark import machine

    root = Path(data) if data else ensure_demo_brain()
    baselines = list(baselines or [])
    report: dict[str, Any] = {"machine": machine(), "threads": threads, "device": device, "data": str(root),
                              "pairs": [], "methods": {}}
    report["machine"]["torch_threads"] = threads
    try:
        import os

        report["machine"]["load_average"] = list(os.getloadavg())
    except OSError:
        pass
    for k in range(pairs):
        pair = demo_pair(root, case if pairs == 1 else None, k)
        f = pair["files"]
        fl, ml = match_landmarks(read_brats_csv(f["01_landmarks"]), read_brats_csv(f["00_landmarks"]))
        shape, affine = volume_geometry(f["01_t1"])
        entry = {"id": pair["id"], "shape": list(shape), "spacing": [float(s) for s in np.linalg.norm(affine[:3, :3], axis=0)],
                 "landmarks": len(fl), "tre_none_mm": _tre(fl.points, ml.points)}
        report["pairs"].append(entry)
        with tempfile.TemporaryDirectory(prefix="medreg_bench_") as tmp:
            log(f"[{pair['id']}] medreg ({threads} threads, {device}) ...")
            payload = run_worker(
                "medreg.evaluation.bench_register:medreg_worker",
                {"model": model, "fixed": [str(f[f"01_{c}"]) for c in _channels(model)],
                 "moving": [str(f[f"00_{c}"]) for c in _channels(model)], "landmarks": str(f["01_landmarks"]),
                 "device": device, "threads": threads, "repeats": repeats, "out_dir": tmp, "global_mode": global_mode},
                threads=threads, seed=0, workdir=Path(tmp), what="medreg registration",
            )
            secs = [r["seconds"] for r in payload["runs"]]
            name = payload["name"]
            report["reference"] = name
            m = report["methods"].setdefault(name, {"seconds": [], "cold_seconds": [], "write_seconds": [],
                                                        "peak_rss_mb": [], "peak_rss_with_outputs_mb": [], "tre_mm": []})
            m["cold_seconds"].append(secs[0])
            m["seconds"].append(float(np.median(secs[1:])) if len(secs) > 1 else secs[0])
            m["write_seconds"].append(payload["write_seconds"])
            m["peak_rss_mb"].append(payload["peak_rss_register_mb"])
            m["peak_rss_with_outputs_mb"].append(payload["peak_rss_mb"])
            m["tre_mm"].append(_tre(payload["mapped"], ml.points))
            m["timings"] = payload["runs"][-1]["timings"]
            report["model"] = payload["model"]
            report["channels"] = payload["channels"]
            report["network"] = {"shape": payload["network_shape"], "spacing": payload["network_spacing"]}
            if "cuda_peak_mb" in payload:
                m["cuda_peak_mb"] = payload["cuda_peak_mb"]
        for spec in baselines:
            name = spec if spec.startswith("ants") else f"ants:{spec}"
            log(f"[{pair['id']}] {name} ({threads} threads; t1 only) ...")
            res = get_baseline(name).register(f["01_t1"], f["00_t1"], threads=threads, seed=0)
            b = report["methods"].setdefault(name, {"seconds": [], "peak_rss_mb": [], "tre_mm": []})
            b["seconds"].append(res.seconds)
            b["peak_rss_mb"].append(res.peak_rss_mb)
            b["tre_mm"].append(_tre(res.map_points(fl.points), ml.points))
    return report


def _channels(model: str | None) -> list[str]:
    """The model's channels (from the checkpoint's embedded config, or the demo-brain preset)."""
    if model:
        from medreg.config import config_from_json
        from medreg.io.checkpoint import read_metadata

        return config_from_json(read_metadata(model)["config"], str(model)).channels
    from medreg.config import load_config, preset_path

    return load_config(preset_path("demo-brain")).channels


def format_report(r: dict[str, Any]) -> str:
    """The figures as a small table with ratios to medreg."""
    import numpy as np

    mach = r["machine"]
    lines = [
        f"machine: {mach.get('cpu')}, {mach.get('cores')} cores, torch {mach.get('torch')}"
        + (f", GPU {mach['gpu']}" if "gpu" in mach else "")
        + (f", load average {', '.join(f'{v:.1f}' for v in mach['load_average'])}" if "load_average" in mach else ""),
        f"threads: {r['threads']} (every method), device: {r['device']}",
        f"model: {r.get('model')}",
        f"network input: {r.get('channels')} at {r.get('network', {}).get('spacing')} mm, shape {r.get('network', {}).get('shape')}",
    ]
    for p in r["pairs"]:
        lines.append(f"pair {p['id']}: {'x'.join(map(str, p['shape']))} at {p['spacing'][0]:g} mm, "
                     f"{p['landmarks']} landmarks, TRE without registration {p['tre_none_mm']:.2f} mm")
    ref_name = r.get("reference", "medreg")
    med = r["methods"].get(ref_name)
    ref = float(np.mean(med["seconds"])) if med else None
    lines.append("")
    lines.append(f"{'method':<16}{'s/pair':>10}{'peak MB':>10}{'TRE mm':>9}{'x medreg time':>15}")
    for name, m in r["methods"].items():
        s = float(np.mean(m["seconds"]))
        ratio = f"{s / ref:.1f}" if ref else "-"
        lines.append(f"{name:<16}{s:>10.2f}{np.max(m['peak_rss_mb']):>10.0f}{np.mean(m['tre_mm']):>9.2f}{ratio:>15}")
    if med:
        lines.append("")
        lines.append(f"{ref_name}: first call in a fresh process {np.mean(med['cold_seconds']):.2f} s; writing all outputs "
                     f"(warped, field, transform.h5, jacobian) {np.mean(med['write_seconds']):.2f} s more, peak "
                     f"{np.max(med['peak_rss_with_outputs_mb']):.0f} MB; stages {med.get('timings')}")
        for name, m in r["methods"].items():
            if name != ref_name:
                lines.append(f"{name} / medreg time: {np.mean(m['seconds']) / ref:.1f}x "
                             f"(with medreg's output writing: {np.mean(m['seconds']) / (ref + np.mean(med['write_seconds'])):.1f}x)")
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line
