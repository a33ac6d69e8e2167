"""An LSTM (or GRU) sequence classifier on digit sequences of different lengths that it makes itself.

    python examples/sequence_classifier.py [--cell lstm|gru] [--epochs 8] [--train 4000] [--seed 0]
                                           [--backend numpy|array_api_strict|cupy]

The task: does a sequence of 5 to 24 random digits contain the run ``1 2 3``
somewhere? Half the sequences do (the run is written in at a random place),
half do not (any run is broken up). Digits are tokens 1 to 10 and the batch is
padded with token 0 to its longest sequence; the lengths go to the recurrent
layer (``with rnn.given(lengths=...)``), so padding changes nothing. The model:
an embedding of 16, one recurrent layer of 32 units whose last valid hidden
state (``return_sequences=False``) feeds a linear layer to two classes; Adam,
a loop of forward, loss, backward and step written out. A quarter of the
sequences are held out and looked at once, at the end.

Result (numpy, seed 0, the defaults, on a shared 2-core VM): held-out accuracy
above 99% with either cell (LSTM 100.00% after 26 s of training; GRU 100.00%
after 108 s under heavy load).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

import nnx

PATTERN = (1, 2, 3)


def _has_pattern(seq: np.ndarray) -> bool:
    n = len(PATTERN)
    return any(tuple(seq[i:i + n]) == PATTERN for i in range(len(seq) - n + 1))


def make_data(count: int, rng: np.random.Generator, low: int = 5, high: int = 24) -> tuple[Any, Any, Any]:
    """``(tokens (count, high) padded with 0, lengths, labels)``: digits 0-9 as tokens 1-10."""
    tokens = np.zeros((count, high), dtype=np.int64)
    lengths = rng.integers(low, high + 1, count)
    labels = np.arange(count) % 2
    for k in range(count):
        seq = rng.integers(0, 10, lengths[k])
        while _has_pattern(seq):  # break every accidental run
            seq[rng.integers(0, lengths[k])] = rng.integers(0, 10)
        if labels[k]:
            at = rng.integers(0, lengths[k] - len(PATTERN) + 1)
            seq[at:at + len(PATTERN)] = PATTERN
        tokens[k, :lengths[k]] = seq + 1
    order = rng.permutation(count)
    return tokens[order], lengths[order], labels[order]


def build(cell: str, seed: int) -> tuple[nnx.Sequential, nnx.Layer]:
    rng = nnx.random.make_rng(seed)
    recurrent = {"lstm": nnx.LSTM, "gru": nnx.GRU}[cell](16, 32, return_sequences=False, seed=rng)
    model = nnx.Sequential(nnx.Embedding(11, 16, padding_idx=0, seed=rng), recurrent,
                           nnx.Linear(32, 2, seed=rng))
    return model, recurrent


def batches(n: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(n)
    return [order[i:i + size] for i in range(0, n, size)]


def run(cell: str, epochs: int, train: int, seed: int, batch_size: int = 64, lr: float = 1e-2) -> tuple[float, float]:
    """Train and return the held-out accuracy and the training time in seconds."""
    rng = np.random.default_rng(seed)
    tokens, lengths, labels = make_data(train + train // 3, rng)
    model, recurrent = build(cell, seed)
    loss, adam = nnx.SoftmaxCrossEntropy(), nnx.Adam(model.parameters(), lr=lr)
    started = time.perf_counter()
    for _ in range(epochs):
        for idx in batches(train, batch_size, rng):
            width = int(lengths[idx].max())  # pad only to this batch's longest sequence
            x = nnx.to_device(tokens[idx, :width], dtype="int64")
            with recurrent.given(lengths=nnx.to_device(lengths[idx], dtype="int64")):
                out = model.forward(x)
            loss.forward(out, nnx.to_device(labels[idx], dtype="int64"))
            model.backward(loss.backward(), input_grad=False)
            adam.step()
            adam.zero_grad()
    seconds = time.perf_counter() - started
    test = slice(train, None)
    with model.inference(), recurrent.given(lengths=nnx.to_device(lengths[test], dtype="int64")):
        scores = nnx.to_host(model.forward(nnx.to_device(tokens[test], dtype="int64")))
    return float(np.mean(scores.argmax(axis=1) == labels[test])), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cell", choices=("lstm", "gru"), default="lstm")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--train", type=int, default=4000, help="training sequences (a third more are held out)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default=None, help="numpy, array_api_strict or cupy")
    args = parser.parse_args()
    nnx.use(args.backend or nnx.current())
    accuracy, seconds = run(args.cell, args.epochs, args.train, args.seed)
    print(f"sequence_classifier: {args.cell}, {args.train} training sequences, {args.epochs} epochs, "
          f"{seconds:.1f} s of training")
    print(f"held-out accuracy {100 * accuracy:.2f}%")


if __name__ == "__main__":
    main()
