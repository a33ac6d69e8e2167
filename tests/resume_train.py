"""A small training run that checkpoints and resumes; the resume test kills it with SIGKILL.

``python tests/resume_train.py DIR [--steps N] [--every K] [--resume]`` trains a
tiny float64 network with momentum, a decaying learning rate and random
mini-batches drawn from a seeded host generator, checkpoints to
``DIR/checkpoint.nnx`` every K steps, prints ``step N`` after each step and
finally saves the model to ``DIR/final.nnx`` and the history to
``DIR/history.json``. With ``--resume`` it continues from the checkpoint.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

import nnx


class Momentum(nnx.optim.Optimizer):
    """Heavy-ball SGD; its velocities are state that a resume must restore."""

    def __init__(self, params: Any, lr: float, momentum: float = 0.9) -> None:
        super().__init__(params, lr)
        self.momentum = momentum
        self.velocity: list[Any] = [None] * len(self.params)

    def step(self) -> None:
        for i, p in enumerate(self.params):
            v = self.velocity[i]
            self.velocity[i] = p.grad if v is None else self.momentum * v + p.grad
            p.data -= self.lr * self.velocity[i]

    def state_dict(self) -> dict[str, Any]:
        return {"lr": self.lr, "momentum": self.momentum,
                "velocity": [None if v is None else nnx.to_host(v) for v in self.velocity]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lr, self.momentum = state["lr"], state["momentum"]
        name = nnx.backend.backend_of(self.params[0].data)
        self.velocity = [None if v is None else nnx.to_device(v, name) for v in state["velocity"]]


class Decay:
    """``lr = base * gamma ** t``: its position ``t`` is state that a resume must restore."""

    def __init__(self, optimizer: Momentum, gamma: float) -> None:
        self.optimizer, self.base, self.gamma, self.t = optimizer, optimizer.lr, gamma, 0

    def step(self) -> None:
        self.t += 1
        self.optimizer.lr = self.base * self.gamma ** self.t

    def state_dict(self) -> dict[str, Any]:
        return {"base": self.base, "gamma": self.gamma, "t": self.t}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base, self.gamma, self.t = state["base"], state["gamma"], state["t"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory", type=Path)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=7)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to sleep after each step")
    args = parser.parse_args()

    data = np.random.default_rng(0)
    x_all = nnx.to_device(data.normal(size=(64, 4)), dtype="float64")
    y_all = nnx.to_device(np.tanh(data.normal(size=(64, 2))), dtype="float64")
    model = nnx.Sequential(nnx.Linear(4, 16, seed=1, dtype="float64"), nnx.Tanh(),
                           nnx.Linear(16, 2, seed=2, dtype="float64"))
    loss = nnx.MSE()
    opt = Momentum(model.parameters(), lr=0.05)
    schedule = Decay(opt, gamma=0.999)
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


if __name__ == "__main__":
    main()
