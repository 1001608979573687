"""A Linear layer whose weight lies in memory in the order that a decoding step reads fastest."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import native


class Linear(nn.Linear):
    """nn.Linear whose products of a few rows (decoding steps) run on the few-row kernel (nn/native.py).

    Where the kernel cannot be built, a layer with at least as many outputs as inputs stores its weight
    transposed instead: MKL reads one row's product 1.4-2x faster when the weight's rows in memory are
    long (README, Performance). The kernel reads the usual (out, in) order fastest. Either way `weight`
    keeps its (out, in) shape, name and values, so state dicts, checkpoints and F.linear see no difference.
    """

    def reset_parameters(self) -> None:
        # nn.Linear.__init__ allocates the weight (out, in) and then calls this: lay a wide weight out column by
        # column (strides (1, out)) first, so that it is initialised in place, or left for a checkpoint under
        # checkpoints.skip_init, without a copy.
        wide = self.out_features >= self.in_features
        if wide and not native.available() and not self.weight.t().is_contiguous():
            self.weight = nn.Parameter(self.weight.new_empty(self.in_features, self.out_features).t())
        super().reset_parameters()

    def forward(self, input: Tensor) -> Tensor:
        if not torch.compiler.is_compiling():
            out = native.few_rows_linear(input, self.weight, self.bias)
            if out is not None:
                return out
        return F.linear(input, self.weight, self.bias)
