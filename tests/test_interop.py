"""PyTorch state dicts by name: per layer type, a torch module's weights load into the nnx layer and
nnx reproduces torch's outputs to 1e-12 in float64; the reverse direction too; the name maps and their
errors."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest

import nnx
from nnx.errors import DTypeError, ShapeError

torch = pytest.importorskip("torch")
nn = torch.nn
RNG = np.random.default_rng(0)
F64 = {"dtype": "float64"}


def _gelu_tanh(x: Any) -> Any:
    return nn.functional.gelu(x, approximate="tanh")  # nnx's GELU is the tanh form


def _mha(module: Any, x: Any) -> Any:
    return module(x, x, x, need_weights=False)[0]


# name: (torch module, nnx layer, input shape or maker, torch call on the input)
CASES: dict[str, tuple[Callable[[], Any], Callable[[], nnx.Layer], Any, Callable[[Any, Any], Any]]] = {
    "Linear": (lambda: nn.Linear(5, 3), lambda: nnx.Linear(5, 3, **F64), (4, 5), None),
    "Linear_sequence": (lambda: nn.Linear(5, 3, bias=False), lambda: nnx.Linear(5, 3, bias=False, **F64),
                        (2, 4, 5), None),
    "Conv1d": (lambda: nn.Conv1d(2, 3, 3, padding=1), lambda: nnx.Conv1d(2, 3, 3, padding=1, **F64), (2, 2, 7), None),
    "Conv2d": (lambda: nn.Conv2d(2, 4, 3, stride=2, padding=1, groups=2),
               lambda: nnx.Conv2d(2, 4, 3, stride=2, padding=1, groups=2, **F64), (2, 2, 6, 6), None),
    "Embedding": (lambda: nn.Embedding(9, 4), lambda: nnx.Embedding(9, 4, **F64), "indices", None),
    "LayerNorm": (lambda: nn.LayerNorm(6), lambda: nnx.LayerNorm(6, **F64), (3, 4, 6), None),
    "BatchNorm1d": (lambda: nn.BatchNorm1d(5), lambda: nnx.BatchNorm1d(5, **F64), (6, 5), None),
    "BatchNorm2d": (lambda: nn.BatchNorm2d(3), lambda: nnx.BatchNorm2d(3, **F64), (2, 3, 4, 4), None),
    "MultiHeadAttention": (lambda: nn.MultiheadAttention(8, 2, batch_first=True),
                           lambda: nnx.MultiHeadAttention(8, 2, **F64), (2, 5, 8), _mha),
    "LSTM": (lambda: nn.LSTM(3, 4, num_layers=2, batch_first=True, bidirectional=True),
             lambda: nnx.LSTM(3, 4, num_layers=2, bidirectional=True, **F64), (2, 5, 3), lambda m, x: m(x)[0]),
    "GRU": (lambda: nn.GRU(3, 4, batch_first=True), lambda: nnx.GRU(3, 4, **F64), (2, 5, 3), lambda m, x: m(x)[0]),
    "LSTMCell": (lambda: nn.LSTMCell(3, 4), lambda: nnx.LSTMCell(3, 4, **F64), (2, 3), lambda m, x: m(x)[0]),
    "GRUCell": (lambda: nn.GRUCell(3, 4), lambda: nnx.GRUCell(3, 4, **F64), (2, 3), None),
    "TransformerBlock": (lambda: nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, activation=_gelu_tanh,
                                                            batch_first=True, norm_first=True),
                         lambda: nnx.TransformerBlock(8, 2, 16, **F64), (2, 5, 8), None),
}


def _input(spec: Any) -> np.ndarray:
    return RNG.integers(0, 9, size=(3, 4)) if spec == "indices" else RNG.normal(size=spec)


def _nnx_out(layer: nnx.Layer, x: np.ndarray) -> np.ndarray:
    out = layer.forward(x)
    layer.drop_saved()
    return nnx.to_host(out[0] if isinstance(out, tuple) else out)


def _torch_module(make: Callable[[], Any]) -> Any:
    torch.manual_seed(0)
    module = make().double()
    with torch.no_grad():  # running statistics other than 0 and 1, so that loading them is tested
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, dtype=b.dtype))
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, dtype=b.dtype) + 0.5)
    return module


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("training", [True, False])
def test_torch_weights_give_torch_outputs(name: str, training: bool) -> None:
    make_torch, make_nnx, spec, call = CASES[name]
    module, layer = _torch_module(make_torch), make_nnx()
    nnx.interop.load_torch_state_dict(layer, module.state_dict())
    module.train(training), layer.train(training)
    x = _input(spec)
    want = (call or (lambda m, t: m(t)))(module, torch.tensor(x)).detach().numpy()
    np.testing.assert_allclose(_nnx_out(layer, x), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(CASES))
def test_nnx_weights_give_nnx_outputs_in_torch(name: str) -> None:
    make_torch, make_nnx, spec, call = CASES[name]
    module, layer = _torch_module(make_torch), make_nnx()
    state = nnx.interop.torch_state_dict(layer)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    assert {k for k in module.state_dict() if not k.endswith("num_batches_tracked")} == set(state)
    module.eval(), layer.eval()
    x = _input(spec)
    want = (call or (lambda m, t: m(t)))(module, torch.tensor(x)).detach().numpy()
    np.testing.assert_allclose(_nnx_out(layer, x), want, rtol=1e-12, atol=1e-12)


def test_name_maps() -> None:
    block = nnx.TransformerBlock(8, 2)
    names = nnx.interop.torch_names(block)
    assert names["attn.out_proj_weight"] == "self_attn.out_proj.weight"
    assert names["fc1.weight"] == "linear1.weight" and names["norm2.bias"] == "norm2.bias"
    model = nnx.Sequential(nnx.Linear(2, 3), nnx.Tanh(), nnx.Linear(3, 1))
    assert nnx.interop.torch_names(model, {"2.weight": "head.weight"})["2.weight"] == "head.weight"
    stack = nnx.Sequential(nnx.Embedding(5, 8), block)
    names = nnx.interop.torch_names(stack, {"0.": "wte.", "1.": "blocks.0."})
    assert names["0.weight"] == "wte.weight" and names["1.fc2.bias"] == "blocks.0.linear2.bias"
    with pytest.raises(KeyError, match="'7.'"):
        nnx.interop.torch_names(stack, {"7.": "x."})


def test_tied_weights_load_under_either_name_and_untied_ones_are_refused() -> None:
    emb = nnx.Embedding(6, 4, **F64)
    model = nnx.Sequential(emb, nnx.Linear(4, 6, bias=False, weight=emb.weight, **F64))
    w = RNG.normal(size=(6, 4))
    nnx.interop.load_torch_state_dict(model, {"0.weight": w, "1.weight": w})
    assert np.array_equal(model[1].weight.data, w)
    assert set(nnx.interop.torch_state_dict(model)) == {"0.weight", "1.weight"}
    with pytest.raises(ShapeError, match="not tied"):
        nnx.interop.load_torch_state_dict(model, {"0.weight": w, "1.weight": w + 1})


def test_mismatches_are_errors_that_name_the_tensors() -> None:
    layer = nnx.Linear(5, 3)  # float32
    state = _torch_module(CASES["Linear"][0]).state_dict()  # float64
    with pytest.raises(DTypeError, match="cast='any'"):
        nnx.interop.load_torch_state_dict(layer, state)
    nnx.interop.load_torch_state_dict(layer, state, cast="any")
    with pytest.raises(ShapeError, match="lacks 'bias'"):
        nnx.interop.load_torch_state_dict(layer, {"weight": state["weight"]})
    with pytest.raises(ShapeError, match="has 'extra'"):
        nnx.interop.load_torch_state_dict(layer, {**state, "extra": state["bias"]})
    with pytest.raises(ShapeError, match=r"shape \(3, 5\)"):
        nnx.interop.load_torch_state_dict(nnx.Linear(3, 5, **F64), state)
