"""Decoder caches: a preallocated self-attention cache that grows in place, and cross-attention keys/values."""

from __future__ import annotations

import torch
from torch import Tensor


class KVCache:
    """Self-attention keys and values of every decoder layer, preallocated for max_length steps.

    Layers write their new keys/values at `length` with `update`; the search calls `advance` once the step
    has run through every layer, and `reorder` after a beam step. A reorder copies only the rows that take
    another row's history: most beam steps keep most beams in place, and copying the whole cache on every
    step would cost as much as the attention that reads it.
    """

    def __init__(
        self, num_layers: int, batch_size: int, num_heads: int, head_dim: int, max_length: int, like: Tensor
    ):
        shape = (num_layers, batch_size, num_heads, max_length, head_dim)
        # Only positions below `length` are ever read, so the buffers need no initial values.
        keys = torch.empty(shape, dtype=like.dtype, device=like.device)
        self._use(keys, torch.empty_like(keys))
        self.length = 0

    def _use(self, keys: Tensor, values: Tensor) -> None:
        self.keys, self.values = keys, values
        self._layers = list(zip(keys.unbind(0), values.unbind(0), strict=True))  # per-layer views

    @property
    def capacity(self) -> int:
        return self.keys.shape[3]

    def update(self, layer: int, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        """Store keys/values (B, H, t, Dh) after the cached ones; return all of them for this layer."""
        steps = keys.shape[2]
        if self.length + steps > self.capacity:
            self._grow(self.length + steps)
        layer_keys, layer_values = self._layers[layer]
        layer_keys.narrow(2, self.length, steps).copy_(keys)
        layer_values.narrow(2, self.length, steps).copy_(values)
        return layer_keys.narrow(2, 0, self.length + steps), layer_values.narrow(2, 0, self.length + steps)

    def advance(self, steps: int) -> None:
        self.length += steps

    def reorder(self, index: Tensor) -> None:
        """Select batch rows (beam search): row i becomes former row index[i]."""
        moved = (index != torch.arange(index.numel(), device=index.device)).nonzero().squeeze(1)
        if moved.numel() == 0:
            return
        sources = index[moved]
        for part in (self.keys, self.values):
            used = part.narrow(3, 0, self.length)
            # index_select copies the source rows out first, so rows that are both read and written are safe.
            used.index_copy_(1, moved, used.index_select(1, sources))

    def _grow(self, needed: int) -> None:
        extra = max(needed, 2 * self.capacity) - self.capacity
        pad = list(self.keys.shape)
        pad[3] = extra
        grown = [torch.cat([part, part.new_empty(pad)], dim=3) for part in (self.keys, self.values)]
        self._use(*grown)
