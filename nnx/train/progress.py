"""Progress of fit: a tqdm bar (the ``progress`` extra), one line per epoch, or nothing."""

from __future__ import annotations

from typing import Any, Mapping, TextIO


def _short(logs: Mapping[str, float]) -> str:
    """A compact postfix for a progress bar: ``loss 0.1234 acc 0.912 val_loss ...``."""
    parts = []
    for k, v in logs.items():
        if k in ("seconds", "lr"):
            continue
        parts.append(f"{k.replace('accuracy', 'acc')} {v:.4f}")
    return " ".join(parts)


def _format(logs: Mapping[str, float]) -> str:
    parts = []
    for k, v in logs.items():
        if k == "seconds":
            parts.append(f"{v:.2f}s")
        elif k == "lr":
            parts.append(f"lr {v:.3g}")
        else:
            parts.append(f"{k} {v:.4f}")
    return "  ".join(parts)


class Progress:
    """Per-epoch progress: a tqdm bar (the ``progress`` extra), one line per epoch, or nothing."""

    def __init__(self, mode: Any, epochs: int, stream: TextIO) -> None:
        if mode is None or mode == "auto":
            mode = "bar" if _isatty(stream) else "lines"
        elif mode is True:
            mode = "bar"
        elif mode is False:
            mode = "off"
        if mode not in ("bar", "lines", "off"):
            raise ValueError(f"progress must be None, True, False, 'bar', 'lines' or 'off', got {mode!r}")
        if mode == "bar" and not _tqdm_available():
            mode = "lines"  # without the 'progress' extra a bar degrades to one line per epoch
        self.mode, self.epochs, self.stream = mode, epochs, stream
        self._bar: Any = None
        self._desc = ""

    @property
    def wants_step_numbers(self) -> bool:
        return self.mode == "bar"

    def begin_epoch(self, epoch: int, total_steps: int) -> None:
        self._desc = f"epoch {epoch}/{self.epochs}"
        if self.mode == "bar":
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total_steps, desc=self._desc, file=self.stream, leave=True,
                             dynamic_ncols=True, unit="step")

    def step(self, logs: Mapping[str, float]) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(_short(logs), refresh=False)
            self._bar.update(1)

    def end_epoch(self, logs: Mapping[str, float]) -> None:
        if self.mode == "off":
            return
        shown = {k: v for k, v in logs.items() if k != "lr"}
        if self._bar is not None:
            self._bar.set_postfix_str(_short(shown))
            self._bar.close()
            self._bar = None
            return
        self.stream.write(f"{self._desc}  {_format(shown)}\n")
        self.stream.flush()


def _tqdm_available() -> bool:
    try:
        import tqdm.auto  # noqa: F401
    except ImportError:
        return False
    return True


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


__all__ = ["Progress"]
