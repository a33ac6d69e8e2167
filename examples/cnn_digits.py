"""A small convolutional network on the bundled 8x8 digits.

    python examples/cnn_digits.py [--seeds 0 1 2] [--epochs 30] [--backend numpy|array_api_strict|cupy]

Two 3x3 convolutions (16 and 32 channels, "same" padding) with batch
normalisation and ReLU, a 2x2 max pool, dropout, then one dense layer: 9,978
parameters, a fifth of the 50,000 of the 64-256-128-10 network of
``modern_digits.py``. Each image is ``(1, 8, 8)`` (NCHW). Adam with a cosine
learning rate; 20% of the digits are split off (seeded, stratified) before
training and looked at once, at the end. Prints the held-out accuracy per seed
and their mean.
"""

from __future__ import annotations

import time

import _common
import nnx
from nnx import datasets


def model_for(seed: int, dtype: str) -> nnx.Sequential:
    rng = nnx.random.make_rng(seed)
    return nnx.Sequential(
        nnx.Conv2d(1, 16, 3, padding="same", bias=False, seed=rng, dtype=dtype), nnx.BatchNorm2d(16, dtype=dtype),
        nnx.ReLU(),
        nnx.Conv2d(16, 32, 3, padding="same", bias=False, seed=rng, dtype=dtype), nnx.BatchNorm2d(32, dtype=dtype),
        nnx.ReLU(), nnx.MaxPool2d(2), nnx.Flatten(), nnx.Dropout(0.3, seed=rng),
        nnx.Linear(32 * 4 * 4, 10, seed=rng, dtype=dtype),
    )


def run(seed: int, epochs: int, dtype: str, batch_size: int = 32, lr: float = 3e-3) -> tuple[float, float]:
    """Train with one seed; returns the held-out accuracy and the training time in seconds."""
    ds = datasets.load("digits")
    images = ds.x.reshape(-1, 1, *ds.image_shape)
    (x_train, y_train), (x_test, y_test) = datasets.train_val_split(images, ds.y, val=0.2, seed=seed, stratify=True)
    model = model_for(seed, dtype)
    adam = nnx.Adam(model.parameters(), lr=lr)
    steps = epochs * -(-len(y_train) // batch_size)
    schedule = nnx.schedules.CosineWithWarmup(adam, warmup_steps=steps // 20, total_steps=steps)
    started = time.perf_counter()
    nnx.fit(model, nnx.SoftmaxCrossEntropy(), adam, (x_train, y_train), epochs=epochs, batch_size=batch_size,
            seed=seed, progress=False, callbacks=[nnx.LRScheduler(schedule, per="step")])
    seconds = time.perf_counter() - started
    accuracy = nnx.evaluate(model, None, (x_test, y_test), metrics="accuracy")["accuracy"]
    return accuracy, seconds


def main() -> None:
    parser = _common.parser(__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    args = _common.parse(parser)
    print(f"cnn_digits: {model_for(0, args.dtype).num_parameters():,} parameters, {args.epochs} epochs, "
          f"backend {nnx.current()} ({args.dtype})")
    accuracies = []
    for seed in args.seeds:
        accuracy, seconds = run(seed, args.epochs, args.dtype)
        accuracies.append(accuracy)
        print(f"seed {seed}: held-out accuracy {100 * accuracy:.2f}% in {seconds:.1f} s")
    print(f"mean held-out accuracy over {len(accuracies)} seed(s): {100 * sum(accuracies) / len(accuracies):.2f}%")


if __name__ == "__main__":
    main()
