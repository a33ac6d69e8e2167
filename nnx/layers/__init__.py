"""Layers: each computes its own forward and backward against the array API."""

from nnx.layers.activations import GELU, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from nnx.layers.base import Layer, Parameter
from nnx.layers.checks import set_finite_checks
from nnx.layers.collections import LayerDict, LayerList
from nnx.layers.container import Residual, Sequential
from nnx.layers.conv import Conv1d, Conv2d
from nnx.layers.dropout import Dropout
from nnx.layers.embedding import Embedding
from nnx.layers.linear import Linear
from nnx.layers.norm import BatchNorm1d, BatchNorm2d, LayerNorm
from nnx.layers.pooling import AvgPool2d, GlobalAvgPool2d, MaxPool2d
from nnx.layers.preprocess import ClassLabels, Destandardize, Standardize
from nnx.layers.shape import Flatten, Mean, Reshape
from nnx.layers.recurrent import GRU, LSTM
from nnx.layers.recurrent_cells import GRUCell, LSTMCell
from nnx.layers.attention import (MultiHeadAttention, scaled_dot_product_attention,
                                  scaled_dot_product_attention_backward)
from nnx.layers.transformer import PositionalEmbedding, SinusoidalPositions, TransformerBlock, sinusoidal_positions
from nnx.layers.decoder import TransformerDecoderBlock
from nnx.layers.cache import KVCache
from nnx.layers.seq2seq import TransformerSeq2Seq

__all__ = [
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "ClassLabels",
    "Conv1d",
    "Conv2d",
    "Destandardize",
    "Dropout",
    "Embedding",
    "Flatten",
    "GELU",
    "GlobalAvgPool2d",
    "Layer",
    "LayerDict",
    "LayerList",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "MaxPool2d",
    "Mean",
    "Parameter",
    "ReLU",
    "Reshape",
    "Residual",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Standardize",
    "Tanh",
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
    "TransformerDecoderBlock",
    "KVCache",
    "TransformerSeq2Seq",
    "scaled_dot_product_attention",
    "scaled_dot_product_attention_backward",
    "sinusoidal_positions",
]
