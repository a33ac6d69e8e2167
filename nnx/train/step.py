"""One training step, the one both a hand-written loop and :func:`nnx.fit` run."""

from __future__ import annotations

from typing import Any, Callable

from nnx.backend import namespace_of, overflow_expected
from nnx.layers import Layer
from nnx.losses import Loss
from nnx.optim import Optimizer
from nnx.precision import Precision, policy
from nnx.train import batches

BeforeUpdate = Callable[[Any, Any, Any, Any], None]


def train_step(model: Layer, loss: Loss, optimizer: Optimizer, x: Any, y: Any,
               before_update: BeforeUpdate | None = None, *, precision: Precision | str | None = None) -> tuple[Any, Any]:
    """Clear gradients, run forward and backward, update.

    Returns ``(loss_value, output)``: the loss as a 0-d array and the model's
    output, both computed before the update and both still on the device
    (convert with ``float()`` or ``nnx.to_host`` only when they are shown). ``x`` may be named
    inputs (a dict with the key ``"x"``: :mod:`nnx.train.batches`).
    ``before_update(x, y, loss_value, output)``, when given, runs after the
    backward and before the update (``fit`` counts and checks there); if it
    raises, nothing is updated.

    ``precision``: ``"float16"``, ``"bfloat16"`` or an :class:`nnx.Precision` (keep one
    object for a whole run: it holds float16's loss scale) computes the step in that
    dtype with float32 master weights (:mod:`nnx.precision`); the output and the loss
    come back in float32, the gradients the update used too.
    """
    mixed = policy(precision)
    optimizer.zero_grad()
    if mixed is None:
        output = batches.forward(model, x)
        value = loss.forward(output, y)
        model.backward(loss.backward(), input_grad=False)  # the input's gradient is not needed here
    else:
        with mixed.compute(model), overflow_expected():
            low = batches.forward(model, batches.each(x, lambda v: mixed.cast_input(model, v)))
            output = namespace_of(low).astype(low, namespace_of(low).float32)
            value = loss.forward(output, y)
            model.backward(mixed.scale_gradient(loss.backward()), input_grad=False)
        mixed.unscale(optimizer)
    if before_update is not None:
        before_update(x, y, value, output)
    if mixed is None:
        optimizer.step()
    else:
        mixed.step(optimizer)
    return value, output


__all__ = ["train_step"]
