"""A Linear layer whose weight lies in memory in the order that a decoding step reads fastest."""

from __future__ import annotations

from torch import nn


class Linear(nn.Linear):
    """nn.Linear whose weight is stored transposed when the layer has at least as many outputs as inputs.

    A decoding step multiplies one row, or a few, by every weight matrix, so its cost is reading the weights.
    MKL reads them 1.4-2x faster when their rows in memory are long: stored (in, out) for a wide layer, as
    here, and (out, in) as usual for a narrow one such as the FFN's second projection (README, Performance).
    Products of many rows (the encoder) run at the same speed either way. `weight` keeps its (out, in)
    shape, name and values, so state dicts, checkpoints and F.linear see no difference.
    """

    def reset_parameters(self) -> None:
        # nn.Linear.__init__ allocates the weight (out, in) and then calls this: lay a wide weight out column by
        # column (strides (1, out)) first, so that it is initialised in place, or left for a checkpoint under
        # checkpoints.skip_init, without a copy.
        if self.out_features >= self.in_features and not self.weight.t().is_contiguous():
            self.weight = nn.Parameter(self.weight.new_empty(self.in_features, self.out_features).t())
        super().reset_parameters()
