"""Checkpoints: what they hold, atomic replacement, and exact resume after SIGKILL."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nnx
from resume_train import build

WORKER = Path(__file__).with_name("resume_train.py")


def _setup(nnx_backend: str) -> tuple[nnx.Sequential, nnx.Adam, Any, np.random.Generator, Any, Any]:
    model, opt, schedule = build(nnx_backend)
    data = np.random.default_rng(1)
    x = nnx.to_device(data.normal(size=(16, 4)), nnx_backend, dtype="float64")
    y = nnx.to_device(data.normal(size=(16, 2)), nnx_backend, dtype="float64")
    return model, opt, schedule, nnx.random.make_rng(3), x, y


def _steps(model: nnx.Layer, opt: nnx.Adam, schedule: Any, rng: np.random.Generator,
           x: Any, y: Any, n: int) -> list[float]:
    xp = nnx.backend.namespace_of(x)
    out = []
    for _ in range(n):
        idx = nnx.to_device(rng.permutation(16)[:4], nnx.backend.backend_of(x), dtype="int64")
        value, _ = nnx.train_step(model, nnx.MSE(), opt, xp.take(x, idx, axis=0), xp.take(y, idx, axis=0))
        schedule.step()
        out.append(float(value))
    return out


def _params(model: nnx.Layer) -> list[np.ndarray]:
    return [nnx.to_host(p.data) for p in model.parameters()]


def test_restore_continues_exactly_in_process(nnx_backend: str, tmp_path: Path) -> None:
    model, opt, schedule, rng, x, y = _setup(nnx_backend)
    history = _steps(model, opt, schedule, rng, x, y, 5)
    path = nnx.save_checkpoint(tmp_path / "ck.nnx", model, opt, schedule=schedule, rng=rng,
                               epoch=2, step=5, history={"loss": history}, extra={"note": "mid-run"})
    saved_lr = opt.lr
    expected = _steps(model, opt, schedule, rng, x, y, 5)

    model2, opt2, schedule2, rng2, _, _ = _setup(nnx_backend)
    ck = nnx.load_checkpoint(path)
    assert (ck.epoch, ck.step, ck.history, ck.extra) == (2, 5, {"loss": history}, {"note": "mid-run"})
    ck.restore(model2, opt2, schedule2, rng2)
    assert schedule2.position == 5 and opt2.lr == saved_lr != 0.01
    assert _steps(model2, opt2, schedule2, rng2, x, y, 5) == expected
    for a, b in zip(_params(model), _params(model2)):
        assert np.array_equal(a, b)


def test_checkpoint_model_loads_like_a_model_file(nnx_backend: str, tmp_path: Path) -> None:
    model, opt, schedule, rng, x, _ = _setup(nnx_backend)
    path = nnx.save_checkpoint(tmp_path / "ck.nnx", model, opt, schedule=schedule, rng=rng)
    model.eval()
    for fresh in (nnx.load(path), nnx.load_checkpoint(path).build_model()):
        assert np.array_equal(nnx.to_host(fresh.eval().forward(x)), nnx.to_host(model.forward(x)))


@pytest.mark.parametrize("make", [lambda: np.random.default_rng(11), lambda: nnx.random.legacy(11),
                                  lambda: np.random.Generator(np.random.MT19937(11)),
                                  lambda: np.random.Generator(np.random.Philox(11))])
def test_every_host_generator_state_round_trips(make: Any, tmp_path: Path) -> None:
    rng = make()
    rng.normal(size=3)  # a RandomState keeps a cached Gaussian; it must survive too
    path = nnx.save_checkpoint(tmp_path / "ck.nnx", nnx.Linear(2, 1, seed=0), rng=rng)
    expected = rng.normal(size=5)
    other = make()
    nnx.load_checkpoint(path).restore(rng=other)
    assert np.array_equal(other.normal(size=5), expected)


def test_rng_state_is_json(tmp_path: Path) -> None:
    path = nnx.save_checkpoint(tmp_path / "ck.nnx", nnx.Linear(2, 1, seed=0), rng=np.random.default_rng(4))
    description = nnx.io.read_tensors(path).description
    state = description["checkpoint"]["rng"]
    assert state == json.loads(json.dumps(nnx.random.get_state(np.random.default_rng(4))))
    assert state["state"]["bit_generator"] == "PCG64"


def test_default_generator_is_saved_and_restored(tmp_path: Path) -> None:
    nnx.random.seed(8)
    path = nnx.save_checkpoint(tmp_path / "ck.nnx", nnx.Linear(2, 1, seed=0))
    expected = nnx.random.default().random(3)
    nnx.random.seed(99)
    nnx.load_checkpoint(path).restore()
    assert np.array_equal(nnx.random.default().random(3), expected)


def test_restore_refuses_what_does_not_fit(tmp_path: Path) -> None:
    model, opt, schedule, rng, _, _ = _setup("numpy")
    path = nnx.save_checkpoint(tmp_path / "ck.nnx", model, opt, rng=rng)
    ck = nnx.load_checkpoint(path)
    other, _, _ = build()
    other.layers[2] = nnx.Tanh()
    with pytest.raises(nnx.errors.TensorMismatchError, match="architecture"):
        ck.restore(other)
    with pytest.raises(nnx.errors.ModelFileError, match="no learning-rate schedule state"):
        ck.restore(schedule=schedule)
    with pytest.raises(nnx.errors.ModelFileError, match="is a Adam, not a SGD"):
        ck.restore(optimizer=nnx.SGD(model.parameters(), lr=0.1))
    with pytest.raises(nnx.errors.ModelFileError, match="random state is for a 'Generator'"):
        ck.restore(rng=nnx.random.legacy(0))


def test_unsaveable_states_are_refused_before_writing(tmp_path: Path) -> None:
    model = nnx.Linear(2, 1, seed=0)
    with pytest.raises(TypeError, match="has no state_dict"):
        nnx.save_checkpoint(tmp_path / "ck.nnx", model, object())
    with pytest.raises(TypeError, match="neither JSON nor an array"):
        nnx.save_checkpoint(tmp_path / "ck.nnx", model, history=[object()])
    assert not os.listdir(tmp_path)


_DIE_DURING_SAVE = textwrap.dedent("""
    import os, signal, sys
    import nnx
    path = sys.argv[1]
    model = nnx.Linear(2, 1, seed=0, dtype="float64")
    nnx.save_checkpoint(path, model, step=5)
    model.weight.data += 1
    def power_cut(src, dst):
        os.kill(os.getpid(), signal.SIGKILL)
    os.replace = power_cut
    nnx.save_checkpoint(path, model, step=10)
""")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_death_during_a_save_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "ck.nnx"
    proc = subprocess.run([sys.executable, "-c", _DIE_DURING_SAVE, str(path)], capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    leftovers = [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    assert len(leftovers) == 1  # the new content was fully written, but never renamed over
    ck = nnx.load_checkpoint(path)
    assert ck.step == 5
    assert np.array_equal(nnx.to_host(ck.build_model().weight.data),
                          nnx.to_host(nnx.Linear(2, 1, seed=0, dtype="float64").weight.data))
    nnx.save_checkpoint(path, ck.build_model(), step=6)  # the dead writer's temporary is cleaned up
    assert os.listdir(tmp_path) == ["ck.nnx"]


def _run(directory: Path, env: dict[str, str], *extra: str) -> None:
    subprocess.run([sys.executable, str(WORKER), str(directory), *extra], env=env, check=True,
                   stdout=subprocess.DEVNULL, timeout=120)


def _kill_at(directory: Path, env: dict[str, str], step: int, *extra: str) -> None:
    """Run the worker and SIGKILL it as soon as it reports ``step``."""
    proc = subprocess.Popen([sys.executable, str(WORKER), str(directory), *extra],
                            env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == f"step {step}":
            proc.send_signal(signal.SIGKILL)
            break
    proc.stdout.close()
    assert proc.wait(timeout=120) == -signal.SIGKILL, "the worker finished before it was killed"


# mode: worker arguments, the steps (or epochs) it runs, the range of steps to kill it at
_MODES = {
    "loop": (["--delay", "0.002"], 300, range(10, 280)),
    "fit": (["--fit", "--steps", "40", "--delay", "0.01"], 40, range(2, 34)),
}


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
@pytest.mark.nnx_backends("numpy", "array_api_strict")  # bit for bit is the CPU promise
@pytest.mark.parametrize("mode", list(_MODES))
def test_run_killed_at_random_steps_resumes_bit_for_bit(nnx_backend: str, mode: str, tmp_path: Path) -> None:
    """Kill the training twice at random steps, resume each time: same parameters and history.

    ``loop`` is a hand-written loop with ``save_checkpoint`` every 7 steps;
    ``fit`` is ``nnx.fit(checkpoint=DIR, resume=True)``, which checkpoints
    after every epoch. Both use Adam, an exponential schedule, batch norm,
    seeded dropout and random batches; ``fit`` also early stopping's best weights.
    """
    args, total, kill_range = _MODES[mode]
    env = dict(os.environ, NNX_BACKEND=nnx_backend, PYTHONPATH=os.pathsep.join(sys.path))
    _run(tmp_path / "whole", env, *args)

    first, second = sorted(random.sample(kill_range, 2))
    interrupted = tmp_path / "interrupted"
    _kill_at(interrupted, env, first, *args)
    assert not (interrupted / "final.nnx").exists()
    saved = nnx.load_checkpoint(interrupted / "checkpoint.nnx")
    reached = saved.epoch if mode == "fit" else saved.step
    assert 0 < reached < total, (first, reached)
    _kill_at(interrupted, env, second, *args, "--resume")
    _run(interrupted, env, *args, "--resume")

    whole = nnx.io.read_tensors(tmp_path / "whole" / "final.nnx").tensors
    resumed = nnx.io.read_tensors(interrupted / "final.nnx").tensors
    assert set(whole) == set(resumed)
    for name in whole:
        assert np.array_equal(whole[name], resumed[name]), f"{name} differs after kills at {first}, {second}"
    history = json.loads((interrupted / "history.json").read_text())
    assert history == json.loads((tmp_path / "whole" / "history.json").read_text())
    assert len(history if mode == "loop" else history["loss"]) == total


class _Noise(nnx.Layer):
    """A test layer with its own seeded generator (the attribute ``rng``), as seeded dropout has."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.rng = nnx.random.legacy(seed)

    def forward(self, x: Any) -> Any:
        return x + nnx.to_device(self.rng.random(tuple(x.shape)), nnx.backend.backend_of(x), dtype="float64")


def test_layers_own_generators_are_restored(tmp_path: Path) -> None:
    nnx.register_layer(_Noise, "test_checkpoint.Noise")
    try:
        def make() -> nnx.Sequential:
            return nnx.Sequential(nnx.Linear(2, 2, seed=0, dtype="float64"), nnx.Sequential(_Noise(5)))

        model = make()
        x = nnx.to_device(np.ones((1, 2)), dtype="float64")
        model.forward(x)
        model.drop_saved()  # a forward for its draws alone: no backward comes
        path = nnx.save_checkpoint(tmp_path / "ck.nnx", model)
        expected = nnx.to_host(model.forward(x))
        other = make()
        nnx.load_checkpoint(path).restore(other)
        assert np.array_equal(nnx.to_host(other.forward(x)), expected)
    finally:
        del nnx.layers.registry._LAYERS["test_checkpoint.Noise"]


def _docs_block(heading: str) -> str:
    text = (Path(__file__).parents[1] / "docs" / "save-load.md").read_text()
    after = text[text.index(heading):]
    start = after.index("```python\n") + len("```python\n")
    return after[start:after.index("```\n", start)]


def test_the_documented_resume_example_runs_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code = _docs_block("## In your own training loop")
    exec(compile(code, "docs/save-load.md", "exec"), {})
    final = (tmp_path / "runs/xor/final.nnx").read_bytes()
    assert nnx.load_checkpoint(tmp_path / "runs/xor/checkpoint.nnx").step == 1000
    interrupted = code.replace("while step < 1000:", "while step < 450:")
    (tmp_path / "runs/xor/checkpoint.nnx").unlink()
    exec(compile(interrupted, "docs/save-load.md", "exec"), {})  # stops at 450; its last checkpoint is step 400
    exec(compile(code, "docs/save-load.md", "exec"), {})  # resumes at 400
    assert (tmp_path / "runs/xor/final.nnx").read_bytes() == final
