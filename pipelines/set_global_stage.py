"""Write a model file with another default global stage in its embedded config (weights unchanged).

    python pipelines/set_global_stage.py MODEL.safetensors affine OUT.safetensors [--similarity ncc]

How medreg/weights/demo-lung.safetensors got ``global_stage.mode: affine`` (2026-12-01): the model was
trained before the stage existed; on its 2 validation pairs (training pairs held out of training) the
stage ties without motion and is needed with one (README, Results, demo-lung). Every other metadata
entry (the input pipeline, the step, the metrics) is kept; the result is checked to load.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from medreg.config import config_from_json
from medreg.inference.bundle import load_bundle
from medreg.io.checkpoint import read_metadata, resolve_checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("mode", choices=["none", "rigid", "affine"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--similarity", default="ncc", choices=["ncc", "mi"])
    args = parser.parse_args(argv)
    from safetensors.torch import load_file, save_file

    src = resolve_checkpoint(args.model)
    if args.out.exists():
        print(f"error: {args.out} exists; choose a new file", file=sys.stderr)
        return 2
    meta = read_metadata(src)
    config = json.loads(meta["config"])
    config["global_stage"] = {"mode": args.mode, "similarity": args.similarity}
    meta["config"] = json.dumps(config)
    config_from_json(meta["config"], f"{src} with global_stage {args.mode}")  # still a valid config
    tmp = args.out.with_name(args.out.name + ".tmp")
    save_file(load_file(str(src)), str(tmp), metadata=meta)
    tmp.replace(args.out)
    bundle = load_bundle(args.out)
    print(f"wrote {args.out}: global_stage {bundle.config.global_stage.mode} ({bundle.config.global_stage.similarity})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
