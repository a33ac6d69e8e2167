"""One record per backend: how to probe it, reach its namespace and move data, which faster
forms of ops it has, and how a data-parallel run talks over it.

This module, :mod:`nnx.backend.cupy_ops` and the host side (:mod:`nnx.random`,
files, data) are the only places in nnx that import array libraries by name. Adding a backend that
array-api-compat supports means adding one :class:`Backend` record to ``BACKENDS``; nothing outside
``nnx/backend`` compares backend names.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable

import numpy as np
from array_api_compat import (
    array_namespace,
    is_array_api_strict_namespace,
    is_cupy_array,
    is_numpy_array,
    is_torch_array,
)


@dataclass(frozen=True)
class Backend:
    """How nnx reaches one array library.

    ``module`` is the import name of the library; ``probe`` returns ``None``
    when the backend can run here and otherwise a sentence saying why not;
    ``namespace`` returns the array-API namespace; ``from_host`` turns a NumPy
    array into a backend array (a copy onto the device); ``to_host`` does the
    reverse; ``owns`` says whether an array belongs to this backend.
    ``matmul_precision``, for a library that can trade float32 matmul accuracy
    for speed, takes ``"highest"``, ``"tf32"`` or ``None`` and returns the
    setting in force before the call (``None`` only asks); a backend without
    it always multiplies float32 in full precision. ``tested_when_unavailable``
    is ``False`` for an optional integration (torch) that nnx ships no extra
    for: test runs list it only where it can run, instead of skipping it.
    ``host_memory`` is ``True`` where arrays live in the host's memory, so
    reading one number costs a Python call, not a device synchronisation.
    ``host_buffer`` is ``True`` where arrays are writable host buffers (the
    buffer protocol), so MPI sums them in place instead of through a copy.

    The rest are ``"module:attribute"`` paths, imported only when used (so
    importing nnx never imports :mod:`nnx.distributed` or a GPU library):
    ``op_overrides`` names the backend's :class:`nnx.ops.Overrides` (faster
    forms of ops for its arrays), installed at import when
    ``op_overrides_default`` (only for overrides that give the generic values
    bit for bit), else by ``nnx.backend.enable_fast_path``; ``communicator`` is
    called with a distributed ``World`` and this record and returns what sums
    and broadcasts flat arrays between the ranks; ``bind_device``, if set, is
    called with the ``World`` when a run starts on this backend, to give each
    process the device of its local rank. ``device_name`` names the device the
    backend computes on (default: the host's processor), for records such as parity traces.
    ``low_dtypes`` names the 16-bit float dtypes a mixed-precision policy may compute in there
    (:mod:`nnx.precision`); ``low_dtype_note`` says why any other is missing.
    ``host_allocator`` names a function that tunes the process's memory allocator for the
    backend's large, short-lived temporaries; it runs once, when ``op_overrides_default``
    installs the overrides, unless the environment variable ``NNX_HOST_ALLOCATOR`` is ``system``
    (the allocator's own settings then stay untouched).
    """

    name: str
    module: str
    description: str
    probe: Callable[[], str | None]
    namespace: Callable[[], ModuleType]
    from_host: Callable[[np.ndarray], Any]
    to_host: Callable[[Any], np.ndarray]
    owns: Callable[[Any], bool]
    install_hint: str = field(default="")
    tested_when_unavailable: bool = field(default=True)
    matmul_precision: Callable[[str | None], str] | None = field(default=None)
    host_memory: bool = field(default=True)
    host_buffer: bool = field(default=False)
    op_overrides: str | None = field(default=None)
    op_overrides_default: bool = field(default=False)
    communicator: str = field(default="nnx.distributed.world:MpiDevice")
    bind_device: str | None = field(default=None)
    device_name: Callable[[], str] | None = field(default=None)
    low_dtypes: tuple[str, ...] = field(default=())
    low_dtype_note: str = field(default="")
    host_allocator: str | None = field(default=None)
    holds_values: bool = field(default=True)


def load(path: str) -> Any:
    """The object a ``"module:attribute"`` path names (imported now)."""
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _import_reason(module: str, hint: str) -> str | None:
    """Import ``module``; return ``None`` on success, else why it failed."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        return f"{module} is not installed ({exc.__class__.__name__}: {exc}); {hint}"
    except Exception as exc:  # a broken install is a reason too, never a crash
        return f"{module} failed to import ({exc.__class__.__name__}: {exc}); {hint}"
    return None


# numpy -----------------------------------------------------------------------

def _numpy_probe() -> str | None:
    return None


def _numpy_namespace() -> ModuleType:
    import array_api_compat.numpy as xp

    return xp


# array_api_strict --------------------------------------------------------------

_STRICT_HINT = "install it with: pip install array-api-strict"


def _strict_probe() -> str | None:
    return _import_reason("array_api_strict", _STRICT_HINT)


def _strict_namespace() -> ModuleType:
    import array_api_strict

    return array_api_strict


def _strict_from_host(a: np.ndarray) -> Any:
    return _strict_namespace().asarray(a, copy=True)


def _strict_to_host(x: Any) -> np.ndarray:
    return np.from_dlpack(x).copy()


def _strict_owns(x: Any) -> bool:
    # array-api-compat has no is_array_api_strict_array; the array's own namespace says it
    return is_array_api_strict_namespace(array_namespace(x))


# cupy ---------------------------------------------------------------------------

_CUPY_HINT = ("install the extra for your CUDA from a clone of nnx's repository: pip install '.[cuda12]' "
              "or '.[cuda13]' (or pip install cupy-cuda12x)")


def _cupy_probe() -> str | None:
    reason = _import_reason("cupy", _CUPY_HINT)
    if reason is not None:
        return reason
    import cupy

    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return f"cupy is installed but CUDA is not usable: {exc.__class__.__name__}: {exc}"
    if count < 1:
        return "cupy is installed but no CUDA device is visible"
    try:
        (cupy.arange(2) + 1).sum().item()
    except Exception as exc:
        return f"cupy is installed but could not run a kernel: {exc.__class__.__name__}: {exc}"
    return None


def _cupy_device_name() -> str:
    import cupy

    device = cupy.cuda.Device()
    name = cupy.cuda.runtime.getDeviceProperties(device.id)["name"]
    return f"{name.decode() if isinstance(name, bytes) else name} (CUDA device {device.id})"


def _cupy_namespace() -> ModuleType:
    import array_api_compat.cupy as xp

    return xp


def _cupy_from_host(a: np.ndarray) -> Any:
    import cupy

    return cupy.asarray(a)


def _cupy_to_host(x: Any) -> np.ndarray:
    import cupy

    return cupy.asnumpy(x)


def _cupy_matmul_precision(precision: str | None) -> str:
    """Read or set how CuPy's cuBLAS matmuls compute float32 (``"highest"`` or ``"tf32"``).

    CuPy keeps one cuBLAS compute type per dtype in ``cupy._core._routines_linalg``
    (``get_compute_type``/``set_compute_type``); until it is set, the first
    float32 matmul reads ``CUPY_TF32`` (``1`` means TF32, anything else full
    float32). nnx sets it explicitly so that a run never depends on the
    environment by accident. TF32 needs compute capability 8.0 or newer; on
    older GPUs CuPy warns and keeps full precision.
    """
    import cupy
    from cupy._core import _routines_linalg as linalg

    tf32 = getattr(linalg, "COMPUTE_TYPE_TF32", 7)
    default = getattr(linalg, "COMPUTE_TYPE_DEFAULT", 1)
    before = "tf32" if linalg.get_compute_type(cupy.float32) == tf32 else "highest"
    if precision is not None:
        linalg.set_compute_type(cupy.float32, tf32 if precision == "tf32" else default)
    return before


# torch (CPU) ----------------------------------------------------------------------

_TORCH_HINT = "install a CPU build of PyTorch to compare against it (nnx does not depend on it)"


def _torch_probe() -> str | None:
    reason = _import_reason("torch", _TORCH_HINT)
    if reason is not None:
        return reason
    return _import_reason("array_api_compat.torch", "array-api-compat cannot wrap this torch")


def _torch_namespace() -> ModuleType:
    import array_api_compat.torch as xp

    return xp


def _torch_from_host(a: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(np.array(a, copy=True))


def _torch_to_host(x: Any) -> np.ndarray:
    import torch

    if x.dtype == torch.bfloat16:  # NumPy has no bfloat16; float32 holds each value exactly
        x = x.float()
    return x.detach().cpu().numpy().copy()


def _torch_matmul_precision(precision: str | None) -> str:
    """Read or set ``torch.set_float32_matmul_precision`` (``"tf32"`` maps to ``"high"``)."""
    import torch

    before = "highest" if torch.get_float32_matmul_precision() == "highest" else "tf32"
    if precision is not None:
        torch.set_float32_matmul_precision("high" if precision == "tf32" else "highest")
    return before


# ndonnx (tracing into ONNX) ------------------------------------------------------------

_NDONNX_HINT = "install the ONNX extra: pip install '.[onnx]'"


def _ndonnx_probe() -> str | None:
    return _import_reason("ndonnx", _NDONNX_HINT)


def _ndonnx_namespace() -> ModuleType:
    import ndonnx

    return ndonnx


def _ndonnx_from_host(a: np.ndarray) -> Any:
    import ndonnx

    return ndonnx.asarray(np.array(a, copy=True))


def _ndonnx_to_host(x: Any) -> np.ndarray:
    """The values of a constant ndonnx array; a traced one (a graph input) has none to give."""
    return np.array(x.unwrap_numpy(), copy=True)


def _ndonnx_owns(x: Any) -> bool:
    ndonnx = sys.modules.get("ndonnx")  # never imported just to ask
    return ndonnx is not None and isinstance(x, ndonnx.Array)


#: ndonnx arrays record an ONNX graph (nnx.export_onnx traces a forward on them); not a backend to
#: compute on, so not in BACKENDS: the exporter registers it while it traces.
NDONNX = Backend(
    name="ndonnx",
    module="ndonnx",
    description="ndonnx: arrays that record an ONNX graph (export, not computing)",
    probe=_ndonnx_probe,
    namespace=_ndonnx_namespace,
    from_host=_ndonnx_from_host,
    to_host=_ndonnx_to_host,
    owns=_ndonnx_owns,
    install_hint=_NDONNX_HINT,
    tested_when_unavailable=False,
    holds_values=False,
)


BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend(
            name="numpy",
            module="numpy",
            description="NumPy on the CPU (the default)",
            probe=_numpy_probe,
            namespace=_numpy_namespace,
            from_host=lambda a: np.array(a, copy=True),
            to_host=lambda x: np.array(x, copy=True),
            owns=is_numpy_array,  # NumPy scalars (np.float64(1.0)) too
            host_buffer=True,
            op_overrides="nnx.backend.numpy_ops:override",
            op_overrides_default=True,
            low_dtypes=("float16",),
            low_dtype_note="NumPy has no bfloat16 of its own, and array-api-compat's NumPy namespace cannot use "
                           "ml_dtypes' (isdtype refuses it and matmul returns float32); train bfloat16 on torch",
            host_allocator="nnx.backend.numpy_ops:keep_freed_memory",
        ),
        Backend(
            name="array_api_strict",
            module="array_api_strict",
            description="the array API conformance library on the CPU (for tests, not speed)",
            probe=_strict_probe,
            namespace=_strict_namespace,
            from_host=_strict_from_host,
            to_host=_strict_to_host,
            owns=_strict_owns,
            install_hint=_STRICT_HINT,
            low_dtype_note="array_api_strict has only float32 and float64",
        ),
        Backend(
            name="cupy",
            module="cupy",
            description="CuPy on an NVIDIA GPU through CUDA",
            probe=_cupy_probe,
            namespace=_cupy_namespace,
            from_host=_cupy_from_host,
            to_host=_cupy_to_host,
            owns=is_cupy_array,
            install_hint=_CUPY_HINT,
            matmul_precision=_cupy_matmul_precision,
            host_memory=False,
            op_overrides="nnx.backend.cupy_ops:override",
            communicator="nnx.distributed.nccl:NcclDevice",
            bind_device="nnx.distributed.nccl:select_gpu",
            device_name=_cupy_device_name,
            low_dtypes=("float16",),
            low_dtype_note="CuPy has no bfloat16 dtype",
        ),
        Backend(
            name="torch",
            module="torch",
            description="PyTorch on the CPU through array-api-compat (optional, for comparison)",
            probe=_torch_probe,
            namespace=_torch_namespace,
            from_host=_torch_from_host,
            to_host=_torch_to_host,
            owns=is_torch_array,
            tested_when_unavailable=False,
            install_hint=_TORCH_HINT,
            matmul_precision=_torch_matmul_precision,
            low_dtypes=("float16", "bfloat16"),
        ),
    )
}
