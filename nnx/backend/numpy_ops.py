"""NumPy overrides of ops in :mod:`nnx.ops`: the same values, bit for bit, in fewer passes.

On by default (``nnx.backend.disable_fast_path("numpy")`` returns to the
generic ops). Each function here has exactly its op's signature and rounds
exactly as the generic op does; ``tests/test_ops.py`` compares them bit for
bit on inputs with NaN, infinities and signed zeros. What they change is how
the work is done:

* ``where(mask, a, b)`` in NumPy branches per element, and a mask that is true
  about half the time (a ReLU's) makes the branch unpredictable: about ten
  times the cost of an arithmetic pass. The selections here multiply the
  floats' bit patterns, as integers, by the mask's 0 or 1 (``b ^ (a ^ b) * m``),
  which is exactly ``where``, NaN payloads and signed zeros included.
* Adam and RMSProp write their intermediate results into one reusable scratch
  buffer with ``out=`` instead of allocating three temporaries as large as the
  weight: freed together, they can be handed back to the operating system and
  paged in again on the next step (several times the cost of the arithmetic).
  SGD's one temporary is as fast as a scratch buffer, so SGD keeps the generic op.
* GELU's forward and backward compute their intermediate arrays in four
  scratch buffers and the array they return: the same operations in the same
  order, without a fresh array per operation (``benchmarks/ops_bench.py``).
* ``sigmoid`` (an LSTM's or GRU's gates every step) computes in its one output array;
  ``softmax`` exponentiates in place and its backward keeps the product
  ``grad * y`` in a scratch buffer: one output-sized array each instead of two.
* ``shifted_matmul`` (a stride-1 convolution as one matrix product per kernel
  offset) multiplies into the output and one scratch buffer with ``out=``, a
  few samples at a time, so each offset's product is added to the running sum
  while both are still in the cache, instead of as a fresh output-sized array.
* ``all_finite`` calls the two ufuncs directly; ``all`` through the array
  API goes through NumPy's Python-level reduction wrappers, which cost more
  than the test itself on small arrays (a batch of one).

Arrays of other dtypes or of mixed dtypes take the generic op.

Beside the ops, :func:`keep_freed_memory` (the numpy record's ``host_allocator``)
tells glibc's allocator to serve large arrays from its heap and keep what a
step frees for the next step: by default every array above 128 KiB (glibc adapts
this up to 32 MiB) is a fresh mapping, whose pages the kernel maps and zeroes
again on every step.
"""

from __future__ import annotations

import ctypes
import math
import os
import threading
from typing import Any

import numpy as np

from nnx import ops

override = ops.Overrides(lambda: np.ndarray)  # named by the numpy record (op_overrides)

_BITS = {np.dtype(np.float32): np.int32, np.dtype(np.float64): np.int64}
_local = threading.local()


# below this many elements a few extra calls cost more than where's mispredicted branches
_SELECT_MIN = 2048


def _fast(*arrays: Any) -> bool:
    """Whether every array is a float32 or float64 ndarray of one dtype and one shape, not 0-d (ufuncs
    turn 0-d results into NumPy scalars, which the scratch-buffer forms cannot write into)."""
    first = arrays[0]
    if type(first) is not np.ndarray or first.dtype not in _BITS or first.ndim == 0:
        return False
    for a in arrays[1:]:
        if type(a) is not np.ndarray or a.dtype != first.dtype or a.shape != first.shape:
            return False
    return True


def _plain(*scalars: Any) -> bool:
    """Whether every scalar is a Python number (NumPy scalars would change the rounding of ``out=``)."""
    return all(type(s) in (float, int, bool) for s in scalars)


def _scratch(like: np.ndarray, slot: int = 0) -> np.ndarray:
    """A reusable array of ``like``'s shape and dtype, whose contents are garbage.

    One flat buffer per thread, dtype and slot, as large as the largest array it
    served: a view of it costs no allocation.
    """
    cache = getattr(_local, "buffers", None)
    if cache is None:
        cache = _local.buffers = {}
    key = (like.dtype, slot)
    buf = cache.get(key)
    n = like.size
    if buf is None or buf.size < n:
        buf = cache[key] = np.empty(n, like.dtype)
    return buf[:n].reshape(like.shape)


@override(ops.all_finite)
def all_finite(*arrays: Any) -> bool:
    for x in arrays:
        if type(x) is not np.ndarray:
            return ops.all_finite.generic(*arrays)
    return all(np.logical_and.reduce(np.isfinite(x), axis=None) for x in arrays)


def _gelu_parts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(xn, x2, e, num)`` of the generic ``_gelu_parts``, in four scratch buffers (slots 1 to 4)."""
    xn, x2, e, num = _scratch(x, 1), _scratch(x, 2), _scratch(x, 3), _scratch(x, 4)
    np.maximum(x, -ops.GELU_CUT, out=xn)
    np.abs(xn, out=e)
    np.minimum(e, ops.GELU_CUT, out=e)  # e holds |x| clamped
    np.multiply(e, e, out=x2)
    np.multiply(x2, ops.GELU_A, out=num)
    num += 1
    num *= e
    np.multiply(num, -2 * ops.GELU_C, out=e)
    np.exp(e, out=e)
    np.maximum(e, np.greater_equal(x, 0), out=num)  # the 0/1 mask as x's dtype, as astype gives it
    return xn, x2, e, num


@override(ops.gelu)
def gelu(x: Any) -> Any:
    if not _fast(x):
        return ops.gelu.generic(x)
    xn, _, e, num = _gelu_parts(x)
    e += 1
    y = np.divide(num, e)
    y *= xn
    return y


@override(ops.gelu_backward)
def gelu_backward(x: Any, grad: Any) -> Any:
    if not _fast(x, grad):
        return ops.gelu_backward.generic(x, grad)
    xn, x2, e, num = _gelu_parts(x)
    w = np.add(e, 1)
    np.divide(e, w, out=e)  # e/(1 + e); e is not needed after this
    x2 *= 3 * ops.GELU_A
    x2 += 1
    x2 *= 2 * ops.GELU_C
    e *= x2
    e *= xn
    e += num
    e /= w
    np.multiply(grad, e, out=w)
    return w


@override(ops.sigmoid)
def sigmoid(x: Any) -> Any:
    if not _fast(x):
        return ops.sigmoid.generic(x)
    e = np.maximum(x, -ops.sigmoid_cut(x))
    e *= -1
    np.exp(e, out=e)
    e += 1
    return np.divide(1, e, out=e)


@override(ops.softmax)
def softmax(x: Any, axis: int) -> Any:
    if not _fast(x):
        return ops.softmax.generic(x, axis)
    e = np.subtract(x, np.max(x, axis=axis, keepdims=True))
    np.exp(e, out=e)
    e /= np.sum(e, axis=axis, keepdims=True)
    return e


@override(ops.softmax_backward)
def softmax_backward(y: Any, grad: Any, axis: int) -> Any:
    if not _fast(y, grad):
        return ops.softmax_backward.generic(y, grad, axis)
    g = np.subtract(grad, np.sum(np.multiply(grad, y, out=_scratch(y)), axis=axis, keepdims=True))
    g *= y
    return g


@override(ops.relu_backward)
def relu_backward(y: Any, grad: Any) -> Any:
    if not (_fast(y, grad) and y.size >= _SELECT_MIN):
        return ops.relu_backward.generic(y, grad)
    ints = _BITS[grad.dtype]
    # the gradient's bit patterns times 0 or 1: exactly where(y > 0, grad, +0.0), in two passes
    return np.multiply(grad.view(ints), y > 0).view(grad.dtype)


@override(ops.leaky_relu)
def leaky_relu(x: Any, negative_slope: float) -> Any:
    if not (_fast(x) and x.size >= _SELECT_MIN and _plain(negative_slope) and 0.0 < negative_slope <= 1.0):
        return ops.leaky_relu.generic(x, negative_slope)
    # for 0 < s <= 1, s*x <= x exactly when x >= 0 (rounding is monotonic), so the
    # maximum picks x for x > 0 and s*x below; at +-0 both are the same zero and NaN stays NaN
    y = x * negative_slope
    np.maximum(x, y, out=y)
    return y


@override(ops.leaky_relu_backward)
def leaky_relu_backward(x: Any, grad: Any, negative_slope: float) -> Any:
    if not (_fast(x, grad) and x.size >= _SELECT_MIN and _plain(negative_slope)):
        return ops.leaky_relu_backward.generic(x, grad, negative_slope)
    ints = _BITS[grad.dtype]
    low = (grad * negative_slope).view(ints)
    r = np.bitwise_xor(grad.view(ints), low)
    r *= x > 0  # bit patterns times 0 or 1
    r ^= low  # low ^ ((grad ^ low) * [x > 0]): grad where x > 0, low elsewhere
    return r.view(grad.dtype)


@override(ops.adam_update)
def adam_update(
    p: Any, grad: Any, exp_avg: Any, exp_avg_sq: Any, lr: float, beta1: float, beta2: float, eps: float, step: int
) -> tuple[Any, Any, Any]:
    m, v = exp_avg, exp_avg_sq
    if not (_fast(p, grad, m, v) and _plain(lr, beta1, beta2, eps, step)):
        return ops.adam_update.generic(p, grad, m, v, lr, beta1, beta2, eps, step)
    s = _scratch(p)
    m *= beta1
    np.multiply(grad, 1.0 - beta1, out=s)
    m += s
    np.multiply(grad, grad, out=s)
    s *= 1.0 - beta2
    v *= beta2
    v += s
    np.sqrt(v, out=s)
    s *= 1.0 / math.sqrt(1.0 - beta2**step)
    s += eps
    np.divide(m, s, out=s)
    s *= lr / (1.0 - beta1**step)
    p -= s
    return p, m, v


@override(ops.rmsprop_update)
def rmsprop_update(
    p: Any, grad: Any, square_avg: Any, momentum_buffer: Any, lr: float, alpha: float, eps: float, momentum: float
) -> tuple[Any, Any, Any]:
    v, b = square_avg, momentum_buffer
    if not (_fast(p, grad, v) and (not momentum or (b is not None and _fast(p, b)))
            and _plain(lr, alpha, eps, momentum)):
        return ops.rmsprop_update.generic(p, grad, v, b, lr, alpha, eps, momentum)
    s = _scratch(p)
    np.multiply(grad, grad, out=s)
    s *= 1.0 - alpha
    v *= alpha
    v += s
    np.sqrt(v, out=s)
    s += eps
    np.divide(grad, s, out=s)
    if momentum:
        b *= momentum
        b += s
        np.multiply(b, lr, out=s)
    else:
        s *= lr
    p -= s
    return p, v, b


# the running sum and one offset's product, for this many output values at a time, stay in the cache
_SHIFTED_CHUNK = 2**17


@override(ops.shifted_matmul)
def shifted_matmul(w: Any, x: Any, offsets: tuple[int, ...], n: int) -> Any:
    if not (type(w) is np.ndarray and type(x) is np.ndarray and w.dtype == x.dtype and x.dtype in _BITS
            and w.ndim == x.ndim >= 3):
        return ops.shifted_matmul.generic(w, x, offsets, n)
    y = np.empty((*np.broadcast_shapes(w.shape[1:-2], x.shape[:-2]), w.shape[-2], n), x.dtype)
    step = max(1, _SHIFTED_CHUNK // max(1, math.prod(y.shape[1:])))
    for start in range(0, x.shape[0], step):
        part, rows = y[start:start + step], x[start:start + step]
        np.matmul(w[0], rows[..., offsets[0]:offsets[0] + n], out=part)
        product = _scratch(part, 5)
        for k in range(1, len(offsets)):
            np.matmul(w[k], rows[..., offsets[k]:offsets[k] + n], out=product)
            part += product
    return y


# glibc's mallopt parameters (malloc.h) and the largest mapping threshold it accepts on 64-bit
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 32 * 2**20
# freed memory at the top of the heap up to this size stays with the process for the next step
_TRIM_THRESHOLD = 512 * 2**20


def keep_freed_memory() -> bool:
    """Let glibc's ``malloc`` reuse large freed arrays instead of mapping fresh pages each time.

    Arrays up to 32 MiB come from the heap (not a mapping of their own) and up to 512 MiB of
    freed memory stays with the process, so a training step's temporaries reuse the pages of the
    step before: no page faults and no zeroing by the kernel. The peak memory is the same (the
    same arrays are alive at once); memory freed for good is returned once it exceeds 512 MiB.
    Returns whether the settings took (``False`` on a C library other than glibc).
    ``NNX_HOST_ALLOCATOR=system`` keeps nnx from calling it.
    """
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return False
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError, ValueError):  # not glibc, or no confstr name for it here
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
