"""Print the worst gradcheck error of every layer and loss, per backend and mode (a Markdown table).

    python benchmarks/gradcheck_table.py

The cases are the test suite's (``tests/gradcheck_cases.py``). Each cell is the
worst element's error ``|backward - numeric|`` as a fraction of its tolerance
``atol + rtol * |numeric|`` (gradcheck's defaults: float64, eps 1e-6, rtol 1e-6,
atol 1e-8); the tests require at most 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import nnx  # noqa: E402
from gradcheck_cases import LAYERS, LOSSES, loss_prediction  # noqa: E402
from nnx.testing import gradcheck  # noqa: E402


def main() -> None:
    backends = [b for b, reason in nnx.available().items() if reason is None]
    print("| layer / loss | " + " | ".join(f"{b} train | {b} eval" for b in backends) + " |")
    print("|---" * (1 + 2 * len(backends)) + "|")
    for name, case in LAYERS.items():
        cells = []
        for b in backends:
            with nnx.use(b):
                for training in (True, False):
                    x = case.input(b)
                    cells.append(f"{gradcheck(case.build(b), x, training=training).worst:.2f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    for name, (loss, target) in LOSSES.items():
        cells = []
        for b in backends:
            cells += [f"{gradcheck(loss, loss_prediction(b), target(b)).worst:.2f}", "no modes"]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
