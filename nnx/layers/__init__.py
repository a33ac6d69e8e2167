"""Layers: each computes its own forward and backward against the array API.

The public names are the ``__all__`` lists of the modules below, each in the file that defines them.
"""

from nnx.layers import (activations, attention, base, cache, checks, collections, container, conv, decoder, dropout,
                        embedding, linear, norm, pooling, preprocess, recurrent, recurrent_cells, seq2seq, shape,
                        transformer)
from nnx.layers.activations import *  # noqa: F403
from nnx.layers.base import *  # noqa: F403
from nnx.layers.checks import *  # noqa: F403
from nnx.layers.collections import *  # noqa: F403
from nnx.layers.container import *  # noqa: F403
from nnx.layers.conv import *  # noqa: F403
from nnx.layers.dropout import *  # noqa: F403
from nnx.layers.embedding import *  # noqa: F403
from nnx.layers.linear import *  # noqa: F403
from nnx.layers.norm import *  # noqa: F403
from nnx.layers.pooling import *  # noqa: F403
from nnx.layers.preprocess import *  # noqa: F403
from nnx.layers.shape import *  # noqa: F403
from nnx.layers.recurrent import *  # noqa: F403
from nnx.layers.recurrent_cells import *  # noqa: F403
from nnx.layers.attention import *  # noqa: F403
from nnx.layers.transformer import *  # noqa: F403
from nnx.layers.decoder import *  # noqa: F403
from nnx.layers.seq2seq import *  # noqa: F403
from nnx.layers.cache import *  # noqa: F403

__all__ = [name for module in (activations, base, checks, collections, container, conv, dropout, embedding, linear,
                               norm, pooling, preprocess, shape, recurrent, recurrent_cells, attention, transformer, decoder,
                               seq2seq, cache)
           for name in module.__all__]
