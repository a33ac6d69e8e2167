"""The CuPy fast path: fused elementwise kernels and training steps replayed from a CUDA graph.

Opt-in (``nnx.backend.enable_fast_path("cupy")`` installs the kernels;
:class:`GraphedStep` is used explicitly); the generic code is the default and
the reference these are tested against. Only this module knows CuPy's kernel
and graph APIs.

Fused kernels replace chains of generic operations, each a kernel launch and a
temporary array, by one launch: ReLU, sigmoid and tanh forward/backward, and
the whole SGD update (weight decay, momentum, Nesterov) in place.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import cupy as cp

# No fused multiply-add contraction: each kernel then rounds exactly as the generic
# operations it replaces (1 - y*y near |y| = 1 would otherwise differ in many ulps).
_EXACT = ("--fmad=false",)

_relu_fwd = cp.ElementwiseKernel("T x", "T y", "y = x > (T)0 ? x : (T)0", "nnx_relu_fwd", options=_EXACT)
_relu_bwd = cp.ElementwiseKernel("T y, T g", "T d", "d = y > (T)0 ? g : (T)0", "nnx_relu_bwd", options=_EXACT)
_sigmoid_fwd = cp.ElementwiseKernel(
    "T x, T cut", "T s", "s = (T)1 / ((T)1 + exp(-(x > -cut ? x : -cut)))", "nnx_sigmoid_fwd", options=_EXACT
)
_sigmoid_bwd = cp.ElementwiseKernel("T s, T g", "T d", "d = g * (s * ((T)1 - s))", "nnx_sigmoid_bwd", options=_EXACT)
_tanh_bwd = cp.ElementwiseKernel("T y, T g", "T d", "d = g * ((T)1 - y * y)", "nnx_tanh_bwd", options=_EXACT)
_sgd_plain = cp.ElementwiseKernel(
    "T g, T lr, T wd", "T p", "p -= lr * (wd != (T)0 ? g + wd * p : g)", "nnx_sgd_plain", options=_EXACT
)
_sgd_momentum = cp.ElementwiseKernel(
    "T g, T lr, T mu, T wd, bool nesterov",
    "T p, T b",
    """
    T gg = wd != (T)0 ? g + wd * p : g;
    b = mu * b + gg;
    p -= lr * (nesterov ? gg + mu * b : b);
    """,
    "nnx_sgd_momentum",
    options=_EXACT,
)


def relu_forward(x: Any) -> Any:
    return _relu_fwd(x)


def relu_backward(y: Any, g: Any) -> Any:
    return _relu_bwd(y, g)


def sigmoid_forward(x: Any, cut: float) -> Any:
    return _sigmoid_fwd(x, x.dtype.type(cut))


def sigmoid_backward(s: Any, g: Any) -> Any:
    return _sigmoid_bwd(s, g)


def tanh_backward(y: Any, g: Any) -> Any:
    return _tanh_bwd(y, g)


def sgd_update(p: Any, g: Any, buf: Any, lr: float, momentum: float, weight_decay: float, nesterov: bool) -> None:
    """One SGD update in place on ``p`` (and ``buf``, the momentum, when given)."""
    t = p.dtype.type
    if buf is None:
        _sgd_plain(g, t(lr), t(weight_decay), p)
    else:
        _sgd_momentum(g, t(lr), t(momentum), t(weight_decay), bool(nesterov), p, buf)


def kernels() -> tuple[type, dict[str, Callable[..., Any]]]:
    """The array type these kernels serve and the operations by name (compiled on first use)."""
    ops = {
        "relu_forward": relu_forward,
        "relu_backward": relu_backward,
        "sigmoid_forward": sigmoid_forward,
        "sigmoid_backward": sigmoid_backward,
        "tanh_backward": tanh_backward,
        "sgd_update": sgd_update,
    }
    return cp.ndarray, ops


class GraphedStep:
    """``nnx.train_step`` captured once per input shape in a CUDA graph, then replayed.

    A small-batch step launches dozens of short kernels; a graph replays them
    with one launch. Call it like ``train_step``::

        step = GraphedStep(model, loss, optimizer)
        for x, y in batches:
            value, output = step(model, loss, optimizer, x, y)

    The first ``warmup`` calls run eagerly (they create the optimizer's state
    and compile kernels); then each new input shape is captured once. Inputs
    are copied into fixed buffers, parameters and optimizer state are updated
    in place, and ``value``/``output`` are fixed arrays overwritten by the next
    call. A change of learning rate, or arrays replaced behind the graph's back
    (``model.to``, ``load_state_dict``), triggers a new capture.

    Limits, checked: the optimizer must be :class:`nnx.optim.SGD` (its update
    depends on no host-side step count). Integer class targets are range-checked
    before each replay (one small device-to-host read); the NaN checks of the
    eager step are not part of the graph (see ``nnx.set_finite_checks``).

    CuPy 14 refuses cuBLAS calls inside a stream capture (``NotImplementedError``),
    and every ``Linear`` is one; where it does, the first capture fails, the step
    warns once and runs eagerly from then on (``unsupported`` says why), with
    the fused kernels if they are enabled.
    """

    def __init__(self, model: Any, loss: Any, optimizer: Any, warmup: int = 2) -> None:
        from nnx.optim import SGD

        if type(optimizer) is not SGD:
            raise TypeError(
                f"GraphedStep supports nnx.optim.SGD only (its update uses no host-side step count); "
                f"got {type(optimizer).__name__}: use nnx.train_step for it"
            )
        self.model, self.loss, self.optimizer = model, loss, optimizer
        if int(warmup) < 1:
            raise ValueError(f"GraphedStep needs warmup >= 1 (the first step creates the optimizer's state), got {warmup}")
        self.warmup = int(warmup)
        self._calls = 0
        self.unsupported: str | None = None  # why capturing failed; then every step runs eagerly
        self._graphs: dict[tuple[Any, ...], dict[str, Any]] = {}

    def _identity(self) -> tuple[Any, ...]:
        opt = self.optimizer
        return (opt.lr, tuple(id(p.data) for p in opt.params),
                tuple(id(s.get("momentum")) for s in opt.state))

    def _check_targets(self, y: Any, classes: int) -> None:
        if y.dtype.kind not in "iu":
            return
        if bool(cp.any((y < 0) | (y >= classes))):
            from nnx.errors import TargetError

            lo, hi = int(y.min()), int(y.max())
            raise TargetError(
                f"GraphedStep expected class indices in [0, {classes}), got values from {lo} to {hi}; "
                f"check the labels or the number of output units"
            )

    def _targets(self, y: Any, classes: int, dtype: Any, out: Any = None) -> Any:
        """Class indices as float one-hot rows (the loss's float path needs no host sync)."""
        if y.dtype.kind not in "iu":
            return y if out is None else _assign(out, y)
        onehot = (y[:, None] == cp.arange(classes, dtype=y.dtype)).astype(dtype)
        return onehot if out is None else _assign(out, onehot)

    def _capture(self, x: Any, y: Any) -> dict[str, Any]:
        from nnx.layers.base import set_finite_checks
        from nnx.train import train_step

        opt = self.optimizer
        if opt.momentum and any(s.get("momentum") is None for s in opt.state):
            raise RuntimeError("GraphedStep must capture after the optimizer's first step (warmup >= 1)")
        steps, eager_grads = list(opt.steps), [p.grad for p in opt.params]
        cp.cuda.get_current_stream().synchronize()
        pool = cp.cuda.MemoryPool()  # the graph's own memory: nothing else may reuse it
        stream = cp.cuda.Stream(non_blocking=True)
        grads: list[Any] = []
        try:
            with cp.cuda.using_allocator(pool.malloc):
                sx = x.copy()
                sy = self._targets(y, self._classes(x), x.dtype).copy()
                old = set_finite_checks(False)
                try:
                    with stream:
                        stream.begin_capture()
                        try:
                            value, output = train_step(self.model, self.loss, self.optimizer, sx, sy)
                        except BaseException:
                            _end_quietly(stream)
                            raise
                        graph = stream.end_capture()
                finally:
                    set_finite_checks(old)
            stream.synchronize()
            grads = [p.grad for p in opt.params]
        finally:  # capturing ran nothing: the step counts, gradients and saved state stay the eager ones
            opt.steps = steps
            for p, g in zip(opt.params, eager_grads):
                p.grad = g
            _forget_saved(self.model)
            _forget_saved(self.loss)
        return {"graph": graph, "pool": pool, "x": sx, "y": sy, "value": value, "output": output,
                "grads": grads, "identity": self._identity()}

    def __call__(self, model: Any, loss: Any, optimizer: Any, x: Any, y: Any) -> tuple[Any, Any]:
        if model is not self.model or loss is not self.loss or optimizer is not self.optimizer:
            raise ValueError("GraphedStep was built for another model, loss or optimizer")
        from nnx.train import train_step

        if self._calls < self.warmup or self.unsupported is not None:
            self._calls += 1
            return train_step(model, loss, optimizer, x, y)
        key = (tuple(x.shape), x.dtype.str, tuple(y.shape), y.dtype.str)
        entry = self._graphs.get(key)
        if entry is None or entry["identity"] != self._identity():
            if entry is not None:  # arrays or lr changed behind the graph: run eagerly, then capture anew
                del self._graphs[key]
                return train_step(model, loss, optimizer, x, y)
            out = train_step(model, loss, optimizer, x, y)  # this batch, eagerly; the graph starts next call
            try:
                self._graphs[key] = self._capture(x, y)
            except NotImplementedError as exc:  # CuPy refuses a call (cuBLAS) inside a capture
                self.unsupported = f"{type(exc).__name__}: {exc}"
                warnings.warn(
                    f"GraphedStep cannot capture this step ({self.unsupported}); it runs the steps eagerly",
                    RuntimeWarning, stacklevel=2,
                )
            return out
        classes = entry["output"].shape[-1]
        self._check_targets(y, classes)
        _assign(entry["x"], x)
        self._targets(y, classes, x.dtype, out=entry["y"])
        entry["graph"].launch()
        for i in range(len(optimizer.steps)):
            optimizer.steps[i] += 1
        self._restore(entry)
        return entry["value"], entry["output"]

    def _classes(self, x: Any) -> int:
        """The number of output units (classes) for inputs like ``x``."""
        shape = self.model.output_shape(tuple(x.shape))
        return int(shape[-1])

    def _restore(self, entry: dict[str, Any]) -> None:
        """Point the parameters' ``grad`` at the graph's gradient arrays (what it just computed)."""
        for p, g in zip(self.optimizer.params, entry["grads"]):
            p.grad = g


def _assign(out: Any, value: Any) -> Any:
    """Copy ``value`` into the fixed array ``out`` on the current stream."""
    out[...] = value
    return out


def _end_quietly(stream: Any) -> None:
    """End a capture that failed part-way; its partial graph is dropped."""
    try:
        stream.end_capture()
    except Exception:
        pass


def _forget_saved(layer: Any) -> None:
    """Drop what a (captured, never run) forward saved, in ``layer`` and the layers inside it."""
    layer._saved = None
    for child in layer.children():
        _forget_saved(child)
