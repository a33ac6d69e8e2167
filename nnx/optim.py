"""Optimizers: update parameters from their accumulated gradients.

The update arithmetic is in :mod:`nnx.ops`; an optimizer stores the arrays an
update returns (parameters and state), so it never relies on an array being
changed in place. State (momentum buffers, moment estimates) lives on the
parameters' backend and dtype, and can be read out with ``state_dict()``
(host NumPy arrays plus JSON-able scalars) and restored with
``load_state_dict()``. Learning-rate schedules (:mod:`nnx.schedules`) and
:func:`clip_grad_norm` are re-exported here.

``step()`` updates the parameters that have a gradient and skips those whose
``grad`` is ``None`` (frozen layers: leave their parameters out of the
optimizer, or never backward into them). A step where *no* parameter has a
gradient since the last ``zero_grad()`` is an error, not a silent no-op: the
gradient must be carried through the model, ``model.backward(loss.backward())``
(or ``nnx.train_step``), before ``step()``.

Optimizer state follows its parameter: after ``model.to(...)`` moves or casts
the parameters, the next ``step()`` moves each state array onto its
parameter's backend and dtype.
"""

from __future__ import annotations

from typing import Any, Iterable

from nnx import backend as _backend
from nnx import ops
from nnx.errors import BackendMismatchError, ShapeError, StateError
from nnx.layers.base import Parameter
from nnx.schedules import CosineWithWarmup, ExponentialLR, Schedule, StepLR


class Optimizer:
    """Base class: the parameter list, per-parameter state, ``state_dict`` and ``zero_grad``.

    Subclasses list their hyper-parameters in ``_hyper`` (saved in
    ``state_dict``) and keep per-parameter arrays in ``self.state[i]`` (a dict
    of slot name → array) and per-parameter step counts in ``self.steps[i]``.
    """

    _hyper: tuple[str, ...] = ()

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
        self.state: list[dict[str, Any]] = [{} for _ in self.params]
        self.steps: list[int] = [0] * len(self.params)

    def zero_grad(self) -> None:
        """Forget accumulated gradients."""
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """Update every parameter that has a gradient; raises :class:`~nnx.errors.StateError` when none has."""
        params = self.params
        for p in params:
            if p.grad is not None:
                break
        else:
            raise StateError(
                f"{type(self).__name__}.step(): no parameter has a gradient since the last zero_grad(), so "
                f"this step would change nothing. loss.backward() only returns the gradient of the loss; "
                f"carry it through the model before the step: model.backward(loss.backward()); "
                f"optimizer.step() (or let nnx.train_step(model, loss, optimizer, x, y) do all three)")
        for p, slots in zip(params, self.state):
            if slots:
                _follow(p.data, slots)
        self._step()

    def _step(self) -> None:
        """The update of every parameter whose ``grad`` is not ``None`` (each optimizer's own rule)."""
        raise NotImplementedError

    def _slot(self, i: int, name: str, like: Any) -> Any:
        """Per-parameter state ``name``, created as zeros like ``like`` on first use."""
        slot = self.state[i].get(name)
        if slot is None:
            slot = self.state[i][name] = _backend.namespace_of(like).zeros_like(like)
        return slot

    # saving and restoring ---------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Hyper-parameters, learning rate and step counts (JSON-able), and the per-parameter
        state as host NumPy arrays under ``state[str(index)][slot]``."""
        return {
            "type": type(self).__name__,
            "lr": self.lr,
            "hyper": {k: getattr(self, k) for k in self._hyper},
            "steps": list(self.steps),
            "state": {str(i): {k: _backend.to_host(v) for k, v in s.items()} for i, s in enumerate(self.state) if s},
        }

    def load_state_dict(self, d: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned, onto the parameters' backend and dtype."""
        if d.get("type") != type(self).__name__:
            raise StateError(f"{type(self).__name__}.load_state_dict got the state of a {d.get('type')!r}")
        if len(d["steps"]) != len(self.params):
            raise StateError(
                f"{type(self).__name__}.load_state_dict: the state is for {len(d['steps'])} parameters, "
                f"this optimizer has {len(self.params)}"
            )
        hyper = {k: tuple(v) if isinstance(v, list) else v for k, v in d["hyper"].items()}
        if set(hyper) != set(self._hyper):
            raise StateError(f"{type(self).__name__}.load_state_dict: the state has hyper-parameters "
                             f"{sorted(hyper)}, this optimizer has {sorted(self._hyper)}")
        lr = float(d["lr"])
        try:  # the constructor's own checks judge the saved values (a negative lr, a beta of 1, NaN)
            type(self)(self.params, lr=lr, **hyper)
        except (TypeError, ValueError) as exc:
            raise StateError(f"{type(self).__name__}.load_state_dict: the saved settings are invalid: {exc}") from None
        if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in d["steps"]):
            raise StateError(f"{type(self).__name__}.load_state_dict: the step counts must be non-negative ints")
        state: list[dict[str, Any]] = [{} for _ in self.params]
        for key, slots in d["state"].items():
            p = self.params[int(key)]
            for name, value in slots.items():
                if tuple(value.shape) != p.shape:
                    raise ShapeError(
                        f"{type(self).__name__}.load_state_dict: slot {name!r} of parameter {key} has shape "
                        f"{tuple(value.shape)}, the parameter has {p.shape}"
                    )
                state[int(key)][name] = _backend.to_device(
                    value, _backend.backend_of(p.data), _backend.dtype_name(p.data)
                )
        self.lr = lr
        for k, v in hyper.items():
            setattr(self, k, v)
        self.steps = list(d["steps"])
        self.state = state

    def _hyper_repr(self) -> str:
        return ", ".join([f"lr={self.lr}"] + [f"{k}={getattr(self, k)}" for k in self._hyper])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._hyper_repr()})"


def _follow(data: Any, slots: dict[str, Any]) -> None:
    """Move or cast state arrays onto their parameter's backend and dtype (after a ``model.to(...)``)."""
    for name, value in slots.items():
        if type(value) is not type(data) or value.dtype != data.dtype:
            slots[name] = _backend.to_device(value, _backend.backend_of(data), _backend.dtype_name(data))


def _check_nonneg(owner: str, **values: float) -> None:
    for name, v in values.items():
        if not v >= 0:
            raise ValueError(f"{owner} {name} must be >= 0, got {v}")


def _check_beta(owner: str, name: str, v: float) -> None:
    if not 0.0 <= v < 1.0:
        raise ValueError(f"{owner} {name} must be in [0, 1), got {v}")


class SGD(Optimizer):
    """Gradient descent, optionally with momentum, Nesterov momentum and L2 weight decay.

    With ``g = grad + weight_decay * p``: plain ``p -= lr * g``; with momentum
    ``b = momentum * b + g`` (``b = g`` on the first step) and
    ``p -= lr * b``, or ``p -= lr * (g + momentum * b)`` with ``nesterov=True``
    (Sutskever et al. 2013, in the form PyTorch uses).
    """

    _hyper = ("momentum", "nesterov", "weight_decay")

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        _check_nonneg("SGD", momentum=momentum, weight_decay=weight_decay)
        if nesterov and momentum == 0:
            raise ValueError("SGD nesterov=True needs a momentum > 0")
        self.momentum, self.nesterov, self.weight_decay = float(momentum), bool(nesterov), float(weight_decay)

    def _step(self) -> None:
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            self.steps[i] += 1
            p.data, buf = ops.sgd_update(p.data, p.grad, self.state[i].get("momentum"), self.lr,
                                         self.momentum, self.weight_decay, self.nesterov)
            if buf is not None:
                self.state[i]["momentum"] = buf


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015), with optional L2 ``weight_decay`` added to the gradient.

    ``m = b1 m + (1-b1) g``, ``v = b2 v + (1-b2) g^2``,
    ``p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)``.
    """

    _hyper = ("betas", "eps", "weight_decay")

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        b1, b2 = (float(b) for b in betas)
        _check_beta(type(self).__name__, "betas[0]", b1)
        _check_beta(type(self).__name__, "betas[1]", b2)
        _check_nonneg(type(self).__name__, eps=eps, weight_decay=weight_decay)
        self.betas, self.eps, self.weight_decay = (b1, b2), float(eps), float(weight_decay)

    def _decay(self, p: Parameter, g: Any) -> Any:
        """Adam couples the decay into the gradient (L2); AdamW overrides this."""
        return g + self.weight_decay * p.data if self.weight_decay else g

    def _step(self) -> None:
        (b1, b2), eps, lr = self.betas, self.eps, self.lr
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            g = self._decay(p, p.grad)
            m, v = self._slot(i, "exp_avg", p.data), self._slot(i, "exp_avg_sq", p.data)
            self.steps[i] += 1
            p.data, m, v = ops.adam_update(p.data, g, m, v, lr, b1, b2, eps, self.steps[i])
            self.state[i]["exp_avg"], self.state[i]["exp_avg_sq"] = m, v


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019).

    Before the Adam step, ``p -= lr * weight_decay * p``: the decay does not go
    through the moment estimates. In the paper's notation (schedule multiplier
    ``eta_t``, step size ``alpha``, decay ``lambda``): ``lr = eta_t * alpha`` and
    ``lambda = alpha * weight_decay``, so a schedule that changes ``lr`` scales
    the decay too, as ``eta_t`` does in the paper.
    """

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay)

    def _decay(self, p: Parameter, g: Any) -> Any:
        if self.weight_decay:
            data = p.data
            data *= 1.0 - self.lr * self.weight_decay
            p.data = data
        return g


class RMSProp(Optimizer):
    """RMSProp (Tieleman & Hinton, 2012): ``v = alpha v + (1-alpha) g^2``,
    ``p -= lr * g / (sqrt(v) + eps)``; with ``momentum``, ``b = momentum b + g / (sqrt(v) + eps)``
    and ``p -= lr * b``. ``weight_decay`` adds L2 to the gradient."""

    _hyper = ("alpha", "eps", "momentum", "weight_decay")

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        _check_beta("RMSProp", "alpha", alpha)
        _check_nonneg("RMSProp", eps=eps, momentum=momentum, weight_decay=weight_decay)
        self.alpha, self.eps = float(alpha), float(eps)
        self.momentum, self.weight_decay = float(momentum), float(weight_decay)

    def _step(self) -> None:
        for i, p in enumerate(self.params):
            g = p.grad
            if g is None:
                continue
            self.steps[i] += 1
            if self.weight_decay:
                g = g + self.weight_decay * p.data
            v = self._slot(i, "square_avg", p.data)
            buf = self._slot(i, "momentum", p.data) if self.momentum else None
            p.data, v, buf = ops.rmsprop_update(p.data, g, v, buf, self.lr, self.alpha, self.eps, self.momentum)
            self.state[i]["square_avg"] = v
            if buf is not None:
                self.state[i]["momentum"] = buf


def clip_grad_norm(params: Iterable[Parameter], max_norm: float) -> Any:
    """Scale all gradients so that their global L2 norm is at most ``max_norm``.

    Returns the norm before clipping as a 0-d array on the parameters' backend
    (no device-to-host sync; ``float()`` it to read it). Parameters without a
    gradient are ignored.
    """
    if not max_norm > 0:
        raise ValueError(f"clip_grad_norm max_norm must be > 0, got {max_norm}")
    params = [p for p in params if p.grad is not None]
    grads = [p.grad for p in params]
    if not grads:
        raise StateError("clip_grad_norm found no gradients; call backward first")
    xp = _backend.namespace_of(grads[0])
    name = _backend.backend_of(grads[0])
    total = None
    for g in grads:
        if _backend.backend_of(g) != name:
            raise BackendMismatchError(f"clip_grad_norm got gradients on {name!r} and {_backend.backend_of(g)!r}")
        sq = xp.sum(g * g)
        total = sq if total is None else total + xp.astype(sq, total.dtype)
    norm = xp.sqrt(total)
    coef = xp.clip(max_norm / (norm + 1e-6), max=1.0)
    for p in params:
        g = p.grad
        g *= coef if coef.dtype == g.dtype else xp.astype(coef, g.dtype)
        p.grad = g
    return norm


__all__ = [
    "Adam",
    "AdamW",
    "CosineWithWarmup",
    "ExponentialLR",
    "Optimizer",
    "RMSProp",
    "SGD",
    "Schedule",
    "StepLR",
    "clip_grad_norm",
]
