"""``medreg bench capture``: the command (the measurement is :mod:`medreg.evaluation.bench_capture`)."""

from __future__ import annotations

import argparse


def add_capture(subparsers) -> None:
    p = subparsers.add_parser(
        "capture", help="TRE against a known global offset (translations, rotations, both) beside baselines",
        description=("A demo-brain (or demo-lung) test case registered again after its moving image and landmarks "
                     "are moved by 0-30 mm and 0-30 degrees: mean / max TRE and seconds of medreg (one pass and with "
                     "its default IO, each with and without the global affine stage) and of each baseline, same "
                     "files and threads. Writes OUT/capture.csv and OUT/capture.png and prints the machine."),
    )
    p.add_argument("--dataset", default="demo-brain", choices=["demo-brain", "demo-lung"],
                   help="which built-in benchmark's first test case (default demo-brain)")
    p.add_argument("--model", default=None, metavar="RUN_OR_CHECKPOINT",
                   help="the model (default: the shipped model of --dataset, medreg/weights/<dataset>.safetensors)")
    p.add_argument("--baselines", default="elastix,ants:syn-quick",
                   help="comma-separated baselines (elastix, ants:syn-quick, ...) or 'none' (default elastix,ants:syn-quick)")
    p.add_argument("--kinds", default="translation,rotation,combined", help="which motions (default all three)")
    p.add_argument("--io-steps", type=int, default=None,
                   help="instance-optimisation steps of the IO rows (default: the default preset's own, as in make "
                        "demo / make demo-lung: --io-preset default)")
    p.add_argument("--threads", type=int, default=2, help="threads for every method (default 2)")
    p.add_argument("--out", default="runs/capture", help="output folder (default runs/capture)")
    p.set_defaults(run=run_capture)


def run_capture(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from medreg.cli.bench_args import checked_baselines, shipped_model
    from medreg.errors import InputError
    from medreg.evaluation.bench_capture import bench_capture
    from medreg.evaluation.run_info import machine_info

    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    bad = sorted(set(kinds) - {"translation", "rotation", "combined"})
    if bad or args.threads < 1 or (args.io_steps is not None and args.io_steps < 0):
        raise InputError(None, f"expected --kinds among translation,rotation,combined, --threads >= 1 and "
                               f"--io-steps >= 0, found {args.kinds}, {args.threads}, {args.io_steps}")
    specs = checked_baselines(args.baselines)
    print("machine:", json.dumps(machine_info(["cpu"])))
    model = args.model if args.model is not None else shipped_model(args.dataset)
    bench_capture(model=model, dataset=args.dataset, baselines=specs, threads=args.threads, io_steps=args.io_steps,
                  out=Path(args.out), kinds=kinds)
    print(f"-> {Path(args.out) / 'capture.csv'}, {Path(args.out) / 'capture.png'}")
    return 0
