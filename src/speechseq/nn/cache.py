"""Decoder caches: a preallocated self-attention cache that grows in place, and cross-attention keys/values."""

from __future__ import annotations

import torch
from torch import Tensor


class KVCache:
    """Self-attention keys and values of every decoder layer, preallocated for max_length steps.

    Layers write their new keys/values at `length` with `update`; the search calls `advance` once the step
    has run through every layer, and `reorder` after a beam step.
    """

    def __init__(
        self, num_layers: int, batch_size: int, num_heads: int, head_dim: int, max_length: int, like: Tensor
    ):
        shape = (num_layers, batch_size, num_heads, max_length, head_dim)
        self.keys = torch.zeros(shape, dtype=like.dtype, device=like.device)
        self.values = torch.zeros(shape, dtype=like.dtype, device=like.device)
        self.length = 0

    @property
    def capacity(self) -> int:
        return self.keys.shape[3]

    def update(self, layer: int, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        """Store keys/values (B, H, t, Dh) after the cached ones; return all of them for this layer."""
        end = self.length + keys.shape[2]
        if end > self.capacity:
            self._grow(end)
        self.keys[layer, :, :, self.length : end] = keys
        self.values[layer, :, :, self.length : end] = values
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]

    def advance(self, steps: int) -> None:
        self.length += steps

    def reorder(self, index: Tensor) -> None:
        """Select batch rows (beam search): row i becomes former row index[i]."""
        used = slice(0, self.length)
        self.keys[:, :, :, used] = self.keys[:, :, :, used].index_select(1, index)
        self.values[:, :, :, used] = self.values[:, :, :, used].index_select(1, index)

    def _grow(self, needed: int) -> None:
        extra = max(needed, 2 * self.capacity) - self.capacity
        pad = list(self.keys.shape)
        pad[3] = extra
        self.keys = torch.cat([self.keys, self.keys.new_zeros(pad)], dim=3)
        self.values = torch.cat([self.values, self.values.new_zeros(pad)], dim=3)
