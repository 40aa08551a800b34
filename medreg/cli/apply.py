"""``medreg apply``: apply a saved transform (field.nii.gz or transform.h5) to an image or a landmark file."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "apply",
        help="apply a saved transform to an image or to landmarks",
        description=(
            "Apply a transform from `medreg register` (DIR/field.nii.gz or DIR/transform.h5; any ITK/ANTs "
            "displacement field works too). --image: a moving-space image resampled onto the fixed grid (or "
            "--reference); use --interp nearest for label maps. --points: fixed-space landmarks mapped to moving "
            "space, written in the same format (DIR-Lab .txt and Learn2Reg .csv need --moving-image)."
        ),
    )
    parser.add_argument("--transform", required=True, metavar="FILE", help="field.nii.gz or transform.h5")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--image", metavar="X.nii.gz", help="moving-space image to warp")
    what.add_argument("--points", metavar="IN", help="fixed-space landmark file to map")
    parser.add_argument("--out", required=True, metavar="OUT", help="output image (.nii.gz) or landmark file")
    parser.add_argument("--interp", choices=("linear", "nearest"), default="linear",
                        help="image interpolation (nearest for label maps; keeps the data type)")
    parser.add_argument("--reference", metavar="REF.nii.gz", help="output grid and header (default: the transform's grid)")
    parser.add_argument("--fixed-image", metavar="F.nii.gz", help="--points: image whose affine reads voxel-index formats "
                                                                 "(default: the transform's grid)")
    parser.add_argument("--moving-image", metavar="M.nii.gz", help="--points: image whose affine writes voxel-index formats")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from medreg.inference.apply import apply_to_image, apply_to_points
    from medreg.errors import InputError

    if args.image:
        if args.fixed_image or args.moving_image:
            raise InputError(None, "--fixed-image/--moving-image go with --points; with --image use --reference")
        out = apply_to_image(args.transform, args.image, args.out, interp=args.interp, reference=args.reference,
                             overwrite=args.overwrite)
    else:
        if args.reference or args.interp != "linear":
            raise InputError(None, "--reference/--interp go with --image")
        out = apply_to_points(args.transform, args.points, args.out, fixed_image=args.fixed_image,
                              moving_image=args.moving_image, overwrite=args.overwrite)
    print(f"wrote {out}")
    return 0
