"""``medreg evaluate``: every method on the same pairs, metrics, summary and report (see ``medreg.evaluate``).

Forms::

    medreg evaluate --dataset NAME --data PREPROCESSED_DIR [--model RUN] [--baseline SPEC]... --out DIR [...]
    medreg evaluate merge DIR... --out DIR      combine shard folders into one report
    medreg evaluate report DIR                  rebuild summary.json and the report from DIR's rows
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import textwrap

from medreg.cli.io_flags import add_global_argument, add_io_arguments, global_from_args, io_from_args
from medreg.datasets.names import DATASETS as DATASET_CHOICES


def _default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate medreg and baselines on a preprocessed split (TRE, MEE, folding, Dice, time) and write a report",
        description=textwrap.fill(
            "Register every pair of a preprocessed split (medreg preprocess) with a trained model and/or baselines, "
            "all on the same files and threads, and write DIR/metrics.csv, summary.json, report.md and a self-contained "
            "report.html. Rerunning the same command resumes (finished pairs are skipped). "
            "Also: 'medreg evaluate merge DIR... --out DIR' combines shard folders; 'medreg evaluate report DIR' "
            "rebuilds the report. Exit code 1 if some pairs failed (they are recorded with their reason)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  medreg evaluate --dataset demo-brain --data prep/demo-brain --model runs/demo-brain --baseline ants --out eval\n"
            "  medreg evaluate --dataset brats --data prep/brats --model RUN --baseline ants:syn-cc --baseline none \\\n"
            "      --split test --threads 8 --shard slurm --out eval/shard-$SLURM_ARRAY_TASK_ID\n"
            "  medreg evaluate merge eval/shard-* --out eval/all\n"
        ),
    )
    parser.add_argument("action", nargs="*", metavar="merge DIR... | report DIR",
                        help="optional: 'merge' followed by evaluation folders, or 'report' followed by one folder")
    parser.add_argument("--dataset", choices=DATASET_CHOICES, help="dataset of the preprocessed folder")
    parser.add_argument("--data", metavar="PREPROCESSED_DIR", help="output folder of medreg preprocess (holds manifest.json)")
    parser.add_argument("--model", metavar="RUN", default=None,
                        help="trained medreg model: run folder, checkpoint folder or model.safetensors")
    parser.add_argument("--baseline", metavar="SPEC", action="append", default=[],
                        help="baseline to compare (repeatable): none, ants (= ants:syn-quick), ants:affine, ants:syn-quick, "
                             "ants:syn, ants:syn-cc, elastix, fireants. The first one is the reference for time and TRE ratios")
    add_global_argument(parser)
    add_io_arguments(parser, steps_help="also evaluate medreg with N steps of instance optimisation per pair "
                                        "(default 0: network only); named medreg+ioN, medreg+ioNxK, medreg+ioN-data")
    parser.add_argument("--split", default="test", help="manifest split to evaluate, or 'all' (default: test)")
    parser.add_argument("--threads", type=int, default=None, metavar="T",
                        help="CPU threads for every method (default: all usable cores); recorded in the report")
    parser.add_argument("--device", default="cpu", help="device of the medreg model: cpu, cuda or auto (default cpu)")
    parser.add_argument("--channel", default=None,
                        help="image classical baselines register (default: the manifest's first channel); medreg uses all")
    parser.add_argument("--contrasts", default=None, metavar="A,B,...",
                        help="evaluate every method on each of these channels in turn (rows NAME@contrast; "
                             "for single-channel any-contrast models, e.g. t1,t2,flair)")
    parser.add_argument("--out", metavar="DIR", help="output folder (new, or an earlier run of the same evaluation to resume)")
    parser.add_argument("--shard", default=None, metavar="I/N",
                        help="evaluate pairs I, I+N, I+2N, ... of the split (I 0-based); 'slurm' reads SLURM_ARRAY_TASK_ID "
                             "and SLURM_ARRAY_TASK_COUNT (sbatch --array=0-(N-1)). Use one --out per shard, then merge")
    parser.add_argument("--submission", action="store_true",
                        help="also write BraTS-Reg submission files: DIR/submission/<method>/<case>.csv and <case>_detj.nii.gz")
    parser.add_argument("--seed", type=int, default=0, help="random seed given to every method (default 0)")
    parser.add_argument("--no-fields", action="store_true", help="do not write pairs/<pair>/<method>/field.nii.gz")
    parser.add_argument("--max-qc-pairs", type=int, default=20, metavar="N", help="QC strips of the first N pairs in the report")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(run=run)
    return parser


def _fail(message: str) -> int:
    print(f"medreg evaluate: error: {message}", file=sys.stderr)
    return 2


def _command(args: argparse.Namespace) -> str:
    """The evaluation command as it could be typed again (recorded in evaluation.json and the report)."""
    parts = ["medreg", "evaluate", "--dataset", args.dataset, "--data", args.data]
    if args.model:
        parts += ["--model", args.model]
    for spec in args.baseline:
        parts += ["--baseline", spec]
    if args.io_preset:
        parts += ["--io-preset", args.io_preset]
    if args.io_diffeomorphic is not None:
        parts.append("--io-diffeomorphic" if args.io_diffeomorphic else "--no-io-diffeomorphic")
    if args.io_steps:
        parts += ["--io-steps", str(args.io_steps)]
        if args.io_mode != "field":
            parts += ["--io-mode", args.io_mode]
        if args.io_upsample != 1:
            parts += ["--io-upsample", str(args.io_upsample)]
        if args.io_lr is not None:
            parts += ["--io-lr", str(args.io_lr)]
    if args.global_mode is not None:
        parts += ["--global", args.global_mode]
    if getattr(args, "global_similarity", None) is not None:
        parts += ["--global-similarity", args.global_similarity]
    parts += ["--split", args.split]
    if args.threads:
        parts += ["--threads", str(args.threads)]
    if args.device != "cpu":
        parts += ["--device", args.device]
    if args.channel:
        parts += ["--channel", args.channel]
    if args.contrasts:
        parts += ["--contrasts", args.contrasts]
    if args.shard:
        parts += ["--shard", args.shard]
    if args.submission:
        parts.append("--submission")
    if args.seed:
        parts += ["--seed", str(args.seed)]
    if args.no_fields:
        parts.append("--no-fields")
    parts += ["--out", args.out]
    return " ".join(shlex.quote(str(p)) for p in parts)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from medreg.evaluate import EvaluationOptions, evaluate, merge_evaluations, rebuild_report
    from medreg.evaluation.shard import parse_shard

    if args.action:
        verb, rest = args.action[0], args.action[1:]
        if verb == "merge":
            if not rest or not args.out:
                return _fail("usage: medreg evaluate merge DIR... --out DIR")
            result = merge_evaluations([Path(d) for d in rest], Path(args.out), max_qc_pairs=args.max_qc_pairs)
        elif verb == "report":
            if len(rest) != 1:
                return _fail("usage: medreg evaluate report DIR")
            result = rebuild_report(Path(rest[0]), max_qc_pairs=args.max_qc_pairs)
        else:
            return _fail(f"expected 'merge' or 'report' (or no positional argument), found {verb!r}")
        print(result.text())
        return 0
    missing = [flag for flag, value in (("--dataset", args.dataset), ("--data", args.data), ("--out", args.out)) if not value]
    if missing:
        return _fail(f"the following arguments are required: {', '.join(missing)}")
    if args.model is None and not args.baseline:
        return _fail("expected --model RUN and/or at least one --baseline SPEC, found neither")
    opts = EvaluationOptions(
        dataset=args.dataset, data=Path(args.data), out=Path(args.out),
        model=None if args.model is None else Path(args.model), baselines=list(args.baseline), io=io_from_args(args), global_stage=global_from_args(args),
        split=args.split, threads=args.threads or _default_threads(), shard=parse_shard(args.shard),
        submission=args.submission, device=args.device, channel=args.channel, seed=args.seed,
        contrasts=[c for c in (args.contrasts or "").split(",") if c],
        save_fields=not args.no_fields, progress=not args.no_progress, max_qc_pairs=args.max_qc_pairs,
        command=_command(args),
    )
    result = evaluate(opts)
    print(result.text())
    return 0 if result.ok else 1
