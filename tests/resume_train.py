"""A small training run that checkpoints and resumes; the resume test kills it with SIGKILL.

``python tests/resume_train.py DIR [--steps N] [--every K] [--resume]`` trains a
tiny float64 network (batch norm, seeded dropout) with Adam, a decaying
learning rate and random mini-batches drawn from a seeded host generator, checkpoints to
``DIR/checkpoint.nnx`` every K steps, prints ``step N`` after each step and
finally saves the model to ``DIR/final.nnx`` and the history to
``DIR/history.json``. With ``--resume`` it continues from the checkpoint.
With ``--fit`` the same problem runs through ``nnx.fit(checkpoint=DIR)`` for
``--steps`` epochs (reported as ``step N`` after each).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import nnx


def build(backend: str | None = None) -> tuple[nnx.Sequential, nnx.Adam, nnx.schedules.ExponentialLR]:
    """The model, optimizer and schedule, built the same way by every run."""
    model = nnx.Sequential(
        nnx.Linear(4, 16, seed=1, dtype="float64", backend=backend),
        nnx.BatchNorm1d(16, dtype="float64", backend=backend), nnx.GELU(),
        nnx.Dropout(0.2, seed=3),
        nnx.Linear(16, 2, seed=2, dtype="float64", backend=backend),
    )
    opt = nnx.Adam(model.parameters(), lr=0.01)
    return model, opt, nnx.schedules.ExponentialLR(opt, gamma=0.999)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory", type=Path)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=7)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to sleep after each step")
    parser.add_argument("--fit", action="store_true", help="train with nnx.fit(checkpoint=DIR, resume=...)")
    args = parser.parse_args()
    if args.fit:
        return train_with_fit(args)

    data = np.random.default_rng(0)
    x_all = nnx.to_device(data.normal(size=(64, 4)), dtype="float64")
    y_all = nnx.to_device(np.tanh(data.normal(size=(64, 2))), dtype="float64")
    model, opt, schedule = build()
    loss = nnx.MSE()
    rng = nnx.random.make_rng(7)
    start, history = 0, []
    path = nnx.checkpoint.checkpoint_path(args.directory)
    if args.resume and nnx.checkpoint.latest_checkpoint(args.directory):
        ck = nnx.load_checkpoint(path)
        ck.restore(model, opt, schedule, rng)
        start, history = ck.step, ck.history
    xp = nnx.backend.namespace()
    for step in range(start + 1, args.steps + 1):
        idx = nnx.to_device(rng.choice(64, size=8, replace=False), dtype="int64")
        value, _ = nnx.train_step(model, loss, opt, xp.take(x_all, idx, axis=0), xp.take(y_all, idx, axis=0))
        schedule.step()
        history.append(float(value))
        if step % args.every == 0:
            nnx.save_checkpoint(path, model, opt, schedule=schedule, rng=rng, step=step, history=history)
        print(f"step {step}", flush=True)
        time.sleep(args.delay)
    nnx.save(model, args.directory / "final.nnx")
    (args.directory / "history.json").write_text(json.dumps(history))


def train_with_fit(args: argparse.Namespace) -> None:
    """The same problem through ``nnx.fit``: checkpoints after every epoch, ``--steps`` epochs."""
    data = np.random.default_rng(0)
    x, y = data.normal(size=(64, 4)), np.tanh(data.normal(size=(64, 2)))
    model, opt, schedule = build()

    def report(state: nnx.TrainState, logs: object) -> None:
        print(f"step {state.epoch}", flush=True)
        time.sleep(args.delay)

    callbacks = [nnx.LRScheduler(schedule, per="step"),
                 nnx.EarlyStopping(monitor="loss", patience=10**6, restore_best=True),
                 nnx.LambdaCallback(on_epoch_end=report)]
    history = nnx.fit(model, nnx.MSE(), opt, (x, y), epochs=args.steps, batch_size=16, seed=7,
                      callbacks=callbacks, progress=False, checkpoint=args.directory, resume=args.resume)
    nnx.save(model, args.directory / "final.nnx")
    rows = {k: v for k, v in history.to_dict().items() if k != "seconds"}
    (args.directory / "history.json").write_text(json.dumps(rows))


if __name__ == "__main__":
    main()
