"""The ``nnx`` command."""

from __future__ import annotations

import argparse
import platform
import sys

import nnx
from nnx import backend, parity_cli


def _info(args: argparse.Namespace) -> int:
    print(f"nnx {nnx.__version__} (Python {platform.python_version()}, {platform.machine()})")
    print(f"selected backend: {backend.current()}")
    print("backends:")
    for name, reason in backend.available(refresh=True).items():
        record = backend.BACKENDS[name]
        state = "available" if reason is None else f"unavailable: {reason}"
        print(f"  {name:<17} {state}")
        print(f"  {'':<17} ({record.description})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nnx", description="nnx: neural networks on the array API")
    parser.add_argument("--version", action="version", version=f"nnx {nnx.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p_info = sub.add_parser("info", help="version, and which backends can run here (and why not)")
    p_info.set_defaults(func=_info)
    parity_cli.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except nnx.NnxError as exc:
        print(f"nnx: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
