"""The held-out part of a data set: a seeded split of host arrays (fit's ``validation_split``)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from nnx import random as _random
from nnx.errors import ConfigError, ShapeError


def train_val_split(
    x: Any, y: Any, val: float | int = 0.2, seed: Any = 0, stratify: bool = False
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Shuffle with a seeded host generator and split into ``(x_train, y_train), (x_val, y_val)``.

    ``val`` is a fraction (0 < val < 1, held out: ``round(val * n)`` samples) or
    a count. With ``stratify=True`` every class keeps its share in both parts
    (``y`` must be class indices): each class holds out the whole part of its
    share, and the classes with the largest remainders one more, so the parts
    have exactly the asked sizes; no class gives its last sample to the held-out
    part while the sizes allow it (a class of one sample stays in training,
    with a warning: the held-out scores say nothing about it).
    """
    x, y = np.asarray(x), np.asarray(y)
    n = int(x.shape[0])
    if y.shape[0] != n:
        raise ShapeError(f"train_val_split: {n} inputs but {y.shape[0]} targets")
    count = int(round(val * n)) if isinstance(val, float) else int(val)
    if (isinstance(val, float) and not 0.0 < val < 1.0) or not 0 < count < n:
        held = f" ({val!r} of {n} samples holds out {count})" if isinstance(val, float) and 0.0 < val < 1.0 else ""
        raise ConfigError(f"train_val_split: val must be a fraction in (0, 1) or a count in [1, {n - 1}] that "
                          f"leaves at least one sample on each side, got {val!r}{held}; use more samples or "
                          f"another val")
    rng = _random.make_rng(seed)
    if not stratify:
        order = _random.permutation(rng, n)
        val_idx, train_idx = order[:count], order[count:]
    else:
        labels = y if y.ndim == 1 else y.argmax(axis=1)
        classes = np.unique(labels)
        sizes = np.array([np.count_nonzero(labels == c) for c in classes])
        takes = _stratified_takes(count, sizes)
        alone = [c for c, k, s in zip(classes.tolist(), takes.tolist(), sizes.tolist()) if k == 0 and s == 1]
        if alone:
            warnings.warn(f"train_val_split: {len(alone)} class(es) have a single sample ({alone[:10]!r}); it is "
                          f"kept for training and none is held out, so the held-out scores say nothing about them",
                          stacklevel=2)
        val_parts, train_parts = [], []
        for c, k in zip(classes, takes):
            members = np.flatnonzero(labels == c)
            members = members[_random.permutation(rng, members.size)]
            val_parts.append(members[:k])
            train_parts.append(members[k:])
        val_idx = np.concatenate(val_parts)[_random.permutation(rng, sum(p.size for p in val_parts))]
        train_idx = np.concatenate(train_parts)[_random.permutation(rng, sum(p.size for p in train_parts))]
    return (x[train_idx], y[train_idx]), (x[val_idx], y[val_idx])


def _stratified_takes(count: int, sizes: np.ndarray) -> np.ndarray:
    """How many samples of each class (of ``sizes``) to hold out, ``count`` in all: each class's share,
    whole parts first, then one more for the largest remainders, never a class's last sample (a class
    held out whole is never trained on) unless ``count`` leaves no other way."""
    quotas = count * sizes / sizes.sum()
    takes = np.floor(quotas).astype(np.int64)
    room = sizes - 1 if count <= int((sizes - 1).sum()) else sizes
    order = np.argsort(-(quotas - takes), kind="stable")
    while takes.sum() < count:
        for i in order:
            if takes.sum() < count and takes[i] < room[i]:
                takes[i] += 1
    return takes


__all__ = ["train_val_split"]
