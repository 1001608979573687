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

    A native step (nn/native_decoder.py) reads the cache through `origin` instead, and a reorder after one
    moves no keys or values at all: origin[p, r] names the buffer row that holds row r's keys and values
    at position p, and a reorder permutes that table of ints. The torch layers, which read rows as they
    lie, first move every row's keys and values to where the table says (`_settle`).
    """

    def __init__(
        self, num_layers: int, batch_size: int, num_heads: int, head_dim: int, max_length: int, like: Tensor
    ):
        shape = (2, num_layers, batch_size, num_heads, max_length, head_dim)
        # Only positions below `length` are ever read, so the buffer needs no initial values.
        self._use(torch.empty(shape, dtype=like.dtype, device=like.device))
        self._spare: Tensor | None = None  # the second buffer of a full reorder, made on first need
        self._finite = False  # whether unwritten positions hold finite values (what a CacheView needs)
        self._origin: Tensor | None = None  # (capacity, B) int32 row table; None: row r's own row throughout
        self._by_table = False  # whether reorders permute `_origin` (once a native step has read it)
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
        self._settle()
        steps = keys.shape[2]
        if self.length + steps > self.capacity:
            self._grow(self.length + steps)
        layer_keys, layer_values = self._layers[layer]
        layer_keys.narrow(2, self.length, steps).copy_(keys)
        layer_values.narrow(2, self.length, steps).copy_(values)
        return layer_keys.narrow(2, 0, self.length + steps), layer_values.narrow(2, 0, self.length + steps)

    def native_buffers(self, steps: int) -> tuple[Tensor, Tensor | None]:
        """For a step that writes its keys and values at `length` itself (nn/native_decoder.py): the whole
        buffer (2, layers, B, H, capacity, Dh), with room for `steps` more positions, and the row table
        (capacity, B) to read it through (None: each row's own). Later reorders permute the table."""
        if self.length + steps > self.capacity:
            self._grow(self.length + steps)
        self._by_table = True
        return self._both, self._origin

    def _settle(self) -> None:
        """Move each row's keys and values to its own buffer row, as the row table says, for torch layers."""
        self._by_table = False
        if self._origin is None:
            return
        origin, self._origin = self._origin, None
        used = self._both.narrow(4, 0, self.length)
        index = origin[: self.length].t().long()  # (B, length): the buffer row of each row's position
        shape = used.shape
        index = index[None, None, :, None, :, None].expand(shape[0], shape[1], -1, shape[3], -1, shape[5])
        used.copy_(torch.gather(used, 2, index))

    @property
    def past(self) -> int:
        """Positions already cached (what the decoder's position encoding counts from)."""
        return self.length

    def mask(self, steps: int) -> Tensor | None:
        """Causal keep-mask (steps, length + steps) for the new queries; None for one query (it sees all)."""
        if steps == 1:
            return None
        return causal_keep_mask(self.length + steps, self.length, steps, self._both.device)

    def advance(self, steps: int) -> None:
        self.length += steps

    def view(self) -> CacheView:
        """The cache as a compiled step takes it: whole buffers and the write position as a tensor."""
        self._settle()
        if not self._finite:
            # The view's attention reads every position, weighting the unwritten ones by exactly 0; 0 times
            # whatever torch.empty left there could be NaN.
            self._both.narrow(4, self.length, self.capacity - self.length).zero_()
            self._spare, self._finite = None, True  # a spare made before is remade zeroed on first need
        position = torch.tensor(self.length, device=self._both.device)
        return CacheView(self.keys, self.values, position)

    def reorder(self, index: Tensor) -> None:
        """Select batch rows (beam search): row i becomes former row index[i]."""
        if self._by_table:
            if self._origin is None:
                self._origin = self._own_rows(self.capacity)
            # Positions from `length` on stay each row's own: they are written next.
            used = self._origin.narrow(0, 0, self.length)
            used.copy_(used[:, index])
            return
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
            self._spare = torch.zeros_like(self._both) if self._finite else torch.empty_like(self._both)
        torch.index_select(used, 2, index, out=self._spare.narrow(4, 0, self.length))
        spare = self._both
        self._use(self._spare)
        self._spare = spare

    def _grow(self, needed: int) -> None:
        extra = max(needed, 2 * self.capacity) - self.capacity
        pad = list(self._both.shape)
        pad[4] = extra
        extension = self._both.new_zeros(pad) if self._finite else self._both.new_empty(pad)
        self._use(torch.cat([self._both, extension], dim=4))
        self._spare = None
        if self._origin is not None:
            self._origin = torch.cat([self._origin, self._own_rows(extra)])

    def _own_rows(self, positions: int) -> Tensor:
        """A row table (positions, B) in which every row reads its own buffer row."""
        rows = torch.arange(self._both.shape[2], dtype=torch.int32, device=self._both.device)
        return rows.repeat(positions, 1)


class CacheView:
    """A KVCache's buffers seen by a compiled decoder step: every step runs the same graph.

    The write position is a tensor, not a Python int, and attention reads the whole buffer with a mask that
    hides the positions not yet written, so no shape depends on the step. The KVCache that made the view
    advances itself after the step; `advance` here does nothing.
    """

    def __init__(self, keys: Tensor, values: Tensor, position: Tensor):
        self.keys, self.values, self.past = keys, values, position

    def update(self, layer: int, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        at = self.past + torch.arange(keys.shape[2], device=keys.device)
        self.keys[layer].index_copy_(2, at, keys)
        self.values[layer].index_copy_(2, at, values)
        return self.keys[layer], self.values[layer]

    def mask(self, steps: int) -> Tensor:
        return causal_keep_mask(self.keys.shape[3], self.past, steps, self.keys.device)

    def advance(self, steps: int) -> None:
        pass


def causal_keep_mask(num_keys: int, past: int | Tensor, steps: int, device: torch.device) -> Tensor:
    """Keep-mask (steps, num_keys): query t (at position past + t) sees the keys at positions <= its own."""
    keys = torch.arange(num_keys, device=device)
    queries = torch.arange(steps, device=device) + past
    return keys[None, :] <= queries[:, None]
