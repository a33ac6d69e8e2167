"""Learning-rate schedules: each ``step()`` advances one position and sets ``optimizer.lr``.

Call ``schedule.step()`` once per epoch or once per batch, as the schedule's
parameters are meant (``StepLR(step_size=10)`` counts whatever you step).
The starting learning rate is the optimizer's ``lr`` when the schedule is made.
"""

from __future__ import annotations

import math
from typing import Any

from nnx.arguments import integer
from nnx.errors import ConfigError


class Schedule:
    """Base class: ``lr_at(t)`` for position ``t``; ``step()``, ``state_dict()``, ``load_state_dict()``."""

    def __init__(self, optimizer: Any) -> None:
        self.optimizer = optimizer
        self.base_lr = float(optimizer.lr)
        self.position = 0
        optimizer.lr = self.lr_at(0)

    def lr_at(self, t: int) -> float:
        raise NotImplementedError

    def step(self) -> float:
        """Advance one position; set and return the optimizer's new learning rate."""
        self.position += 1
        self.optimizer.lr = lr = self.lr_at(self.position)
        return lr

    @property
    def lr(self) -> float:
        return self.lr_at(self.position)

    def state_dict(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "position": self.position, "base_lr": self.base_lr}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        if d.get("type") != type(self).__name__:
            raise ValueError(f"{type(self).__name__}.load_state_dict got the state of a {d.get('type')!r}")
        self.position, self.base_lr = int(d["position"]), float(d["base_lr"])
        self.optimizer.lr = self.lr_at(self.position)


class StepLR(Schedule):
    """``lr = base_lr * gamma ** (t // step_size)``."""

    def __init__(self, optimizer: Any, step_size: int, gamma: float = 0.1) -> None:
        step_size = integer(step_size, "step_size", "StepLR", minimum=1)
        if not 0.0 < float(gamma) < math.inf:
            raise ValueError(f"StepLR gamma must be a finite number > 0, got {gamma}")
        self.step_size, self.gamma = step_size, float(gamma)
        super().__init__(optimizer)

    def lr_at(self, t: int) -> float:
        return self.base_lr * self.gamma ** (t // self.step_size)


class ExponentialLR(Schedule):
    """``lr = base_lr * gamma ** t``."""

    def __init__(self, optimizer: Any, gamma: float) -> None:
        if not 0.0 < float(gamma) < math.inf:
            raise ValueError(f"ExponentialLR gamma must be a finite number > 0, got {gamma}")
        self.gamma = float(gamma)
        super().__init__(optimizer)

    def lr_at(self, t: int) -> float:
        return self.base_lr * self.gamma**t


class CosineWithWarmup(Schedule):
    """Linear warm-up over ``warmup_steps`` (``base_lr * (t + 1) / (warmup_steps + 1)``), then a
    half cosine from ``base_lr`` at ``t = warmup_steps`` down to ``min_lr`` at ``t = total_steps``
    (and ``min_lr`` after it)."""

    def __init__(self, optimizer: Any, warmup_steps: int, total_steps: int, min_lr: float = 0.0) -> None:
        warmup_steps = integer(warmup_steps, "warmup_steps", "CosineWithWarmup", minimum=0)
        total_steps = integer(total_steps, "total_steps", "CosineWithWarmup", minimum=1)
        if warmup_steps >= total_steps:
            raise ConfigError(
                f"CosineWithWarmup needs 0 <= warmup_steps < total_steps, got warmup_steps={warmup_steps!r} and "
                f"total_steps={total_steps!r}; make total_steps the whole run's steps, warm-up included"
            )
        if not 0.0 <= float(min_lr) <= float(optimizer.lr):
            raise ConfigError(f"CosineWithWarmup min_lr must be in [0, the optimizer's lr {optimizer.lr}], got {min_lr}; "
                              f"pass a min_lr no larger than the optimizer's lr")
        self.warmup_steps, self.total_steps, self.min_lr = warmup_steps, total_steps, float(min_lr)
        super().__init__(optimizer)

    def lr_at(self, t: int) -> float:
        if t < self.warmup_steps:
            return self.base_lr * (t + 1) / (self.warmup_steps + 1)
        progress = min(1.0, (t - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


__all__ = ["CosineWithWarmup", "ExponentialLR", "Schedule", "StepLR"]
