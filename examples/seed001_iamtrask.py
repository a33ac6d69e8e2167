"""iamtrask's two- and three-layer sigmoid networks (seed tutorial 001).

Both seed NumPy's global generator with 1 and draw weights as
``2*random(shape) - 1``; both use ``error = y - output`` as the output delta,
which is the gradient of nnx's ``SumSquaredError(half=True)``, with SGD at
learning rate 1. The two-layer net prints its output after 10,000 iterations;
the three-layer net prints ``mean(|y - output|)`` every 10,000 of its 60,000
iterations, with the 12 significant digits Python 2's ``str`` showed. Run:

    python examples/seed001_iamtrask.py [--backend numpy|array_api_strict|cupy]
"""

from __future__ import annotations

import _common

import nnx

X = [[0, 0, 1], [0, 1, 1], [1, 0, 1], [1, 1, 1]]


def sigmoid_layer(n_in: int, n_out: int, rng: object) -> nnx.Linear:
    return nnx.Linear(n_in, n_out, bias=False, init=nnx.init.Uniform(-1, 1), seed=rng, dtype="float64")


def two_layer(backend: str) -> None:
    x = nnx.to_device(X, backend, dtype="float64")
    y = nnx.to_device([[0, 0, 1, 1]], backend, dtype="float64").T
    net = nnx.Sequential(sigmoid_layer(3, 1, nnx.random.legacy(1)), nnx.Sigmoid())
    loss, sgd = nnx.SumSquaredError(half=True), nnx.SGD(net.parameters(), lr=1.0)
    for _ in range(10_000):
        _, output = nnx.train_step(net, loss, sgd, x, y)
    print("Output After Training:")
    print(_common.show(output))


def three_layer(backend: str) -> None:
    x = nnx.to_device(X, backend, dtype="float64")
    y = nnx.to_device([[0], [1], [1], [0]], backend, dtype="float64")
    rng = nnx.random.legacy(1)  # syn0 is drawn first, then syn1, from one stream
    net = nnx.Sequential(sigmoid_layer(3, 4, rng), nnx.Sigmoid(), sigmoid_layer(4, 1, rng), nnx.Sigmoid())
    loss, sgd = nnx.SumSquaredError(half=True), nnx.SGD(net.parameters(), lr=1.0)
    xp = nnx.backend.namespace(backend)
    for j in range(60_000):
        _, output = nnx.train_step(net, loss, sgd, x, y)
        if j % 10_000 == 0:
            print(f"Error:{float(xp.mean(xp.abs(y - output))):.12g}")


def main() -> None:
    backend = _common.parse_backend(__doc__.splitlines()[0])
    two_layer(backend)
    three_layer(backend)


if __name__ == "__main__":
    main()
