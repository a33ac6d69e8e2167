"""Data-parallel training: shards, buckets, and 2-rank runs launched with ``mpiexec -n 2``.

The multi-rank tests run ``tests/distributed_train.py`` under the ``mpiexec`` of
the MPI wheel (next to the Python running the tests, else on PATH), each rank
with one BLAS thread.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nnx
import nnx.cli
from nnx.distributed import buckets, shards, world
from nnx.errors import DistributedError

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "distributed_train.py"


def _mpiexec() -> str | None:
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.is_file() else shutil.which("mpiexec")


MPIEXEC = _mpiexec()
_MISSING = ("mpi4py is not installed (pip install '.[distributed]' in nnx's clone)"
            if importlib.util.find_spec("mpi4py") is None else
            "no mpiexec next to this Python or on PATH (pip install mpich)" if MPIEXEC is None else None)
needs_mpi = pytest.mark.skipif(_MISSING is not None, reason=_MISSING or "")


def _env() -> dict[str, str]:
    one = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    return {**os.environ, **one, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}


def _command(ranks: int, *args: Any) -> list[str]:
    assert MPIEXEC is not None
    return [MPIEXEC, "-n", str(ranks), sys.executable, str(SCRIPT), *map(str, args)]


def _launch(ranks: int, *args: Any, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_command(ranks, *args), env=_env(), capture_output=True, text=True, timeout=timeout)


def _single(out: Path, *args: Any) -> None:
    subprocess.run([sys.executable, str(SCRIPT), str(out), "--single", *map(str, args)], env=_env(),
                   check=True, capture_output=True, text=True, timeout=60)


def _params(out: Path) -> dict[str, np.ndarray]:
    with np.load(out / "params.npz") as f:
        return {k: f[k] for k in f.files}


def _max_rel(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """The largest difference, relative to the tensor's largest magnitude, over every tensor."""
    assert a.keys() == b.keys()
    return max(float(np.max(np.abs(a[k] - b[k])) / np.max(np.abs(a[k]))) for k in a)


# shards and buckets (no MPI) ---------------------------------------------------------------


@pytest.mark.parametrize("n,size,batch", [(69, 2, 8), (64, 2, 8), (17, 3, 4), (5, 4, 3), (1, 2, 1), (50, 3, 50)])
def test_shards_take_every_sample_once_and_weights_add_to_one(n: int, size: int, batch: int) -> None:
    step = size * batch
    taken: list[int] = []
    for lo in range(0, n, step):
        hi = min(lo + step, n)
        parts = [shards.part(lo, hi, r, size) for r in range(size)]
        for a, z in parts:
            taken.extend(range(a, z))
        lengths = [z - a for a, z in parts]
        assert max(lengths) - min(lengths) <= 1
        if hi - lo == step:
            assert lengths == [batch] * size
        assert sum(shards.weight(lo, hi, r, size, adds=False) for r in range(size)) == pytest.approx(1.0)
        assert [shards.weight(lo, hi, r, size, adds=True) for r in range(size)] == [1.0] * size
    assert taken == list(range(n))


def test_loss_reduction_decides_the_weights() -> None:
    assert not shards.loss_adds(nnx.SoftmaxCrossEntropy())
    assert shards.loss_adds(nnx.SoftmaxCrossEntropy(reduction="sum"))
    assert shards.loss_adds(nnx.SumSquaredError())
    assert not shards.loss_adds(nnx.MSE())


def test_buckets_group_by_dtype_in_order_within_the_size_cap() -> None:
    layers = [nnx.Linear(10, 10, seed=0, dtype=d) for d in ("float64", "float32", "float64")]
    params = [p for layer in layers for p in layer.parameters()]
    # float64: 100 + 10 values per layer (880 bytes), float32: 440 bytes
    plan = buckets.plan_buckets(params, bucket_bytes=1000)
    assert [len(b) for b in plan] == [2, 2, 2]
    assert [nnx.backend.dtype_name(b[0].data) for b in plan] == ["float64", "float32", "float64"]
    assert [p for b in plan for p in b] == params
    big = buckets.plan_buckets(params, bucket_bytes=10**6)  # the two float64 layers share one bucket
    assert [[id(p) for p in b] for b in big] == [[id(p) for p in params[:2] + params[4:]],
                                                 [id(p) for p in params[2:4]]]
    with pytest.raises(ValueError, match="bucket_bytes"):
        buckets.plan_buckets(params, bucket_bytes=0)


def test_missing_mpi4py_is_a_distributed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(DistributedError, match=r"pip install '\.\[distributed\]'"):
        world.World()
    with pytest.raises(ValueError, match="timeout"):
        world.World(timeout=0)


def test_cli_without_mpi4py_exits_1_with_the_install_line(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    assert nnx.cli.main(["train", "digits", "--distributed", "--epochs", "1", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "nnx: error: distributed training needs mpi4py" in err
    assert "Traceback" not in err


# two ranks ---------------------------------------------------------------------------------


@needs_mpi
@pytest.mark.parametrize("backend", ["numpy", "array_api_strict"])
def test_two_ranks_of_batch_b_equal_one_process_of_batch_2b(tmp_path: Path, backend: str) -> None:
    # 69 samples: four full steps of 16 and a tail of 5, split 2 + 3 and weighted 2/5 and 3/5
    got = _launch(2, tmp_path / "two", "--backend", backend, "--batch-size", 8)
    assert got.returncode == 0, got.stderr
    assert got.stdout.count("epoch 4") == 1  # progress from rank 0 only
    _single(tmp_path / "one", "--backend", backend, "--batch-size", 8, "--world", 2)
    _single(tmp_path / "half", "--backend", backend, "--batch-size", 8, "--world", 1)
    two, one, half = (_params(tmp_path / d) for d in ("two", "one", "half"))
    assert _max_rel(one, two) <= 1e-12
    assert _max_rel(half, two) > 1e-3  # the test can tell batch 8 from batch 16
    h2, h1 = (json.loads((tmp_path / d / "history.json").read_text()) for d in ("two", "one"))
    assert h2.keys() == h1.keys()
    for key in h1:
        np.testing.assert_allclose(h2[key], h1[key], rtol=1e-12)


@needs_mpi
def test_named_inputs_shard_over_two_ranks_as_one_process_batches_them(tmp_path: Path) -> None:
    got = _launch(2, tmp_path / "two", "--named", "--epochs", 2)
    assert got.returncode == 0, got.stderr
    _single(tmp_path / "one", "--named", "--epochs", 2, "--world", 2)
    _single(tmp_path / "plain", "--epochs", 2, "--world", 2)
    two, one, plain = (_params(tmp_path / d) for d in ("two", "one", "plain"))
    assert _max_rel(one, two) <= 1e-12
    assert _max_rel(plain, two) > 1e-3  # the scales reached the model


@needs_mpi
def test_a_rank_that_raises_stops_the_job_with_its_message(tmp_path: Path) -> None:
    got = _launch(2, tmp_path, "--raise-on-rank", 1, "--epochs", 100000, timeout=120)
    ended = time.time()
    assert got.returncode != 0, got.stderr
    assert "nnx: rank 1 of 2 stopped the job" in got.stderr, got.stderr
    raised = re.search(r"a deliberate failure on rank 1 after epoch 2 \(at ([\d.]+)\)", got.stderr)
    assert raised, got.stderr
    elapsed = ended - float(raised.group(1))  # from the raise, so a slow start-up does not count
    assert elapsed < 10, f"the job took {elapsed:.1f} s to stop after the rank raised"
    assert not (tmp_path / "params.npz").exists()


@needs_mpi
def test_a_rank_that_stops_answering_ends_the_job_after_the_timeout(tmp_path: Path) -> None:
    started = time.monotonic()
    got = _launch(2, tmp_path, "--hang-on-rank", 1, "--epochs", 100000, "--timeout", 2, timeout=60)
    elapsed = time.monotonic() - started
    assert got.returncode != 0
    assert "nnx: rank 0 of 2 stopped the job: DistributedError: rank 0 of 2: no answer from the other " \
           "ranks within 2 s" in got.stderr
    assert 2 <= elapsed < 45, f"the job took {elapsed:.1f} s to stop"  # start-up included; a hang is 3600 s


@needs_mpi
def test_ranks_with_different_models_stop_with_a_clear_error(tmp_path: Path) -> None:
    got = _launch(2, tmp_path, "--hidden-on-rank", "1:8")
    assert got.returncode != 0
    assert "DistributedError: the ranks disagree on the model's architecture" in got.stderr
    assert "rank(s) [1] differ from rank 0" in got.stderr
    assert "Traceback" not in got.stderr


@needs_mpi
def test_sigkill_of_the_job_then_resume_gives_the_uninterrupted_result(tmp_path: Path) -> None:
    args = ("--epochs", 6, "--batch-size", 4)
    whole = _launch(2, tmp_path / "whole", *args, "--checkpoint", tmp_path / "ck-whole")
    assert whole.returncode == 0, whole.stderr
    ck = tmp_path / "ck"
    job = subprocess.Popen(_command(2, tmp_path / "cut", *args, "--checkpoint", ck, "--delay", 0.3), env=_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        assert job.stdout is not None
        for line in job.stdout:
            if line.strip() == "epoch 3":
                break
        os.killpg(job.pid, signal.SIGKILL)
    finally:
        job.wait(timeout=30)
    assert job.returncode == -signal.SIGKILL
    assert not (tmp_path / "cut").exists()
    done = nnx.load_checkpoint(nnx.checkpoint.checkpoint_path(ck)).epoch
    assert 2 <= done < 6  # "epoch 3" comes before epoch 3 is saved
    resumed = _launch(2, tmp_path / "cut", *args, "--checkpoint", ck, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.splitlines()[0] == f"epoch {done + 1}"
    a, b = _params(tmp_path / "whole"), _params(tmp_path / "cut")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    h_whole, h_cut = (json.loads((tmp_path / d / "history.json").read_text()) for d in ("whole", "cut"))
    assert h_whole == h_cut


@needs_mpi
def test_cli_trains_digits_on_two_processes(tmp_path: Path) -> None:
    command = [MPIEXEC, "-n", "2", sys.executable, "-m", "nnx", "train", "digits", "--distributed", "--epochs", "2",
               "--quiet", "--save", str(tmp_path / "m.nnx")]
    got = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=60)
    assert got.returncode == 0, got.stderr
    assert got.stdout.count("held-out accuracy") == 1
    assert "batch size 32 per process, 2 processes" in got.stdout
    assert nnx.load(tmp_path / "m.nnx").num_parameters() == 64 * 128 + 128 + 128 * 10 + 10


# NCCL (a CUDA GPU) --------------------------------------------------------------------------


@needs_mpi
def test_nccl_world_of_one_equals_single_process_fit(tmp_path: Path) -> None:
    reason = nnx.available(refresh=True).get("cupy")
    if reason is not None:
        pytest.skip(f"the NCCL path needs cupy on a CUDA GPU: {reason}")
    pytest.importorskip("cupy.cuda.nccl", reason="CuPy without NCCL")
    got = _launch(1, tmp_path / "nccl", "--backend", "cupy", "--batch-size", 16, "--batch-norm")
    assert got.returncode == 0, got.stderr
    _single(tmp_path / "one", "--backend", "cupy", "--batch-size", 16, "--world", 1, "--batch-norm")
    assert _max_rel(_params(tmp_path / "one"), _params(tmp_path / "nccl")) <= 1e-12


class _WorldOfOne:
    """Just what a communicator of a world of one uses (no MPI started)."""

    size = 1
    allreduce_host = world.World.allreduce_host
    device = world.World.device

    def __init__(self) -> None:
        self._devices: dict[str, Any] = {}


def test_the_record_decides_whether_mpi_sums_in_place() -> None:
    import dataclasses

    w = _WorldOfOne()
    flat = np.arange(4.0)
    assert isinstance(w.device("numpy"), world.MpiDevice)
    assert w.device("numpy").allreduce(flat, "a test") is flat  # a writable host buffer: in place
    copied = world.MpiDevice(w, dataclasses.replace(nnx.backend.BACKENDS["numpy"], host_buffer=False))
    out = copied.allreduce(flat, "a test")
    assert out is not flat and np.array_equal(out, flat)
    readonly = np.arange(4.0)
    readonly.flags.writeable = False
    assert w.device("numpy").allreduce(readonly, "a test") is not readonly


def test_every_record_names_a_communicator_and_binding_that_exist() -> None:
    from nnx.backend.registry import load

    for record in nnx.backend.BACKENDS.values():
        assert callable(load(record.communicator)), record.name
        assert record.bind_device is None or callable(load(record.bind_device)), record.name
