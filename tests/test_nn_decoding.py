"""Decoding building blocks: column-major Linear, KVCache reorder, cross-attention memory shared by beams."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from speechseq.nn import native
from speechseq.nn.attention import MultiHeadAttention
from speechseq.nn.cache import KVCache
from speechseq.nn.linear import Linear
from speechseq.nn.transformer import MemoryKV


@pytest.mark.parametrize("kernel", [True, False])
def test_linear_layout_changes_nothing_but_strides(kernel, monkeypatch):
    # Wide weights are stored transposed where the few-row kernel is not built (nn/linear.py).
    monkeypatch.setattr(native, "available", lambda: kernel)
    torch.manual_seed(0)
    wide, narrow = Linear(8, 24), Linear(24, 8)
    layout = (8, 1) if kernel else (1, 24)
    assert wide.weight.stride() == layout and narrow.weight.is_contiguous()
    reference = nn.Linear(8, 24)
    reference.load_state_dict(wide.state_dict())
    features = torch.randn(3, 5, 8)
    assert torch.allclose(wide(features), reference(features), atol=1e-6)
    new = {name: torch.randn_like(value) for name, value in wide.state_dict().items()}
    wide.load_state_dict(new)
    assert wide.weight.stride() == layout and torch.equal(wide.weight, new["weight"])


def test_cache_reorder_selects_rows_across_growth():
    cache = KVCache(num_layers=2, batch_size=3, num_heads=2, head_dim=4, max_length=2, like=torch.zeros(0))
    history = []
    # All rows moved, none moved, a swap with a row kept (these two gather into the second buffer), and one
    # row copied over another (in place).
    indexes = [[2, 0, 0], [0, 1, 2], [1, 0, 2], [0, 1, 1], [2, 0, 0]]
    for step in range(5):  # capacity 2: grows on the way
        keys = torch.full((3, 2, 1, 4), float(step)) + torch.arange(3.0)[:, None, None, None] * 10
        for layer in range(2):
            cache.update(layer, keys + layer, -keys)
        cache.advance(1)
        history.append(keys)
        index = torch.tensor(indexes[step])
        cache.reorder(index)
        history = [h[index] for h in history]
    expected = torch.cat(history, dim=2)
    stored_keys, stored_values = cache.update(1, torch.zeros(3, 2, 1, 4), torch.zeros(3, 2, 1, 4))
    assert torch.equal(stored_keys[:, :, :5], expected + 1) and torch.equal(
        stored_values[:, :, :5], -expected
    )


def test_memory_shared_by_beams_equals_repeated_rows():
    torch.manual_seed(0)
    attention = MultiHeadAttention(16, 4).eval()
    source, padding = torch.randn(2, 7, 16), torch.tensor([[False] * 7, [False] * 5 + [True] * 2])
    keys, values = attention.project_kv(source)
    memory = MemoryKV([keys], [values], ~padding[:, None, None, :]).repeat(3)
    hidden = torch.randn(6, 2, 16)
    expected = attention.attend(
        hidden,
        keys.repeat_interleave(3, 0),
        values.repeat_interleave(3, 0),
        memory.mask.repeat_interleave(3, 0),
        False,
    )
    assert torch.allclose(memory.attend(attention, hidden, 0), expected, atol=1e-6)
