"""Learning-rate schedules: each ``step()`` advances one position and sets the optimizer's learning rates.

Call ``schedule.step()`` once per epoch or once per batch, as the schedule's
parameters are meant (``StepLR(step_size=10)`` counts whatever you step).
A schedule acts on every parameter group of the optimizer, or on the one
chosen with ``group=``; each group's starting learning rate is its ``lr`` when
the schedule is made, and the schedule moves each from its own start.
"""

from __future__ import annotations

import math
from typing import Any

from nnx.arguments import integer
from nnx.errors import ConfigError


class Schedule:
    """Base class: ``lr_at(t, base_lr)`` for position ``t``; ``step()``, ``state_dict()``, ``load_state_dict()``."""

    def __init__(self, optimizer: Any, group: int | None = None) -> None:
        groups = optimizer.param_groups
        if group is not None:
            group = integer(group, "group", type(self).__name__, minimum=0)
            if group >= len(groups):
                raise ValueError(f"{type(self).__name__} group must be one of the optimizer's {len(groups)} "
                                 f"parameter groups (0 to {len(groups) - 1}), got {group}")
        self.optimizer, self.group = optimizer, group
        self.groups = list(range(len(groups))) if group is None else [group]
        self.base_lrs = [float(groups[g]["lr"]) for g in self.groups]
        self.position = 0
        self._set()

    @property
    def base_lr(self) -> float:
        """The starting learning rate of the first group it moves."""
        return self.base_lrs[0]

    def lr_at(self, t: int, base_lr: float | None = None) -> float:
        """The learning rate at position ``t`` of a group that started at ``base_lr`` (default: the first's)."""
        raise NotImplementedError

    def _set(self) -> float:
        groups = self.optimizer.param_groups
        for g, base in zip(self.groups, self.base_lrs):
            groups[g]["lr"] = self.lr_at(self.position, base)
        return groups[self.groups[0]]["lr"]

    def step(self) -> float:
        """Advance one position; set the groups' new learning rates and return the first one's."""
        self.position += 1
        return self._set()

    @property
    def lr(self) -> float:
        return self.lr_at(self.position)

    def state_dict(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "position": self.position, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        if d.get("type") != type(self).__name__:
            raise ValueError(f"{type(self).__name__}.load_state_dict got the state of a {d.get('type')!r}")
        base_lrs = [float(b) for b in d["base_lrs"]] if "base_lrs" in d else [float(d["base_lr"])]
        if len(base_lrs) != len(self.groups):
            raise ValueError(f"{type(self).__name__}.load_state_dict: the state moves {len(base_lrs)} parameter "
                             f"groups, this schedule {len(self.groups)}")
        self.position, self.base_lrs = int(d["position"]), base_lrs
        self._set()


class StepLR(Schedule):
    """``lr = base_lr * gamma ** (t // step_size)``."""

    def __init__(self, optimizer: Any, step_size: int, gamma: float = 0.1, *, group: int | None = None) -> None:
        step_size = integer(step_size, "step_size", "StepLR", minimum=1)
        if not 0.0 < float(gamma) < math.inf:
            raise ValueError(f"StepLR gamma must be a finite number > 0, got {gamma}")
        self.step_size, self.gamma = step_size, float(gamma)
        super().__init__(optimizer, group)

    def lr_at(self, t: int, base_lr: float | None = None) -> float:
        return (self.base_lr if base_lr is None else base_lr) * self.gamma ** (t // self.step_size)


class ExponentialLR(Schedule):
    """``lr = base_lr * gamma ** t``."""

    def __init__(self, optimizer: Any, gamma: float, *, group: int | None = None) -> None:
        if not 0.0 < float(gamma) < math.inf:
            raise ValueError(f"ExponentialLR gamma must be a finite number > 0, got {gamma}")
        self.gamma = float(gamma)
        super().__init__(optimizer, group)

    def lr_at(self, t: int, base_lr: float | None = None) -> float:
        return (self.base_lr if base_lr is None else base_lr) * self.gamma**t


class CosineWithWarmup(Schedule):
    """Linear warm-up over ``warmup_steps`` (``base_lr * (t + 1) / (warmup_steps + 1)``), then a
    half cosine from ``base_lr`` at ``t = warmup_steps`` down to ``min_lr`` at ``t = total_steps``
    (and ``min_lr`` after it)."""

    def __init__(self, optimizer: Any, warmup_steps: int, total_steps: int, min_lr: float = 0.0, *,
                 group: int | None = None) -> None:
        warmup_steps = integer(warmup_steps, "warmup_steps", "CosineWithWarmup", minimum=0)
        total_steps = integer(total_steps, "total_steps", "CosineWithWarmup", minimum=1)
        if warmup_steps >= total_steps:
            raise ConfigError(
                f"CosineWithWarmup needs 0 <= warmup_steps < total_steps, got warmup_steps={warmup_steps!r} and "
                f"total_steps={total_steps!r}; make total_steps the whole run's steps, warm-up included"
            )
        lowest = min(float(g["lr"]) for i, g in enumerate(optimizer.param_groups) if group in (None, i))
        if not 0.0 <= float(min_lr) <= lowest:
            raise ConfigError(f"CosineWithWarmup min_lr must be in [0, the lowest learning rate of its groups "
                              f"{lowest}], got {min_lr}; pass a min_lr no larger than that")
        self.warmup_steps, self.total_steps, self.min_lr = warmup_steps, total_steps, float(min_lr)
        super().__init__(optimizer, group)

    def lr_at(self, t: int, base_lr: float | None = None) -> float:
        base = self.base_lr if base_lr is None else base_lr
        if t < self.warmup_steps:
            return base * (t + 1) / (self.warmup_steps + 1)
        progress = min(1.0, (t - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        return self.min_lr + (base - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


__all__ = ["CosineWithWarmup", "ExponentialLR", "Schedule", "StepLR"]
