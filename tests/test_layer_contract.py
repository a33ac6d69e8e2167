"""The layer contract and the layer tree, checked once for every layer nnx exports.

Every layer's incoming gradient is checked by the base class against the
output of the forward before it; containers only wire their children, and
everything about the whole tree (parameters, buffers, modes, moves, state
dicts, random states) comes from the base class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nnx
from gradcheck_cases import LAYERS, inputs


def _forwarded(name: str, backend: str) -> tuple[nnx.Layer, Any]:
    case = LAYERS[name]
    layer = case.build(backend)
    return layer, layer.forward(case.input(backend))


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_every_layer_checks_its_incoming_gradient(nnx_backend: str, name: str) -> None:
    layer, out = _forwarded(name, nnx_backend)
    shape = tuple(out.shape)
    wrong_shape = nnx.to_device(np.ones((shape[0] + 1,) + shape[1:]), nnx_backend, dtype="float64")
    with pytest.raises(nnx.errors.ShapeError, match=rf"expected a gradient of shape \({shape[0]}, "):
        layer.backward(wrong_shape)
    with pytest.raises(nnx.errors.DTypeError, match="float64.*float32"):
        layer.backward(nnx.to_device(np.ones(shape), nnx_backend, dtype="float32"))
    other = "numpy" if nnx_backend != "numpy" else "array_api_strict"
    with pytest.raises(nnx.errors.BackendMismatchError, match=other):
        layer.backward(nnx.to_device(np.ones(shape), other, dtype="float64"))
    layer.backward(nnx.to_device(np.ones(shape), nnx_backend, dtype="float64"))  # the saved tensors were kept
    with pytest.raises(nnx.errors.StateError, match="twice"):
        layer.backward(nnx.to_device(np.ones(shape), nnx_backend, dtype="float64"))


def test_dropout_refuses_a_gradient_of_another_shape(nnx_backend: str) -> None:
    drop = nnx.Dropout(0.5, seed=0)
    drop.forward(inputs(nnx_backend, (4, 3)))
    with pytest.raises(nnx.errors.ShapeError, match=r"\(4, 3\).*\(1, 3\)"):
        drop.backward(inputs(nnx_backend, (1, 3)))


class Doubler(nnx.Layer):
    """A minimal user layer written only against the public contract."""

    def forward(self, x: Any) -> Any:
        self.save_for_backward(x.shape)
        return x * 2

    def backward(self, grad: Any) -> Any:
        self.saved_tensors()
        return grad * 2


def test_a_user_layer_gets_the_contract_from_the_base_class(nnx_backend: str) -> None:
    layer = Doubler()
    with pytest.raises(nnx.errors.StateError, match="without a forward"):
        layer.backward(inputs(nnx_backend, (2, 2)))
    layer.forward(inputs(nnx_backend, (2, 2)))
    with pytest.raises(nnx.errors.ShapeError, match=r"\(2, 2\).*\(2, 3\)"):
        layer.backward(inputs(nnx_backend, (2, 3)))
    assert repr(layer) == "Doubler()"



class Skipper(nnx.Layer):
    """A user layer whose backward can skip the input's gradient: it records what it was asked."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nnx.Parameter(nnx.to_device(np.full((1,), 3.0), dtype="float64"), "scale")
        self.asked: list[bool] = []

    def forward(self, x: Any) -> Any:
        self.save_for_backward(x)
        return x * self.scale.data

    def backward(self, grad: Any, *, input_grad: bool = True) -> Any:
        (x,) = self.saved_tensors()
        self.asked.append(input_grad)
        xp = nnx.backend.namespace_of(grad)
        self.scale.accumulate(xp.reshape(xp.sum(grad * x), (1,)))
        return grad * self.scale.data if input_grad else None


def test_input_grad_false_reaches_backwards_that_take_it_and_is_kept_from_the_rest() -> None:
    x, g = inputs("numpy", (4, 2)), inputs("numpy", (4, 2), seed=1)
    skipper, doubler = Skipper(), Doubler()
    net = nnx.Sequential(skipper, doubler)
    net.forward(x)
    assert net.backward(g, input_grad=False) is None
    assert skipper.asked == [False]  # Doubler's backward takes no keyword: it ran as written
    net.forward(x)
    np.testing.assert_array_equal(net.backward(g), g * 2 * 3.0)
    assert skipper.asked == [False, True]
    np.testing.assert_array_equal(skipper.scale.grad, 2 * 2 * np.sum(g * x, keepdims=True)[0])
    doubler.forward(x)
    assert doubler.backward(g, input_grad=False) is None
    skipper.forward(x)
    with pytest.raises(nnx.errors.ShapeError, match="expected a gradient"):  # still checked
        skipper.backward(inputs("numpy", (4, 3)), input_grad=False)


def test_residual_without_input_grad_fills_the_same_gradients_bit_for_bit() -> None:
    def block() -> nnx.Residual:
        return nnx.Residual(nnx.Sequential(nnx.Linear(3, 4, seed=0, dtype="float64"), nnx.Tanh()),
                            nnx.Linear(3, 4, seed=1, dtype="float64"))

    x, g = inputs("numpy", (5, 3)), inputs("numpy", (5, 4), seed=1)
    full, skip = block(), block()
    full.forward(x)
    assert full.backward(g) is not None
    skip.forward(x)
    assert skip.backward(g, input_grad=False) is None
    for a, b in zip(full.parameters(), skip.parameters()):
        np.testing.assert_array_equal(a.grad, b.grad)


def test_a_layer_without_a_backward_says_so() -> None:
    class ForwardOnly(nnx.Layer):
        def forward(self, x: Any) -> Any:
            return x

    with pytest.raises(NotImplementedError, match="ForwardOnly has no backward"):
        ForwardOnly().backward(np.ones(2), input_grad=False)

def _tree(backend: str | None = None) -> nnx.Sequential:
    return nnx.Sequential(
        nnx.Linear(3, 4, seed=0, dtype="float64", backend=backend),
        nnx.Sequential(nnx.BatchNorm1d(4, dtype="float64", backend=backend), nnx.Dropout(0.5, seed=1),
                       nnx.Sequential(nnx.Linear(4, 4, seed=2, dtype="float64", backend=backend), nnx.Tanh())),
        nnx.Linear(4, 2, seed=3, dtype="float64", backend=backend),
    )


def test_named_modules_parameters_and_buffers_use_dotted_paths() -> None:
    net = _tree()
    assert [p for p, _ in net.named_modules()] == ["", "0", "1", "1.0", "1.1", "1.2", "1.2.0", "1.2.1", "2"]
    assert [n for n, _ in net.named_parameters()] == [
        "0.weight", "0.bias", "1.0.weight", "1.0.bias", "1.2.0.weight", "1.2.0.bias", "2.weight", "2.bias"]
    assert [n for n, _ in net.named_buffers()] == ["1.0.running_mean", "1.0.running_var"]
    assert list(net.state_dict()) == [n for n, _ in net.named_parameters()] + ["1.0.running_mean", "1.0.running_var"]
    assert net.get_submodule("1.2.1") is net[1][2][1]
    assert list(net.random_states()) == ["1.1"]


def test_a_shared_layer_counts_once() -> None:
    shared = nnx.Linear(3, 3, seed=0)
    net = nnx.Sequential(shared, nnx.Tanh(), shared)
    assert len(net.parameters()) == 2 and [p for p, _ in net.named_modules()] == ["", "0", "1"]


def test_modes_and_moves_reach_every_nested_layer() -> None:
    net = _tree("numpy")
    net.eval()
    assert all(not m.training for _, m in net.named_modules())
    net.train()
    assert all(m.training for _, m in net.named_modules())
    net.to("array_api_strict")
    for value in net.state_dict().values():
        assert nnx.backend.backend_of(value) == "array_api_strict"
    net.forward(nnx.to_device(np.ones((5, 3)), "array_api_strict", dtype="float64"))


def test_predict_leaves_nothing_saved_in_nested_layers(nnx_backend: str) -> None:
    net = _tree()
    nnx.predict(net, np.ones((5, 3)))
    nnx.evaluate(net, nnx.MSE(), (np.ones((5, 3)), np.zeros((5, 2))))
    assert all(m._saved is None for _, m in net.named_modules())


def test_state_dict_round_trip_and_its_errors(nnx_backend: str) -> None:
    source, target = _tree("numpy"), _tree(nnx_backend)
    source.forward(nnx.to_device(np.random.default_rng(0).normal(size=(5, 3)), "numpy", dtype="float64"))
    target.load_state_dict({k: nnx.to_host(v) for k, v in source.state_dict().items()})
    for name, value in target.state_dict().items():
        assert nnx.backend.backend_of(value) == nnx_backend
        assert np.array_equal(nnx.to_host(value), nnx.to_host(source.state_dict()[name])), name
    state = {k: nnx.to_host(v) for k, v in source.state_dict().items()}
    with pytest.raises(nnx.errors.ShapeError, match="lacks tensors the architecture needs: '2.bias'"):
        target.load_state_dict({k: v for k, v in state.items() if k != "2.bias"})
    with pytest.raises(nnx.errors.ShapeError, match="does not have: 'extra'"):
        target.load_state_dict({**state, "extra": np.zeros(1)})
    with pytest.raises(nnx.errors.ShapeError, match=r"'0.weight' has shape \(3, 4\) in the state"):
        target.load_state_dict({**state, "0.weight": state["0.weight"].T})
    with pytest.raises(nnx.errors.DTypeError, match="'0.bias' is float16 in the state"):
        target.load_state_dict({**state, "0.bias": state["0.bias"].astype(np.float16)}, cast="none")
    narrow = _tree(nnx_backend)
    narrow.to(dtype="float32")
    with pytest.raises(nnx.errors.DTypeError, match="is float64 in the state.*cast='any'"):
        narrow.load_state_dict(state)  # never truncated in silence
    narrow.load_state_dict(state, cast="any")
    assert nnx.backend.dtype_name(narrow.state_dict()["0.bias"]) == "float32"
    widened = {**state, "0.bias": state["0.bias"].astype(np.float32)}
    target.load_state_dict(widened)  # float32 into float64: every value kept
    assert np.array_equal(nnx.to_host(target.state_dict()["0.bias"]), widened["0.bias"].astype(np.float64))


def test_observe_sees_every_call_and_leaves_nothing_behind(nnx_backend: str) -> None:
    net = _tree()
    seen: list[tuple[str, str]] = []
    with net.observe(lambda path, layer, method, arg, out: seen.append((path, method)), ("forward", "backward")):
        out = net.forward(inputs(nnx_backend, (5, 3)))
        net.backward(nnx.to_device(np.ones(tuple(out.shape)), nnx_backend, dtype="float64"))
    forward = [p for p, m in seen if m == "forward"]
    assert forward == ["0", "1.0", "1.1", "1.2.0", "1.2.1", "1.2", "1", "2", ""]
    assert [p for p, m in seen if m == "backward"][:3] == ["2", "1.2.1", "1.2.0"]
    assert all("forward" not in vars(m) and "backward" not in vars(m) for _, m in net.named_modules())


def test_observe_sees_a_training_step_that_skips_the_first_input_gradient(nnx_backend: str) -> None:
    net = _tree(nnx_backend)
    seen: dict[str, Any] = {}
    with net.observe(lambda path, layer, method, arg, out: seen.setdefault(path, out), ("backward",)):
        x, y = inputs(nnx_backend, (5, 3)), inputs(nnx_backend, (5, 2), seed=1)
        nnx.train_step(net, nnx.MSE(), nnx.SGD(net.parameters(), lr=0.1), x, y)
    assert seen["0"] is None and seen[""] is None and seen["2"] is not None


def test_register_layer_as_a_decorator_saves_and_loads(tmp_path: Path) -> None:
    @nnx.register_layer(name="test_layer_contract.Scaled")
    class Scaled(nnx.Layer):
        def __init__(self, factor: float = 2.0) -> None:
            super().__init__()
            self.factor = factor

        def forward(self, x: Any) -> Any:
            self.save_for_backward(None)
            return x * self.factor

        def backward(self, grad: Any) -> Any:
            self.saved_tensors()
            return grad * self.factor

        def config(self) -> dict[str, Any]:
            return {"factor": self.factor}

    try:
        net = nnx.Sequential(nnx.Linear(2, 2, seed=0), Scaled(3.0))
        loaded = nnx.load(nnx.save(net, tmp_path / "m.nnx"))
        assert isinstance(loaded[1], Scaled) and loaded[1].factor == 3.0
        assert repr(loaded[1]) == "Scaled(factor=3.0)"
    finally:
        del nnx.layers.registry._LAYERS["test_layer_contract.Scaled"]


def test_a_model_file_of_nnx_0_1_still_loads(tmp_path: Path) -> None:
    """nnx 0.1 described a Sequential as {"type", "layers"}; such files load and resume as before."""
    net = nnx.Sequential(nnx.Linear(3, 4, seed=0), nnx.Sequential(nnx.Tanh(), nnx.Linear(4, 2, seed=1)))
    path = nnx.save(net, tmp_path / "new.nnx")
    file = nnx.io.read_tensors(path)

    def legacy(node: dict[str, Any]) -> dict[str, Any]:
        if "children" in node:
            return {"type": node["type"], "layers": [legacy(child) for _, child in node["children"]]}
        return node

    description = dict(file.description, model=legacy(file.description["model"]))
    old = nnx.io.write_tensors(tmp_path / "old.nnx", dict(file.tensors), description)
    assert "children" not in str(nnx.io.read_tensors(old).description["model"])
    loaded = nnx.load(old)
    assert repr(loaded) == repr(net)
    x = nnx.to_device(np.ones((2, 3)), dtype="float32")
    assert np.array_equal(nnx.to_host(loaded.forward(x)), nnx.to_host(net.forward(x)))


def _own_elements(layer: nnx.Layer) -> int:
    return sum(p.size for _, p in layer._own_parameters()) + sum(
        int(np.prod(getattr(layer, n).shape)) for n in layer.buffer_names)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_every_layer_states_the_sizes_its_config_implies(name: str) -> None:
    """A model file's loader checks ``config_size`` against the file before building; it must be exact."""
    for path, layer in LAYERS[name].make().named_modules():
        assert type(layer).config_size(layer.config()) == _own_elements(layer), f"{name} at {path!r}"


def test_every_built_in_layer_declares_itself() -> None:
    """Each exported layer is registered under its class name and states its sizes and example
    input itself (the defaults are for layers of one's own)."""
    exported = {getattr(nnx.layers, n) for n in nnx.layers.__all__}
    classes = {c for c in exported if isinstance(c, type) and issubclass(c, nnx.Layer) and c is not nnx.Layer}
    registered = nnx.io.registered_layers()
    for cls in classes:
        where = f"nnx/layers/{cls.__module__.rsplit('.', 1)[-1]}.py"
        assert registered.get(cls.__name__) is cls, f"register {cls.__name__} with @register_layer in {where}"
        assert cls.config_size.__func__ is not nnx.Layer.config_size.__func__, \
            f"give {cls.__name__} a config_size in {where}"
        assert cls.example_input is not nnx.Layer.example_input, f"give {cls.__name__} an example_input in {where}"


def test_every_built_in_registered_layer_is_public() -> None:
    """One list: a layer registered in a file under nnx/layers/ is in that file's ``__all__``, and
    ``nnx.layers`` and ``nnx`` export it from there (nnx/__init__.py restates no layer names)."""
    for name, cls in nnx.io.registered_layers().items():
        if not cls.__module__.startswith("nnx.layers."):
            continue
        module = __import__(cls.__module__, fromlist=["__all__"])
        where = cls.__module__.replace(".", "/") + ".py"
        assert name in getattr(module, "__all__", ()), f"add {name!r} to __all__ in {where}"
        assert name in nnx.layers.__all__, f"import {where}'s __all__ into nnx/layers/__init__.py"
        assert getattr(nnx, name) is cls, "nnx/__init__.py should re-export nnx.layers.__all__"
