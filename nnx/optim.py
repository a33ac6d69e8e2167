"""Optimizers: update parameters in place from their accumulated gradients."""

from __future__ import annotations

from typing import Iterable

from nnx.layers.base import Parameter


class Optimizer:
    """Base class: holds the parameter list and clears gradients."""

    def __init__(self, params: Iterable[Parameter], lr: float) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        for p in self.params:
            if not isinstance(p, Parameter):
                raise TypeError(f"optimizer expects nnx Parameters, got {type(p).__name__}")
        if not lr > 0:
            raise ValueError(f"learning rate must be > 0, got {lr}")
        self.lr = float(lr)

    def zero_grad(self) -> None:
        """Forget accumulated gradients."""
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """Plain gradient descent: ``p -= lr * grad`` (parameters without a gradient are skipped)."""

    def step(self) -> None:
        lr = self.lr
        for p in self.params:
            if p.grad is not None:
                p.data -= lr * p.grad

    def __repr__(self) -> str:
        return f"SGD(lr={self.lr})"


__all__ = ["Optimizer", "SGD"]
