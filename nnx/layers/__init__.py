"""Layers: each computes its own forward and backward against the array API."""

from nnx.layers import activations, norm
from nnx.layers.activations import *  # noqa: F403 (each activation is one entry there)
from nnx.layers.base import Layer, Parameter
from nnx.layers.checks import set_finite_checks
from nnx.layers.collections import LayerDict, LayerList
from nnx.layers.container import Residual, Sequential
from nnx.layers.conv import Conv1d, Conv2d
from nnx.layers.dropout import Dropout
from nnx.layers.embedding import Embedding
from nnx.layers.linear import Linear
from nnx.layers.norm import *  # noqa: F403
from nnx.layers.pooling import AvgPool2d, GlobalAvgPool2d, MaxPool2d
from nnx.layers.preprocess import ClassLabels, Destandardize, Standardize
from nnx.layers.shape import Flatten, Mean, Reshape
from nnx.layers.recurrent import GRU, LSTM
from nnx.layers.recurrent_cells import GRUCell, LSTMCell
from nnx.layers.attention import (MultiHeadAttention, scaled_dot_product_attention,
                                  scaled_dot_product_attention_backward)
from nnx.layers.transformer import PositionalEmbedding, SinusoidalPositions, TransformerBlock, sinusoidal_positions

__all__ = [
    *activations.__all__,
    *norm.__all__,
    "AvgPool2d",
    "ClassLabels",
    "Conv1d",
    "Conv2d",
    "Destandardize",
    "Dropout",
    "Embedding",
    "Flatten",
    "GlobalAvgPool2d",
    "Layer",
    "LayerDict",
    "LayerList",
    "Linear",
    "MaxPool2d",
    "Mean",
    "Parameter",
    "Reshape",
    "Residual",
    "Sequential",
    "Standardize",
    "set_finite_checks",
    "GRU",
    "GRUCell",
    "LSTM",
    "LSTMCell",
    # attention and transformers
    "MultiHeadAttention",
    "PositionalEmbedding",
    "SinusoidalPositions",
    "TransformerBlock",
    "scaled_dot_product_attention",
    "scaled_dot_product_attention_backward",
    "sinusoidal_positions",
]
