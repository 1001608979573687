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


_FIRST_ROWS = 512  # sinusoidal rows built up front; more on demand


class SinusoidalPositions(nn.Module):
    """Padding-aware sinusoidal positions (fairseq S2T and Speech2Text2), grown on demand.

    The table is a non-persistent buffer: it is derived, never loaded (older checkpoints that store it are
    handled by the key maps, which drop those keys).
    """

    def __init__(self, num_positions: int, dim: int, padding_idx: int):
        super().__init__()
        self.dim = dim
        self.padding_idx = padding_idx
        # fairseq reserves padding_idx + 1 leading rows; transformers builds num_positions + 2 rows. Each row
        # depends on its position alone, so the table starts small and grows as longer inputs come (an
        # s2t-small encoder's full table is 6 MB, of which 10 s of audio reads 0.3 MB).
        rows = min(num_positions + 2, padding_idx + 1 + _FIRST_ROWS)
        self.register_buffer("table", sinusoidal_table(rows, dim, padding_idx), persistent=False)

    def forward(self, ids: Tensor, past_length: int = 0) -> Tensor:
        """Return position vectors (B, T, D) for ids (B, T) that follow past_length earlier symbols."""
        positions = make_positions(ids, self.padding_idx, past_length)
        if not isinstance(past_length, Tensor):  # a compiled step's tensor past: `reserve` grew the table
            self.reserve(ids.shape[1] + past_length)
        return self.table[positions]

    def reserve(self, length: int) -> None:
        """Grow the table to cover sequences of `length` symbols."""
        # No position exceeds padding_idx + length: the sizes alone tell whether the table must grow.
        needed = self.padding_idx + 1 + length
        if needed > self.table.shape[0]:
            rows = max(needed + 2, 2 * self.table.shape[0])  # doubling: a decoder step is not a rebuild
            self.table = sinusoidal_table(rows, self.dim, self.padding_idx).to(self.table)


class ConvPositions(nn.Module):
    """Convolutional positions (wav2vec 2.0, HuBERT): a grouped Conv1d over time, added to its input by the caller.

    The kernel is weight-normalised per tap (`weight_norm(dim=2)`), or, with batch_norm (HuBERT's
    conv_pos_batch_norm), plain and preceded by BatchNorm1d. An even kernel yields one frame too many; the
    last is dropped so that the output keeps the input length.

    Args:
        d_model: Width of the hidden states.
        kernel_size: Frames the convolution spans.
        groups: Convolution groups.
        activation: Applied to the convolution output; GELU when None.
        batch_norm: Use BatchNorm1d before a plain kernel instead of weight norm.
    """

    def __init__(
        self,
        d_model: int,
        kernel_size: int,
        groups: int,
        activation: nn.Module | None = None,
        batch_norm: bool = False,
    ):
        super().__init__()
        self.batch_norm = nn.BatchNorm1d(d_model) if batch_norm else None
        conv = nn.Conv1d(d_model, d_model, kernel_size, padding=kernel_size // 2, groups=groups)
        # A parametrization keeps g and v as the parameters (state-dict names ...parametrizations.weight.original0/1)
        # and recomputes the kernel from them on each call with the same op as transformers, so values agree exactly.
        self.conv = conv if batch_norm else nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
        self.trim = 1 - kernel_size % 2
        self.activation = activation if activation is not None else nn.GELU()

    def forward(self, hidden: Tensor) -> Tensor:
        """Return position embeddings (B, T, D) for hidden states (B, T, D)."""
        hidden = hidden.transpose(1, 2)
        if self.batch_norm is not None:
            hidden = self.batch_norm(hidden)
        hidden = self.conv(hidden)
        if self.trim:
            hidden = hidden[:, :, :-1]
        return self.activation(hidden).transpose(1, 2)
