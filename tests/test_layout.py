"""One weight layout, PyTorch's: a Linear weight is (out_features, in_features), and files written in
format version 1 (Linear weights stored as (in, out)) still load and compute what they computed.

The files in tests/data/layout_v1 were written by nnx at commit a9fd14b (tests/data/layout_v1/make.py),
with the outputs and the parameters after one more Adam step as that version computed them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import nnx
from nnx.errors import FormatVersionError, ShapeError

DATA = Path(__file__).resolve().parent / "data" / "layout_v1"
EXPECTED = json.loads((DATA / "expected.json").read_text())


def model() -> nnx.Sequential:
    return nnx.Sequential(nnx.Linear(3, 4, seed=0, dtype="float64"), nnx.Tanh(),
                          nnx.Linear(4, 4, seed=1, dtype="float64"), nnx.Tanh(),
                          nnx.Linear(4, 2, seed=2, dtype="float64"))


def test_linear_weight_is_out_by_in_and_computes_x_times_its_transpose() -> None:
    layer = nnx.Linear(3, 2, dtype="float64", seed=0)
    assert layer.weight.shape == (2, 3)
    x = np.random.default_rng(1).normal(size=(4, 3))
    np.testing.assert_allclose(layer.forward(x), x @ layer.weight.data.T + layer.bias.data, rtol=1e-15)


def test_seeded_weights_are_drawn_in_the_in_out_order_and_stored_transposed() -> None:
    drawn = nnx.init.draw("xavier_uniform", (3, 2), nnx.random.make_rng(7), (3, 2))
    assert np.array_equal(nnx.Linear(3, 2, seed=7, dtype="float64").weight.data, drawn.T)


def test_given_weight_has_the_out_in_shape() -> None:
    with pytest.raises(ShapeError, match=r"\(2, 3\)"):
        nnx.Linear(3, 2, weight=np.zeros((3, 2)))


def test_a_version_1_model_file_loads_and_computes_what_it_computed() -> None:
    net = nnx.load(DATA / "model.nnx")
    assert [p.shape for p in net.parameters()][::2] == [(4, 3), (4, 4), (2, 4)]
    np.testing.assert_allclose(net.forward(np.array(EXPECTED["x"])), EXPECTED["output"], rtol=1e-14)


def test_a_version_1_weights_file_needs_its_model_and_then_loads() -> None:
    with pytest.raises(FormatVersionError, match="pass the model"):
        nnx.load_state_dict(DATA / "weights.nnx")
    net = model()
    net.load_state_dict(nnx.load_state_dict(DATA / "weights.nnx", net))
    np.testing.assert_allclose(net.forward(np.array(EXPECTED["x"])), EXPECTED["output"], rtol=1e-14)


def test_a_version_1_checkpoint_resumes_with_its_adam_moments_turned_too() -> None:
    net = model()
    opt = nnx.Adam(net.parameters(), lr=0.01)
    nnx.load_checkpoint(DATA / "checkpoint.nnx").restore(net, opt)
    nnx.train_step(net, nnx.MSE(), opt, np.array(EXPECTED["x"]), np.array(EXPECTED["t"]))
    for name, value in net.state_dict().items():
        want = np.array(EXPECTED["after_step"][name])
        np.testing.assert_allclose(value, want.T if value.ndim == 2 else want, rtol=1e-13, err_msg=name)


def test_files_are_written_in_version_2_and_read_back_unchanged(tmp_path: Path) -> None:
    net = model()
    nnx.save(net, tmp_path / "m.nnx")
    back = nnx.load(tmp_path / "m.nnx")
    assert nnx.io.read_tensors(tmp_path / "m.nnx").description["format_version"] == 2
    for (name, a), b in zip(net.state_dict().items(), back.state_dict().values()):
        assert np.array_equal(a, b), name
