"""Weight initialisers.

An initialiser is a callable ``init(shape, rng) -> host array``: it draws in
float64 on the host from ``rng`` (see :mod:`nnx.random`), and the layer then
casts and moves the result to its backend. The fan-based ones (Xavier, He:
subclasses of :class:`FanBased`) also take ``fans=(fan_in, fan_out)``, which
each layer states when it draws through :func:`draw` (a ``Linear``:
``(in_features, out_features)``; a convolution: ``(in_channels // groups *
kernel positions, out_channels * kernel positions)``). Called without fans,
they read them from a 2-D shape ``(fan_in, fan_out)`` and refuse any other.

To reproduce ``np.random.seed(1); W = 2*np.random.random((3, 1)) - 1``::

    nnx.Linear(3, 1, bias=False, init=nnx.init.Uniform(-1, 1), seed=nnx.random.legacy(1))
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from nnx import random as _random
from nnx.errors import ShapeError


class Initializer(Protocol):
    """Anything that draws a host array of a given shape from a host generator."""

    def __call__(self, shape: tuple[int, ...], rng: Any) -> Any: ...


Fans = tuple[int, int]


class FanBased:
    """An initialiser whose scale depends on ``(fan_in, fan_out)``: given as ``fans``, or read
    from a 2-D shape ``(fan_in, fan_out)`` (a ``Linear`` weight); any other shape needs ``fans``."""

    def __call__(self, shape: tuple[int, ...], rng: Any, fans: Fans | None = None) -> Any:
        if fans is None:
            if len(shape) != 2:
                raise ShapeError(f"{type(self).__name__} cannot tell the fans of a {len(shape)}-D shape "
                                 f"{tuple(shape)}; pass fans=(fan_in, fan_out)")
            fans = (shape[0], shape[1])
        return self.sample(shape, rng, *fans)

    def sample(self, shape: tuple[int, ...], rng: Any, fan_in: int, fan_out: int) -> Any:
        """Draw ``shape`` from ``rng`` for these fans."""
        raise NotImplementedError


class Uniform:
    """Uniform on ``[low, high)`` (``low + (high - low) * u``, bit-compatible with ``2*u - 1``)."""

    def __init__(self, low: float = -1.0, high: float = 1.0) -> None:
        if not high > low:
            raise ValueError(f"Uniform needs low < high, got low={low}, high={high}")
        self.low, self.high = float(low), float(high)

    def __call__(self, shape: tuple[int, ...], rng: Any) -> Any:
        return _random.uniform(rng, shape, self.low, self.high)

    def __repr__(self) -> str:
        return f"Uniform({self.low}, {self.high})"


class Normal:
    """Normal with mean ``mean`` and standard deviation ``std``."""

    def __init__(self, mean: float = 0.0, std: float = 1.0) -> None:
        if not std >= 0:
            raise ValueError(f"Normal needs std >= 0, got {std}")
        self.mean, self.std = float(mean), float(std)

    def __call__(self, shape: tuple[int, ...], rng: Any) -> Any:
        return _random.normal(rng, shape, self.mean, self.std)

    def __repr__(self) -> str:
        return f"Normal({self.mean}, {self.std})"


class XavierUniform(FanBased):
    """Glorot & Bengio (2010): uniform on ``±gain*sqrt(6/(fan_in+fan_out))``."""

    def __init__(self, gain: float = 1.0) -> None:
        self.gain = float(gain)

    def sample(self, shape: tuple[int, ...], rng: Any, fan_in: int, fan_out: int) -> Any:
        bound = self.gain * math.sqrt(6.0 / (fan_in + fan_out))
        return _random.uniform(rng, shape, -bound, bound)


class XavierNormal(FanBased):
    """Glorot & Bengio (2010): normal with ``std = gain*sqrt(2/(fan_in+fan_out))``."""

    def __init__(self, gain: float = 1.0) -> None:
        self.gain = float(gain)

    def sample(self, shape: tuple[int, ...], rng: Any, fan_in: int, fan_out: int) -> Any:
        return _random.normal(rng, shape, 0.0, self.gain * math.sqrt(2.0 / (fan_in + fan_out)))


class HeUniform(FanBased):
    """He et al. (2015), for ReLU nets: uniform on ``±sqrt(6/fan_in)``."""

    def sample(self, shape: tuple[int, ...], rng: Any, fan_in: int, fan_out: int) -> Any:
        bound = math.sqrt(6.0 / fan_in)
        return _random.uniform(rng, shape, -bound, bound)


class HeNormal(FanBased):
    """He et al. (2015), for ReLU nets: normal with ``std = sqrt(2/fan_in)``."""

    def sample(self, shape: tuple[int, ...], rng: Any, fan_in: int, fan_out: int) -> Any:
        return _random.normal(rng, shape, 0.0, math.sqrt(2.0 / fan_in))


class Constant:
    """Every element ``value`` (``Constant(0)`` is the usual bias initialiser)."""

    def __init__(self, value: float = 0.0) -> None:
        self.value = float(value)

    def __call__(self, shape: tuple[int, ...], rng: Any) -> Any:
        return _random.full(shape, self.value)


# Aliases under the other common names.
GlorotUniform = XavierUniform
GlorotNormal = XavierNormal
KaimingUniform = HeUniform
KaimingNormal = HeNormal

_BY_NAME: dict[str, type] = {
    "uniform": Uniform,
    "normal": Normal,
    "xavier_uniform": XavierUniform,
    "xavier_normal": XavierNormal,
    "glorot_uniform": XavierUniform,
    "glorot_normal": XavierNormal,
    "he_uniform": HeUniform,
    "he_normal": HeNormal,
    "kaiming_uniform": HeUniform,
    "kaiming_normal": HeNormal,
    "zeros": Constant,
}


def get(init: str | Initializer) -> Initializer:
    """An initialiser from a name such as ``"he_uniform"`` or an initialiser object."""
    if isinstance(init, str):
        try:
            return _BY_NAME[init]()
        except KeyError:
            raise ValueError(
                f"unknown initialiser {init!r}; valid names are: {', '.join(_BY_NAME)}"
            ) from None
    if not callable(init):
        raise TypeError(f"expected an initialiser name or callable, got {type(init).__name__}")
    return init


def draw(init: str | Initializer, shape: tuple[int, ...], rng: Any, fans: Fans) -> Any:
    """Initial values of ``shape`` from ``init`` (a name or an initialiser) and ``rng``; a layer
    states the ``fans`` of the weight, which reach fan-based initialisers."""
    initializer = get(init)
    if isinstance(initializer, FanBased):
        return initializer(shape, rng, fans)
    return initializer(shape, rng)
