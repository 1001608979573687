"""Decoder caches: a preallocated self-attention cache that grows in place, and cross-attention keys/values."""

from __future__ import annotations

import torch
from torch import Tensor


class KVCache:
    """Self-attention keys and values of every decoder layer, preallocated for max_length steps.

    Layers write their new keys/values at `length` with `update`; the search calls `advance` once the step
    has run through every layer, and `reorder` after a beam step. A reorder gathers the used part into a
    second buffer and swaps the two, so that a beam step copies the cache once and allocates nothing.
    """

    def __init__(
        self, num_layers: int, batch_size: int, num_heads: int, head_dim: int, max_length: int, like: Tensor
    ):
        shape = (num_layers, batch_size, num_heads, max_length, head_dim)
        # Only positions below `length` are ever read, so the buffers need no initial values.
        keys = torch.empty(shape, dtype=like.dtype, device=like.device)
        self._use(keys, torch.empty_like(keys))
        self._spare: tuple[Tensor, Tensor] | None = None  # reorder target, made on the first reorder
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
        if self._spare is None:
            self._spare = (torch.empty_like(self.keys), torch.empty_like(self.values))
        used = slice(0, self.length)
        for source, target in zip((self.keys, self.values), self._spare, strict=True):
            torch.index_select(source[:, :, :, used], 1, index, out=target[:, :, :, used])
        spare = self.keys, self.values
        self._use(*self._spare)
        self._spare = spare

    def _grow(self, needed: int) -> None:
        extra = max(needed, 2 * self.capacity) - self.capacity
        pad = list(self.keys.shape)
        pad[3] = extra
        grown = [torch.cat([part, part.new_empty(pad)], dim=3) for part in (self.keys, self.values)]
        self._use(*grown)
        self._spare = None
