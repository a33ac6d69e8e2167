"""LayerList and LayerDict: their layers are trained, saved and loaded like any other child."""

from __future__ import annotations

import numpy as np
import pytest

import nnx


class Tower(nnx.Layer):
    """Linear blocks in a LayerList, two heads in a LayerDict; the output sums the heads."""

    def __init__(self, blocks: nnx.LayerList | None = None, heads: nnx.LayerDict | None = None) -> None:
        super().__init__()
        self.blocks = blocks or nnx.LayerList([nnx.Linear(3, 4, seed=0, dtype="float64"), nnx.Tanh()])
        self.heads = heads or nnx.LayerDict({"a": nnx.Linear(4, 2, seed=1, dtype="float64"),
                                             "b": nnx.Linear(4, 2, seed=2, dtype="float64")})

    def forward(self, x):
        for layer in self.blocks:
            x = layer.forward(x)
        return self.heads["a"].forward(x) + self.heads["b"].forward(x)

    def backward(self, grad):
        g = self.heads["a"].backward(grad) + self.heads["b"].backward(grad)
        for layer in reversed(list(self.blocks)):
            g = layer.backward(g)
        return g


def test_parameters_state_names_and_optimizer_see_the_items() -> None:
    net = Tower()
    assert list(net.state_dict()) == ["blocks.0.weight", "blocks.0.bias", "heads.a.weight", "heads.a.bias",
                                      "heads.b.weight", "heads.b.bias"]
    assert len(nnx.SGD(net.parameters(), lr=0.1).params) == 6


def test_a_layer_with_collections_passes_gradcheck() -> None:
    x = np.random.default_rng(0).normal(size=(5, 3))
    result = nnx.testing.gradcheck(Tower(), x)
    assert result.ok, result


def test_save_and_load_keep_the_architecture_and_weights(tmp_path) -> None:
    nnx.register_layer(Tower)
    net = Tower()
    path = tmp_path / "tower.nnx"
    nnx.save(net, path)
    back = nnx.load(path)
    x = np.random.default_rng(1).normal(size=(2, 3))
    np.testing.assert_array_equal(back.forward(x), net.forward(x))
    assert isinstance(back.blocks, nnx.LayerList) and list(back.heads) == ["a", "b"]


def test_collections_wire_nothing_and_hold_only_layers() -> None:
    with pytest.raises(nnx.errors.StateError, match="wires none"):
        nnx.LayerList([nnx.ReLU()]).forward(np.ones(2))
    with pytest.raises(TypeError, match="item 1"):
        nnx.LayerList([nnx.ReLU(), 3])
    with pytest.raises(TypeError, match="without '.'"):
        nnx.LayerDict({"a.b": nnx.ReLU()})


@pytest.mark.parametrize("kind, holder", [(list, "LayerList"), (tuple, "LayerList"), (dict, "LayerDict")])
def test_a_plain_list_tuple_or_dict_of_layers_is_refused(kind, holder: str) -> None:
    layers = [nnx.Linear(3, 3, seed=0), nnx.ReLU()]
    value = dict(zip("ab", layers)) if kind is dict else kind(layers)

    class Plain(nnx.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = value

    with pytest.raises(nnx.errors.LayerTreeError) as caught:
        Plain()
    message = str(caught.value)
    assert isinstance(caught.value, TypeError)
    assert f"Plain.blocks is a plain {kind.__name__}" in message
    assert "'a'" in message if kind is dict else "blocks[0]" in message
    assert "neither trained nor saved" in message and f"self.blocks = nnx.{holder}(blocks)" in message


def test_assigning_layers_in_a_list_later_is_refused_too_and_changes_nothing() -> None:
    net = Tower()
    with pytest.raises(nnx.errors.LayerTreeError, match="LayerList"):
        net.extra = [nnx.Tanh(), nnx.Linear(2, 2, seed=0)]
    assert "extra" not in vars(net)


def test_lists_without_layers_and_layers_that_name_their_own_children_are_fine() -> None:
    class Sized(nnx.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.sizes, self.options, self.pair = [3, 4], {"mode": "a"}, (nnx.Parameter(np.ones(2), "p"), 1)

    class Wired(nnx.Layer):
        """Keeps its layers in a plain list and says so through its own named_children."""

        def __init__(self) -> None:
            super().__init__()
            self.parts = [nnx.Linear(2, 2, seed=0), nnx.Linear(2, 2, seed=1)]

        def named_children(self):
            for i, layer in enumerate(self.parts):
                yield f"part{i}", layer

    Sized()
    assert [n for n, _ in Wired().named_parameters()] == ["part0.weight", "part0.bias", "part1.weight", "part1.bias"]
    seq = nnx.Sequential(nnx.Linear(2, 2, seed=0), nnx.ReLU())
    seq.layers = [*seq.layers, nnx.Tanh()]  # Sequential keeps its own list
    assert len(seq) == 3
    tower = Tower()
    tower.heads = nnx.LayerDict({"c": nnx.Linear(4, 2, seed=3, dtype="float64")})
    assert [n for n, _ in tower.named_parameters()][-2:] == ["heads.c.weight", "heads.c.bias"]
