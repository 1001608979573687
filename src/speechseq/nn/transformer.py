"""Transformer encoder and decoder layers (pre-LN or post-LN) and a cross-attending decoder stack."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

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
            return hidden + self._dropout(block(self.norm(hidden)))
        return self.norm(hidden + self._dropout(block(hidden)))

    def _dropout(self, hidden: Tensor) -> Tensor:
        # Skipping the call in eval mode saves a module call per sub-block and decoding step.
        return self.dropout(hidden) if self.training else hidden


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
        hidden = self.cross_attn_block(hidden, lambda x: memory.attend(self.cross_attn, x, layer))
        return self.ffn_block(hidden, self.ffn)


@dataclass
class MemoryKV:
    """Cross-attention keys/values of every decoder layer, computed once from the encoder output.

    `group` consecutive decoder rows (the beams of one item) share each memory row. They attend to it as one
    row with `group` times the queries, so its keys and values are neither copied nor read once per beam.
    """

    keys: list[Tensor]  # per layer (B, H, S, Dh)
    values: list[Tensor]
    mask: Tensor | None  # (B, 1, 1, S) keep-mask, None when nothing is padded
    group: int = 1  # decoder rows per memory row
    native: object = field(default=None, repr=False, compare=False)  # nn/native_decoder's step, once built

    def repeat(self, times: int) -> MemoryKV:
        """Serve each memory row to `times` consecutive decoder rows (b -> rows b*times .. b*times+times-1)."""
        return MemoryKV(self.keys, self.values, self.mask, self.group * times)

    def attend(self, attention: MultiHeadAttention, hidden: Tensor, layer: int) -> Tensor:
        """Cross-attend from decoder rows hidden (B * group, T, D) to this layer's memory; same shape out."""
        rows, steps, width = hidden.shape
        queries = hidden.reshape(rows // self.group, self.group * steps, width)
        out = attention.attend(queries, self.keys[layer], self.values[layer], self.mask, False)
        return out.view(rows, steps, width)


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
