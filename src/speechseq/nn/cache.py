"""Decoder caches: a preallocated self-attention cache that grows in place, and cross-attention keys/values."""

from __future__ import annotations

import torch
from torch import Tensor


class KVCache:
    """Self-attention keys and values of every decoder layer, preallocated for max_length steps.

    Layers write their new keys/values at `length` with `update`; the search calls `advance` once the step
    has run through every layer, and `reorder` after a beam step. A reorder touches only the used positions,
    and copies either the rows that take another row's history or, when most rows do, every row into a
    second buffer: whichever moves fewer bytes.
    """

    def __init__(
        self, num_layers: int, batch_size: int, num_heads: int, head_dim: int, max_length: int, like: Tensor
    ):
        shape = (2, num_layers, batch_size, num_heads, max_length, head_dim)
        # Only positions below `length` are ever read, so the buffer needs no initial values.
        self._use(torch.empty(shape, dtype=like.dtype, device=like.device))
        self._spare: Tensor | None = None  # the second buffer of a full reorder, made on first need
        self.length = 0

    def _use(self, both: Tensor) -> None:
        # Keys and values in one buffer, so that a beam step moves rows of both with one copy.
        self._both = both
        self.keys, self.values = both.unbind(0)
        self._layers = list(zip(self.keys.unbind(0), self.values.unbind(0), strict=True))  # per-layer views

    @property
    def capacity(self) -> int:
        return self._both.shape[4]

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
        used = self._both.narrow(4, 0, self.length)
        if 2 * moved.numel() <= index.numel():
            # In place: the moved rows are read into a temporary and written back (4 row copies per row).
            # Indexing copies them out first, so rows that are both read and written are safe; index_select
            # would first copy the whole strided cache into a contiguous tensor.
            used[:, :, moved] = used[:, :, index[moved]]
            return
        # Most rows move: gather every row into the second buffer (2 row copies per row) and swap.
        if self._spare is None:
            self._spare = torch.empty_like(self._both)
        torch.index_select(used, 2, index, out=self._spare.narrow(4, 0, self.length))
        spare = self._both
        self._use(self._spare)
        self._spare = spare

    def _grow(self, needed: int) -> None:
        extra = max(needed, 2 * self.capacity) - self.capacity
        pad = list(self._both.shape)
        pad[4] = extra
        self._use(torch.cat([self._both, self._both.new_empty(pad)], dim=4))
        self._spare = None
