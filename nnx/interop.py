"""PyTorch state dicts in and out: weights trained in PyTorch load into the same-shaped nnx model by name.

Every nnx layer stores its weights as PyTorch does (``Linear.weight`` is ``(out_features,
in_features)``, convolutions ``(out, in / groups, *kernel)``, LSTM/GRU gates in PyTorch's
order), and most names agree too. Where they differ, :data:`TORCH_NAMES` (a layer's own
arrays) and :data:`TORCH_CHILDREN` (a layer's sub-layers) say what PyTorch calls them:

=====================================  ======================================================
nnx                                    PyTorch
=====================================  ======================================================
``MultiHeadAttention.out_proj_weight``  ``nn.MultiheadAttention`` ``out_proj.weight``
``MultiHeadAttention.out_proj_bias``    ``out_proj.bias``
``TransformerBlock.attn``               ``nn.TransformerEncoderLayer(norm_first=True)`` ``self_attn``
``TransformerBlock.fc1`` / ``fc2``      ``linear1`` / ``linear2``
=====================================  ======================================================

``norm1``/``norm2`` and everything else keep their names. PyTorch's
``num_batches_tracked`` (a BatchNorm's step count, unused with a fixed momentum) is
skipped on load and not written. A tied parameter (:meth:`nnx.Layer.tied_parameters`)
is read under its first name; PyTorch's state lists it under every name, and the
other names must then hold the same values. Nothing here imports torch: a value is a
torch tensor (anything with ``detach``) or an array NumPy can read.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from nnx import backend as _backend
from nnx.errors import ShapeError
from nnx.layers.base import Layer, quote_names

#: per nnx layer type, its own arrays that PyTorch names otherwise
TORCH_NAMES: dict[str, dict[str, str]] = {
    "MultiHeadAttention": {"out_proj_weight": "out_proj.weight", "out_proj_bias": "out_proj.bias"},
}
#: per nnx layer type, its sub-layers that PyTorch names otherwise
TORCH_CHILDREN: dict[str, dict[str, str]] = {
    "TransformerBlock": {"attn": "self_attn", "fc1": "linear1", "fc2": "linear2"},
}
#: PyTorch state entries with no nnx counterpart, skipped on load (names end with these)
TORCH_ONLY = ("num_batches_tracked",)


def torch_names(model: Layer, names: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every name of ``model``'s state (tied names included) and what PyTorch calls it.

    ``names`` overrides entries for a model whose PyTorch twin names its layers otherwise: a
    full name maps one entry (``{"2.weight": "head.weight"}``); a key ending in ``.`` renames
    that start of the PyTorch-side names (``{"0.": "tok_emb.", "2.": "blocks.0."}``, the
    longest matching key wins)."""
    out: dict[str, str] = {}
    stack: list[tuple[Layer, str, str, tuple[int, ...]]] = [(model, "", "", ())]
    while stack:
        layer, ours, theirs, above = stack.pop()
        if id(layer) in above:
            continue
        kind = type(layer).__name__
        own, children = TORCH_NAMES.get(kind, {}), TORCH_CHILDREN.get(kind, {})
        for name in [n for n, _ in layer._own_parameters()] + list(layer.buffer_names):
            out[ours + name] = theirs + own.get(name, name)
        for name, child in reversed(list(layer.named_children())):
            stack.append((child, f"{ours}{name}.", f"{theirs}{children.get(name, name)}.", (*above, id(layer))))
    names = dict(names or {})
    prefixes = sorted((k for k in names if k.endswith(".")), key=len, reverse=True)
    for key in names:
        if key not in out and not (key in prefixes and any(t.startswith(key) for t in out.values())):
            raise KeyError(f"names maps {key!r}, which starts no name of the model's state; it has {quote_names(out)}")
    for ours, theirs in out.items():
        if ours in names:
            out[ours] = names[ours]
            continue
        for key in prefixes:
            if theirs.startswith(key):
                out[ours] = names[key] + theirs[len(key):]
                break
    return out


def _host(value: Any, name: str) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor: off the graph, onto the host
        value = value.detach().cpu().numpy()
    if not hasattr(value, "shape") or not hasattr(value, "dtype"):
        raise TypeError(f"state entry {name!r} is a {type(value).__name__}, not a tensor or array")
    return np.asarray(value)


def load_torch_state_dict(model: Layer, state: Mapping[str, Any], *, names: Mapping[str, str] | None = None,
                          cast: str = "exact") -> None:
    """Load a PyTorch ``state_dict()`` (torch tensors or NumPy arrays) into ``model`` by name.

    Names go through :func:`torch_names`; every name the model needs must be there and every
    entry of ``state`` must be used (except :data:`TORCH_ONLY`), else
    :class:`~nnx.errors.ShapeError` lists them. Shapes must match; dtypes follow
    :meth:`nnx.Layer.load_state_dict`'s rule ``cast`` (a float64 state into a float32
    model needs ``cast="any"``). Nothing changes unless everything fits.
    """
    mapping = torch_names(model, names)
    firsts = {n for n, _ in model.named_parameters()} | {n for n, _ in model.named_buffers()}
    tied = dict(model.tied_parameters())
    missing = sorted(theirs for ours, theirs in mapping.items() if ours in firsts and theirs not in state)
    if missing:
        raise ShapeError(f"the PyTorch state lacks {quote_names(missing)}, which the nnx model needs "
                         f"(name map: nnx.interop.torch_names(model))")
    used = set(mapping.values())
    extra = sorted(k for k in state if k not in used and not k.endswith(TORCH_ONLY))
    if extra:
        raise ShapeError(f"the PyTorch state has {quote_names(extra)}, which the nnx model does not; "
                         f"map them with names={{nnx name: torch name}} or drop them")
    loaded = {ours: _host(state[theirs], theirs) for ours, theirs in mapping.items() if ours in firsts}
    for alias, first in tied.items():
        theirs = mapping[alias]
        if theirs in state and not np.array_equal(_host(state[theirs], theirs), loaded[first]):
            raise ShapeError(f"the nnx model ties {alias!r} to {first!r}, but the PyTorch state holds other "
                             f"values under {theirs!r} and {mapping[first]!r}: that model is not tied")
    model.load_state_dict(loaded, source="the PyTorch state", cast=cast)


def torch_state_dict(model: Layer, *, names: Mapping[str, str] | None = None) -> dict[str, np.ndarray]:
    """``model``'s parameters and buffers as host NumPy arrays under PyTorch's names (a tied
    parameter under each of its names, as PyTorch lists it): ``torch_module.load_state_dict(
    {k: torch.from_numpy(v) for k, v in nnx.interop.torch_state_dict(model).items()}, strict=False)``
    (``strict=False`` only for BatchNorm's ``num_batches_tracked``, which nnx does not keep)."""
    state = dict(model.state_dict())
    state.update({alias: state[first] for alias, first in model.tied_parameters()})
    return {theirs: _backend.to_host(state[ours]) for ours, theirs in torch_names(model, names).items()}


__all__ = ["TORCH_CHILDREN", "TORCH_NAMES", "TORCH_ONLY", "load_torch_state_dict", "torch_names", "torch_state_dict"]
