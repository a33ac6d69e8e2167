"""Writing your own layer: a Swish activation with a learnable slope per feature.

    python examples/custom_layer.py [--backend numpy|array_api_strict|cupy]

``y = x * sigmoid(beta * x)`` (Ramachandran et al., 2017), with one ``beta``
per feature, learned. The layer follows nnx's contract: ``forward`` keeps what
``backward`` needs with ``save_for_backward``; ``backward`` takes it back with
``saved_tensors``, adds into its parameter's gradient and returns the input's
gradient; ``config`` gives the constructor arguments; ``register_layer``
allows it in model files. The script then checks the backward against finite
differences, trains a small digit classifier with it, saves and reloads it,
and compares two backends step by step.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from _common import parse_backend

import nnx
from nnx.testing import check_parity, gradcheck


@nnx.register_layer
class Swish(nnx.Layer):
    """``x * sigmoid(beta * x)`` for inputs of shape ``(batch, features)``, ``beta`` learned per feature."""

    def __init__(self, features: int, *, dtype: str = "float32", backend: str | None = None) -> None:
        super().__init__()
        self.features, self.dtype = features, dtype
        self.beta = nnx.Parameter(nnx.to_device(nnx.random.full((features,), 1.0), backend, dtype), "beta")

    def forward(self, x: Any) -> Any:
        s = nnx.ops.sigmoid(x * self.beta.data)
        self.save_for_backward(x, s)
        return x * s

    def backward(self, grad: Any) -> Any:
        x, s = self.saved_tensors()
        xp = nnx.backend.namespace_of(grad)
        ds = s * (1 - s)  # d sigmoid(z) / dz at z = beta * x
        self.beta.accumulate(xp.sum(grad * x * x * ds, axis=0))
        return grad * (s + self.beta.data * x * ds)

    def config(self) -> dict[str, Any]:
        return {"features": self.features, "dtype": self.dtype}


def main() -> None:
    backend = parse_backend(__doc__.splitlines()[0])

    check = gradcheck(Swish(5, dtype="float64"), nnx.to_device(nnx.random.normal(nnx.random.make_rng(0), (4, 5), 0, 2),
                                                              dtype="float64"))
    print(f"gradcheck in float64: {'ok' if check.ok else 'FAILED'} "
          f"(worst element at {check.worst:.3f} of its tolerance)")

    digits = nnx.datasets.load("digits")
    (xt, yt), (xv, yv) = nnx.datasets.train_val_split(digits.x, digits.y, val=0.2, seed=0)
    model = nnx.Sequential(nnx.Linear(64, 64, seed=0), Swish(64), nnx.Linear(64, 10, seed=1))
    loss = nnx.SoftmaxCrossEntropy()
    nnx.fit(model, loss, nnx.Adam(model.parameters(), lr=3e-3), (xt, yt), epochs=10, batch_size=32, seed=0,
            progress=False)
    scores = nnx.evaluate(model, loss, (xv, yv))
    print(f"held-out accuracy on {backend}: {100 * scores['accuracy']:.2f}%")

    with tempfile.TemporaryDirectory() as tmp:
        path = nnx.save(model, Path(tmp) / "swish.nnx")
        again = nnx.load(path)
        same = (nnx.to_host(nnx.predict(again, xv)) == nnx.to_host(nnx.predict(model, xv))).all()
    print(f"saved and reloaded: {'identical predictions' if same else 'DIFFERENT predictions'}")

    others = [b for b, reason in nnx.available().items() if reason is None and b != backend]
    if others:
        small = nnx.Sequential(nnx.Linear(6, 5, seed=2, dtype="float64", backend="numpy"),
                               Swish(5, dtype="float64", backend="numpy"),
                               nnx.Linear(5, 2, seed=3, dtype="float64", backend="numpy"))
        rng = nnx.random.make_rng(4)
        x, y = nnx.random.normal(rng, (8, 6), 0, 1), nnx.random.normal(rng, (8, 2), 0, 1)
        report = check_parity(small, nnx.MSE(), x, y, backends=[backend, others[0]], steps=3)
        print(f"parity, {report}")


if __name__ == "__main__":
    main()
