"""A small data-parallel run that the distributed tests launch with ``mpiexec -n N``.

``python tests/distributed_train.py OUT [--backend B] [--batch-size b]
[--epochs E] [--samples n] [--checkpoint DIR [--resume]] [--delay S]
[--raise-on-rank R] [--hang-on-rank R] [--timeout T] [--hidden-on-rank R:H]
[--batch-norm] [--named] [--single]`` trains a float64 MLP with Adam on seeded data through ``nnx.fit(..., world=nnx.distributed.init())``; rank 0 writes the final
parameters to ``OUT/params.npz`` and the history to ``OUT/history.json`` and
prints ``epoch N`` after each epoch. ``--single`` runs the same problem in one
process with ``nnx.fit`` and batch ``world * b`` (``--world``), the reference.
``--raise-on-rank R`` makes rank R raise at the end of its second epoch,
``--hang-on-rank R`` makes it sleep there (the others give up after ``--timeout`` seconds);
``--hidden-on-rank R:H`` gives rank R another architecture; ``--named`` passes the inputs as named
inputs with a per-sample scale beside them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

import nnx


def problem(samples: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Seeded float64 inputs and class labels, and a held-out part."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(samples + 17, 6))
    y = (x[:, 0] + x[:, 1] * x[:, 2] > 0).astype(np.int64) + (x[:, 3] > 1).astype(np.int64)
    return x[:samples], y[:samples], x[samples:], y[samples:]


def build(backend: str, hidden: int = 16, batch_norm: bool = False) -> tuple[nnx.Sequential, nnx.Adam]:
    """The float64 MLP (with a BatchNorm1d after the first layer when asked) and its Adam."""
    norm = [nnx.BatchNorm1d(hidden, dtype="float64", backend=backend)] if batch_norm else []
    model = nnx.Sequential(nnx.Linear(6, hidden, seed=1, dtype="float64", backend=backend), *norm, nnx.Tanh(),
                           nnx.Linear(hidden, 3, seed=2, dtype="float64", backend=backend))
    return model, nnx.Adam(model.parameters(), lr=0.01)


@nnx.register_layer
class ScaledInputs(nnx.Sequential):
    """The MLP on its inputs times a per-sample ``scale``, a second named input (``--named``)."""

    def forward(self, x: Any, *, scale: Any) -> Any:
        return super().forward(x * scale)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out", type=Path)
    p.add_argument("--backend", default="numpy")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--samples", type=int, default=69)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--raise-on-rank", type=int, default=None)
    p.add_argument("--hang-on-rank", type=int, default=None)
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--hidden-on-rank", default=None)
    p.add_argument("--single", action="store_true")
    p.add_argument("--world", type=int, default=2)
    p.add_argument("--batch-norm", action="store_true")
    p.add_argument("--named", action="store_true")
    args = p.parse_args()
    nnx.use(args.backend)

    x, y, vx, vy = problem(args.samples)
    if args.single:
        world, batch = None, args.world * args.batch_size
    else:
        world, batch = nnx.distributed.init(timeout=args.timeout), args.batch_size
    rank = 0 if world is None else world.rank
    hidden = 16
    if args.hidden_on_rank is not None:
        on, h = (int(v) for v in args.hidden_on_rank.split(":"))
        hidden = h if rank == on else hidden
    model, opt = build(args.backend, hidden, args.batch_norm)

    def on_epoch_end(state: nnx.TrainState, logs: Any) -> None:
        if rank == 0:
            print(f"epoch {state.epoch}", flush=True)
        if args.raise_on_rank == rank and state.epoch == 2:
            raise ValueError(f"a deliberate failure on rank {rank} after epoch 2 (at {time.time():.3f})")
        if args.hang_on_rank == rank and state.epoch == 2:
            time.sleep(3600)
        time.sleep(args.delay)

    if args.named:  # the same layers, reading a second array per sample
        model = ScaledInputs(*model.layers)
        scales = np.random.default_rng(1).uniform(0.5, 1.5, (len(x) + len(vx), 1))
        x, vx = {"x": x, "scale": scales[:len(x)]}, {"x": vx, "scale": scales[len(x):]}
    history = nnx.fit(model, nnx.SoftmaxCrossEntropy(), opt, (x, y), epochs=args.epochs,
                      batch_size=batch, seed=5, validation=(vx, vy), progress=False,
                      callbacks=[nnx.LambdaCallback(on_epoch_end=on_epoch_end)],
                      checkpoint=args.checkpoint, resume=args.resume, world=world)
    if rank == 0:
        args.out.mkdir(parents=True, exist_ok=True)
        np.savez(args.out / "params.npz", **{k: nnx.to_host(v) for k, v in model.state_dict().items()})
        rows = {k: v for k, v in history.to_dict().items() if k != "seconds"}
        (args.out / "history.json").write_text(json.dumps(rows))


if __name__ == "__main__":
    main()
