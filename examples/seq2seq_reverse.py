"""An encoder–decoder transformer that learns to reverse digit sequences of varying length.

    python examples/seq2seq_reverse.py [--epochs 4] [--train 16000] [--seed 0] [--backend numpy|array_api_strict|cupy]

Each source is 3 to 8 digits padded to 8 with PAD (token 10); the target is the
digits reversed, padded the same way. The model is nnx.TransformerSeq2Seq (two
encoder blocks, two decoder blocks with cross-attention, 64 wide, 4 heads), trained
by nnx.fit on named inputs: every batch carries the source (``x``), the decoder
input (the target shifted right behind START, token 11) and the source's padding
mask, which the model receives as keyword arguments. The held-out sequences are
never trained on; exact match means the whole decoded target is right, decoded
greedily token by token with a KVCache (nothing of the target is fed in).

Result (numpy, float32, seed 0, the defaults, 237,004 parameters): 100.0% exact match on the
1,000 held-out sequences after 4 epochs of 16,000 sequences, in 33 s of CPU time (user + sys; 236 s
of wall clock) on a shared 2-core VM under heavy load with ``OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1``.
"""

from __future__ import annotations

import time

import numpy as np

import _common
import nnx

LENGTH, PAD, START = 8, 10, 11


def reversal_data(n: int, rng: np.random.Generator, exclude: set[bytes] | None = None) -> tuple[dict, np.ndarray]:
    """``n`` distinct sources (none in ``exclude``) as named inputs, and their targets ``(n, LENGTH)``."""
    rows: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
    while len(rows) < n:
        size = int(rng.integers(3, LENGTH + 1))
        digits = rng.integers(0, 10, size)
        source = np.concatenate([digits, np.full(LENGTH - size, PAD)])
        if exclude is None or source.tobytes() not in exclude:
            rows[source.tobytes()] = (source, np.concatenate([digits[::-1], np.full(LENGTH - size, PAD)]))
    source = np.stack([r[0] for r in rows.values()])
    target = np.stack([r[1] for r in rows.values()])
    decoder_input = np.concatenate([np.full((n, 1), START), target[:, :-1]], axis=1)
    return {"x": source, "decoder_input": decoder_input, "source_padding_mask": source == PAD}, target


class TokenCrossEntropy(nnx.losses.Loss):
    """Softmax cross-entropy averaged over every token: logits ``(batch, T, vocab)``, ids ``(batch, T)``."""

    def __init__(self) -> None:
        self.inner = nnx.SoftmaxCrossEntropy()

    def forward(self, pred: object, target: object) -> object:
        xp = nnx.backend.namespace_of(pred)
        self.save_for_backward(tuple(pred.shape))
        return self.inner.forward(xp.reshape(pred, (-1, pred.shape[-1])), xp.reshape(target, (-1,)))

    def backward(self, grad: object = None) -> object:
        (shape,) = self.saved_tensors()
        g = self.inner.backward(grad)
        return nnx.backend.namespace_of(g).reshape(g, shape)


def make_model(seed: int, embed_dim: int = 64, num_heads: int = 4, num_layers: int = 2,
               dtype: str = "float32") -> nnx.TransformerSeq2Seq:
    return nnx.TransformerSeq2Seq(11, 12, LENGTH, LENGTH, embed_dim=embed_dim, num_heads=num_heads,
                                  num_layers=num_layers, seed=seed, dtype=dtype)


def train(epochs: int, n_train: int, seed: int, held_out: int = 1000, batch: int = 64,
          progress: object = "lines", **shape: int) -> tuple[nnx.TransformerSeq2Seq, nnx.History]:
    """The model after ``epochs`` of ``nnx.fit`` on ``n_train`` sequences none of which is held out, and
    fit's history; ``shape``: ``embed_dim``, ``num_heads``, ``num_layers`` of :func:`make_model`."""
    held, _ = reversal_data(held_out, np.random.default_rng(seed + 1))
    kept = {row.tobytes() for row in held["x"]}
    inputs, target = reversal_data(n_train, np.random.default_rng(seed), kept)
    model = make_model(seed, **shape)
    adam = nnx.Adam(model.parameters(), lr=2e-3)
    steps = epochs * -(-n_train // batch)
    schedule = nnx.schedules.CosineWithWarmup(adam, warmup_steps=max(1, steps // 20), total_steps=steps)
    history = nnx.fit(model, TokenCrossEntropy(), adam, (inputs, target), epochs, batch_size=batch, seed=seed,
                      metrics={}, callbacks=[nnx.LRScheduler(schedule, per="step")], progress=progress)
    return model, history


def exact_match(model: nnx.TransformerSeq2Seq, seed: int, n: int = 1000) -> float:
    """The share of the ``n`` held-out sources whose greedily decoded target is entirely right."""
    inputs, target = reversal_data(n, np.random.default_rng(seed + 1))
    name = nnx.backend.backend_of(model.parameters()[0].data)
    decoded = model.generate(nnx.to_device(inputs["x"], name, "int64"), LENGTH, START,
                             nnx.to_device(inputs["source_padding_mask"], name))
    return float(np.mean(np.all(nnx.to_host(decoded) == target, axis=1)))


def main() -> None:
    parser = _common.parser(__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train", type=int, default=16000)
    parser.add_argument("--seed", type=int, default=0)
    args = _common.parse(parser)
    started = time.perf_counter()
    model, _ = train(args.epochs, args.train, args.seed)
    seconds = time.perf_counter() - started
    accuracy = exact_match(model, args.seed)
    print(f"seq2seq_reverse: {model.num_parameters():,} parameters, {args.epochs} epochs of {args.train} "
          f"sequences in {seconds:.1f} s")
    print(f"held-out exact match (reversing 3-8 digits, greedy decoding with the cache): {100 * accuracy:.1f}%")


if __name__ == "__main__":
    main()
