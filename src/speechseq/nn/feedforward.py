"""Position-wise feed-forward block."""

from __future__ import annotations

from torch import Tensor, nn

from .activations import get_activation
from .linear import Linear


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
        inner = self.activation(self.fc1(hidden))
        return self.fc2(self.dropout(inner) if self.training else inner)
