"""The ``medreg`` command: thin subcommands that parse, load a config and call one library function.

Each subcommand lives in ``medreg/cli/<name>.py`` and defines ``add_parser(subparsers)``
and ``run(args) -> int``. Heavy libraries are imported inside ``run`` only, so
``medreg --help`` is instant. Only commands that work are listed in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> module under medreg.cli; add a command here when it works.
COMMANDS: dict[str, str] = {
    "preprocess": "preprocess",
    "train": "train",
    "bench": "bench",
    "register": "register",
    "apply": "apply",
    "evaluate": "evaluate",
    "report": "report",
    "probe": "probe",
}

# commands that run torch on large volumes: they keep freed memory in the heap (medreg.memory)
HEAVY_COMMANDS = frozenset({"train", "bench", "register", "apply", "evaluate", "preprocess", "probe"})


def build_parser() -> argparse.ArgumentParser:
    from medreg import __version__

    parser = argparse.ArgumentParser(
        prog="medreg",
        description="Deep medical image registration: preprocess, train, register, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"medreg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        importlib.import_module(f"medreg.cli.{module}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from medreg.errors import MedregError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    if args.command in HEAVY_COMMANDS:
        from medreg.memory import keep_freed_memory

        keep_freed_memory()
    try:
        return int(args.run(args) or 0)
    except MedregError as err:
        print(f"medreg {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"medreg {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
