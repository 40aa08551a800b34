"""``medreg train``: train a registration model on a preprocessed dataset (torchrun-ready)."""

from __future__ import annotations

import argparse

from medreg.datasets.names import DATASETS as DATASET_CHOICES


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="train a registration model on a preprocessed dataset",
        description=(
            "Train the multistep UNet described by a config (default: medreg/configs/<dataset>.yaml) on the pairs of "
            "PREPROCESSED_DIR/manifest.json. Writes RUN/config.yaml, RUN/metrics.csv, RUN/tensorboard/ and "
            "safetensors checkpoints in RUN/checkpoints/{last,best}/. Several GPUs or nodes: "
            "torchrun --nproc_per_node N -m medreg train ..."
        ),
    )
    parser.add_argument("--dataset", required=True, choices=DATASET_CHOICES, help="dataset the data was preprocessed as")
    parser.add_argument("--data", metavar="PREPROCESSED_DIR", required=True,
                        help="output folder of `medreg preprocess` (holds manifest.json)")
    parser.add_argument("--out", metavar="RUN", required=True, help="run folder (new or empty; with --resume an earlier run)")
    parser.add_argument("--config", metavar="FILE", default=None, help="training config YAML (default: the dataset's preset)")
    parser.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                        help="override a config key, e.g. --set train.lr=1e-4 (repeatable)")
    parser.add_argument("--max-steps", metavar="N", type=int, default=None,
                        help="stop after step N (default: train.steps; the schedule still spans train.steps)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: CUDA if present")
    parser.add_argument("--resume", action="store_true", help="continue RUN from RUN/checkpoints/last (exactly)")
    parser.add_argument("--init", metavar="MODEL", default=None,
                        help="start from this model's weights (a run, checkpoint folder or .safetensors with the "
                             "same model section), e.g. to fine-tune a shipped model; the optimiser starts fresh")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)
    return parser


def load_run_config(args: argparse.Namespace):
    """The config for this invocation (None on a plain --resume: the run's saved config is used)."""
    from pathlib import Path

    from medreg.config import load_config, preset_path
    from medreg.errors import ConfigError

    if args.resume:
        if args.config:
            raise ConfigError("--config cannot be combined with --resume: a resumed run keeps RUN/config.yaml "
                              "(change harmless keys with --set, e.g. --set train.steps=5000)")
        if not args.overrides:
            return None
        return load_config(Path(args.out) / "config.yaml", args.overrides)
    path = Path(args.config) if args.config else preset_path(args.dataset)
    config = load_config(path, args.overrides)
    if config.data.dataset != args.dataset:
        raise ConfigError(f"{path}: key 'data.dataset' is {config.data.dataset!r} but --dataset is {args.dataset!r}; "
                          f"use the matching config or --set data.dataset={args.dataset}")
    return config


def run(args: argparse.Namespace) -> int:
    from medreg.errors import InputError
    from medreg.train import train

    if args.max_steps is not None and args.max_steps < 1:
        raise InputError(None, f"expected --max-steps >= 1, found {args.max_steps}")
    config = load_run_config(args)
    if args.init is not None and args.resume:
        raise InputError(args.init, "--init starts a new run from a model's weights; --resume continues RUN: "
                                    "use one of them")
    result = train(config, args.data, args.out, device=args.device, resume=args.resume, max_steps=args.max_steps,
                   progress=not args.no_progress, init=args.init)
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        parts = [f"trained to step {result.step} in {result.seconds:.1f} s ({result.steps_per_s:.2f} steps/s at the end)"]
        if result.last_train:
            parts.append(f"train loss {result.last_train['total']:.4f}")
        if result.last_val.get("tre_mm") is not None:
            parts.append(f"val TRE {result.last_val['tre_mm']:.2f} mm (no registration "
                         f"{result.last_val['tre_none_mm']:.2f} mm)")
        print("; ".join(parts))
        print(f"checkpoint: {result.out / 'checkpoints' / 'last' / 'model.safetensors'}")
        if result.best is not None:
            print(f"best: {result.out / 'checkpoints' / 'best' / 'model.safetensors'} (step {result.best['step']})")
    return 0
