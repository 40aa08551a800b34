"""``DIR/evaluation.json``: what was registered, with which methods, threads and machine.

Written when an evaluation starts. A rerun into the same ``DIR`` (resume) must agree on
what makes rows comparable (dataset, data, split, shard, threads, channel, seed); methods
may be added. ``merge`` checks that its inputs agree the same way (shards may differ).
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

from medreg.errors import InputError
from medreg.io.atomic import write_text_atomic

INFO_FILE = "evaluation.json"
FORMAT = "medreg-evaluation"
#: keys that must agree between a run and the folder it resumes (and, except shard, between merged shards)
MUST_AGREE = ("dataset", "data", "split", "threads", "channel", "seed", "shard")


def cpu_name() -> str:
    """The CPU model (from /proc/cpuinfo on Linux), else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(devices: list[str]) -> dict[str, Any]:
    """Host, CPU, cores and (if a CUDA device is used) the GPU name."""
    info: dict[str, Any] = {
        "host": platform.node(), "platform": platform.platform(), "python": platform.python_version(),
        "cpu": cpu_name(), "cpu_count": os.cpu_count(),
    }
    try:
        info["affinity_cpus"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    if any(d.startswith("cuda") for d in devices):
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    return info


def read_info(out: Path) -> dict[str, Any] | None:
    path = Path(out) / INFO_FILE
    if not path.exists():
        return None
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(path, f"expected the JSON record of an evaluation, found invalid JSON ({err.msg})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise InputError(path, f"expected \"format\": \"{FORMAT}\", found {info.get('format') if isinstance(info, dict) else info!r}")
    return info


def check_resume(out: Path, new: dict[str, Any]) -> dict[str, Any]:
    """The info to write for a run into ``out``: refuses a folder evaluated differently.

    Methods of the earlier run are kept (their rows stay valid) and the new ones added.
    """
    old = read_info(out)
    if old is None:
        if Path(out).exists() and any(p.name not in (".", "..") for p in Path(out).iterdir()):
            raise InputError(out, "expected an empty folder or an earlier evaluation (with evaluation.json), found other files")
        return new
    diffs = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in MUST_AGREE if old.get(k) != new.get(k)]
    if diffs:
        raise InputError(Path(out) / INFO_FILE, "expected to resume the same evaluation, found a different one ("
                         + "; ".join(diffs) + "); use another --out")
    merged = dict(new)
    names = [m["name"] for m in new["methods"]]
    merged["methods"] = list(new["methods"]) + [m for m in old.get("methods", []) if m["name"] not in names]
    merged["started"] = old.get("started", new.get("started"))
    return merged


def write_info(out: Path, info: dict[str, Any]) -> Path:
    return write_text_atomic(Path(out) / INFO_FILE, json.dumps(info, indent=1) + "\n", overwrite=True)
