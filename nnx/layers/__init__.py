"""Layers: each computes its own forward and backward against the array API."""

from nnx.layers.activations import GELU, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from nnx.layers.base import Layer, Parameter
from nnx.layers.checks import set_finite_checks
from nnx.layers.container import Sequential
from nnx.layers.dropout import Dropout
from nnx.layers.linear import Linear
from nnx.layers.norm import BatchNorm1d, LayerNorm
from nnx.layers.shape import Flatten

__all__ = [
    "BatchNorm1d",
    "Dropout",
    "Flatten",
    "GELU",
    "Layer",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "set_finite_checks",
]
