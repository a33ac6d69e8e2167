"""The ``nnx`` command."""

from __future__ import annotations

import subprocess
import sys

import nnx


def run_nnx(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nnx", *args], capture_output=True, text=True)


def test_info_tells_each_backends_state() -> None:
    result = run_nnx("info")
    assert result.returncode == 0, result.stderr
    assert f"nnx {nnx.__version__}" in result.stdout
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith("  ") and line.split()}
    for name, reason in nnx.available().items():
        if reason is None:
            assert lines[name].split()[1] == "available"
        else:
            assert "unavailable" in lines[name]
            assert reason.split(";")[0] in lines[name]


def test_no_command_prints_help_and_fails() -> None:
    result = run_nnx()
    assert result.returncode == 2
    assert "info" in result.stdout


def test_unknown_command_is_a_usage_error() -> None:
    result = run_nnx("fly")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
