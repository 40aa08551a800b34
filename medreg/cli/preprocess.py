"""``medreg preprocess``: a dataset folder -> preprocessed volumes + ``OUT/manifest.json``."""

from __future__ import annotations

import argparse

from medreg.datasets.names import DATASETS as DATASET_CHOICES


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "preprocess",
        help="preprocess a registration dataset (MONAI pipeline) and write OUT/manifest.json",
        description=(
            "Reorient, resample, normalise, crop and pad every fixed/moving pair of a dataset, "
            "keeping the map back to the original world space; resumable, parallel, one summary at the end. "
            "Exit code 1 if some cases failed."
        ),
    )
    parser.add_argument("--dataset", required=True, choices=DATASET_CHOICES, help="dataset layout")
    parser.add_argument("--data", metavar="DIR", default=None,
                        help="dataset folder (optional for demo-*: generated and cached when omitted)")
    parser.add_argument("--out", metavar="OUT", required=True, help="output folder (empty, or an earlier output to resume)")
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="preprocessing YAML (default: the dataset's built-in config, see medreg/configs/preprocess/)")
    parser.add_argument("--workers", metavar="N", type=int, default=1, help="cases processed in parallel (default 1)")
    parser.add_argument("--overwrite", action="store_true", help="redo cases that are already finished (other data in OUT is never touched)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from medreg.datasets.preprocess import preprocess_dataset
    from medreg.transforms.config import load_preprocess_config

    config = load_preprocess_config(args.config) if args.config else None
    summary = preprocess_dataset(
        args.dataset, args.data, args.out, config=config, workers=args.workers,
        overwrite=args.overwrite, progress=not args.no_progress,
    )
    print(summary.text())
    return 0 if summary.ok else 1
