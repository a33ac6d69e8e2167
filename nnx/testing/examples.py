"""The models ``nnx parity`` checks by name: the tutorials' networks, an MLP, a classifier, a CNN,
an RNN, a tiny GPT, a character GPT and an encoder-decoder transformer.

Each example is built on the host (numpy) from fixed seeds, in the dtype asked
for, with its own data, loss and optimizer; :func:`nnx.testing.check_parity`
copies it onto each backend (``nnx parity --model NAME`` runs them).
:func:`case_for_model` wraps any model (a saved one, say) with seeded random
data shaped for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from nnx import backend as _backend
from nnx import init
from nnx import random as _random
from nnx.layers import (
    GELU,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    LayerNorm,
    Layer,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
)
from nnx.errors import ShapeError
from nnx.layers.checks import check_arguments
from nnx.layers import GRU, LSTM
from nnx.losses import MSE, Loss, SoftmaxCrossEntropy, SumSquaredError
from nnx.optim import SGD, Adam, Optimizer
from nnx.random import legacy
from nnx.testing.parity import clone_to

_XOR_X = [[0, 0, 1], [0, 1, 1], [1, 0, 1], [1, 1, 1]]


@dataclass
class ParityCase:
    """A model with the data, loss and optimizer to train it on (all on numpy)."""

    name: str
    description: str
    model: Layer
    loss: Loss
    x: Any
    y: Any
    optimizer: Callable[[list[Any]], Optimizer]


def _sgd(lr: float) -> Callable[[list[Any]], Optimizer]:
    return lambda params: SGD(params, lr=lr)


def _data(values: Any, dtype: str) -> Any:
    return _backend.to_device(values, "numpy", dtype=dtype)


def _seed000(dtype: str) -> ParityCase:
    model = Sequential(
        Linear(3, 1, bias=False, init=init.Uniform(-1, 1), seed=legacy(1), dtype=dtype, backend="numpy"),
        Sigmoid(),
    )
    x = _data([[0, 0, 1], [1, 1, 1], [1, 0, 1], [0, 1, 1]], dtype)
    y = _data([[0], [1], [1], [0]], dtype)
    return ParityCase("seed000", "single sigmoid neuron, half SSE, SGD lr 1 (tutorial 000)",
                      model, SumSquaredError(half=True), x, y, _sgd(1.0))


def _seed001(dtype: str) -> ParityCase:
    rng = legacy(1)
    model = Sequential(
        Linear(3, 4, bias=False, init=init.Uniform(-1, 1), seed=rng, dtype=dtype, backend="numpy"),
        Sigmoid(),
        Linear(4, 1, bias=False, init=init.Uniform(-1, 1), seed=rng, dtype=dtype, backend="numpy"),
        Sigmoid(),
    )
    y = _data([[0], [1], [1], [0]], dtype)
    return ParityCase("seed001", "3-4-1 sigmoid network, half SSE, SGD lr 1 (tutorial 001)",
                      model, SumSquaredError(half=True), _data(_XOR_X, dtype), y, _sgd(1.0))


def _seed004(dtype: str) -> ParityCase:
    rng = legacy(45532)
    model = Sequential(
        Linear(3, 4, bias=False, init=init.Uniform(0, 1), seed=rng, dtype=dtype, backend="numpy"),
        Sigmoid(),
        Linear(4, 1, bias=False, init=init.Uniform(0, 1), seed=rng, dtype=dtype, backend="numpy"),
        Sigmoid(),
    )
    y = _data([[0], [1], [1], [0]], dtype)
    return ParityCase("seed004", "3-4-1 sigmoid network, SSE, SGD lr 1 (tutorial 004)",
                      model, SumSquaredError(), _data(_XOR_X, dtype), y, _sgd(1.0))


def _mlp(dtype: str) -> ParityCase:
    model = Sequential(
        Linear(8, 16, seed=0, dtype=dtype, backend="numpy"),
        Tanh(),
        Linear(16, 16, seed=1, bias_init=init.Uniform(-0.1, 0.1), dtype=dtype, backend="numpy"),
        ReLU(),
        Linear(16, 4, seed=2, dtype=dtype, backend="numpy"),
        Sigmoid(),
    )
    rng = _random.make_rng(3)
    x = _data(_random.normal(rng, (32, 8), 0.0, 1.0), dtype)
    y = _data(_random.uniform(rng, (32, 4), 0.0, 1.0), dtype)
    return ParityCase("mlp", "8-16-16-4 MLP with biases (tanh, relu, sigmoid), MSE, SGD lr 0.5",
                      model, MSE(), x, y, _sgd(0.5))


def _classifier(dtype: str) -> ParityCase:
    model = Sequential(
        # no bias before a batch norm: its gradient would be rounding noise, which Adam
        # turns into full-size steps that differ between backends
        Linear(8, 16, bias=False, seed=4, dtype=dtype, backend="numpy"),
        BatchNorm1d(16, dtype=dtype, backend="numpy"),
        GELU(),
        Dropout(0.2, seed=5),
        Linear(16, 16, seed=6, dtype=dtype, backend="numpy"),
        LayerNorm(16, dtype=dtype, backend="numpy"),
        Tanh(),
        Linear(16, 5, seed=7, dtype=dtype, backend="numpy"),
    )
    rng = _random.make_rng(8)
    x = _data(_random.normal(rng, (32, 8), 0.0, 1.0), dtype)
    y = _backend.to_device(_random.permutation(rng, 32) % 5, "numpy", dtype="int64")
    return ParityCase("classifier", "8-16-16-5 classifier (batch norm, GELU, dropout, layer norm, tanh), "
                      "softmax cross-entropy on class indices, Adam lr 0.01",
                      model, SoftmaxCrossEntropy(), x, y, lambda params: Adam(params, lr=0.01))


def _cnn(dtype: str) -> ParityCase:
    f = {"dtype": dtype, "backend": "numpy"}
    model = Sequential(
        Conv2d(1, 6, 3, padding="same", bias=False, seed=9, **f), BatchNorm2d(6, **f), ReLU(), MaxPool2d(2),
        Conv2d(6, 8, 3, groups=2, seed=10, **f), Tanh(), AvgPool2d(2, stride=1), Flatten(),
        Linear(8, 4, seed=11, **f),
    )
    rng = _random.make_rng(12)
    x = _data(_random.normal(rng, (16, 1, 8, 8), 0.0, 1.0), dtype)
    y = _backend.to_device(_random.permutation(rng, 16) % 4, "numpy", dtype="int64")
    return ParityCase("cnn", "1x8x8 CNN (conv, batch norm 2d, max pool, grouped conv, avg pool), "
                      "softmax cross-entropy on class indices, SGD lr 0.1 momentum 0.9",
                      model, SoftmaxCrossEntropy(), x, y, lambda params: SGD(params, lr=0.1, momentum=0.9))


def _rnn(dtype: str) -> ParityCase:
    f = {"dtype": dtype, "backend": "numpy"}
    model = Sequential(
        GRU(4, 5, bidirectional=True, seed=13, **f),
        LSTM(10, 5, return_sequences=False, seed=14, **f),
        Linear(5, 3, seed=15, **f),
    )
    rng = _random.make_rng(16)
    x = _data(_random.normal(rng, (16, 5, 4), 0.0, 1.0), dtype)
    y = _backend.to_device(_random.permutation(rng, 16) % 3, "numpy", dtype="int64")
    return ParityCase("rnn", "sequence classifier (bidirectional GRU, LSTM's last state, linear) on 5-step "
                      "sequences, softmax cross-entropy on class indices, Adam lr 0.01",
                      model, SoftmaxCrossEntropy(), x, y, lambda params: Adam(params, lr=0.01))


def _tiny_gpt(dtype: str) -> ParityCase:
    from nnx.layers import Embedding, PositionalEmbedding, TransformerBlock

    f = {"dtype": dtype, "backend": "numpy"}
    vocab, seq = 7, 6
    model = Sequential(
        Embedding(vocab, 16, seed=13, **f), PositionalEmbedding(seq, 16, seed=14, **f),
        TransformerBlock(16, 2, hidden_dim=32, dropout=0.1, causal=True, seed=15, **f),
        LayerNorm(16, **f), Linear(16, vocab, seed=16, **f),
    )
    rng = _random.make_rng(17)
    tokens = rng.integers(0, vocab, (16, seq + 1))
    x = _backend.to_device(tokens[:, :-1], "numpy", dtype="int64")
    y = _data((tokens[:, 1:, None] == _random.asarray(range(vocab))) * 1.0, dtype)
    return ParityCase("tiny_gpt", "tiny GPT (embedding, learned positions, causal transformer block with dropout, "
                      "layer norm, head), MSE to one-hot next tokens, SGD lr 0.5",
                      # not Adam: the key bias's true gradient is exactly 0 (softmax ignores a constant
                      # per query), and Adam would turn its rounding noise into full-size steps
                      model, MSE(), x, y, _sgd(0.5))


def _zen() -> str:
    """The Zen of Python as the standard library's ``this`` module holds it (read, not imported: importing
    prints it), a text every Python installation has."""
    import codecs
    import importlib.util

    origin = importlib.util.find_spec("this").origin
    with open(origin, encoding="utf-8") as f:
        source = f.read()
    return codecs.decode(source.split('"""')[1], "rot13")


def _char_gpt(dtype: str) -> ParityCase:
    from nnx.layers import Embedding, PositionalEmbedding, TransformerBlock

    f = {"dtype": dtype, "backend": "numpy"}
    text, seq = _zen(), 6
    chars = sorted(set(text))
    ids = [chars.index(c) for c in text]
    model = Sequential(
        Embedding(len(chars), 8, seed=21, **f), PositionalEmbedding(seq, 8, seed=22, **f),
        TransformerBlock(8, 2, hidden_dim=16, causal=True, seed=23, **f),
        LayerNorm(8, **f), Linear(8, len(chars), seed=25, **f),
    )
    windows = [ids[s:s + seq + 1] for s in range(0, 16 * 13, 13)]
    x = _backend.to_device(_random.asarray([w[:-1] for w in windows]), "numpy", dtype="int64")
    y = _data(_random.asarray([[[float(t == c) for c in range(len(chars))] for t in w[1:]] for w in windows]), dtype)
    return ParityCase("char_gpt", "character GPT on the Zen of Python (examples/char_gpt.py's layers, smaller: "
                      "embedding, learned positions, a causal transformer block, layer norm, head), MSE to one-hot "
                      "next characters, SGD lr 0.5", model, MSE(), x, y, _sgd(0.5))


def _seq2seq(dtype: str) -> ParityCase:
    from nnx.layers import TransformerSeq2Seq

    rng = _random.make_rng(26)
    length, vocab = 4, 11
    model = TransformerSeq2Seq(10, vocab + 1, length, length, embed_dim=8, num_heads=2, hidden_dim=16,
                               num_layers=1, seed=27, dtype=dtype, backend="numpy")
    source = rng.integers(0, 10, (16, length))
    target = source[:, ::-1]
    packed = [list(s) + [vocab] + list(t[:-1]) for s, t in zip(source, target)]  # source, START, shifted target
    x = _backend.to_device(_random.asarray(packed), "numpy", dtype="int64")
    y = _data(_random.asarray([[[float(t == c) for c in range(vocab + 1)] for t in row] for row in target]), dtype)
    return ParityCase("seq2seq", "encoder-decoder transformer reversing digits (examples/seq2seq_reverse.py's "
                      "TransformerSeq2Seq, one block each: an encoder block, a decoder block with cross-attention), "
                      "source and decoder input packed in one array, MSE to one-hot targets, SGD lr 0.5",
                      model, MSE(), x, y, _sgd(0.5))


EXAMPLES: dict[str, Callable[[str], ParityCase]] = {
    "seed000": _seed000,
    "seed001": _seed001,
    "seed004": _seed004,
    "mlp": _mlp,
    "classifier": _classifier,
    "cnn": _cnn,
    "rnn": _rnn,
    "tiny_gpt": _tiny_gpt,
    "char_gpt": _char_gpt,
    "seq2seq": _seq2seq,
}


def example(name: str, dtype: str = "float64") -> ParityCase:
    """The example ``name`` (one of :data:`EXAMPLES`) built in ``dtype``."""
    if name not in EXAMPLES:
        raise ValueError(f"unknown example model {name!r}; choose one of {', '.join(EXAMPLES)}")
    check_arguments("example", dtype)
    return EXAMPLES[name](dtype)


def held_out_like(x: Any, batch: int, rng: Any) -> Any:
    """New inputs like an example's ``x``: ``batch`` rows of its trailing shape and dtype, standard normal
    floats or integers in ``x``'s range at each position (token ids; a packed input's parts keep their own
    vocabularies), drawn from ``rng`` (another seed: held-out data)."""
    host = _backend.to_host(x)
    shape = (batch, *host.shape[1:])
    if host.dtype.kind == "f":
        return _backend.to_device(_random.normal(rng, shape, 0.0, 1.0), "numpy", host.dtype.name)
    ids = rng.integers(host.min(axis=0), host.max(axis=0) + 1, shape)
    return _backend.to_device(ids, "numpy", host.dtype.name)


def _inputs(model: Layer, batch: int, rng: Any, dtype: str) -> Any:
    """Seeded inputs ``model`` accepts: the example input its first layer that states one draws
    (:meth:`~nnx.Layer.example_input`), floats in ``dtype``, indices as int64."""

    def fits(shape: tuple[int, ...]) -> bool:
        try:
            model.output_shape(shape)
        except ShapeError:
            return False
        return True

    x = model.example_input(batch, rng, fits)
    if x is None:
        raise ValueError("cannot size inputs: no layer of the model states its input (a Linear, "
                         "convolution or Embedding does; a layer of your own can with example_input)")
    floating = _backend.dtype_name(x).startswith("float")
    return _backend.to_device(x, "numpy", dtype=dtype if floating else "int64")


def case_for_model(model: Layer, name: str, *, batch: int = 16, seed: int = 0, lr: float = 0.1) -> ParityCase:
    """Wrap ``model`` with seeded inputs (see :func:`_inputs`), uniform targets, MSE and SGD;
    the target shape is that of the model's output on those inputs."""
    dtype = _backend.dtype_name(model.parameters()[0].data)
    rng = _random.make_rng(seed)
    try:
        x = _inputs(model, batch, rng, dtype)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    out = clone_to(model, "numpy").forward(x)
    y = _data(_random.uniform(rng, tuple(out.shape), 0.0, 1.0), dtype)
    return ParityCase(name, f"{name} with random data, MSE, SGD lr {lr}", model, MSE(), x, y, _sgd(lr))


__all__ = ["EXAMPLES", "ParityCase", "case_for_model", "example", "held_out_like"]
