"""Padding masks and length arithmetic. Convention: padding_mask is True at padded positions."""

from __future__ import annotations

import torch
from torch import Tensor


def lengths_to_padding_mask(lengths: Tensor, max_length: int) -> Tensor:
    """Return a (B, T) bool mask, True where position >= length."""
    positions = torch.arange(max_length, device=lengths.device)
    return positions[None, :] >= lengths[:, None]


def key_mask(padding_mask: Tensor | None) -> Tensor | None:
    """Turn a (B, S) padding mask into the (B, 1, 1, S) keep-mask that scaled_dot_product_attention takes."""
    if padding_mask is None or not bool(padding_mask.any()):
        return None
    return ~padding_mask[:, None, None, :]
