"""One training step, the one both a hand-written loop and :func:`nnx.fit` run."""

from __future__ import annotations

from typing import Any, Callable

from nnx.layers import Layer
from nnx.losses import Loss
from nnx.optim import Optimizer
from nnx.train import batches

BeforeUpdate = Callable[[Any, Any, Any, Any], None]


def train_step(model: Layer, loss: Loss, optimizer: Optimizer, x: Any, y: Any,
               before_update: BeforeUpdate | None = None) -> tuple[Any, Any]:
    """Clear gradients, run forward and backward, update.

    Returns ``(loss_value, output)``: the loss as a 0-d array and the model's
    output, both computed before the update and both still on the device
    (convert with ``float()`` or ``nnx.to_host`` only when they are shown). ``x`` may be named
    inputs (a dict with the key ``"x"``: :mod:`nnx.train.batches`).
    ``before_update(x, y, loss_value, output)``, when given, runs after the
    backward and before the update (``fit`` counts and checks there); if it
    raises, nothing is updated.
    """
    optimizer.zero_grad()
    output = batches.forward(model, x)
    value = loss.forward(output, y)
    model.backward(loss.backward(), input_grad=False)  # the input's gradient is not needed here
    if before_update is not None:
        before_update(x, y, value, output)
    optimizer.step()
    return value, output


__all__ = ["train_step"]
