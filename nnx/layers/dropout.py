"""Dropout with masks drawn on the host, so one seed drops the same units on every backend."""

from __future__ import annotations

from typing import Any

from nnx import backend as _backend
from nnx.backend import host
from nnx.layers.base import Layer, check_float


class Dropout(Layer):
    """Inverted dropout: in training, zero each element with probability ``p`` and scale
    the rest by ``1/(1-p)``; in evaluation mode (``eval()``), the identity.

    Masks come from a host generator made from ``seed`` (an int, a NumPy
    generator, or ``None`` for nnx's default generator) and are moved to the
    input's backend, so the same seed gives the same masks on every backend.
    """

    def __init__(self, p: float = 0.5, *, seed: Any = None) -> None:
        super().__init__()
        p = float(p)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout probability p must be in [0, 1), got {p}")
        self.p = p
        self.rng = host.make_rng(seed)

    def forward(self, x: Any) -> Any:
        check_float(x, repr(self))
        if not self.training or self.p == 0.0:
            self._save(None)
            return x
        keep = host.bernoulli(self.rng, tuple(x.shape), 1.0 - self.p) * (1.0 / (1.0 - self.p))
        mask = _backend.to_device(keep, _backend.backend_of(x), _backend.dtype_name(x))
        self._save(mask)
        return x * mask

    def backward(self, grad: Any) -> Any:
        (mask,) = self._take()
        check_float(grad, f"{self!r}.backward")
        return grad if mask is None else grad * mask

    def random_state(self) -> Any:
        """The generator's state, to replay the same masks (``set_random_state``)."""
        return host.get_state(self.rng)

    def set_random_state(self, state: Any) -> None:
        host.set_state(self.rng, state)

    def config(self) -> dict[str, Any]:
        return {"p": self.p}

    def __repr__(self) -> str:
        return f"Dropout(p={self.p})"
