"""The reference: the benchmark networks written by hand in NumPy, as fast as we know how.

float32 throughout, every buffer allocated once per batch size, every update in
place through ``out=``. The weights start from the values they are given (the
benchmark copies them from the nnx model), so both compute the same function.
This is the yardstick nnx[numpy] is measured against; it is not used by nnx.
"""

from __future__ import annotations

import numpy as np


def _sigmoid_(z: np.ndarray) -> np.ndarray:
    """``z <- 1/(1+exp(-z))`` in place (inputs here stay far from exp's overflow)."""
    np.negative(z, out=z)
    np.exp(z, out=z)
    z += 1.0
    np.reciprocal(z, out=z)
    return z


class HandMLP:
    """A fully connected net with ReLU or sigmoid hidden units, trained by SGD.

    ``weights``/``biases`` are host arrays in nnx's layout (``W`` of shape
    ``(in, out)``); ``biases`` may be ``None`` (no bias). ``loss`` is
    ``"sce"`` (softmax cross-entropy from logits, mean over the batch, integer
    class targets) or ``"half_sse"`` (``1/2 sum((o - t)^2)`` on sigmoid outputs,
    float targets; Rashid's per-sample net). ``momentum`` follows PyTorch's SGD:
    ``b = mu b + g`` (``b = g`` first), ``p -= lr b``.
    """

    def __init__(self, weights, biases, hidden: str, loss: str, lr: float, momentum: float = 0.0):
        self.W = [np.array(w, dtype=np.float32) for w in weights]
        self.b = None if biases is None else [np.array(b, dtype=np.float32) for b in biases]
        self.hidden, self.loss, self.lr, self.mu = hidden, loss, np.float32(lr), np.float32(momentum)
        self.gW = [np.empty_like(w) for w in self.W]
        self.gb = None if self.b is None else [np.empty_like(b) for b in self.b]
        self.vW = [np.zeros_like(w) for w in self.W] if momentum else None
        self.vb = [np.zeros_like(b) for b in self.b] if momentum and self.b is not None else None
        self._scratch = [np.empty_like(p) for p in self.W + (self.b or [])] if momentum else None
        self._first = True
        self._batch = None

    def _buffers(self, n: int) -> None:
        if self._batch == n:
            return
        widths = [w.shape[1] for w in self.W]
        self.a = [np.empty((n, k), np.float32) for k in widths]  # each layer's output
        self.d = [np.empty((n, k), np.float32) for k in widths]  # d loss / d pre-activation
        self.mask = [np.empty((n, k), np.bool_) for k in widths[:-1]]
        self.rowmax = np.empty((n, 1), np.float32)
        self.rows = np.arange(n)
        self._batch = n

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._buffers(x.shape[0])
        h = x
        last = len(self.W) - 1
        for i, w in enumerate(self.W):
            z = self.a[i]
            np.matmul(h, w, out=z)
            if self.b is not None:
                z += self.b[i]
            if i < last or self.loss == "half_sse":
                if self.hidden == "relu" and i < last:
                    np.maximum(z, 0.0, out=z)
                else:
                    _sigmoid_(z)
            h = z
        return h

    def step(self, x: np.ndarray, t: np.ndarray) -> None:
        """One SGD step on the batch ``x`` with targets ``t``."""
        out = self.forward(x)
        last = len(self.W) - 1
        g = self.d[last]
        if self.loss == "sce":  # softmax minus one-hot, over the batch size
            np.max(out, axis=1, keepdims=True, out=self.rowmax)
            np.subtract(out, self.rowmax, out=g)
            np.exp(g, out=g)
            np.sum(g, axis=1, keepdims=True, out=self.rowmax)
            np.multiply(self.rowmax, x.shape[0], out=self.rowmax)
            g /= self.rowmax
            g[self.rows, t] -= np.float32(1.0 / x.shape[0])
        else:  # (o - t) o (1 - o)
            np.subtract(out, t, out=g)
            g *= out
            np.subtract(1.0, out, out=self.a[last])
            g *= self.a[last]
        for i in range(last, -1, -1):
            h = x if i == 0 else self.a[i - 1]
            if h.shape[0] == 1:  # one sample: the outer product, several times faster than matmul's k=1 path
                np.multiply(h.T, g, out=self.gW[i])
            else:
                np.matmul(h.T, g, out=self.gW[i])
            if self.b is not None:
                np.sum(g, axis=0, out=self.gb[i])
            if i > 0:
                dh = self.d[i - 1]
                np.matmul(g, self.W[i].T, out=dh)
                if self.hidden == "relu":
                    np.greater(h, 0.0, out=self.mask[i - 1])
                    dh *= self.mask[i - 1]
                else:  # h (1 - h), reusing h's buffer once its matmuls are done
                    dh *= h
                    np.subtract(1.0, h, out=h)
                    dh *= h
                g = dh
        self._update()

    def _update(self) -> None:
        params = self.W + (self.b or [])
        grads = self.gW + (self.gb or [])
        if not self.mu:
            for p, g in zip(params, grads):
                g *= self.lr
                p -= g
            return
        for p, g, v, s in zip(params, grads, self.vW + (self.vb or []), self._scratch):
            if self._first:
                np.copyto(v, g)
            else:
                v *= self.mu
                v += g
            np.multiply(v, self.lr, out=s)
            p -= s
        self._first = False

    def params(self) -> list[np.ndarray]:
        return self.W + (self.b or [])
