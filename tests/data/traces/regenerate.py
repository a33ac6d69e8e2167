"""Record the traces of every example model (nnx.testing.examples) on numpy into this folder.

    python tests/data/traces/regenerate.py [EXAMPLE ...]

Run it after adding an example model, or after a change that is meant to move
the numbers (and say so in the commit); tests/test_trace.py replays these
traces on numpy (bit for bit) and on array_api_strict (within tolerance).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))  # this checkout's nnx, whatever else is installed

from nnx.testing.trace import EXAMPLE_BATCH, EXAMPLE_DTYPE, EXAMPLE_STEPS, regenerate  # noqa: E402

if __name__ == "__main__":
    sizes = regenerate(HERE, sys.argv[1:] or None)
    for size in sizes:
        print(f"wrote {size}")
    print(f"{len(sizes)} trace(s) ({EXAMPLE_DTYPE}, {EXAMPLE_BATCH} samples, {EXAMPLE_STEPS} steps), "
          f"{sum(s.total for s in sizes) / 1024:.1f} KiB in all")
