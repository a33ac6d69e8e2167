"""Host-side comparison of two arrays: how far apart, where, and in units in the last place.

Parity checks move both arrays to the host (NumPy) and judge them here, so
one definition of "agree" holds for every backend pair.

Tolerances are dtype-aware. An element agrees when
``|actual - expected| <= atol + rtol * |expected|``. The default ``rtol`` is
:data:`RTOL` for the dtype (float64 ``1e-12``, float32 ``1e-5``: backends sum
in different orders, see DESIGN.md "Numerics"), and the default ``atol`` is
``rtol`` times the largest magnitude in ``expected`` (or a larger ``scale``
the caller knows, such as that of the arrays ``expected`` was computed from):
an element that is small only because of cancellation is judged against the
scale of its computation, not against itself. Integer and boolean arrays must be equal.
"""

from __future__ import annotations

import math
import sys

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from nnx import backend as _backend
from nnx.arguments import number
from nnx.errors import ParityError

RTOL: dict[str, float] = {"float64": 1e-12, "float32": 1e-5, "float16": 1e-2}


@dataclass(frozen=True)
class Comparison:
    """The verdict on one pair of arrays.

    ``max_abs`` and ``max_rel`` are the largest absolute and relative
    (``|a-b| / |b|``) errors over all elements; ``index`` is the element
    furthest out of tolerance (or the worst one when all agree), with its
    ``actual`` and ``expected`` values and its distance in ``ulps`` (units in
    the last place of ``expected``'s dtype); ``score`` is the largest error as
    a fraction of its tolerance (above 1 fails); ``mismatched`` counts the
    elements out of tolerance; ``reason`` explains a failure that is not about
    values (shape, dtype, NaN).
    """

    ok: bool
    shape: tuple[int, ...]
    dtype: str
    rtol: float
    atol: float
    max_abs: float
    max_rel: float
    score: float
    mismatched: int
    index: tuple[int, ...] | None = None
    actual: float | None = None
    expected: float | None = None
    ulps: float | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (infinities become strings)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, float) and not np.isfinite(value):
                out[key] = str(value)
            elif isinstance(value, tuple):
                out[key] = list(value)
        return out

    def describe(self) -> str:
        """One line: the errors, where the worst one is, and the tolerance."""
        if self.reason:
            return self.reason
        text = f"max abs error {self.max_abs:.3g}, max rel error {self.max_rel:.3g}"
        if self.index is not None:
            where = "[" + ", ".join(str(i) for i in self.index) + "]"
            text += f"; worst at {where}: {self.actual!r} vs {self.expected!r}"
            if self.ulps is not None:
                text += f" ({self.ulps:.0f} ulp)"
        text += f"; {self.mismatched} element(s) out of tolerance (rtol {self.rtol:.1e}, atol {self.atol:.1e})"
        return text


def default_rtol(dtype: Any) -> float:
    """The default relative tolerance for a dtype (0 for exact dtypes)."""
    return RTOL.get(np.dtype(dtype).name, 0.0)


def per_step(value: Any, name: str, owner: str, steps: int) -> float:
    """A tolerance per step (``value``, as the caller passed it) checked to stay a finite float when
    multiplied by ``steps``, the most a tensor's step number can be: a finite number >= 0."""
    return number(value, name, owner, 0.0, sys.float_info.max / max(steps, 1))


def magnitude(x: np.ndarray) -> float:
    """The largest finite ``|element|`` of a host array (0 for none)."""
    a = np.abs(np.asarray(x, dtype=np.float64))
    a = a[np.isfinite(a)]
    return float(a.max()) if a.size else 0.0


def compare(actual: np.ndarray, expected: np.ndarray, rtol: float | None = None,
            atol: float | None = None, scale: float = 0.0) -> Comparison:
    """Compare two host arrays element by element (see the module docstring for the rule).

    ``scale`` raises the magnitude the default ``atol`` is relative to: a
    tensor computed from larger ones (a sum that cancels to rounding noise,
    say) is judged against the size of what it was computed from.
    """
    for name, value in (("rtol", rtol), ("atol", atol), ("scale", scale)):
        if value is not None and not (isinstance(value, (int, float, np.floating, np.integer))
                                      and math.isfinite(value) and value >= 0):
            raise ValueError(f"compare: {name} must be a finite number >= 0, got {value!r}")
    a, b = np.asarray(actual), np.asarray(expected)
    shape, dtype = tuple(b.shape), b.dtype.name

    def fail(reason: str, rt: float = 0.0, at: float = 0.0) -> Comparison:
        inf = float("inf")
        return Comparison(False, shape, dtype, rt, at, inf, inf, inf, int(b.size), reason=reason)

    if a.shape != b.shape:
        return fail(f"shape {tuple(a.shape)} differs from the expected {shape}")
    if a.dtype != b.dtype:
        return fail(f"dtype {a.dtype.name} differs from the expected {dtype}")
    floating = np.issubdtype(b.dtype, np.floating)
    rt = (default_rtol(b.dtype) if floating else 0.0) if rtol is None else float(rtol)
    if b.size == 0:
        return Comparison(True, shape, dtype, rt, 0.0 if atol is None else float(atol), 0.0, 0.0, 0.0, 0)
    if not floating:
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        at = 0.0 if atol is None else float(atol)
        return _verdict(a, b, diff, rt, at, ulps=False)
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    if (nan_a != nan_b).any():
        where = tuple(int(i) for i in np.argwhere(nan_a != nan_b)[0])
        return fail(f"NaN where the other is not, first at {list(where)}: {a[where]!r} vs {b[where]!r}", rt)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    same = (a64 == b64) | (nan_a & nan_b)  # equal infinities and shared NaNs agree
    with np.errstate(invalid="ignore"):
        diff = np.where(same, 0.0, np.abs(a64 - b64))
    scale = max(magnitude(b64), float(scale), float(np.finfo(b.dtype).tiny))
    at = rt * scale if atol is None else float(atol)
    return _verdict(a, b, diff, rt, at, ulps=True)


def assert_close(actual: Any, expected: Any, rtol: float | None = None, atol: float | None = None,
                 *, name: str = "array") -> Comparison:
    """Raise :class:`~nnx.errors.ParityError` unless ``actual`` agrees with ``expected``.

    The arrays may live on any backends (they are copied to the host). Default
    tolerances depend on the dtype (float64: ``rtol=1e-12``; float32:
    ``rtol=1e-5``; ``atol`` is ``rtol`` times the largest ``|expected|``; see
    the module docstring). Returns the :class:`Comparison` when they agree.
    """
    result = compare(_backend.to_host(actual), _backend.to_host(expected), rtol, atol)
    if not result.ok:
        raise ParityError(f"{name} differs: {result.describe()}")
    return result


def _verdict(a: np.ndarray, b: np.ndarray, diff: np.ndarray, rtol: float, atol: float,
             ulps: bool) -> Comparison:
    mag = np.abs(b.astype(np.float64))
    mag = np.where(np.isfinite(mag), mag, 0.0)
    tol = atol + rtol * mag
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(diff == 0, 0.0, diff / tol)
        rel = np.where(diff == 0, 0.0, diff / mag)
    bad = ratio > 1.0
    flat = int(np.argmax(ratio))
    index = tuple(int(i) for i in np.unravel_index(flat, b.shape))
    ulp = None
    if ulps:
        spacing = float(np.spacing(np.abs(b[index]).astype(b.dtype))) if np.isfinite(b[index]) else float("nan")
        with np.errstate(over="ignore"):
            ulp = float(diff[index] / spacing) if spacing > 0 else None
    return Comparison(
        ok=not bool(bad.any()),
        shape=tuple(b.shape),
        dtype=b.dtype.name,
        rtol=rtol,
        atol=atol,
        max_abs=float(diff.max()),
        max_rel=float(rel.max()),
        score=float(ratio.max()),
        mismatched=int(bad.sum()),
        index=index,
        actual=a[index].item(),
        expected=b[index].item(),
        ulps=ulp,
    )


__all__ = ["Comparison", "RTOL", "assert_close", "compare", "default_rtol", "magnitude"]
