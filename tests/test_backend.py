"""The backend selector, availability reports and explicit moves."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import numpy as np
import pytest

import nnx
from nnx import backend as nb


def test_default_is_numpy_without_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NNX_BACKEND", raising=False)
    assert nnx.current() == "numpy"


@pytest.mark.parametrize("name", ["numpy", "array_api_strict"])
def test_env_var_selects_backend(name: str) -> None:
    code = "import nnx; print(nnx.current())"
    out = subprocess.run(
        [sys.executable, "-c", code], env={**_env(), "NNX_BACKEND": name},
        capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == name


def test_env_var_unknown_name_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NNX_BACKEND", "tensorflow")
    with pytest.raises(nnx.errors.UnknownBackendError, match="numpy, array_api_strict, cupy, torch"):
        nnx.current()


def test_context_manager_restores_previous() -> None:
    before = nnx.current()
    with nnx.use("array_api_strict") as name:
        assert name == "array_api_strict"
        assert nnx.current() == "array_api_strict"
        with nnx.use("numpy"):
            assert nnx.current() == "numpy"
        assert nnx.current() == "array_api_strict"
    assert nnx.current() == before


def test_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(nnx.errors.UnknownBackendError) as info:
        nnx.use("jax-gpu")
    message = str(info.value)
    for name in nb.names():
        assert name in message
    assert isinstance(info.value, ValueError)


def test_available_reports_a_reason_for_each_unavailable_backend() -> None:
    report = nnx.available()
    assert set(report) == {"numpy", "array_api_strict", "cupy", "torch"}
    assert report["numpy"] is None
    for name, reason in report.items():
        assert reason is None or (isinstance(reason, str) and reason)
        if reason is not None:
            with pytest.raises(nnx.errors.BackendUnavailableError, match=name):
                nnx.use(name)


def test_round_trip_is_exact(nnx_backend: str) -> None:
    host = np.random.default_rng(3).standard_normal((5, 7))
    dev = nnx.to_device(host, nnx_backend)
    assert nb.backend_of(dev) == nnx_backend
    back = nnx.to_host(dev)
    assert isinstance(back, np.ndarray)
    np.testing.assert_array_equal(back, host)
    assert back.dtype == np.float64


def test_to_host_is_a_copy(nnx_backend: str) -> None:
    layer = nnx.Linear(2, 2, seed=0, dtype="float64")
    host = nnx.to_host(layer.weight.data)
    host[...] = 7.0
    assert not np.any(nnx.to_host(layer.weight.data) == 7.0)


def test_to_device_casts_when_asked(nnx_backend: str) -> None:
    dev = nnx.to_device([[1, 2], [3, 4]], nnx_backend, dtype="float32")
    assert nnx.to_host(dev).dtype == np.float32


def test_to_device_rejects_unknown_dtype(nnx_backend: str) -> None:
    with pytest.raises(nnx.errors.DTypeError, match="float32"):
        nnx.to_device([1.0], nnx_backend, dtype="float17")


def test_model_to_moves_parameters_explicitly() -> None:
    model = nnx.Sequential(nnx.Linear(3, 2, seed=0), nnx.Tanh(), nnx.Linear(2, 1, seed=1))
    before = [nnx.to_host(p.data) for p in model.parameters()]
    model.to("array_api_strict")
    assert model[0].backend == "array_api_strict"
    after = [nnx.to_host(p.data) for p in model.parameters()]
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    x = nnx.to_device(np.ones((4, 3)), "array_api_strict", dtype="float32")
    assert nb.backend_of(model.forward(x)) == "array_api_strict"


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "NNX_BACKEND"}


THREADS = """
import threading
import nnx

seen = {}

def worker(key):
    seen[key] = (nnx.current(), nnx.backend.backend_of(nnx.Linear(2, 2, seed=0).weight.data))

nnx.use("array_api_strict")                      # the whole process
t = threading.Thread(target=worker, args=("plain",)); t.start(); t.join()
with nnx.use("numpy"):                           # this thread only
    t = threading.Thread(target=worker, args=("block",)); t.start(); t.join()
    seen["inside"] = nnx.current()
seen["after"] = nnx.current()
print(seen)
"""


def test_a_plain_use_reaches_every_thread_and_a_block_stays_local() -> None:
    if nnx.available()["array_api_strict"] is not None:
        pytest.skip("needs array_api_strict")
    result = subprocess.run([sys.executable, "-c", THREADS], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert result.returncode == 0, result.stderr
    seen = ast.literal_eval(result.stdout)
    assert seen["plain"] == ("array_api_strict", "array_api_strict")
    assert seen["block"] == ("array_api_strict", "array_api_strict")  # the block does not leak to other threads
    assert seen["inside"] == "numpy" and seen["after"] == "array_api_strict"


@pytest.mark.parametrize("value", [np.array(1.5), 1.5, np.array(3), 7, np.float32(2.5), True])
def test_0d_arrays_and_scalars_keep_their_shape(nnx_backend: str, value: object) -> None:
    y = nnx.to_device(value, nnx_backend)
    assert tuple(y.shape) == ()
    host = nnx.to_host(y)
    assert host.shape == () and host.item() == np.array(value).item()
    assert tuple(nnx.to_device(value, nnx_backend, dtype="float32").shape) == ()


def test_dtype_objects_and_classes_are_named_readably(nnx_backend: str) -> None:
    x = nnx.to_device([1.0, 2.0], nnx_backend, dtype=np.float32)  # the class, as NumPy users write it
    assert nb.dtype_name(x) == "float32"
    for dtype in (np.float32, np.dtype("float32"), "float32", x.dtype):
        assert nb.dtype_label(dtype) == "float32"
    with pytest.raises(nnx.errors.DTypeError, match=r"unknown dtype 'float17'; use 'float32'"):
        nnx.to_device([1.0], nnx_backend, dtype="float17")


def test_data_that_makes_no_array_is_a_clear_error() -> None:
    with pytest.raises(nnx.errors.DTypeError, match="nnx.to_device"):
        nnx.to_device([[1.0, 2.0], [3.0]])  # ragged
    with pytest.raises(nnx.errors.DTypeError, match="Python objects"):
        nnx.to_device({"a": 1})
