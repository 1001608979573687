"""Activation functions by the names transformers configs use."""

from __future__ import annotations

from torch import nn


def get_activation(name: str) -> nn.Module:
    """Return the activation module for a config name ("relu", "gelu", "gelu_new", "swish", "silu", "tanh")."""
    table = {
        "relu": nn.ReLU,
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
