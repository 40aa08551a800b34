"""``medreg bench io``: the command (the measurement is :mod:`medreg.evaluation.bench_io`)."""

from __future__ import annotations

import argparse


def add_io(subparsers) -> None:
    p = subparsers.add_parser(
        "io", help="instance-optimisation presets: TRE against seconds beside elastix and SyNQuick",
        description=("Register the first --pairs pairs of a split with medreg in one pass, with each instance-"
                     "optimisation preset (additive and diffeomorphic) and with each baseline, same files and "
                     "threads. Prints and writes OUT/io.csv (per method: TRE, seconds, IO seconds, folding, SDlogJ, "
                     "peak memory), OUT/levels.csv (seconds per pyramid level) and OUT/io.png (TRE against "
                     "seconds), and prints the machine. Choose presets on --split val; report --split test."),
    )
    p.add_argument("--dataset", default="demo-brain", help="dataset of the preprocessed folder (default demo-brain)")
    p.add_argument("--data", required=True, metavar="PREPROCESSED_DIR", help="output folder of medreg preprocess")
    p.add_argument("--model", default=None, metavar="RUN_OR_CHECKPOINT",
                   help="the model (default: the shipped model of --dataset, medreg/weights/<dataset>.safetensors)")
    p.add_argument("--split", default="test",
                   help="split of the manifest (default test); 'val' on a manifest without one is the model's "
                        "validation pairs, held out of its training split")
    p.add_argument("--pairs", type=int, default=1, help="how many pairs of the split, from the first (default 1)")
    p.add_argument("--presets", default="fast,default,accurate", help="comma-separated presets (default all three)")
    p.add_argument("--diffeomorphic", choices=("both", "on", "off"), default="both",
                   help="each preset additive (off), diffeomorphic (on) or both (default)")
    p.add_argument("--baselines", default="elastix,ants:syn-quick",
                   help="comma-separated baselines or 'none' (default elastix,ants:syn-quick)")
    p.add_argument("--threads", type=int, default=2, help="threads for every method (default 2)")
    p.add_argument("--device", default="cpu", help="device of medreg: cpu, cuda or auto (default cpu)")
    p.add_argument("--out", default="runs/bench-io", help="output folder (default runs/bench-io; a rerun resumes)")
    p.set_defaults(run=run_io)


def run_io(args: argparse.Namespace) -> int:
    import json
    import shlex
    import sys
    from pathlib import Path

    from medreg.cli.bench_args import checked_baselines, shipped_model
    from medreg.errors import InputError
    from medreg.evaluation.bench_io import bench_io
    from medreg.evaluation.run_info import machine_info
    from medreg.inference.io_config import NAMED

    presets = [s.strip() for s in args.presets.split(",") if s.strip()]
    bad = [s for s in presets if s not in NAMED]
    if bad or not presets or args.threads < 1 or args.pairs < 1:
        raise InputError(None, f"expected --presets among {','.join(NAMED)}, --threads >= 1 and --pairs >= 1, "
                               f"found {args.presets!r}, {args.threads}, {args.pairs}")
    specs = checked_baselines(args.baselines)
    diffeo = {"both": (False, True), "on": (True,), "off": (False,)}[args.diffeomorphic]
    model = args.model if args.model is not None else shipped_model(args.dataset)
    print("machine:", json.dumps(machine_info([args.device])))
    bench_io(model=model, dataset=args.dataset, data=args.data, out=Path(args.out), split=args.split, presets=presets,
             diffeomorphic=diffeo, baselines=specs, threads=args.threads, pairs=args.pairs, device=args.device,
             command=" ".join(shlex.quote(a) for a in ["medreg", *sys.argv[1:]]))
    out = Path(args.out)
    print(f"-> {out / 'io.csv'}, {out / 'levels.csv'}, {out / 'io.png'}, {out / 'evaluation'}")
    return 0
