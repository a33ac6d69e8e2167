"""Backend parity: do two backends agree, and if not, where do they first part ways?

:func:`check_parity` trains copies of one model (same weights, same data, same
loss and optimizer) on two or more backends for a few steps, recording every
layer's forward output, every backward gradient (input and parameters) and
every parameter after each update, and compares each backend with the first
one (the reference) in the order the tensors were computed. The report names
the first tensor out of tolerance: step, layer, tensor, errors and ULPs.

Matmuls run in full float32 precision on every backend during a check
(:func:`nnx.backend.set_matmul_precision` is set to ``"highest"`` and restored).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from nnx import backend as _backend
from nnx.errors import ParityError
from nnx.layers import Layer, Parameter
from nnx.losses import Loss
from nnx.optim import SGD, Optimizer
from nnx.testing.compare import Comparison, compare, default_rtol, magnitude, per_step

OptimizerFactory = Callable[[list[Parameter]], Optimizer]


@dataclass(frozen=True)
class TensorCheck:
    """One compared tensor: where it comes from and the verdict.

    ``phase`` is ``"forward"`` (a layer's output), ``"loss"`` (its value, or
    ``grad``: d loss / d prediction), ``"backward"`` (a layer's ``input_grad``
    or a parameter's ``<name>.grad``) or ``"update"`` (a parameter after the
    optimizer step, or a buffer such as a running mean after the step). ``layer`` is the index in the model (``None`` for the loss).
    A trace replay (:mod:`nnx.testing.trace`) adds ``"initial"``: a starting parameter or buffer, as step 0.
    """

    step: int
    phase: str
    layer: int | None
    layer_name: str
    tensor: str
    backend: str
    comparison: Comparison

    def where(self) -> str:
        if self.layer is None:
            place = "loss"
        else:
            place = f"layer {self.layer} {self.layer_name}" if self.layer else f"the model {self.layer_name}"
        return f"step {self.step}, {place}, {self.phase} {self.tensor}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "phase": self.phase,
            "layer": self.layer,
            "layer_name": self.layer_name,
            "tensor": self.tensor,
            "backend": self.backend,
            **self.comparison.to_dict(),
        }


@dataclass
class ParityReport:
    """The outcome of :func:`check_parity`.

    ``ok`` is true when every tensor agreed; ``first_failure`` is the earliest
    tensor out of tolerance (``None`` when all agree); ``worst`` maps each
    compared backend to its tensor with the largest error relative to its
    tolerance; ``errors`` maps a backend whose run raised to the message.
    """

    reference: str
    backends: list[str]
    dtype: str
    steps: int
    checked: int
    first_failure: TensorCheck | None
    worst: dict[str, TensorCheck] = field(default_factory=dict)
    losses: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.first_failure is None and not self.errors

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description of the report."""
        return {
            "ok": self.ok,
            "reference": self.reference,
            "backends": list(self.backends),
            "dtype": self.dtype,
            "steps": self.steps,
            "checked": self.checked,
            "first_failure": None if self.first_failure is None else self.first_failure.to_dict(),
            "worst": {name: check.to_dict() for name, check in self.worst.items()},
            "losses": self.losses,
            "errors": dict(self.errors),
        }

    def __str__(self) -> str:
        others = ", ".join(b for b in self.backends if b != self.reference)
        head = f"{self.reference} vs {others}, {self.dtype}, {self.steps} step(s), {self.checked} tensors"
        if self.ok:
            worst = max(self.worst.values(), key=lambda c: c.comparison.score, default=None)
            tail = ""
            if worst is not None and worst.comparison.max_abs == 0:
                tail = "; every tensor identical, bit for bit"
            elif worst is not None:
                c = worst.comparison
                ulp = "" if c.ulps is None else f", {c.ulps:.0f} ulp"
                tail = f"; largest difference: max rel error {c.max_rel:.2g}{ulp} ({worst.backend}: {worst.where()})"
            return f"agree: {head}{tail}"
        lines = [f"DIFFER: {head}"]
        for name, message in self.errors.items():
            lines.append(f"  {name} raised: {message}")
        if self.first_failure is not None:
            f = self.first_failure
            lines.append(f"  first difference on {f.backend}: {f.where()}")
            lines.append(f"    {f.comparison.describe()}")
        return "\n".join(lines)


def clone_to(obj: Layer | Loss, name: str) -> Any:
    """A deep copy of a model (or loss) with its parameters and buffers copied onto backend ``name``.

    Arrays go through the host unchanged, so every clone starts bit-identical;
    host generators (dropout) are copied too, so every clone draws the same
    masks; gradients and what forwards kept for backward are not copied.
    """
    memo: dict[int, Any] = {id(obj._saved): None}
    if isinstance(obj, Layer):
        for _, layer in obj.named_modules():
            memo[id(layer._saved)] = None
        for _, p in obj.named_parameters():
            memo[id(p.data)], memo[id(p.grad)] = _backend.to_host(p.data), None
        for _, buffer in obj.named_buffers():
            memo[id(buffer)] = _backend.to_host(buffer)
    clone = copy.deepcopy(obj, memo)
    return clone.to(name) if isinstance(clone, Layer) else clone


Key = tuple[int, str, "str | None", str, str]


def _label(layer: Layer) -> str:
    return type(layer).__name__ if layer.children() else repr(layer)


def _trace(model: Layer, loss: Loss, make_optimizer: OptimizerFactory, x: Any, y: Any,
           steps: int, record: Callable[..., None]) -> None:
    """Train ``steps`` steps, passing every layer's every tensor to ``record``.

    A forward output is recorded with the layer's input and a gradient with the
    gradient the layer received, as the context its tolerance is scaled by.
    Layers inside layers are recorded too, innermost first.
    """
    labels = {path: _label(layer) for path, layer in model.named_modules()}
    optimizer = make_optimizer(model.parameters())
    step = 0

    def watch(path: str, layer: Layer, method: str, arg: Any, result: Any) -> None:
        if method == "forward":
            record((step, "forward", path, labels[path], "output"), result, arg)
            return
        if isinstance(result, tuple):  # one per input (cross-attention: query, key, value; a decoder: x, memory)
            for i, part in enumerate(result):
                record((step, "backward", path, labels[path], f"input_grad.{i}"), part, arg)
        elif result is not None:  # integer inputs (an Embedding's indices) have no gradient
            record((step, "backward", path, labels[path], "input_grad"), result, arg)
        for pname, p in layer.named_parameters():
            if "." not in pname:  # the layer's own parameters; those inside it were recorded already
                record((step, "backward", path, labels[path], f"{pname}.grad"), p.grad, arg)

    with model.observe(watch, methods=("forward", "backward")):
        for step in range(1, steps + 1):
            optimizer.zero_grad()
            h = model.forward(x)
            value = loss.forward(h, y)
            record((step, "loss", None, repr(loss), "value"), value)
            g = loss.backward()
            record((step, "loss", None, repr(loss), "grad"), g)
            model.backward(g)
            optimizer.step()
            for tensors in (((n, p.data) for n, p in model.named_parameters()), model.named_buffers()):
                for name, value in tensors:
                    path, _, local = name.rpartition(".")
                    record((step, "update", path, labels[path], local), value)


def collect(name: str, model: Layer, loss: Loss, make_optimizer: OptimizerFactory, x: Any, y: Any,
            steps: int, entries: list[tuple[Key, Any, float]]) -> None:
    """Train copies of ``model`` and ``loss`` on backend ``name``, appending every tensor to ``entries``
    as (key, host array, context magnitude); an error of the run propagates."""

    def record(key: Key, value: Any, context: Any = None) -> None:
        host = None if context is None else _backend.to_host(context)
        # integer context (an Embedding's token ids) has no magnitude that rounding scales with
        scale = 0.0 if host is None or host.dtype.kind in "iub" else magnitude(host)
        entries.append((key, _backend.to_host(value), scale))

    with _backend.use(name):
        _trace(clone_to(model, name), clone_to(loss, name), make_optimizer,
               _backend.to_device(x, name), _backend.to_device(y, name), steps, record)


def _run(name: str, model: Layer, loss: Loss, make_optimizer: OptimizerFactory, x: Any, y: Any,
         steps: int) -> tuple[list[tuple[Key, Any, float]], str | None]:
    """One backend's trace on the host (key, array, context magnitude), and the error if the run raised."""
    entries: list[tuple[Key, Any, float]] = []
    try:
        collect(name, model, loss, make_optimizer, x, y, steps, entries)
    except Exception as exc:  # a backend that cannot run the model is a parity failure
        return entries, f"{type(exc).__name__}: {exc}"
    return entries, None


def check_parity(
    model: Layer,
    loss: Loss,
    x: Any,
    y: Any,
    *,
    backends: Sequence[str] | None = None,
    steps: int = 3,
    optimizer: OptimizerFactory | None = None,
    rtol: float | None = None,
    atol: float | None = None,
) -> ParityReport:
    """Train copies of ``model`` on each backend for ``steps`` steps and compare them tensor by tensor.

    ``backends`` defaults to every backend available here; the first is the
    reference. ``optimizer`` builds the optimizer from a parameter list
    (default: ``SGD(params, lr=0.1)``). ``x`` and ``y`` are copied onto each
    backend with their dtype unchanged; ``model`` and ``loss`` are not modified.

    Tolerances are per step: at step ``k`` a tensor may differ by ``k`` times
    ``rtol`` (and ``atol``), because every step adds its own rounding to the
    state the next one starts from. ``rtol`` defaults per dtype (float64
    ``1e-12``, float32 ``1e-5``) and ``atol`` to ``rtol`` times the largest
    magnitude of the tensor or of what the layer computed it from (its input
    for a forward output, the gradient it received for a gradient): a
    gradient that cancels to rounding noise, such as a bias's just before a
    batch norm, is judged against the gradient it was summed from.
    """
    names = list(backends) if backends is not None else [
        n for n, reason in _backend.available().items() if reason is None
    ]
    if len(names) < 2:
        raise ValueError(f"parity needs two or more backends, got {names}")
    if steps < 1:
        raise ValueError(f"parity needs steps >= 1, got {steps}")
    rtol = None if rtol is None else per_step(rtol, "rtol", "check_parity", steps)
    atol = None if atol is None else per_step(atol, "atol", "check_parity", steps)
    for name in names:
        _backend.get(name)  # unknown or unavailable backends fail here, with the reason
    make_optimizer = optimizer or (lambda params: SGD(params, lr=0.1))
    saved = {n: _backend.set_matmul_precision("highest", n) for n in names}
    try:
        runs = {n: _run(n, model, loss, make_optimizer, x, y, steps) for n in names}
    finally:
        for n, precision in saved.items():
            _backend.set_matmul_precision(precision, n)
    reference = names[0]
    ref_entries, ref_error = runs[reference]
    report = ParityReport(reference, names, _backend.dtype_name(model.parameters()[0].data)
                          if model.parameters() else "unknown", steps, 0, None)
    if ref_error is not None:
        report.errors[reference] = ref_error
    for name in names:
        report.losses[name] = [float(v) for k, v, _ in runs[name][0] if k[1] == "loss" and k[4] == "value"]

    def tolerance(key: Key, expected: Any) -> tuple[float, float | None]:
        step = key[0]
        base = default_rtol(expected.dtype) if rtol is None else rtol
        return base * step, None if atol is None else atol * step

    judge(report, ref_entries, {n: runs[n] for n in names[1:]}, tolerance)
    return report


def judge(report: ParityReport, reference: list[tuple[Key, Any, float]],
          runs: dict[str, tuple[list[tuple[Key, Any, float]], str | None]],
          tolerance: Callable[[Key, Any], tuple[float, float | None]]) -> None:
    """Compare each run's entries with the reference's, in order, into ``report`` (its checked count,
    worst tensor per backend, first failure and errors). ``tolerance(key, expected)`` gives the
    (rtol, atol) of one tensor; the reference's context magnitude scales a default atol."""
    first: tuple[int, TensorCheck] | None = None
    for name, (entries, error) in runs.items():
        if error is not None:
            report.errors[name] = error
        for position, ((key, expected, scale), (other_key, actual, _)) in enumerate(zip(reference, entries)):
            if key[:3] + key[4:] != other_key[:3] + other_key[4:]:  # different tensors: report, do not guess
                report.errors[name] = f"recorded {other_key} where {report.reference} recorded {key}"
                break
            rtol, atol = tolerance(key, expected)
            check = TensorCheck(*key, backend=name, comparison=compare(actual, expected, rtol, atol, scale))
            report.checked += 1
            worst = report.worst.get(name)
            if worst is None or check.comparison.score > worst.comparison.score:
                report.worst[name] = check
            if not check.comparison.ok and (first is None or position < first[0]):
                first = (position, check)
        if error is None and len(entries) != len(reference) and name not in report.errors:
            report.errors[name] = (f"recorded {len(entries)} tensors where {report.reference} "
                                   f"recorded {len(reference)}")
    report.first_failure = None if first is None else first[1]


def assert_parity(*args: Any, **kwargs: Any) -> ParityReport:
    """:func:`check_parity`, raising :class:`~nnx.errors.ParityError` with the report unless all agree."""
    report = check_parity(*args, **kwargs)
    if not report.ok:
        raise ParityError(str(report))
    return report


__all__ = [
    "ParityReport",
    "TensorCheck",
    "assert_parity",
    "check_parity",
    "clone_to",
]
