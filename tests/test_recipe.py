"""The nanoGPT recipe as written for PyTorch runs in nnx (benchmarks/nanogpt_recipe.py: tied embedding
and head, torch's initial weights loaded by name, one AdamW with two groups, (B, T, V) logits into the
loss, warm-up and cosine, clipping) and, in float64, follows PyTorch's losses step for step."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "nanogpt_recipe.py"


def test_the_recipe_matches_torch_in_float64() -> None:
    pytest.importorskip("torch")
    result = subprocess.run([sys.executable, str(SCRIPT), "--steps", "6", "--dtype", "float64", "--layers", "2",
                             "--width", "32", "--block", "16", "--batch", "4", "--check", "1e-12"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 steps in float64" in result.stdout
