"""Training plots: loss and accuracy per epoch, training and validation, as a PNG.

matplotlib is an optional extra (``pip install '.[plot]'`` from nnx's clone); it is
imported only when a plot is drawn, and without pyplot, so drawing never
changes the caller's matplotlib backend or opens a window.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Mapping, Sequence

from nnx.errors import ConfigError, NnxError
from nnx.paths import atomic_write


class PlotUnavailableError(NnxError, ImportError):
    """Drawing a plot needs matplotlib, which is not installed."""


def _history_dict(history: Any) -> Mapping[str, Sequence[float]]:
    return history.to_dict() if hasattr(history, "to_dict") else history


def plot_history(history: Any, path: str | Path, title: str | None = None) -> Path:
    """Write a PNG with the loss (left) and the accuracy (right, when recorded) per epoch.

    ``history`` is what :func:`nnx.fit` returned (or its ``to_dict()``);
    validation curves are drawn dashed next to the training ones. Returns the path.
    """
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise PlotUnavailableError(
            "plotting needs matplotlib, which is not installed; install it with "
            "pip install '.[plot]' in nnx's clone (or pip install matplotlib)"
        ) from None
    h = _history_dict(history)
    if not h.get("loss"):
        raise ConfigError("the history has no 'loss' to plot; pass what nnx.fit returned")
    panels = ["loss"] + (["accuracy"] if "accuracy" in h or "val_accuracy" in h else [])
    fig = Figure(figsize=(5.2 * len(panels), 3.8))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, key in zip(axes[0], panels):
        for name, label, style in ((key, "training", "-"), (f"val_{key}", "validation", "--")):
            values = h.get(name)
            if values:
                epochs = range(1, len(values) + 1)
                ax.plot(epochs, values, style, marker="o", markersize=3, label=label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.set_title(key)
        ax.grid(True, alpha=0.3)
        ax.legend()
        if key == "loss" and min(h["loss"]) > 0:
            ax.set_yscale("log")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, format="png", dpi=110)
    return atomic_write(path, [image.getvalue()])


__all__ = ["PlotUnavailableError", "plot_history"]
