"""Positional encodings."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sinusoidal_table(num_positions: int, dim: int, padding_idx: int | None) -> Tensor:
    """Build the fairseq/tensor2tensor table: [sin | cos] halves (not interleaved), zero row at padding_idx.

    Computed in float32 as fairseq does, so that values match checkpoints trained with it.
    """
    half = dim // 2
    step = math.log(10000) / (half - 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.int64).float() * -step)
    angles = torch.arange(num_positions, dtype=torch.int64).float()[:, None] * freqs[None, :]
    table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if dim % 2 == 1:
        table = torch.cat([table, torch.zeros(num_positions, 1)], dim=1)
    if padding_idx is not None:
        table[padding_idx] = 0
    return table


def make_positions(ids: Tensor, padding_idx: int, past_length: int = 0) -> Tensor:
    """Number non-padding symbols from padding_idx + 1 on; padding symbols get padding_idx (fairseq make_positions)."""
    keep = ids.ne(padding_idx).long()
    return (torch.cumsum(keep, dim=1) + past_length) * keep + padding_idx


class SinusoidalPositions(nn.Module):
    """Padding-aware sinusoidal positions (fairseq S2T and Speech2Text2), grown on demand.

    The table is a non-persistent buffer: it is derived, never loaded (older checkpoints that store it are
    handled by the key maps, which drop those keys).
    """

    def __init__(self, num_positions: int, dim: int, padding_idx: int):
        super().__init__()
        self.dim = dim
        self.padding_idx = padding_idx
        # fairseq reserves padding_idx + 1 leading rows; transformers builds num_positions + 2 rows.
        self.register_buffer("table", sinusoidal_table(num_positions + 2, dim, padding_idx), persistent=False)

    def forward(self, ids: Tensor, past_length: int = 0) -> Tensor:
        """Return position vectors (B, T, D) for ids (B, T) that follow past_length earlier symbols."""
        positions = make_positions(ids, self.padding_idx, past_length)
        needed = self.padding_idx + 1 + ids.shape[1] + past_length
        if needed > self.table.shape[0] or int(positions.max()) >= self.table.shape[0]:
            size = max(needed, int(positions.max()) + 1) + 2
            self.table = sinusoidal_table(size, self.dim, self.padding_idx).to(self.table)
        return self.table[positions]
