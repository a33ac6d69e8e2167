"""Mixed precision: float32 master weights, compute in float16 or bfloat16, the fragile work in float32.

A :class:`Precision` policy is opt-in and one argument:
``nnx.fit(..., precision="float16")``, ``nnx.train_step(..., precision=policy)``,
``nnx train --precision bfloat16``. The model's parameters stay float32 (the
*master weights*: the optimizer updates them, and saving, evaluation and
prediction see a plain float32 model). For each step, :meth:`Precision.compute`
gives the layers float16 or bfloat16 copies of their weights and the inputs are
cast, so the forward and the backward run in the low dtype.

What stays in float32, and why (:data:`FLOAT32_WORK`; PyTorch's autocast keeps
similar lists):

* the losses: the model's output is cast to float32 first (a log-sum-exp and a
  mean over the batch need float32's range and digits);
* softmax, as a layer and inside attention (:func:`nnx.ops.softmax` widens any
  float16 or bfloat16 input): ``exp`` overflows float16 above 11, and the
  normalising sum loses digits;
* the norm layers and the preprocessing layers (:data:`FLOAT32_LAYERS`): their
  inputs and gradients are cast to float32 around them and their parameters
  and buffers stay float32, because a variance is a mean of squares (it
  overflows float16 and cancels badly), running statistics add updates too
  small for 8 bits of mantissa, and raw data may exceed float16's range;
* the optimizer: it updates the float32 master weights from float32 gradients,
  so its state (momenta, moment estimates) is float32 as well;
* dividing the gradients by the loss scale and the overflow check (:mod:`nnx.scaler`).

Matrix products and sums over a batch stay in the low dtype: the libraries
accumulate them wider (NumPy's float16 matmul and mean, PyTorch's CPU kernels,
cuBLAS with float32 compute).

float16 needs loss scaling (:class:`~nnx.scaler.LossScaler`, on by default):
without it, gradients below 6e-8 become zero. bfloat16 has float32's exponent
range and needs none.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping

from nnx import backend as _backend
from nnx.errors import ConfigError, DTypeError
from nnx.layers import BatchNorm1d, BatchNorm2d, Destandardize, Layer, LayerNorm, RMSNorm, Standardize
from nnx.optim import Optimizer
from nnx.scaler import LossScaler

#: layer types that run in float32 under a policy (inputs and gradients cast around them)
FLOAT32_LAYERS: tuple[type, ...] = (LayerNorm, RMSNorm, BatchNorm1d, BatchNorm2d, Standardize, Destandardize)

#: what a policy keeps in float32, and why
FLOAT32_WORK: dict[str, str] = {
    "losses": "the output is cast to float32 before the loss: log-sum-exp and the batch mean need the range",
    "softmax": "exp overflows float16 above 11 and the normalising sum loses digits (nnx.ops.softmax widens)",
    "LayerNorm, RMSNorm, BatchNorm1d, BatchNorm2d": ("a variance is a mean of squares: it overflows float16 and "
                                                     "cancels; running statistics take updates too small for a "
                                                     "16-bit mantissa"),
    "Standardize, Destandardize": "raw data and targets may exceed float16's range (65504)",
    "optimizer": "master weights, their gradients and the optimizer's state are float32: small updates to "
                 "large weights round away in 16 bits",
    "loss scaling": "gradients are divided by the scale and checked for overflow in float32",
}


class Precision:
    """A mixed-precision policy: compute in ``dtype``, keep float32 master weights.

    Parameters
    ----------
    dtype : {"float16", "bfloat16"}
        The dtype the layers compute in.
    scaler : LossScaler, bool or None
        float16's loss scaling: ``None`` (default) makes a :class:`~nnx.scaler.LossScaler`
        with PyTorch's defaults for float16 and none for bfloat16; pass one to choose its
        settings. float16 without scaling is refused (its gradients underflow).

    For a loop of your own, ``nnx.train_step(model, loss, opt, x, y, precision=policy)`` is
    the whole step; its parts are :meth:`compute`, :meth:`cast`, :meth:`scale_gradient`,
    :meth:`unscale` and :meth:`step`.
    """

    def __init__(self, dtype: str, *, scaler: LossScaler | bool | None = None) -> None:
        if dtype not in _backend.LOW_DTYPES:
            raise ConfigError(f"precision must be one of {', '.join(_backend.LOW_DTYPES)} (or 'float32' / None for "
                              f"no mixed precision), got {dtype!r}")
        if dtype == "float16" and scaler is False:
            raise ConfigError("float16 needs loss scaling: gradients below 6e-8 become zero in float16 and the "
                              "run silently stops learning; keep the default scaler (Precision('float16')), or "
                              "use bfloat16, which has float32's range and needs no scaling")
        if scaler is None or scaler is True:
            scaler = LossScaler() if dtype == "float16" or scaler is True else None
        elif scaler is not False and not isinstance(scaler, LossScaler):
            raise ConfigError(f"Precision scaler must be a LossScaler, True, False or None, got {scaler!r}")
        self.dtype = dtype
        self.scaler: LossScaler | None = scaler or None
        self._low: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"Precision({self.dtype!r}{', no loss scaling' if self.scaler is None else ''})"

    def low_dtype(self, like: Any) -> Any:
        """The compute dtype on the backend of the array ``like`` (:class:`~nnx.errors.DTypeError` if it has none)."""
        name = _backend.backend_of(like)
        low = self._low.get(name)
        if low is None:
            low = self._low[name] = _backend.low_dtype(name, self.dtype)
        return low

    def check(self, model: Layer) -> None:
        """Refuse a model this policy cannot train: a backend without the dtype, weights not float32."""
        params = model.parameters()
        if not params:
            return
        self.low_dtype(params[0].data)
        wrong = sorted({_backend.dtype_name(p.data) for p in params} - {"float32"})
        if wrong:
            raise DTypeError(f"mixed precision keeps float32 master weights, but the model has {', '.join(wrong)} "
                             f"parameters; build it in float32 or cast it with model.to(dtype='float32')")

    @contextlib.contextmanager
    def compute(self, model: Layer) -> Iterator[None]:
        """Inside the block the layers hold copies of their weights in the low dtype, except
        :data:`FLOAT32_LAYERS`, which run in float32 between casts. Gradients accumulate on
        the parameters in the dtype each layer computed in; the float32 weights are back after
        the block (also after an error)."""
        swapped: list[tuple[Any, Any]] = []
        wrapped: list[tuple[Layer, dict[str, Any]]] = []
        seen: set[int] = set()
        try:
            for _, layer in model.named_modules():
                if isinstance(layer, FLOAT32_LAYERS):
                    wrapped.append((layer, _run_in_float32(layer, self.low_dtype)))
                    continue
                for _, p in layer._own_parameters():
                    if id(p) not in seen:  # a parameter two layers share: once
                        seen.add(id(p))
                        swapped.append((p, p.data))
                        p.data = _backend.namespace_of(p.data).astype(p.data, self.low_dtype(p.data))
            yield
        finally:
            for p, master in swapped:
                p.data = master
            for layer, before in wrapped:
                for method in ("forward", "backward"):
                    if method in before:
                        layer.__dict__[method] = before[method]
                    else:
                        layer.__dict__.pop(method, None)

    def cast(self, x: Any) -> Any:
        """A float input in the compute dtype (integer inputs, such as token ids, unchanged)."""
        xp = _backend.namespace_of(x)
        return xp.astype(x, self.low_dtype(x)) if xp.isdtype(x.dtype, ("real floating",)) else x

    def cast_input(self, model: Layer, x: Any) -> Any:
        """The model's input as its first layer takes it inside :meth:`compute`: unchanged when that
        layer runs in float32 (a ``Standardize`` first: raw data may exceed float16's range, and its
        statistics want float32's digits), else :meth:`cast`."""
        for _, layer in model.named_modules():  # the tree in order: the first leaf sees the input
            if isinstance(layer, FLOAT32_LAYERS):
                return x
            if next(iter(layer.named_children()), None) is None:
                break
        return self.cast(x)

    def scale_gradient(self, grad: Any) -> Any:
        """The loss's float32 gradient, times the loss scale (float16), in the compute dtype:
        what the model's backward takes."""
        if self.scaler is not None:
            return self.scaler.scale_gradient(grad, self.low_dtype(grad))
        return _backend.namespace_of(grad).astype(grad, self.low_dtype(grad))

    def unscale(self, optimizer: Optimizer) -> None:
        """The parameters' gradients as float32, divided by the loss scale: what the optimizer takes
        (with float16 they may hold infinities until :meth:`step` judges them)."""
        if self.scaler is not None:
            self.scaler.unscale(optimizer)
            return
        for p in optimizer.params:
            if p.grad is not None:
                xp = _backend.namespace_of(p.grad)
                p.grad = xp.astype(p.grad, xp.float32)

    def step(self, optimizer: Optimizer) -> None:
        """The optimizer's step on the float32 master weights; with loss scaling, skipped on the
        device when a gradient overflowed, and the scale updated."""
        if self.scaler is not None:
            self.scaler.step(optimizer)
        else:
            optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        """The dtype and the loss scaler's state: what a checkpoint keeps to resume exactly."""
        return {"dtype": self.dtype, "scaler": None if self.scaler is None else self.scaler.state_dict()}

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; a state of another dtype or scaling is a :class:`~nnx.errors.ConfigError`."""
        saved = d.get("dtype")
        if saved != self.dtype or (d.get("scaler") is None) != (self.scaler is None):
            raise ConfigError(f"the saved run trained in {saved} {'without' if d.get('scaler') is None else 'with'} "
                              f"loss scaling, this one in {self.dtype} {'without' if self.scaler is None else 'with'}; "
                              f"resume with the saved run's precision")
        if self.scaler is not None:
            self.scaler.load_state_dict(d["scaler"])


def policy(precision: "Precision | str | None") -> Precision | None:
    """``precision`` as a :class:`Precision` (a name makes one), or ``None`` for none (``None``, ``"float32"``)."""
    if precision is None or precision == "float32":
        return None
    if isinstance(precision, Precision):
        return precision
    if isinstance(precision, str):
        return Precision(precision)
    raise ConfigError(f"precision must be 'float16', 'bfloat16', 'float32', None or an nnx.Precision, "
                      f"got {type(precision).__name__}")


def _run_in_float32(layer: Layer, low_dtype: Any) -> dict[str, Any]:
    """Make ``layer`` work in float32 and give its output in the compute dtype (``low_dtype(array)``),
    its input's gradient in the input's dtype (through its instance dict, as :meth:`Layer.observe`
    does); returns what was there before."""
    before = {m: layer.__dict__[m] for m in ("forward", "backward") if m in layer.__dict__}
    forward, backward = layer.forward, layer.backward
    given: list[Any] = []

    def forward32(x: Any, *args: Any, **kwargs: Any) -> Any:
        xp = _backend.namespace_of(x)
        given[:] = [x.dtype]
        y = forward(xp.astype(x, xp.float32, copy=False), *args, **kwargs)
        return xp.astype(y, low_dtype(y))

    def backward32(grad: Any, *, input_grad: bool = True) -> Any:
        xp = _backend.namespace_of(grad)
        dx = backward(xp.astype(grad, xp.float32), input_grad=input_grad)
        return None if dx is None else xp.astype(dx, given[0] if given else grad.dtype, copy=False)

    layer.__dict__["forward"], layer.__dict__["backward"] = forward32, backward32
    return before


__all__ = ["FLOAT32_LAYERS", "FLOAT32_WORK", "LossScaler", "Precision", "policy"]
