"""Blocks that run long inputs in slices, or build tables as needed, give what one pass would give."""

from __future__ import annotations

import torch

from speechseq.nn import feedforward, positions, subsampling
from speechseq.nn.feedforward import FeedForward
from speechseq.nn.positions import SinusoidalPositions, sinusoidal_table
from speechseq.nn.subsampling import Conv1dSubsampler


def test_feedforward_slices_match_one_pass(monkeypatch):
    torch.manual_seed(0)
    block = FeedForward(8, 32).eval()
    hidden = torch.randn(3, 7, 8)  # 21 rows: slices of 4 rows leave a remainder of 1
    whole = block(hidden)
    monkeypatch.setattr(feedforward, "_SLICE_ELEMENTS", 4 * 32)
    sliced = block(hidden)
    assert sliced.shape == whole.shape and torch.allclose(sliced, whole, atol=1e-6)
    hidden.requires_grad_(True)
    block.train()
    block(hidden).sum().backward()  # in-place ReLU and slices keep autograd working
    assert hidden.grad is not None and torch.isfinite(hidden.grad).all()


def test_subsampler_slices_match_one_pass(monkeypatch):
    torch.manual_seed(0)
    sub = Conv1dSubsampler(6, 16, 4, kernel_sizes=(5, 5)).eval()
    features = torch.randn(5, 23, 6)
    whole = sub(features)
    monkeypatch.setattr(subsampling, "_SLICE_ELEMENTS", 2 * 16 * 12)  # two items per slice
    assert torch.allclose(sub(features), whole, atol=1e-6)


def test_sinusoid_table_grows_to_the_full_table(monkeypatch):
    monkeypatch.setattr(positions, "_FIRST_ROWS", 3)
    table = SinusoidalPositions(num_positions=50, dim=6, padding_idx=1)
    assert table.table.shape[0] == 5
    ids = torch.full((2, 40), 7)
    ids[1, :4] = 1  # left padding
    out = table(ids)
    full = sinusoidal_table(52, 6, padding_idx=1)
    expected = torch.stack([full[2:42], torch.cat([full[1:2].expand(4, 6), full[2:38]])])
    assert torch.equal(out, expected)
