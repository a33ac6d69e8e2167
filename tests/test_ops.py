"""The ops table: generic ops, backend overrides with the same signatures and values, and dispatch.

Each override is run against the generic op it stands in for, on the same
inputs, NaN, infinities and signed zeros included. Where a backend with
overrides cannot run here (CuPy without a GPU), its value tests skip with
the reason; the signature check needs no GPU.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import numpy as np
import pytest

import nnx
from nnx import ops
from nnx.backend import numpy_ops
from nnx.testing import compare

SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-300, -1e-300, 1e300, -1e300, 30.0, -30.0, 1000.0])


def _values(seed: int, shape: tuple[int, ...] = (5, 12), special: bool = True) -> np.ndarray:
    a = np.random.default_rng(seed).normal(scale=3.0, size=shape)
    if special:
        a[0, :SPECIAL.size] = SPECIAL
    return a


def _positive(seed: int) -> np.ndarray:
    return np.abs(_values(seed, special=False)) + 0.1


# op name -> host arguments (arrays as float64 NumPy, scalars as they are)
CASES: dict[str, Callable[[], tuple[Any, ...]]] = {
    "all_finite": lambda: (_values(45),),
    "sigmoid": lambda: (_values(0),),
    "sigmoid_backward": lambda: (1 / (1 + np.exp(-_values(1, special=False))), _values(2)),
    "tanh": lambda: (_values(3),),
    "tanh_backward": lambda: (np.tanh(_values(4)), _values(5)),
    "relu": lambda: (_values(6),),
    "relu_backward": lambda: (np.maximum(_values(7), 0.0), _values(8)),
    "leaky_relu": lambda: (_values(9), 0.1),
    "leaky_relu_backward": lambda: (_values(10), _values(11), 0.1),
    "gelu": lambda: (_values(12),),
    "gelu_backward": lambda: (_values(13), _values(14)),
    "silu": lambda: (_values(62),),
    "silu_backward": lambda: (_values(63), _values(64)),
    "softmax": lambda: (_values(15, special=False), -1),
    "softmax_backward": lambda: (np.full((5, 12), 1 / 12), _values(16), -1),
    "sgd_update": lambda: (_values(17, special=False), _values(18), _values(19, special=False), 0.1, 0.9, 0.01, True),
    "adam_update": lambda: (_values(20, special=False), _values(21), _values(22, special=False), _positive(23),
                            1e-3, 0.9, 0.999, 1e-8, 3),
    "rmsprop_update": lambda: (_values(24, special=False), _values(25), _positive(26), _values(27, special=False),
                               1e-2, 0.99, 1e-8, 0.9),
    "lion_update": lambda: (_values(28, special=False), _values(29), _values(30, special=False), 1e-3, 0.9, 0.99, 0.1),
    # a 3x3 kernel over 2 groups of 4 channels, rows 5 wide, 3 output rows (see nnx.layers.windows.Runs)
    "shifted_matmul": lambda: (_values(54, (9, 2, 3, 4), special=False), _values(55, (5, 2, 4, 27), special=False),
                               (0, 1, 2, 5, 6, 7, 10, 11, 12), 15),
}

_RTOL = {"float32": 1e-6, "float64": 1e-14}  # overrides round as the generic operations do


def test_every_op_has_a_case() -> None:
    missing, stale = sorted(set(ops.GENERIC) - set(CASES)), sorted(set(CASES) - set(ops.GENERIC))
    assert not missing, f"add the arguments of ops {missing} to CASES in tests/test_ops.py"
    assert not stale, f"remove the cases {stale} from CASES in tests/test_ops.py: nnx/ops.py has no such op"


@pytest.mark.parametrize("backend_name", ops.backends_with_overrides())
def test_overrides_have_their_ops_signatures(backend_name: str) -> None:
    by_op = ops.overrides_of(backend_name).by_op
    assert by_op, f"{backend_name} registers no overrides"
    for name, fn in by_op.items():
        assert name in ops.GENERIC, f"{backend_name} overrides unknown op {name!r}"
        assert inspect.signature(fn) == inspect.signature(ops.GENERIC[name]), name


def test_the_override_decorator_checks_the_op_and_its_signature() -> None:
    override = ops.Overrides(lambda: _Tagged)
    with pytest.raises(TypeError, match="signature"):
        override(ops.relu)(lambda x, slope: x)
    with pytest.raises(TypeError, match="an op of nnx.ops"):
        override(ops.GENERIC["relu"])
    with pytest.raises(TypeError, match="an op of nnx.ops"):
        override(print)
    assert override.by_op == {}

    @override(ops.relu)
    def relu(x: Any) -> Any:
        return ops.relu.generic(x)

    assert override.by_op == {"relu": relu}


def _on(name: str, args: tuple[Any, ...], backend: str, dtype: str) -> tuple[Any, ...]:
    return tuple(nnx.to_device(a, backend, dtype) if isinstance(a, np.ndarray) else a for a in args)


def _outputs(result: Any) -> list[np.ndarray]:
    results = result if isinstance(result, tuple) else (result,)
    return [np.array([float(r)]) if isinstance(r, bool) else nnx.to_host(r) for r in results if r is not None]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend_name", ops.backends_with_overrides())
def test_overrides_compute_what_the_generic_ops_compute(backend_name: str, dtype: str) -> None:
    reason = nnx.available()[backend_name]
    if reason is not None:
        pytest.skip(f"backend {backend_name!r} unavailable: {reason}")
    overrides = ops.overrides_of(backend_name).by_op
    for name, override in overrides.items():
        args = CASES[name]()
        with np.errstate(all="ignore"):
            expected = _outputs(ops.GENERIC[name](*_on(name, args, backend_name, dtype)))
            actual = _outputs(override(*_on(name, args, backend_name, dtype)))
        assert len(actual) == len(expected), name
        for a, e in zip(actual, expected):
            verdict = compare(a, e, rtol=_RTOL[dtype], atol=1e-30)
            assert verdict.ok, f"{name} ({dtype}): {verdict.describe()}"


def test_generic_ops_agree_across_cpu_backends(nnx_backend: str) -> None:
    """Each generic op on this backend, special values included, against NumPy bit for bit."""
    for name, case in CASES.items():
        args = case()
        with np.errstate(all="ignore"):
            expected = _outputs(ops.GENERIC[name](*_on(name, args, "numpy", "float64")))
            actual = _outputs(getattr(ops, name)(*_on(name, args, nnx_backend, "float64")))
        for a, e in zip(actual, expected):
            if nnx_backend in ("numpy", "array_api_strict"):
                assert np.array_equal(a, e, equal_nan=True), name
            else:
                assert compare(a, e, rtol=1e-12, atol=1e-300).ok, name


def test_special_values_of_the_activations() -> None:
    x = nnx.to_device([[np.nan, np.inf, -np.inf, -0.0]], "numpy", "float64")
    s = nnx.to_host(ops.sigmoid(x))
    assert np.isnan(s[0, 0]) and s[0, 1] == 1.0 and 0.0 <= s[0, 2] < 1e-300 and s[0, 3] == 0.5
    assert np.isnan(nnx.to_host(ops.tanh(x))[0, 0])


class _Tagged(np.ndarray):
    """NumPy arrays of their own type, to register a test override for."""


def test_an_override_replaces_the_op_for_its_array_type_only() -> None:
    calls: list[str] = []

    def relu(x: Any) -> Any:
        calls.append("override")
        return ops.relu.generic(x)

    ops.register_override("relu", _Tagged, relu)
    try:
        plain = np.array([[-1.0, 2.0]])
        assert np.array_equal(ops.relu(plain), [[0.0, 2.0]]) and calls == []
        assert np.array_equal(ops.relu(plain.view(_Tagged)), [[0.0, 2.0]]) and calls == ["override"]
    finally:
        ops.remove_override("relu", _Tagged)
    ops.relu(np.array([1.0]).view(_Tagged))
    assert calls == ["override"]


def test_an_override_with_another_signature_is_refused() -> None:
    with pytest.raises(TypeError, match="signature"):
        ops.register_override("relu", _Tagged, lambda x, slope: x)
    with pytest.raises(KeyError, match="no op named"):
        ops.register_override("no_such_op", _Tagged, lambda x: x)


def test_only_backends_with_a_fast_path_can_enable_one() -> None:
    with pytest.raises(nnx.errors.UnknownBackendError, match="no fast path"):
        nnx.backend.enable_fast_path("array_api_strict")
    with pytest.raises(nnx.errors.UnknownBackendError, match="valid names"):
        nnx.backend.enable_fast_path("no-such-backend")
    if nnx.available()["cupy"] is not None:
        with pytest.raises(nnx.errors.BackendUnavailableError):
            nnx.backend.enable_fast_path("cupy")
        assert not nnx.backend.fast_path_enabled("cupy")


@pytest.fixture
def cupy_backend() -> Any:
    reason = nnx.available()["cupy"]
    if reason is not None:
        pytest.skip(f"backend 'cupy' unavailable: {reason}")
    with nnx.use("cupy"):
        yield "cupy"
    nnx.backend.disable_fast_path("cupy")


def _both(fn: Callable[[], Any]) -> tuple[Any, Any]:
    """``fn()`` with the generic ops, then with the fast path, as host arrays."""
    nnx.backend.disable_fast_path("cupy")
    generic = fn()
    with nnx.backend.fast_path("cupy"):
        fast = fn()
    return generic, fast


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layer", [nnx.ReLU, nnx.Sigmoid, nnx.Tanh])
def test_fused_activations_match_generic_in_layers(cupy_backend: str, layer: Any, dtype: str) -> None:
    rng = np.random.default_rng(3)
    x_host = rng.normal(scale=4.0, size=(33, 17))
    x_host[0, :3] = (0.0, -1000.0, 1000.0)
    x = nnx.to_device(x_host, "cupy", dtype)
    g = nnx.to_device(rng.normal(size=(33, 17)), "cupy", dtype)

    def run() -> tuple[Any, Any]:
        act = layer()
        y = act.forward(x)
        return nnx.to_host(y), nnx.to_host(act.backward(g))

    (y0, d0), (y1, d1) = _both(run)
    assert y1.dtype == y0.dtype == np.dtype(dtype)
    np.testing.assert_allclose(y1, y0, rtol=_RTOL[dtype], atol=0)
    np.testing.assert_allclose(d1, d0, rtol=_RTOL[dtype], atol=1e-30)


@pytest.mark.parametrize("kw", [{}, {"momentum": 0.9}, {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
                                {"weight_decay": 0.1}])
def test_fused_sgd_matches_generic_in_the_optimizer(cupy_backend: str, kw: dict[str, Any]) -> None:
    rng = np.random.default_rng(4)
    w0 = rng.normal(size=(6, 5))
    grads = [rng.normal(size=(6, 5)) for _ in range(4)]

    def run() -> tuple[Any, Any, int]:
        p = nnx.Parameter(nnx.to_device(w0, "cupy", "float32"), "w")
        opt = nnx.optim.SGD([p], lr=0.1, **kw)
        for g in grads:
            p.grad = nnx.to_device(g, "cupy", "float32")
            opt.step()
        buf = opt.state[0].get("momentum")
        return nnx.to_host(p.data), None if buf is None else nnx.to_host(buf), opt.steps[0]

    (p0, b0, s0), (p1, b1, s1) = _both(run)
    np.testing.assert_allclose(p1, p0, rtol=1e-6, atol=1e-7)
    if b0 is not None:
        np.testing.assert_allclose(b1, b0, rtol=1e-6, atol=1e-7)
    assert s0 == s1 == 4


# NumPy's overrides: the generic values bit for bit, over every branch they take --------

_BIG = (48, 64)  # above numpy_ops._SELECT_MIN elements

def _overflowing_sum() -> tuple[np.ndarray]:
    """Finite float32 values whose sum (and sum of squares) overflows: a sum is no finiteness test."""
    a = np.full((4, 6), 3e38)
    a[1] = -3e38
    return (a,)


_NUMPY_VARIANTS: dict[str, list[Callable[[], tuple[Any, ...]]]] = {
    # in place in chunks of samples (40 samples of 2 x 3 x 1800 outputs: four chunks, the last short),
    # a kernel that is a transposed view, a kernel without the batch's group axis (the generic op)
    "shifted_matmul": [CASES["shifted_matmul"],
                       lambda: (_values(56, (3, 2, 3, 4), special=False), _values(57, (40, 2, 4, 1803), special=False),
                                (0, 1, 3), 1800),
                       lambda: (np.moveaxis(_values(58, (2, 3, 4, 2), special=False), -1, 0),
                                _values(59, (3, 2, 4, 9), special=False), (2, 0), 7),
                       lambda: (_values(60, (2, 3, 4), special=False), _values(61, (3, 2, 4, 9), special=False),
                                (0, 2), 7)],
    "all_finite": [CASES["all_finite"], lambda: (_values(46, special=False),), _overflowing_sum,
                   lambda: (np.array([[np.inf, -np.inf]]),), lambda: (np.zeros((0, 3)),),
                   lambda: (np.array([[1.0, np.nan]]),),
                   lambda: (_values(50, special=False), _values(51, special=False)),
                   lambda: (_values(52, special=False), _values(53))],
    "sigmoid": [CASES["sigmoid"], lambda: (_values(65, _BIG),)],
    "softmax": [CASES["softmax"], lambda: (_values(62, _BIG, special=False), 0),
                lambda: (np.where(np.tri(8, dtype=bool), _values(63, (8, 8), special=False), -np.inf), -1)],
    "softmax_backward": [CASES["softmax_backward"],
                         lambda: (np.full((3, 4, 8), 1 / 8), _values(64, (3, 4, 8), special=False), 1)],
    "gelu": [CASES["gelu"], lambda: (_values(47, _BIG),)],
    "gelu_backward": [CASES["gelu_backward"], lambda: (_values(48, _BIG), _values(49, _BIG))],
    # small arrays take the generic op; from _SELECT_MIN elements on, the bitwise selection
    "relu_backward": [CASES["relu_backward"], lambda: (np.maximum(_values(30, _BIG), 0.0), _values(31, _BIG)),
                      lambda: (_values(30, _BIG), _values(31, _BIG))],
    "leaky_relu": [lambda s=s: (_values(32, _BIG), s) for s in (0.1, 1.0, 0.0, 2.0, -0.5)],
    "leaky_relu_backward": [lambda s=s: (_values(33, _BIG), _values(34, _BIG), s) for s in (0.1, 0.0, 2.0, -0.5)],
    "adam_update": [CASES["adam_update"], lambda: (_values(38, special=False), _values(39, special=False),
                                                   _values(40, special=False), _positive(41), 0.01, 0.5, 0.9, 1e-3, 1)],
    "rmsprop_update": [CASES["rmsprop_update"], lambda: (_values(42, special=False), _values(43), _positive(44),
                                                         None, 1e-2, 0.9, 1e-8, 0.0)],
}


def _same_bits(a: np.ndarray, e: np.ndarray) -> bool:
    ints = {4: np.int32, 8: np.int64}[a.dtype.itemsize]
    both_nan = np.isnan(a) & np.isnan(e)
    return a.dtype == e.dtype and a.shape == e.shape and bool(np.all((a.view(ints) == e.view(ints)) | both_nan))


def test_numpy_overrides_are_on_by_default_and_cover_their_variants() -> None:
    assert set(_NUMPY_VARIANTS) == set(ops.overrides_of("numpy").by_op)
    assert 48 * 64 >= numpy_ops._SELECT_MIN
    assert nnx.backend.fast_path_enabled("numpy")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(_NUMPY_VARIANTS))
def test_numpy_overrides_give_the_generic_bits(name: str, dtype: str) -> None:
    override = ops.overrides_of("numpy").by_op[name]
    for case in _NUMPY_VARIANTS[name]:
        args = case()
        with np.errstate(all="ignore"):
            expected = _outputs(ops.GENERIC[name](*_on(name, args, "numpy", dtype)))
            on = _on(name, args, "numpy", dtype)
            result = override(*on)
            actual = _outputs(result)
        assert len(actual) == len(expected), name
        for a, e in zip(actual, expected):
            assert _same_bits(a, e), f"{name} ({dtype}) args {args[3:] if len(args) > 3 else ''}"
        if name.endswith("_update"):  # updates happen in place, as the generic ones do
            assert result[0] is on[0]


def test_numpy_overrides_leave_other_inputs_to_the_generic_op() -> None:
    x32 = np.array([[-1.0, 2.0]], dtype=np.float32)
    g64 = np.array([[3.0, 4.0]])
    out = ops.relu_backward(x32, g64)  # mixed dtypes: the generic op's promotion
    assert out.dtype == np.float64 and np.array_equal(out, [[0.0, 4.0]])
    p = np.ones((2, 2), np.float32)
    ops.sgd_update(p, np.ones((2, 2), np.float32), None, np.float64(0.5), 0.0, 0.0, False)
    assert np.array_equal(p, np.full((2, 2), 0.5, np.float32))


def test_the_generic_ops_stay_available_on_numpy() -> None:
    x = np.array([[-1.0, 0.5]], dtype=np.float32)
    with nnx.backend.fast_path("numpy"):
        nnx.backend.disable_fast_path("numpy")
        assert not nnx.backend.fast_path_enabled("numpy")
        assert np.array_equal(ops.relu_backward(x, x), [[0.0, 0.5]])
        nnx.backend.enable_fast_path("numpy")
    assert nnx.backend.fast_path_enabled("numpy")


# GELU against a 40-digit evaluation of the same tanh form ---------------------------------

def _gelu_reference(x_host: np.ndarray) -> tuple[list[Any], list[Any], np.ndarray, np.ndarray]:
    """Exact GELU and gradient at each float ``x``, the gradient's local scale and the amplification.

    The scale ``s + |x s (1-s) 2u'|`` (``s = sigmoid(2u)``) judges the gradient where it crosses zero
    (x near -0.75); the amplification ``1 + |2u| (1 - s)`` is how much an ulp of error in the
    exponent ``2u`` (x^2, the constants) grows in the result, which no float evaluation escapes.
    """
    mpmath = pytest.importorskip("mpmath")
    ctx = mpmath.mp.clone()
    ctx.dps = 40
    c, a = ctx.sqrt(2 / ctx.pi), ctx.mpf("0.044715")
    ys, ds, scales, amps = [], [], [], []
    for v in x_host.tolist():
        x = ctx.mpf(v)
        z = 2 * c * (x + a * x**3)
        s = 1 / (1 + ctx.exp(-z))
        slope = x * s * (1 - s) * 2 * c * (1 + 3 * a * x * x)
        ys.append(x * s)
        ds.append(s + slope)
        scales.append(float(s + abs(slope)))
        amps.append(float(1 + abs(z) * (1 - s)))
    return ys, ds, np.array(scales), np.array(amps)


def _gelu_grid() -> np.ndarray:
    tiny = np.logspace(-12, np.log10(40.0), 300)
    named = [-5.39e-10, -0.75, -5.4, -10.0, -21.5, -ops.GELU_CUT, ops.GELU_CUT, 29.99, 30.01]
    return np.unique(np.concatenate([np.linspace(-40.0, 40.0, 2001), tiny, -tiny, named]))


_GELU_REFERENCE: dict[str, Any] = {}


def _ulps(actual: np.ndarray, exact: list[Any], unit_at: np.ndarray) -> np.ndarray:
    """``|actual - exact|`` in ulps of ``unit_at``'s dtype at ``unit_at`` (the smallest subnormal at 0)."""
    return np.array([float(abs(e - float(a))) for a, e in zip(actual.tolist(), exact)]) / np.spacing(
        np.abs(unit_at)).astype(np.float64)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gelu_is_accurate_over_the_whole_range(nnx_backend: str, dtype: str) -> None:
    """Within 3 ulps times the amplification over x in [-40, 40], underflow included (2.3 measured).

    Where the amplification is near 1 (x >= -1) that is within 4 ulps (3.2 measured); the old
    ``x/2 (1 + tanh(u))`` was off by up to 9e15 ulps (float64) and 1.7e8 (float32) from x = -5 down.
    """
    x_host = _gelu_grid().astype(dtype)
    if dtype not in _GELU_REFERENCE:
        _GELU_REFERENCE[dtype] = _gelu_reference(x_host)
    ys, ds, scales, amps = _GELU_REFERENCE[dtype]
    x = nnx.to_device(x_host, nnx_backend, dtype)
    y = nnx.to_host(ops.gelu(x))
    d = nnx.to_host(ops.gelu_backward(x, nnx.to_device(np.ones_like(x_host), nnx_backend, dtype)))
    forward = _ulps(y, ys, np.array([float(v) for v in ys]).astype(dtype))
    gradient = _ulps(d, ds, scales.astype(dtype))
    assert (forward / amps).max() <= 3.0, x_host[(forward / amps).argmax()]
    assert (gradient / amps).max() <= 3.0, x_host[(gradient / amps).argmax()]
    assert forward[x_host >= -1].max() <= 4.0
    assert np.all(y[x_host <= -ops.GELU_CUT] == 0.0) and np.all(np.signbit(y[x_host <= -ops.GELU_CUT]))


def test_shifted_matmul_override_is_bit_exact_for_a_transposed_kernel_view() -> None:
    """A convolution hands the op its kernel as a permuted view; BLAS rounds a transposed operand
    its own way, so the override must pass the view as it is, as the generic op does."""
    from nnx.backend import numpy_ops

    rng = np.random.default_rng(7)
    kernel = rng.normal(size=(1, 1, 6, 9))  # the input gradient of a 1-channel convolution: M = 1
    w = np.permute_dims(kernel, (3, 0, 1, 2))
    x = rng.normal(size=(16, 1, 6, 120))
    offsets = (0, 1, 2, 10, 11, 12, 20, 21, 22)
    np.testing.assert_array_equal(numpy_ops.shifted_matmul(w, x, offsets, 98),
                                  nnx.ops.shifted_matmul.generic(w, x, offsets, 98))


@pytest.mark.parametrize("chunk", [2**21, 30_000])  # the default; chunks of a few samples (the last short)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_shifted_matmul_with_the_batch_folded_gives_the_generic_bits(dtype: str, chunk: int, monkeypatch: Any) -> None:
    """With more than one BLAS thread the override lays the samples end to end and makes one product
    per offset; each value is still the same dot product, so the bits are the generic op's."""
    folded: list[int] = []
    original = numpy_ops._folded_shifted_matmul
    monkeypatch.setattr(numpy_ops, "_blas_threads", lambda: 2)
    monkeypatch.setattr(numpy_ops, "_THREADED_PRODUCT", 1)
    monkeypatch.setattr(numpy_ops, "_FOLD_CHUNK", chunk)
    monkeypatch.setattr(numpy_ops, "_folded_shifted_matmul", lambda *a: folded.append(1) or original(*a))
    cases = [*_NUMPY_VARIANTS["shifted_matmul"]]
    for m in (1, 2, 5):  # the input gradient of a 3x3 convolution to m channels: a permuted view
        cases.append(lambda m=m: (np.permute_dims(_values(66, (1, m, 6, 9), special=False), (3, 0, 1, 2)),
                                  _values(67, (16, 1, 6, 120), special=False), (0, 1, 2, 10, 11, 12, 20, 21, 22), 98))
    for case in cases:
        w, x, offsets, n = _on("shifted_matmul", case(), "numpy", dtype)
        assert _same_bits(numpy_ops.shifted_matmul(w, x, offsets, n), ops.shifted_matmul.generic(w, x, offsets, n))
        w, x, offsets, n = case()  # the kernel as the view a convolution passes
        assert _same_bits(numpy_ops.shifted_matmul(w, x, offsets, n), ops.shifted_matmul.generic(w, x, offsets, n))
    assert len(folded) == 2 * 5  # all but the kernel without a group axis and the one-row kernel


def test_the_fold_follows_the_blas_thread_count(monkeypatch: Any) -> None:
    monkeypatch.setitem(__import__("sys").modules, "threadpoolctl", None)  # not installed: the environment
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(numpy_ops.os, "cpu_count", lambda: 6)
    assert numpy_ops._blas_threads_now() == 6
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert numpy_ops._blas_threads_now() == 3
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    assert numpy_ops._blas_threads_now() == 1
    monkeypatch.setattr(numpy_ops, "_blas_threads", lambda: 1)
    assert not numpy_ops.fold_batch(64, 64, 1088)
    monkeypatch.setattr(numpy_ops, "_blas_threads", lambda: 2)
    assert numpy_ops.fold_batch(64, 64, 1088)  # a product BLAS splits between its threads
    assert not numpy_ops.fold_batch(16, 6, 250)  # one that runs on one thread anyway
