"""Writes the format-version-1 files (Linear weights stored as (in, out)) that tests/test_layout.py loads.

Run with nnx 0.x at commit a9fd14b on the path (the last version that wrote version 1):

    git archive a9fd14b nnx | tar -x -C /tmp/v1 && PYTHONPATH=/tmp/v1 python tests/data/layout_v1/make.py

It saves a model, a checkpoint with Adam's state after two steps, a weights-only file, and
in expected.json the outputs and the parameters after a third step, as that version computed them.
"""

import json
from pathlib import Path

import numpy as np

import nnx

HERE = Path(__file__).resolve().parent


def model() -> nnx.Sequential:
    return nnx.Sequential(nnx.Linear(3, 4, seed=0, dtype="float64"), nnx.Tanh(),
                          nnx.Linear(4, 4, seed=1, dtype="float64"), nnx.Tanh(),
                          nnx.Linear(4, 2, seed=2, dtype="float64"))


def main() -> None:
    assert nnx.io.FORMAT_VERSION == 1
    rng = np.random.default_rng(0)
    x, t = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    net, loss = model(), nnx.MSE()
    opt = nnx.Adam(net.parameters(), lr=0.01)
    for _ in range(2):
        nnx.train_step(net, loss, opt, x, t)
    nnx.save(net, HERE / "model.nnx")
    nnx.save(net.state_dict(), HERE / "weights.nnx")
    nnx.save_checkpoint(HERE / "checkpoint.nnx", net, opt, step=2)
    out = nnx.to_host(net.forward(x))
    net.drop_saved()
    nnx.train_step(net, loss, opt, x, t)
    expected = {"x": x.tolist(), "t": t.tolist(), "output": out.tolist(),
                "after_step": {k: nnx.to_host(v).tolist() for k, v in net.state_dict().items()}}
    (HERE / "expected.json").write_text(json.dumps(expected))


if __name__ == "__main__":
    main()
