"""What the tutorial examples share: the --backend flag and printing like NumPy."""

from __future__ import annotations

import argparse

import nnx


def parser(description: str) -> argparse.ArgumentParser:
    """A command line with ``--backend`` (default: ``$NNX_BACKEND`` or numpy); add an example's own flags."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--backend", default=None, help="numpy, array_api_strict or cupy")
    return p


def parse(p: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse the command line and select its backend (a backend that cannot run is a usage error)."""
    args = p.parse_args()
    try:
        args.backend = args.backend or nnx.current()
        nnx.use(args.backend)
    except nnx.errors.NnxError as exc:
        p.error(str(exc))
    return args


def parse_backend(description: str) -> str:
    """Parse ``--backend`` alone, select it and return its name."""
    return parse(parser(description)).backend


def show(x: object) -> str:
    """An array printed the way the tutorials' NumPy printed it (8 significant digits)."""
    return str(nnx.to_host(x))
