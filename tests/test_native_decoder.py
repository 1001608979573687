"""The native decoder step (nn/native_decoder.py, nn/decoder_step.c): the torch layers' values, step by step,
and the torch layers wherever it does not apply."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from speechseq.nn import native, native_decoder
from speechseq.nn.decoder import TransformerDecoder
from speechseq.nn.positions import SinusoidalPositions
from speechseq.nn.transformer import LayerSpec

needs_kernel = pytest.mark.skipif(not native.available(), reason="native kernels not built (no cc or AVX2)")


def _decoder(
    d_model=32, heads=4, ffn=48, activation="relu", norm_first=True, kv_dim=None, layers=2, bias=True
):
    spec = LayerSpec(d_model, heads, ffn, activation, norm_first=norm_first, kv_dim=kv_dim)
    torch.manual_seed(0)
    decoder = TransformerDecoder(50, spec, layers, SinusoidalPositions(64, d_model, 1), 1, True).eval()
    with torch.no_grad():
        for name, param in decoder.named_parameters():
            if "norm" in name:  # LayerNorms away from (1, 0), so that a wrong weight or bias would show
                param.add_(torch.randn_like(param) * 0.3)
            if not bias and name.endswith("bias") and "norm" not in name:
                param.zero_()
    return decoder


def _decode(decoder, use_native, batch=2, group=1, steps=11, capacity=4, padded=True, source=None):
    """Hidden states of `steps` one-token steps, with a cache that grows and beam reorders on the way (rows
    taking other rows' histories, some twice). use_native: True, False, or the set of steps that run it."""
    torch.manual_seed(1)
    width = source or decoder.spec.d_model
    memory_states = torch.randn(batch, 9, width)
    padding = torch.zeros(batch, 9, dtype=torch.bool)
    if padded:
        padding[0, 6:] = True
    memory = decoder.build_memory(memory_states, padding)
    if group > 1:
        memory = memory.repeat(group)
    rows = batch * group
    cache = decoder.new_cache(rows, capacity, memory_states)
    tokens = torch.randint(2, 50, (steps, rows, 1))
    reorders = {index: torch.randint(0, rows, (rows,)) for index in (2, 4, 5, 8)}
    reorders[4] = torch.arange(rows).flip(0)
    outputs = []
    original = native_decoder.step
    try:
        for index in range(steps):
            native_here = use_native if isinstance(use_native, bool) else index in use_native
            native_decoder.step = original if native_here else (lambda *args: None)
            outputs.append(decoder(tokens[index], memory, cache))
            if index in reorders:
                cache.reorder(reorders[index])
    finally:
        native_decoder.step = original
    return torch.stack(outputs), memory


@needs_kernel
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"norm_first": False},
        {"activation": "gelu"},
        {"activation": "gelu_new", "norm_first": False},
        {"activation": "swish"},
        {"d_model": 20, "heads": 4, "ffn": 37},  # head width 5: no whole vector of 8
        {"d_model": 192, "heads": 2, "ffn": 130},  # head width 96: registers over two passes
        {"kv_dim": 24},
        {"bias": False},
    ],
)
@pytest.mark.parametrize("group", [1, 3])
def test_matches_the_torch_layers(options, group):
    source = options.get("kv_dim")
    decoder = _decoder(**options)
    with torch.inference_mode():
        expected, _ = _decode(decoder, False, group=group, source=source)
        got, memory = _decode(decoder, True, group=group, source=source)
    assert memory.native  # the native step ran
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=2e-5)


@needs_kernel
def test_unpadded_memory_and_many_rows():
    decoder = _decoder()
    with torch.inference_mode():
        expected, _ = _decode(decoder, False, batch=6, group=8, padded=False)
        got, memory = _decode(decoder, True, batch=6, group=8, padded=False)
    assert memory.native
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=2e-5)


@needs_kernel
def test_native_and_torch_steps_take_turns():
    # After native steps, reorders only permute the cache's row table; a torch step first moves the rows.
    decoder = _decoder()
    with torch.inference_mode():
        expected, _ = _decode(decoder, False, group=3)
        got, memory = _decode(decoder, {0, 1, 2, 3, 6, 7, 9, 10}, group=3)
    assert memory.native
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=2e-5)


@needs_kernel
def test_every_thread_count_gives_the_same_values(monkeypatch):
    decoder = _decoder(d_model=256, heads=4, ffn=512)
    results = []
    with torch.inference_mode():
        for threads in (1, 2, 3):
            monkeypatch.setattr(native, "_threads", lambda threads=threads: threads)
            results.append(_decode(decoder, True, group=2, steps=5)[0])
    assert torch.equal(results[0], results[1]) and torch.equal(results[0], results[2])


@pytest.mark.parametrize(
    "case", ["activation", "rows", "training", "float64", "kernel off", "mixed activations"]
)
def test_falls_back_to_the_torch_layers(case, monkeypatch):
    decoder = _decoder(activation="tanh" if case == "activation" else "relu")
    if case == "mixed activations":
        decoder.layers[1].ffn.activation = nn.GELU()
    if case == "training":
        decoder.train()
    if case == "float64":
        decoder.double()
    if case == "kernel off":
        monkeypatch.setattr(native, "_load", lambda: None)
    batch, group = (7, 7) if case == "rows" else (2, 1)  # 49 rows: over MAX_ROWS
    memory_states = torch.randn(batch, 5, 32, dtype=next(decoder.parameters()).dtype)
    with torch.inference_mode():
        memory = decoder.build_memory(memory_states, None).repeat(group)
        cache = decoder.new_cache(batch * group, 8, memory_states)
        hidden = decoder(torch.full((batch * group, 1), 3), memory, cache)
    assert hidden.shape == (batch * group, 1, 32) and torch.isfinite(hidden).all()
    assert not memory.native  # decided once per memory: the torch layers ran
