"""Preprocessing that becomes part of the model: fit on the training data, then save it with the model.

* :class:`Standardize` (a layer): per-feature mean and standard deviation,
  fitted on the training split only; put it first in the model.
* :class:`ClassLabels` (a layer): the original labels of the output classes;
  put it last, and :func:`nnx.predict_classes` answers in those labels.
* :class:`Destandardize` (a layer): a regression target's mean and standard
  deviation; put it last, train the layers before it on
  ``Destandardize.standardize(y)``, and the model answers in the target's units.
* :func:`encode_labels`: any int or string labels as class numbers ``0 .. k-1``.

Example::

    y, labels = nnx.preprocessing.encode_labels(raw_labels)
    scale = nnx.preprocessing.Standardize(x_train.shape[1]).fit(x_train)
    model = nnx.Sequential(scale, nnx.Linear(x_train.shape[1], 16), nnx.ReLU(),
                           nnx.Linear(16, len(labels)), nnx.preprocessing.ClassLabels(labels))
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from nnx.layers.preprocess import ClassLabels, Destandardize, Standardize


def encode_labels(values: Sequence[Any]) -> tuple[np.ndarray, list[Any]]:
    """Class numbers ``0 .. k-1`` for the sorted distinct ``values`` (ints or strings), and those values."""
    array = np.asarray(values)
    if array.ndim != 1 or array.dtype.kind not in "iuU" or array.size == 0:
        raise ValueError(f"encode_labels expects a non-empty 1-D sequence of ints or strings, "
                         f"got {array.dtype} {array.shape}")
    names, codes = np.unique(array, return_inverse=True)
    return codes.astype(np.int64).reshape(-1), [v.item() for v in names]


__all__ = ["ClassLabels", "Destandardize", "Standardize", "encode_labels"]
