"""What the tutorial examples share: the --backend flag and printing like NumPy."""

from __future__ import annotations

import argparse

import nnx


def parse_backend(description: str) -> str:
    """Parse ``--backend`` (default: ``$NNX_BACKEND`` or numpy), select it and return its name."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--backend", default=None, help="numpy, array_api_strict or cupy")
    args = parser.parse_args()
    try:
        name = args.backend or nnx.current()
        nnx.use(name)
    except nnx.errors.NnxError as exc:
        parser.error(str(exc))
    return name


def show(x: object) -> str:
    """An array printed the way the tutorials' NumPy printed it (8 significant digits)."""
    return str(nnx.to_host(x))
