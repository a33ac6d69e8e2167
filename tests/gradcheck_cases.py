"""The gradcheck table: one case (or more) for every layer and loss nnx exports.

``tests/test_gradients.py`` checks each case on every CPU backend, in
training and evaluation mode, and fails when an exported layer or loss has
no case here; ``benchmarks/gradcheck_table.py`` prints the worst errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

import attention_cases as att
import nnx


def inputs(backend: str, shape: tuple[int, ...], seed: int = 0, off_kinks: bool = False) -> Any:
    """Standard normal float64 inputs; ``off_kinks`` moves them off 0, where ReLU-like derivatives jump."""
    host = np.random.default_rng(seed).standard_normal(shape)
    if off_kinks:
        host = np.where(np.abs(host) < 0.05, 0.5, host)
    return nnx.to_device(host, backend, dtype="float64")


@dataclass(frozen=True)
class LayerCase:
    """A layer built fresh for each check, the input shape, and how to prepare it."""

    make: Callable[[], nnx.Layer]
    shape: tuple[int, ...]
    off_kinks: bool = False
    indices: tuple[int, int] | None = None  # integer inputs in [low, high) instead of float64 normals
    eps: float = 1e-6  # gradcheck's step of the central differences
    covers: tuple[type, ...] = ()  # exported classes checked inside a test-only wrapper built by ``make``

    def input(self, backend: str, seed: int = 0) -> Any:
        """The input the case is checked on."""
        if self.indices is not None:
            ids = np.random.default_rng(seed).integers(*self.indices, self.shape)
            return nnx.to_device(ids, backend, dtype="int64")
        return inputs(backend, self.shape, seed, self.off_kinks)

    def build(self, backend: str) -> nnx.Layer:
        """The layer with random values in every parameter that starts constant (a norm's weight 1 and
        bias 0, say) and, if it has them, non-trivial running statistics."""
        layer = self.make()
        rng = np.random.default_rng(7)
        for p in layer.parameters():
            values = nnx.to_host(p.data)
            if values.size > 1 and np.all(values == values.flat[0]):
                p.data = nnx.to_device(rng.uniform(0.5, 1.5, p.shape), backend, dtype="float64")
        if list(layer.named_buffers()):
            layer.train().forward(self.input(backend, 11) * 2.0 + 0.5)
            layer.drop_saved()
        return layer


def _f64(cls: type, *args: Any, **kwargs: Any) -> Callable[[], nnx.Layer]:
    return lambda: cls(*args, dtype="float64", **kwargs)


LAYERS: dict[str, LayerCase] = {
    "Linear": LayerCase(_f64(nnx.Linear, 4, 3, seed=1, bias_init=nnx.init.Normal(0, 1)), (6, 4)),
    "Linear(bias=False)": LayerCase(_f64(nnx.Linear, 4, 3, bias=False, seed=2), (6, 4)),
    "Sigmoid": LayerCase(nnx.Sigmoid, (6, 4)),
    "Tanh": LayerCase(nnx.Tanh, (6, 4)),
    "ReLU": LayerCase(nnx.ReLU, (6, 4), off_kinks=True),
    "LeakyReLU(0.1)": LayerCase(lambda: nnx.LeakyReLU(0.1), (6, 4), off_kinks=True),
    "GELU": LayerCase(nnx.GELU, (6, 4)),
    "SiLU": LayerCase(nnx.SiLU, (6, 4)),
    "Softmax": LayerCase(nnx.Softmax, (6, 4)),
    "Softmax(axis=0)": LayerCase(lambda: nnx.Softmax(axis=0), (6, 4)),
    "Flatten": LayerCase(nnx.Flatten, (3, 2, 2)),
    "Dropout(0.4)": LayerCase(lambda: nnx.Dropout(0.4, seed=5), (6, 4)),
    "LayerNorm": LayerCase(_f64(nnx.LayerNorm, 4), (6, 4)),
    "LayerNorm(affine=False), 3-D": LayerCase(_f64(nnx.LayerNorm, 4, affine=False), (2, 3, 4)),
    "RMSNorm, 3-D": LayerCase(_f64(nnx.RMSNorm, 4), (2, 3, 4)),
    "BatchNorm1d": LayerCase(_f64(nnx.BatchNorm1d, 4), (6, 4)),
    "BatchNorm1d(affine=False)": LayerCase(_f64(nnx.BatchNorm1d, 4, affine=False), (6, 4)),
    # no bias before BatchNorm1d: in training mode its true gradient is exactly 0
    "Conv1d(padding='same', dilation=2)": LayerCase(_f64(nnx.Conv1d, 3, 4, 3, padding="same", dilation=2, seed=7),
                                                    (2, 3, 9)),
    "Conv2d": LayerCase(_f64(nnx.Conv2d, 3, 4, 3, seed=8, bias_init=nnx.init.Normal(0, 1)), (2, 3, 6, 5)),
    "Conv2d(stride=2, padding=1, bias=False)": LayerCase(
        _f64(nnx.Conv2d, 2, 3, (3, 2), stride=2, padding=1, bias=False, seed=9), (2, 2, 7, 6)),
    "Conv2d(groups=2, dilation=(2, 1))": LayerCase(_f64(nnx.Conv2d, 4, 6, 2, groups=2, dilation=(2, 1), seed=10),
                                                   (2, 4, 6, 5)),
    "Conv2d depthwise": LayerCase(_f64(nnx.Conv2d, 3, 3, 3, groups=3, padding="same", seed=11), (2, 3, 5, 5)),
    # 4 channels: stride 1 multiplies shifted views per kernel offset instead of gathering windows
    "Conv2d(4, 4), shifted products": LayerCase(_f64(nnx.Conv2d, 4, 4, 2, padding=1, seed=30), (2, 4, 3, 3)),
    "MaxPool2d(2)": LayerCase(lambda: nnx.MaxPool2d(2), (2, 3, 6, 5)),
    "MaxPool2d(3, stride=2, padding=1)": LayerCase(lambda: nnx.MaxPool2d(3, stride=2, padding=1), (2, 2, 7, 6)),
    "AvgPool2d(2)": LayerCase(lambda: nnx.AvgPool2d(2), (2, 3, 6, 5)),
    "AvgPool2d(3, stride=2, padding=1)": LayerCase(lambda: nnx.AvgPool2d(3, stride=2, padding=1), (2, 2, 7, 6)),
    "GlobalAvgPool2d": LayerCase(nnx.GlobalAvgPool2d, (2, 3, 4, 5)),
    "BatchNorm2d": LayerCase(_f64(nnx.BatchNorm2d, 3), (3, 3, 4, 2)),
    "BatchNorm2d(affine=False)": LayerCase(_f64(nnx.BatchNorm2d, 3, affine=False), (2, 3, 2, 3)),
    "Sequential (a small CNN)": LayerCase(lambda: nnx.Sequential(
        nnx.Conv2d(1, 4, 3, padding=1, bias=False, seed=12, dtype="float64"), nnx.BatchNorm2d(4, dtype="float64"),
        nnx.ReLU(), nnx.MaxPool2d(2), nnx.Conv2d(4, 4, 3, groups=2, seed=13, dtype="float64"), nnx.Tanh(),
        nnx.GlobalAvgPool2d(), nnx.Linear(4, 3, seed=14, dtype="float64"),
    ), (3, 1, 6, 6), off_kinks=True),
    "Embedding": LayerCase(_f64(nnx.Embedding, 7, 3, seed=15), (4, 5), indices=(0, 7)),
    # the padding row gets no gradient by design, so the checked indices avoid it (tested on its own)
    "Embedding(padding_idx=0)": LayerCase(_f64(nnx.Embedding, 7, 3, padding_idx=0, seed=16), (4, 5), indices=(1, 7)),
    "Linear on (batch, length, in)": LayerCase(_f64(nnx.Linear, 4, 3, seed=17), (2, 5, 4)),
    "Mean": LayerCase(lambda: nnx.Mean(1), (3, 5, 4)),
    "Reshape": LayerCase(lambda: nnx.Reshape((2, 1, 3)), (4, 6)),
    "Standardize (fitted)": LayerCase(lambda: nnx.preprocessing.Standardize(4, dtype="float64").fit(
        np.random.default_rng(3).normal(2.0, 3.0, (20, 4))), (6, 4)),
    "ClassLabels": LayerCase(lambda: nnx.preprocessing.ClassLabels(["a", "b", "c", "d"]), (6, 4)),
    "Destandardize (fitted)": LayerCase(lambda: nnx.preprocessing.Destandardize(4, dtype="float64").fit(
        np.random.default_rng(4).normal(-5.0, 20.0, (20, 4))), (6, 4)),
    "Mean(axis=-1)": LayerCase(lambda: nnx.Mean(-1), (3, 5, 4)),
    "Residual": LayerCase(lambda: nnx.Residual(nnx.Sequential(
        nnx.Linear(4, 4, seed=18, dtype="float64"), nnx.Tanh())), (5, 4)),
    "Residual (projection shortcut, ResNet block)": LayerCase(lambda: nnx.Residual(
        nnx.Sequential(nnx.Conv2d(2, 4, 3, stride=2, padding=1, bias=False, seed=19, dtype="float64"),
                       nnx.BatchNorm2d(4, dtype="float64"), nnx.ReLU(),
                       nnx.Conv2d(4, 4, 3, padding=1, seed=20, dtype="float64")),
        shortcut=nnx.Conv2d(2, 4, 1, stride=2, seed=21, dtype="float64")), (3, 2, 6, 6), off_kinks=True,
        eps=1e-5),  # BatchNorm over 27 positions amplifies the differences' rounding; at 1e-6 it reaches rtol
    "Sequential (text: Embedding, Mean, Residual)": LayerCase(lambda: nnx.Sequential(
        nnx.Embedding(9, 4, seed=22, dtype="float64"), nnx.Linear(4, 4, seed=23, dtype="float64"), nnx.Mean(1),
        nnx.Residual(nnx.Sequential(nnx.Linear(4, 4, seed=24, dtype="float64"), nnx.Sigmoid())),
        nnx.Linear(4, 2, seed=25, dtype="float64")), (3, 6), indices=(0, 9)),
    "Sequential (every layer, nested)": LayerCase(lambda: nnx.Sequential(
        nnx.Flatten(), nnx.Linear(4, 5, bias=False, seed=3, dtype="float64"), nnx.BatchNorm1d(5, dtype="float64"),
        nnx.GELU(), nnx.Dropout(0.3, seed=1),
        nnx.Sequential(nnx.Linear(5, 4, seed=4, dtype="float64"), nnx.LayerNorm(4, dtype="float64")),
        nnx.LeakyReLU(), nnx.Linear(4, 3, seed=6, dtype="float64"), nnx.Tanh(), nnx.Softmax(),
    ), (6, 2, 2), off_kinks=True),
}


# recurrent layers -----------------------------------------------------------------------------


def _host_state(backend: str, shape: tuple[int, ...], seed: int) -> Any:
    return nnx.to_device(np.random.default_rng(seed).standard_normal(shape), backend, dtype="float64")


class _CellLoop(nnx.Layer):
    """A cell run over the steps of ``(batch, steps, input)`` from a fixed non-zero state, every
    step's ``h`` as the output: the loop a user writes with a cell, backward in reverse order."""

    def __init__(self, cell: nnx.Layer) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, x: Any) -> Any:
        xp, backend = nnx.backend.namespace_of(x), nnx.backend.backend_of(x)
        shape = (x.shape[0], self.cell.hidden_size)
        state = _host_state(backend, shape, 40)
        if isinstance(self.cell, nnx.LSTMCell):
            state = (state, _host_state(backend, shape, 41))
        outputs = []
        for t in range(x.shape[1]):
            state = self.cell.forward(x[:, t, :], state)
            outputs.append(state[0] if isinstance(state, tuple) else state)
        self.save_for_backward(x.shape[1])
        return xp.stack(outputs, axis=1)

    def backward(self, grad: Any) -> Any:
        (steps,) = self.saved_tensors()
        lstm = isinstance(self.cell, nnx.LSTMCell)
        dh, dc, dxs = grad[:, 0, :] * 0.0, None, []
        for t in reversed(range(steps)):
            if lstm:
                dx, (dh, dc) = self.cell.backward((grad[:, t, :] + dh, dc))
            else:
                dx, dh = self.cell.backward(grad[:, t, :] + dh)
            dxs.append(dx)
        return nnx.backend.namespace_of(grad).stack(dxs[::-1], axis=1)


class _Given(nnx.Layer):
    """A recurrent layer run with sequence lengths and random initial states (``layer.given``)."""

    def __init__(self, layer: nnx.Layer, lengths: list[int]) -> None:
        super().__init__()
        self.layer, self.lengths = layer, lengths

    def forward(self, x: Any) -> Any:
        backend, layer = nnx.backend.backend_of(x), self.layer
        shape = (layer.num_layers * layer.directions, x.shape[0], layer.hidden_size)
        states = {"h0": _host_state(backend, shape, 42)}
        if isinstance(layer, nnx.LSTM):
            states["c0"] = _host_state(backend, shape, 43)
        self.save_for_backward()
        with layer.given(lengths=nnx.to_device(self.lengths, backend, dtype="int64"), **states):
            return layer.forward(x)

    def backward(self, grad: Any) -> Any:
        self.saved_tensors()
        return self.layer.backward(grad)


class _FinalStates(nnx.Layer):
    """A recurrent layer's output followed by its final states, flattened per sample into one
    ``(batch, ...)`` output, so the final states' gradients go through ``backward(h_n_grad=, c_n_grad=)``."""

    def __init__(self, layer: nnx.Layer, lengths: list[int]) -> None:
        super().__init__()
        self.layer, self.lengths = layer, lengths

    def forward(self, x: Any) -> Any:
        xp, layer = nnx.backend.namespace_of(x), self.layer
        y = layer.forward(x, nnx.to_device(self.lengths, nnx.backend.backend_of(x), dtype="int64"))
        finals = [getattr(layer, f"{s}_n") for s in layer._states]
        self.save_for_backward(tuple(y.shape), tuple(finals[0].shape))
        parts = [xp.reshape(y, (y.shape[0], -1))] + [xp.reshape(xp.permute_dims(f, (1, 0, 2)), (y.shape[0], -1))
                                                      for f in finals]
        return xp.concat(parts, axis=1)

    def backward(self, grad: Any) -> Any:
        y_shape, state = self.saved_tensors()
        xp, size = nnx.backend.namespace_of(grad), y_shape[1] * y_shape[2]
        width = state[0] * state[2]
        finals = [xp.permute_dims(xp.reshape(grad[:, size + i * width:size + (i + 1) * width],
                                             (state[1], state[0], state[2])), (1, 0, 2))
                  for i in range(len(self.layer._states))]
        return self.layer.backward(xp.reshape(grad[:, :size], y_shape),
                                   **{f"{s}_n_grad": f for s, f in zip(self.layer._states, finals)})


LAYERS.update({
    "LSTMCell (3 steps from a non-zero state)": LayerCase(lambda: _CellLoop(nnx.LSTMCell(3, 2, seed=30,
                                                          dtype="float64")), (2, 3, 3), covers=(nnx.LSTMCell,)),
    "GRUCell(bias=False) (3 steps from a non-zero state)": LayerCase(lambda: _CellLoop(nnx.GRUCell(
        3, 2, bias=False, seed=31, dtype="float64")), (2, 3, 3), covers=(nnx.GRUCell,)),
    "GRUCell (3 steps from a non-zero state)": LayerCase(lambda: _CellLoop(nnx.GRUCell(3, 2, seed=32,
                                                         dtype="float64")), (2, 3, 3), covers=(nnx.GRUCell,)),
    "LSTM": LayerCase(_f64(nnx.LSTM, 3, 2, seed=33), (2, 4, 3)),
    "LSTM(bidirectional, return_sequences=False)": LayerCase(_f64(
        nnx.LSTM, 2, 2, bidirectional=True, return_sequences=False, seed=34), (2, 3, 2)),
    "LSTM(batch_first=False, bias=False)": LayerCase(_f64(nnx.LSTM, 3, 2, batch_first=False, bias=False, seed=35),
                                                     (3, 2, 3)),
    "LSTM(num_layers=2) with lengths and initial states": LayerCase(lambda: _Given(
        nnx.LSTM(2, 2, num_layers=2, seed=36, dtype="float64"), [3, 1, 2]), (3, 3, 2), covers=(nnx.LSTM,)),
    "GRU": LayerCase(_f64(nnx.GRU, 3, 2, seed=37), (2, 4, 3)),
    # hidden_size 1 keeps the numeric gradient cheap; the other cases mix several hidden units
    "GRU(num_layers=2, bidirectional)": LayerCase(_f64(nnx.GRU, 2, 1, num_layers=2, bidirectional=True, seed=38),
                                                  (2, 3, 2)),
    "GRU(return_sequences=False, bias=False)": LayerCase(_f64(nnx.GRU, 3, 2, return_sequences=False, bias=False,
                                                              seed=39), (2, 4, 3)),
    "GRU(bidirectional, return_sequences=False) with lengths and h0": LayerCase(lambda: _Given(
        nnx.GRU(2, 2, bidirectional=True, return_sequences=False, seed=44, dtype="float64"), [3, 0, 2]),
        (3, 3, 2), covers=(nnx.GRU,)),
    "LSTM(num_layers=2, bidirectional) with lengths, gradients into h_n and c_n": LayerCase(lambda: _FinalStates(
        nnx.LSTM(2, 2, num_layers=2, bidirectional=True, seed=45, dtype="float64"), [3, 1]), (2, 3, 2),
        covers=(nnx.LSTM,)),
    "GRU(num_layers=2) with lengths, gradient into h_n": LayerCase(lambda: _FinalStates(
        nnx.GRU(2, 2, num_layers=2, seed=46, dtype="float64"), [2, 3]), (2, 3, 2), covers=(nnx.GRU,)),
})


# attention: the op and the layers, with every mask kind (wrappers in tests/attention_cases.py)
LAYERS.update({
    "scaled_dot_product_attention": LayerCase(lambda: att.AttentionOp(), (2, 2, 4, 9)),
    "scaled_dot_product_attention(causal, seq_q < seq_k)": LayerCase(lambda: att.AttentionOp(True, seq_q=3),
                                                                     (2, 2, 5, 9)),
    "scaled_dot_product_attention(key padding, one sample fully padded)": LayerCase(
        lambda: att.AttentionOp(padding=att.padding_mask(3, 4)), (3, 2, 4, 9)),
    "scaled_dot_product_attention(additive -inf mask, one row fully blocked)": LayerCase(
        lambda: att.AttentionOp(additive=att.additive_mask(4, 4)), (2, 2, 4, 9)),
    "scaled_dot_product_attention(causal, padding, additive, dropout)": LayerCase(
        lambda: att.AttentionOp(True, att.padding_mask(3, 4), att.additive_mask(4, 4), att.dropout_mask((3, 2, 4, 4))),
        (3, 2, 4, 9)),
    # widths whose packed projection PyTorch's two-thread matmul handles fast (the torch backend runs these too)
    "MultiHeadAttention": LayerCase(_f64(nnx.MultiHeadAttention, 4, 2, seed=26), (2, 4, 4)),
    "MultiHeadAttention(bias=False, causal=True, dropout=0.3)": LayerCase(
        _f64(nnx.MultiHeadAttention, 4, 2, 0.3, bias=False, causal=True, seed=27), (2, 4, 4)),
    "MultiHeadAttention(key padding, additive mask)": LayerCase(lambda: att.WithMasks(
        nnx.MultiHeadAttention(4, 2, seed=28, dtype="float64"), att.padding_mask(3, 4), att.additive_mask(4, 4)),
        (3, 4, 4)),
    "MultiHeadAttention(cross, packed)": LayerCase(lambda: att.CrossAttention(
        nnx.MultiHeadAttention(4, 2, seed=29, dtype="float64"), 2), (2, 3, 12)),
    "MultiHeadAttention(cross, kdim=3, vdim=5)": LayerCase(lambda: att.CrossAttention(
        nnx.MultiHeadAttention(4, 2, kdim=3, vdim=5, seed=30, dtype="float64"), 2), (2, 3, 12)),
    "TransformerBlock(causal, dropout)": LayerCase(
        _f64(nnx.TransformerBlock, 4, 2, hidden_dim=6, dropout=0.2, causal=True, seed=31), (2, 3, 4)),
    "TransformerBlock(key padding)": LayerCase(lambda: att.WithMasks(
        nnx.TransformerBlock(4, 2, hidden_dim=6, seed=32, dtype="float64"), att.padding_mask(3, 3)), (3, 3, 4)),
    "TransformerDecoderBlock (memory padding)": LayerCase(lambda: att.Decoder(
        nnx.TransformerDecoderBlock(4, 2, hidden_dim=6, seed=47, dtype="float64"), 3, att.padding_mask(2, 4)),
        (2, 4, 8), covers=(nnx.TransformerDecoderBlock,)),
    "TransformerSeq2Seq (source then decoder input)": LayerCase(_f64(
        nnx.TransformerSeq2Seq, 5, 6, 3, 4, embed_dim=4, num_heads=2, hidden_dim=6, num_layers=2, seed=48),
        (2, 7), indices=(0, 5), eps=1e-5),  # a deep stack: 1e-6 leaves rounding noise above atol on torch
    "PositionalEmbedding": LayerCase(_f64(nnx.PositionalEmbedding, 5, 3, seed=33), (2, 4, 3)),
    "SinusoidalPositions": LayerCase(lambda: nnx.SinusoidalPositions(5), (2, 3, 5)),
    "Sequential (tiny GPT)": LayerCase(lambda: nnx.Sequential(
        nnx.Embedding(7, 4, seed=34, dtype="float64"), nnx.PositionalEmbedding(5, 4, seed=35, dtype="float64"),
        nnx.TransformerBlock(4, 2, hidden_dim=8, causal=True, seed=36, dtype="float64"),
        nnx.LayerNorm(4, dtype="float64"), nnx.Linear(4, 7, seed=37, dtype="float64")), (2, 5), indices=(0, 7)),
})

def _classes(backend: str) -> Any:
    return nnx.to_device(np.random.default_rng(0).integers(0, 3, 5), backend)


def _probabilities(backend: str) -> Any:
    p = np.random.default_rng(0).uniform(0.1, 1.0, (5, 3))
    return nnx.to_device(p / p.sum(axis=1, keepdims=True), backend, dtype="float64")


def _unit(backend: str) -> Any:
    return nnx.to_device(np.random.default_rng(2).uniform(0, 1, (5, 3)), backend, dtype="float64")


def _normal(backend: str) -> Any:
    return inputs(backend, (5, 3), 2)


# name -> (loss, target for a backend); predictions are 3 * standard normal of shape (5, 3)
LOSSES: dict[str, tuple[Any, Callable[[str], Any]]] = {
    "MSE": (nnx.MSE(), _normal),
    "MSE(sum)": (nnx.MSE(reduction="sum"), _normal),
    "SumSquaredError": (nnx.SumSquaredError(), _normal),
    "SumSquaredError(half=True)": (nnx.SumSquaredError(half=True), _normal),
    "BinaryCrossEntropyWithLogits": (nnx.BinaryCrossEntropyWithLogits(), _unit),
    "BinaryCrossEntropyWithLogits(sum)": (nnx.BinaryCrossEntropyWithLogits(reduction="sum"), _unit),
    "SoftmaxCrossEntropy (indices)": (nnx.SoftmaxCrossEntropy(), _classes),
    "SoftmaxCrossEntropy (indices, sum)": (nnx.SoftmaxCrossEntropy(reduction="sum"), _classes),
    "SoftmaxCrossEntropy (smoothing 0.1)": (nnx.SoftmaxCrossEntropy(label_smoothing=0.1), _classes),
    "SoftmaxCrossEntropy (probabilities)": (nnx.SoftmaxCrossEntropy(), _probabilities),
    "SoftmaxCrossEntropy (probabilities, sum, smoothing 0.2)": (nnx.SoftmaxCrossEntropy("sum", 0.2), _probabilities),
}


def loss_prediction(backend: str) -> Any:
    return inputs(backend, (5, 3), 1) * 3.0
