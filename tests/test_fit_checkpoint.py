"""``nnx.fit(checkpoint=DIR, resume=True)`` and ``nnx train --checkpoint DIR --resume``."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nnx
from nnx import cli


def _problem(nnx_backend: str) -> tuple[nnx.Sequential, nnx.Adam, list[Any], tuple[Any, Any]]:
    model = nnx.Sequential(nnx.Linear(3, 8, seed=0, dtype="float64", backend=nnx_backend), nnx.Tanh(),
                           nnx.Dropout(0.1, seed=2), nnx.Linear(8, 2, seed=1, dtype="float64", backend=nnx_backend))
    opt = nnx.Adam(model.parameters(), lr=0.01)
    callbacks = [nnx.LRScheduler(nnx.schedules.StepLR(opt, step_size=3, gamma=0.5))]
    data = np.random.default_rng(0)
    return model, opt, callbacks, (data.normal(size=(40, 3)), data.normal(size=(40, 2)))


def _fit(nnx_backend: str, epochs: int, directory: Path | None, resume: bool) -> tuple[nnx.Sequential, nnx.History]:
    model, opt, callbacks, data = _problem(nnx_backend)
    history = nnx.fit(model, nnx.MSE(), opt, data, epochs=epochs, batch_size=8, seed=5, callbacks=callbacks,
                      progress=False, checkpoint=directory, resume=resume)
    return model, history


def _same(a: Any, b: Any, nnx_backend: str) -> bool:
    """Bit for bit on the CPU backends; within 1e-9 elsewhere (GPU reductions may reorder)."""
    a, b = nnx.to_host(a), nnx.to_host(b)
    return np.array_equal(a, b) if nnx_backend in ("numpy", "array_api_strict") else np.allclose(a, b, rtol=1e-9, atol=0)


def test_fit_stopped_and_resumed_equals_one_run(nnx_backend: str, tmp_path: Path) -> None:
    whole, whole_history = _fit(nnx_backend, 7, None, False)
    _fit(nnx_backend, 3, tmp_path, resume=True)  # no checkpoint yet: starts afresh, stops after epoch 3
    assert nnx.load_checkpoint(tmp_path / "checkpoint.nnx").epoch == 3
    resumed, history = _fit(nnx_backend, 7, tmp_path, resume=True)
    for a, b in zip(whole.parameters(), resumed.parameters()):
        assert _same(a.data, b.data, nnx_backend)
    assert _same(np.array(history["loss"]), np.array(whole_history["loss"]), nnx_backend)
    assert history["lr"] == whole_history["lr"]
    assert history.epochs == 7
    again, history = _fit(nnx_backend, 7, tmp_path, resume=True)  # already done: nothing more to train
    assert history.epochs == 7
    for a, b in zip(resumed.parameters(), again.parameters()):
        assert np.array_equal(nnx.to_host(a.data), nnx.to_host(b.data))


def test_fit_without_resume_starts_afresh_and_overwrites(tmp_path: Path) -> None:
    _fit("numpy", 4, tmp_path, resume=False)
    _fit("numpy", 2, tmp_path, resume=False)
    assert nnx.load_checkpoint(tmp_path / "checkpoint.nnx").epoch == 2


def test_fit_resume_errors(tmp_path: Path) -> None:
    model, opt, callbacks, data = _problem("numpy")
    with pytest.raises(ValueError, match="resume=True needs checkpoint=DIR"):
        nnx.fit(model, nnx.MSE(), opt, data, epochs=1, progress=False, resume=True)
    _fit("numpy", 1, tmp_path, resume=False)
    with pytest.raises(nnx.errors.ModelFileError, match="the saved run had 1 callbacks, this one has 0"):
        nnx.fit(model, nnx.MSE(), opt, data, epochs=2, progress=False, checkpoint=tmp_path, resume=True)
    (tmp_path / "checkpoint.nnx").write_bytes(pickle.dumps({"weights": [1, 2]}, protocol=4))
    with pytest.raises(nnx.errors.NotAModelFileError, match="is a Python pickle"):
        nnx.fit(model, nnx.MSE(), opt, data, epochs=2, progress=False, checkpoint=tmp_path, resume=True)


def test_early_stopping_best_weights_survive_a_resume(tmp_path: Path) -> None:
    def run(epochs: int, directory: Path | None) -> nnx.Sequential:
        model, opt, _, data = _problem("numpy")
        stop = nnx.EarlyStopping(monitor="loss", patience=100, restore_best=True)
        nnx.fit(model, nnx.MSE(), opt, data, epochs=epochs, batch_size=8, seed=5, callbacks=[stop],
                progress=False, checkpoint=directory, resume=directory is not None)
        return model

    whole = run(6, None)
    run(5, tmp_path)
    resumed = run(6, tmp_path)
    for a, b in zip(whole.parameters(), resumed.parameters()):
        assert np.array_equal(nnx.to_host(a.data), nnx.to_host(b.data))


_TRAIN = ["train", "digits", "--limit", "300", "--hidden", "12", "--quiet", "--seed", "3"]


def test_cli_train_resume_equals_one_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ck = tmp_path / "run"
    assert cli.main([*_TRAIN, "--epochs", "2", "--checkpoint", str(ck)]) == 0
    assert cli.main([*_TRAIN, "--epochs", "4", "--checkpoint", str(ck), "--resume",
                     "--save", str(tmp_path / "resumed.nnx")]) == 0
    assert f"resuming from {ck / 'checkpoint.nnx'} after epoch 2" in capsys.readouterr().out
    assert cli.main([*_TRAIN, "--epochs", "4", "--save", str(tmp_path / "whole.nnx")]) == 0
    assert (tmp_path / "resumed.nnx").read_bytes() == (tmp_path / "whole.nnx").read_bytes()


def test_cli_resume_needs_a_checkpoint_dir(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*_TRAIN, "--resume"])
    assert exit_info.value.code == 2
    assert "--resume needs --checkpoint DIR" in capsys.readouterr().err


def test_cli_resume_from_a_hostile_checkpoint_exits_1_naming_it(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "checkpoint.nnx").write_bytes(b"\x00" * 7)
    assert cli.main([*_TRAIN, "--epochs", "1", "--checkpoint", str(tmp_path), "--resume"]) == 1
    err = capsys.readouterr().err
    assert f"nnx: error: {tmp_path / 'checkpoint.nnx'}: is truncated" in err
    assert "Traceback" not in err


def test_resume_refuses_changed_settings_and_allows_them_when_asked(tmp_path: Path) -> None:
    _fit("numpy", 2, tmp_path, resume=False)
    model, opt, callbacks, data = _problem("numpy")
    opt.lr = 0.05
    with pytest.raises(nnx.errors.ConfigError, match=r"lr: 0\.01 -> 0\.05; seed: 5 -> 6"):
        nnx.fit(model, nnx.MSE(), opt, data, epochs=3, batch_size=8, seed=6, callbacks=callbacks,
                progress=False, checkpoint=tmp_path, resume=True)
    with pytest.raises(nnx.errors.ConfigError, match=r"batch_size: 8 -> 4"):
        nnx.fit(model, nnx.MSE(), opt, data, epochs=3, batch_size=4, seed=5, callbacks=callbacks,
                progress=False, checkpoint=tmp_path, resume=True)
    with pytest.raises(nnx.errors.ConfigError, match=r"run_config: None -> \{'split': 1\}"):
        nnx.fit(model, nnx.MSE(), opt, data, epochs=3, batch_size=8, seed=5, callbacks=callbacks,
                progress=False, checkpoint=tmp_path, resume=True, run_config={"split": 1})
    assert nnx.load_checkpoint(tmp_path / "checkpoint.nnx").epoch == 2  # nothing trained, nothing written


def _resumable(tmp_path: Path, lr: float) -> tuple[Any, ...]:
    """A fresh problem whose optimizer runs at ``lr``."""
    model, opt, callbacks, data = _problem("numpy")
    opt.lr = lr
    return model, nnx.MSE(), opt, data, callbacks


def test_allowed_changes_train_with_the_new_learning_rate(tmp_path: Path) -> None:
    model, loss, opt, data, _ = _resumable(tmp_path, lr=0.01)
    nnx.fit(model, loss, opt, data, epochs=2, batch_size=8, seed=5, progress=False, checkpoint=tmp_path)
    model, loss, opt, data, _ = _resumable(tmp_path, lr=0.05)
    with pytest.warns(UserWarning, match=r"changed settings: lr: 0\.01 -> 0\.05"):
        nnx.fit(model, loss, opt, data, epochs=3, batch_size=8, seed=5, progress=False,
                checkpoint=tmp_path, resume=True, allow_changes=True)
    steps = nnx.load_checkpoint(tmp_path / "checkpoint.nnx").state["optimizer"]["state"]
    assert steps["groups"][0]["lr"] == 0.05 and steps["steps"][0] == 15
    with pytest.raises(nnx.errors.ConfigError, match="run_config must be JSON data"):
        nnx.fit(model, loss, opt, data, epochs=2, progress=False, run_config={"x": object()})


def test_forged_early_stopping_weights_are_refused(tmp_path: Path) -> None:
    def run(epochs: int) -> None:
        model, opt, _, data = _problem("numpy")
        stop = nnx.EarlyStopping(monitor="loss", patience=100, restore_best=True)
        nnx.fit(model, nnx.MSE(), opt, data, epochs=epochs, batch_size=8, seed=5, callbacks=[stop],
                progress=False, checkpoint=tmp_path, resume=True)

    run(1)
    path = tmp_path / "checkpoint.nnx"
    ck = nnx.load_checkpoint(path)
    for forged, phrase in (([np.zeros((2, 2))] * 4, "saved best parameter 0 is float64 (2, 2)"),
                           ([np.zeros(3)], "saved best parameters are 1 arrays, the model has 4"),
                           ("weights", "not a list")):
        extra = {**ck.extra, "callbacks": [{**ck.extra["callbacks"][0], "best_params": forged}]}
        state = {**ck.state, "extra": extra}
        state["layer_rngs"] = {("model" if k == "" else k): v for k, v in state["layer_rngs"].items()}
        nnx.checkpoint.write_run(path, ck.build_model(), state)
        with pytest.raises(nnx.errors.ModelFileError, match=re.escape(phrase)):
            run(2)
