"""layers/sizes.py: the plain calls where every size is known; one unknown size (None) at most in a reshape."""

from __future__ import annotations

import numpy as np
import pytest

import nnx
from nnx.errors import ShapeError
from nnx.layers.sizes import full_like_axes, product, reshape_sizes


def test_known_sizes_are_the_plain_calls():
    x = nnx.to_device(np.arange(24.0).reshape(2, 3, 4), "numpy", "float32")
    full = full_like_axes(x, (2, 5, 6), -np.inf)
    assert full.shape == (2, 5, 6) and full.dtype == x.dtype and np.all(full == -np.inf)
    assert reshape_sizes((2, 3, 4)) == (2, 3, 4)
    assert product(2, 3) == 6


def test_one_unknown_size():
    assert reshape_sizes((None, 3, 4)) == (-1, 3, 4)
    assert product(None, 3) is None
    with pytest.raises(ShapeError, match="more than one size is unknown"):
        reshape_sizes((None, None, 4))


def test_zeros_sized_from_the_input_on_a_traced_array():
    ndonnx = pytest.importorskip("ndonnx", reason="the ONNX extra is not installed: pip install '.[onnx]'")
    x = ndonnx.argument(shape=(None, 3, 5), dtype=ndonnx.float32)
    zeros = full_like_axes(x, (None, 3, 7), 0.0)  # the batch from x, the rest known
    assert tuple(zeros.shape) == (None, 3, 7)
    states = full_like_axes(ndonnx.argument(shape=(4, None, 2), dtype=ndonnx.float32), (3, None, 6), 0.0)
    assert tuple(states.shape) == (3, None, 6)  # an RNN's states: the batch on axis 1
