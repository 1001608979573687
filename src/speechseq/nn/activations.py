"""Activation functions by the names transformers configs use (its ACT2FN table), with its formulas."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..errors import CheckpointError

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


class _Formula(nn.Module):
    """An activation written as a formula (transformers' Python activations, in the same operations)."""

    def __init__(self, name: str, formula: Callable[[Tensor], Tensor]):
        super().__init__()
        self.name, self.formula = name, formula

    def forward(self, x: Tensor) -> Tensor:
        return self.formula(x)

    def extra_repr(self) -> str:
        return self.name


_FORMULAS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu_fast": lambda x: 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x))),
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
    "gelu_python": lambda x: x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0))),
    "gelu_python_tanh": lambda x: (
        x * 0.5 * (1.0 + torch.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * torch.pow(x, 3.0))))
    ),
    "gelu_accurate": lambda x: 0.5 * x * (1 + torch.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * torch.pow(x, 3)))),
    "gelu_10": lambda x: torch.clip(nn.functional.gelu(x), -10, 10),
    "relu2": lambda x: torch.square(nn.functional.relu(x)),
    "linear": lambda x: x,
}


def get_activation(name: str, inplace: bool = False) -> nn.Module:
    """Return the activation module for a config name ("relu", "gelu", "gelu_new", "swish", ...).

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
        "mish": nn.Mish,
        "relu6": nn.ReLU6,
        "leaky_relu": nn.LeakyReLU,
        "hardswish": nn.Hardswish,
    }
    if name in _FORMULAS:
        return _Formula(name, _FORMULAS[name])
    if name not in table:
        known = sorted([*table, *_FORMULAS])
        raise CheckpointError(
            f"the model config names activation function {name!r}, which is not one of {known}"
        )
    return table[name]()
