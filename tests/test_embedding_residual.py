"""Embedding, Mean over positions, Linear on sequences, and Residual blocks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nnx
from nnx.testing import check_parity


def _ids(backend: str, shape: tuple[int, ...], high: int, seed: int = 0) -> Any:
    return nnx.to_device(np.random.default_rng(seed).integers(0, high, shape), backend, dtype="int64")


def test_embedding_looks_rows_up(nnx_backend: str) -> None:
    table = nnx.Embedding(10, 3, seed=0, dtype="float64")
    ids = np.array([[1, 4, 4], [9, 0, 2]])
    out = nnx.to_host(table.forward(nnx.to_device(ids, nnx_backend)))
    assert out.shape == (2, 3, 3)
    np.testing.assert_array_equal(out, nnx.to_host(table.weight.data)[ids])


def test_the_padding_row_starts_at_zero_and_gets_no_gradient(nnx_backend: str) -> None:
    table = nnx.Embedding(6, 2, padding_idx=3, seed=1, dtype="float64")
    assert np.array_equal(nnx.to_host(table.weight.data)[3], [0.0, 0.0])
    ids = nnx.to_device([[3, 1, 3], [1, 2, 3]], nnx_backend)
    table.forward(ids)
    table.backward(nnx.to_device(np.ones((2, 3, 2)), nnx_backend, dtype="float64"))
    grad = nnx.to_host(table.weight.grad)
    np.testing.assert_array_equal(grad[:, 0], [0.0, 2.0, 1.0, 0.0, 0.0, 0.0])  # row 1 twice, row 2 once


def test_bad_indices_are_clear_errors(nnx_backend: str) -> None:
    table = nnx.Embedding(5, 2, seed=0)
    with pytest.raises(nnx.errors.IndexRangeError, match=r"index 5 .*5 rows: valid indices are 0 to 4"):
        table.forward(nnx.to_device([[0, 5]], nnx_backend))
    with pytest.raises(nnx.errors.IndexRangeError, match=r"index -1 "):
        table.forward(nnx.to_device([[-1, 2]], nnx_backend))
    with pytest.raises(nnx.errors.DTypeError, match="integer indices"):
        table.forward(nnx.to_device([[0.0, 1.0]], nnx_backend, dtype="float32"))
    with pytest.raises(nnx.errors.DTypeError, match="floating-point"):
        nnx.Sequential(nnx.Linear(2, 2)).forward(nnx.to_device([[0, 1]], nnx_backend))
    for make in (lambda: nnx.Embedding(0, 2), lambda: nnx.Embedding(3, 2, padding_idx=3), lambda: nnx.Mean(0)):
        with pytest.raises(ValueError):
            make()


def _text_model(backend: str | None = None) -> nnx.Sequential:
    return nnx.Sequential(
        nnx.Embedding(12, 8, padding_idx=0, seed=0, backend=backend), nnx.Linear(8, 8, seed=1, backend=backend),
        nnx.ReLU(), nnx.Mean(1), nnx.Residual(nnx.Sequential(nnx.Linear(8, 8, seed=2, backend=backend), nnx.Tanh())),
        nnx.Linear(8, 2, seed=3, backend=backend),
    )


def test_a_text_classifier_learns_and_predicts_from_indices(nnx_backend: str) -> None:
    ids = np.random.default_rng(4).integers(1, 12, (200, 6))
    labels = (ids == 3).any(axis=1).astype(np.int64)  # does token 3 occur?
    model = _text_model()
    history = nnx.fit(model, nnx.SoftmaxCrossEntropy(), nnx.Adam(model.parameters(), lr=0.02), (ids, labels),
                      epochs=30, batch_size=32, seed=0, progress=False)
    assert history["accuracy"][-1] > 0.95
    predicted = np.argmax(nnx.to_host(nnx.predict(model, ids)), axis=1)
    assert (predicted == labels).mean() > 0.95


def test_residual_adds_the_input_or_the_shortcut(nnx_backend: str) -> None:
    x = nnx.to_device(np.random.default_rng(5).normal(size=(4, 3)), nnx_backend, dtype="float64")
    body = nnx.Linear(3, 3, seed=6, dtype="float64")
    block = nnx.Residual(body)
    with block.inference():  # forwards without backwards
        np.testing.assert_array_equal(nnx.to_host(block.forward(x)), nnx.to_host(body.forward(x)) + nnx.to_host(x))
    proj = nnx.Residual(nnx.Linear(3, 5, seed=7, dtype="float64"), shortcut=nnx.Linear(3, 5, seed=8, dtype="float64"))
    with proj.inference():
        expected = nnx.to_host(proj.body.forward(x)) + nnx.to_host(proj.shortcut.forward(x))
        np.testing.assert_array_equal(nnx.to_host(proj.forward(x)), expected)
    with pytest.raises(nnx.errors.ShapeError, match=r"body's output has shape \(4, 5\) but the input has \(4, 3\)"):
        nnx.Residual(nnx.Linear(3, 5, seed=9, dtype="float64")).forward(x)
    assert [n for n, _ in proj.named_parameters()] == ["body.weight", "body.bias", "shortcut.weight", "shortcut.bias"]


def _resnet(backend: str | None = None) -> nnx.Sequential:
    def block(c_in: int, c_out: int, stride: int, seed: int) -> nnx.Layer:
        body = nnx.Sequential(
            nnx.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False, seed=seed, backend=backend),
            nnx.BatchNorm2d(c_out, backend=backend), nnx.ReLU(),
            nnx.Conv2d(c_out, c_out, 3, padding=1, bias=False, seed=seed + 1, backend=backend),
            nnx.BatchNorm2d(c_out, backend=backend))
        shortcut = None if c_in == c_out and stride == 1 else nnx.Sequential(
            nnx.Conv2d(c_in, c_out, 1, stride=stride, bias=False, seed=seed + 2, backend=backend),
            nnx.BatchNorm2d(c_out, backend=backend))
        return nnx.Sequential(nnx.Residual(body, shortcut), nnx.ReLU())

    return nnx.Sequential(nnx.Conv2d(1, 4, 3, padding=1, seed=0, backend=backend), nnx.ReLU(),
                          block(4, 4, 1, 10), block(4, 8, 2, 20), nnx.GlobalAvgPool2d(),
                          nnx.Linear(8, 2, seed=30, backend=backend))


def test_a_small_resnet_trains_saves_and_loads(nnx_backend: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    x = rng.normal(size=(32, 1, 8, 8)).astype(np.float32)
    y = (x[:, 0, :, :4].mean(axis=(1, 2)) > x[:, 0, :, 4:].mean(axis=(1, 2))).astype(np.int64)
    model = _resnet()
    history = nnx.fit(model, nnx.SoftmaxCrossEntropy(), nnx.Adam(model.parameters(), lr=0.01), (x, y),
                      epochs=12, batch_size=8, seed=0, progress=False)
    assert history["loss"][-1] < 0.6 * history["loss"][0]
    loaded = nnx.load(nnx.save(model, tmp_path / "resnet.nnx"))
    assert repr(loaded) == repr(model)
    assert np.array_equal(nnx.to_host(nnx.predict(loaded, x)), nnx.to_host(nnx.predict(model, x)))
    assert "(3.0) Residual" in model.summary((32, 1, 8, 8))


def test_text_and_resnet_models_agree_across_cpu_backends() -> None:
    with nnx.use("numpy"):
        text = nnx.Sequential(nnx.Embedding(12, 4, padding_idx=0, seed=0, dtype="float64"), nnx.Mean(1),
                              nnx.Residual(nnx.Linear(4, 4, seed=1, dtype="float64")),
                              nnx.Linear(4, 2, seed=2, dtype="float64"))
        ids = np.random.default_rng(7).integers(0, 12, (8, 5))
        targets = np.random.default_rng(8).integers(0, 2, 8)
        report = check_parity(text, nnx.SoftmaxCrossEntropy(), ids, targets, backends=["numpy", "array_api_strict"],
                              steps=3)
        assert report.ok, str(report)
        assert report.checked > 0 and all(c.layer != "0" or c.tensor != "input_grad" for c in report.worst.values())


def test_linear_keeps_the_leading_axes(nnx_backend: str) -> None:
    lin = nnx.Linear(4, 3, seed=0, dtype="float64")
    x = np.random.default_rng(9).normal(size=(2, 5, 4))
    y = nnx.to_host(lin.forward(nnx.to_device(x, nnx_backend, dtype="float64")))
    expected = x.reshape(-1, 4) @ nnx.to_host(lin.weight.data).T + nnx.to_host(lin.bias.data)
    np.testing.assert_allclose(y, expected.reshape(2, 5, 3), rtol=1e-14)
    assert lin.output_shape((2, 5, 4)) == (2, 5, 3)


def test_small_integer_ids_index_a_large_table(nnx_backend: str) -> None:
    table = nnx.Embedding(300, 2, seed=0)
    ids = nnx.to_device(np.array([[3, 255]], dtype=np.uint8), nnx_backend, dtype="uint8")
    rows = nnx.to_host(table.forward(ids))
    np.testing.assert_array_equal(rows[0], nnx.to_host(table.weight.data)[[3, 255]])


def test_parity_tolerance_is_not_scaled_by_token_ids() -> None:
    from nnx.testing import parity

    model = nnx.Sequential(nnx.Embedding(1000, 3, seed=0, dtype="float64"), nnx.Mean(1),
                           nnx.Linear(3, 2, seed=1, dtype="float64"))
    ids = np.array([[999, 5], [7, 998]])
    entries, error = parity._run("numpy", model, nnx.SoftmaxCrossEntropy(), lambda p: nnx.SGD(p, lr=0.1), ids,
                                 np.array([0, 1]), 1)
    assert error is None
    embedding_output = [scale for key, _, scale in entries if key[1] == "forward" and key[2] == "0"]
    assert embedding_output == [0.0]  # judged against the rows' own size, not against ids near 1000
