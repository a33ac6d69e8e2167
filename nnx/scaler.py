"""Dynamic loss scaling for float16 training, decided on the device.

float16 flushes numbers below about 6e-8 to zero, and many gradients are that
small. :class:`LossScaler` multiplies the loss's gradient by a large ``scale``
before the backward runs in float16 and divides the parameters' gradients by it
afterwards, in float32. When any gradient overflows (an infinity or a NaN), the
step is skipped and the scale halved; after ``growth_interval`` good steps in a
row it doubles. The defaults are PyTorch's GradScaler's.

Every decision is an array operation: whether the step was finite, the skipped
update (the parameters and the optimizer's state are selected, old or new, with
``where``), the new scale. Nothing is read on the host during a step, so a GPU
never waits for it. The costs: each step copies the parameters and the
optimizer's state (what a skipped step puts back), and the optimizer's step
counters (host integers, used by Adam's bias correction) count a skipped step too.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from nnx import backend as _backend
from nnx.errors import ConfigError, StateError
from nnx.optim import Optimizer


class LossScaler:
    """The loss scale of a float16 run and the gate of its optimizer steps.

    Parameters
    ----------
    init_scale : float
        The first scale (``2**16``).
    growth_factor : float
        The scale is multiplied by it after ``growth_interval`` finite steps in a row (2).
    backoff_factor : float
        The scale is multiplied by it after a step with a non-finite gradient (0.5).
    growth_interval : int
        Finite steps in a row before the scale grows (2000).
    """

    def __init__(self, init_scale: float = 2.0**16, growth_factor: float = 2.0, backoff_factor: float = 0.5,
                 growth_interval: int = 2000) -> None:
        for name, value, ok, wanted in (
                ("init_scale", init_scale, 0 < init_scale < math.inf, "a positive finite number"),
                ("growth_factor", growth_factor, 1 < growth_factor < math.inf, "a finite number above 1"),
                ("backoff_factor", backoff_factor, 0 < backoff_factor < 1, "a number in (0, 1)")):
            if not ok:
                raise ConfigError(f"LossScaler {name} must be {wanted}, got {value!r}")
        if isinstance(growth_interval, bool) or not isinstance(growth_interval, int) or growth_interval < 1:
            raise ConfigError(f"LossScaler growth_interval must be a positive int, got {growth_interval!r}")
        self.init_scale, self.growth_factor = float(init_scale), float(growth_factor)
        self.backoff_factor, self.growth_interval = float(backoff_factor), growth_interval
        self._host = (float(init_scale), 0)  # (scale, good steps in a row) until the first step puts them on a device
        self._scale: Any = None
        self._good: Any = None

    def _arrays(self, like: Any) -> tuple[Any, Any]:
        """The scale and the count of good steps as float32 0-d arrays beside ``like``."""
        if self._scale is None:
            xp = _backend.namespace_of(like)
            device = _backend.device_of(like)
            self._scale = xp.asarray(self._host[0], dtype=xp.float32, device=device)
            self._good = xp.asarray(float(self._host[1]), dtype=xp.float32, device=device)
        return self._scale, self._good

    def scale_gradient(self, grad: Any, dtype: Any) -> Any:
        """``grad`` (float32, the loss's gradient) times the scale, in the compute ``dtype``."""
        xp = _backend.namespace_of(grad)
        scale, _ = self._arrays(grad)
        return xp.astype(grad * scale, dtype)

    def unscale(self, optimizer: Optimizer) -> None:
        """Replace each gradient by itself over the scale, in float32 (where the step takes them)."""
        for p in optimizer.params:
            if p.grad is not None:
                xp = _backend.namespace_of(p.grad)
                scale, _ = self._arrays(p.grad)
                p.grad = xp.astype(p.grad, xp.float32) / scale

    def step(self, optimizer: Optimizer) -> None:
        """Update if every gradient is finite, else keep the parameters and the optimizer's state
        as they were (zero gradients stand in for the bad ones, so nothing computes a NaN);
        then update the scale. All on the device."""
        grads = [p for p in optimizer.params if p.grad is not None]
        if not grads:
            optimizer.step()  # the optimizer's own error: no parameter has a gradient
            return
        xp = _backend.namespace_of(grads[0].grad)
        self._arrays(grads[0].grad)
        finite = xp.all(xp.isfinite(grads[0].grad))
        for p in grads[1:]:
            finite = finite & xp.all(xp.isfinite(p.grad))
        for p in grads:
            p.grad = xp.where(finite, p.grad, xp.zeros_like(p.grad))
        pairs = [(p, slots) for p, slots in zip(optimizer.params, optimizer.state) if p.grad is not None]
        before = [(xp.asarray(p.data, copy=True), {k: xp.asarray(v, copy=True) for k, v in slots.items()})
                  for p, slots in pairs]  # copies: NumPy's optimizer overrides update in place
        optimizer.step()
        for (p, slots), (data, old) in zip(pairs, before):
            p.data = xp.where(finite, p.data, data)
            for key, value in slots.items():  # state this step made is zeros where it was skipped
                slots[key] = xp.where(finite, value, old[key] if key in old else xp.zeros_like(value))
        self._update(xp, finite)

    def _update(self, xp: Any, finite: Any) -> None:
        scale, good = self._scale, self._good
        good = xp.where(finite, good + 1.0, xp.zeros_like(good))
        grow = good >= float(self.growth_interval)
        self._scale = xp.where(finite, xp.where(grow, scale * self.growth_factor, scale), scale * self.backoff_factor)
        self._good = xp.where(grow, xp.zeros_like(good), good)

    @property
    def scale(self) -> float:
        """The current scale, read on the host (for logs and tests; a step never reads it)."""
        return float(_backend.to_host(self._scale)) if self._scale is not None else self._host[0]

    def state_dict(self) -> dict[str, Any]:
        """The settings, the scale and the count of good steps (read on the host), as plain data."""
        good = int(_backend.to_host(self._good)) if self._good is not None else self._host[1]
        return {"init_scale": self.init_scale, "growth_factor": self.growth_factor,
                "backoff_factor": self.backoff_factor, "growth_interval": self.growth_interval,
                "scale": self.scale, "good_steps": good}

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` gave, exactly (a float32 scale survives the round trip)."""
        try:
            LossScaler(d["init_scale"], d["growth_factor"], d["backoff_factor"], d["growth_interval"])
            scale, good = float(d["scale"]), d["good_steps"]
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"LossScaler.load_state_dict got an invalid state ({type(exc).__name__}: {exc})") from None
        if not (scale > 0 and math.isfinite(scale)) or isinstance(good, bool) or not isinstance(good, int) or good < 0:
            raise StateError(f"LossScaler.load_state_dict: the scale must be a positive finite number and "
                             f"good_steps a non-negative int, got {scale!r} and {good!r}")
        self.init_scale, self.growth_factor = float(d["init_scale"]), float(d["growth_factor"])
        self.backoff_factor, self.growth_interval = float(d["backoff_factor"]), int(d["growth_interval"])
        self._host, self._scale, self._good = (scale, good), None, None

    def __repr__(self) -> str:
        return f"LossScaler(scale={self.scale:g}, growth_interval={self.growth_interval})"


__all__ = ["LossScaler"]
