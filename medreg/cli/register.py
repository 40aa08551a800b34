"""``medreg register``: register one pair (or a batch) with a trained model; write ITK/ANTs-readable outputs."""

from __future__ import annotations

import argparse


def io_upsample_arg(value: str):
    """argparse type of ``--io-upsample`` (register and evaluate): an integer K >= 1 or ``data``."""
    from medreg.register import parse_io_upsample

    try:
        return parse_io_upsample(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "register",
        help="register a fixed/moving pair (or a batch) with a trained model",
        description=(
            "Register MOVING to FIXED with a trained model (any orientation, spacing and size: the pair goes through "
            "the model's preprocessing and the result is mapped back to the original images). Writes into DIR: "
            "warped.nii.gz, field.nii.gz (LPS mm displacement, ITK/ANTs), transform.h5 (ITK), jacobian_det.nii.gz, "
            "landmarks.csv/.txt (with --landmarks) and run.json. Batch mode (--pairs or --manifest) loads the "
            "model once and writes DIR/<id>/ per pair (finished pairs are skipped; exit code 1 if some failed)."
        ),
    )
    parser.add_argument("--model", required=True, metavar="RUN_OR_CHECKPOINT",
                        help="run folder, checkpoint folder or model.safetensors")
    src = parser.add_argument_group("inputs (one of: --fixed/--moving, --pairs, --manifest)")
    src.add_argument("--fixed", nargs="+", metavar="F.nii.gz", help="fixed image(s), one per model channel in order")
    src.add_argument("--moving", nargs="+", metavar="M.nii.gz", help="moving image(s), one per model channel in order")
    src.add_argument("--landmarks", metavar="FILE", help="fixed-space landmarks (BraTS-Reg CSV, DIR-Lab .txt, Learn2Reg CSV)")
    src.add_argument("--pairs", metavar="CSV", help="batch: CSV with columns fixed,moving[,landmarks,id]")
    src.add_argument("--manifest", metavar="MANIFEST", help="batch: OUT/manifest.json of `medreg preprocess`")
    src.add_argument("--split", default=None, help="with --manifest: only this split (e.g. test)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (new or empty unless --overwrite)")
    parser.add_argument("--io-steps", type=int, default=0, metavar="N",
                        help="instance optimisation: N Adam steps on this pair (default 0)")
    parser.add_argument("--io-mode", choices=("field", "network"), default="field",
                        help="field: refine the displacement itself (default, fast); network: fine-tune a copy of the model")
    parser.add_argument("--io-lr", type=float, default=None, metavar="LR",
                        help="instance-optimisation learning rate (default: 0.3/0.2 voxels for field, train.lr for network)")
    parser.add_argument("--io-upsample", type=io_upsample_arg, default=1, metavar="K|data",
                        help="field IO: the last third of the steps on a grid K times finer than the network's "
                             "(default 1: none; each such step costs about K^3 times more), or 'data': the last "
                             "sixth of the steps on the preprocessed data's own grid")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads for torch (default: torch's)")
    parser.add_argument("--overwrite", action="store_true", help="replace outputs in a non-empty DIR (or redo finished pairs)")
    parser.add_argument("--no-progress", action="store_true", help="batch mode: no progress bar")
    parser.set_defaults(run=run)
    return parser


def _mode(args: argparse.Namespace) -> str:
    from medreg.errors import InputError

    single = args.fixed is not None or args.moving is not None
    modes = [m for m, on in (("single", single), ("pairs", args.pairs), ("manifest", args.manifest)) if on]
    if len(modes) != 1:
        raise InputError(None, "expected exactly one input: --fixed and --moving, --pairs CSV or --manifest JSON, "
                               f"found {', '.join(modes) or 'none'}")
    if single and (args.fixed is None or args.moving is None):
        raise InputError(None, "expected both --fixed and --moving, found only one")
    if modes[0] != "single" and args.landmarks:
        raise InputError(None, "--landmarks goes with --fixed/--moving; in batch mode give a landmarks column")
    if args.split is not None and modes[0] != "manifest":
        raise InputError(None, "--split goes with --manifest")
    return modes[0]


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from medreg.errors import InputError
    from medreg.io.nifti import check_input_file

    mode = _mode(args)
    if args.io_steps < 0:
        raise InputError(None, f"expected --io-steps >= 0, found {args.io_steps}")
    if args.threads is not None:
        if args.threads < 1:
            raise InputError(None, f"expected --threads >= 1, found {args.threads}")
        torch.set_num_threads(args.threads)

    from medreg.io.checkpoint import load_data_preprocess, load_model, resolve_checkpoint
    from medreg.register import (check_out_dir, for_preprocessed_files, manifest_config, manifest_jobs, read_pairs_csv,
                                 register_batch, register_pair, resolve_device, write_outputs)

    device = resolve_device(args.device)
    if mode == "single":
        check_out_dir(args.out, args.overwrite)
        for p in [*args.fixed, *args.moving]:
            check_input_file(p, "a NIfTI image")
        if args.landmarks:
            check_input_file(args.landmarks, "a landmark file")
    model_file = resolve_checkpoint(args.model)
    model, config = load_model(model_file, device)
    data_preprocess = load_data_preprocess(model_file)
    info = {"model": str(Path(model_file).resolve())}
    if mode == "single":
        result = register_pair(model, config, [Path(p) for p in args.fixed], [Path(p) for p in args.moving],
                               io_steps=args.io_steps, device=device, landmarks=args.landmarks, io_lr=args.io_lr,
                               io_mode=args.io_mode, data_preprocess=data_preprocess, io_upsample=args.io_upsample)
        files = write_outputs(result, args.out, overwrite=args.overwrite, info={
            **info, "fixed": [str(Path(p).resolve()) for p in args.fixed],
            "moving": [str(Path(p).resolve()) for p in args.moving],
            "landmarks": None if args.landmarks is None else str(Path(args.landmarks).resolve())})
        print(f"registered in {result.seconds:.2f} s on {result.extra['device']} ({result.threads} threads), "
              f"peak memory {result.peak_rss_mb:.0f} MB -> {args.out} ({', '.join(files)})")
        return 0
    channels = config.channels
    if mode == "pairs":
        jobs = read_pairs_csv(args.pairs, channels)
    else:
        jobs = manifest_jobs(args.manifest, channels, args.split)
        # the manifest's files are normalised already: keep their intensities (same normalisation as the model's)
        data_preprocess = for_preprocessed_files(data_preprocess or config.preprocess, manifest_config(args.manifest),
                                                 Path(args.manifest))
    if not jobs:
        raise InputError(Path(args.pairs or args.manifest), "expected at least one pair, found none")
    summary = register_batch(model, config, jobs, args.out, io_steps=args.io_steps, device=device, io_lr=args.io_lr,
                             io_mode=args.io_mode, data_preprocess=data_preprocess, io_upsample=args.io_upsample,
                             overwrite=args.overwrite, info=info, progress=not args.no_progress)
    print(summary.text())
    return 0 if summary.ok else 1
