"""Each tutorial example prints the digits its tutorial printed, on every backend.

The expected numbers are copied from the tutorials' own printed output
(/shared/seeds in the team's tree): they are what NumPy printed in 2015-2019,
not what nnx computes.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nnx

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NUMBER = re.compile(r"-?\d+\.\d+(?:e-?\d+)?")


def run_example(script: str, nnx_backend: str) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--backend", nnx_backend],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def numbers(text: str) -> list[str]:
    return NUMBER.findall(text)


def test_seed000_single_neuron(nnx_backend: str) -> None:
    out = run_example("seed000_single_neuron.py", nnx_backend)
    assert numbers(out) == [
        "-0.16595599", "0.44064899", "-0.99977125",  # random starting weights
        "9.67299303", "-0.2078435", "-4.62963669",   # weights after 10,000 iterations
        "0.99993704",                                # prediction for [1, 0, 0]
    ]


def test_seed001_iamtrask(nnx_backend: str) -> None:
    out = run_example("seed001_iamtrask.py", nnx_backend)
    assert numbers(out) == [
        "0.00966449", "0.00786506", "0.99358898", "0.99211957",  # two-layer output
        "0.496410031903", "0.00858452565325", "0.00578945986251",  # three-layer error
        "0.00462917677677", "0.00395876528027", "0.00351012256786",
    ]


def test_seed004_two_layer_sse(nnx_backend: str) -> None:
    out = run_example("seed004_two_layer_sse.py", nnx_backend)
    assert re.findall(r"(\d\.\d{3})/(\d)", out) == [
        ("0.023", "0"), ("0.979", "1"), ("0.975", "1"), ("0.025", "0"),
    ]


def test_example_rejects_unknown_backend() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "seed000_single_neuron.py"), "--backend", "nope"],
        capture_output=True, text=True,
    )
    assert result.returncode != 0
    assert "valid names are" in result.stderr


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("seed*.py")))
def test_every_example_has_a_test(script: str) -> None:
    assert f"def test_{script.split('_')[0]}" in Path(__file__).read_text()


def run_script(*args: str) -> str:
    result = subprocess.run([sys.executable, str(EXAMPLES / args[0]), *args[1:]],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_seed002_modular_xor_and_the_relu_bug() -> None:
    """numpy only: the run is 1,500 + 3,100 full-batch steps, too slow for array_api_strict's checks."""
    out = run_script("seed002_modular_xor.py", "--backend", "numpy")
    assert "ReLU()          agrees with finite differences" in out
    assert "TutorialReLU()  DISAGREES with finite differences" in out
    assert "trained at iteration 1512" in out  # the correct backward, seed 0
    assert "predicted [0, 1, 1, 0] (XOR: [0, 1, 1, 0])" in out
    assert "trained at iteration 3142" in out  # the tutorial's backward, same seed


def test_seed003_rashid_learns_mnist(nnx_backend: str) -> None:
    out = run_script("seed003_rashid_mnist.py", "--backend", nnx_backend, "--epochs", "1", "--limit", "400",
                     "--rule", "both")
    book = float(re.search(r"book: held-out accuracy after 1 epochs: ([\d.]+)%", out).group(1))
    exact = float(re.search(r"exact: held-out accuracy after 1 epochs: ([\d.]+)%", out).group(1))
    assert book > 60.0 and exact > 60.0  # 400 one-sample steps; ten classes guessed would give 10%
    assert book != exact  # two different rules from the same start


def test_the_books_hidden_error_is_the_gradient_without_the_output_slope() -> None:
    sys.path.insert(0, str(EXAMPLES))
    try:
        from seed003_rashid_mnist import rashid_network
    finally:
        sys.path.remove(str(EXAMPLES))
    rng = np.random.default_rng(0)
    x = rng.uniform(0.01, 1.0, (1, 784))
    t = np.full((1, 10), 0.01)
    grads, outs = {}, {}
    for rule in ("book", "exact"):
        net = rashid_network(100, 0, "float64", rule)
        out = net.forward(nnx.to_device(x, "numpy", dtype="float64"))
        net.backward(out - nnx.to_device(t, "numpy", dtype="float64"))  # d (half SSE) / d out
        grads[rule] = [nnx.to_host(p.grad) for p in net.parameters()]
        outs[rule] = nnx.to_host(out)
    first, second = (nnx.to_host(p.data) for p in net.parameters())  # wih, who: (out, in), the book's
    h = 1 / (1 + np.exp(-(x @ first.T)))
    o = outs["exact"]
    np.testing.assert_array_equal(outs["book"], o)
    np.testing.assert_allclose(grads["book"][1], grads["exact"][1], rtol=1e-12)  # output layer: the gradient
    np.testing.assert_allclose(grads["exact"][0], ((((o - t) * o * (1 - o)) @ second) * h * (1 - h)).T @ x,
                               rtol=1e-10)
    np.testing.assert_allclose(grads["book"][0], (((o - t) @ second) * h * (1 - h)).T @ x, rtol=1e-10)


def test_modern_recipe_runs(nnx_backend: str) -> None:
    out = run_script("modern_digits.py", "--backend", nnx_backend, "--data", "digits", "--epochs", "2", "--quiet")
    accuracy = float(re.search(r"digits: held-out accuracy ([\d.]+)%", out).group(1))
    assert accuracy > 80.0


def test_custom_layer_example(nnx_backend: str) -> None:
    out = run_example("custom_layer.py", nnx_backend)
    assert "gradcheck in float64: ok" in out
    assert "saved and reloaded: identical predictions" in out
    accuracy = float(re.search(r"held-out accuracy on \w+: (\d+\.\d+)%", out).group(1))
    assert accuracy >= 95.0
    others = [b for b, reason in nnx.available().items() if reason is None and b != nnx_backend]
    assert ("parity, agree:" in out) if others else ("parity" not in out)


def test_cnn_digits_example_learns(nnx_backend: str) -> None:
    """A short run (the full one: 30 epochs, 3 seeds, mean above 98.5%; see the example's docstring)."""
    out = run_script("cnn_digits.py", "--backend", nnx_backend, "--seeds", "0", "--epochs", "3")
    assert "cnn_digits: 9,978 parameters, 3 epochs" in out
    accuracy = float(re.search(r"seed 0: held-out accuracy (\d+\.\d+)%", out).group(1))
    assert accuracy > 85.0


def test_sequence_classifier_learns(nnx_backend: str) -> None:
    """A short run (the full one: above 99% held out; see the example's docstring)."""
    out = run_script("sequence_classifier.py", "--backend", nnx_backend, "--cell", "gru", "--train", "600",
                     "--epochs", "4")
    assert "sequence_classifier: gru, 600 training sequences, 4 epochs" in out
    accuracy = float(re.search(r"held-out accuracy (\d+\.\d+)%", out).group(1))
    assert accuracy > 90.0


def test_tiny_gpt_learns_to_reverse(nnx_backend: str) -> None:
    """A short run of a smaller model (the full one: see the example's docstring)."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        import tiny_gpt
    finally:
        sys.path.remove(str(EXAMPLES))
    with nnx.use(nnx_backend):
        model, losses = tiny_gpt.train(40, 4, 0, batch=16, lr=1e-2, held_out=50, width=16, heads=2, blocks=1)
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


def _import_example(name: str) -> object:
    sys.path.insert(0, str(EXAMPLES))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(EXAMPLES))


@pytest.mark.nnx_backends("numpy", "array_api_strict")  # torch: covered by the parity traces
def test_char_gpt_trains_and_samples_the_same_text_with_and_without_the_cache(nnx_backend: str) -> None:
    """A short run of a smaller model (the full one: see the example's docstring)."""
    char_gpt = _import_example("char_gpt")
    with nnx.use(nnx_backend):
        model, train_loss, held_loss = char_gpt.train(30, 16, 0, batch=8, lr=1e-2, width=16, heads=2, blocks=1)
        prompt = char_gpt.encode("def ")
        cached, _ = char_gpt.timed_generate(model, prompt, 12, True, 0)
        plain, _ = char_gpt.timed_generate(model, prompt, 12, False, 0)
    assert train_loss < 3.5 < np.log(len(char_gpt.CHARS)) and held_loss < 4.0  # below the uniform guess's 4.56
    assert char_gpt.decode(cached) == char_gpt.decode(plain) and char_gpt.decode(cached).startswith("def ")


@pytest.mark.nnx_backends("numpy", "array_api_strict")  # torch: covered by the parity traces
def test_seq2seq_reverse_trains_with_named_inputs_and_decodes_with_the_cache(nnx_backend: str) -> None:
    """A short run of a smaller model (the full one reaches 100% held out: see the example's docstring)."""
    seq2seq = _import_example("seq2seq_reverse")
    with nnx.use(nnx_backend):
        model, history = seq2seq.train(3, 384, 0, held_out=50, batch=32, progress=False, embed_dim=16,
                                       num_heads=2, num_layers=1)
        accuracy = seq2seq.exact_match(model, 0, n=20)
    assert history["loss"][-1] < 0.8 * history["loss"][0]
    assert 0.0 <= accuracy <= 1.0
