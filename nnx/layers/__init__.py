"""Layers: each computes its own forward and backward against the array API."""

from nnx.layers.activations import ReLU, Sigmoid, Tanh, sigmoid
from nnx.layers.base import Layer, Parameter
from nnx.layers.container import Sequential
from nnx.layers.linear import Linear

__all__ = ["Layer", "Linear", "Parameter", "ReLU", "Sequential", "Sigmoid", "Tanh", "sigmoid"]
