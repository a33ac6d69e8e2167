"""fit, evaluate and predict with named inputs: batches that carry lengths and masks beside the inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import nnx
from nnx.errors import ShapeError


def _data(n: int = 12) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 6, n)
    x = rng.standard_normal((n, 5, 3))
    x[np.arange(5)[None, :] >= lengths[:, None]] = 0.0
    return {"x": x, "lengths": lengths}, rng.standard_normal((n, 2))


def _lstm() -> nnx.LSTM:
    return nnx.LSTM(3, 2, return_sequences=False, seed=1, dtype="float64")


def test_fit_passes_each_batchs_lengths_as_a_hand_written_loop_does(nnx_backend: str) -> None:
    inputs, y = _data()
    with nnx.use(nnx_backend):
        model, reference = _lstm(), _lstm()
    nnx.fit(model, nnx.MSE(), nnx.SGD(model.parameters(), lr=0.1), (inputs, y), 2, batch_size=5, shuffle=False,
            progress=False)
    opt, loss = nnx.SGD(reference.parameters(), lr=0.1), nnx.MSE()
    for _ in range(2):
        for a in range(0, 12, 5):
            opt.zero_grad()
            out = reference.forward(nnx.to_device(inputs["x"][a:a + 5], nnx_backend, "float64"),
                                    lengths=nnx.to_device(inputs["lengths"][a:a + 5], nnx_backend))
            loss.forward(out, nnx.to_device(y[a:a + 5], nnx_backend, "float64"))
            reference.backward(loss.backward())
            opt.step()
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        np.testing.assert_allclose(nnx.to_host(p.data), nnx.to_host(q.data), rtol=1e-12, atol=1e-14, err_msg=name)
    predicted = nnx.to_host(nnx.predict(model, inputs, batch_size=5))
    one = nnx.to_host(model.eval().forward(nnx.to_device(inputs["x"], nnx_backend, "float64"),
                                           lengths=nnx.to_device(inputs["lengths"], nnx_backend)))
    np.testing.assert_allclose(predicted, one, rtol=1e-12, atol=1e-14)
    score = nnx.evaluate(model, nnx.MSE(), (inputs, y), batch_size=5)["loss"]
    assert score == pytest.approx(float(np.mean((one - y) ** 2)), rel=1e-12)


def test_boolean_masks_stay_masks_and_validation_split_splits_every_array() -> None:
    rng = np.random.default_rng(3)
    pad = np.zeros((10, 4), dtype=bool)
    pad[::2, 3:] = True
    inputs = {"x": rng.standard_normal((10, 4, 4)), "key_padding_mask": pad}
    block = nnx.TransformerBlock(4, 2, seed=0, dtype="float64")
    target = rng.standard_normal((10, 4, 4))
    history = nnx.fit(block, nnx.MSE(), nnx.Adam(block.parameters(), lr=1e-3), (inputs, target), 2, batch_size=4,
                      validation_split=0.3, seed=0, progress=False)
    assert len(history["val_loss"]) == 2
    out = nnx.to_host(nnx.predict(block, inputs))
    masked = nnx.to_host(block.forward(nnx.to_device(inputs["x"], "numpy", "float64"),
                                       key_padding_mask=nnx.to_device(pad, "numpy")))
    block.drop_saved()  # a forward to read, no backward
    np.testing.assert_allclose(out, masked, rtol=1e-12, atol=1e-14)
    assert not np.allclose(out, nnx.to_host(block.forward(nnx.to_device(inputs["x"], "numpy", "float64"))))


def test_a_resumed_run_with_named_inputs_is_the_run_never_interrupted(tmp_path: Path) -> None:
    inputs, y = _data()

    def run(epochs: int, where: Path, model: nnx.Layer) -> None:
        nnx.fit(model, nnx.MSE(), nnx.Adam(model.parameters(), lr=0.01), (inputs, y), epochs, batch_size=5, seed=2,
                validation_split=0.25, checkpoint=where, resume=True, progress=False)

    straight, resumed = _lstm(), _lstm()
    run(3, tmp_path / "a", straight)
    run(1, tmp_path / "b", _lstm())
    run(3, tmp_path / "b", resumed)
    for p, q in zip(straight.parameters(), resumed.parameters()):
        np.testing.assert_array_equal(nnx.to_host(p.data), nnx.to_host(q.data))


def test_bad_named_inputs_are_refused_naming_them() -> None:
    inputs, y = _data()
    model = _lstm()
    opt = nnx.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ShapeError, match="key 'x'"):
        nnx.fit(model, nnx.MSE(), opt, ({"inputs": inputs["x"]}, y), 1, progress=False)
    with pytest.raises(ShapeError, match="one row per sample"):
        nnx.fit(model, nnx.MSE(), opt, ({"x": inputs["x"], "lengths": inputs["lengths"][:5]}, y), 1, progress=False)
    with pytest.raises(ShapeError, match="lengths"):
        nnx.fit(model, nnx.MSE(), opt, ({"x": inputs["x"], "lengths": inputs["lengths"] + 5}, y), 1, progress=False)
