"""fit/evaluate/predict: learning, reproducibility across backends, callbacks, the non-finite guard."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest

import nnx
from nnx.datasets import one_hot


def _blobs(n: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three noisy clusters in 4-D: a small problem a tiny network learns in a few epochs."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2.0, (3, 4))
    labels = np.arange(n) % 3
    return centres[labels] + rng.normal(0, 0.6, (n, 4)), labels.astype(np.int64)


def _net(nnx_backend: str, dtype: str = "float32", hidden: int = 16) -> nnx.Sequential:
    return nnx.Sequential(
        nnx.Linear(4, hidden, seed=0, dtype=dtype, backend=nnx_backend), nnx.Tanh(),
        nnx.Linear(hidden, 3, seed=1, dtype=dtype, backend=nnx_backend), nnx.Sigmoid(),
    )


def _fit(nnx_backend: str, dtype: str = "float32", epochs: int = 8, **kw: object) -> tuple[nnx.Sequential, nnx.History]:
    x, labels = _blobs()
    net = _net(nnx_backend, dtype)
    opt = nnx.SGD(net.parameters(), lr=kw.pop("lr", 2.0))
    history = nnx.fit(net, nnx.MSE(), opt, (x, one_hot(labels, 3)), epochs=epochs, batch_size=16,
                      seed=kw.pop("seed", 0), progress=kw.pop("progress", False), **kw)
    return net, history


def test_fit_reduces_the_loss_and_learns(nnx_backend: str) -> None:
    net, history = _fit(nnx_backend)
    assert history.epochs == 8
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert history["accuracy"][-1] > 0.9
    x, labels = _blobs()
    scores = nnx.evaluate(net, nnx.MSE(), (x, one_hot(labels, 3)))
    out = nnx.to_host(nnx.predict(net, x, batch_size=40))
    assert out.shape == (96, 3)
    assert scores["accuracy"] == pytest.approx(np.mean(out.argmax(axis=1) == labels))
    assert scores["loss"] == pytest.approx(np.mean((out - one_hot(labels, 3)) ** 2), rel=1e-5)


def test_same_seed_same_history_on_numpy_and_array_api_strict() -> None:
    if nnx.available()["array_api_strict"] is not None:
        pytest.skip("array_api_strict unavailable")
    runs = {}
    for name in ("numpy", "array_api_strict"):
        x, labels = _blobs()
        half = (x[:32], one_hot(labels[:32], 3, dtype="float64"))
        net, history = _fit(name, "float64", epochs=3, validation=half)
        runs[name] = (history, [nnx.to_host(p.data) for p in net.parameters()])
    (h_np, p_np), (h_st, p_st) = runs["numpy"], runs["array_api_strict"]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(h_st[key], h_np[key], rtol=1e-12, atol=1e-15)
    for a, b in zip(p_st, p_np):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_the_order_depends_on_the_seed_only(nnx_backend: str) -> None:
    _, a = _fit(nnx_backend, "float64", epochs=2, seed=3)
    _, b = _fit(nnx_backend, "float64", epochs=2, seed=3)
    _, c = _fit(nnx_backend, "float64", epochs=2, seed=4)
    assert a["loss"] == b["loss"]
    assert a["loss"] != c["loss"]


def _as_device_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """Treat NumPy as a backend with device memory, so fit takes the GPU's route for its numbers
    (one stacked array per step, or sums kept on the device) on a machine without a GPU."""
    record = dataclasses.replace(nnx.backend.BACKENDS["numpy"], host_memory=False)
    monkeypatch.setitem(nnx.backend.BACKENDS, "numpy", record)


def test_quiet_run_agrees_with_the_logged_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Host memory: each number read every step. Device memory: one stacked array per step, or,
    with nothing to show or check, sums kept on the device. The epoch numbers must not change."""
    _, host = _fit("numpy", "float64", epochs=2)
    _as_device_backend(monkeypatch)
    _, logged = _fit("numpy", "float64", epochs=2)
    _, quiet = _fit("numpy", "float64", epochs=2, check_finite=False)
    for run in (logged, quiet):
        np.testing.assert_allclose(run["loss"], host["loss"], rtol=1e-12)
        assert run["accuracy"] == host["accuracy"]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_the_guard_works_on_the_device_route(monkeypatch: pytest.MonkeyPatch) -> None:
    _as_device_backend(monkeypatch)
    test_non_finite_gradient_names_the_first_layer_in_backward_order()


def test_one_line_per_epoch_when_not_a_terminal() -> None:
    out = io.StringIO()
    _fit("numpy", epochs=3, progress=None, stream=out)
    lines = out.getvalue().splitlines()
    assert [line.split()[:2] for line in lines] == [["epoch", "1/3"], ["epoch", "2/3"], ["epoch", "3/3"]]
    assert all("loss" in line and "accuracy" in line for line in lines)


def test_bar_without_tqdm_is_one_line_per_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "tqdm.auto", None)
    out = io.StringIO()
    _fit("numpy", epochs=2, progress="bar", stream=out)
    lines = out.getvalue().splitlines()
    assert [line.split()[:2] for line in lines] == [["epoch", "1/2"], ["epoch", "2/2"]]
    assert "\r" not in out.getvalue()


def test_tqdm_bar_on_request() -> None:
    pytest.importorskip("tqdm", reason="the 'progress' extra (tqdm) is not installed")
    out = io.StringIO()
    _fit("numpy", epochs=1, progress="bar", stream=out)
    text = out.getvalue()
    assert "epoch 1/1" in text and "6/6" in text


def test_class_index_targets_with_a_custom_metric(nnx_backend: str) -> None:
    x, labels = _blobs()
    net = _net(nnx_backend)
    seen: list[int] = []

    def first_class(output: object, target: object) -> object:
        xp = nnx.backend.namespace_of(output)
        return xp.sum(xp.astype(target == 0, output.dtype))

    scores = nnx.evaluate(net, None, (x, labels), batch_size=50, metrics=["accuracy", first_class])
    assert scores["first_class"] == pytest.approx(np.mean(labels == 0))
    hook = nnx.LambdaCallback(on_epoch_end=lambda state, logs: seen.append(state.epoch))
    nnx.fit(net, nnx.MSE(), nnx.SGD(net.parameters(), lr=1.0), (x, one_hot(labels, 3)), epochs=2,
            batch_size=32, callbacks=[hook], progress=False)
    assert seen == [1, 2]


def test_early_stopping_stops_and_restores_the_best() -> None:
    x, labels = _blobs()
    val = (x[:30], one_hot(labels[:30], 3))
    stopper = nnx.EarlyStopping(monitor="val_loss", patience=1)
    # a learning rate so large that the validation loss gets worse after the first epochs
    net, history = _fit("numpy", epochs=40, lr=60.0, validation=val, callbacks=[stopper])
    assert history.epochs < 40
    best = int(np.argmin(history["val_loss"]))
    assert stopper.best_epoch == best + 1
    assert history.epochs == best + 1 + 2
    assert nnx.evaluate(net, nnx.MSE(), val)["loss"] == pytest.approx(history["val_loss"][best], rel=1e-6)


class _Halve:
    """A schedule with the documented interface: step() sets optimizer.lr."""

    def __init__(self, opt: nnx.SGD) -> None:
        self.opt = opt

    def step(self) -> float:
        self.opt.lr /= 2
        return self.opt.lr


def test_lr_scheduler_steps_per_epoch() -> None:
    x, labels = _blobs()
    net = _net("numpy")
    opt = nnx.SGD(net.parameters(), lr=1.0)
    h = nnx.fit(net, nnx.MSE(), opt, (x, one_hot(labels, 3)), epochs=3, batch_size=32,
                callbacks=[nnx.LRScheduler(_Halve(opt))], progress=False)
    assert h["lr"] == [1.0, 0.5, 0.25]
    assert opt.lr == 0.125


def test_state_continues_a_run_exactly() -> None:
    """Two epochs then one more from the same TrainState equal three epochs in one go."""
    x, labels = _blobs()
    data = (x, one_hot(labels, 3, dtype="float64"))
    whole_net = _net("numpy", "float64")
    whole = nnx.fit(whole_net, nnx.MSE(), nnx.SGD(whole_net.parameters(), lr=1.0), data, epochs=3,
                    batch_size=16, seed=5, progress=False)
    net = _net("numpy", "float64")
    opt = nnx.SGD(net.parameters(), lr=1.0)
    state = nnx.TrainState(net, opt, seed=5)
    nnx.fit(net, nnx.MSE(), opt, data, epochs=2, batch_size=16, state=state, progress=False)
    saved = state.state_dict()
    assert saved["epoch"] == 2 and saved["step"] == 12
    resumed = nnx.TrainState(net, opt, seed=123)
    resumed.load_state_dict(saved)
    history = nnx.fit(net, nnx.MSE(), opt, data, epochs=3, batch_size=16, state=resumed, progress=False)
    assert history["loss"] == whole["loss"]
    for a, b in zip(net.parameters(), whole_net.parameters()):
        np.testing.assert_array_equal(nnx.to_host(a.data), nnx.to_host(b.data))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy's overflow warnings are the point here
@pytest.mark.parametrize("lr, where", [
    (1e6, "the loss (every layer's output was finite)"),  # the squares overflow float32
    (1e12, "layer 2 (Linear(16, 3))"),                      # the last layer's output overflows
])
def test_diverging_run_stops_with_epoch_step_and_where(nnx_backend: str, lr: float, where: str) -> None:
    x, labels = _blobs()
    net = nnx.Sequential(
        nnx.Linear(4, 16, seed=0, backend=nnx_backend), nnx.ReLU(),
        nnx.Linear(16, 3, seed=1, backend=nnx_backend),
    )
    with pytest.raises(nnx.errors.NonFiniteError) as info:
        nnx.fit(net, nnx.MSE(), nnx.SGD(net.parameters(), lr=lr), (x * 1e3, one_hot(labels, 3)),
                epochs=5, batch_size=16, progress=False, seed=0)
    message = str(info.value)
    assert "epoch 1, step 2: the loss is inf" in message
    assert f"comes from {where}" in message
    for p in net.parameters():
        assert np.all(np.isfinite(nnx.to_host(p.data))), "a non-finite update was applied"


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_data_is_refused_before_training(bad: float) -> None:
    x, labels = _blobs()
    x[40, 2] = bad
    net = _net("numpy")
    before = [nnx.to_host(p.data) for p in net.parameters()]
    with pytest.raises(nnx.errors.NonFiniteError, match=r"data: the inputs hold 1 non-finite value"):
        nnx.fit(net, nnx.MSE(), nnx.SGD(net.parameters(), lr=0.1), (x, one_hot(labels, 3)),
                epochs=1, batch_size=16, shuffle=False, progress=False)
    assert all(np.array_equal(a, nnx.to_host(p.data)) for a, p in zip(before, net.parameters()))


def test_validation_data_is_checked_like_training_data() -> None:
    x, labels = _blobs()
    net = _net("numpy")
    opt = nnx.SGD(net.parameters(), lr=0.1)
    vx = x[:10].copy()
    vx[3, 1] = np.inf
    with pytest.raises(nnx.errors.NonFiniteError, match=r"validation: the inputs hold 1 non-finite"):
        nnx.fit(net, nnx.SoftmaxCrossEntropy(), opt, (x, labels), epochs=1, validation=(vx, labels[:10]),
                progress=False)
    with pytest.raises(nnx.errors.TargetError, match=r"validation: .*\[0, 3\)"):
        nnx.fit(net, nnx.SoftmaxCrossEntropy(), opt, (x, labels), epochs=1,
                validation=(x[:10], np.full(10, 7)), progress=False)


class _InfGrad(nnx.Layer):
    """Identity forward whose backward returns an infinite gradient: a finite loss, a bad gradient."""

    def forward(self, x: object) -> object:
        self.save_for_backward(x)
        return x

    def backward(self, grad: object) -> object:
        self.saved_tensors()
        return grad * float("inf")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_non_finite_gradient_names_the_first_layer_in_backward_order() -> None:
    x, labels = _blobs()
    net = nnx.Sequential(nnx.Linear(4, 8, seed=0), nnx.Tanh(), nnx.Linear(8, 3, seed=1), _InfGrad(),
                         nnx.Sigmoid())
    with pytest.raises(nnx.errors.NonFiniteError, match=r"epoch 1, step 1: .*gradient.* layer 2 \(Linear.*2\.weight, 2\.bias"):
        nnx.fit(net, nnx.MSE(), nnx.SGD(net.parameters(), lr=0.1), (x, one_hot(labels, 3)),
                epochs=1, batch_size=16, progress=False)


def test_bad_arguments_are_clear() -> None:
    x, labels = _blobs()
    net = _net("numpy")
    opt = nnx.SGD(net.parameters(), lr=0.1)
    with pytest.raises(nnx.errors.ShapeError, match="96 inputs but 95 targets"):
        nnx.fit(net, nnx.MSE(), opt, (x, one_hot(labels, 3)[:95]), epochs=1)
    with pytest.raises(ValueError, match="batch_size"):
        nnx.fit(net, nnx.MSE(), opt, (x, one_hot(labels, 3)), epochs=1, batch_size=0)
    with pytest.raises(ValueError, match="epochs"):
        nnx.fit(net, nnx.MSE(), opt, (x, one_hot(labels, 3)), epochs=-1)
    with pytest.raises(KeyError, match="val_loss"):
        nnx.fit(net, nnx.MSE(), opt, (x, one_hot(labels, 3)), epochs=1, progress=False,
                callbacks=[nnx.EarlyStopping()])


def test_fit_restores_the_nan_checks_and_evaluate_the_mode() -> None:
    from nnx.layers.checks import finite_checks_enabled

    x, labels = _blobs()
    net = nnx.Sequential(nnx.Linear(4, 8, seed=0), nnx.Dropout(0.5, seed=0), nnx.Linear(8, 3, seed=1))
    nnx.fit(net, nnx.SoftmaxCrossEntropy(), nnx.Adam(net.parameters()), (x, labels), epochs=1, progress=False)
    assert finite_checks_enabled()
    assert net.training
    # evaluation mode: Dropout off, so two passes agree; the mode is restored afterwards
    a = nnx.to_host(nnx.predict(net, x))
    np.testing.assert_array_equal(a, nnx.to_host(nnx.predict(net, x)))
    assert net.training


def test_out_of_range_labels_stop_fit_before_any_update(nnx_backend: str) -> None:
    net = nnx.Sequential(nnx.Linear(4, 3, seed=0), nnx.ReLU(), nnx.Linear(3, 3, seed=1))
    before = [nnx.to_host(p.data).copy() for p in net.parameters()]
    x = np.random.default_rng(0).standard_normal((20, 4)).astype("float32")
    labels = np.arange(20) % 3
    labels[17] = 3  # one bad label, in the last batch
    with pytest.raises(nnx.errors.TargetError, match=r"\[0, 3\) for 3 classes.*0 to 3"):
        nnx.fit(net, nnx.losses.SoftmaxCrossEntropy(), nnx.optim.Adam(net.parameters()), (x, labels),
                epochs=1, batch_size=5, progress=False)
    for p, b in zip(net.parameters(), before):
        np.testing.assert_array_equal(nnx.to_host(p.data), b)
    assert net.training


def test_fit_refuses_an_optimizer_of_another_model() -> None:
    x, labels = _blobs()
    net, other = _net("numpy"), _net("numpy")
    with pytest.raises(nnx.errors.ConfigError, match=r"not the model's .*model.parameters\(\)"):
        nnx.fit(net, nnx.SoftmaxCrossEntropy(), nnx.SGD(other.parameters(), lr=0.1), (x, labels), epochs=1,
                progress=False)
    last = net.parameters()[-2:]  # fine-tuning a part of the model is allowed
    nnx.fit(net, nnx.SoftmaxCrossEntropy(), nnx.SGD(last, lr=0.1), (x, labels), epochs=1, progress=False)
