"""The two-layer sigmoid network trained on the sum of squared errors (seed tutorial 004).

The tutorial's ``NeuralNetwork(x, y)`` draws both weight matrices with
``np.random.rand`` (uniform on [0, 1), no biases), and updates them with the
gradient of ``sum((y - output)**2)``, ``2 (y - output) * output * (1 - output)``,
at learning rate 1, for 1,500 iterations. It prints its four predictions to
three decimals: 0.023, 0.979, 0.975, 0.025.

The tutorial never seeds NumPy, so its exact starting weights are lost. Seed
45532 of NumPy's legacy generator is the smallest seed for which the
tutorial's own code prints those digits (found by running it over seeds
0, 1, 2, ...), so this script starts from it. Run:

    python examples/seed004_two_layer_sse.py [--backend numpy|array_api_strict|cupy]
"""

from __future__ import annotations

import _common

import nnx

SEED = 45532
ITERATIONS = 1_500


def main() -> None:
    backend = _common.parse_backend(__doc__.splitlines()[0])
    rng = nnx.random.legacy(SEED)  # weights1 first, then weights2, from one stream
    net = nnx.Sequential(
        nnx.Linear(3, 4, bias=False, init=nnx.init.Uniform(0, 1), seed=rng, dtype="float64"),
        nnx.Sigmoid(),
        nnx.Linear(4, 1, bias=False, init=nnx.init.Uniform(0, 1), seed=rng, dtype="float64"),
        nnx.Sigmoid(),
    )
    x = nnx.to_device([[0, 0, 1], [0, 1, 1], [1, 0, 1], [1, 1, 1]], backend, dtype="float64")
    y = nnx.to_device([[0], [1], [1], [0]], backend, dtype="float64")
    loss, sgd = nnx.SumSquaredError(), nnx.SGD(net.parameters(), lr=1.0)
    for _ in range(ITERATIONS):
        _, output = nnx.train_step(net, loss, sgd, x, y)
    print(f"{ITERATIONS} iterations:")
    print("Prediction/Fact")
    for pred, fact in zip(nnx.to_host(output)[:, 0], nnx.to_host(y)[:, 0]):
        print(f"{pred:.3f}/{fact:.0f}")


if __name__ == "__main__":
    main()
