"""The instance-optimisation and global-stage flags of ``register`` and ``evaluate``, mapped onto their typed objects here."""

from __future__ import annotations

import argparse


def io_upsample_arg(value: str):
    """argparse type of ``--io-upsample``: an integer K >= 1 or ``data``."""
    from medreg.inference.io_config import parse_io_upsample

    try:
        return parse_io_upsample(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_io_arguments(parser: argparse.ArgumentParser, *, steps_help: str | None = None) -> None:
    from medreg.inference.io_config import NAMED, TABLES

    sizes = "; ".join(f"{t}: " + ", ".join(f"{k} {'/'.join(map(str, v))}" for k, v in table.items())
                      for t, table in TABLES.items())
    parser.add_argument("--io-preset", choices=NAMED, default=None,
                        help="instance optimisation with a named schedule (steps at half the network resolution / "
                             "at the network's / on the preprocessed data's own grid) from the model's table ("
                             + sizes + "); --io-steps N changes the number of steps")
    parser.add_argument("--io-steps", type=int, default=0, metavar="N",
                        help=steps_help or "instance optimisation: N Adam steps on this pair (default 0)")
    parser.add_argument("--io-diffeomorphic", action=argparse.BooleanOptionalAction, default=None,
                        help="refine by composing a diffeomorphism (a smoothed stationary velocity, scaling and "
                             "squaring) with the network's map instead of adding a displacement (default: on for "
                             "--io-preset, off for --io-steps alone)")
    parser.add_argument("--io-mode", choices=("field", "network"), default="field",
                        help="field: refine the displacement itself (default, fast); network: fine-tune a copy of the model")
    parser.add_argument("--io-lr", type=float, default=None, metavar="LR",
                        help="instance-optimisation learning rate for every stage (default: the preset's rates, "
                             "voxels a step, for field; train.lr for network)")
    parser.add_argument("--io-upsample", type=io_upsample_arg, default=1, metavar="K|data",
                        help="field IO preset: 1 (default: two thirds of the steps at half the network resolution, "
                             "the rest at full), K > 1 (the last third on a grid K times finer; each such step costs "
                             "about K^3 times more), or 'data' (the last sixth on the preprocessed data's own grid)")


def add_global_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--global", dest="global_mode", choices=("none", "rigid", "affine"), default=None,
                        help="a global stage before the network: centres of mass, then a rigid (or rigid + affine) "
                             "pyramid on the pair (default: the model's, global_stage.mode of its config; none for "
                             "models trained without it)")
    parser.add_argument("--global-similarity", dest="global_similarity", choices=("ncc", "mi"), default=None,
                        help="the global stage's similarity: ncc (one contrast) or mi (mutual information, for fixed "
                             "and moving images of different contrasts; with --global; default ncc)")


def global_from_args(args: argparse.Namespace):
    """``--global`` as a :class:`medreg.inference.global_stage.GlobalConfig` (None when not given: the model's)."""
    from medreg.errors import ConfigError
    from medreg.inference.global_stage import GlobalConfig

    similarity = getattr(args, "global_similarity", None)
    if args.global_mode is None:
        if similarity is not None:
            raise ConfigError("--global-similarity sets the global stage's similarity; give the stage too "
                              "(--global rigid or --global affine)")
        return None
    return GlobalConfig(args.global_mode, similarity=similarity or "ncc")


def io_from_args(args: argparse.Namespace):
    """The flags as an :class:`medreg.inference.io_config.IOConfig` (InputError when they clash)."""
    from medreg.errors import InputError
    from medreg.inference.io_config import io_from_flags

    try:
        return io_from_flags(args.io_steps, args.io_mode, args.io_lr, args.io_upsample,
                             preset=getattr(args, "io_preset", None), diffeomorphic=getattr(args, "io_diffeomorphic", False))
    except ValueError as exc:
        raise InputError(None, str(exc)) from None
