"""A modern recipe on both bundled digit sets: ReLU, He initialisation, Adam, softmax cross-entropy, mini-batches.

Compared with the 2017-era network of ``seed003_rashid_mnist.py`` (sigmoids,
squared error, one sample per step), this uses what is standard today:

* ReLU hidden layers with He (Kaiming) initial weights, and biases;
* the network outputs logits and ``nnx.SoftmaxCrossEntropy`` applies the
  softmax inside the loss (stable, and its gradient is simply
  ``softmax - target``), with integer class labels as targets;
* Adam on shuffled mini-batches, the learning rate warmed up and then
  lowered along a half cosine (``nnx.schedules.CosineWithWarmup`` stepped
  once per batch by the ``nnx.LRScheduler`` callback).

The held-out part is split off before training with a seeded, stratified
split and is looked at once, at the end (nothing is tuned on it): for the
8x8 digits 20% (360 images), for the MNIST subset 1,000 of the 5,000
(training on the other 4,000). ``--plot PREFIX`` writes PREFIX-digits.png
and PREFIX-mnist_5k.png with the training curves (needs matplotlib).
"""

from __future__ import annotations

import argparse
import time

import nnx
from nnx import datasets

RECIPES = {
    #            held out, hidden sizes, epochs, batch, lr
    "digits": (0.2, (256, 128), 30, 32, 2e-3),
    "mnist_5k": (1000, (256, 128), 20, 64, 1e-3),
}


def model_for(inputs: int, hidden: tuple[int, ...], seed: int, dtype: str) -> nnx.Sequential:
    rng = nnx.random.make_rng(seed)
    layers: list[nnx.Layer] = []
    for size in hidden:
        layers += [nnx.Linear(inputs, size, init="he_uniform", seed=rng, dtype=dtype), nnx.ReLU()]
        inputs = size
    layers.append(nnx.Linear(inputs, 10, init="xavier_uniform", seed=rng, dtype=dtype))
    return nnx.Sequential(*layers)


def run(name: str, seed: int, dtype: str, progress: bool, plot: str | None, epochs: int | None = None) -> float:
    held_out, hidden, default_epochs, batch_size, lr = RECIPES[name]
    epochs = epochs or default_epochs
    ds = datasets.load(name)
    (x_train, y_train), (x_test, y_test) = datasets.train_val_split(ds.x, ds.y, val=held_out, seed=seed,
                                                                   stratify=True)
    model = model_for(int(ds.x.shape[1]), hidden, seed, dtype)
    adam = nnx.Adam(model.parameters(), lr=lr)
    steps = epochs * -(-len(y_train) // batch_size)
    schedule = nnx.schedules.CosineWithWarmup(adam, warmup_steps=steps // 20, total_steps=steps)
    sizes = "-".join(str(s) for s in (ds.x.shape[1], *hidden, 10))
    print(f"{name}: {sizes} ReLU network, Adam (lr {lr}, cosine), batches of {batch_size}, {epochs} epochs, "
          f"{len(y_train)} training / {len(y_test)} held-out digits")
    started = time.perf_counter()
    history = nnx.fit(model, nnx.SoftmaxCrossEntropy(), adam, (x_train, y_train), epochs=epochs,
                      batch_size=batch_size, seed=seed, callbacks=[nnx.LRScheduler(schedule, per="step")],
                      progress=None if progress else False)
    seconds = time.perf_counter() - started
    accuracy = nnx.evaluate(model, None, (x_test, y_test), metrics="accuracy")["accuracy"]
    print(f"{name}: held-out accuracy {100 * accuracy:.2f}% ({round(accuracy * len(y_test))}/{len(y_test)}), "
          f"training accuracy {100 * history['accuracy'][-1]:.2f}%, trained in {seconds:.1f} s\n")
    if plot:
        print(f"wrote {nnx.plot_history(history, f'{plot}-{name}.png', title=f'{name}: modern recipe')}")
    return accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default=None, help="numpy, array_api_strict or cupy")
    parser.add_argument("--data", choices=[*RECIPES, "both"], default="both")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights, split and order (0)")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (quick runs)")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch output")
    parser.add_argument("--plot", metavar="PREFIX", help="write PREFIX-<data>.png training curves")
    args = parser.parse_args()
    nnx.use(args.backend or nnx.current())
    names = list(RECIPES) if args.data == "both" else [args.data]
    for name in names:
        run(name, args.seed, args.dtype, not args.quiet, args.plot, args.epochs)


if __name__ == "__main__":
    main()
