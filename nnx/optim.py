"""Optimizers: update parameters from their accumulated gradients.

The update arithmetic is in :mod:`nnx.ops`; an optimizer stores the arrays an
update returns (parameters and state), so it never relies on an array being
changed in place. State (momentum buffers, moment estimates) lives on the
parameters' backend and dtype, and can be read out with ``state_dict()``
(host NumPy arrays plus JSON-able scalars) and restored with
``load_state_dict()``. Learning-rate schedules (:mod:`nnx.schedules`) and
:func:`clip_grad_norm` are re-exported here.

Parameters come as one iterable, or as PyTorch's parameter groups: a list of
dicts, each with ``"params"`` and any hyper-parameter of the optimizer for that
group (``AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest,
"weight_decay": 0.0}], lr=6e-4)``); what a group does not set comes from the
constructor's arguments. :func:`decay_groups` makes nanoGPT's two groups.

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

from typing import Any, Iterable, Mapping

from nnx import backend as _backend
from nnx import ops
from nnx.errors import BackendMismatchError, ConfigError, ShapeError, StateError
from nnx.layers.base import Layer, Parameter
from nnx.schedules import CosineWithWarmup, ExponentialLR, Schedule, StepLR


class Optimizer:
    """Base class: the parameter groups, the loop over their parameters, per-parameter state and
    step counts, ``state_dict`` and ``zero_grad``. An optimizer is its rule.

    A subclass passes its hyper-parameters' values to ``super().__init__(params, lr=..., **hyper)``,
    checks a group's values in :meth:`check` (called for the defaults and for every group), and
    writes :meth:`_rule`: one parameter's update from its gradient, its state slots (a dict it
    fills, saved by ``state_dict``), its step count and its group's hyper-parameters.
    ``self.params`` lists every parameter (group after group), ``self.state[i]`` and
    ``self.steps[i]`` are parameter ``i``'s slots and steps.
    """

    def __init__(self, params: Iterable[Parameter] | Iterable[Mapping[str, Any]], **defaults: Any) -> None:
        self.defaults = self.check(defaults)
        self.param_groups: list[dict[str, Any]] = []
        self.params: list[Parameter] = []
        self.state: list[dict[str, Any]] = []
        self.steps: list[int] = []
        given = list(params)
        if not given:
            raise ValueError("optimizer got an empty parameter list")
        if all(isinstance(g, Mapping) for g in given):
            for group in given:
                self.add_param_group(group)
        elif any(isinstance(g, Mapping) for g in given):
            raise TypeError("optimizer expects parameters, or parameter groups (dicts with 'params'), not a mix")
        else:
            self.add_param_group({"params": given})

    def check(self, hyper: Mapping[str, Any]) -> dict[str, Any]:
        """``hyper`` (``lr`` and this optimizer's hyper-parameters) checked and normalised; raises
        ``ValueError`` naming a bad value. Subclasses extend it for their own."""
        lr = hyper["lr"]
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < float("inf"):
            raise ValueError(f"learning rate must be > 0, got {lr!r}")
        return {**hyper, "lr": float(lr)}

    def add_param_group(self, group: Mapping[str, Any]) -> None:
        """Add a group ``{"params": [...], <hyper-parameter>: value, ...}``; unset values are the
        defaults. A parameter already in the optimizer is refused (it would be updated twice)."""
        if not isinstance(group, Mapping) or "params" not in group:
            raise TypeError(f"a parameter group is a dict with 'params', got {type(group).__name__}")
        unknown = sorted(set(group) - {"params"} - set(self.defaults))
        if unknown:
            raise ConfigError(f"{type(self).__name__} parameter group sets {unknown}, which it does not have; "
                              f"a group may set {sorted(self.defaults)}")
        params = [group["params"]] if isinstance(group["params"], Parameter) else list(group["params"])
        if not params:
            raise ValueError(f"{type(self).__name__} parameter group {len(self.param_groups)} has no parameters")
        held = {id(p): i for i, p in enumerate(self.params)}
        for k, p in enumerate(params):
            if not isinstance(p, Parameter):
                raise TypeError(f"optimizer expects nnx Parameters, got {type(p).__name__}")
            if id(p) in held:
                raise ConfigError(
                    f"{type(self).__name__} got {p!r} twice (as its parameter {held[id(p)]} and again in group "
                    f"{len(self.param_groups)}, place {k}): it would be updated twice per step; pass each "
                    f"parameter once (model.parameters() lists a tied one once)")
            held[id(p)] = len(self.params) + k
        hyper = self.check({**self.defaults, **{k: v for k, v in group.items() if k != "params"}})
        self.param_groups.append({"params": params, **hyper})
        self.params.extend(params)
        self.state.extend({} for _ in params)
        self.steps.extend(0 for _ in params)

    @property
    def lr(self) -> float:
        """The first group's learning rate; setting it sets every group's."""
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        for group in self.param_groups:
            group["lr"] = value

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
        i = 0
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    slots = self.state[i]
                    if slots:
                        _follow(p.data, slots)
                    self.steps[i] += 1
                    p.data = self._rule(p.data, p.grad, slots, self.steps[i], group)
                i += 1

    def _rule(self, p: Any, grad: Any, slots: dict[str, Any], step: int, group: Mapping[str, Any]) -> Any:
        """The new value of parameter array ``p`` from its ``grad``: this optimizer's rule. It stores
        its state arrays in ``slots`` (empty at first) and reads its hyper-parameters from ``group``;
        ``step`` counts this parameter's updates from 1."""
        raise NotImplementedError

    # settings, saving and restoring ----------------------------------------------------

    def _indexed_groups(self) -> list[tuple[list[int], dict[str, Any]]]:
        """Each group as the indices of its parameters in ``self.params`` and its hyper-parameters
        as JSON data (tuples as lists)."""
        out, first = [], 0
        for g in self.param_groups:
            n = len(g["params"])
            out.append((list(range(first, first + n)),
                        {k: list(v) if isinstance(v, tuple) else v for k, v in g.items() if k != "params"}))
            first += n
        return out

    def settings(self) -> dict[str, Any]:
        """The hyper-parameters as JSON data: ``{"lr": ..., ...}`` for one group, else
        ``{"groups": [{...}, ...]}`` (what a resumed run compares)."""
        groups = [hyper for _, hyper in self._indexed_groups()]
        return groups[0] if len(groups) == 1 else {"groups": groups}

    def apply_settings(self, settings: Mapping[str, Any]) -> None:
        """Set the hyper-parameters :meth:`settings` returned (checked as the constructor checks them)."""
        groups = settings["groups"] if "groups" in settings else [settings]
        if len(groups) != len(self.param_groups):
            raise StateError(f"{type(self).__name__}: the settings are for {len(groups)} parameter groups, "
                             f"this optimizer has {len(self.param_groups)}")
        checked = []
        for group, values in zip(self.param_groups, groups):
            if set(values) != set(self.defaults):
                raise StateError(f"{type(self).__name__}: the settings name {sorted(values)}, this optimizer "
                                 f"has {sorted(self.defaults)}")
            checked.append(self.check({k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}))
        for group, values in zip(self.param_groups, checked):
            group.update(values)

    def state_dict(self) -> dict[str, Any]:
        """The groups (their parameters by index and their hyper-parameters), step counts (JSON-able)
        and the per-parameter state as host NumPy arrays under ``state[str(index)][slot]``."""
        return {
            "type": type(self).__name__,
            "groups": [{"params": indices, **hyper} for indices, hyper in self._indexed_groups()],
            "steps": list(self.steps),
            "state": {str(i): {k: _backend.to_host(v) for k, v in s.items()} for i, s in enumerate(self.state) if s},
        }

    def load_state_dict(self, d: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned, onto the parameters' backend and dtype. The
        groups must hold the same parameters as this optimizer's (a state of one group without
        ``groups``, as nnx wrote before groups, fits an optimizer of one group)."""
        name = type(self).__name__
        if d.get("type") != name:
            raise StateError(f"{name}.load_state_dict got the state of a {d.get('type')!r}")
        if len(d["steps"]) != len(self.params):
            raise StateError(f"{name}.load_state_dict: the state is for {len(d['steps'])} parameters, "
                             f"this optimizer has {len(self.params)}")
        saved = d["groups"] if "groups" in d else [{"params": list(range(len(self.params))), "lr": d["lr"],
                                                    **d["hyper"]}]
        layout = [indices for indices, _ in self._indexed_groups()]
        if [g.get("params") for g in saved] != layout:
            raise StateError(f"{name}.load_state_dict: the state's parameter groups hold parameters "
                             f"{[g.get('params') for g in saved]}, this optimizer's {layout}")
        try:  # the constructor's own checks judge the saved values (a negative lr, a beta of 1, NaN)
            self.apply_settings({"groups": [{k: v for k, v in g.items() if k != "params"} for g in saved]})
        except (TypeError, ValueError, KeyError) as exc:
            raise StateError(f"{name}.load_state_dict: the saved settings are invalid: {exc}") from None
        if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in d["steps"]):
            raise StateError(f"{name}.load_state_dict: the step counts must be non-negative ints")
        state: list[dict[str, Any]] = [{} for _ in self.params]
        for key, slots in d["state"].items():
            p = self.params[int(key)]
            for slot, value in slots.items():
                if tuple(value.shape) != p.shape:
                    raise ShapeError(f"{name}.load_state_dict: slot {slot!r} of parameter {key} has shape "
                                     f"{tuple(value.shape)}, the parameter has {p.shape}")
                state[int(key)][slot] = _backend.to_device(value, _backend.backend_of(p.data),
                                                           _backend.dtype_name(p.data))
        self.steps = list(d["steps"])
        self.state = state

    def __repr__(self) -> str:
        groups = [", ".join(f"{k}={v}" for k, v in g.items() if k != "params") for g in self.param_groups]
        if len(groups) == 1:
            return f"{type(self).__name__}({groups[0]})"
        return f"{type(self).__name__}({'; '.join(f'group {i}: {g}' for i, g in enumerate(groups))})"


def _zeros(slots: dict[str, Any], name: str, like: Any) -> Any:
    """State slot ``name``, created as zeros like ``like`` on first use."""
    slot = slots.get(name)
    if slot is None:
        slot = slots[name] = _backend.namespace_of(like).zeros_like(like)
    return slot


def _follow(data: Any, slots: dict[str, Any]) -> None:
    """Move or cast state arrays onto their parameter's backend and dtype (after a ``model.to(...)``)."""
    for name, value in slots.items():
        if type(value) is not type(data) or value.dtype != data.dtype:
            slots[name] = _backend.to_device(value, _backend.backend_of(data), _backend.dtype_name(data))


def _nonneg(owner: str, hyper: Mapping[str, Any], *names: str) -> dict[str, float]:
    out = {}
    for name in names:
        v = hyper[name]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
            raise ValueError(f"{owner} {name} must be >= 0, got {v!r}")
        out[name] = float(v)
    return out


def _beta(owner: str, name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
        raise ValueError(f"{owner} {name} must be in [0, 1), got {v!r}")
    return float(v)


def _betas(owner: str, betas: Any) -> tuple[float, float]:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"{owner} betas must be a pair (beta1, beta2), got {betas!r}")
    return _beta(owner, "betas[0]", betas[0]), _beta(owner, "betas[1]", betas[1])


class SGD(Optimizer):
    """Gradient descent, optionally with momentum, Nesterov momentum and L2 weight decay.

    With ``g = grad + weight_decay * p``: plain ``p -= lr * g``; with momentum
    ``b = momentum * b + g`` (``b = g`` on the first step) and
    ``p -= lr * b``, or ``p -= lr * (g + momentum * b)`` with ``nesterov=True``
    (Sutskever et al. 2013, in the form PyTorch uses).
    """

    def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)

    def check(self, hyper: Mapping[str, Any]) -> dict[str, Any]:
        hyper = {**super().check(hyper), **_nonneg("SGD", hyper, "momentum", "weight_decay")}
        hyper["nesterov"] = bool(hyper["nesterov"])
        if hyper["nesterov"] and hyper["momentum"] == 0:
            raise ValueError("SGD nesterov=True needs a momentum > 0")
        return hyper

    def _rule(self, p: Any, grad: Any, slots: dict[str, Any], step: int, group: Mapping[str, Any]) -> Any:
        p, buf = ops.sgd_update(p, grad, slots.get("momentum"), group["lr"], group["momentum"],
                                group["weight_decay"], group["nesterov"])
        if buf is not None:
            slots["momentum"] = buf
        return p


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015), with optional L2 ``weight_decay`` added to the gradient.

    ``m = b1 m + (1-b1) g``, ``v = b2 v + (1-b2) g^2``,
    ``p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)``.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def check(self, hyper: Mapping[str, Any]) -> dict[str, Any]:
        owner = type(self).__name__
        return {**super().check(hyper), "betas": _betas(owner, hyper["betas"]),
                **_nonneg(owner, hyper, "eps", "weight_decay")}

    def _decay(self, p: Any, grad: Any, group: Mapping[str, Any]) -> tuple[Any, Any]:
        """Adam couples the decay into the gradient (L2); AdamW overrides this."""
        wd = group["weight_decay"]
        return p, (grad + wd * p if wd else grad)

    def _rule(self, p: Any, grad: Any, slots: dict[str, Any], step: int, group: Mapping[str, Any]) -> Any:
        p, g = self._decay(p, grad, group)
        (b1, b2) = group["betas"]
        p, slots["exp_avg"], slots["exp_avg_sq"] = ops.adam_update(
            p, g, _zeros(slots, "exp_avg", p), _zeros(slots, "exp_avg_sq", p), group["lr"], b1, b2, group["eps"], step)
        return p


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019).

    Before the Adam step, ``p -= lr * weight_decay * p``: the decay does not go
    through the moment estimates. In the paper's notation (schedule multiplier
    ``eta_t``, step size ``alpha``, decay ``lambda``): ``lr = eta_t * alpha`` and
    ``lambda = alpha * weight_decay``, so a schedule that changes ``lr`` scales
    the decay too, as ``eta_t`` does in the paper.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2) -> None:
        super().__init__(params, lr, betas, eps, weight_decay)

    def _decay(self, p: Any, grad: Any, group: Mapping[str, Any]) -> tuple[Any, Any]:
        if group["weight_decay"]:
            p *= 1.0 - group["lr"] * group["weight_decay"]
        return p, grad


class RMSProp(Optimizer):
    """RMSProp (Tieleman & Hinton, 2012): ``v = alpha v + (1-alpha) g^2``,
    ``p -= lr * g / (sqrt(v) + eps)``; with ``momentum``, ``b = momentum b + g / (sqrt(v) + eps)``
    and ``p -= lr * b``. ``weight_decay`` adds L2 to the gradient."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 momentum: float = 0.0, weight_decay: float = 0.0) -> None:
        super().__init__(params, lr=lr, alpha=alpha, eps=eps, momentum=momentum, weight_decay=weight_decay)

    def check(self, hyper: Mapping[str, Any]) -> dict[str, Any]:
        return {**super().check(hyper), "alpha": _beta("RMSProp", "alpha", hyper["alpha"]),
                **_nonneg("RMSProp", hyper, "eps", "momentum", "weight_decay")}

    def _rule(self, p: Any, grad: Any, slots: dict[str, Any], step: int, group: Mapping[str, Any]) -> Any:
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * p
        buf = _zeros(slots, "momentum", p) if group["momentum"] else None
        p, slots["square_avg"], buf = ops.rmsprop_update(p, grad, _zeros(slots, "square_avg", p), buf, group["lr"],
                                                         group["alpha"], group["eps"], group["momentum"])
        if buf is not None:
            slots["momentum"] = buf
        return p


class Lion(Optimizer):
    """Lion (Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms"): the sign of an
    interpolation of momentum and gradient, with decoupled weight decay.

    ``p -= lr * (sign(b1 m + (1-b1) g) + weight_decay * p)``, then ``m = b2 m + (1-b2) g``.
    Its steps are as large as the learning rate in every coordinate: the paper uses a learning
    rate 3-10x smaller than AdamW's and a weight decay 3-10x larger.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99),
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, lr=lr, betas=betas, weight_decay=weight_decay)

    def check(self, hyper: Mapping[str, Any]) -> dict[str, Any]:
        return {**super().check(hyper), "betas": _betas("Lion", hyper["betas"]),
                **_nonneg("Lion", hyper, "weight_decay")}

    def _rule(self, p: Any, grad: Any, slots: dict[str, Any], step: int, group: Mapping[str, Any]) -> Any:
        b1, b2 = group["betas"]
        p, slots["exp_avg"] = ops.lion_update(p, grad, _zeros(slots, "exp_avg", p), group["lr"], b1, b2,
                                              group["weight_decay"])
        return p


#: layer types whose weights :func:`decay_groups` leaves undecayed by default (lookup tables)
NO_DECAY_LAYERS = ("Embedding", "PositionalEmbedding")


def decay_groups(model: Layer, weight_decay: float, *, no_decay: Iterable[str] = NO_DECAY_LAYERS
                 ) -> list[dict[str, Any]]:
    """The two parameter groups of a transformer recipe: ``[{"params": decayed, "weight_decay":
    weight_decay}, {"params": the rest, "weight_decay": 0.0}]``.

    Decayed are the weights of matrix products, every parameter of two or more dimensions, except
    those of layers named in ``no_decay`` (class names; embeddings by default); biases and norms'
    scales and shifts (one dimension) are not. A parameter shared by several layers (an embedding
    tied to the output head) is decayed if any layer using it would decay it. Each parameter is in
    exactly one group, in ``model.parameters()`` order; an empty group is left out.
    """
    _nonneg("decay_groups", {"weight_decay": weight_decay}, "weight_decay")
    skip = set(no_decay)
    decayed: set[int] = set()
    for _, layer in model.named_modules():
        if type(layer).__name__ not in skip:
            decayed.update(id(p) for _, p in layer._own_parameters() if len(p.shape) >= 2)
    params = model.parameters()
    groups = [{"params": [p for p in params if id(p) in decayed], "weight_decay": float(weight_decay)},
              {"params": [p for p in params if id(p) not in decayed], "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


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
    "Lion",
    "CosineWithWarmup",
    "ExponentialLR",
    "Optimizer",
    "RMSProp",
    "SGD",
    "Schedule",
    "StepLR",
    "clip_grad_norm",
    "decay_groups",
]
