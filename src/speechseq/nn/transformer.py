"""Transformer encoder and decoder layers (pre-LN or post-LN) and a cross-attending decoder stack."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .attention import MultiHeadAttention
from .cache import KVCache
from .feedforward import FeedForward
from .masks import key_mask


@dataclass(frozen=True)
class LayerSpec:
    """Sizes and options shared by the layers of one stack."""

    d_model: int  # model width
    num_heads: int  # attention heads
    ffn_dim: int  # inner width of the feed-forward block
    activation: str = "relu"  # FFN activation name
    dropout: float = 0.0  # residual dropout
    attention_dropout: float = 0.0  # dropout on attention probabilities
    activation_dropout: float = 0.0  # dropout after the FFN activation
    norm_first: bool = True  # pre-LN (fairseq S2T, MBart) or post-LN (Speech2Text2, BERT)
    layer_norm_eps: float = 1e-5  # LayerNorm epsilon
    kv_dim: int | None = None  # width of the cross-attention source, if not d_model


class _Residual(nn.Module):
    """One sub-block with its LayerNorm, before (pre-LN) or after (post-LN) the residual add."""

    def __init__(self, spec: LayerSpec):
        super().__init__()
        self.norm = nn.LayerNorm(spec.d_model, eps=spec.layer_norm_eps)
        self.dropout = nn.Dropout(spec.dropout)
        self.norm_first = spec.norm_first

    def forward(self, hidden: Tensor, block: Callable[[Tensor], Tensor]) -> Tensor:
        if self.norm_first:
            return hidden + self.dropout(block(self.norm(hidden)))
        return self.norm(hidden + self.dropout(block(hidden)))


class EncoderLayer(nn.Module):
    """Self-attention then FFN."""

    def __init__(self, spec: LayerSpec):
        super().__init__()
        self.self_attn = MultiHeadAttention(spec.d_model, spec.num_heads, spec.attention_dropout)
        self.self_attn_block = _Residual(spec)
        self.ffn = FeedForward(spec.d_model, spec.ffn_dim, spec.activation, spec.activation_dropout)
        self.ffn_block = _Residual(spec)

    def forward(self, hidden: Tensor, mask: Tensor | None) -> Tensor:
        """Encode hidden (B, T, D); mask is a keep-mask broadcastable to (B, H, T, T)."""
        hidden = self.self_attn_block(hidden, lambda x: self.self_attn(x, mask=mask))
        return self.ffn_block(hidden, self.ffn)


class DecoderLayer(nn.Module):
    """Causal self-attention, cross-attention over the encoder memory, then FFN."""

    def __init__(self, spec: LayerSpec):
        super().__init__()
        self.self_attn = MultiHeadAttention(spec.d_model, spec.num_heads, spec.attention_dropout)
        self.self_attn_block = _Residual(spec)
        self.cross_attn = MultiHeadAttention(
            spec.d_model, spec.num_heads, spec.attention_dropout, kv_dim=spec.kv_dim
        )
        self.cross_attn_block = _Residual(spec)
        self.ffn = FeedForward(spec.d_model, spec.ffn_dim, spec.activation, spec.activation_dropout)
        self.ffn_block = _Residual(spec)

    def forward(
        self, hidden: Tensor, memory: MemoryKV, layer: int, self_mask: Tensor | None, cache: KVCache | None
    ):
        """Decode hidden (B, T, D) against precomputed cross-attention keys/values of this layer."""
        causal = self_mask is None and cache is None
        hidden = self.self_attn_block(
            hidden, lambda x: self.self_attn(x, mask=self_mask, is_causal=causal, cache=cache, layer=layer)
        )
        keys, values = memory.keys[layer], memory.values[layer]
        hidden = self.cross_attn_block(
            hidden, lambda x: self.cross_attn.attend(x, keys, values, memory.mask, False)
        )
        return self.ffn_block(hidden, self.ffn)


@dataclass
class MemoryKV:
    """Cross-attention keys/values of every decoder layer, computed once from the encoder output."""

    keys: list[Tensor]  # per layer (B, H, S, Dh)
    values: list[Tensor]
    mask: Tensor | None  # (B, 1, 1, S) keep-mask, None when nothing is padded

    def repeat(self, times: int) -> MemoryKV:
        """Repeat every batch row `times` times in place order (row b -> rows b*times .. b*times+times-1)."""
        rep = lambda t: t.repeat_interleave(times, dim=0)  # noqa: E731
        mask = None if self.mask is None else rep(self.mask)
        return MemoryKV([rep(k) for k in self.keys], [rep(v) for v in self.values], mask)


def build_memory(layers: nn.ModuleList, memory: Tensor, padding_mask: Tensor | None) -> MemoryKV:
    """Project encoder output (B, S, D) to each decoder layer's cross-attention keys and values."""
    pairs = [layer.cross_attn.project_kv(memory) for layer in layers]
    return MemoryKV([k for k, _ in pairs], [v for _, v in pairs], key_mask(padding_mask))


def self_attention_mask(padding_mask: Tensor | None, length: int, device: torch.device) -> Tensor | None:
    """Causal keep-mask (B, 1, T, T) that also hides padded keys; None when plain causal masking suffices."""
    if padding_mask is None or not bool(padding_mask.any()):
        return None
    causal = torch.ones(length, length, dtype=torch.bool, device=device).tril()
    # A query always sees itself, so a row whose earlier keys are all padding gives no NaN.
    diagonal = torch.eye(length, dtype=torch.bool, device=device)
    return (causal[None, None] & ~padding_mask[:, None, None, :]) | diagonal


class TransformerEncoder(nn.Module):
    """A stack of encoder layers with an optional final LayerNorm."""

    def __init__(self, spec: LayerSpec, num_layers: int, final_norm: bool = True):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(spec) for _ in range(num_layers))
        self.final_norm = nn.LayerNorm(spec.d_model, eps=spec.layer_norm_eps) if final_norm else None

    def forward(self, hidden: Tensor, padding_mask: Tensor | None) -> Tensor:
        """Encode hidden (B, T, D); padded frames (padding_mask True) are never attended to."""
        mask = key_mask(padding_mask)
        for layer in self.layers:
            hidden = layer(hidden, mask)
        return hidden if self.final_norm is None else self.final_norm(hidden)
