"""The single sigmoid neuron that learns "output = first input" (seed tutorial 000).

The tutorial seeds NumPy's global generator with 1, draws its 3x1 weights as
``2*random((3, 1)) - 1``, and trains 10,000 times with
``w += X.T @ ((y - out) * out * (1 - out))``. In nnx that is a bias-free
Linear layer, a Sigmoid, the half sum-of-squares loss (whose gradient is
``out - y``) and SGD with learning rate 1. Run:

    python examples/seed000_single_neuron.py [--backend numpy|array_api_strict|cupy]
"""

from __future__ import annotations

import _common

import nnx

ITERATIONS = 10_000


def main() -> None:
    backend = _common.parse_backend(__doc__.splitlines()[0])
    neuron = nnx.Sequential(
        nnx.Linear(3, 1, bias=False, init=nnx.init.Uniform(-1, 1), seed=nnx.random.legacy(1), dtype="float64"),
        nnx.Sigmoid(),
    )
    x = nnx.to_device([[0, 0, 1], [1, 1, 1], [1, 0, 1], [0, 1, 1]], backend, dtype="float64")
    y = nnx.to_device([[0, 1, 1, 0]], backend, dtype="float64").T
    loss = nnx.SumSquaredError(half=True)
    sgd = nnx.SGD(neuron.parameters(), lr=1.0)

    print("Random starting synaptic weights:")
    print(_common.show(neuron[0].weight.data.T))  # the tutorial's 3x1 column
    for _ in range(ITERATIONS):
        nnx.train_step(neuron, loss, sgd, x, y)
    print("New synaptic weights after training:")
    print(_common.show(neuron[0].weight.data.T))  # the tutorial's 3x1 column
    print("Considering new situation [1, 0, 0] -> ?:")
    print(_common.show(neuron.forward(nnx.to_device([[1, 0, 0]], backend, dtype="float64"))[0, ...]))


if __name__ == "__main__":
    main()
