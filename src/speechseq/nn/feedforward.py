"""Position-wise feed-forward block."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .activations import get_activation
from .linear import Linear

_SLICE_ELEMENTS = 2**20  # inner activations per slice: 4 MB of float32


class FeedForward(nn.Module):
    """Linear -> activation -> dropout -> Linear (the transformer FFN)."""

    def __init__(
        self, d_model: int, ffn_dim: int, activation: str = "relu", dropout: float = 0.0, bias: bool = True
    ):
        super().__init__()
        self.fc1 = Linear(d_model, ffn_dim, bias=bias)
        self.activation = get_activation(activation, inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = Linear(ffn_dim, d_model, bias=bias)

    def forward(self, hidden: Tensor) -> Tensor:
        # Long inputs (an encoder over a batch of clips) run in slices of rows, so that the inner activations
        # (4x wider than the model) stay small: in cache between the two products, and reused from the heap
        # instead of a fresh tensor of tens of MB (page faults, peak memory) per layer. Rows are independent.
        rows = hidden.numel() // hidden.shape[-1]
        step = max(1, _SLICE_ELEMENTS // self.fc1.out_features)
        if rows <= step:
            return self._block(hidden)
        flat = hidden.reshape(rows, hidden.shape[-1])
        return torch.cat([self._block(part) for part in flat.split(step)]).view(*hidden.shape[:-1], -1)

    def _block(self, hidden: Tensor) -> Tensor:
        inner = self.activation(self.fc1(hidden))
        return self.fc2(self.dropout(inner) if self.training else inner)
