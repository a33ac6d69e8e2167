"""Convolutions, pooling and BatchNorm2d against direct nested-loop definitions, plus their errors.

The references below loop over every output element and sum its window
explicitly, in float64 NumPy, independent of the slicing and matrix products
nnx uses.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nnx


def _pads(padding: Any, kernel: tuple[int, ...], dilation: tuple[int, ...]) -> list[tuple[int, int]]:
    if padding == "valid":
        return [(0, 0)] * len(kernel)
    if padding == "same":
        return [((d * (k - 1)) // 2, d * (k - 1) - (d * (k - 1)) // 2) for k, d in zip(kernel, dilation)]
    p = (padding,) * len(kernel) if isinstance(padding, int) else tuple(padding)
    return [(v, v) for v in p]


def reference_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: tuple[int, ...],
                   padding: Any, dilation: tuple[int, ...], groups: int) -> np.ndarray:
    """out[n, o, *i] = b[o] + sum over the group's channels c and kernel offsets k of
    xpad[n, c, *(i * stride + k * dilation)] * w[o, c - group start, *k]."""
    kernel = w.shape[2:]
    pads = _pads(padding, kernel, dilation)
    xpad = np.pad(x, [(0, 0), (0, 0), *pads])
    spatial = xpad.shape[2:]
    out = [(n - d * (k - 1) - 1) // s + 1 for n, k, s, d in zip(spatial, kernel, stride, dilation)]
    n_out, cg = w.shape[0], w.shape[1]
    og = n_out // groups
    y = np.zeros((x.shape[0], n_out, *out))
    for n, o in itertools.product(range(x.shape[0]), range(n_out)):
        g = o // og
        for pos in itertools.product(*(range(m) for m in out)):
            total = 0.0 if b is None else b[o]
            for c in range(cg):
                for k in itertools.product(*(range(kk) for kk in kernel)):
                    src = tuple(p * s + kk * d for p, s, kk, d in zip(pos, stride, k, dilation))
                    total += xpad[(n, g * cg + c, *src)] * w[(o, c, *k)]
            y[(n, o, *pos)] = total
    return y


def reference_pool(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], padding: int,
                   kind: str) -> np.ndarray:
    fill = -np.inf if kind == "max" else 0.0
    xpad = np.pad(x, [(0, 0), (0, 0), (padding, padding), (padding, padding)], constant_values=fill)
    out = [(n - k) // s + 1 for n, k, s in zip(xpad.shape[2:], kernel, stride)]
    y = np.zeros((*x.shape[:2], *out))
    for n, c, i, j in itertools.product(range(x.shape[0]), range(x.shape[1]), range(out[0]), range(out[1])):
        window = xpad[n, c, i * stride[0]:i * stride[0] + kernel[0], j * stride[1]:j * stride[1] + kernel[1]]
        y[n, c, i, j] = window.max() if kind == "max" else window.mean()
    return y


CONV2D = [
    dict(),
    dict(stride=2),
    dict(stride=(2, 1), padding=(1, 2)),
    dict(padding="same"),
    dict(padding="same", dilation=2),
    dict(dilation=(1, 2), padding=1),
    dict(groups=2),
    dict(groups=4, padding="valid"),
    dict(bias=False, stride=3, padding=2),
]


@pytest.mark.parametrize("kw", CONV2D, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "plain")
def test_conv2d_matches_the_loop_definition(nnx_backend: str, kw: dict[str, Any]) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 4, 7, 6))
    layer = nnx.Conv2d(4, 6 if kw.get("groups", 1) != 4 else 4, (3, 2), seed=1, dtype="float64",
                       bias_init=nnx.init.Normal(0, 1), **kw)
    w = nnx.to_host(layer.weight.data)
    b = None if layer.bias is None else nnx.to_host(layer.bias.data)
    stride = (kw.get("stride", 1),) * 2 if isinstance(kw.get("stride", 1), int) else kw["stride"]
    dilation = (kw.get("dilation", 1),) * 2 if isinstance(kw.get("dilation", 1), int) else kw["dilation"]
    expected = reference_conv(x, w, b, stride, kw.get("padding", 0), dilation, kw.get("groups", 1))
    got = nnx.to_host(layer.forward(nnx.to_device(x, nnx_backend, dtype="float64")))
    assert got.shape == expected.shape == layer.output_shape(x.shape)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


# stride 1: runs, with shifted products (a threshold of 1 channel) or gathered windows; strided slices
LAYOUTS = {"runs, shifted products": ("Runs", 1), "runs, gathered windows": ("Runs", 10**9),
           "strided slices": ("Slices", None)}


def _set_layout(layer: Any, spatial: tuple[int, ...], out: tuple[int, ...], name: str,
                monkeypatch: pytest.MonkeyPatch) -> None:
    from nnx.layers import windows

    kind, threshold = LAYOUTS[name]
    if threshold is not None:
        monkeypatch.setattr(windows, "SHIFTED_MIN_CHANNELS", threshold)
    layer._layouts = {spatial: getattr(windows, kind)(layer.window, spatial, out)}


def _forward_backward(layer: Any, x: Any, seed: int) -> list[np.ndarray]:
    y = layer.forward(x)
    g = np.random.default_rng(seed).normal(size=tuple(y.shape))
    dx = layer.backward(nnx.to_device(g, nnx.backend.backend_of(x), dtype="float64"))
    return [nnx.to_host(v) for v in (y, dx, layer.weight.grad)] + (
        [nnx.to_host(layer.bias.grad)] if layer.bias is not None else [])


@pytest.mark.parametrize("kw", [kw for kw in CONV2D if "stride" not in kw]
                         + [dict(padding=(2, 0), dilation=(2, 1)), dict(padding=(3, 2))],
                         ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "plain")
def test_the_window_layouts_agree(nnx_backend: str, kw: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Stride 1 computes over contiguous runs (and extra columns it then drops), with one matrix
    product per kernel offset or over gathered windows, and the input's gradient as a correlation
    with the flipped kernel; the strided slices of other strides gather and add back window by
    window. All give the same output and gradients, to float64 rounding."""
    x = nnx.to_device(np.random.default_rng(2).normal(size=(3, 4, 7, 6)), nnx_backend, dtype="float64")
    results = {}
    for name in LAYOUTS:
        with monkeypatch.context() as patch:
            layer = nnx.Conv2d(4, 4, (3, 2), seed=1, dtype="float64", bias_init=nnx.init.Normal(0, 1), **kw)
            shape = layer.output_shape(tuple(x.shape))
            _set_layout(layer, (7, 6), shape[2:], name, patch)
            results[name] = _forward_backward(layer, x, 3)
    expected = results.pop("strided slices")
    for name, got in results.items():
        for a, b in zip(got, expected):
            assert a.shape == b.shape, name
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("name", LAYOUTS)
@pytest.mark.parametrize("make, shape", [
    (lambda: nnx.Conv2d(3, 4, (3, 2), padding=(2, 1), dtype="float64", seed=4), (2, 3, 5, 4)),
    (lambda: nnx.Conv2d(4, 6, 2, groups=2, dilation=(2, 1), padding=1, dtype="float64", seed=5), (2, 4, 5, 4)),
    (lambda: nnx.Conv1d(2, 3, 3, padding="same", dilation=2, dtype="float64", seed=6), (2, 2, 7)),
], ids=["conv2d", "conv2d-groups-dilation", "conv1d"])
def test_every_window_layout_passes_gradcheck(nnx_backend: str, name: str, make: Any, shape: tuple[int, ...],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    layer = make()
    _set_layout(layer, shape[2:], layer.output_shape(shape)[2:], name, monkeypatch)
    x = nnx.to_device(np.random.default_rng(7).normal(size=shape), nnx_backend, dtype="float64")
    result = nnx.testing.gradcheck(layer, x)
    assert result.ok, str(result)


def test_shifted_products_run_from_their_channel_threshold() -> None:
    """Wide convolutions never gather their windows; narrow ones do (the products would be too thin)."""
    from nnx.layers import windows

    calls: list[str] = []
    few = windows.SHIFTED_MIN_CHANNELS
    wide, narrow = nnx.Conv2d(few, few, 3, padding=1, seed=0), nnx.Conv2d(few - 1, few - 1, 3, padding=1, seed=0)
    original = nnx.ops.shifted_matmul
    try:
        windows.ops.shifted_matmul = lambda *a: calls.append("shifted") or original(*a)
        for layer, expected in ((wide, ["shifted"] * 2), (narrow, [])):
            calls.clear()
            x = np.ones((2, layer.in_channels, 5, 5), np.float32)
            layer.backward(layer.forward(x))
            assert calls == expected  # forward and input gradient (the weight's has its own products)
    finally:
        windows.ops.shifted_matmul = original


@pytest.mark.parametrize("kw", [dict(), dict(stride=2, padding=1), dict(padding="same", dilation=2), dict(groups=3)],
                         ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "plain")
def test_conv1d_matches_the_loop_definition(nnx_backend: str, kw: dict[str, Any]) -> None:
    x = np.random.default_rng(1).normal(size=(3, 3, 11))
    layer = nnx.Conv1d(3, 6, 4 if kw.get("padding") != "same" else 3, seed=2, dtype="float64", **kw)
    w, b = nnx.to_host(layer.weight.data), nnx.to_host(layer.bias.data)
    stride, dilation = (kw.get("stride", 1),), (kw.get("dilation", 1),)
    expected = reference_conv(x, w, b, stride, kw.get("padding", 0), dilation, kw.get("groups", 1))
    got = nnx.to_host(layer.forward(nnx.to_device(x, nnx_backend, dtype="float64")))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("kernel,stride,padding", [((2, 2), None, 0), ((3, 3), (2, 2), 1), ((3, 2), (1, 2), 1)])
def test_pooling_matches_the_loop_definition(nnx_backend: str, kind: str, kernel: tuple[int, int],
                                             stride: tuple[int, int] | None, padding: int) -> None:
    x = np.random.default_rng(2).normal(size=(2, 3, 7, 6))
    cls = nnx.MaxPool2d if kind == "max" else nnx.AvgPool2d
    layer = cls(kernel, stride=stride, padding=padding)
    expected = reference_pool(x, kernel, stride or kernel, padding, kind)
    got = nnx.to_host(layer.forward(nnx.to_device(x, nnx_backend, dtype="float64")))
    assert got.shape == expected.shape == layer.output_shape(x.shape)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


def test_max_pool_sends_the_gradient_to_the_maximum(nnx_backend: str) -> None:
    x = nnx.to_device([[[[1.0, 5.0], [5.0, 2.0]]]], nnx_backend, dtype="float64")
    pool = nnx.MaxPool2d(2)
    assert nnx.to_host(pool.forward(x)).tolist() == [[[[5.0]]]]
    grad = pool.backward(nnx.to_device([[[[3.0]]]], nnx_backend, dtype="float64"))
    assert nnx.to_host(grad).tolist() == [[[[0.0, 3.0], [0.0, 0.0]]]]  # ties: the first maximum


def test_global_average_pool_and_batchnorm2d(nnx_backend: str) -> None:
    x = np.random.default_rng(3).normal(size=(4, 3, 5, 2)) * 3 + 1
    dev = nnx.to_device(x, nnx_backend, dtype="float64")
    np.testing.assert_allclose(nnx.to_host(nnx.GlobalAvgPool2d().forward(dev)), x.mean(axis=(2, 3)), rtol=1e-13)
    bn = nnx.BatchNorm2d(3, momentum=0.5, dtype="float64")
    y = nnx.to_host(bn.forward(dev))
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    np.testing.assert_allclose(y, (x - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5), rtol=1e-11)
    np.testing.assert_allclose(nnx.to_host(bn.running_mean), 0.5 * mean, rtol=1e-12)
    np.testing.assert_allclose(nnx.to_host(bn.running_var), 0.5 + 0.5 * x.var(axis=(0, 2, 3), ddof=1), rtol=1e-12)
    bn.eval()
    expected = (x - nnx.to_host(bn.running_mean)[:, None, None]) / np.sqrt(nnx.to_host(bn.running_var)[:, None, None] + 1e-5)
    np.testing.assert_allclose(nnx.to_host(bn.forward(dev)), expected, rtol=1e-12)


def test_conv_errors_say_what_is_wrong(nnx_backend: str) -> None:
    conv = nnx.Conv2d(3, 4, 5)
    with pytest.raises(nnx.errors.ShapeError, match=r"input 3x3 is smaller than kernel 5x5 with padding 0"):
        conv.forward(nnx.to_device(np.ones((1, 3, 3, 3)), nnx_backend, dtype="float32"))
    with pytest.raises(nnx.errors.ShapeError, match=r"\(batch, 3, d1, d2\).*\(1, 2, 8, 8\)"):
        conv.forward(nnx.to_device(np.ones((1, 2, 8, 8)), nnx_backend, dtype="float32"))
    with pytest.raises(nnx.errors.ShapeError, match=r"\(batch, 3, d1, d2\).*\(3, 8, 8\)"):
        conv.forward(nnx.to_device(np.ones((3, 8, 8)), nnx_backend, dtype="float32"))
    with pytest.raises(nnx.errors.DTypeError, match="float32.*float64"):
        conv.forward(nnx.to_device(np.ones((1, 3, 8, 8)), nnx_backend, dtype="float64"))
    with pytest.raises(nnx.errors.ShapeError, match=r"input 2x2 is smaller than kernel 3x3 with padding 0"):
        nnx.MaxPool2d(3).forward(nnx.to_device(np.ones((1, 1, 2, 2)), nnx_backend, dtype="float32"))
    with pytest.raises(nnx.errors.ShapeError, match=r"\(batch, channels, height, width\)"):
        nnx.AvgPool2d(2).forward(nnx.to_device(np.ones((2, 4, 4)), nnx_backend, dtype="float32"))
    with pytest.raises(nnx.errors.ShapeError, match=r"\(batch, 3, d1, d2\)"):
        nnx.BatchNorm2d(3).forward(nnx.to_device(np.ones((2, 4, 4, 4)), nnx_backend, dtype="float32"))


def test_bad_conv_arguments() -> None:
    for make in (lambda: nnx.Conv2d(3, 4, 0), lambda: nnx.Conv2d(3, 4, 3, groups=2),
                 lambda: nnx.Conv2d(3, 4, (3, 3, 3)), lambda: nnx.Conv2d(3, 4, 3, stride=2, padding="same"),
                 lambda: nnx.Conv2d(3, 4, 3, padding=-1), lambda: nnx.Conv1d(0, 4, 3),
                 lambda: nnx.MaxPool2d(2, padding=2), lambda: nnx.Conv2d(3, 4, 3, dtype="int8")):
        with pytest.raises(ValueError):
            make()


def test_kernel_initialisers_use_the_kernels_fans() -> None:
    conv = nnx.Conv2d(4, 8, 3, groups=2, init="he_uniform", seed=0, dtype="float64")
    bound = np.sqrt(6.0 / (2 * 9))  # fan_in = in_channels / groups * kernel positions
    w = nnx.to_host(conv.weight.data)
    assert w.shape == (8, 2, 3, 3) and np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    xavier = nnx.to_host(nnx.Conv1d(3, 5, 4, init="xavier_uniform", seed=0, dtype="float64").weight.data)
    assert np.abs(xavier).max() <= np.sqrt(6.0 / (3 * 4 + 5 * 4))


def _cnn(backend: str | None = None) -> nnx.Sequential:
    return nnx.Sequential(
        nnx.Conv2d(1, 4, 3, padding="same", seed=0, backend=backend), nnx.BatchNorm2d(4, backend=backend),
        nnx.ReLU(), nnx.MaxPool2d(2), nnx.Conv2d(4, 8, 3, seed=1, backend=backend), nnx.ReLU(),
        nnx.AvgPool2d(2), nnx.Flatten(), nnx.Linear(8, 3, seed=2, backend=backend),
    )


def test_a_cnn_saves_loads_and_summarises(nnx_backend: str, tmp_path: Path) -> None:
    model = _cnn()
    x = nnx.to_device(np.random.default_rng(4).normal(size=(5, 1, 8, 8)), nnx_backend, dtype="float32")
    model.forward(x)  # moves the running statistics
    loaded = nnx.load(nnx.save(model, tmp_path / "cnn.nnx"))
    assert repr(loaded) == repr(model)
    assert np.array_equal(nnx.to_host(nnx.predict(loaded, x)), nnx.to_host(nnx.predict(model, x)))
    table = model.summary((5, 1, 8, 8))
    assert "(0) Conv2d(1, 4, kernel_size=(3, 3), padding='same')" in table and "(5, 4, 8, 8)" in table
    assert "(5, 8, 2, 2)" in table and "(5, 8, 1, 1)" in table
    assert table.splitlines()[-1] == f"total parameters: {model.num_parameters():,}"


def test_a_cnn_trains(nnx_backend: str) -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(48, 1, 8, 8)).astype(np.float32)
    y = (x[:, 0, :4].mean(axis=(1, 2)) > x[:, 0, 4:].mean(axis=(1, 2))).astype(np.int64)  # top half brighter?
    model = _cnn()
    history = nnx.fit(model, nnx.SoftmaxCrossEntropy(), nnx.Adam(model.parameters(), lr=0.01), (x, y),
                      epochs=15, batch_size=16, seed=0, progress=False)
    assert history["loss"][-1] < 0.5 * history["loss"][0]


def test_chunked_windows_give_the_same_results(nnx_backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch whose windows exceed the chunk budget is processed in chunks of samples, with the same results."""
    from nnx.layers import windows
    from nnx.layers.windows import Runs

    x = nnx.to_device(np.random.default_rng(6).normal(size=(5, 2, 6, 6)), nnx_backend, dtype="float64")

    def run() -> list[np.ndarray]:
        layer = nnx.Conv2d(2, 3, 3, padding=1, groups=1, seed=3, dtype="float64")
        y = layer.forward(x)
        n = math.prod(y.shape)  # not y.size: on torch, size is a method
        dx = layer.backward(nnx.to_device(np.arange(n, dtype=float).reshape(tuple(y.shape)) / n, nnx_backend,
                                          dtype="float64"))
        return [nnx.to_host(v) for v in (y, dx, layer.weight.grad, layer.bias.grad)]

    whole = run()
    per_sample = 2 * 9 * Runs(nnx.Conv2d(2, 3, 3, padding=1).window, (6, 6), (6, 6)).positions
    monkeypatch.setattr(windows, "WINDOW_ELEMENTS", 2 * per_sample)  # two samples per chunk
    assert len(windows.chunks(5, per_sample)) == 3
    for chunked, expected in zip(run(), whole):
        np.testing.assert_allclose(chunked, expected, rtol=1e-13, atol=1e-13)


def test_summary_of_a_too_small_image_is_a_shape_error_not_a_negative_size() -> None:
    for model in (nnx.Sequential(nnx.Conv2d(1, 2, 5), nnx.Flatten()), nnx.Sequential(nnx.MaxPool2d(4))):
        with pytest.raises(nnx.errors.ShapeError, match="input 3x3 is smaller than kernel"):
            model.summary((1, 1, 3, 3))
    assert "(1, 2, 1, 1)" in nnx.Sequential(nnx.Conv2d(1, 2, 5), nnx.Flatten()).summary((1, 1, 5, 5))


def test_a_conv_model_predicts_0_rows_as_an_empty_result(nnx_backend: str) -> None:
    with nnx.use(nnx_backend):
        model = nnx.Sequential(nnx.Conv2d(1, 4, 3, padding=1, seed=0), nnx.ReLU(), nnx.MaxPool2d(2),
                               nnx.Conv2d(4, 2, 3, stride=2, seed=1), nnx.Flatten(), nnx.Linear(2, 3, seed=2))
    out = nnx.predict(model, np.zeros((0, 1, 8, 8), dtype=np.float32))
    assert tuple(out.shape) == (0, 3)
    assert nnx.predict_classes(model, np.zeros((0, 1, 8, 8), dtype=np.float32)).shape == (0,)
