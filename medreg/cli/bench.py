"""``medreg bench``: built-in benchmarks, one sub-command each (``medreg bench train``, ...).

To add a benchmark, write ``add_<name>(subparsers)`` registering a sub-parser whose
``run`` default handles it, and list it in ``BENCHMARKS``.
"""

from __future__ import annotations

import argparse


def add_train(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="training steps per second, peak memory and the machine",
        description="Time optimiser steps of the model, loss and optimiser a config describes, on a synthetic pair "
                    "of the network input shape (no data needed).",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", metavar="FILE", help="training config YAML")
    src.add_argument("--dataset", help="use the dataset's preset config (medreg/configs/<dataset>.yaml)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides", help="config override")
    p.add_argument("--shape", metavar="N", type=int, nargs=3, default=None,
                   help="network input shape (default: a 160x192x160 mm brain at the config's spacing)")
    p.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--profile", action="store_true", help="also print the top operators (torch.profiler)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(run=run_train)


def run_train(args: argparse.Namespace) -> int:
    import json

    from medreg.config import load_config, preset_path
    from medreg.errors import InputError
    from medreg.training.benchmark import bench_train, format_report

    if args.steps < 1 or args.warmup < 0:
        raise InputError(None, f"expected --steps >= 1 and --warmup >= 0, found {args.steps} and {args.warmup}")
    config = load_config(args.config or preset_path(args.dataset), args.overrides)
    try:
        result = bench_train(config, shape=args.shape, steps=args.steps, warmup=args.warmup, device=args.device,
                             profile=args.profile)
    except ValueError as err:
        raise InputError(None, str(err)) from None
    print(json.dumps(result, indent=1) if args.json else format_report(result))
    return 0


from medreg.cli.bench_capture import add_capture  # noqa: E402
from medreg.cli.bench_io import add_io  # noqa: E402
from medreg.cli.bench_register import add_register  # noqa: E402

BENCHMARKS = {"train": add_train, "register": add_register, "capture": add_capture, "io": add_io}


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("bench", help="built-in benchmarks (train, ...)",
                                   description="Built-in benchmarks: " + ", ".join(BENCHMARKS))
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for add in BENCHMARKS.values():
        add(sub)
    return parser
