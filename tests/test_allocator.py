"""The numpy record's host allocator setting: large temporaries reuse freed pages, and it can be turned off."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nnx import ops
from nnx.backend import numpy_ops

ROOT = Path(__file__).resolve().parents[1]

# eight arrays of 1 MiB made and freed ten times: with glibc's defaults the freed top of the heap is
# returned and each new array is paged in again (256 page faults a time); kept memory faults no page
_FAULTS = """
import resource, numpy as np, nnx
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(2):
    kept = [np.ones(2**18, np.float32) for _ in range(8)]
    del kept
start = faults()
for _ in range(10):
    kept = [np.ones(2**18, np.float32) for _ in range(8)]
    del kept
print(faults() - start)
"""


def _glibc() -> bool:
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (ValueError, OSError):
        return False


def _page_faults(allocator: str | None) -> int:
    env = {k: v for k, v in os.environ.items() if k != ops.ALLOCATOR_VAR}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    if allocator is not None:
        env[ops.ALLOCATOR_VAR] = allocator
    out = subprocess.run([sys.executable, "-c", _FAULTS], env=env, capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not _glibc(), reason="the allocator setting is for glibc's malloc; this C library is another")
def test_importing_nnx_keeps_freed_memory_for_the_next_arrays() -> None:
    assert numpy_ops.keep_freed_memory()
    tuned, system = _page_faults(None), _page_faults("system")
    assert system >= 8 * 256  # the pattern does fault with glibc's own settings ...
    assert tuned < system / 20  # ... and hardly at all with nnx's


def test_the_setting_runs_once_per_record_and_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(numpy_ops, "keep_freed_memory", lambda: calls.append(1) or True)
    monkeypatch.setenv(ops.ALLOCATOR_VAR, "system")
    assert not ops.tune_host_allocator("numpy") and not calls
    monkeypatch.delenv(ops.ALLOCATOR_VAR)
    assert ops.tune_host_allocator("numpy") and calls == [1]
    assert not ops.tune_host_allocator("array_api_strict")  # a record without a host allocator
