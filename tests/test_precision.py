"""Mixed precision (nnx.precision, nnx.scaler): float16/bfloat16 compute, float32 master weights,
float16's loss scaling decided on the device, checkpoints, and the refusals."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nnx
from nnx import backend, cli, ops
from nnx.errors import ConfigError, DTypeError, ModelFileError

# every backend and 16-bit dtype nnx computes in; a backend that cannot run here is skipped with its reason
CASES = [("numpy", "float16"), ("torch", "float16"), ("torch", "bfloat16"), ("cupy", "float16")]
EPS = {"float16": 2.0**-10, "bfloat16": 2.0**-7}


def _use(name: str) -> None:
    reason = backend.available()[name]
    if reason is not None:
        pytest.skip(f"backend {name!r} unavailable: {reason}")
    nnx.use(name)


def _mlp(name: str, dtype: str = "float32") -> nnx.Sequential:
    return nnx.Sequential(nnx.Linear(6, 16, seed=0, dtype=dtype, backend=name), nnx.Tanh(),
                          nnx.LayerNorm(16, dtype=dtype, backend=name), nnx.Linear(16, 3, seed=1, dtype=dtype, backend=name))


def _data(name: str, n: int = 32, dtype: str = "float32") -> tuple[Any, Any]:
    rng = np.random.default_rng(0)
    return nnx.to_device(rng.normal(size=(n, 6)), name, dtype), nnx.to_device(rng.integers(0, 3, n), name, "int64")


def _host(params: list[nnx.Parameter]) -> list[np.ndarray]:
    return [nnx.to_host(p.data) for p in params]


@pytest.mark.parametrize("name,dtype", CASES)
def test_layers_compute_in_the_low_dtype_the_fragile_work_and_master_weights_in_float32(name: str, dtype: str) -> None:
    _use(name)
    model, (x, y) = _mlp(name), _data(name)
    opt = nnx.Adam(model.parameters(), lr=1e-3)
    seen: dict[str, str] = {}

    def record(path: str, layer: Any, method: str, arg: Any, out: Any) -> None:
        if out is not None:
            seen[f"{path} {method}"] = f"{backend.dtype_name(arg)}->{backend.dtype_name(out)}"

    with model.observe(record, ("forward", "backward")):
        value, out = nnx.train_step(model, nnx.SoftmaxCrossEntropy(), opt, x, y, precision=dtype)
    assert seen["0 forward"] == f"{dtype}->{dtype}" and seen["3 backward"] == f"{dtype}->{dtype}"
    assert seen["2 forward"] == "float32->float32"  # LayerNorm between casts
    assert backend.dtype_name(value) == backend.dtype_name(out) == "float32"
    assert {backend.dtype_name(p.data) for p in model.parameters()} == {"float32"}
    assert {backend.dtype_name(p.grad) for p in model.parameters()} == {"float32"}
    assert {backend.dtype_name(v) for s in opt.state for v in s.values()} == {"float32"}


@pytest.mark.parametrize("name,dtype", CASES)
def test_gradients_match_float64_within_the_dtypes_precision(name: str, dtype: str) -> None:
    _use(name)
    (x, y), loss = _data(name), nnx.SoftmaxCrossEntropy()
    ref = _mlp(name, "float64")
    loss.forward(ref.forward(nnx.to_device(nnx.to_host(x), name, "float64")), y)
    ref.backward(loss.backward())
    model = _mlp(name)
    opt = nnx.SGD(model.parameters(), lr=1e-30)  # an update too small to matter: the gradients are the point
    nnx.train_step(model, loss, opt, x, y, precision=nnx.Precision(dtype))
    for p, r in zip(model.parameters(), ref.parameters()):
        got, want = nnx.to_host(p.grad), nnx.to_host(r.grad)
        assert np.max(np.abs(got - want)) <= 40 * EPS[dtype] * np.max(np.abs(want)), p.name


@pytest.mark.parametrize("name,dtype", [c for c in CASES if c[1] == "float16"])
def test_an_overflow_skips_the_step_halves_the_scale_and_keeps_nan_out(name: str, dtype: str) -> None:
    _use(name)
    model, (x, y) = _mlp(name), _data(name)
    opt = nnx.Adam(model.parameters(), lr=1e-2)
    policy = nnx.Precision(dtype, scaler=nnx.LossScaler(init_scale=2.0**40))  # scaled gradients overflow float16
    nnx.train_step(model, nnx.SoftmaxCrossEntropy(), opt, x, y, precision=policy)  # overflows: Adam's state stays zero
    before = _host(model.parameters())
    assert all(np.array_equal(a, b) for a, b in zip(before, _host(_mlp(name).parameters())))
    assert policy.scaler.scale == 2.0**39
    assert all(np.array_equal(nnx.to_host(v), np.zeros(v.shape)) for s in opt.state for v in s.values())
    policy.scaler.load_state_dict({**policy.scaler.state_dict(), "scale": 1024.0})
    nnx.train_step(model, nnx.SoftmaxCrossEntropy(), opt, x, y, precision=policy)
    moved, state = _host(model.parameters()), [nnx.to_host(v) for s in opt.state for v in s.values()]
    assert not all(np.array_equal(a, b) for a, b in zip(before, moved)) and policy.scaler.scale == 1024.0
    policy.scaler.load_state_dict({**policy.scaler.state_dict(), "scale": 2.0**40})
    nnx.train_step(model, nnx.SoftmaxCrossEntropy(), opt, x, y, precision=policy)  # overflow: skipped
    assert all(np.array_equal(a, b) for a, b in zip(moved, _host(model.parameters())))
    assert all(np.array_equal(a, nnx.to_host(v)) for a, v in zip(state, (v for s in opt.state for v in s.values())))
    assert policy.scaler.scale == 2.0**39
    assert all(np.isfinite(a).all() for a in _host(model.parameters()))


@pytest.mark.parametrize("name,dtype", [c for c in CASES if c[1] == "float16"])
def test_the_scale_grows_after_growth_interval_good_steps_and_an_overflow_resets_the_count(name: str, dtype: str) -> None:
    _use(name)
    model, (x, y) = _mlp(name), _data(name)
    opt = nnx.SGD(model.parameters(), lr=1e-3)
    policy = nnx.Precision(dtype, scaler=nnx.LossScaler(init_scale=4.0, growth_interval=3))
    scales = []
    for _ in range(7):
        nnx.train_step(model, nnx.SoftmaxCrossEntropy(), opt, x, y, precision=policy)
        scales.append(policy.scaler.scale)
    assert scales == [4.0, 4.0, 8.0, 8.0, 8.0, 16.0, 16.0]
    assert policy.scaler.state_dict()["good_steps"] == 1


def test_defaults_are_gradscalers_and_bfloat16_scales_nothing() -> None:
    scaler = nnx.Precision("float16").scaler
    assert (scaler.init_scale, scaler.growth_factor, scaler.backoff_factor, scaler.growth_interval) == (
        2.0**16, 2.0, 0.5, 2000)
    assert nnx.Precision("bfloat16").scaler is None


def test_a_step_reads_nothing_on_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every way a torch tensor becomes a Python number or a host array is counted during the steps."""
    _use("torch")
    import torch

    model, (x, y) = _mlp("torch"), _data("torch")
    opt, loss = nnx.Adam(model.parameters(), lr=1e-3), nnx.SoftmaxCrossEntropy()
    policy = nnx.Precision("float16", scaler=nnx.LossScaler(growth_interval=2))
    reads: list[str] = []
    for method in ("__bool__", "__float__", "__int__", "__index__", "item", "tolist", "numpy"):
        original = getattr(torch.Tensor, method)

        def counted(self: Any, *args: Any, _o: Any = original, _m: str = method, **kwargs: Any) -> Any:
            reads.append(_m)
            return _o(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, method, counted)
    old = nnx.set_finite_checks(False)  # as fit does; its own guard is what reads, once per step
    try:
        float(nnx.to_device([1.0], "torch")[0])
        assert reads == ["__float__"]  # the counter counts
        reads.clear()
        for _ in range(5):  # an overflow at 2**16 and growth after two good steps are both in here
            nnx.train_step(model, loss, opt, x, y, precision=policy)
    finally:
        nnx.set_finite_checks(old)
    assert reads == []
    monkeypatch.undo()
    assert policy.scaler.scale != 2.0**16  # the scale moved without being read


def test_fit_resumed_from_a_checkpoint_equals_one_run_loss_scale_included(tmp_path: Path) -> None:
    _use("numpy")

    def run(epochs: int, resume: bool) -> tuple[list[np.ndarray], nnx.Precision]:
        model, data = _mlp("numpy"), _data("numpy", 40)
        policy = nnx.Precision("float16", scaler=nnx.LossScaler(init_scale=2.0**20, growth_interval=4))
        nnx.fit(model, nnx.SoftmaxCrossEntropy(), nnx.Adam(model.parameters(), lr=1e-2), data, epochs=epochs,
                batch_size=8, seed=3, progress=False, checkpoint=tmp_path / ("a" if resume else "b"),
                resume=resume, precision=policy)
        return _host(model.parameters()), policy

    whole, whole_policy = run(4, False)
    run(2, True)
    resumed, resumed_policy = run(4, True)
    assert all(np.array_equal(a, b) for a, b in zip(whole, resumed))
    assert resumed_policy.scaler.state_dict() == whole_policy.scaler.state_dict()
    assert whole_policy.scaler.scale not in (2.0**20,)  # the scale moved, so the resumed one was restored
    with pytest.raises(ConfigError, match="precision"):
        model, data = _mlp("numpy"), _data("numpy", 40)
        nnx.fit(model, nnx.SoftmaxCrossEntropy(), nnx.Adam(model.parameters(), lr=1e-2), data, epochs=5,
                batch_size=8, seed=3, progress=False, checkpoint=tmp_path / "a", resume=True)
    with pytest.raises((ConfigError, ModelFileError), match="float16"):
        model, data = _mlp("numpy"), _data("numpy", 40)
        nnx.fit(model, nnx.SoftmaxCrossEntropy(), nnx.Adam(model.parameters(), lr=1e-2), data, epochs=5,
                batch_size=8, seed=3, progress=False, checkpoint=tmp_path / "a", resume=True, allow_changes=True)


def test_refusals_say_what_is_wrong_and_how_to_fix_it() -> None:
    _use("numpy")
    model, (x, y) = _mlp("numpy"), _data("numpy")
    opt, loss = nnx.SGD(model.parameters(), lr=0.1), nnx.SoftmaxCrossEntropy()
    with pytest.raises(DTypeError, match="numpy.*bfloat16.*torch"):
        nnx.train_step(model, loss, opt, x, y, precision="bfloat16")
    with pytest.raises(ConfigError, match="float16 needs loss scaling"):
        nnx.Precision("float16", scaler=False)
    with pytest.raises(ConfigError, match="float16, bfloat16"):
        nnx.Precision("int8")
    with pytest.raises(ConfigError, match="backoff_factor"):
        nnx.LossScaler(backoff_factor=1.5)
    wide = _mlp("numpy", "float64")
    with pytest.raises(DTypeError, match="float32 master weights.*float64"):
        nnx.fit(wide, loss, nnx.SGD(wide.parameters(), lr=0.1), (x, y), epochs=1, progress=False, precision="float16")
    assert all(np.isfinite(a).all() for a in _host(model.parameters()))  # the refused step changed nothing
    if backend.available()["array_api_strict"] is None:
        with pytest.raises(DTypeError, match="array_api_strict.*only float32 and float64"):
            backend.low_dtype("array_api_strict", "float16")


def test_softmax_of_a_16_bit_array_is_the_float32_softmax_rounded_once() -> None:
    for name, dtype in CASES:
        if backend.available()[name] is not None:
            continue
        xp = backend.namespace(name)
        low = nnx.to_device(np.random.default_rng(1).normal(scale=8.0, size=(5, 40)), name, dtype)
        wide = xp.astype(low, xp.float32)
        got = ops.softmax(low, -1)
        assert got.dtype == low.dtype
        assert np.array_equal(nnx.to_host(xp.astype(got, xp.float32)),
                              nnx.to_host(xp.astype(xp.astype(ops.softmax(wide, -1), low.dtype), xp.float32)))


def test_sigmoid_cut_follows_the_dtypes_range() -> None:
    _use("numpy")
    assert ops.sigmoid_cut(np.zeros(1, np.float16)) == 11.0 and ops.sigmoid_cut(np.zeros(1, np.float64)) == 709.0
    if backend.available()["torch"] is None:
        import torch

        assert ops.sigmoid_cut(torch.zeros(1, dtype=torch.bfloat16)) == 88.0  # float32's exponent range


def test_a_transformer_with_dropout_trains_in_bfloat16() -> None:
    _use("torch")
    model = nnx.Sequential(nnx.Embedding(11, 8, seed=0), nnx.TransformerBlock(8, 2, dropout=0.1, causal=True, seed=1),
                           nnx.Flatten(), nnx.Linear(40, 11, seed=2))
    ids = nnx.to_device(np.random.default_rng(0).integers(0, 11, (16, 6)), "torch", "int64")
    opt = nnx.Adam(model.parameters(), lr=1e-2)
    loss, policy = nnx.SoftmaxCrossEntropy(), nnx.Precision("bfloat16")
    first, _ = nnx.train_step(model, loss, opt, ids[:, :-1], ids[:, -1], precision=policy)
    for _ in range(30):
        last, _ = nnx.train_step(model, loss, opt, ids[:, :-1], ids[:, -1], precision=policy)
    assert float(last) < 0.5 * float(first)


def test_nnx_train_precision(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["train", "digits", "--epochs", "2", "--limit", "300", "--quiet"]
    assert cli.main([*base, "--precision", "float16"]) == 0
    assert "held-out accuracy" in capsys.readouterr().out
    assert cli.main([*base, "--precision", "bfloat16", "--backend", "numpy"]) == 1
    assert "cannot compute in bfloat16" in capsys.readouterr().err


def test_the_guides_python_blocks_run() -> None:
    """docs/mixed-precision.md: each block on its own, or after the one before (``# continues``)."""
    _use("numpy")
    text = (Path(__file__).resolve().parents[1] / "docs" / "mixed-precision.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)
    assert len(blocks) >= 4
    namespace: dict[str, Any] = {}
    for code in blocks:
        if not code.startswith("# continues"):
            namespace = {}
        exec(compile(code, "docs/mixed-precision.md", "exec"), namespace)


def test_a_parameter_two_layers_share_gets_its_float32_master_back() -> None:
    _use("numpy")
    first, second = nnx.Linear(6, 6, seed=0), nnx.Linear(6, 3, seed=1)
    tied = nnx.Linear(6, 6, seed=2)
    tied.weight = first.weight
    model = nnx.Sequential(first, nnx.Tanh(), tied, nnx.Tanh(), second)
    x, y = _data("numpy")
    opt = nnx.SGD(model.parameters(), lr=0.1)
    nnx.train_step(model, nnx.SoftmaxCrossEntropy(), opt, x, y, precision="float16")
    assert first.weight.data is tied.weight.data and first.weight.data.dtype == np.float32


def test_a_standardize_first_takes_raw_data_beyond_float16s_range_in_float32() -> None:
    _use("numpy")
    x, y = _data("numpy")
    raw = x * 1e5 + 3e5  # far beyond float16's largest number, 65504
    scale = nnx.preprocessing.Standardize(6).fit(nnx.to_host(raw))
    model = nnx.Sequential(scale, nnx.Linear(6, 16, seed=0), nnx.Tanh(), nnx.Linear(16, 3, seed=1))
    opt = nnx.Adam(model.parameters(), lr=1e-2)
    policy = nnx.Precision("float16")
    assert policy.cast_input(model, raw) is raw and policy.cast_input(model[1], x).dtype == np.float16
    first, _ = nnx.train_step(model, nnx.SoftmaxCrossEntropy(), opt, raw, y, precision=policy)
    for _ in range(20):
        last, _ = nnx.train_step(model, nnx.SoftmaxCrossEntropy(), opt, raw, y, precision=policy)
    assert np.isfinite(float(first)) and float(last) < float(first)
    assert policy.scaler.scale == 2.0**16  # no overflow: nothing was skipped
