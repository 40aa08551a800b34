"""``medreg probe``: per-step curves of a trained model on its validation pairs (see medreg.evaluation.probe)."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "probe", help="measure what each step of a trained model does on its validation pairs",
        description="For each step of the model (and of the model unrolled to --unroll times its steps) on its own "
                    "validation pairs: the training loss and its terms, the landmark error, folding, the update's "
                    "size, its cosine with the negative gradient of the loss (1: a gradient step) and the loss "
                    "change. Writes OUT/steps.csv (per pair), OUT/summary.csv (mean and sd over pairs), "
                    "OUT/steps.png and OUT/probe.json. The seed's MNIST model: pipelines/mnist_mesaoptimizer.py.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  medreg probe --model medreg/weights/demo-brain.safetensors --data runs/demo/preprocessed \\\n"
               "      --ood swap-channels --out runs/probe-brain",
    )
    parser.add_argument("--model", required=True, help="a run folder, checkpoint folder or .safetensors file")
    parser.add_argument("--data", required=True, help="the medreg preprocess folder (or manifest.json) the model's "
                                                       "validation pairs come from")
    parser.add_argument("--out", required=True, help="output folder (new or empty)")
    parser.add_argument("--unroll", type=int, default=4, metavar="R",
                        help="apply the whole model R times in a row (default 4: 4x its steps)")
    parser.add_argument("--ood", action="append", default=[], choices=["swap-channels", "invert"],
                        help="also probe on inputs the model never saw (repeatable): channels in reverse order, or "
                             "inverted intensities")
    parser.add_argument("--pairs", type=int, default=None, metavar="N", help="only the first N validation pairs")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    parser.add_argument("--threads", type=int, default=None, metavar="T", help="CPU threads (default: torch's)")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from medreg.evaluation.probe import format_summary, run_probe

    result = run_probe(args.model, args.data, args.out, unroll=args.unroll, ood=args.ood, pairs=args.pairs,
                       device=args.device, threads=args.threads)
    info = result["info"]
    print(format_summary(result["summary"], info["model_steps"]))
    print(f"{len(info['pairs'])} validation pairs ({', '.join(info['pairs'])}), {info['model_steps']} steps x "
          f"{info['unroll']}, {info['seconds']:.1f} s; wrote {args.out}/steps.csv, summary.csv, steps.png, probe.json")
    return 0
