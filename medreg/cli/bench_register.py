"""``medreg bench register``: the command (the measurement is :mod:`medreg.evaluation.bench_register`)."""

from __future__ import annotations

import argparse


def add_register(subparsers) -> None:
    """Register ``medreg bench register`` (called by ``medreg.cli.bench``)."""
    p = subparsers.add_parser(
        "register", help="seconds per pair and peak memory of medreg register beside ANTs (1 mm brain)",
        description=("Seconds per pair and peak memory of medreg register beside ANTs on a 1 mm brain (a demo-brain "
                     "test case), each method in its own fresh worker with the same threads. Full SyN takes about 20 "
                     "minutes per pair on 2 CPU cores."),
    )
    p.add_argument("--model", metavar="RUN_OR_CHECKPOINT", default=None,
                   help="checkpoint to time (default: the untrained medreg/configs/demo-brain.yaml model)")
    p.add_argument("--data", metavar="DIR", default=None, help="demo-brain folder (default: generated and cached)")
    p.add_argument("--case", default=None, help="case id (default: the first test case)")
    p.add_argument("--pairs", type=int, default=1, help="number of test pairs (default 1)")
    p.add_argument("--threads", type=int, default=2, help="threads for every method (default 2)")
    p.add_argument("--baselines", default="syn-quick,syn",
                   help="comma-separated ANTs presets (affine, syn-quick, syn, syn-cc) or 'none' (default syn-quick,syn)")
    p.add_argument("--repeats", type=int, default=3, help="medreg calls per pair in one process (default 3; the first is 'cold')")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    p.add_argument("--global", dest="global_mode", choices=("none", "rigid", "affine"), default=None,
                   help="medreg's global stage (default: the model's, global_stage.mode of its config)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(run=run_register)


def run_register(args: argparse.Namespace) -> int:
    import json
    import sys

    from medreg.errors import InputError

    if args.pairs < 1 or args.threads < 1 or args.repeats < 1:
        raise InputError(None, f"expected --pairs, --threads and --repeats >= 1, found {args.pairs}, {args.threads}, "
                               f"{args.repeats}")
    from medreg.baselines import get_baseline
    from medreg.cli.bench_args import baseline_specs

    specs = baseline_specs(args.baselines)

    for s in specs:  # fail before any work on an unknown preset
        get_baseline(s if s.startswith("ants") else f"ants:{s}")
    from medreg.evaluation.bench_register import bench_register, format_report

    report = bench_register(model=args.model, data=args.data, pairs=args.pairs, case=args.case, threads=args.threads,
                            baselines=specs, device=args.device, repeats=args.repeats,
                            global_mode=args.global_mode,
                            log=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 0
