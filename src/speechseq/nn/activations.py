"""Activation functions by the names transformers configs use."""

from __future__ import annotations

from torch import nn


def get_activation(name: str, inplace: bool = False) -> nn.Module:
    """Return the activation module for a config name ("relu", "gelu", "gelu_new", "swish", "silu", "tanh").

    inplace=True lets ReLU overwrite its input (the others have no in-place form): safe, also for autograd,
    where nothing else reads that input, as after the first projection of a feed-forward block. It saves
    allocating, and page-faulting in, a second tensor as large as the block's widest one.
    """
    table = {
        "relu": lambda: nn.ReLU(inplace=inplace),
        "gelu": nn.GELU,
        "gelu_new": lambda: nn.GELU(approximate="tanh"),
        "gelu_pytorch_tanh": lambda: nn.GELU(approximate="tanh"),
        "swish": nn.SiLU,
        "silu": nn.SiLU,
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
    }
    if name not in table:
        raise ValueError(f"unknown activation function {name!r}; expected one of {sorted(table)}")
    return table[name]()
