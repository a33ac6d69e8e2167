"""Training: one full step of forward, loss, backward and update."""

from __future__ import annotations

from typing import Any

from nnx.layers.base import Layer
from nnx.losses import Loss
from nnx.optim import Optimizer


def train_step(model: Layer, loss: Loss, optimizer: Optimizer, x: Any, y: Any) -> tuple[Any, Any]:
    """Clear gradients, run forward and backward, update.

    Returns ``(loss_value, output)``: the loss as a 0-d array and the model's
    output, both computed before the update and both still on the device
    (convert with ``float()`` or ``nnx.to_host`` only when they are shown).
    """
    optimizer.zero_grad()
    output = model.forward(x)
    value = loss.forward(output, y)
    model.backward_params(loss.backward())  # the input's gradient is not needed here
    optimizer.step()
    return value, output


__all__ = ["train_step"]
