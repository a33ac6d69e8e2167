"""plot_history: a PNG with the curves, or a clear message when matplotlib is missing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import nnx

HISTORY = nnx.History({"loss": [1.0, 0.5, 0.3], "accuracy": [0.5, 0.8, 0.9],
                       "val_loss": [1.1, 0.6, 0.4], "val_accuracy": [0.4, 0.7, 0.85]})


def test_plot_history_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = nnx.plot_history(HISTORY, tmp_path / "h.png", title="t")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 1.8 * height  # two panels side by side: loss and accuracy


def test_plot_history_without_matplotlib_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(nnx.errors.NnxError, match=r"pip install '\.\[plot\]'"):
        nnx.plot_history(HISTORY, tmp_path / "h.png")


def test_plot_history_needs_a_loss(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    with pytest.raises(ValueError, match="no 'loss'"):
        nnx.plot_history({"accuracy": [0.5]}, tmp_path / "h.png")
