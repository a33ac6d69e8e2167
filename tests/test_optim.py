"""Optimizers against update rules written out from their papers, state save/restore,
schedules and gradient clipping."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import nnx
from nnx.optim import SGD, Adam, AdamW, CosineWithWarmup, ExponentialLR, Lion, RMSProp, StepLR, clip_grad_norm

# f(p) = 1/2 sum(A * (p - C)^2) for two parameters of different shapes; grad = A * (p - C)
SHAPES = [(2, 3), (3,)]
_rng = np.random.default_rng(0)
A = [_rng.uniform(0.5, 3.0, s) for s in SHAPES]
C = [_rng.normal(0, 1, s) for s in SHAPES]
P0 = [_rng.normal(0, 1, s) for s in SHAPES]


def _params(nnx_backend: str, dtype: str = "float64") -> list[nnx.Parameter]:
    return [nnx.Parameter(nnx.to_device(p, nnx_backend, dtype=dtype), f"p{i}") for i, p in enumerate(P0)]


def _set_grads(params: list[nnx.Parameter]) -> None:
    for p, a, c in zip(params, A, C):
        b, d = nnx.backend.backend_of(p.data), nnx.backend.dtype_name(p.data)
        p.grad = nnx.to_device(a, b, dtype=d) * (p.data - nnx.to_device(c, b, dtype=d))


def _run(opt: nnx.optim.Optimizer, steps: int, schedule: object = None) -> list[np.ndarray]:
    for _ in range(steps):
        opt.zero_grad()
        _set_grads(opt.params)
        opt.step()
        if schedule is not None:
            schedule.step()
    return [nnx.to_host(p.data) for p in opt.params]


# Reference rules on the host, one parameter at a time, written from the papers -----------

def _ref(rule: object, steps: int, lrs: list[float] | None = None) -> list[np.ndarray]:
    out = []
    for a, c, p0 in zip(A, C, P0):
        theta, state = p0.copy(), {}
        for t in range(1, steps + 1):
            g = a * (theta - c)
            theta = rule(theta, g, t, state, lrs[t - 1] if lrs else None)
        out.append(theta)
    return out


def _sgd(lr: float, mu: float = 0.0, nesterov: bool = False, wd: float = 0.0) -> object:
    # Sutskever et al. (2013) momentum, in the velocity-accumulating form: v_t = mu v_{t-1} + g_t
    def rule(theta, g, t, s, _):
        g = g + wd * theta
        if mu == 0:
            return theta - lr * g
        s["v"] = g if t == 1 else mu * s["v"] + g
        return theta - lr * (g + mu * s["v"] if nesterov else s["v"])
    return rule


def _adam(alpha: float, b1: float, b2: float, eps: float, l2: float = 0.0) -> object:
    # Kingma & Ba (2015), Algorithm 1
    def rule(theta, g, t, s, _):
        g = g + l2 * theta
        s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g**2
        m_hat = s["m"] / (1 - b1**t)
        v_hat = s["v"] / (1 - b2**t)
        return theta - alpha * m_hat / (np.sqrt(v_hat) + eps)
    return rule


def _adamw(alpha: float, b1: float, b2: float, eps: float, lam: float) -> object:
    # Loshchilov & Hutter (2019), Algorithm 2: theta -= eta_t (alpha m_hat / (sqrt(v_hat) + eps) + lambda theta)
    def rule(theta, g, t, s, lr_t):
        eta = 1.0 if lr_t is None else lr_t / alpha
        s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g**2
        m_hat = s["m"] / (1 - b1**t)
        v_hat = s["v"] / (1 - b2**t)
        return theta - eta * (alpha * m_hat / (np.sqrt(v_hat) + eps) + lam * theta)
    return rule


def _rmsprop(lr: float, alpha: float, eps: float, mu: float = 0.0) -> object:
    # Tieleman & Hinton (2012): a running mean of squared gradients divides the step
    def rule(theta, g, t, s, _):
        s["v"] = alpha * s.get("v", 0.0) + (1 - alpha) * g**2
        step = g / (np.sqrt(s["v"]) + eps)
        if mu:
            s["b"] = mu * s.get("b", 0.0) + step
            step = s["b"]
        return theta - lr * step
    return rule


def _lion(lr: float, b1: float, b2: float, lam: float) -> object:
    # Chen et al. (2023), Algorithm 2: c = b1 m + (1 - b1) g; theta -= lr (sign(c) + lambda theta);
    # m = b2 m + (1 - b2) g
    def rule(theta, g, t, s, _):
        m = s.get("m", np.zeros_like(theta))
        c = b1 * m + (1 - b1) * g
        theta = theta - lr * (np.sign(c) + lam * theta)
        s["m"] = b2 * m + (1 - b2) * g
        return theta
    return rule


CASES = {
    "sgd": (lambda ps: SGD(ps, lr=0.1), _sgd(0.1)),
    "sgd_momentum": (lambda ps: SGD(ps, lr=0.05, momentum=0.9), _sgd(0.05, 0.9)),
    "sgd_nesterov": (lambda ps: SGD(ps, lr=0.05, momentum=0.9, nesterov=True), _sgd(0.05, 0.9, True)),
    "sgd_decay": (lambda ps: SGD(ps, lr=0.05, momentum=0.5, weight_decay=0.1), _sgd(0.05, 0.5, False, 0.1)),
    "adam": (lambda ps: Adam(ps, lr=0.01), _adam(0.01, 0.9, 0.999, 1e-8)),
    "adam_l2": (lambda ps: Adam(ps, lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
                _adam(0.02, 0.8, 0.99, 1e-6, 0.1)),
    "adamw": (lambda ps: AdamW(ps, lr=0.01, weight_decay=0.5), _adamw(0.01, 0.9, 0.999, 1e-8, 0.01 * 0.5)),
    "rmsprop": (lambda ps: RMSProp(ps, lr=0.01), _rmsprop(0.01, 0.99, 1e-8)),
    "rmsprop_momentum": (lambda ps: RMSProp(ps, lr=0.01, alpha=0.9, momentum=0.8), _rmsprop(0.01, 0.9, 1e-8, 0.8)),
    "lion": (lambda ps: Lion(ps, lr=0.003), _lion(0.003, 0.9, 0.99, 0.0)),
    "lion_decay": (lambda ps: Lion(ps, lr=0.002, betas=(0.8, 0.95), weight_decay=0.4), _lion(0.002, 0.8, 0.95, 0.4)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_steps_match_the_papers(nnx_backend: str, name: str) -> None:
    make, rule = CASES[name]
    got = _run(make(_params(nnx_backend)), 6)
    for g, r in zip(got, _ref(rule, 6)):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-14)


def test_adamw_decay_follows_the_schedule(nnx_backend: str) -> None:
    """With a schedule, the paper's multiplier eta_t scales both the step and the decay."""
    opt = AdamW(_params(nnx_backend), lr=0.02, weight_decay=0.3)
    sched = ExponentialLR(opt, gamma=0.7)
    got = _run(opt, 5, sched)
    lrs = [0.02 * 0.7**t for t in range(5)]
    for g, r in zip(got, _ref(_adamw(0.02, 0.9, 0.999, 1e-8, 0.02 * 0.3), 5, lrs)):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-14)


def test_adam_is_not_adamw(nnx_backend: str) -> None:
    a = _run(Adam(_params(nnx_backend), lr=0.01, weight_decay=0.5), 4)
    w = _run(AdamW(_params(nnx_backend), lr=0.01, weight_decay=0.5), 4)
    assert not np.allclose(a[0], w[0])


def test_plain_sgd_is_bit_exact(nnx_backend: str) -> None:
    params = _params(nnx_backend, "float32")
    _set_grads(params)
    expected = [nnx.to_host(p.data) - np.float32(0.3) * nnx.to_host(p.grad) for p in params]
    SGD(params, lr=0.3).step()
    for p, e in zip(params, expected):
        np.testing.assert_array_equal(nnx.to_host(p.data), e)


@pytest.mark.parametrize("name", sorted(CASES))
def test_float32_stays_float32(nnx_backend: str, name: str) -> None:
    opt = CASES[name][0](_params(nnx_backend, "float32"))
    _run(opt, 2)
    for p in opt.params:
        assert nnx.backend.dtype_name(p.data) == "float32"
    for slots in opt.state:
        for v in slots.values():
            assert nnx.backend.dtype_name(v) == "float32"
            assert nnx.backend.backend_of(v) == nnx_backend


@pytest.mark.parametrize("name", sorted(CASES))
def test_float32_steps_are_accurate(nnx_backend: str, name: str) -> None:
    """float32 state loses no more than float32 rounding (no cancellation in the moment updates)."""
    make, rule = CASES[name]
    got = _run(make(_params(nnx_backend, "float32")), 6)
    for g, r in zip(got, _ref(rule, 6)):  # the parameters are of order 1
        np.testing.assert_allclose(g, r, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", sorted(CASES))
def test_state_dict_resumes_exactly(nnx_backend: str, name: str) -> None:
    make = CASES[name][0]
    straight = _run(make(_params(nnx_backend)), 5)
    first = make(_params(nnx_backend))
    _run(first, 3)
    saved = first.state_dict()
    scalars = {k: v for k, v in saved.items() if k != "state"}
    assert json.loads(json.dumps(scalars)) == json.loads(json.dumps(scalars))  # JSON-able
    for slots in saved["state"].values():
        for v in slots.values():
            assert type(v).__module__ == "numpy"
    # new optimizer on the parameters as they were after step 3
    params = [nnx.Parameter(p.data, p.name) for p in first.params]
    second = make(params)
    second.load_state_dict(json.loads(json.dumps(scalars)) | {"state": saved["state"]})
    for g, s in zip(_run(second, 2), straight):
        np.testing.assert_array_equal(g, s)


def test_state_restores_onto_another_backend() -> None:
    first = Adam(_params("numpy"), lr=0.01)
    _run(first, 3)
    second = Adam([nnx.Parameter(nnx.to_device(p.data, "array_api_strict"), p.name) for p in first.params], lr=0.01)
    second.load_state_dict(first.state_dict())
    for slots in second.state:
        for v in slots.values():
            assert nnx.backend.backend_of(v) == "array_api_strict"
    for a, b in zip(_run(first, 2), _run(second, 2)):
        np.testing.assert_array_equal(a, b)


def test_state_dict_mismatches_are_errors() -> None:
    adam = Adam(_params("numpy"))
    _run(adam, 1)
    with pytest.raises(nnx.errors.StateError, match="Adam"):
        SGD(_params("numpy"), lr=0.1).load_state_dict(adam.state_dict())
    with pytest.raises(nnx.errors.StateError, match="2 parameters.*1"):
        Adam(_params("numpy")[:1]).load_state_dict(adam.state_dict())
    swapped = Adam(_params("numpy")[::-1])
    with pytest.raises(nnx.errors.ShapeError, match="exp_avg"):
        swapped.load_state_dict(adam.state_dict())


def test_schedules() -> None:
    def lrs(make: object, n: int) -> list[float]:
        opt = SGD(_params("numpy"), lr=1.0)
        sched = make(opt)
        out = [opt.lr]
        for _ in range(n):
            out.append(sched.step())
        assert out[-1] == opt.lr == sched.lr
        return out

    assert lrs(lambda o: StepLR(o, step_size=2, gamma=0.5), 5) == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    np.testing.assert_allclose(lrs(lambda o: ExponentialLR(o, 0.9), 3), [1.0, 0.9, 0.81, 0.729], rtol=1e-15)
    cos = lrs(lambda o: CosineWithWarmup(o, warmup_steps=3, total_steps=7, min_lr=0.1), 8)
    np.testing.assert_allclose(cos[:4], [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(cos[5], 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2)))
    np.testing.assert_allclose(cos[7:], [0.1, 0.1])


def test_schedule_state_dict() -> None:
    opt = SGD(_params("numpy"), lr=0.5)
    sched = CosineWithWarmup(opt, 2, 10)
    for _ in range(4):
        sched.step()
    saved = json.loads(json.dumps(sched.state_dict()))
    opt2 = SGD(_params("numpy"), lr=0.5)
    sched2 = CosineWithWarmup(opt2, 2, 10)
    sched2.load_state_dict(saved)
    assert opt2.lr == opt.lr and sched2.position == 4
    assert sched2.step() == sched.step()


def test_clip_grad_norm(nnx_backend: str) -> None:
    params = _params(nnx_backend)
    _set_grads(params)
    grads = [nnx.to_host(p.grad).copy() for p in params]
    norm = math.sqrt(sum(float((g**2).sum()) for g in grads))
    total = clip_grad_norm(params, max_norm=0.5 * norm)
    assert nnx.backend.backend_of(total) == nnx_backend
    assert float(total) == pytest.approx(norm, rel=1e-14)
    clipped = math.sqrt(sum(float((nnx.to_host(p.grad) ** 2).sum()) for p in params))
    assert clipped == pytest.approx(0.5 * norm, rel=1e-6)
    for p, g in zip(params, grads):
        np.testing.assert_allclose(nnx.to_host(p.grad), g * (0.5 * norm / (norm + 1e-6)), rtol=1e-14)
    before = [nnx.to_host(p.grad).copy() for p in params]
    clip_grad_norm(params, max_norm=10 * norm)  # below the limit: unchanged
    for p, g in zip(params, before):
        np.testing.assert_array_equal(nnx.to_host(p.grad), g)


def test_clip_grad_norm_keeps_float32(nnx_backend: str) -> None:
    params = _params(nnx_backend, "float32")
    _set_grads(params)
    total = clip_grad_norm(params, 0.1)
    assert nnx.backend.dtype_name(total) == "float32"
    for p in params:
        assert nnx.backend.dtype_name(p.grad) == "float32"


def test_bad_optimizer_arguments() -> None:
    ps = _params("numpy")
    for make in (lambda: SGD(ps, lr=0.1, nesterov=True), lambda: SGD(ps, lr=0.1, momentum=-1),
                 lambda: Adam(ps, betas=(1.0, 0.9)), lambda: RMSProp(ps, alpha=1.5), lambda: Adam(ps, lr=0),
                 lambda: StepLR(SGD(ps, lr=0.1), 0), lambda: CosineWithWarmup(SGD(ps, lr=0.1), 5, 5),
                 lambda: clip_grad_norm(ps, 0)):
        with pytest.raises(ValueError):
            make()
    with pytest.raises(nnx.errors.StateError, match="no gradients"):
        clip_grad_norm(_params("numpy"), 1.0)


# A test-only backend whose arrays are never changed in place: ``a += b`` gives a new
# array and leaves ``a`` as it was (as on JAX), so an optimizer that updates a local
# alias in place and does not store the result back silently stops training.


class FrozenArray(np.ndarray):
    def __array_ufunc__(self, ufunc: object, method: str, *inputs: object, **kwargs: object) -> object:
        kwargs.pop("out", None)  # the in-place form computes a new array instead
        result = getattr(ufunc, method)(*(_thaw(i) for i in inputs), **kwargs)
        return _freeze(result)

    def __array_function__(self, func: object, types: object, args: object, kwargs: dict) -> object:
        return _freeze(func(*_thaw(args), **{k: _thaw(v) for k, v in kwargs.items()}))

    def __setitem__(self, key: object, value: object) -> None:
        raise TypeError("FrozenArray is immutable")


def _thaw(x: object) -> object:
    if isinstance(x, FrozenArray):
        return x.view(np.ndarray)
    if isinstance(x, (list, tuple)):
        return type(x)(_thaw(v) for v in x)
    return x


def _freeze(x: object) -> object:
    if isinstance(x, tuple):
        return tuple(_freeze(v) for v in x)
    if isinstance(x, (np.ndarray, np.generic)):
        return np.asarray(x).view(FrozenArray)
    return x


FROZEN = nnx.backend.Backend(
    name="frozen",
    module="numpy",
    description="numpy arrays that are never changed in place, for tests",
    probe=lambda: None,
    namespace=lambda: nnx.backend.BACKENDS["numpy"].namespace(),
    from_host=lambda a: np.array(a, copy=True).view(FrozenArray),
    to_host=lambda x: np.array(x, copy=True).view(np.ndarray),
    owns=lambda x: isinstance(x, FrozenArray),
)


@pytest.fixture
def frozen() -> object:
    nnx.backend.register(FROZEN)
    try:
        yield "frozen"
    finally:
        nnx.backend.unregister("frozen")


def test_frozen_arrays_are_not_changed_in_place(frozen: str) -> None:
    a = nnx.to_device([1.0, 2.0], frozen)
    b = a
    b += 1.0
    assert nnx.to_host(a).tolist() == [1.0, 2.0] and nnx.to_host(b).tolist() == [2.0, 3.0]


@pytest.mark.parametrize("name", sorted(CASES))
def test_optimizers_store_their_updates_on_immutable_arrays(frozen: str, name: str) -> None:
    make, _ = CASES[name]
    expected = _run(make(_params("numpy")), 4)
    got = _run(make(_params(frozen)), 4)
    for g, e in zip(got, expected):
        assert np.array_equal(g, e), name


def test_clip_grad_norm_stores_its_result_on_immutable_arrays(frozen: str) -> None:
    for backend in ("numpy", frozen):
        params = _params(backend)
        _set_grads(params)
        clip_grad_norm(params, max_norm=0.5)
        total = math.sqrt(sum(float((nnx.to_host(p.grad) ** 2).sum()) for p in params))
        assert total == pytest.approx(0.5, rel=1e-5), backend


def test_a_network_trains_identically_on_immutable_arrays(frozen: str) -> None:
    def train(backend: str) -> list[np.ndarray]:
        model = nnx.Sequential(nnx.Linear(4, 6, seed=0, dtype="float64", backend=backend),
                               nnx.BatchNorm1d(6, dtype="float64", backend=backend), nnx.Tanh(),
                               nnx.Linear(6, 2, seed=1, dtype="float64", backend=backend))
        opt = Adam(model.parameters(), lr=0.01)
        rng = np.random.default_rng(2)
        x = nnx.to_device(rng.normal(size=(8, 4)), backend, dtype="float64")
        y = nnx.to_device(rng.normal(size=(8, 2)), backend, dtype="float64")
        for _ in range(3):
            nnx.train_step(model, nnx.MSE(), opt, x, y)
        return [nnx.to_host(v) for v in model.state_dict().values()]

    for got, expected in zip(train(frozen), train("numpy")):
        assert np.array_equal(got, expected)


def test_loaded_settings_are_checked_like_constructor_arguments() -> None:
    params = _params("numpy")
    good = Adam(params, lr=0.01).state_dict()
    (group,) = good["groups"]
    for change, message in (({"lr": -1.0}, "learning rate must be > 0"), ({"lr": float("nan")}, "learning rate"),
                            ({"betas": [0.9, 1.0]}, r"betas\[1\]"),
                            ({"betas": None, "momentum": 0.9}, "this optimizer has"),
                            ({"params": [1, 0]}, "parameter groups hold")):
        opt = Adam(params, lr=0.01)
        with pytest.raises(nnx.errors.StateError, match=message):
            opt.load_state_dict({**good, "groups": [{k: v for k, v in {**group, **change}.items() if v is not None}]})
        assert opt.lr == 0.01  # nothing changed
    with pytest.raises(nnx.errors.StateError, match="non-negative ints"):
        Adam(params, lr=0.01).load_state_dict({**good, "steps": [-1, 0]})


def test_a_model_file_config_with_unknown_keys_is_refused_before_the_constructor_runs() -> None:
    with pytest.raises(TypeError, match=r"Linear takes no argument\(s\) \['activation'\]"):
        nnx.Linear.from_config({"in_features": 2, "out_features": 2, "activation": "exec"}, {})


# parameter groups -----------------------------------------------------------------------


def _groups(ps: list[nnx.Parameter]) -> AdamW:
    return AdamW([{"params": ps[:1], "weight_decay": 0.5}, {"params": ps[1:], "lr": 0.03, "betas": (0.8, 0.99),
                                                            "weight_decay": 0.0}], lr=0.01)


def test_each_group_steps_as_an_optimizer_of_its_own(nnx_backend: str) -> None:
    ps = _params(nnx_backend)
    apart = [AdamW(ps[:1], lr=0.01, weight_decay=0.5), AdamW(ps[1:], lr=0.03, betas=(0.8, 0.99), weight_decay=0.0)]
    together = _groups(_params(nnx_backend))
    assert together.param_groups[1]["eps"] == 1e-8  # unset values are the defaults
    got = _run(together, 4)
    for _ in range(4):
        _set_grads(ps)
        for opt in apart:
            opt.step()
    for g, p in zip(got, ps):
        np.testing.assert_array_equal(g, nnx.to_host(p.data))


def test_add_param_group_and_its_errors() -> None:
    ps = _params("numpy")
    opt = SGD(ps[:1], lr=0.1)
    opt.add_param_group({"params": ps[1:], "momentum": 0.9})
    assert [g["momentum"] for g in opt.param_groups] == [0.0, 0.9] and opt.params == ps
    with pytest.raises(nnx.errors.ConfigError, match="twice"):
        opt.add_param_group({"params": ps[:1]})
    with pytest.raises(nnx.errors.ConfigError, match=r"Parameter\(p0.*twice"):
        SGD([ps[0], ps[1], ps[0]], lr=0.1)
    with pytest.raises(nnx.errors.ConfigError, match=r"sets \['betas'\]"):
        SGD([{"params": ps, "betas": (0.9, 0.9)}], lr=0.1)
    with pytest.raises(ValueError, match="momentum must be >= 0"):
        SGD([{"params": ps, "momentum": -1.0}], lr=0.1)
    with pytest.raises(TypeError, match="not a mix"):
        SGD([ps[0], {"params": ps[1:]}], lr=0.1)


def test_a_tied_parameter_is_listed_once_and_stepped_once() -> None:
    emb = nnx.Embedding(5, 3, seed=0, dtype="float64")
    head = nnx.Linear(3, 5, bias=False, weight=emb.weight, dtype="float64")
    model = nnx.Sequential(emb, head)
    assert model.parameters() == [emb.weight]
    with pytest.raises(nnx.errors.ConfigError, match="twice"):
        SGD([emb.weight, head.weight], lr=0.1)


def test_schedules_move_every_group_from_its_own_start_or_the_chosen_one() -> None:
    opt = _groups(_params("numpy"))
    sched = ExponentialLR(opt, gamma=0.5)
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == [0.005, 0.015]
    opt = _groups(_params("numpy"))
    sched = CosineWithWarmup(opt, 0, 10, group=1)
    sched.step()
    assert opt.param_groups[0]["lr"] == 0.01 and opt.param_groups[1]["lr"] == sched.lr_at(1, 0.03) < 0.03
    with pytest.raises(ValueError, match="group must be one of"):
        StepLR(opt, 2, group=2)


def test_groups_and_schedule_resume_bit_for_bit_from_a_checkpoint(tmp_path) -> None:
    def setup():
        model = nnx.Sequential(nnx.Linear(3, 4, seed=0), nnx.Tanh(), nnx.LayerNorm(4), nnx.Linear(4, 2, seed=1))
        opt = AdamW(nnx.optim.decay_groups(model, 0.1), lr=0.01)
        return model, opt, CosineWithWarmup(opt, 2, 8)

    rng = np.random.default_rng(0)
    batches = [(rng.normal(size=(4, 3)).astype("float32"), rng.normal(size=(4, 2)).astype("float32"))
               for _ in range(6)]

    def train(model, opt, sched, part):
        for x, y in part:
            nnx.train_step(model, nnx.MSE(), opt, x, y)
            sched.step()

    straight = setup()
    train(*straight, batches)
    first = setup()
    train(*first, batches[:3])
    nnx.save_checkpoint(tmp_path / "c.nnx", first[0], first[1], schedule=first[2])
    second = setup()
    nnx.load_checkpoint(tmp_path / "c.nnx").restore(*second)
    assert second[1].state_dict()["groups"] == first[1].state_dict()["groups"]
    train(*second, batches[3:])
    for a, b in zip(straight[0].parameters(), second[0].parameters()):
        np.testing.assert_array_equal(a.data, b.data)


def test_fit_resumes_a_run_with_groups(tmp_path) -> None:
    def run(epochs: int, resume: bool) -> nnx.Sequential:
        model = nnx.Sequential(nnx.Linear(3, 4, seed=0), nnx.Tanh(), nnx.Linear(4, 2, seed=1))
        opt = AdamW(nnx.optim.decay_groups(model, 0.1), lr=0.01)
        rng = np.random.default_rng(0)
        x, y = rng.normal(size=(32, 3)).astype("float32"), rng.normal(size=(32, 2)).astype("float32")
        nnx.fit(model, nnx.MSE(), opt, (x, y), epochs=epochs, batch_size=8, seed=1, progress=False,
                checkpoint=tmp_path / ("a" if resume else "b"), resume=resume)
        return model

    run(2, True)
    resumed, straight = run(4, True), run(4, False)
    for a, b in zip(straight.parameters(), resumed.parameters()):
        np.testing.assert_array_equal(a.data, b.data)


def test_decay_groups_split_matrices_from_biases_norms_and_embeddings() -> None:
    emb = nnx.Embedding(7, 4, seed=0)
    model = nnx.Sequential(emb, nnx.LayerNorm(4), nnx.Linear(4, 3, seed=1), nnx.Linear(3, 7, seed=2))
    decay, rest = nnx.optim.decay_groups(model, 0.1)
    assert decay == {"params": [model[2].weight, model[3].weight], "weight_decay": 0.1}
    assert rest["weight_decay"] == 0.0
    assert rest["params"] == [emb.weight, model[1].weight, model[1].bias, model[2].bias, model[3].bias]
    tied = nnx.Sequential(emb, nnx.Linear(4, 7, bias=False, weight=emb.weight))
    assert nnx.optim.decay_groups(tied, 0.1) == [{"params": [emb.weight], "weight_decay": 0.1}]
