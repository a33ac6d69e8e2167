"""The opt-in CuPy fast path agrees with the generic path it stands in for.

Every comparison runs the same computation twice on CuPy, once generic and
once with the fused kernels or the CUDA-graph step. Where CuPy cannot run, the
CuPy tests skip with the reason and only the selection API is checked.
"""

from __future__ import annotations

import numpy as np
import pytest

import nnx
from nnx.backend import fastpath


@pytest.fixture
def cupy_backend():
    reason = nnx.available()["cupy"]
    if reason is not None:
        pytest.skip(f"backend 'cupy' unavailable: {reason}")
    with nnx.use("cupy"):
        yield "cupy"
    nnx.backend.disable_fast_path()


def test_only_backends_with_a_fast_path_can_enable_one() -> None:
    with pytest.raises(nnx.UnknownBackendError, match="no fast path"):
        nnx.backend.enable_fast_path("numpy")
    with pytest.raises(nnx.UnknownBackendError, match="valid names"):
        nnx.backend.enable_fast_path("no-such-backend")
    if nnx.available()["cupy"] is not None:
        with pytest.raises(nnx.BackendUnavailableError):
            nnx.backend.enable_fast_path("cupy")
        assert not nnx.backend.fast_path_enabled("cupy")


def test_generic_path_is_the_default(backend: str) -> None:
    x = nnx.to_device(np.ones((2, 2)), backend, "float32")
    assert fastpath.op("relu_forward", x) is None
    assert fastpath.op("sgd_update", x) is None


def _both(fn):
    """``fn()`` with the generic path, then with the fast path, as host arrays."""
    nnx.backend.disable_fast_path()
    generic = fn()
    nnx.backend.enable_fast_path("cupy")
    try:
        fast = fn()
    finally:
        nnx.backend.disable_fast_path()
    return generic, fast


_RTOL = {"float32": 1e-6, "float64": 1e-14}  # the kernels round as the generic operations do


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layer", [nnx.ReLU, nnx.Sigmoid, nnx.Tanh])
def test_fused_activations_match_generic(cupy_backend: str, layer, dtype: str) -> None:
    rng = np.random.default_rng(3)
    x_host = rng.normal(scale=4.0, size=(33, 17))
    x_host[0, :3] = (0.0, -1000.0, 1000.0)
    x = nnx.to_device(x_host, "cupy", dtype)
    g = nnx.to_device(rng.normal(size=(33, 17)), "cupy", dtype)

    def run():
        act = layer()
        y = act.forward(x)
        return nnx.to_host(y), nnx.to_host(act.backward(g))

    (y0, d0), (y1, d1) = _both(run)
    assert y1.dtype == y0.dtype == np.dtype(dtype)
    np.testing.assert_allclose(y1, y0, rtol=_RTOL[dtype], atol=0)
    np.testing.assert_allclose(d1, d0, rtol=_RTOL[dtype], atol=1e-30)


@pytest.mark.parametrize("kw", [{}, {"momentum": 0.9}, {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
                                {"weight_decay": 0.1}])
def test_fused_sgd_matches_generic(cupy_backend: str, kw) -> None:
    rng = np.random.default_rng(4)
    w0 = rng.normal(size=(6, 5))
    grads = [rng.normal(size=(6, 5)) for _ in range(4)]

    def run():
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


def _classifier(dtype: str):
    model = nnx.Sequential(nnx.Linear(12, 16, seed=0, dtype=dtype), nnx.ReLU(),
                           nnx.Linear(16, 16, seed=1, dtype=dtype), nnx.Tanh(),
                           nnx.Linear(16, 4, seed=2, dtype=dtype))
    loss = nnx.losses.SoftmaxCrossEntropy()
    return model, loss, nnx.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


@pytest.mark.filterwarnings("ignore:GraphedStep cannot capture")
def test_graphed_step_matches_train_step(cupy_backend: str) -> None:
    from nnx.backend.cupy_fast import GraphedStep

    rng = np.random.default_rng(5)
    x = nnx.to_device(rng.normal(size=(70, 12)), "cupy", "float64")
    y = nnx.to_device(rng.integers(0, 4, 70), "cupy")
    spans = [(0, 16), (16, 32), (32, 48), (48, 64), (64, 70), (0, 16), (16, 32)]  # a short last batch too
    eager, graphed = _classifier("float64"), _classifier("float64")
    step = GraphedStep(*graphed, warmup=1)
    for a, b in spans:
        v0, o0 = nnx.train_step(*eager, x[a:b], y[a:b])
        v1, o1 = step(*graphed, x[a:b], y[a:b])
        np.testing.assert_allclose(float(v1), float(v0), rtol=1e-12)
        np.testing.assert_allclose(nnx.to_host(o1), nnx.to_host(o0), rtol=1e-11, atol=1e-13)
    for p0, p1 in zip(eager[0].parameters(), graphed[0].parameters()):
        np.testing.assert_allclose(nnx.to_host(p1.data), nnx.to_host(p0.data), rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(nnx.to_host(p1.grad), nnx.to_host(p0.grad), rtol=1e-10, atol=1e-13)
    assert graphed[2].steps == eager[2].steps
    assert step.unsupported is not None or len(step._graphs) == 2  # captured both shapes, or said why not


@pytest.mark.filterwarnings("ignore:GraphedStep cannot capture")
def test_graphed_step_refuses_what_it_cannot_replay(cupy_backend: str) -> None:
    from nnx.backend.cupy_fast import GraphedStep

    model, loss, _ = _classifier("float32")
    with pytest.raises(TypeError, match="SGD"):
        GraphedStep(model, loss, nnx.optim.Adam(model.parameters()))
    opt = nnx.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    step = GraphedStep(model, loss, opt, warmup=1)
    x = nnx.to_device(np.ones((8, 12)), "cupy", "float32")
    good = nnx.to_device(np.arange(8) % 4, "cupy")
    for _ in range(3):
        step(model, loss, opt, x, good)
    with pytest.raises(nnx.errors.TargetError, match=r"\[0, 4\)"):
        step(model, loss, opt, x, nnx.to_device(np.arange(8), "cupy"))
