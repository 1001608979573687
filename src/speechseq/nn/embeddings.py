"""Learned absolute positions for token decoders (MBart, BERT, GPT-2)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class LearnedPositions(nn.Module):
    """A learned table indexed by absolute position (past_length + t) + offset, the same for every token id.

    Unlike the fairseq sinusoids, these positions are not padding-aware: a pad token still advances the count,
    as in transformers' MBart, BERT and GPT-2.

    Args:
        num_positions: Longest sequence the table covers.
        dim: Embedding width.
        offset: Leading rows that are never used (MBart keeps 2 for fairseq's padding convention).
        token_types: Size of BERT's token-type table; its row 0 is added to every position (decoders have
            one segment), 0 for none.
    """

    def __init__(self, num_positions: int, dim: int, offset: int = 0, token_types: int = 0):
        super().__init__()
        self.num_positions = num_positions
        self.offset = offset
        self.weight = nn.Parameter(torch.zeros(num_positions + offset, dim))
        self.token_types = nn.Embedding(token_types, dim) if token_types else None

    def forward(self, tokens: Tensor, past_length: int = 0) -> Tensor:
        """Return position vectors (B, T, D) for tokens (B, T) that follow past_length earlier tokens."""
        if isinstance(past_length, Tensor):  # a compiled step's tensor past: `reserve` checked the length
            at = past_length + self.offset + torch.arange(tokens.shape[1], device=tokens.device)
            rows = self.weight[at]
        else:
            self.reserve(past_length + tokens.shape[1])
            rows = self.weight[past_length + self.offset : past_length + tokens.shape[1] + self.offset]
        if self.token_types is not None:
            rows = rows + self.token_types.weight[0]
        return rows.unsqueeze(0).expand(tokens.shape[0], -1, -1)

    def reserve(self, length: int) -> None:
        """Refuse sequences longer than the learned table."""
        if length > self.num_positions:
            raise ValueError(
                f"the decoder input reaches position {length}, but this model has learned positions for "
                f"{self.num_positions} tokens only; use a shorter max_length"
            )
