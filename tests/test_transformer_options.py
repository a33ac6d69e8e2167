"""TransformerBlock's bias=, init= (GPT-2's by name) and dropout=, and their checks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import nnx


def test_bias_false_leaves_out_the_products_biases_and_survives_a_file(tmp_path: Path) -> None:
    block = nnx.TransformerBlock(8, 2, bias=False, seed=0, dtype="float64")
    assert sorted(block.state_dict()) == ["attn.in_proj_weight", "attn.out_proj_weight", "fc1.weight", "fc2.weight",
                                          "norm1.bias", "norm1.weight", "norm2.bias", "norm2.weight"]
    back = nnx.load(nnx.save(block, tmp_path / "b.nnx"))
    x = np.random.default_rng(0).normal(size=(2, 3, 8))
    np.testing.assert_array_equal(back.forward(x), block.forward(x))


def test_gpt2_init_draws_by_name() -> None:
    layers = 6
    block = nnx.TransformerBlock(96, 4, init="gpt2", num_blocks=layers, seed=0, dtype="float64")
    residual = 0.02 / math.sqrt(2 * layers)
    for p, std in ((block.attn.in_proj_weight, 0.02), (block.fc1.weight, 0.02),
                   (block.attn.out_proj_weight, residual), (block.fc2.weight, residual)):
        n = p.size
        # the sample std of n normal draws is within 5 standard errors (std / sqrt(2n)) of std
        assert abs(float(np.std(p.data)) - std) < 5 * std / math.sqrt(2 * n), p
        assert abs(float(np.mean(p.data))) < 5 * std / math.sqrt(n), p
    for p in (block.attn.in_proj_bias, block.attn.out_proj_bias, block.fc1.bias, block.fc2.bias):
        assert not np.any(p.data)
    again = nnx.TransformerBlock(96, 4, init="gpt2", num_blocks=layers, seed=0, dtype="float64")
    assert all(np.array_equal(a.data, b.data) for a, b in zip(block.parameters(), again.parameters()))


def test_dropout_applies_in_training_only() -> None:
    block = nnx.TransformerBlock(8, 2, dropout=0.5, seed=0, dtype="float64")
    x = np.random.default_rng(0).normal(size=(2, 3, 8))
    with block.inference():
        a, b = block.forward(x), block.forward(x)
    assert np.array_equal(a, b)
    c = block.forward(x)
    assert not np.allclose(c, a)


@pytest.mark.parametrize("kwargs, phrase", [({"init": "xavier"}, "init must be one of"),
                                            ({"bias": "no"}, "bias must be True or False"),
                                            ({"num_blocks": 0}, "num_blocks")])
def test_bad_arguments_are_named(kwargs: dict, phrase: str) -> None:
    with pytest.raises((ValueError, TypeError), match=phrase):
        nnx.TransformerBlock(8, 2, **kwargs)
