"""``medreg register``: register one pair (or a batch) with a trained model; write ITK/ANTs-readable outputs."""

from __future__ import annotations

import argparse

from medreg.cli.io_flags import add_global_argument, add_io_arguments, global_from_args, io_from_args


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
    add_io_arguments(parser)
    add_global_argument(parser)
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
    io = io_from_args(args)
    global_stage = global_from_args(args)
    if args.threads is not None:
        if args.threads < 1:
            raise InputError(None, f"expected --threads >= 1, found {args.threads}")
        torch.set_num_threads(args.threads)

    from medreg.inference.batch import manifest_jobs, read_pairs_csv, register_batch
    from medreg.datasets.manifest import read_manifest
    from medreg.inference.bundle import load_bundle
    from medreg.inference.outputs import check_out_dir, write_outputs
    from medreg.inference.register import register_pair, resolve_device

    device = resolve_device(args.device)
    if mode == "single":
        check_out_dir(args.out, args.overwrite)
        for p in [*args.fixed, *args.moving]:
            check_input_file(p, "a NIfTI image")
        if args.landmarks:
            check_input_file(args.landmarks, "a landmark file")
    bundle = load_bundle(args.model, device)
    model, config, pipeline = bundle.model, bundle.config, bundle.pipeline
    info = {"model": str(bundle.path.resolve())}
    if mode == "single":
        result = register_pair(model, config, [Path(p) for p in args.fixed], [Path(p) for p in args.moving],
                               io=io, device=device, landmarks=args.landmarks, pipeline=pipeline,
                               global_stage=global_stage)
        files = write_outputs(result, args.out, overwrite=args.overwrite, info={
            **info, "fixed": [str(Path(p).resolve()) for p in args.fixed],
            "moving": [str(Path(p).resolve()) for p in args.moving],
            "landmarks": None if args.landmarks is None else str(Path(args.landmarks).resolve())})
        if result.global_matrix is not None:
            print(result.extra["global"]["message"])
        print(f"registered in {result.seconds:.2f} s on {result.extra['device']} ({result.threads} threads), "
              f"peak memory {result.peak_rss_mb:.0f} MB -> {args.out} ({', '.join(files)})")
        return 0
    channels = config.channels
    if mode == "pairs":
        jobs = read_pairs_csv(args.pairs, channels)
    else:
        jobs = manifest_jobs(args.manifest, channels, args.split)
        # the manifest's files are normalised already: keep their intensities (same normalisation as the model's)
        pipeline = bundle.pipeline_for(read_manifest(Path(args.manifest)), Path(args.manifest))
    if not jobs:
        raise InputError(Path(args.pairs or args.manifest), "expected at least one pair, found none")
    summary = register_batch(model, config, jobs, args.out, io=io, device=device, pipeline=pipeline, global_stage=global_stage,
                             overwrite=args.overwrite, info=info, progress=not args.no_progress)
    print(summary.text())
    return 0 if summary.ok else 1
